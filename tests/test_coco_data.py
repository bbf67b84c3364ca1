"""COCO records from the real val2017 fixture slice (4 images, 14 annotations, 118 detections)."""
import json
import os
import shutil
import zipfile

import numpy as np
import pytest

from semipose.config import get_defaults
from semipose.data.build import build_train_dataset, build_val_dataset
from semipose.data.coco import (CocoDataset, coco_annotation_path, coco_image_path,
                                coco_image_set, select_data)
from semipose.data.imageio import ImageReadError, close_zip_handles, read_image
from semipose.data.keypoints import COCO, UNION
from semipose.data.loaders import build_loader
from semipose.transforms.affine import box_to_center_scale, sanitize_box

ROOT = os.path.join(os.path.dirname(__file__), "data", "fixtures")
ANN = os.path.join(ROOT, "coco", "annotations", "person_keypoints_val2017.json")
DET = os.path.join(ROOT, "coco", "person_detection_results",
                   "COCO_val2017_detections_AP_H_56_person.json")


def coco(num_joints=24, is_train=False, root=ROOT, **kw):
    return CocoDataset(root, "validation", num_joints, (192, 256), is_train, **kw)


def make_cfg(root=ROOT, **opts):
    cfg = get_defaults()
    cfg.DATASET.ROOT = root
    cfg.DATASET.TRAIN_DATASET = cfg.DATASET.TEST_DATASET = "coco"
    cfg.DATASET.TRAIN_SET = cfg.DATASET.TEST_SET = "val2017"
    cfg.MODEL.NUM_JOINTS = 24
    cfg.MODEL.IMAGE_SIZE = (192, 256)
    cfg.MODEL.EXTRA.HEATMAP_SIZE = (48, 64)
    cfg.TEST.USE_GT_BBOX = True
    for k, v in opts.items():
        node = cfg
        *path, last = k.split(".")
        for p in path:
            node = getattr(node, p)
        setattr(node, last, v)
    return cfg


@pytest.fixture(scope="module")
def ann():
    with open(ANN) as f:
        return json.load(f)


def test_names_and_paths():
    assert coco_image_set("train") == "train2017"
    assert coco_image_set("val") == coco_image_set("validation") == "val2017"
    assert coco_image_set("unlabeled2017") == "unlabeled2017"
    assert coco_annotation_path("r", "val2017").endswith("coco/annotations/person_keypoints_val2017.json")
    assert coco_annotation_path("r", "unlabeled2017").endswith("image_info_unlabeled2017.json")
    assert coco_annotation_path("r", "test-dev2017").endswith("image_info_test-dev2017.json")
    assert coco_image_path("r", "test-dev2017", 5).endswith("images/test2017/000000000005.jpg")
    assert coco_image_path("r", "train2014", 5).endswith("train2014/COCO_train2014_000000000005.jpg")
    assert coco_image_path("r", "val2017", 785, "zip") == "r/coco/images/val2017.zip@/val2017/000000000785.jpg"


def test_gt_records_exclude_empty_annotations(ann):
    ds = coco()
    kept = [a for a in ann["annotations"] if not a["iscrowd"] and max(a["keypoints"]) > 0]
    assert len(ann["annotations"]) == 14 and len(kept) == len(ds.records) == 12
    # json image order, then annotation order within an image
    assert [r["image_id"] for r in ds.records] == [a["image_id"] for a in kept]
    assert ds.image_ids == [785, 40083, 196141, 197388]
    assert ds.image_set == "val2017" and ds.annotation_file == ANN
    assert all(r["score"] == 1.0 for r in ds.records)
    np.testing.assert_allclose(ds.records[1]["raw_box"], kept[1]["bbox"], rtol=1e-6)


def test_center_scale_of_first_person(ann):
    rec = coco().records[0]
    # image 785 is 640x425; bbox (280.79, 44.73, 218.7, 346.68) -> clean (280.79, 44.73, 217.7, 345.68)
    clean = sanitize_box(ann["annotations"][0]["bbox"], 640, 425)
    np.testing.assert_allclose(clean, [280.79, 44.73, 217.7, 345.68], atol=1e-9)
    c, s = box_to_center_scale(clean, 192 / 256)
    np.testing.assert_array_equal(rec["center"], c)
    np.testing.assert_array_equal(rec["scale"], s)
    # by hand: width widened to 345.68 * 0.75, then /200 and x1.25
    np.testing.assert_allclose(rec["center"], [389.64, 217.57], rtol=1e-6)
    np.testing.assert_allclose(rec["scale"], [345.68 * 0.75 / 200 * 1.25, 345.68 / 200 * 1.25], rtol=1e-6)
    assert rec["center"].dtype == np.float32 and rec["scale"].dtype == np.float32


