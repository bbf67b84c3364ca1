"""Custom-skeleton evaluation: OKS AP with the description's or the default sigma, PCK of the box
size, pixel error per joint, on a hand-made 3-joint set of 3 persons in 2 images."""
import json
import math
import os
from types import SimpleNamespace

import numpy as np
import pytest

from semipose.config import get_defaults
from semipose.data.meta import DatasetMeta
from semipose.engine.validate import score
from semipose.errors import DataError
from semipose.evaluation.coco_eval import METRIC_NAMES
from semipose.evaluation.custom_eval import (DEFAULT_SIGMA, evaluate_custom, keypoint_metrics,
                                             scoring_sigmas)
from semipose.evaluation.table import format_table

JOINTS = ["nose", "lpaw", "rpaw"]
# Every person's OKS area: with the (3, 4) px shift (25 px^2) and sigma 0.05 the OKS is
# exp(-25 / (2 * 3887 * 0.1^2)) = 0.725 (between the 0.70 and 0.75 thresholds); with sigma 0.1
# it is exp(-25 / (2 * 3887 * 0.2^2)) = 0.923 (between 0.90 and 0.95).
AREA = 3887.0
# Three persons: (image id, joints [3, 2], labeled [3], GT box [x, y, w, h]). Box sizes
# max(w, h) = 80, 200, 40: a 5 px error is within 0.1 x 80 = 8 but not 0.05 x 80 = 4; within
# 0.05 x 200 = 10; and not within 0.1 x 40 = 4.
PERSONS = [
    (1, [[100, 100], [120, 110], [140, 130]], [1, 1, 1], [90, 90, 80, 50]),
    (1, [[400, 300], [450, 320], [500, 350]], [1, 1, 1], [380, 280, 200, 100]),
    (2, [[200, 200], [0, 0], [220, 230]], [1, 0, 1], [190, 190, 40, 40]),
]
COLUMNS = list(METRIC_NAMES) + ["PCK@0.05", "PCK@0.1", "px error", "px nose", "px lpaw",
                                "px rpaw"]


def meta(sigmas=None, name="paws"):
    data = {"name": name, "joints": JOINTS, "flip_pairs": [["lpaw", "rpaw"]]}
    if sigmas is not None:
        data["sigmas"] = sigmas
    return DatasetMeta.from_dict(data)


def write_annotations(path):
    """The COCO-format val json of PERSONS (v=2 labeled, 0 not), as the converter writes it."""
    anns = []
    for i, (image_id, joints, labeled, box) in enumerate(PERSONS):
        kp = []
        for (x, y), v in zip(joints, labeled):
            kp += [float(x), float(y), 2] if v else [0.0, 0.0, 0]
        anns.append({"id": i + 1, "image_id": image_id, "category_id": 1, "bbox": box,
                     "keypoints": kp, "num_keypoints": sum(labeled), "area": AREA, "iscrowd": 0})
    ann = {"images": [{"id": k, "file_name": f"cam/{k:04d}.png", "width": 640, "height": 480}
                      for k in (1, 2)],
           "annotations": anns,
           "categories": [{"id": 1, "name": "paws", "keypoints": JOINTS,
                           "skeleton": [[1, 2], [1, 3]]}]}
    with open(path, "w") as f:
        json.dump(ann, f)


def make_val_set(tmp_path, native):
    """What the custom dataset gives the evaluator: records in the description's joint order,
    the description, the annotation file and the image set name."""
    ann_file = str(tmp_path / "annotations" / "val.json")
    os.makedirs(os.path.dirname(ann_file), exist_ok=True)
    write_annotations(ann_file)
    records = [{"image": f"images/cam/{image_id:04d}.png", "image_id": image_id,
                "joints": np.asarray(joints, np.float32),
                "joints_vis": np.asarray(labeled, np.float32),
                "raw_box": np.asarray(box, np.float32),
                "center": np.asarray([box[0] + box[2] / 2, box[1] + box[3] / 2], np.float32),
                "scale": np.asarray([box[2] / 200, box[3] / 200], np.float32)}
               for image_id, joints, labeled, box in PERSONS]
    return SimpleNamespace(records=records, native_joint_set=native, joint_set=native,
                           annotation_file=ann_file, image_set="val")


