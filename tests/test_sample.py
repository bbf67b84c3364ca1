"""Per-sample pipeline on a real COCO person: affine of joints, targets, normalisation, flips."""
import os

import cv2
import numpy as np
import pytest

from semipose.data.coco import CocoDataset
from semipose.data.imageio import read_image
from semipose.data.keypoints import UNION
from semipose.transforms.affine import affine_points, get_affine_transform
from semipose.transforms.sample import IMAGENET_MEAN, IMAGENET_STD, SampleTransform, draw_geometry

ROOT = os.path.join(os.path.dirname(__file__), "data", "fixtures")
SIZE, HM = (192, 256), (48, 64)


@pytest.fixture(scope="module")
def records():
    return CocoDataset(ROOT, "val2017", 24, SIZE, is_train=False).records


def transform(is_train, **kw):
    return SampleTransform(SIZE, HM, 2, UNION.flip_pairs, is_train, joint_set=UNION, **kw)


def denormalise(img):
    x = img.numpy().transpose(1, 2, 0) * np.array(IMAGENET_STD) + np.array(IMAGENET_MEAN)
    return x * 255.0


def test_val_crop_maps_joints_and_targets(records):
    rec = records[0]
    s = transform(False)(rec, np.random.default_rng(0), index=0)
    assert s["image"].shape == (3, 256, 192) and s["target"].shape == (24, 64, 48)
    trans = get_affine_transform(rec["center"], rec["scale"], 0, SIZE)
    vis = rec["joints_vis"] > 0
    expect = affine_points(rec["joints"], trans)
    np.testing.assert_allclose(s["meta"]["joints"][vis], expect[vis], rtol=1e-6)
    assert not s["meta"]["joints"][~vis].any()
    # targets peak where the joints land (stride 4, nearest heatmap pixel)
    w = s["target_weight"].numpy()[:, 0]
    for j in np.flatnonzero(w):
        mu = np.trunc(s["meta"]["joints"][j] / 4 + 0.5).astype(int)
        assert s["target"][j, mu[1], mu[0]] == 1.0
    np.testing.assert_array_equal(w, rec["joints_vis"])
    # image: the BGR warp, normalised per channel with the ImageNet constants
    crop = cv2.warpAffine(read_image(rec["image"]), trans, SIZE, flags=cv2.INTER_LINEAR)
    np.testing.assert_allclose(denormalise(s["image"]), crop, atol=1e-3)
    assert s["meta"]["rotation"] == 0 and s["meta"]["scale_factor"] == 1 and not s["meta"]["flip"]
    np.testing.assert_array_equal(s["meta"]["center"], rec["center"])
    assert s["meta"]["image_id"] == 785 and s["meta"]["score"] == 1.0


def test_color_rgb_swaps_channels(records):
    bgr = transform(False)(records[3], None)["image"]
    rgb = transform(False, color_rgb=True)(records[3], None)["image"]
    np.testing.assert_allclose(denormalise(rgb)[..., ::-1], denormalise(bgr), atol=1e-3)


def test_validation_ignores_overrides(records):
    s = transform(False)(records[0], np.random.default_rng(0), rotation=30.0, flip=True)
    assert s["meta"]["rotation"] == 0.0 and not s["meta"]["flip"]


def test_flip_swaps_left_right(records):
    rec = records[0]
    t = transform(True)
    plain = t(rec, np.random.default_rng(0), rotation=0.0, scale_factor=1.0, flip=False)
    flipped = t(rec, np.random.default_rng(0), rotation=0.0, scale_factor=1.0, flip=True)
    assert flipped["meta"]["flip"]
    perm = np.arange(24)
    for a, b in UNION.flip_pairs:
        perm[a], perm[b] = b, a
    pj, fj = plain["meta"]["joints"], flipped["meta"]["joints"]
    vis = plain["meta"]["joints_vis"] > 0
    np.testing.assert_array_equal(flipped["meta"]["joints_vis"], plain["meta"]["joints_vis"][perm])
    # with rotation 0 the mirrored joint lands at x' = crop_width - x (half-pixel convention)
    np.testing.assert_allclose(fj[perm][vis, 0], 192 - pj[vis, 0], atol=1e-3)
    np.testing.assert_allclose(fj[perm][vis, 1], pj[vis, 1], atol=1e-3)
    # crop equals "mirror the whole image, then warp" (the reference order)
    img = read_image(rec["image"])
    c = rec["center"].copy()
    c[0] = img.shape[1] - 1 - c[0]
    ref = cv2.warpAffine(img[:, ::-1].copy(), get_affine_transform(c, rec["scale"], 0, SIZE), SIZE)
    diff = np.abs(denormalise(flipped["image"]) - ref)
    # folding the mirror into the warp matrix only changes fixed-point rounding: <= 1 grey level
    assert diff.max() <= 1.01 and diff.mean() < 0.01
    np.testing.assert_allclose(flipped["meta"]["center"], c)


