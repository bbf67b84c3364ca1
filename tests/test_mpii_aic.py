"""MPII / AI Challenger records and their evaluations, on the real fixture slices in tests/data."""
import copy
import json
import os

import numpy as np
import pytest
import scipy.io

from types import SimpleNamespace

from semipose.data.aic import AicDataset, load_aic_records
from semipose.data.keypoints import AIC, MPII, UNION
from semipose.data.mpii import MpiiDataset, load_mpii_records, mpii_gt_path
from semipose.evaluation.aic_eval import evaluate_aic, write_aic_gt_npy
from semipose.evaluation.mpii_eval import evaluate_mpii, write_mpii_gt_mat

ROOT = os.path.join(os.path.dirname(__file__), "data", "fixtures")
AIC_JSON = os.path.join(ROOT, "ai_challenger", "validation", "keypoint_validation_annotation.json")
IMAGE_SIZE = (192, 256)


@pytest.fixture(scope="module")
def mpii_gt(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("mpii") / "gt_valid.mat")
    write_mpii_gt_mat(os.path.join(ROOT, "mpii", "annot", "valid.json"), path)
    return path


# ---------------------------------------------------------------- MPII records

def test_mpii_records_union_space():
    recs = load_mpii_records(ROOT, "valid", UNION.num_joints)
    assert len(recs) == 5
    r = recs[0]
    assert r["image_id"] == "005808361.jpg"
    assert r["image"] == os.path.join(ROOT, "mpii", "images", "005808361.jpg")
    assert os.path.isfile(r["image"])
    assert r["joints"].shape == (24, 2) and r["joints_vis"].shape == (24,)
    # MPII rank (native 0, json [804, 711], 1-based) -> union slot 3, 0-based.
    np.testing.assert_array_equal(r["joints"][3], [803.0, 710.0])
    # MPII head top (native 9, json [962.2409, 80.0306]) -> union 13.
    np.testing.assert_allclose(r["joints"][13], [961.2409, 79.0306], rtol=0, atol=1e-4)
    # Union slots MPII lacks (belly 7, neck 9, nose 11, head 12, eyes/ears 20-23) stay empty.
    absent = [7, 9, 11, 12, 20, 21, 22, 23]
    assert not r["joints_vis"][absent].any() and not r["joints"][absent].any()
    # json center [966, 340], scale 4.718488: c_y = 340 + 15 * 4.718488 = 410.77732, s * 1.25,
    # then both centre coordinates - 1.
    np.testing.assert_allclose(r["center"], [965.0, 409.77732], rtol=0, atol=1e-4)
    np.testing.assert_allclose(r["scale"], [5.89811, 5.89811], rtol=0, atol=1e-5)
    assert r["center"].dtype == np.float32 and r["scale"].dtype == np.float32
    # Third person: both ankles unlabeled (joints_vis 0 at native 0 and 5 -> union 3 and 6).
    assert recs[2]["joints_vis"][3] == 0 and recs[2]["joints_vis"][6] == 0
    assert recs[2]["joints_vis"].sum() == 14
    assert r["score"] == 1.0 and r["raw_box"].shape == (4,)


def test_mpii_records_native_zip_and_errors(tmp_path):
    recs = load_mpii_records(ROOT, "valid", MPII.num_joints, data_format="zip")
    np.testing.assert_array_equal(recs[0]["joints"][0], [803.0, 710.0])
    assert recs[0]["image"] == os.path.join(ROOT, "mpii", "images.zip@") + "/images/005808361.jpg"
    with pytest.raises(ValueError, match="NUM_JOINTS=17"):
        load_mpii_records(ROOT, "valid", 17)
    with pytest.raises(FileNotFoundError, match="validation.json"):
        load_mpii_records(ROOT, "validation", 24)
    # 'test' split: no labels are read.
    (tmp_path / "mpii" / "annot").mkdir(parents=True)
    entry = {"image": "a.jpg", "center": [-1, -1], "scale": 2.0}
    (tmp_path / "mpii" / "annot" / "test.json").write_text(json.dumps([entry]))
    rec = load_mpii_records(str(tmp_path), "test", 16)[0]
    assert not rec["joints"].any() and not rec["joints_vis"].any()
    np.testing.assert_allclose(rec["center"], [-2.0, -2.0])  # no shift, still -1
    np.testing.assert_allclose(rec["scale"], [2.0, 2.0])      # no 1.25 padding