def predictions(val_set, shift=(0.0, 0.0), unlabeled_at=(999.0, -999.0)):
    """[N, 3, 3] predictions: GT + shift, maxval 1; unlabeled joints placed far off."""
    gt = np.stack([r["joints"] for r in val_set.records]).astype(np.float32)
    vis = np.stack([r["joints_vis"] for r in val_set.records]) > 0
    xy = np.where(vis[..., None], gt + np.asarray(shift, np.float32), unlabeled_at)
    return np.concatenate([xy, np.ones(xy.shape[:2] + (1,), np.float32)], axis=-1)


def boxes_of(val_set):
    recs = val_set.records
    return {"center": np.stack([r["center"] for r in recs]),
            "scale": np.stack([r["scale"] for r in recs]),
            "area": np.full(len(recs), AREA), "score": np.ones(len(recs)),
            "raw_box": np.stack([r["raw_box"] for r in recs])}


def evaluate(val_set, kpts, out_dir, **kw):
    return evaluate_custom(kpts, boxes_of(val_set), [r["image_id"] for r in val_set.records],
                           val_set.records, val_set.annotation_file, val_set.image_set,
                           str(out_dir), val_set.joint_set, val_set.native_joint_set, **kw)


def test_perfect_predictions(tmp_path):
    val_set = make_val_set(tmp_path, meta([0.03, 0.08, 0.08]))
    metrics, ap = evaluate(val_set, predictions(val_set), tmp_path, prefix="eval_1")
    assert list(metrics) == COLUMNS  # the description has sigmas: no default-sigma column
    assert ap == metrics["AP"] == pytest.approx(1.0, abs=1e-12)
    assert metrics["AR"] == pytest.approx(1.0, abs=1e-12)
    assert metrics["PCK@0.05"] == metrics["PCK@0.1"] == 1.0
    # the unlabeled joint's prediction lies 1000 px off; it is left out
    for col in ("px error", "px nose", "px lpaw", "px rpaw"):
        assert metrics[col] == 0.0
    with open(tmp_path / "results" / "person_keypoints_val_eval_1.json") as f:
        results = json.load(f)
    assert len(results) == 3 and len(results[0]["keypoints"]) == 9


def test_shift_of_3_4_pixels(tmp_path):
    """Every labeled joint 5 px off: 5.0 px per joint; PCK by box size; AP from the sigmas."""
    val_set = make_val_set(tmp_path, meta([0.1, 0.1, 0.1]))
    metrics, ap = evaluate(val_set, predictions(val_set, (3.0, 4.0)), tmp_path,
                           save_result=False)
    for col in ("px error", "px nose", "px lpaw", "px rpaw"):
        assert metrics[col] == 5.0
    # 8 labeled joints: persons 1 (size 80, 3 joints), 2 (size 200, 3), 3 (size 40, 2)
    assert metrics["PCK@0.05"] == 3 / 8   # only person 2: 5 <= 10; 5 > 4 and 5 > 2
    assert metrics["PCK@0.1"] == 6 / 8    # persons 1 and 2: 5 <= 8, 5 <= 20; 5 > 4
    # OKS 0.923 for everyone: matched at thresholds 0.50 .. 0.90 (9 of 10)
    assert ap == pytest.approx(0.9, abs=1e-9)
    assert metrics["Ap .5"] == pytest.approx(1.0) and metrics["AP .75"] == pytest.approx(1.0)
    assert not (tmp_path / "results").exists()


