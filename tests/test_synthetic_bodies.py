"""Second synthetic body plan (a quadruped): its description, the converted-folder layout, the
DeepLabCut project, unlabeled clips, determinism; the people generator is tests/test_synthetic.py's."""
from __future__ import annotations

import csv
import json
import os

import cv2
import numpy as np
import pytest

from semipose.data import synthetic_quadruped as quad
from semipose.data.meta import DatasetMeta, guess_flip_pairs
from semipose.data.synthetic import generate, main
from semipose.data.synthetic_body import Draws
from semipose.data.synthetic_custom import (VideoWriterError, dlc_image_path, render_clip,
                                            write_dlc_csv)
from semipose.errors import ConfigError
from semipose.utils.streams import stream_rng, stream_seed

from conftest import tree_digest, video_frames

SEED = 4
SIZES = dict(num_train=12, num_val=6, num_unlabeled=2)
CLIP_FRAMES = 12
J = quad.META.num_joints
FLIP = np.arange(J)
for _a, _b in quad.META.flip_pairs:
    FLIP[_a], FLIP[_b] = _b, _a


def _json(path):
    with open(path) as f:
        return json.load(f)


def _keypoints(ann) -> np.ndarray:
    return np.array(ann["keypoints"], float).reshape(J, 3)


def _generate(root: str, videos: int, **kw) -> dict:
    return generate(root, seed=SEED, show_progress=False, body="quadruped", preset="light",
                    formats=("custom", "dlc"), videos=videos, clip_frames=CLIP_FRAMES, **SIZES, **kw)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("quadruped"))
    try:
        paths = _generate(root, videos=1)
    except VideoWriterError:  # no mp4 writer here: the images and labels are tested without
        paths = _generate(root, videos=0)
    return root, paths


# ------------------------------------------------------------------------------ the description
def test_description_and_json_agree(data):
    root, paths = data
    meta = DatasetMeta.from_yaml(os.path.join(root, "dataset.yaml"))
    assert paths["description"] == os.path.join(root, "dataset.yaml")
    assert meta == quad.META and meta.num_joints == 16 == J
    assert meta.num_joints not in (14, 16 + 1, 24)  # not AIC, COCO or the union space
    assert meta.names[:3] == ("nose", "left_eye", "right_eye")
    # every left_/right_ joint has its twin in the flip pairs, as a converter would guess them
    assert meta.flip_pairs == guess_flip_pairs(meta.names)
    assert {meta.names[a] for a, _ in meta.flip_pairs} == {
        n for n in meta.names if n.startswith("left_")}
    assert meta.has_body_halves and set(meta.upper_body) | set(meta.lower_body) == set(range(J))
    assert len(meta.sigmas) == J
    ids = []
    for split, n in (("train", SIZES["num_train"]), ("val", SIZES["num_val"])):
        d = _json(paths[split])
        assert paths[split] == os.path.join(root, "annotations", f"{split}.json")
        (cat,) = d["categories"]
        assert cat["id"] == 1 and cat["keypoints"] == list(meta.names)
        assert cat["skeleton"] == [[a + 1, b + 1] for a, b in meta.skeleton]
        assert len(d["images"]) == n
        sizes = {}
        for img in d["images"]:
            parts = img["file_name"].split("/")
            assert len(parts) == 3 and parts[0] == split  # nested: <split>/clipNNN/NNNNNN.jpg
            im = cv2.imread(os.path.join(root, "images", img["file_name"]))
            assert im.shape == (img["height"], img["width"], 3)
            sizes[img["id"]] = (img["width"], img["height"])
            ids.append(img["id"])
        assert 0.8 * n <= len(d["annotations"]) <= n  # one animal per image, nearly always seen
        for a in d["annotations"]:
            k = _keypoints(a)
            v = k[:, 2]
            assert set(v.tolist()) <= {0, 2} and a["num_keypoints"] == int((v == 2).sum()) >= 1
            assert a["iscrowd"] == 0 and a["category_id"] == 1 and a["area"] > 0
            np.testing.assert_array_equal(k[v == 0, :2], 0)
            w, h = sizes[a["image_id"]]
            lab = k[v == 2, :2]
            assert (lab >= 0).all() and (lab[:, 0] <= w - 1).all() and (lab[:, 1] <= h - 1).all()
            x, y, bw, bh = a["bbox"]
            assert (lab[:, 0] >= x).all() and (lab[:, 0] <= x + bw + 1e-9).all()
            assert (lab[:, 1] >= y).all() and (lab[:, 1] <= y + bh + 1e-9).all()
    assert len(set(ids)) == len(ids)
    assert len(os.listdir(paths["unlabeled"])) == SIZES["num_unlabeled"]


