"""Synthetic people dataset: file formats, label rules, determinism, detector boxes."""
from __future__ import annotations

import contextlib
import io
import json
import math
import os

import cv2
import numpy as np
import pytest
import scipy.io
from pycocotools.coco import COCO as CocoApi
from pycocotools.cocoeval import COCOeval

from semipose.data import synthetic_formats as fmt
from semipose.data.keypoints import AIC, COCO, COCO_SKELETON, MPII, UNION
from semipose.data.synthetic import generate, main
from semipose.data.synthetic_body import Draws, build_person, sample_person
from semipose.data.synthetic_render import render_scene
from semipose.data.synthetic_scene import sample_scene

from conftest import tree_digest

SIZES = dict(num_train=12, num_val=6, num_unlabeled=6)
SEED = 3  # its 6 val images hold 14 people, 3 of them missed by the simulated detector (~10 % rate)
U = {n: i for i, n in enumerate(UNION.names)}


def _quiet_coco(path: str) -> CocoApi:
    with contextlib.redirect_stdout(io.StringIO()):
        return CocoApi(path)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("synthetic"))
    paths = generate(root, seed=SEED, show_progress=False, formats=("coco", "mpii", "aic"), **SIZES)
    return root, paths


def _json(path):
    with open(path) as f:
        return json.load(f)


def test_layout_and_pycocotools(data):
    root, paths = data
    c = os.path.join(root, "coco")
    expected = {
        "coco_train": os.path.join(c, "annotations", "person_keypoints_train2017.json"),
        "coco_val": os.path.join(c, "annotations", "person_keypoints_val2017.json"),
        "coco_unlabeled": os.path.join(c, "annotations", "image_info_unlabeled2017.json"),
        "coco_val_detections": os.path.join(
            c, "person_detection_results", "synthetic_val2017_detections.json"),
        "coco_unlabeled_detections": os.path.join(
            c, "person_detection_results", "synthetic_unlabeled2017_detections.json"),
    }
    for key, path in expected.items():
        assert paths[key] == path and os.path.isfile(path)
    ids = []
    for key, split, n in (("coco_train", "train2017", 12), ("coco_val", "val2017", 6),
                          ("coco_unlabeled", "unlabeled2017", 6)):
        api = _quiet_coco(paths[key])
        assert len(api.getImgIds()) == n
        cat = api.loadCats(1)[0]
        assert cat["keypoints"][:3] == ["nose", "left_eye", "right_eye"]
        assert cat["keypoints"][-1] == "right_ankle" and len(cat["keypoints"]) == COCO.num_joints
        assert cat["skeleton"] == [[a + 1, b + 1] for a, b in COCO_SKELETON]
        for img in api.loadImgs(api.getImgIds()):
            assert img["file_name"] == "%012d.jpg" % img["id"]
            im = cv2.imread(os.path.join(c, "images", split, img["file_name"]))
            assert im.shape == (img["height"], img["width"], 3)
            assert 320 <= img["width"] <= 640 and 240 <= img["height"] <= 480
            ids.append(img["id"])
        if key == "coco_unlabeled":
            assert api.getAnnIds() == []
        else:
            assert len(api.getAnnIds()) >= n  # 1-4 people per image, nearly all annotated
    assert len(set(ids)) == len(ids)  # unique across splits


def test_annotation_rules(data):
    _, paths = data
    for key in ("coco_train", "coco_val"):
        api = _quiet_coco(paths[key])
        anns = api.loadAnns(api.getAnnIds())
        assert len({a["id"] for a in anns}) == len(anns)
        counts = np.zeros(3, int)
        for a in anns:
            img = api.loadImgs(a["image_id"])[0]
            k = np.array(a["keypoints"], float).reshape(COCO.num_joints, 3)
            v = k[:, 2].astype(int)
            assert set(v.tolist()) <= {0, 1, 2}
            counts += np.bincount(v, minlength=3)
            assert a["num_keypoints"] == int((v > 0).sum()) >= 1
            assert a["iscrowd"] == 0 and a["category_id"] == 1
            np.testing.assert_array_equal(k[v == 0, :2], 0)
            x, y, w, h = a["bbox"]
            lab = k[v > 0, :2]
            assert (lab[:, 0] >= 0).all() and (lab[:, 0] <= img["width"] - 1).all()
            assert (lab[:, 1] >= 0).all() and (lab[:, 1] <= img["height"] - 1).all()
            assert (lab[:, 0] >= x).all() and (lab[:, 0] <= x + w + 1e-9).all()
            assert (lab[:, 1] >= y).all() and (lab[:, 1] <= y + h + 1e-9).all()
            seg = np.array(a["segmentation"][0]).reshape(-1, 2)
            assert seg[:, 0].min() == x and seg[:, 1].max() == pytest.approx(y + h, abs=1e-9)
            # the area is the segmentation polygon's; the rasterised mask agrees within 10 %
            assert api.annToMask(a).sum() == pytest.approx(a["area"], rel=0.1)
        assert counts.min() > 0  # all three visibility codes occur
    # GT keypoints scored against themselves give AP 1 with COCOeval
    gt = _quiet_coco(paths["coco_val"])
    res = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
           for a in gt.loadAnns(gt.getAnnIds())]
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(gt, gt.loadRes(res), "keypoints")
        ev.params.useSegm = None
        ev.evaluate(), ev.accumulate(), ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)