def test_overrides_and_determinism(records):
    rec = records[4]
    t = transform(True)
    s = t(rec, np.random.default_rng(1), rotation=-20.0, scale_factor=1.2, flip=False)
    assert s["meta"]["rotation"] == -20.0
    np.testing.assert_allclose(s["meta"]["scale"], rec["scale"] * np.float32(1.2), rtol=1e-6)
    trans = get_affine_transform(rec["center"], rec["scale"] * np.float32(1.2), -20.0, SIZE)
    vis = rec["joints_vis"] > 0
    np.testing.assert_allclose(s["meta"]["joints"][vis], affine_points(rec["joints"], trans)[vis],
                               rtol=1e-5)
    a = t(rec, np.random.default_rng(7))
    b = t(rec, np.random.default_rng(7))
    assert np.array_equal(a["image"].numpy(), b["image"].numpy())
    assert a["meta"]["rotation"] == b["meta"]["rotation"]


def test_random_geometry_ranges(records):
    t = transform(True)
    rng = np.random.default_rng(0)
    geos = [t.geometry(records[0], rng, None, None, None)[2] for _ in range(3000)]
    rot = np.array([g.rotation for g in geos])
    sf = np.array([g.scale_factor for g in geos])
    flips = np.array([g.flip for g in geos])
    assert np.abs(rot).max() <= 60 and 0.75 <= sf.min() and sf.max() <= 1.25
    assert abs((rot == 0).mean() - 0.4) < 0.04 and abs(flips.mean() - 0.5) < 0.04
    no_flip = transform(True, flip=False)
    assert not any(no_flip.geometry(records[0], rng, None, None, None)[2].flip for _ in range(50))
    shared = [draw_geometry(rng, 0.25, 30) for _ in range(2000)]
    assert abs(np.mean([g.rotation == 0 for g in shared]) - 0.4) < 0.04


def test_half_body(records):
    rec = records[0]  # 17 visible joints > 8
    t = transform(True, prob_half_body=1.0)
    c, s, _ = t.geometry(rec, np.random.default_rng(3), 0.0, 1.0, False)
    vis = rec["joints_vis"] > 0
    upper = vis & np.array([i >= UNION.index("belly") for i in range(24)])
    lower = vis & ~upper
    candidates = []
    for sel in (upper, lower):
        pts = rec["joints"][sel]
        w, h = pts.max(0) - pts.min(0)
        w, h = max(w, h * 0.75), max(h, w / 0.75)
        candidates.append((pts.mean(0), np.array([w, h]) / 200 * 1.5))
    assert any(np.allclose(c, cc, rtol=1e-5) and np.allclose(s, ss, rtol=1e-5)
               for cc, ss in candidates)
    assert not np.allclose(s, rec["scale"])


def test_pair_shares_one_warp(records):
    t = transform(True)
    plain, twin = t.pair(records[2], np.random.default_rng(5), lambda crop, rng: crop)
    assert np.array_equal(plain["image"].numpy(), twin["image"].numpy())
    plain, inv = t.pair(records[2], np.random.default_rng(5), lambda crop, rng: 255 - crop)
    np.testing.assert_allclose(denormalise(inv["image"]), 255 - denormalise(plain["image"]),
                               atol=1e-3)
    assert inv["meta"]["rotation"] == plain["meta"]["rotation"]
    assert np.array_equal(inv["target"].numpy(), plain["target"].numpy())