def test_labels_are_the_rendered_joints_on_their_own_parts(data):
    """The json keypoints are the rendered scene's joints, and each labeled one lies on a part of
    the animal that may cover it (label map check)."""
    _, paths = data
    labeled = 0
    for split, code in (("train", 1), ("val", 2)):
        d = _json(paths[split])
        anns = {a["image_id"]: a for a in d["annotations"]}
        for i, img in enumerate(d["images"]):
            scene = quad.sample_scene(stream_rng("synthetic_quadruped", seed=SEED, split=code,
                                                 index=i), "light")
            _, animals, lab = quad.render_scene(scene)
            joints = animals[0]["joints"]
            if img["id"] not in anns:
                assert (animals[0]["vis"] < 2).all()
                continue
            k = _keypoints(anns[img["id"]])
            on = k[:, 2] == 2
            np.testing.assert_allclose(k[on, :2], joints[on], atol=0.005 + 1e-9)
            top = lab[np.rint(joints[on, 1]).astype(int), np.rint(joints[on, 0]).astype(int)]
            part = (top.astype(int) - 1) % 16
            assert (top > 0).all() and (top < 17).all()  # the (only) animal's, not an occluder
            assert quad.JOINT_PART_OK[np.flatnonzero(on), part].all()
            labeled += int(on.sum())
    assert labeled > 0.6 * J * (SIZES["num_train"] + SIZES["num_val"])


def _clean(scene: dict) -> dict:
    """The scene on a flat green background, without occluders or camera effects."""
    scene["background"].update(low=np.full((2, 2, 3), (0, 255, 0), np.float32), amp=0.0,
                               shapes=[], strokes=[])
    scene.update(occluders=[])
    scene["camera"].update(gain=1.0, bias=0.0, noise=0.0, blur=0.0)
    return scene


def test_keypoints_lie_on_drawn_limbs_pixel_check():
    """On a flat background every labeled keypoint's pixel is painted by the animal (no coat
    colour is pure green), so keypoints sit on what is drawn, not next to it."""
    checked = 0
    for i in range(40):
        scene = _clean(quad.sample_scene(np.random.default_rng(i), "light"))
        img, animals, _ = quad.render_scene(scene)
        a = animals[0]
        on = a["vis"] == 2
        xy = np.rint(a["joints"][on]).astype(int)
        px = img[xy[:, 1], xy[:, 0]].astype(int)
        assert (np.abs(px - (0, 255, 0)).sum(1) > 60).all(), i
        checked += int(on.sum())
    assert checked > 40 * J * 0.6


def test_mirrored_scene_swaps_exactly_the_flip_pairs():
    w = 400
    for i in range(60):
        spec = quad.sample_quadruped(Draws(np.random.default_rng(i)), w, 300)
        joints, prims, forced = quad.build_quadruped(spec)
        joints_m, _, forced_m = quad.build_quadruped(quad.mirror_spec(spec, w))
        mirrored = np.stack([w - 1 - joints[:, 0], joints[:, 1]], 1)
        np.testing.assert_allclose(joints_m[FLIP], mirrored, atol=1e-9)
        np.testing.assert_array_equal(forced_m[FLIP], forced)
        # chirality: heading right shows the right side (its legs drawn over the torso)
        order = [p[1] for p in prims]
        near = "r" if spec["facing"] > 0 else "l"
        far = "l" if near == "r" else "r"
        torso = order.index("torso")
        assert order.index(near + "f_upper") > torso > order.index(far + "f_upper")
    # The rendered mirror: the image is the flipped image (up to anti-aliasing) and the labels
    # (visibility included) are those of the flipped scene with the pairs swapped.
    agree = total = 0
    for i in range(10):
        scene = _clean(quad.sample_scene(np.random.default_rng(100 + i), "light"))
        w = scene["width"]
        img, animals, _ = quad.render_scene(scene)
        mirror = dict(scene, animals=[quad.mirror_spec(s, w) for s in scene["animals"]])
        img_m, animals_m, _ = quad.render_scene(mirror)
        assert np.abs(img_m.astype(int) - cv2.flip(img, 1)).mean() < 4
        a, m = animals[0], animals_m[0]
        np.testing.assert_allclose(m["joints"][FLIP, 1], a["joints"][:, 1], atol=1e-9)
        agree += int((m["vis"][FLIP] == a["vis"]).sum())
        total += J
    assert agree >= 0.97 * total  # a joint on a part's very edge may round to the other side