def test_union_mapping(ann):
    ds = coco(24)
    assert ds.joint_set is UNION and ds.native_joint_set is COCO and ds.flip_pairs == UNION.flip_pairs
    kps = np.asarray(ann["annotations"][0]["keypoints"], np.float32).reshape(17, 3)
    rec = ds.records[0]
    assert rec["joints"].shape == (24, 2) and rec["joints_vis"].shape == (24,)
    np.testing.assert_array_equal(rec["joints"][11], kps[0, :2])    # nose -> union 11
    np.testing.assert_array_equal(rec["joints"][14], kps[5, :2])    # lsho -> union 14
    np.testing.assert_array_equal(rec["joints"][3], kps[16, :2])    # rank -> union 3
    absent = [0, 7, 8, 9, 10, 12, 13]
    assert not rec["joints"][absent].any() and not rec["joints_vis"][absent].any()
    assert rec["joints_vis"].sum() == np.minimum(kps[:, 2], 1).sum()


def test_native_order_and_bad_joint_count(ann):
    ds = coco(17)
    assert ds.joint_set is COCO
    for rec, a in zip(ds.records[:3], [a for a in ann["annotations"] if max(a["keypoints"]) > 0]):
        kps = np.asarray(a["keypoints"], np.float32).reshape(17, 3)
        np.testing.assert_array_equal(rec["joints"], kps[:, :2])
        np.testing.assert_array_equal(rec["joints_vis"], np.minimum(kps[:, 2], 1))  # v=1 and v=2 -> 1
    with pytest.raises(ValueError, match="NUM_JOINTS=16"):
        coco(16)


def test_detection_boxes():
    with open(DET) as f:
        dets = json.load(f)
    ds = coco(use_gt_bbox=False, bbox_file=DET, image_thre=0.0)
    assert len(ds.records) == len(dets) == 118
    rec, d = ds.records[0], dets[0]
    c, s = box_to_center_scale(d["bbox"], 192 / 256)  # raw box, no sanitising
    np.testing.assert_array_equal(rec["center"], c)
    np.testing.assert_array_equal(rec["scale"], s)
    assert rec["score"] == pytest.approx(d["score"]) and rec["image_id"] == d["image_id"]
    assert not rec["joints"].any() and rec["joints_vis"].sum() == 17
    thr = coco(use_gt_bbox=False, bbox_file=DET, image_thre=0.5)
    assert len(thr.records) == sum(x["score"] >= 0.5 for x in dets) == 18
    with pytest.raises(ValueError, match="COCO_val2017_detections_AP_H_56_person.json"):
        coco(use_gt_bbox=False, bbox_file=DET, image_thre=2.0)
    # training always uses GT boxes on labeled sets
    assert len(coco(is_train=True, use_gt_bbox=False, bbox_file=DET).records) == 12


def test_train_len_keeps_first_instances():
    full = coco(is_train=True).records
    first = coco(is_train=True, train_len=3).records
    assert [r["raw_box"].tolist() for r in first] == [r["raw_box"].tolist() for r in full[:3]]
    assert len(coco(is_train=False, train_len=3).records) == 12  # not applied outside training


def test_select_data():
    center = np.array([[50.0, 50.0], [50.0, 50.0], [50.0, 50.0]])
    scale = np.full((3, 2), 0.5)  # area 100 x 100 px
    joints = np.zeros((3, 2, 2))
    joints[0] = [[49, 50], [51, 50]]       # centroid on the centre -> ks 1
    joints[1] = [[140, 50], [160, 50]]     # 100 px away -> ks = exp(-1e4 / 800) ~ 0
    vis = np.array([[1, 1], [1, 1], [0, 0]])  # third: nothing visible -> dropped
    np.testing.assert_array_equal(select_data(center, scale, joints, vis), [True, False, False])
    assert 0 < len(coco(is_train=True, select=True).records) <= 12