def _person(w: int, h: int, x: float, facing: int = 1) -> dict:
    spec = sample_person(Draws(np.random.default_rng(5)), w, h)
    pose = spec["pose"]
    pose.update(lean=0.0, neck=0.0, yaw=0.0, width=1.0, l_sho=1.0, r_sho=1.0, l_elb=0.3, r_elb=-0.3,
                l_hip=0.15, r_hip=0.15, l_kne=0.0, r_kne=0.0)
    pose.update({k: 1.0 for k in pose if k[1:] in ("_ua", "_fa", "_th", "_sh")})
    spec.update(height=0.7 * h, pelvis=(x, 0.55 * h), rotation=0.0, facing=facing)
    return spec


def _clean_scene(persons, occluders=()):
    scene = sample_scene(np.random.default_rng(11))
    scene.update(width=480, height=360, persons=list(persons), occluders=list(occluders))
    scene["background"].update(shapes=[], strokes=[])
    return scene


def test_occluder_and_truncation_rules():
    w, h = 480, 360
    coco = [U[n] for n in COCO.names]
    spec = _person(w, h, 0.5 * w)
    _, people = render_scene(_clean_scene([spec]))
    assert (people[0]["vis"][coco] == 2).all()

    joints = build_person(spec)[0]
    wx, wy = joints[U["lwri"]]
    square = np.array([[wx - 12, wy - 12], [wx + 12, wy - 12], [wx + 12, wy + 12], [wx - 12, wy + 12]])
    occ = {"points": square, "color": (0, 200, 0), "color2": (0, 90, 0), "color3": (9, 9, 9),
           "inner": 0.5, "chords": [], "chord_w": 1}
    _, people = render_scene(_clean_scene([spec], [occ]))
    vis = people[0]["vis"]
    assert vis[U["lwri"]] == 1
    assert (vis[[j for j in coco if j != U["lwri"]]] == 2).all()

    # Facing the camera the person's left is on the image right; push it past the right border.
    edge = _person(w, h, w - 0.1 * 0.7 * h)
    joints = build_person(edge)[0]
    out = joints[:, 0] > w - 1
    assert out[U["lwri"]] and out[U["lelb"]] and not out[U["rsho"]]
    _, people = render_scene(_clean_scene([edge]))
    p = people[0]
    assert (p["vis"][out] == 0).all() and (p["vis"][~out] > 0).all()
    person = {"joints": p["joints"].tolist(), "vis": p["vis"].tolist(), "bbox": p["bbox"],
              "area": p["area"], "hull": p["hull"].ravel().tolist()}
    k = np.array(fmt.coco_annotation(person, 1, 1)["keypoints"]).reshape(-1, 3)
    lwri = COCO.names.index("lwri")
    assert k[lwri].tolist() == [0, 0, 0]
    assert p["bbox"][0] + p["bbox"][2] <= w - 1 + 1e-6


def test_left_right_chirality():
    for facing in (1, -1):
        j = build_person(_person(480, 360, 240, facing))[0]
        assert np.sign(j[U["lsho"], 0] - j[U["rsho"], 0]) == facing
        assert np.sign(j[U["lhip"], 0] - j[U["rhip"], 0]) == facing


def test_same_seed_same_bytes_other_seed_differs(data, tmp_path):
    root, _ = data
    again = str(tmp_path / "again")
    generate(again, seed=SEED, show_progress=False, formats=("coco", "mpii", "aic"), workers=2, **SIZES)
    ref = tree_digest(root)
    assert tree_digest(again) == ref
    other = str(tmp_path / "other")
    generate(other, seed=SEED + 1, show_progress=False, formats=("coco",), **SIZES)
    got = tree_digest(other)
    coco_files = [k for k in ref if k.startswith("coco")]
    assert set(got) == set(coco_files)
    assert all(got[k] != ref[k] for k in coco_files if k.endswith(".jpg"))


