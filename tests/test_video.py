"""Unlabeled records from a folder of videos and images (data/video.py): frame sampling, the JPEG
frame cache, whole-frame and detection boxes, errors."""
import json
import os
import shutil

import cv2
import numpy as np
import pytest

from semipose.data import video_frames
from semipose.data.video import (extract_frames, main, sampled_indices, stable_image_id,
                                 unlabeled_records)
from semipose.errors import DataError, MissingFileError
from semipose.transforms.affine import PIXEL_STD

W, H, N_FRAMES = 160, 96, 20
STEP, SQUARE, ROW = 6, 8, 40  # frame i: a white SQUARE x SQUARE square at x = i * STEP, y = ROW
J = 5
AR = 192 / 256


def _frame(index: int) -> np.ndarray:
    img = np.zeros((H, W, 3), np.uint8)
    img[ROW:ROW + SQUARE, index * STEP:index * STEP + SQUARE] = 255
    return img


def _write_video(path: str, n: int = N_FRAMES) -> bool:
    """A clip whose frame i shows the square at x = i * STEP; False if this OpenCV build cannot
    write the container."""
    fourcc = {".mp4": "mp4v", ".avi": "MJPG"}[os.path.splitext(path)[1].lower()]
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*fourcc), 10.0, (W, H))
    if not writer.isOpened():
        return False
    for i in range(n):
        writer.write(_frame(i))
    writer.release()
    cap = cv2.VideoCapture(path)
    ok = cap.isOpened() and cap.read()[0]
    cap.release()
    return bool(ok)


def _square_index(path: str) -> int:
    """The frame index a cached frame shows, from the square's left edge."""
    gray = cv2.imread(path, cv2.IMREAD_GRAYSCALE).astype(np.float32)
    cols = np.nonzero(gray[ROW:ROW + SQUARE].mean(0) > 128)[0]
    assert len(cols) >= SQUARE // 2, f"no square in {path}"
    return int(round(cols[0] / STEP))


@pytest.fixture
def folder(tmp_path):
    """<tmp>/videos: sub/clip.mp4 (mp4v) or, without that codec, sub/clip.avi (MJPG)."""
    root = tmp_path / "videos"
    (root / "sub").mkdir(parents=True)
    for name in ("clip.mp4", "clip.avi"):
        path = str(root / "sub" / name)
        if _write_video(path):
            return str(root), f"sub/{name}"
        if os.path.exists(path):
            os.remove(path)
    pytest.skip("this OpenCV build writes neither mp4v .mp4 nor MJPG .avi videos")


def _kept(records):
    return [int(os.path.basename(r["image"])[:-4]) for r in records]


def test_sampled_indices():
    assert sampled_indices(20, every=3) == [0, 3, 6, 9, 12, 15, 18]
    assert sampled_indices(20, per_video=4) == [2, 7, 12, 17]
    assert sampled_indices(3, per_video=4) == [0, 1, 2]
    assert sampled_indices(0, every=3) == []


def test_every_k_frames_cached_and_right(folder):
    root, rel = folder
    recs = unlabeled_records(root, J, every=3, progress=False)
    assert _kept(recs) == [0, 3, 6, 9, 12, 15, 18]
    cache = os.path.join(root, ".frames_cache", rel)
    for r in recs:
        assert os.path.dirname(r["image"]) == cache
        assert _square_index(r["image"]) == int(os.path.basename(r["image"])[:-4])
    manifest = json.load(open(os.path.join(cache, "manifest.json")))
    assert manifest["frames"] == [0, 3, 6, 9, 12, 15, 18]
    assert manifest["sampling"] == {"every": 3}
    assert (manifest["width"], manifest["height"], manifest["frame_count"]) == (W, H, N_FRAMES)
    # Nothing half-written is left behind.
    assert sorted(os.listdir(cache)) == [f"{i:06d}.jpg" for i in range(0, 20, 3)] + [
        "manifest.json"]


def test_per_video_frames(folder):
    root, rel = folder
    recs = unlabeled_records(root, J, per_video=4, progress=False)
    assert _kept(recs) == [2, 7, 12, 17]
    assert [_square_index(r["image"]) for r in recs] == [2, 7, 12, 17]


@pytest.mark.parametrize("stated", [0, 30])
def test_per_video_when_the_container_misstates_the_frame_count(folder, monkeypatch, stated):
    """No count (0: counted by reading) or too many (30 of 20: the video ends early): the frames
    are still spread over the 20 real ones."""
    root, rel = folder
    monkeypatch.setattr(video_frames, "_reported_frames", lambda path: stated)
    recs = unlabeled_records(root, J, per_video=4, progress=False)
    assert _kept(recs) == [2, 7, 12, 17]
    assert [_square_index(r["image"]) for r in recs] == [2, 7, 12, 17]
    cache = os.path.join(root, ".frames_cache", rel)
    assert sorted(os.listdir(cache)) == ["000002.jpg", "000007.jpg", "000012.jpg", "000017.jpg",
                                         "manifest.json"]
    assert json.load(open(os.path.join(cache, "manifest.json")))["frame_count"] == N_FRAMES