# ---------------------------------------------------------------- MPII PCKh

def test_mpii_gt_mat_layout(mpii_gt):
    mat = scipy.io.loadmat(mpii_gt)
    assert mat["pos_gt_src"].shape == (16, 2, 5) and mat["headboxes_src"].shape == (2, 2, 5)
    assert mat["jnt_missing"].shape == (16, 5) and mat["jnt_missing"].sum() == 4
    np.testing.assert_allclose(mat["pos_gt_src"][0, :, 0], [804.0, 711.0])  # 1-based as in json


def test_mpii_gt_as_prediction_is_perfect(mpii_gt, tmp_path):
    recs = load_mpii_records(ROOT, "valid", 24)
    preds = np.stack([r["joints"] for r in recs])
    before = preds.copy()
    table, mean = evaluate_mpii(preds, UNION, mpii_gt, str(tmp_path), test_set="valid")
    assert list(table) == ["Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle", "Mean",
                           "Mean@0.1", "Mean@0.2", "Mean@0.3", "Mean@0.4"]
    assert all(v == pytest.approx(100.0) for v in table.values())
    assert mean == pytest.approx(100.0)
    np.testing.assert_array_equal(preds, before)  # input untouched
    saved = scipy.io.loadmat(str(tmp_path / "pred.mat"))["preds"]
    assert saved.shape == (5, 16, 2)
    np.testing.assert_allclose(saved[0, 0], [804.0, 711.0])  # native order, 1-based


def test_mpii_perturbed_joint(mpii_gt, tmp_path):
    recs = load_mpii_records(ROOT, "valid", 16)
    preds = np.stack([r["joints"] for r in recs])
    preds[0, MPII.index("rank")] += 500.0  # far beyond 0.5 head sizes
    table, mean = evaluate_mpii(preds, MPII, mpii_gt, str(tmp_path), pred_file_name="head2_pred.mat",
                                test_set="valid")
    # Both ankles are unlabeled in persons 2 and 3: rank 2 of 3 visible hit, lank 3 of 3.
    assert table["Ankle"] == pytest.approx(0.5 * (100.0 * 2 / 3 + 100.0))
    assert table["Knee"] == pytest.approx(100.0) and table["Head"] == pytest.approx(100.0)
    # Mean over the 14 joints without pelvis/thorax: 14 * 5 - 4 unlabeled ankles = 66 visible,
    # 65 hit -> 100 * 65 / 66; the miss is far, so every curve column sees the same.
    for key in ("Mean", "Mean@0.1", "Mean@0.2", "Mean@0.3", "Mean@0.4"):
        assert table[key] == pytest.approx(100.0 * 65 / 66)
    assert mean == pytest.approx(100.0 * 65 / 66)
    assert os.path.isfile(tmp_path / "head2_pred.mat")


def test_mpii_threshold_between_grid_points(tmp_path):
    # One person, head top (1, 1) / upper neck (1, 11): head box side 10, head size
    # 0.6 * 10 * sqrt(2) = 8.485. A wrist 1.0 px off has error 0.1179: missed at grid
    # index 11 (0.11, "Mean@0.1"), hit at 0.2. 14 labeled non-pelvis/thorax joints.
    joints = np.zeros((1, 16, 2)) + 50.0
    joints[0, MPII.index("head_top")] = [1.0, 1.0]
    joints[0, MPII.index("upper_neck")] = [1.0, 11.0]
    gt = str(tmp_path / "gt.mat")
    write_mpii_gt_mat((joints, np.ones((1, 16))), gt)
    preds = joints - 1.0                       # back to 0-based
    preds[0, MPII.index("rwri"), 0] += 1.0
    table, _ = evaluate_mpii(preds, MPII, gt, str(tmp_path), test_set="valid")
    assert table["Mean@0.1"] == pytest.approx(100.0 * 13 / 14)
    assert table["Mean@0.2"] == pytest.approx(100.0) and table["Wrist"] == pytest.approx(100.0)