def _iou(a, b):
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def test_detection_files(data):
    _, paths = data
    gt = _quiet_coco(paths["coco_val"])
    sizes = {i["id"]: (i["width"], i["height"]) for i in gt.loadImgs(gt.getImgIds())}
    dets = _json(paths["coco_val_detections"])
    unl = _json(paths["coco_unlabeled_detections"])
    unl_ids = set(_quiet_coco(paths["coco_unlabeled"]).getImgIds())
    assert {d["image_id"] for d in unl} <= unl_ids and len(unl) > 0
    fps = 0
    for d in dets + unl:
        assert set(d) == {"image_id", "category_id", "bbox", "score"} and d["category_id"] == 1
        assert len(d["bbox"]) == 4 and d["bbox"][2] > 0 and d["bbox"][3] > 0 and 0 < d["score"] <= 1
    for d in dets:
        w, h = sizes[d["image_id"]]
        x, y, bw, bh = d["bbox"]
        assert x >= 0 and y >= 0 and x + bw <= w + 1e-6 and y + bh <= h + 1e-6
        anns = gt.loadAnns(gt.getAnnIds(imgIds=d["image_id"]))
        if all(_iou(d["bbox"], a["bbox"]) < 0.1 for a in anns):
            fps += 1
            assert d["score"] < 0.5
    assert fps > 0
    misses = sum(all(_iou(d["bbox"], a["bbox"]) < 0.5 for d in dets if d["image_id"] == a["image_id"])
                 for a in gt.loadAnns(gt.getAnnIds()))
    assert misses > 0


def test_simulated_detector_statistics():
    d = Draws(np.random.default_rng(0))
    gt = [([100.0, 80.0, 60.0, 150.0], 0.0), ([300.0, 50.0, 80.0, 200.0], 0.8)]
    found = np.zeros(2)
    fps = 0
    for _ in range(300):
        hit = np.zeros(2, bool)
        for box, score in fmt.simulate_detections(d, gt, 640, 480):
            ious = np.array([_iou(box, g) for g, _ in gt])
            if ious.max() < 0.1:
                fps += 1
                assert score < 0.5
            hit |= ious > 0.5
        found += hit
    assert 0.85 < found[0] / 300 < 1.0  # clear person: rarely missed
    assert found[1] < found[0]  # occluded person: missed more often
    assert 0.5 < fps / 300 < 1.2  # 0.85 false positives per image on average


def test_mpii_and_aic_formats(data):
    root, paths = data
    for split, n_img in (("train", math.ceil(12 / 2)), ("validation", math.ceil(6 / 2))):
        recs = _json(paths["mpii_" + split])
        assert len({r["image"] for r in recs}) <= n_img and len(recs) >= 1
        for r in recs:
            assert set(r) == {"image", "center", "scale", "joints", "joints_vis"}
            assert np.array(r["joints"]).shape == (MPII.num_joints, 2)
            assert len(r["joints_vis"]) == MPII.num_joints and set(r["joints_vis"]) <= {0, 1}
            assert r["scale"] > 0 and os.path.isfile(os.path.join(root, "mpii", "images", r["image"]))
    gt = scipy.io.loadmat(paths["mpii_gt_validation"])
    n = len(_json(paths["mpii_validation"]))
    assert gt["pos_gt_src"].shape == (16, 2, n) and gt["jnt_missing"].shape == (16, n)
    assert gt["headboxes_src"].shape == (2, 2, n)
    assert np.where(gt["dataset_joints"] == "head")[1][0] == MPII.index("head_top")
    for split, n_img in (("train", math.ceil(6 / 2)), ("validation", math.ceil(6 / 2))):
        entries = _json(paths["aic_" + split])
        assert len(entries) == n_img
        for e in entries:
            assert len(e["image_id"]) == 40
            image = os.path.join(root, "ai_challenger", split, "images", e["image_id"] + ".jpg")
            assert os.path.isfile(image)
            assert set(e["keypoint_annotations"]) == set(e["human_annotations"])
            for key, kp in e["keypoint_annotations"].items():
                k = np.array(kp).reshape(AIC.num_joints, 3)
                assert set(k[:, 2].tolist()) <= {1, 2, 3}
                x1, y1, x2, y2 = e["human_annotations"][key]
                lab = k[k[:, 2] < 3]
                assert len(lab) and (lab[:, 0] >= x1).all() and (lab[:, 0] <= x2).all()
                assert (lab[:, 1] >= y1).all() and (lab[:, 1] <= y2).all()
                np.testing.assert_array_equal(k[k[:, 2] == 3, :2], 0)


def test_cli(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for flag in ("--out", "--seed", "--num-train", "--num-val", "--num-unlabeled", "--formats",
                 "--workers", "--no-progress"):
        assert flag in text
    paths = main(["--out", str(tmp_path), "--num-train", "1", "--num-val", "1", "--num-unlabeled", "0",
                  "--workers", "1", "--no-progress"])
    assert len(_json(paths["coco_val"])["images"]) == 1
    assert _json(paths["coco_unlabeled_detections"]) == []
    with pytest.raises(ValueError, match="unknown synthetic dataset format"):
        generate(str(tmp_path), formats=("lsp",), show_progress=False)