def test_second_call_reads_cache_without_decoding(folder, monkeypatch):
    root, _ = folder
    first = unlabeled_records(root, J, every=3, progress=False)

    def no_video(*args, **kwargs):
        raise AssertionError("the video was opened although its frames are cached")

    monkeypatch.setattr(video_frames.cv2, "VideoCapture", no_video)
    second = unlabeled_records(root, J, every=3, progress=False)
    assert [r["image"] for r in second] == [r["image"] for r in first]
    assert [r["image_id"] for r in second] == [r["image_id"] for r in first]


def test_changed_sampling_or_video_reextracts(folder, monkeypatch):
    root, rel = folder
    cache = os.path.join(root, ".frames_cache", rel)
    unlabeled_records(root, J, every=3, progress=False)
    opened = []
    real = cv2.VideoCapture
    monkeypatch.setattr(video_frames.cv2, "VideoCapture", lambda *a: opened.append(a) or real(*a))

    recs = unlabeled_records(root, J, every=5, progress=False)
    assert opened and _kept(recs) == [0, 5, 10, 15]
    assert [_square_index(r["image"]) for r in recs] == [0, 5, 10, 15]
    # Frames of the old sampling are gone; only the new ones and the manifest remain.
    assert sorted(os.listdir(cache)) == ["000000.jpg", "000005.jpg", "000010.jpg", "000015.jpg",
                                         "manifest.json"]
    assert json.load(open(os.path.join(cache, "manifest.json")))["sampling"] == {"every": 5}

    # Another video under the same name (size / mtime differ): extracted again.
    opened.clear()
    path = os.path.join(root, rel)
    assert _write_video(path, n=10)
    recs = unlabeled_records(root, J, every=5, progress=False)
    assert opened and _kept(recs) == [0, 5]
    assert sorted(os.listdir(cache)) == ["000000.jpg", "000005.jpg", "manifest.json"]

    # A deleted cached frame: extracted again too.
    os.remove(os.path.join(cache, "000005.jpg"))
    opened.clear()
    assert _kept(unlabeled_records(root, J, every=5, progress=False)) == [0, 5] and opened


def test_whole_frame_records(folder):
    root, rel = folder
    recs = unlabeled_records(root, J, every=3, aspect_ratio=AR, progress=False)
    r = recs[0]
    assert set(r) == {"image", "image_id", "center", "scale", "joints", "joints_vis", "score",
                      "raw_box"}
    # Box [0, 0, 160, 96]: 160 > 0.75 * 96, so the height grows to 160 / 0.75; padding 1.25.
    np.testing.assert_array_equal(r["center"], np.float32([W / 2, H / 2]))
    np.testing.assert_array_equal(
        r["scale"], np.float32([W / PIXEL_STD * 1.25, W / AR / PIXEL_STD * 1.25]))
    assert r["center"].dtype == r["scale"].dtype == r["raw_box"].dtype == np.float32
    np.testing.assert_array_equal(r["raw_box"], np.float32([0, 0, W, H]))
    assert r["joints"].shape == (J, 2) and r["joints"].dtype == np.float32 and not r["joints"].any()
    assert r["joints_vis"].shape == (J,) and r["joints_vis"].dtype == np.float32
    assert not r["joints_vis"].any()
    assert r["score"] == 1.0 and isinstance(r["score"], float)
    assert r["image_id"] == stable_image_id(f"{rel}/000000.jpg")
    assert isinstance(r["image_id"], int) and 0 < r["image_id"] < 2 ** 53
    assert len({x["image_id"] for x in recs}) == len(recs)


def test_images_pass_through(folder, tmp_path):
    root, rel = folder
    os.makedirs(os.path.join(root, "pics", "deep"))
    cv2.imwrite(os.path.join(root, "pics", "deep", "b.PNG"), np.zeros((30, 50, 3), np.uint8))
    cv2.imwrite(os.path.join(root, "a.jpg"), np.zeros((40, 20, 3), np.uint8))
    open(os.path.join(root, "notes.txt"), "w").write("not an image")
    open(os.path.join(root, "._a.jpg"), "wb").write(b"macOS metadata")
    recs = unlabeled_records(root, J, per_video=2, aspect_ratio=AR, progress=False)
    names = [os.path.relpath(r["image"], root).replace(os.sep, "/") for r in recs]
    assert names == [f".frames_cache/{rel}/000005.jpg", f".frames_cache/{rel}/000015.jpg",
                     "a.jpg", "pics/deep/b.PNG"]
    np.testing.assert_array_equal(recs[2]["center"], np.float32([10, 20]))
    np.testing.assert_array_equal(recs[2]["scale"],
                                  np.float32([40 * AR / PIXEL_STD * 1.25, 40 / PIXEL_STD * 1.25]))
    np.testing.assert_array_equal(recs[3]["raw_box"], np.float32([0, 0, 50, 30]))
    assert recs[2]["image_id"] == stable_image_id("a.jpg")

    # A folder of images only: no cache folder is made.
    pics = str(tmp_path / "pics_only")
    shutil.copytree(os.path.join(root, "pics"), pics)
    assert [r["image"] for r in unlabeled_records(pics, J, progress=False)] == [
        os.path.join(pics, "deep", "b.PNG")]
    assert not os.path.exists(os.path.join(pics, ".frames_cache"))


