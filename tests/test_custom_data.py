"""Custom keypoint datasets (data/custom.py): a converted folder with a dataset description, read
with any joint count; MODEL.NUM_JOINTS 0; the description as the joint space; the templates."""
from __future__ import annotations

import json
import os
import re
from typing import Dict, List, Optional

import cv2
import numpy as np
import pytest
import torch
import yaml

from semipose.config import load_cfg
from semipose.data.build import build_train_dataset, build_val_dataset
from semipose.data.custom import CustomDataset, hidden_labels
from semipose.data.imageio import read_image
from semipose.data.keypoints import (UNION, cfg_joint_space, joint_space_without_dataset,
                                     model_space_of_cfg)
from semipose.data.meta import dataset_meta
from semipose.data.paired import PairedDataset
from semipose.errors import ConfigError, DataError, MissingFileError
from semipose.transforms.affine import box_to_center_scale, sanitize_box

from conftest import tiny

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATES = os.path.join(ROOT, "experiments", "custom")
SUPERVISED = os.path.join(TEMPLATES, "supervised.yaml")
POSECONS = os.path.join(TEMPLATES, "posecons.yaml")
POSEDUAL = os.path.join(TEMPLATES, "posedual.yaml")

# A five-joint toy animal: a head, two paws (upper body) and two feet (lower body).
TOY = {
    "name": "toy5",
    "joints": ["head", "lpaw", "rpaw", "lfoot", "rfoot"],
    "flip_pairs": [["lpaw", "rpaw"], ["lfoot", "rfoot"]],
    "upper_body": ["head", "lpaw", "rpaw"],
    "lower_body": ["lfoot", "rfoot"],
    "skeleton": [["head", "lpaw"], ["head", "rpaw"], ["head", "lfoot"], ["head", "rfoot"]],
    "sigmas": [0.03, 0.04, 0.04, 0.05, 0.05],
}
# (file_name, width, height, split): nested folders, two image formats, two sizes.
IMAGES = [("session1/cam0/f000.png", 120, 100, "train"),
          ("session1/cam0/f001.png", 120, 100, "train"),
          ("session1/cam1/f000.jpg", 96, 128, "train"), ("session2/f007.png", 120, 100, "train"),
          ("val/a/f010.png", 120, 100, "val"), ("val/f011.jpg", 96, 128, "val")]


def _pose(k: int, width: int, height: int, num_joints: int) -> np.ndarray:
    """Joint k's toy pose [J, 2] inside the image: a head above, paws left/right, feet below."""
    cx, cy = width * (0.4 + 0.04 * k), height * (0.45 + 0.03 * k)
    base = np.array([[0, -25], [-18, -5], [18, -5], [-12, 25], [12, 25]], np.float64)
    if num_joints != 5:
        angles = np.linspace(0, 2 * np.pi, num_joints, endpoint=False)
        base = np.stack([22 * np.cos(angles), 22 * np.sin(angles)], 1)
    return base + [cx, cy]