def test_mpii_missing_gt_and_test_split(tmp_path):
    path = mpii_gt_path(str(tmp_path), "validation")
    assert path == os.path.join(str(tmp_path), "mpii", "annot", "gt_validation.mat")
    preds = np.zeros((2, 24, 3))
    with pytest.raises(FileNotFoundError, match="gt_validation.mat"):
        evaluate_mpii(preds, UNION, path, str(tmp_path))
    assert evaluate_mpii(preds, UNION, path, str(tmp_path), test_set="test") == ({"Null": 0}, 0)


# ---------------------------------------------------------------- AIC records

def test_aic_records():
    recs = load_aic_records(ROOT, "validation", 24, IMAGE_SIZE)
    assert len(recs) == 9  # 3 images x 3 humans
    r = recs[0]
    assert r["image_id"] == "054d9ce9201beffc76e5ff2169d2af2f027002ca" and r["human"] == "human1"
    assert os.path.isfile(r["image"])
    # box [279, 55, 492, 599] -> xywh [279, 55, 213, 544]; centre (385.5, 327); w < 0.75 h ->
    # w = 408; scale = [408, 544] / 200 * 1.25.
    np.testing.assert_allclose(r["raw_box"], [279, 55, 213, 544])
    np.testing.assert_allclose(r["center"], [385.5, 327.0])
    np.testing.assert_allclose(r["scale"], [2.55, 3.4], rtol=1e-6)
    # vis = v < 3: v = [1,2,1,2,2,1,2,3,3,1,3,3,1,1] -> rkne (7), rank (8), lkne, lank unlabeled.
    native_vis = r["joints_vis"][[UNION.index(n) for n in AIC.names]]
    np.testing.assert_array_equal(native_vis, [1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 0, 0, 1, 1])
    assert r["joints_vis"].sum() == 10
    # AIC rsho (313, 201) -> union 17; AIC neck (372, 170) -> union 9 (not upper neck 10).
    np.testing.assert_array_equal(r["joints"][17], [313, 201])
    np.testing.assert_array_equal(r["joints"][9], [372, 170])
    assert r["joints_vis"][10] == 0
    native = load_aic_records(ROOT, "validation", 14, IMAGE_SIZE, data_format="zip")
    np.testing.assert_array_equal(native[0]["joints"][AIC.index("neck")], [372, 170])
    assert native[0]["image"].endswith(
        os.path.join("validation", "images.zip@") + "/images/" + r["image_id"] + ".jpg")
    with pytest.raises(FileNotFoundError, match="keypoint_train_annotation.json"):
        load_aic_records(ROOT, "train", 24, IMAGE_SIZE)


# ---------------------------------------------------------------- AIC evaluation

def _aic_gt_preds(num_joints):
    recs = load_aic_records(ROOT, "validation", num_joints, IMAGE_SIZE)
    preds = np.concatenate([np.stack([r["joints"] for r in recs]), np.ones((len(recs), num_joints, 1))],
                           axis=2)
    return recs, preds


def test_aic_gt_as_prediction_is_perfect(tmp_path):
    recs, preds = _aic_gt_preds(24)
    table, mean = evaluate_aic(preds, recs, UNION, AIC_JSON, str(tmp_path))
    assert list(table)[:9] == ["Head", "Neck", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle",
                               "Mean"]
    assert list(table)[-1] == "AP" and table["AP"] == pytest.approx(1.0)
    assert all(table[k] == pytest.approx(100.0) for k in list(table)[:-1])
    assert mean == pytest.approx(100.0)
    assert scipy.io.loadmat(str(tmp_path / "pred.mat"))["preds"].shape == (9, 14, 2)


