"""python -m semipose.data.convert dlc: a DeepLabCut / Lightning Pose label CSV -> a converted
folder."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from semipose.data.convert import (BadRowError, convert_dlc, keypoint_box, main,
                                   split_images)
from semipose.data.meta import DatasetMeta, guess_flip_pairs
from semipose.errors import ConfigError, DataError, MissingFileError

# Image name -> (width, height); one JPEG among PNGs, in a second video folder.
SIZES = {"v1/img0.png": (64, 48), "v1/img1.png": (64, 48), "v1/img2.png": (64, 48),
         "v2/img0.jpg": (80, 60)}


def make_project(tmp_path, sizes=SIZES):
    root = tmp_path / "proj"
    for name, (w, h) in sizes.items():
        path = root / "labeled-data" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(path), np.full((h, w, 3), 90, np.uint8))
    return root


def write_csv(root, lines, name="CollectedData_me.csv"):
    path = root / name
    path.write_text("\n".join(lines) + "\n")
    return str(path)


SINGLE = [
    "scorer,me,me,me,me,me,me",
    "bodyparts,nose,nose,left_ear,left_ear,right_ear,right_ear",
    "coords,x,y,x,y,x,y",
    "labeled-data/v1/img0.png,10,20,30,25,,",
    "labeled-data/v1/img1.png,11.5,21.25,31,26,40,30",
    "labeled-data/v1/img2.png,,,,,,",
    "labeled-data/v2/img0.jpg,2,3,78,58,40,30",
]
# The same labels with the path split over three columns (DeepLabCut 2.2 and later), and Windows
# separators in a single column.
SPLIT = ["scorer,,,me,me,me,me,me,me",
         "bodyparts,,,nose,nose,left_ear,left_ear,right_ear,right_ear",
         "coords,,,x,y,x,y,x,y"] + [
    ",".join(line.split(",")[0].split("/")) + "," + ",".join(line.split(",")[1:])
    for line in SINGLE[3:]]
WINDOWS = SINGLE[:3] + [line.replace("/", "\\") for line in SINGLE[3:]]


def load(out, part):
    with open(os.path.join(out, "annotations", f"{part}.json")) as f:
        return json.load(f)


def everything(out):
    """(images, annotations) of train and val together, by id."""
    images, anns = {}, {}
    for part in ("train", "val"):
        data = load(out, part)
        images.update({i["id"]: i for i in data["images"]})
        anns.update({a["id"]: a for a in data["annotations"]})
    return images, anns


def quiet(_line):
    pass


def test_single_animal_values(tmp_path):
    root = make_project(tmp_path)
    out = str(tmp_path / "out")
    res = convert_dlc(write_csv(root, SINGLE), str(root), out, val_fraction=0.0, log=quiet)
    assert (res.images, res.persons, res.train_images, res.val_images) == (4, 3, 4, 0)
    train, val = load(out, "train"), load(out, "val")
    assert val["images"] == [] and val["annotations"] == []
    assert train["images"] == [
        {"id": 1, "file_name": "labeled-data/v1/img0.png", "width": 64, "height": 48},
        {"id": 2, "file_name": "labeled-data/v1/img1.png", "width": 64, "height": 48},
        {"id": 3, "file_name": "labeled-data/v1/img2.png", "width": 64, "height": 48},
        {"id": 4, "file_name": "labeled-data/v2/img0.jpg", "width": 80, "height": 60}]
    # Extent + 10% each side, at least 5 px, clipped to the image:
    # row 4: x 10..30 (pad 5), y 20..25 (pad 5) -> [5, 15, 30, 15]
    # row 5: x 11.5..40 (pad 5), y 21.25..30 (pad 5) -> [6.5, 16.25, 38.5, 18.75]
    # row 7: x 2..78 (pad 7.6, clipped to 0..80), y 3..58 (pad 5.5, clipped to 0..60)
    assert train["annotations"] == [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [5.0, 15.0, 30.0, 15.0],
         "keypoints": [10.0, 20.0, 2, 30.0, 25.0, 2, 0, 0, 0], "num_keypoints": 2,
         "area": 450.0, "iscrowd": 0},
        {"id": 2, "image_id": 2, "category_id": 1, "bbox": [6.5, 16.25, 38.5, 18.75],
         "keypoints": [11.5, 21.25, 2, 31.0, 26.0, 2, 40.0, 30.0, 2], "num_keypoints": 3,
         "area": 721.88, "iscrowd": 0},
        {"id": 3, "image_id": 4, "category_id": 1, "bbox": [0.0, 0.0, 80.0, 60.0],
         "keypoints": [2.0, 3.0, 2, 78.0, 58.0, 2, 40.0, 30.0, 2], "num_keypoints": 3,
         "area": 4800.0, "iscrowd": 0}]
    assert train["categories"] == [{"id": 1, "name": "out", "supercategory": "out",
                                    "keypoints": ["nose", "left_ear", "right_ear"],
                                    "skeleton": []}]
    # The images are there under their relative paths; no temporary file is left behind.
    for name in SIZES:
        img = cv2.imread(os.path.join(out, "images", "labeled-data", name))
        assert img.shape[:2] == SIZES[name][::-1]
    leftovers = [f for _, _, files in os.walk(out) for f in files if f.startswith(".tmp_")]
    assert leftovers == []
    # The description reads back: joints in order, the guessed pair as [left, right].
    meta = DatasetMeta.from_yaml(os.path.join(out, "dataset.yaml"))
    assert meta.names == ("nose", "left_ear", "right_ear")
    assert meta.flip_pairs == ((1, 2),)
    assert (meta.upper_body, meta.lower_body, meta.skeleton, meta.sigmas) == ((), (), (), ())


@pytest.mark.parametrize("lines", [SPLIT, WINDOWS], ids=["split-path", "windows-path"])
def test_path_forms_give_the_same_files(tmp_path, lines):
    root = make_project(tmp_path)
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    convert_dlc(write_csv(root, SINGLE, "one.csv"), str(root), a, name="x", log=quiet)
    convert_dlc(write_csv(root, lines, "other.csv"), str(root), b, name="x", log=quiet)
    for part in ("train", "val"):
        one, other = load(a, part), load(b, part)
        one.pop("info"), other.pop("info")
        assert one == other


def test_multi_animal(tmp_path):
    root = make_project(tmp_path)
    lines = [
        "scorer,,,me,me,me,me,me,me,me,me,me,me",
        "individuals,,,m1,m1,m1,m1,m2,m2,m2,m2,single,single",
        "bodyparts,,,snout,snout,tail,tail,snout,snout,tail,tail,feeder,feeder",
        "coords,,,x,y,x,y,x,y,x,y,x,y",
        "labeled-data,v1,img0.png,10,10,20,20,,,,,5,5",       # m1 only
        "labeled-data,v1,img1.png,10,10,20,20,50,40,60,45,,",  # both
        "labeled-data,v1,img2.png,,,,,,,30,30,5,5",           # m2's tail only
    ]
    out = str(tmp_path / "out")
    lines_out = []
    res = convert_dlc(write_csv(root, lines), str(root), out, val_fraction=0.0, box="frame",
                      log=lines_out.append)
    assert res.joints == ("snout", "tail")
    images, anns = everything(out)
    assert [(a["image_id"], a["keypoints"], a["num_keypoints"]) for a in anns.values()] == [
        (1, [10.0, 10.0, 2, 20.0, 20.0, 2], 2),
        (2, [10.0, 10.0, 2, 20.0, 20.0, 2], 2),
        (2, [50.0, 40.0, 2, 60.0, 45.0, 2], 2),
        (3, [0, 0, 0, 30.0, 30.0, 2], 1)]
    assert all(a["bbox"] == [0.0, 0.0, 64.0, 48.0] and a["area"] == 3072.0
               for a in anns.values())
    assert sorted(anns) == [1, 2, 3, 4] and sorted(images) == [1, 2, 3]
    text = "\n".join(lines_out)
    assert "individuals: m1, m2" in text and "left out" in text and "feeder" in text


def test_likelihood_columns_are_ignored(tmp_path):
    root = make_project(tmp_path)
    lines = ["scorer,me,me,me,me,me,me", "bodyparts,a,a,a,b,b,b",
             "coords,x,y,likelihood,x,y,likelihood",
             "labeled-data/v1/img0.png,10,12,0.9,20,22,0.1"]
    out = str(tmp_path / "out")
    convert_dlc(write_csv(root, lines), str(root), out, val_fraction=0.0, log=quiet)
    assert load(out, "train")["annotations"][0]["keypoints"] == [10.0, 12.0, 2, 20.0, 22.0, 2]


def test_keypoint_box_margin_and_clipping():
    xy = np.array([[100.0, 50.0], [200.0, 90.0], [np.nan, np.nan]])
    # Extent 100 x 40: margin 0.2 -> 20 and 8 px each side.
    assert keypoint_box(xy, 640, 480, 0.2) == [80.0, 42.0, 140.0, 56.0]
    # Margin 0 -> at least 5 px each side.
    assert keypoint_box(xy, 640, 480, 0.0) == [95.0, 45.0, 110.0, 50.0]
    # One joint near the corner: 5 px, clipped at 0 and at the image's size.
    assert keypoint_box(np.array([[2.0, 47.0]]), 64, 48, 0.1) == [0.0, 42.0, 7.0, 6.0]


def test_margin_option(tmp_path):
    root = make_project(tmp_path)
    out = str(tmp_path / "out")
    convert_dlc(write_csv(root, SINGLE), str(root), out, val_fraction=0.0, margin=0.5,
                log=quiet)
    # Row 5: x 11.5..40 (extent 28.5, pad 14.25), y 21.25..30 (extent 8.75, pad 5 px)
    assert load(out, "train")["annotations"][1]["bbox"] == [0.0, 16.25, 54.25, 18.75]


def test_split_is_deterministic_and_disjoint(tmp_path):
    sizes = {f"v1/img{i:02d}.png": (32, 24) for i in range(20)}
    root = make_project(tmp_path, sizes)
    lines = ["scorer,me,me", "bodyparts,a,a", "coords,x,y"]
    lines += [f"labeled-data/{n},{i},{i}" for i, n in enumerate(sizes)]
    csv_path = write_csv(root, lines)

    def split(out, seed):
        convert_dlc(csv_path, str(root), str(tmp_path / out), val_fraction=0.25, seed=seed,
                    log=quiet)
        return [[i["file_name"] for i in load(str(tmp_path / out), p)["images"]]
                for p in ("train", "val")]

    train, val = split("a", 0)
    assert split("b", 0) == [train, val]
    assert len(val) == 5 and len(train) == 15 and not set(train) & set(val)
    assert sorted(train + val) == sorted(f"labeled-data/{n}" for n in sizes)
    assert split("c", 1)[1] != val
    # The mask itself: round(fraction * n), and one image each side when the fraction is > 0.
    assert split_images(20, 0.25, 3).sum() == 5
    assert split_images(2, 0.01, 0).tolist().count(True) == 1
    assert split_images(1, 0.5, 0).tolist() == [False]
    assert (split_images(20, 0.25, 7) == split_images(20, 0.25, 7)).all()


def test_unlabeled_images_stay_in_train(tmp_path):
    root = make_project(tmp_path)
    out = str(tmp_path / "out")
    res = convert_dlc(write_csv(root, SINGLE), str(root), out, val_fraction=0.5, seed=0,
                      log=quiet)
    val_names = [i["file_name"] for i in load(out, "val")["images"]]
    assert "labeled-data/v1/img2.png" not in val_names
    assert res.val_images == 2 and res.train_images == 2  # 3 labeled: round(1.5) = 2 in val


@pytest.mark.parametrize("names, pairs", [
    (["nose", "left_ear", "right_ear"], ((1, 2),)),
    (["right_ear", "left_ear", "tail"], ((1, 0),)),
    (["l_ear", "r_ear", "L_paw", "R_paw"], ((0, 1), (2, 3))),
    (["earL", "earR", "pawR", "pawL"], ((0, 1), (3, 2))),
    (["LeftEar", "RightEar", "leftPaw", "rightPaw"], ((0, 1), (2, 3))),
    (["ear_left", "ear_right", "paw-L", "paw-R", "earLeft", "earRight"],
     ((0, 1), (2, 3), (4, 5))),
    (["bear", "beal", "spine1", "spine2", "tailbase"], ()),
])
def test_guessed_flip_pairs(names, pairs):
    assert guess_flip_pairs(names, left_first=True) == pairs
    assert guess_flip_pairs(names) == tuple(sorted((min(p), max(p)) for p in pairs))


def test_flip_pairs_printed_and_written(tmp_path):
    root = make_project(tmp_path)
    lines = ["scorer,me,me,me,me,me,me", "bodyparts,earR,earR,earL,earL,nose,nose",
             "coords,x,y,x,y,x,y", "labeled-data/v1/img0.png,10,12,20,22,15,5"]
    printed = []
    out = str(tmp_path / "out")
    convert_dlc(write_csv(root, lines), str(root), out, log=printed.append,
                skeleton=["nose,earL", "nose,earR"])
    assert "  earL <-> earR" in printed
    meta = DatasetMeta.from_yaml(os.path.join(out, "dataset.yaml"))
    assert meta.flip_pairs == ((1, 0),) and meta.skeleton == ((2, 1), (2, 0))
    assert load(out, "train")["categories"][0]["skeleton"] == [[3, 2], [3, 1]]
    assert printed[-1] == ("next: python pose_estimation/train.py --cfg "
                           f"experiments/custom/posedual.yaml DATASET.ROOT {out}")


BAD_ROWS = [
    # (data row, the message's row/column part, reason)
    ("labeled-data/v1/img0.png,10,abc,30,25,,", r"row 4, column 3 \(nose y\): 'abc' is not a "
     r"number", "non-numeric cell"),
    ("labeled-data/v1/missing.png,10,20,30,25,,", r"row 4, column 1 \(image path\): image .*"
     r"missing.png' not found", "image not found"),
    ("labeled-data/v1/img0.png,10,20,30,25,64.5,30", r"row 4, column 6 \(right_ear x\): 64.5 "
     r"lies outside the 64 x 48 image", "joint outside the image"),
    ("labeled-data/v1/img0.png,10,-1,30,25,,", r"row 4, column 3 \(nose y\): -1 lies outside",
     "joint outside the image"),
    ("labeled-data/v1/img0.png,10,20,30,,,", r"row 4, column 5 \(left_ear y\): empty while its "
     r"other coordinate is given", "half-labeled joint"),
    ("../elsewhere/img0.png,10,20,,,,", r"row 4, column 1 \(image path\): '../elsewhere/img0.png' "
     r"is not a path inside --images-root", "bad image path"),
    ("labeled-data/v1/img0.png,10,20,30,25,,,7", r"row 4, column 8 \(beyond the header\)",
     "extra cells"),
]


@pytest.mark.parametrize("row, message, reason", BAD_ROWS, ids=[r[2] for r in BAD_ROWS])
def test_bad_rows_name_row_and_column(tmp_path, row, message, reason):
    root = make_project(tmp_path)
    csv_path = write_csv(root, SINGLE[:3] + [row] + SINGLE[4:])
    with pytest.raises(BadRowError, match=message) as info:
        convert_dlc(csv_path, str(root), str(tmp_path / "out"), log=quiet)
    text = str(info.value)
    assert text.startswith(csv_path + ": ") and "\n" not in text
    assert text.endswith("or pass --skip-bad to skip such rows")
    assert info.value.reason == reason and isinstance(info.value, DataError)
    assert not os.path.exists(tmp_path / "out")  # nothing written


def test_repeated_image_is_a_bad_row(tmp_path):
    root = make_project(tmp_path)
    csv_path = write_csv(root, SINGLE + [SINGLE[3]])
    with pytest.raises(BadRowError, match=r"row 8, column 1 \(image path\): "
                       r"'labeled-data/v1/img0.png' is labeled again \(first in row 4\)"):
        convert_dlc(csv_path, str(root), str(tmp_path / "out"), log=quiet)


def test_skip_bad_counts(tmp_path):
    root = make_project(tmp_path)
    rows = [r[0] for r in BAD_ROWS]
    csv_path = write_csv(root, SINGLE[:3] + rows + SINGLE[3:] + [SINGLE[4]])
    printed = []
    res = convert_dlc(csv_path, str(root), str(tmp_path / "out"), skip_bad=True,
                      log=printed.append)
    assert len(res.skipped) == len(rows) + 1
    assert [e.reason for e in res.skipped] == [r[2] for r in BAD_ROWS] + ["repeated image"]
    assert res.images == 4 and res.persons == 3
    assert ("skipped rows (--skip-bad): 8 (1 bad image path, 1 extra cells, 1 half-labeled "
            "joint, 1 image not found, 2 joint outside the image, 1 non-numeric cell, "
            "1 repeated image)") in printed
    assert f"  {csv_path}: row 7, column 3 (nose y): -1 lies outside the 64 x 48 image " \
        f"'labeled-data/v1/img0.png'" in printed
    assert f"  {csv_path}: row 15, column 1 (image path): 'labeled-data/v1/img1.png' is " \
        f"labeled again (first in row 12)" in printed


def test_header_and_option_errors(tmp_path):
    root = make_project(tmp_path)
    out = str(tmp_path / "out")
    with pytest.raises(MissingFileError, match="label file .*nope.csv' not found"):
        convert_dlc(str(root / "nope.csv"), str(root), out, log=quiet)
    with pytest.raises(DataError, match=r"row 1 starts with 'labeled-data/v1/img0.png'"):
        convert_dlc(write_csv(root, SINGLE[3:]), str(root), out, log=quiet)
    no_y = ["scorer,me,me", "bodyparts,a,b", "coords,x,x", "labeled-data/v1/img0.png,1,2"]
    with pytest.raises(DataError, match="bodypart 'a' has no 'y' column"):
        convert_dlc(write_csv(root, no_y), str(root), out, log=quiet)
    uneven = ["scorer,me,me,me,me,me,me", "individuals,m1,m1,m1,m1,m2,m2",
              "bodyparts,a,a,b,b,a,a", "coords,x,y,x,y,x,y"]
    with pytest.raises(DataError, match=r"row 2 \(individuals\): 'm2' has the bodyparts"):
        convert_dlc(write_csv(root, uneven), str(root), out, log=quiet)
    with pytest.raises(ConfigError, match="--val-fraction 1"):
        convert_dlc(write_csv(root, SINGLE), str(root), out, val_fraction=1.0, log=quiet)
    with pytest.raises(ConfigError, match="--skeleton 'nose,tail': unknown bodypart 'tail'"):
        convert_dlc(write_csv(root, SINGLE), str(root), out, skeleton=["nose,tail"], log=quiet)
    empty = SINGLE[:3] + ["labeled-data/v1/img2.png,,,,,,"]
    with pytest.raises(DataError, match="no labeled joint in any usable row"):
        convert_dlc(write_csv(root, empty), str(root), out, log=quiet)
    # A finished conversion is not replaced without --overwrite (dataset.yaml may be edited).
    convert_dlc(write_csv(root, SINGLE), str(root), out, log=quiet)
    with pytest.raises(ConfigError, match="already holds a converted dataset"):
        convert_dlc(write_csv(root, SINGLE), str(root), out, log=quiet)
    convert_dlc(write_csv(root, SINGLE), str(root), out, overwrite=True, log=quiet)


def test_main_returns_2_on_a_bad_row(tmp_path, capsys):
    root = make_project(tmp_path)
    csv_path = write_csv(root, SINGLE[:3] + [BAD_ROWS[0][0]])
    assert main(["dlc", "--csv", csv_path, "--images-root", str(root), "--out",
                 str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "row 4, column 3 (nose y)" in err[-1]


def test_cli(tmp_path):
    root = make_project(tmp_path)
    out = str(tmp_path / "out")
    cmd = [sys.executable, "-m", "semipose.data.convert", "dlc", "--csv",
           write_csv(root, SPLIT), "--images-root", str(root), "--out", out,
           "--val-fraction", "0.34", "--seed", "3", "--box", "frame"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "left_ear <-> right_ear" in done.stdout and "DATASET.ROOT " + out in done.stdout
    images, anns = everything(out)
    assert len(images) == 4 and len(anns) == 3
    assert len(load(out, "val")["images"]) == 1
    bad = write_csv(root, SPLIT[:3] + ["labeled-data,v1,img0.png,10,20,30,25,99,30"], "bad.csv")
    cmd[cmd.index("--csv") + 1] = bad
    cmd[cmd.index("--out") + 1] = str(tmp_path / "out2")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "row 4, column 8 (right_ear x): 99 lies outside the 64 x 48 image" in lines[0]