def make_folder(root: str, meta: Optional[Dict] = None, images=IMAGES, num_values: int = 0,
                write_description: bool = True) -> Dict[str, dict]:
    """A converted folder under ``root``: dataset.yaml, annotations/{train,val}.json and images
    drawn with cv2 (a filled circle at each labeled joint). Returns the json contents by split.

    Image 0 holds two animals; joint 'rfoot' (the last) of image 1 is not labeled (v 0).
    ``num_values`` > 0 writes that many keypoint values per annotation instead of 3 J.
    """
    meta = dict(TOY if meta is None else meta)
    names = meta["joints"]
    num = len(names)
    if write_description:
        with open(os.path.join(root, "dataset.yaml"), "w") as f:
            yaml.safe_dump(meta, f, sort_keys=False)
    data = {s: {"images": [], "annotations": [],
                "categories": [{"id": 1, "name": meta["name"], "keypoints": names,
                                "skeleton": []}]} for s in ("train", "val")}
    ann_id = 100
    for k, (file_name, w, h, split) in enumerate(IMAGES if images is None else images):
        image = np.full((h, w, 3), 30 + 10 * k, np.uint8)
        poses = [_pose(k, w, h, num)] + ([_pose(k, w, h, num) - [30, 10]] if k == 0 else [])
        iid = 1000 + k
        data[split]["images"].append({"id": iid, "file_name": file_name, "width": w, "height": h})
        for pose in poses:
            v = np.full(num, 2.0)
            if k == 1:
                v[-1] = 0
            for (x, y), vis in zip(pose, v):
                if vis:
                    cv2.circle(image, (int(round(x)), int(round(y))), 3, (255, 255, 255), -1)
            kps = np.concatenate([np.where(v[:, None] > 0, pose, 0.0), v[:, None]], 1)
            values = [round(float(x), 2) for x in kps.reshape(-1)]
            if num_values:
                values = (values * 2)[:num_values]
            lo, hi = pose[v > 0].min(0) - 6, pose[v > 0].max(0) + 6
            bbox = [round(float(lo[0]), 2), round(float(lo[1]), 2),
                    round(float(hi[0] - lo[0]), 2), round(float(hi[1] - lo[1]), 2)]
            data[split]["annotations"].append({
                "id": ann_id, "image_id": iid, "category_id": 1, "bbox": bbox,
                "keypoints": values, "num_keypoints": int((v > 0).sum()),
                "area": bbox[2] * bbox[3], "iscrowd": 0})
            ann_id += 1
        path = os.path.join(root, "images", *file_name.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        cv2.imwrite(path, image)
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    for split, content in data.items():
        with open(os.path.join(root, "annotations", f"{split}.json"), "w") as f:
            json.dump(content, f)
    return data


@pytest.fixture
def toy_root(tmp_path) -> str:
    root = str(tmp_path / "toy")
    os.makedirs(root)
    make_folder(root)
    return root


def custom_opts(root: str, out: str, *extra: str) -> List[str]:
    """TINY-like overrides (64x64 crops, batches of 4 on the CPU) for a custom folder."""
    return tiny("DATASET.ROOT", root, "OUTPUT_DIR", out, "LOG_DIR", os.path.join(out, "tb"),
                "DATASET.TRAIN_LEN", "-1", *extra)


def read_json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


# ------------------------------------------------------------------ records
def test_records_equal_the_json(toy_root):
    meta = dataset_meta(os.path.join(toy_root, "dataset.yaml"))
    ds = CustomDataset(toy_root, "train", meta, image_size=(64, 96), is_train=True)
    ann = read_json(os.path.join(toy_root, "annotations", "train.json"))
    images = {img["id"]: img for img in ann["images"]}
    assert ds.joint_set is meta and ds.native_joint_set is meta
    assert ds.flip_pairs == ((1, 2), (3, 4))
    assert ds.image_ids == [1000, 1001, 1002, 1003]
    assert ds.annotation_file == os.path.join(toy_root, "annotations", "train.json")
    assert len(ds.records) == len(ann["annotations"]) == 5  # image 0 holds two animals
    for rec, a in zip(ds.records, ann["annotations"]):
        img = images[a["image_id"]]
        kps = np.asarray(a["keypoints"], np.float64).reshape(5, 3)
        assert rec["image_id"] == a["image_id"]
        assert rec["image"] == os.path.join(toy_root, "images", *img["file_name"].split("/"))
        np.testing.assert_array_equal(rec["joints"], kps[:, :2].astype(np.float32))
        np.testing.assert_array_equal(rec["joints_vis"], (kps[:, 2] > 0).astype(np.float32))
        clean = sanitize_box(a["bbox"], img["width"], img["height"], area=a["area"])
        center, scale = box_to_center_scale(np.asarray([clean]), 64 / 96)
        np.testing.assert_array_equal(rec["center"], center[0])
        np.testing.assert_array_equal(rec["scale"], scale[0])
        np.testing.assert_array_equal(rec["raw_box"], np.asarray(a["bbox"], np.float32))
        assert rec["score"] == 1.0
    # image 1's 'rfoot' is not labeled
    assert ds.records[2]["joints_vis"].tolist() == [1, 1, 1, 1, 0]
    assert ds.records[2]["joints"][4].tolist() == [0, 0]
    # TRAIN_LEN keeps the first persons in json image order
    first = CustomDataset(toy_root, "train", meta, (64, 96), is_train=True, train_len=3)
    assert [r["image_id"] for r in first.records] == [1000, 1000, 1001]


def test_images_found_through_nested_file_names(toy_root, tmp_path):
    cfg = load_cfg(SUPERVISED, custom_opts(toy_root, str(tmp_path / "out")))
    val = build_val_dataset(cfg)
    assert [r["image"] for r in val.records] == [
        os.path.join(toy_root, "images", "val", "a", "f010.png"),
        os.path.join(toy_root, "images", "val", "f011.jpg")]
    ann = read_json(os.path.join(toy_root, "annotations", "val.json"))
    for rec, img in zip(val.records, ann["images"]):
        assert read_image(rec["image"]).shape == (img["height"], img["width"], 3)
    sample = val[0]
    assert tuple(sample["image"].shape) == (3, 64, 64)
    assert tuple(sample["target"].shape) == (5, 16, 16)
    # the drawn joints are in the crop: every target has its peak near 1
    assert float(sample["target"].amax(dim=(1, 2)).min()) > 0.5


def test_flip_swaps_the_descriptions_pairs(toy_root, tmp_path):
    cfg = load_cfg(SUPERVISED, custom_opts(toy_root, str(tmp_path / "out"),
                                           "DATASET.PROB_HALF_BODY", "0.3"))
    train = build_train_dataset(cfg)
    t = train.transform
    assert t.flip_pairs == ((1, 2), (3, 4))
    # half-body crops pick the description's halves
    assert t.upper_body.tolist() == [True, True, True, False, False]
    assert t.lower_body.tolist() == [False, False, False, True, True]
    rec = train.records[2]  # 'rfoot' unlabeled
    rng = np.random.default_rng(0)
    plain = t(rec, rng, rotation=0.0, scale_factor=1.0, flip=False)
    flipped = t(rec, rng, rotation=0.0, scale_factor=1.0, flip=True)
    pj, fj = plain["meta"]["joints"], flipped["meta"]["joints"]
    pv, fv = plain["meta"]["joints_vis"], flipped["meta"]["joints_vis"]
    twin = [0, 2, 1, 4, 3]  # head stays, paws and feet swap
    np.testing.assert_array_equal(fv, pv[twin])
    assert fv.tolist() == [1, 1, 1, 0, 1]  # the unlabeled 'rfoot' became the left foot's slot
    labeled = [j for j in range(5) if fv[j] > 0]
    # Mirrored about the crop's centre line (x -> 64 - x in a 64-pixel-wide crop), y unchanged.
    sums = fj[labeled, 0] + pj[[twin[j] for j in labeled], 0]
    np.testing.assert_allclose(sums, 64.0, atol=1e-3)
    np.testing.assert_allclose(fj[labeled, 1], pj[[twin[j] for j in labeled], 1], atol=1e-3)
    # and the targets follow: the flipped 'lpaw' peak is the plain 'rpaw' one, mirrored
    # (16-pixel-wide heatmaps: column c -> 16 - c)
    def peak(target: torch.Tensor):
        row, col = divmod(int(target.argmax()), target.shape[1])
        return row, col
    for j in labeled:
        (fr, fc), (pr, pc) = peak(flipped["target"][j]), peak(plain["target"][twin[j]])
        assert fr == pr and fc + pc == 16, (j, fr, fc, pr, pc)
    assert float(flipped["target_weight"][3]) == 0.0  # the unlabeled foot has no target


# ------------------------------------------------------------ config: NUM_JOINTS 0, joint space
def test_num_joints_0_resolves_to_the_description(toy_root, tmp_path):
    for path in (SUPERVISED, POSECONS, POSEDUAL):
        cfg = load_cfg(path, ["DATASET.ROOT", toy_root])
        assert cfg.MODEL.NUM_JOINTS == 5 and cfg.is_frozen()
        assert cfg.DATASET.JOINT_SPACE == ""
        assert cfg_joint_space(cfg) == os.path.join(toy_root, "dataset.yaml")
        meta = dataset_meta(os.path.join(toy_root, "dataset.yaml"))
        assert model_space_of_cfg(cfg) == (meta, meta)
        assert joint_space_without_dataset(cfg) is meta
    # DATASET.DESCRIPTION elsewhere
    other = tmp_path / "descriptions"
    other.mkdir()
    desc = str(other / "toy.yaml")
    os.replace(os.path.join(toy_root, "dataset.yaml"), desc)
    cfg = load_cfg(SUPERVISED, ["DATASET.ROOT", toy_root, "DATASET.DESCRIPTION", desc])
    assert cfg.MODEL.NUM_JOINTS == 5 and cfg_joint_space(cfg) == desc


def test_num_joints_0_errors(toy_root, tmp_path):
    with pytest.raises(ConfigError, match=r"MODEL.NUM_JOINTS 0 .* only a custom dataset"):
        load_cfg(SUPERVISED, ["DATASET.ROOT", toy_root, "DATASET.TRAIN_DATASET", "coco",
                              "DATASET.TEST_DATASET", "coco"])
    empty = str(tmp_path / "empty")
    os.makedirs(empty)
    with pytest.raises(ConfigError, match=r"description '" +
                       re.escape(os.path.join(empty, "dataset.yaml")) +
                       r"' \(DATASET.ROOT .*\) not found: set DATASET.ROOT to a converted"):
        load_cfg(SUPERVISED, ["DATASET.ROOT", empty])
    # a count given explicitly must match the description
    with pytest.raises(ConfigError, match=r"dataset.yaml has 5 joints but MODEL.NUM_JOINTS is 7"):
        load_cfg(SUPERVISED, ["DATASET.ROOT", toy_root, "MODEL.NUM_JOINTS", "7"])
    with pytest.raises(ConfigError, match=r"description '.*dataset.yaml' .* not found"):
        load_cfg(SUPERVISED, ["DATASET.ROOT", empty, "MODEL.NUM_JOINTS", "5"])
    assert load_cfg(SUPERVISED, ["DATASET.ROOT", toy_root, "MODEL.NUM_JOINTS", "5"]) \
        .MODEL.NUM_JOINTS == 5


def test_a_24_joint_custom_dataset_is_not_the_union(tmp_path):
    root = str(tmp_path / "big")
    os.makedirs(root)
    names = [f"part{k}" for k in range(24)]
    meta = {"name": "many24", "joints": names,
            "flip_pairs": [[names[k], names[k + 12]] for k in range(1, 12)],
            "upper_body": names[:12], "lower_body": names[12:]}
    make_folder(root, meta)
    cfg = load_cfg(SUPERVISED, custom_opts(root, str(tmp_path / "out")))
    own = dataset_meta(os.path.join(root, "dataset.yaml"))
    assert cfg.MODEL.NUM_JOINTS == 24 and cfg.DATASET.JOINT_SPACE == ""
    assert own.num_joints == 24 and own != UNION
    assert model_space_of_cfg(cfg) == (own, own)
    assert joint_space_without_dataset(cfg) is own  # not the union of the built-in sets
    train = build_train_dataset(cfg)
    assert train.joint_set is own
    assert train.transform.flip_pairs == tuple((k, k + 12) for k in range(1, 12))
    assert train.records[0]["joints"].shape == (24, 2)
    assert float(train[0]["target_weight"].sum()) == 24.0


# ------------------------------------------------------------------ errors
def test_missing_files_and_bad_content_name_the_file(toy_root, tmp_path):
    meta = dataset_meta(os.path.join(toy_root, "dataset.yaml"))
    cfg = load_cfg(SUPERVISED, custom_opts(toy_root, str(tmp_path / "out")))
    ann_path = os.path.join(toy_root, "annotations", "train.json")

    # missing image
    gone = os.path.join(toy_root, "images", "session1", "cam1", "f000.jpg")
    os.remove(gone)
    with pytest.raises(MissingFileError) as err:
        CustomDataset(toy_root, "train", meta, (64, 64), is_train=True)
    msg = str(err.value)
    assert ann_path in msg and "'session1/cam1/f000.jpg' not found" in msg and gone in msg
    assert "\n" not in msg
    # ... or skipped under DATASET.SKIP_BAD_IMAGES
    ds = CustomDataset(toy_root, "train", meta, (64, 64), is_train=True, skip_missing_images=True)
    assert [r["image_id"] for r in ds.records] == [1000, 1000, 1001, 1003]

    # missing annotation file
    with pytest.raises(MissingFileError, match=r"annotation file '.*annotations/test.json' not "
                       r"found: DATASET.ROOT must be a converted folder"):
        CustomDataset(toy_root, "test", meta, (64, 64), is_train=False)

    # keypoint count not matching the description
    bad = str(tmp_path / "bad")
    os.makedirs(bad)
    make_folder(bad, num_values=12)
    with pytest.raises(DataError) as err:
        CustomDataset(bad, "train", meta, (64, 64), is_train=True)
    msg = str(err.value)
    assert msg.startswith(os.path.join(bad, "annotations", "train.json") + ": annotation 100 ")
    assert "'session1/cam0/f000.png'" in msg and "key 'keypoints' has 12 values" in msg
    assert "toy5 (5 joints" in msg and "15 are expected" in msg

    # a category whose keypoint names do not fit the description
    ann = read_json(ann_path)
    ann["categories"][0]["keypoints"] = ["a", "b", "c"]
    with open(ann_path, "w") as f:
        json.dump(ann, f)
    with pytest.raises(DataError, match=r"train.json: 'categories' entry 0 \('toy5'\) key "
                       r"'keypoints' lists 3 joints; the description toy5 \(5 joints"):
        CustomDataset(toy_root, "train", meta, (64, 64), is_train=True)

    # nothing labeled: an empty set
    ann = read_json(os.path.join(toy_root, "annotations", "val.json"))
    for a in ann["annotations"]:
        a["keypoints"] = [0] * 15
    with open(os.path.join(toy_root, "annotations", "val.json"), "w") as f:
        json.dump(ann, f)
    with pytest.raises(DataError, match=r"val.json: no labeled instances in set 'val'"):
        build_val_dataset(cfg)

    # missing description (DATASET.ROOT without dataset.yaml), once the config is loaded
    os.remove(os.path.join(toy_root, "dataset.yaml"))
    with pytest.raises(MissingFileError, match=r"dataset description '.*toy/dataset.yaml' "
                       r"\(DATASET.ROOT '.*toy' \+ dataset.yaml\) not found"):
        build_val_dataset(cfg)


def test_missing_description_in_a_folder_without_one(tmp_path):
    root = str(tmp_path / "nodesc")
    os.makedirs(root)
    make_folder(root, write_description=False)
    with pytest.raises(ConfigError, match=r"dataset description '" + re.escape(root) + r"/dataset.yaml'"):
        load_cfg(POSEDUAL, ["DATASET.ROOT", root])


# ------------------------------------------------------------------ mix_custom
def test_mix_custom_pairs_labeled_with_hidden_label_images(toy_root, tmp_path):
    cfg = load_cfg(POSEDUAL, custom_opts(toy_root, str(tmp_path / "out"),
                                         "DATASET.TRAIN_LEN", "2"))
    pair = build_train_dataset(cfg)
    assert isinstance(pair, PairedDataset)
    assert len(pair.labeled) == 2  # TRAIN_LEN on the labeled side only
    assert len(pair) == len(pair.unlabeled) == 5  # every train person, as mix_coco_coco
    for rec in pair.unlabeled.records:
        assert not rec["joints"].any() and not rec["joints_vis"].any()
    assert [r["image"] for r in pair.unlabeled.records] == \
        [r["image"] for r in CustomDataset.from_cfg(cfg, "train", True, train_len=0).records]
    assert pair.unlabeled_mask.tolist() == [1.0] * 5
    loader = torch.utils.data.DataLoader(pair, batch_size=2, shuffle=False)
    batches = list(loader)
    assert len(batches) == 3
    b = batches[0]
    assert tuple(b["labeled"]["image"].shape) == (2, 3, 64, 64)
    assert tuple(b["labeled"]["target"].shape) == (2, 5, 16, 16)
    assert tuple(b["unlabeled"]["image"].shape) == (2, 3, 64, 64)
    assert b["unlabeled"]["target_weight"].flatten().tolist() == [1.0] * 10
    assert float(b["labeled"]["target"].amax()) > 0.5


def test_mix_custom_with_an_unlabeled_folder(toy_root, tmp_path):
    # DATASET.UNLABELED relative to DATASET.ROOT: a folder of images (nested), whole-frame boxes
    folder = os.path.join(toy_root, "unlabeled")
    sizes = {"u0.png": (80, 60), "sub/u1.jpg": (100, 50), "sub/u2.png": (64, 64)}
    for name, (w, h) in sizes.items():
        os.makedirs(os.path.dirname(os.path.join(folder, name)), exist_ok=True)
        cv2.imwrite(os.path.join(folder, name), np.full((h, w, 3), 90, np.uint8))
    cfg = load_cfg(POSECONS, custom_opts(toy_root, str(tmp_path / "out"),
                                         "DATASET.UNLABELED", "unlabeled"))
    pair = build_train_dataset(cfg)
    assert len(pair.labeled) == 5 and len(pair.unlabeled) == 3
    assert len(pair) == 5  # an epoch walks the larger side, as every paired set
    by_image = {os.path.relpath(r["image"], folder).replace(os.sep, "/"): r
                for r in pair.unlabeled.records}
    assert sorted(by_image) == sorted(sizes)
    for name, (w, h) in sizes.items():
        rec = by_image[name]
        center, scale = box_to_center_scale(np.array([0.0, 0.0, w, h]), 1.0)  # 64x64 crops
        np.testing.assert_array_equal(rec["center"], center)
        np.testing.assert_array_equal(rec["scale"], scale)
        assert rec["joints"].shape == (5, 2) and not rec["joints_vis"].any()
    b = next(iter(torch.utils.data.DataLoader(pair, batch_size=3)))
    assert tuple(b["unlabeled"]["image"].shape) == (3, 3, 64, 64)
    assert tuple(b["labeled"]["target"].shape) == (3, 5, 16, 16)


def test_mix_custom_video_frames_cached_where_the_config_says(toy_root, tmp_path):
    # DATASET.UNLABELED_CACHE (relative to DATASET.ROOT): the decoded frames go there, not beside
    # the videos (a read-only video folder), and the records read the cached JPEGs
    videos = tmp_path / "videos"
    videos.mkdir()
    writer = cv2.VideoWriter(str(videos / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10,
                             (64, 48))
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot write MJPG .avi files")
    for i in range(6):
        frame = np.zeros((48, 64, 3), np.uint8)
        frame[:, i * 8:i * 8 + 8] = 255
        writer.write(frame)
    writer.release()
    cfg = load_cfg(POSECONS, custom_opts(toy_root, str(tmp_path / "out"),
                                         "DATASET.UNLABELED", str(videos),
                                         "DATASET.UNLABELED_EVERY", "2",
                                         "DATASET.UNLABELED_CACHE", "frame_cache"))
    pair = build_train_dataset(cfg)
    cache = os.path.join(toy_root, "frame_cache")
    assert len(pair.unlabeled) == 3  # frames 0, 2, 4
    assert all(r["image"].startswith(cache) for r in pair.unlabeled.records)
    assert sorted(os.listdir(os.path.join(cache, "clip.avi")))[:3] == [
        "000000.jpg", "000002.jpg", "000004.jpg"]
    assert not os.path.exists(videos / ".frames_cache")


def test_hidden_labels_copies():
    rec = {"image": "a.png", "joints": np.ones((3, 2), np.float32),
           "joints_vis": np.ones(3, np.float32), "center": np.zeros(2)}
    out = hidden_labels([rec])[0]
    assert out["image"] == "a.png" and out["center"] is rec["center"]
    assert not out["joints"].any() and not out["joints_vis"].any()
    assert rec["joints"].all()  # the labeled record keeps its labels


# ------------------------------------------------------------------ a short run
def test_posedual_template_trains_one_epoch(toy_root, tmp_path):
    from semipose.engine.trainer import Trainer
    from semipose.evaluation.registry import EVALUATORS
    from semipose.utils.dist import DistInfo

    assert "custom" in EVALUATORS
    out = str(tmp_path / "out")
    cfg = load_cfg(POSEDUAL, custom_opts(toy_root, out, "TRAIN.END_EPOCH", "1",
                                         "TRAIN.LR_STEP", "[5]", "TEST.INTERVAL", "1"))
    trainer = Trainer(cfg, POSEDUAL, DistInfo(), progress=False)
    results = trainer.fit()
    assert list(results) == ["net1", "net2", "ensemble"]
    for net in results:
        metrics, main = results[net]
        assert np.isfinite(main)
    with open(os.path.join(trainer.out_dir, "history.json")) as f:
        hist = json.load(f)
    assert len(hist["epoch/loss"]) == 1 and np.isfinite(hist["epoch/loss"][0][1])

    # The trained model in inference (demo, export): the description's joints, flip pairs and
    # skeleton, with the flip test on.
    from semipose.engine.visualize import draw_people
    from semipose.inference import PoseEstimator, load_method
    meta = dataset_meta(os.path.join(toy_root, "dataset.yaml"))
    method, _ = load_method(cfg, os.path.join(trainer.out_dir, "final_state.pth.tar"), "cpu")
    est = PoseEstimator(method, cfg, "cpu", net="ensemble", flip_test=True)
    assert est.joint_set is meta and est.model_set is meta
    assert est.transform.flip_pairs == ((1, 2), (3, 4))
    image = read_image(os.path.join(toy_root, "images", "val", "f011.jpg"))
    kpts = est(image, np.array([[10.0, 10.0, 70.0, 100.0]]))
    assert kpts.shape == (1, 5, 3) and np.isfinite(kpts).all()
    drawn = draw_people(image, kpts, [[10, 10, 70, 100]], [1.0], est.joint_set, thr=0.0)
    assert drawn.shape == image.shape and (drawn != image).any()