def test_default_sigma_is_used_and_stated(tmp_path):
    native = meta(name="paws_nosigma")
    sigmas, defaulted = scoring_sigmas(native)
    assert defaulted and DEFAULT_SIGMA == 0.05
    np.testing.assert_array_equal(sigmas, [0.05, 0.05, 0.05])
    val_set = make_val_set(tmp_path, native)
    metrics, ap = evaluate(val_set, predictions(val_set, (3.0, 4.0)), tmp_path)
    assert list(metrics) == COLUMNS + ["sigma (default)"]
    assert metrics["sigma (default)"] == 0.05
    # OKS exp(-25 / (2 * 3887 * 0.01)) = 0.725 for everyone: matched at 0.50 .. 0.70 (5 of 10)
    assert math.exp(-25 / (2 * AREA * 0.01)) == pytest.approx(0.725, abs=1e-3)
    assert ap == pytest.approx(0.5, abs=1e-9)
    assert metrics["Ap .5"] == pytest.approx(1.0) and metrics["AP .75"] == pytest.approx(0.0)
    assert metrics["AR"] == pytest.approx(0.5, abs=1e-9)
    assert "| sigma (default) |" in format_table(metrics, "net [net1]")


def test_wrong_sigma_count_is_a_data_error():
    native = DatasetMeta("paws", tuple(JOINTS), sigmas=(0.05, 0.05))
    with pytest.raises(DataError, match="2 OKS sigmas for 3 joints"):
        scoring_sigmas(native)


def test_per_joint_errors_by_hand():
    """2 persons, 3 joints, one unlabeled: per-joint means over the persons that label it."""
    gt = np.array([[[10, 10], [20, 20], [30, 30]],
                   [[50, 50], [60, 60], [70, 70]]], np.float64)
    labeled = np.array([[True, True, True], [True, False, True]])
    pred = gt + np.array([[[3, 4], [6, 8], [0, 0]],       # 5, 10, 0
                          [[0, 2], [40, 40], [5, 12]]])   # 2, (unlabeled), 13
    m = keypoint_metrics(pred, gt, labeled, np.array([100.0, 100.0]), JOINTS)
    assert m["px nose"] == 3.5 and m["px lpaw"] == 10.0 and m["px rpaw"] == 6.5
    assert m["px error"] == pytest.approx(20 / 3, abs=1e-12)  # mean of the per-joint means
    # thresholds 5 and 10 px: hits 5, 0, 2 at 0.05 (of 5 labeled joints); 5, 10, 0, 2 at 0.1
    assert m["PCK@0.05"] == 3 / 5 and m["PCK@0.1"] == 4 / 5


def test_joint_nobody_labeled_is_nan():
    gt = np.zeros((2, 3, 2))
    labeled = np.array([[True, False, True], [True, False, False]])
    pred = gt + [3.0, 4.0]
    m = keypoint_metrics(pred, gt, labeled, np.array([10.0, 10.0]), JOINTS)
    assert math.isnan(m["px lpaw"]) and m["px nose"] == 5.0 and m["px error"] == 5.0
    none = keypoint_metrics(pred, gt, np.zeros((2, 3), bool), np.array([10.0, 10.0]), JOINTS)
    assert math.isnan(none["PCK@0.1"]) and math.isnan(none["px error"])


def test_registered_evaluator_scores_every_row(tmp_path):
    """DATASET.TEST_DATASET custom: engine/validate.score runs the 'custom' evaluator per row;
    the mapping (the table's columns and results.json) starts with AP; AP is the main metric."""
    cfg = get_defaults()
    cfg.DATASET.TEST_DATASET = "custom"
    val_set = make_val_set(tmp_path, meta(name="paws_rows"))
    pred = dict(boxes_of(val_set), image_ids=[r["image_id"] for r in val_set.records],
                preds={"net1": predictions(val_set), "ensemble": predictions(val_set, (3, 4))})
    results = score(cfg, val_set, pred, str(tmp_path))
    assert list(results) == ["net1", "ensemble"]
    (m1, main1), (m2, main2) = results["net1"], results["ensemble"]
    assert main1 == pytest.approx(1.0) and m1["px error"] == 0.0
    assert main2 == m2["AP"] == pytest.approx(0.5) and m2["px error"] == 5.0
    assert list(m2)[0] == "AP" and m2["sigma (default)"] == DEFAULT_SIGMA
    files = sorted(os.listdir(tmp_path / "results"))
    assert files == ["person_keypoints_val_eval_1.json", "person_keypoints_val_eval_3.json"]