def test_missing_files_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="images/val2017"):
        coco(root=str(tmp_path))
    (tmp_path / "coco" / "images" / "val2017").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="person_keypoints_val2017.json"):
        coco(root=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="TEST.COCO_BBOX_FILE"):
        coco(use_gt_bbox=False, bbox_file=str(tmp_path / "none.json"))


def _copy_fixture(tmp_path, fmt="jpg"):
    root = tmp_path / "root"
    shutil.copytree(os.path.join(ROOT, "coco", "annotations"), root / "coco" / "annotations")
    src = os.path.join(ROOT, "coco", "images", "val2017")
    if fmt == "zip":
        (root / "coco" / "images").mkdir(parents=True)
        with zipfile.ZipFile(root / "coco" / "images" / "val2017.zip", "w") as z:
            for name in sorted(os.listdir(src)):
                z.write(os.path.join(src, name), f"val2017/{name}")
    else:
        shutil.copytree(src, root / "coco" / "images" / "val2017")
    return root


def test_zip_format_matches_folder(tmp_path):
    root = _copy_fixture(tmp_path, "zip")
    folder_ds = build_val_dataset(make_cfg())
    zip_ds = build_val_dataset(make_cfg(str(root), **{"DATASET.DATA_FORMAT": "zip"}))
    assert zip_ds.records[0]["image"].endswith("val2017.zip@/val2017/000000000785.jpg")
    np.testing.assert_array_equal(read_image(zip_ds.records[0]["image"]),
                                  read_image(folder_ds.records[0]["image"]))
    for i in (0, 5, 11):
        a, b = folder_ds[i], zip_ds[i]
        assert np.array_equal(a["image"].numpy(), b["image"].numpy())
        assert np.array_equal(a["target"].numpy(), b["target"].numpy())
    with pytest.raises(ImageReadError, match="not in archive"):
        read_image(str(root / "coco/images/val2017.zip") + "@/val2017/missing.jpg")
    close_zip_handles()


def test_bad_images_error_or_skip(tmp_path):
    root = _copy_fixture(tmp_path)
    bad = root / "coco" / "images" / "val2017" / "000000040083.jpg"
    bad.write_bytes(b"\xff\xd8 not a jpeg")
    ds = build_val_dataset(make_cfg(str(root)))
    assert ds.records[1]["image"].endswith("000000040083.jpg")
    with pytest.raises(ImageReadError, match="000000040083.jpg.*SKIP_BAD_IMAGES"):
        ds[1]
    with pytest.raises(ImageReadError, match="not found"):
        read_image(str(root / "missing.jpg"))
    skipping = build_val_dataset(make_cfg(str(root), **{"DATASET.SKIP_BAD_IMAGES": True}))
    assert skipping.skipped == 0
    sample = skipping[1]  # image 40083 holds records 1 and 2: another record is used instead
    assert sample["meta"]["image_id"] != 40083 and skipping.skipped >= 1
    n = skipping.skipped
    skipping[0]
    assert skipping.skipped == n
    # counts made inside DataLoader workers reach the main process
    fresh = build_val_dataset(make_cfg(str(root), **{"DATASET.SKIP_BAD_IMAGES": True}))
    batches = list(build_loader(fresh, 4, 2, shuffle=False))
    assert sum(len(b["meta"]["index"]) for b in batches) == 12
    assert fresh.skipped >= 2  # records 1 and 2 share the bad image


def test_val_dataset_exposes_evaluation_inputs():
    val = build_val_dataset(make_cfg())
    assert not val.transform.is_train and len(val) == 12
    assert val.annotation_file == ANN and val.image_set == "val2017"
    assert val.joint_set is UNION and val.native_joint_set is COCO
    assert val.source.image_ids == [785, 40083, 196141, 197388]
    assert sorted(val.source.coco_api().getImgIds()) == sorted(val.source.image_ids)
    assert {"image_id", "score", "center", "scale", "raw_box"} <= set(val.records[0])
    with pytest.raises(AttributeError):
        val.no_such_attribute


def test_registry_and_train_builder():
    ds = build_train_dataset(make_cfg(**{"DATASET.TRAIN_LEN": 5}))
    assert len(ds) == 5 and ds.transform.is_train
    with pytest.raises(KeyError, match="DATASET.TRAIN_DATASET 'nope'"):
        build_train_dataset(make_cfg(**{"DATASET.TRAIN_DATASET": "nope"}))