def test_same_seed_same_bytes_other_seed_differs(data, tmp_path):
    root, paths = data
    again = str(tmp_path / "again")
    _generate(again, videos=int("videos" in paths), workers=2)
    ref = tree_digest(root)
    assert tree_digest(again) == ref
    assert "dlc/CollectedData_synthetic.csv" in ref and "dataset.yaml" in ref
    other = str(tmp_path / "other")
    generate(other, seed=SEED + 1, show_progress=False, body="quadruped", preset="light", **SIZES)
    got = tree_digest(other)
    jpgs = [k for k in got if k.endswith(".jpg")]
    assert len(jpgs) == sum(SIZES.values())
    assert all(got[k] != ref[k] for k in jpgs)


# ------------------------------------------------------------------------------ DeepLabCut
def _read_dlc(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[:3], rows[3:]


def test_dlc_csv_parses_back_to_the_json_keypoints(data):
    root, paths = data
    project = paths["dlc_project"]
    assert paths["dlc_csv"] == os.path.join(project, "CollectedData_synthetic.csv")
    header, rows = _read_dlc(paths["dlc_csv"])
    names = list(quad.META.names)
    assert header[0] == ["scorer"] + ["synthetic"] * (2 * J)
    assert header[1] == ["bodyparts"] + [n for n in names for _ in (0, 1)]
    assert header[2] == ["coords"] + ["x", "y"] * J
    n = SIZES["num_train"] + SIZES["num_val"]
    assert len(rows) == n and all(len(r) == 1 + 2 * J for r in rows)
    by_path = {r[0]: r[1:] for r in rows}
    empty = 0
    for split in ("train", "val"):
        d = _json(paths[split])
        anns = {a["image_id"]: a for a in d["annotations"]}
        for i, img in enumerate(d["images"]):
            rel = dlc_image_path(split, i)
            assert rel.startswith(f"labeled-data/{split}_clip") and rel.endswith(f"img{i:04d}.png")
            cells = by_path[rel]
            k = _keypoints(anns[img["id"]]) if img["id"] in anns else np.zeros((J, 3))
            for j in range(J):
                x, y = cells[2 * j], cells[2 * j + 1]
                if k[j, 2] == 2:
                    assert (float(x), float(y)) == (k[j, 0], k[j, 1])  # exact, not approximate
                else:
                    assert x == y == ""
                    empty += 1
            # the PNG is the JPEG's scene, saved losslessly
            png = cv2.imread(os.path.join(project, *rel.split("/")))
            jpg = cv2.imread(os.path.join(root, "images", img["file_name"]))
            scene = quad.sample_scene(stream_rng("synthetic_quadruped", seed=SEED,
                                                 split=1 if split == "train" else 2, index=i),
                                      "light")
            np.testing.assert_array_equal(png, quad.render_scene(scene)[0])
            assert png.shape == jpg.shape and np.abs(png.astype(int) - jpg).mean() < 10
    assert empty > 0  # unlabeled joints occur and are empty cells
    # DeepLabCut's per-video files hold the same rows, with the same project-relative paths
    videos = sorted(os.listdir(os.path.join(project, "labeled-data")))
    assert videos == ["train_clip000", "train_clip001", "val_clip000"]
    joined = []
    for v in videos:
        h, r = _read_dlc(os.path.join(project, "labeled-data", v, "CollectedData_synthetic.csv"))
        assert h == header and all(row[0].startswith(f"labeled-data/{v}/") for row in r)
        joined += r
    assert joined == rows


def test_write_dlc_csv(tmp_path):
    path = str(tmp_path / "CollectedData_me.csv")
    write_dlc_csv(path, ["a", "b"], [("labeled-data/v/img0001.png", [(1.5, 2.25), None]),
                                     ("labeled-data/v/img0002.png", [None, (0.1, 1e-05)])],
                  scorer="me")
    with open(path) as f:
        assert f.read() == ("scorer,me,me,me,me\nbodyparts,a,a,b,b\ncoords,x,y,x,y\n"
                            "labeled-data/v/img0001.png,1.5,2.25,,\n"
                            "labeled-data/v/img0002.png,,,0.1,1e-05\n")
    with pytest.raises(ValueError, match="has 1 joints for 2 body parts"):
        write_dlc_csv(path, ["a", "b"], [("x.png", [None])])


# ------------------------------------------------------------------------------ clips
@pytest.mark.parametrize("ext", [".mp4", ".avi"])
def test_clip_frames_size_and_determinism(tmp_path, ext):
    path = str(tmp_path / f"walk{ext}")
    try:
        clip = render_clip(path, seed=2, num_frames=20, size=(160, 120), preset="light")
    except VideoWriterError as err:
        pytest.skip(f"this OpenCV build has no {ext} writer: {err}")
    frames = video_frames(path)
    assert len(frames) == clip["num_frames"] == 20
    assert all(f.shape == (120, 160, 3) for f in frames)
    assert clip["joints"].shape == (20, J, 2) and clip["vis"].shape == (20, J)
    # the animal crosses the frame: its withers move by at least a third of the width
    withers = clip["joints"][:, quad.META.index("withers"), 0]
    assert abs(withers[-1] - withers[0]) > 160 / 3
    assert (np.diff(withers) * np.sign(withers[-1] - withers[0]) > 0).all()
    # and walks: the paws move relative to the body
    paw = clip["joints"][:, quad.META.index("left_front_paw"), 0] - withers
    assert np.ptp(paw) > 5
    again = str(tmp_path / f"again{ext}")
    render_clip(again, seed=2, num_frames=20, size=(160, 120), preset="light")
    with open(path, "rb") as a, open(again, "rb") as b:
        assert a.read() == b.read()
    render_clip(again, seed=3, num_frames=20, size=(160, 120), preset="light")
    assert np.abs(video_frames(again)[0].astype(int) - frames[0]).mean() > 5
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".")]  # no temporary file left


