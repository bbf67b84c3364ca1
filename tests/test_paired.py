"""Paired labeled/unlabeled dataset, epoch draws and loaders on the COCO fixture."""
import os

import numpy as np
import pytest
import torch

from semipose.config import get_defaults
from semipose.data.build import build_train_dataset, build_val_dataset, labeled_joint_ids
from semipose.data.coco import CocoDataset
from semipose.data.dataset import PoseDataset
from semipose.data.keypoints import COCO, UNION, labeled_union_ids
from semipose.data.loaders import build_loader, set_loader_epoch
from semipose.data.paired import PairedDataset
from semipose.transforms.sample import SampleTransform

ROOT = os.path.join(os.path.dirname(__file__), "data", "fixtures")
SIZE, HM = (192, 256), (48, 64)


def identity(crop, rng):
    return crop


def pose_dataset(train_len=-1, seed=3):
    src = CocoDataset(ROOT, "val2017", 24, SIZE, is_train=True, train_len=train_len)
    t = SampleTransform(SIZE, HM, 2, src.flip_pairs, True, joint_set=src.joint_set)
    return PoseDataset(src.records, t, True, seed=seed, source=src)


@pytest.fixture(scope="module")
def paired():
    return PairedDataset(pose_dataset(3), pose_dataset(), labeled_union_ids(COCO),
                         rand_aug=identity, seed=11)


def make_cfg(**opts):
    cfg = get_defaults()
    cfg.DATASET.ROOT = ROOT
    cfg.DATASET.TRAIN_DATASET = "mix_coco_coco"
    cfg.DATASET.TRAIN_SET = "val2017"
    cfg.DATASET.TRAIN_LEN = 4
    cfg.MODEL.NUM_JOINTS = 24
    cfg.MODEL.IMAGE_SIZE = SIZE
    cfg.MODEL.EXTRA.HEATMAP_SIZE = HM
    for k, v in opts.items():
        setattr(cfg, k, v)
    return cfg


def test_length_and_epoch_pairing(paired):
    assert len(paired) == 12 and len(paired.labeled) == 3
    paired.set_epoch(0)
    e0 = paired.labeled_index.copy()
    assert e0.shape == (12,) and e0.min() >= 0 and e0.max() < 3
    paired.set_epoch(1)
    e1 = paired.labeled_index.copy()
    assert not np.array_equal(e0, e1)
    paired.set_epoch(0)
    np.testing.assert_array_equal(paired.labeled_index, e0)  # reproducible
    paired.set_epoch(0, rank=1)
    assert not np.array_equal(paired.labeled_index, e0)      # other DDP rank, other draws
    paired.set_epoch(0)
    item = paired[5]
    lab = paired.labeled.records[e0[5]]
    assert item["labeled"]["meta"]["index"] == e0[5]
    assert item["labeled"]["meta"]["image_id"] == lab["image_id"]


def test_unlabeled_and_twin_share_geometry(paired):
    paired.set_epoch(2)
    for idx in range(4):
        item = paired[idx]
        u, a = item["unlabeled"], item["unlabeled_aug"]
        for k in ("center", "scale", "rotation", "flip", "scale_factor", "index"):
            np.testing.assert_array_equal(u["meta"][k], a["meta"][k])
        assert torch.equal(u["image"], a["image"])  # identity RandAugment -> same pixels
        assert u["meta"]["index"] == idx
    # geometry is drawn (not all crops plain) and differs from the labeled crop's own draw
    metas = [paired[i]["unlabeled"]["meta"] for i in range(12)]
    assert any(m["rotation"] != 0 for m in metas) and len({m["scale_factor"] for m in metas}) > 1


def test_unlabeled_weights_on_labeled_joints(paired):
    item = paired[0]
    w = item["unlabeled"]["target_weight"].numpy()[:, 0]
    assert w.shape == (24,)
    np.testing.assert_array_equal(np.flatnonzero(w), labeled_union_ids(COCO))
    assert w.sum() == 17 and set(np.unique(w)) == {0.0, 1.0}
    np.testing.assert_array_equal(item["unlabeled_aug"]["target_weight"].numpy()[:, 0], w)
    np.testing.assert_array_equal(item["unlabeled"]["meta"]["joints_vis"], w)
    assert labeled_joint_ids(UNION, COCO) == sorted(labeled_union_ids(COCO).tolist())
    assert labeled_joint_ids(COCO, COCO) == list(range(17))


def test_items_are_reproducible_and_order_free(paired):
    paired.set_epoch(3)
    a = paired[7]
    paired[2]
    b = paired[7]
    assert torch.equal(a["labeled"]["image"], b["labeled"]["image"])
    assert torch.equal(a["unlabeled"]["image"], b["unlabeled"]["image"])
    paired.set_epoch(4)
    c = paired[7]
    assert not torch.equal(a["unlabeled"]["image"], c["unlabeled"]["image"])