def test_detection_boxes(folder, tmp_path):
    root, rel = folder
    dets = [
        {"file_name": f"{rel}/000003.jpg", "bbox": [10, 20, 30, 40], "score": 0.9},
        {"file_name": f"{rel}/000003.jpg", "bbox": [50, 20, 30, 40], "score": 0.2},
        {"file_name": f".frames_cache/{rel}/000006.jpg", "bbox": [0, 0, 20, 20], "score": 0.6},
        {"image_id": stable_image_id(f"{rel}/000000.jpg"), "bbox": [1, 2, 3, 4], "score": 0.7},
        {"file_name": f"{rel}/000004.jpg", "bbox": [1, 2, 3, 4], "score": 0.9},  # not sampled
        {"file_name": f"{rel}/000009.jpg", "bbox": [1, 2, 0, 4], "score": 0.9},  # empty box
    ]
    det_file = str(tmp_path / "dets.json")
    json.dump(dets, open(det_file, "w"))
    recs = unlabeled_records(root, J, every=3, boxes=det_file, min_score=0.5, aspect_ratio=AR,
                             progress=False)
    # One record per kept detection, in frame order: frame 0 (by image_id), 3 (0.9), 6.
    assert _kept(recs) == [0, 3, 6]
    assert [r["score"] for r in recs] == [pytest.approx(0.7), pytest.approx(0.9),
                                          pytest.approx(0.6)]
    np.testing.assert_array_equal(recs[1]["raw_box"], np.float32([10, 20, 30, 40]))
    np.testing.assert_array_equal(recs[1]["center"], np.float32([25, 40]))
    np.testing.assert_array_equal(recs[1]["scale"],
                                  np.float32([40 * AR / PIXEL_STD * 1.25, 40 / PIXEL_STD * 1.25]))
    assert recs[1]["image_id"] == stable_image_id(f"{rel}/000003.jpg")

    # min_score 0 keeps the low one too (two records of frame 3, in file order).
    recs = unlabeled_records(root, J, every=3, boxes=det_file, progress=False)
    assert _kept(recs) == [0, 3, 3, 6]
    assert [r["raw_box"][0] for r in recs[1:3]] == [10, 50]

    with pytest.raises(DataError, match="no box for the unlabeled set"):
        unlabeled_records(root, J, every=3, boxes=det_file, min_score=0.95, progress=False)
    json.dump([{"bbox": [1, 2, 3, 4], "score": 1.0}], open(det_file, "w"))
    with pytest.raises(DataError, match="entry 0 needs"):
        unlabeled_records(root, J, every=3, boxes=det_file, progress=False)
    with pytest.raises(MissingFileError, match="nope.json"):
        unlabeled_records(root, J, every=3, boxes=str(tmp_path / "nope.json"), progress=False)


def test_broken_video_and_bad_folders(tmp_path):
    root = tmp_path / "broken"
    root.mkdir()
    (root / "bad.MOV").write_bytes(b"this is not a video" * 10)
    with pytest.raises(DataError, match=r"cannot open video '.*bad\.MOV'") as err:
        unlabeled_records(str(root), J, progress=False)
    assert "\n" not in str(err.value)
    with pytest.raises(MissingFileError, match="not found"):
        unlabeled_records(str(tmp_path / "missing"), J, progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="holds no videos"):
        unlabeled_records(str(empty), J, progress=False)
    with pytest.raises(DataError, match="UNLABELED_EVERY"):
        unlabeled_records(str(root), J, every=0, progress=False)


def test_cache_dir_elsewhere_and_cli(folder, tmp_path, capsys):
    root, rel = folder
    cache = str(tmp_path / "cache")
    assert main(["extract", root, "--per-video", "4", "--cache-dir", cache,
                 "--no-progress"]) == 0
    assert "4 frames of 1 video(s)" in capsys.readouterr().out
    index = json.load(open(os.path.join(cache, "images.json")))["images"]
    assert [im["file_name"] for im in index] == [f"{rel}/{i:06d}.jpg" for i in (2, 7, 12, 17)]
    assert index[0]["id"] == stable_image_id(f"{rel}/000002.jpg")
    assert (index[0]["width"], index[0]["height"]) == (W, H)
    assert not os.path.exists(os.path.join(root, ".frames_cache"))
    # The warmed cache is what training then reads.
    frames = extract_frames(root, per_video=4, cache_dir=cache, progress=False)
    assert [f.path for f in frames] == [os.path.join(cache, rel, f"{i:06d}.jpg")
                                        for i in (2, 7, 12, 17)]
    # A cache inside the folder under a plain name is not mistaken for images.
    inner = os.path.join(root, "cache")
    assert len(extract_frames(root, every=10, cache_dir=inner, progress=False)) == 2

    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.avi").write_bytes(b"junk")
    assert main(["extract", str(tmp_path / "bad"), "--no-progress"]) == 2
    assert "error: cannot open video" in capsys.readouterr().err