def test_generated_clip(data):
    _, paths = data
    if "videos" not in paths:
        pytest.skip("this OpenCV build has no .mp4 writer (mp4v)")
    frames = video_frames(os.path.join(paths["videos"], "clip00.mp4"))
    assert len(frames) == CLIP_FRAMES and frames[0].shape == (240, 320, 3)


def test_errors_name_the_value(tmp_path):
    with pytest.raises(ConfigError, match="unknown synthetic body 'horse'"):
        generate(str(tmp_path), body="horse", show_progress=False)
    with pytest.raises(ConfigError, match="format 'coco' for body 'quadruped'"):
        generate(str(tmp_path), body="quadruped", formats=("coco",), show_progress=False)
    with pytest.raises(ConfigError, match="preset 'huge'"):
        generate(str(tmp_path), body="quadruped", preset="huge", show_progress=False)
    with pytest.raises(ConfigError, match="body 'quadruped' only"):
        generate(str(tmp_path), videos=1, show_progress=False)
    with pytest.raises(ConfigError, match="'.mov' is not supported"):
        render_clip(str(tmp_path / "a.mov"))
    with pytest.raises(ConfigError, match="even sizes"):
        render_clip(str(tmp_path / "a.avi"), size=(161, 120))
    assert os.listdir(tmp_path) == []


def test_cli(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for flag in ("--body", "--dlc", "--video", "--clip-frames", "--video-format"):
        assert flag in text
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--dlc"])  # people: no DLC project
    assert "--body quadruped" in capsys.readouterr().err
    paths = main(["--out", str(tmp_path), "--body", "quadruped", "--num-train", "2", "--num-val",
                  "1", "--num-unlabeled", "0", "--dlc", "--video", "1", "--clip-frames", "3",
                  "--video-format", "avi", "--preset", "light", "--workers", "1", "--no-progress"])
    assert len(_json(paths["train"])["images"]) == 2 and "unlabeled" not in paths
    assert os.path.isfile(os.path.join(paths["videos"], "clip00.avi"))
    assert len(_read_dlc(paths["dlc_csv"])[1]) == 3
    assert len(video_frames(os.path.join(paths["videos"], "clip00.avi"))) == 3


def test_streams_of_the_quadruped_are_their_own():
    assert stream_seed("synthetic_quadruped", seed=7, split=2, index=5) == [7, 2, 5, 2]
    assert stream_seed("synthetic_clip", seed=7, index=5) == [7, 5, 0, 3]
    # neither is the people's scene or detections stream of any (split, index) of the same seed
    draws = {stream_rng(name, seed=7, split=s, index=i).integers(0, 2 ** 62)
             for name in ("synthetic_scene", "synthetic_detections", "synthetic_quadruped")
             for s in range(4) for i in range(6)}
    draws |= {stream_rng("synthetic_clip", seed=7, index=i).integers(0, 2 ** 62) for i in range(6)}
    assert len(draws) == 3 * 4 * 6 + 6