def test_loader_workers_match_single_process():
    ds = PairedDataset(pose_dataset(3), pose_dataset(), labeled_union_ids(COCO), seed=5)
    batches = {}
    for workers in (0, 2):
        loader = build_loader(ds, 4, workers, shuffle=True, seed=9)
        set_loader_epoch(loader, 1)
        batches[workers] = list(loader)
    assert len(batches[0]) == 3
    for b0, b2 in zip(batches[0], batches[2]):
        assert torch.equal(b0["unlabeled"]["meta"]["index"], b2["unlabeled"]["meta"]["index"])
        assert torch.equal(b0["labeled"]["image"], b2["labeled"]["image"])
        assert b0["unlabeled"]["image"].shape == (4, 3, 256, 192)
        assert b0["labeled"]["target"].shape == (4, 24, 64, 48)
    order = [b["unlabeled"]["meta"]["index"].tolist() for b in batches[0]]
    assert sorted(sum(order, [])) == list(range(12))
    assert ds.epoch == 1


def test_distributed_sampler_partitions():
    ds = pose_dataset()
    seen = []
    for rank in (0, 1):
        loader = build_loader(ds, 3, 0, shuffle=True, distributed=True, seed=1, rank=rank,
                              world_size=2)
        set_loader_epoch(loader, 0)
        seen.append(sum((b["meta"]["index"].tolist() for b in loader), []))
    assert len(seen[0]) == len(seen[1]) == 6 and sorted(seen[0] + seen[1]) == list(range(12))


def test_build_mix_coco_coco():
    ds = build_train_dataset(make_cfg())
    assert isinstance(ds, PairedDataset)
    assert len(ds.labeled) == 4 and len(ds.unlabeled) == 12 and len(ds) == 12
    assert ds.rand_aug is None and "unlabeled_aug" not in ds[0]
    cfg = make_cfg()
    cfg.SSL.HARD.RAND_AUG, cfg.SSL.HARD.RAND_MAGNITUDE = True, 20
    aug = build_train_dataset(cfg)
    item = aug[0]
    assert aug.rand_aug.m == 20 and aug.rand_aug.n == 2
    assert item["unlabeled_aug"]["meta"]["rotation"] == item["unlabeled"]["meta"]["rotation"]
    cfg = make_cfg(RAW_INPUT=True)
    with pytest.raises(FileNotFoundError, match="TEST.USE_GT_BBOX"):
        build_train_dataset(cfg)  # non-training sets use detections unless USE_GT_BBOX
    cfg.TEST.USE_GT_BBOX = True
    raw = build_train_dataset(cfg)
    m = raw[3]["unlabeled"]["meta"]
    assert not raw.unlabeled.transform.is_train and m["rotation"] == 0 and m["scale_factor"] == 1


def test_build_mix_mpii_ai_and_mpii_val(tmp_path):
    from semipose.data.keypoints import MPII
    # both sides read TRAIN_SET: give the MPII slice the AIC split's name
    (tmp_path / "mpii" / "annot").mkdir(parents=True)
    (tmp_path / "mpii" / "annot" / "validation.json").write_bytes(
        open(os.path.join(ROOT, "mpii", "annot", "valid.json"), "rb").read())
    os.symlink(os.path.join(ROOT, "mpii", "images"), tmp_path / "mpii" / "images")
    os.symlink(os.path.join(ROOT, "ai_challenger"), tmp_path / "ai_challenger")
    cfg = make_cfg()
    cfg.DATASET.ROOT = str(tmp_path)
    cfg.DATASET.TRAIN_DATASET, cfg.DATASET.TEST_DATASET = "mix_mpii_ai", "mpii"
    cfg.DATASET.TRAIN_SET = cfg.DATASET.TEST_SET = "validation"
    cfg.MODEL.IMAGE_SIZE, cfg.MODEL.EXTRA.HEATMAP_SIZE = (256, 256), (64, 64)
    ds = build_train_dataset(cfg)
    assert len(ds) == max(len(ds.labeled), len(ds.unlabeled))
    assert ds.labeled.native_joint_set is MPII and ds.unlabeled.image_set == "validation"
    item = ds[0]
    w = item["unlabeled"]["target_weight"].numpy()[:, 0]
    np.testing.assert_array_equal(np.flatnonzero(w), labeled_union_ids(MPII))
    assert item["labeled"]["image"].shape == (3, 256, 256)
    val = build_val_dataset(cfg)
    assert not val.transform.is_train and val.source.gt_file.endswith("gt_validation.mat")