def test_aic_perturbed_joint(tmp_path):
    recs, preds = _aic_gt_preds(14)
    preds[0, AIC.index("rsho"), :2] += 400.0  # image 1 human1: v == 1 at 6 joints, rsho one of them
    table, _ = evaluate_aic(preds, recs, AIC, AIC_JSON, str(tmp_path))
    # OKS of that human -> 5/6, above thresholds 0.50..0.80 (7 of 10); 8 other humans at 1.0.
    assert table["AP"] == pytest.approx((8 * 10 + 7) / 90.0)
    # rsho labeled (v < 3) in all 9 humans -> 8/9; lsho 9/9.
    assert table["Shoulder"] == pytest.approx(0.5 * (100.0 * 8 / 9 + 100.0))
    # 101 labeled joints in the file, 100 hit.
    assert table["Mean"] == pytest.approx(100.0 * 100 / 101)
    assert table["Mean@0.4"] == pytest.approx(100.0 * 100 / 101)


def test_aic_unpredicted_image_counts_in_normaliser(tmp_path):
    recs, preds = _aic_gt_preds(14)
    table, _ = evaluate_aic(preds[:6], recs[:6], AIC, AIC_JSON, str(tmp_path))
    assert table["AP"] == pytest.approx(6 / 9)  # 3 GT humans of image 3 have no prediction
    assert table["Mean"] == pytest.approx(100.0)


def test_aic_gt_npy(tmp_path):
    recs, preds = _aic_gt_preds(24)
    gt_npy = str(tmp_path / "gt_validation.npy")
    write_aic_gt_npy(AIC_JSON, recs, gt_npy)
    preds[4, UNION.index("lwri"), :2] += 300.0
    from_json, _ = evaluate_aic(preds, recs, UNION, AIC_JSON, str(tmp_path))
    from_npy, _ = evaluate_aic(preds, recs, UNION, AIC_JSON, str(tmp_path), gt_npy=gt_npy)
    assert from_json == pytest.approx(from_npy)
    # lwri labeled in 8 humans (v == 3 for image 1 human2), 7 hit; rwri 8 of 8.
    assert from_npy["Wrist"] == pytest.approx(0.5 * (100.0 * 7 / 8 + 100.0))
    with pytest.raises(FileNotFoundError, match="missing.npy"):
        evaluate_aic(preds, recs, UNION, AIC_JSON, str(tmp_path), gt_npy=str(tmp_path / "missing.npy"))
    bad = copy.deepcopy(recs)
    bad[0]["human"] = "human9"
    with pytest.raises(ValueError, match="human9"):
        evaluate_aic(preds, bad, UNION, AIC_JSON, str(tmp_path))


def test_dataset_sources_from_cfg():
    cfg = SimpleNamespace(
        DATASET=SimpleNamespace(ROOT=ROOT, DATA_FORMAT="jpg"),
        MODEL=SimpleNamespace(NUM_JOINTS=24, IMAGE_SIZE=[192, 256]))
    mpii = MpiiDataset.from_cfg(cfg, "valid", is_train=False)
    assert len(mpii) == 5 and mpii.joint_set is UNION and mpii.native_joint_set is MPII
    assert mpii.flip_pairs == UNION.flip_pairs
    assert mpii.gt_file == os.path.join(ROOT, "mpii", "annot", "gt_valid.mat")
    aic = AicDataset.from_cfg(cfg, "validation")
    assert len(aic) == 9 and aic.native_joint_set is AIC and aic.annotation_file == AIC_JSON
    assert aic.gt_npy_file == os.path.join(ROOT, "ai_challenger", "validation", "gt_validation.npy")
