"""The heatmap codec (transforms/codec.py): one settings object from the config, encode/decode
round trips, both refinements, the flip-test helpers, and the pipelines that take it."""
import dataclasses

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from semipose.config import get_defaults
from semipose.data.keypoints import UNION
from semipose.errors import ConfigError
from semipose.evaluation.predict import predict
from semipose.transforms.affine import affine_points, get_affine_transform
from semipose.transforms.codec import Codec
from semipose.transforms.heatmap import (flip_back, gaussian_targets, generate_target,
                                         get_final_preds, shift_flipped)
from semipose.transforms.sample import SampleTransform

IMAGE, HEAT = (192, 256), (48, 64)  # (w, h); 4 crop pixels per heatmap pixel on both axes
STRIDE = 4.0
CODEC = Codec(image_size=IMAGE, heatmap_size=HEAT, sigma=2.0)


def _round_trip(codec, joints_image, center, scale, rot):
    """Image-pixel joints [J, 2] -> crop pixels (the sample pipeline's affine) -> encode ->
    decode with the same box -> image pixels [J, 2] and maxvals [J]."""
    crop = affine_points(joints_image, get_affine_transform(center, scale, rot, IMAGE))
    target, weight = codec.encode(crop, np.ones(len(crop), np.float32))
    assert np.all(weight == 1)
    coords, maxvals = codec.decode(target[None], center[None], scale[None], [rot])
    return coords[0], maxvals[0, :, 0]


def _grid_joints(center, scale, rot, rng, n=20):
    """Joints whose crop position is an exact heatmap pixel (k * stride), at least 8 heatmap
    pixels inside the map so that no Gaussian window and no DARK stencil touches a border."""
    k = np.stack([rng.integers(8, HEAT[0] - 8, n), rng.integers(8, HEAT[1] - 8, n)], 1)
    crop = k * STRIDE
    return affine_points(crop, get_affine_transform(center, scale, rot, IMAGE, inv=True))


# ------------------------------------------------------------------------------ round trip
@pytest.mark.parametrize("post_type", ["shift", "dark"])
@pytest.mark.parametrize("scale,rot", [((0.96, 1.28), 0.0), ((1.5, 2.0), 0.0),
                                       ((1.2, 1.6), 25.0)])
def test_round_trip_at_heatmap_pixels_is_exact(post_type, scale, rot):
    """A joint on a heatmap pixel centre gets a target symmetric about its peak: the quarter
    offset sees equal neighbours (sign 0, no move) and DARK a zero gradient, so the decoded
    keypoint is the input joint. Tolerance 1e-3 image px: only the float32 output and the
    float64 affine round trip (image -> crop -> heatmap -> image) differ from exact."""
    rng = np.random.default_rng(0)
    center, scale = np.array([321.5, 240.25]), np.asarray(scale)
    joints = _grid_joints(center, scale, rot, rng)
    codec = dataclasses.replace(CODEC, post_type=post_type)
    got, maxvals = _round_trip(codec, joints, center, scale, rot)
    np.testing.assert_allclose(got, joints, rtol=0, atol=1e-3)
    np.testing.assert_array_equal(maxvals, 1.0)  # the peak sample of the patch is exp(0)


@pytest.mark.parametrize("post_type", ["shift", "dark"])
def test_round_trip_of_any_joint_is_within_half_a_heatmap_pixel(post_type):
    """Encoding rounds a joint to the nearest heatmap pixel (mu = int(x / stride + 0.5)) and the
    target is symmetric about that pixel, so neither refinement can recover the sub-pixel part:
    the decoded keypoint is within half a heatmap pixel per axis (0.5 * stride crop px, times
    the box's image px per crop px), plus 1e-3 for float rounding."""
    rng = np.random.default_rng(1)
    center, scale = np.array([400.0, 300.0]), np.array([1.5, 2.0])
    crop = np.stack([rng.uniform(40, IMAGE[0] - 40, 50), rng.uniform(40, IMAGE[1] - 40, 50)], 1)
    joints = affine_points(crop, get_affine_transform(center, scale, 0.0, IMAGE, inv=True))
    codec = dataclasses.replace(CODEC, post_type=post_type)
    got, _ = _round_trip(codec, joints, center, scale, 0.0)
    image_px_per_crop_px = scale[0] * 200 / IMAGE[0]
    bound = 0.5 * STRIDE * image_px_per_crop_px + 1e-3
    err = np.abs(got - joints)
    assert err.max() <= bound
    assert err.max() > 0.25 * bound  # the quantisation is real: the bound is not vacuous
    # the decoded position is exactly the rounded heatmap pixel, mapped back
    rounded = np.trunc(crop / STRIDE + 0.5) * STRIDE
    expect = affine_points(rounded, get_affine_transform(center, scale, 0.0, IMAGE, inv=True))
    np.testing.assert_allclose(got, expect, rtol=0, atol=1e-3)


# ------------------------------------------------------------------------------ from_cfg
# (config key, new value, codec field, expected field value)
CFG_KEYS = [
    ("MODEL.IMAGE_SIZE", (192, 256), "image_size", (192, 256)),
    ("MODEL.EXTRA.HEATMAP_SIZE", (48, 64), "heatmap_size", (48, 64)),
    ("MODEL.EXTRA.SIGMA", 3.0, "sigma", 3.0),
    ("LOSS.USE_TARGET_WEIGHT", False, "use_target_weight", False),
    ("TEST.FLIP_TEST", True, "flip_test", True),
    ("TEST.SHIFT_HEATMAP", False, "shift_heatmap", False),
    ("TEST.POST_PROCESS", False, "post_process", False),
    ("TEST.POST_TYPE", "dark", "post_type", "dark"),
]


def _cfg_with(key, value):
    cfg = get_defaults()
    node = cfg
    *parents, leaf = key.split(".")
    for p in parents:
        node = node[p]
    node[leaf] = value
    return cfg


def test_from_cfg_reads_the_defaults():
    cfg = get_defaults()
    codec = Codec.from_cfg(cfg)
    assert codec == Codec(image_size=tuple(cfg.MODEL.IMAGE_SIZE),
                          heatmap_size=tuple(cfg.MODEL.EXTRA.HEATMAP_SIZE),
                          sigma=cfg.MODEL.EXTRA.SIGMA, target_type=cfg.MODEL.EXTRA.TARGET_TYPE,
                          use_target_weight=cfg.LOSS.USE_TARGET_WEIGHT,
                          flip_test=cfg.TEST.FLIP_TEST, shift_heatmap=cfg.TEST.SHIFT_HEATMAP,
                          post_process=cfg.TEST.POST_PROCESS, post_type=cfg.TEST.POST_TYPE)


@pytest.mark.parametrize("key,value,field,expected", CFG_KEYS, ids=[k[0] for k in CFG_KEYS])
def test_from_cfg_reads_each_key(key, value, field, expected):
    base = Codec.from_cfg(get_defaults())
    assert getattr(base, field) != expected  # the change is visible, not the default
    codec = Codec.from_cfg(_cfg_with(key, value))
    assert getattr(codec, field) == expected
    # nothing else moved
    assert dataclasses.replace(codec, **{field: getattr(base, field)}) == base


def test_from_cfg_rejects_an_unknown_target_type_naming_the_key():
    with pytest.raises(ConfigError, match="MODEL.EXTRA.TARGET_TYPE"):
        Codec.from_cfg(_cfg_with("MODEL.EXTRA.TARGET_TYPE", "offset"))
    with pytest.raises(ConfigError, match="TEST.POST_TYPE"):
        Codec(post_type="taylor")
    with pytest.raises(ConfigError, match="MODEL.IMAGE_SIZE"):
        Codec(image_size=(192,), heatmap_size=HEAT, sigma=2)


def test_settings_are_frozen_and_overridable():
    with pytest.raises(dataclasses.FrozenInstanceError):
        CODEC.sigma = 3.0
    same = CODEC.with_overrides(flip_test=None, post_type=None)
    assert same == CODEC
    dark = CODEC.with_overrides(flip_test=True, post_type="dark", shift_heatmap=False)
    assert (dark.flip_test, dark.post_type, dark.shift_mode) == (True, "dark", "grid")
    assert Codec(image_size=[192, 256], heatmap_size=[48, 64], sigma=2) == CODEC  # normalised


def test_describe_is_the_results_md_wording():
    assert CODEC.describe() == "flip test off, shift heatmap on, sub-pixel refinement shift"
    off = CODEC.with_overrides(flip_test=True, shift_heatmap=False, post_process=False)
    assert off.describe() == "flip test on, shift heatmap off, sub-pixel refinement off"
    from semipose.engine.validate import settings_line
    cfg = _cfg_with("TEST.POST_TYPE", "dark")
    assert settings_line(cfg) == (
        f"flip test off, shift heatmap on, sub-pixel refinement dark, detection boxes "
        f"{cfg.TEST.COCO_BBOX_FILE} (DATASET.TEST_DATASET {cfg.DATASET.TEST_DATASET}, "
        f"TEST_SET {cfg.DATASET.TEST_SET})")


# ------------------------------------------------------------------------------ encode
def test_encode_is_generate_target():
    rng = np.random.default_rng(2)
    joints = rng.uniform(-30, 260, (24, 2)).astype(np.float32)
    vis = (rng.random(24) > 0.3).astype(np.float32)
    target, weight = CODEC.encode(joints, vis)
    ref_t, ref_w = generate_target(joints, vis, IMAGE, HEAT, 2.0)
    np.testing.assert_array_equal(target, ref_t)
    np.testing.assert_array_equal(weight, ref_w)
    assert target.shape == (24, HEAT[1], HEAT[0]) and weight.shape == (24, 1)


def test_encode_batch_equals_encode_per_sample():
    rng = np.random.default_rng(3)
    joints = rng.uniform(-30, 260, (3, 24, 2)).astype(np.float32)
    vis = (rng.random((3, 24)) > 0.3).astype(np.float32)
    patch = torch.from_numpy(CODEC.target_patch())
    target, weight = CODEC.encode_batch(torch.from_numpy(joints), torch.from_numpy(vis), patch)
    ref_t, ref_w = gaussian_targets(torch.from_numpy(joints), torch.from_numpy(vis), IMAGE, HEAT,
                                    2.0)
    assert torch.equal(target, ref_t) and torch.equal(weight, ref_w)
    for n in range(3):
        t, w = CODEC.encode(joints[n], vis[n])
        assert torch.equal(target[n], torch.from_numpy(t))
        assert torch.equal(weight[n], torch.from_numpy(w))


def test_a_decode_only_codec_cannot_encode():
    codec = Codec(post_type="dark")
    with pytest.raises(ValueError, match="decoding only"):
        codec.encode(np.zeros((1, 2)), np.ones(1))
    with pytest.raises(ValueError, match="decoding only"):
        SampleTransform(codec=codec, flip_pairs=UNION.flip_pairs)


def test_sample_transform_takes_the_codec_or_its_sizes():
    by_sizes = SampleTransform(IMAGE, HEAT, 2, UNION.flip_pairs, False)
    by_codec = SampleTransform(codec=CODEC, flip_pairs=UNION.flip_pairs)
    assert by_sizes.codec == by_codec.codec == CODEC
    assert (by_codec.image_size, by_codec.heatmap_size, by_codec.sigma) == (IMAGE, HEAT, 2.0)
    with pytest.raises(TypeError, match="not both"):
        SampleTransform(IMAGE, HEAT, 2, UNION.flip_pairs, False, codec=CODEC)
    with pytest.raises(TypeError, match="flip_pairs"):
        SampleTransform(codec=CODEC)


def test_dataset_construction_passes_the_configs_codec():
    from semipose.transforms.device_pipeline import DeviceStage, PlanTransform
    cfg = _cfg_with("MODEL.EXTRA.SIGMA", 1.5)
    codec = Codec.from_cfg(cfg)
    for kind in (SampleTransform, PlanTransform):
        t = kind.from_cfg(cfg, True, UNION.flip_pairs, joint_set=UNION)
        assert t.codec == codec
        shared = kind.from_cfg(cfg, True, UNION.flip_pairs, joint_set=UNION, codec=codec)
        assert shared.codec is codec
    stage = DeviceStage(PlanTransform.from_cfg(cfg, True, UNION.flip_pairs, codec=codec))
    assert stage.codec is codec
    assert torch.equal(stage.patch, torch.from_numpy(codec.target_patch()))


# ------------------------------------------------------------------------------ decode
def _asymmetric_maps(rng):
    """Heatmaps [2, 24, 64, 48] with off-centre peaks (sub-pixel Gaussians), so that the two
    refinements move the argmax differently."""
    ys, xs = np.mgrid[0:HEAT[1], 0:HEAT[0]]
    centres = np.stack([rng.uniform(6, 42, (2, 24)), rng.uniform(6, 58, (2, 24))], -1)
    d2 = (xs - centres[..., :1, None]) ** 2 + (ys - centres[..., 1:, None]) ** 2
    return np.exp(-d2 / 8.0).astype(np.float32), centres


def test_shift_and_dark_are_both_reachable():
    rng = np.random.default_rng(4)
    hm, centres = _asymmetric_maps(rng)
    center, scale = np.array([[96.0, 128.0]] * 2), np.array([[0.96, 1.28]] * 2)
    got = {}
    for post_type in ("shift", "dark"):
        cfg = _cfg_with("TEST.POST_TYPE", post_type)
        got[post_type], maxvals = Codec.from_cfg(cfg).decode(hm, center, scale)
        ref, ref_max = get_final_preds(hm, center, scale, post_type=post_type)
        np.testing.assert_array_equal(got[post_type], ref)
        np.testing.assert_array_equal(maxvals, ref_max)
    argmax, _ = Codec.from_cfg(_cfg_with("TEST.POST_PROCESS", False)).decode(hm, center, scale)
    np.testing.assert_array_equal(argmax, get_final_preds(hm, center, scale,
                                                          post_process=False)[0])
    # image px = heatmap px * 4 here; the quarter step moves by 1 image px, DARK lands on the
    # true sub-pixel centre of these exact Gaussians
    truth = centres * 4.0
    assert np.abs(got["dark"] - truth).max() < 0.05 * 4
    assert np.abs(got["shift"] - truth).max() > 0.2 * 4
    assert not np.array_equal(got["shift"], got["dark"])
    assert not np.array_equal(got["shift"], argmax)


@pytest.mark.parametrize("as_torch", [False, True])
def test_flip_back_is_an_involution_that_swaps_pairs(as_torch):
    rng = np.random.default_rng(5)
    hm = rng.random((2, 24, 8, 6)).astype(np.float32)
    x = torch.from_numpy(hm) if as_torch else hm
    once = Codec.flip_back(x, UNION.flip_pairs)
    twice = Codec.flip_back(once, UNION.flip_pairs)
    once, twice = (np.asarray(t) for t in (once, twice))
    np.testing.assert_array_equal(twice, hm)
    for a, b in UNION.flip_pairs:
        np.testing.assert_array_equal(once[:, a], hm[:, b, :, ::-1])
        np.testing.assert_array_equal(once[:, b], hm[:, a, :, ::-1])
    assert not np.array_equal(once, hm)


@pytest.mark.parametrize("shift_heatmap", [True, False])
def test_unflip_and_merge_are_the_flip_test_formula(shift_heatmap):
    rng = np.random.default_rng(6)
    plain = torch.from_numpy(rng.random((2, 24, 16, 12)).astype(np.float32))
    flipped = torch.from_numpy(rng.random((2, 24, 16, 12)).astype(np.float32))
    codec = CODEC.with_overrides(shift_heatmap=shift_heatmap)
    aligned = shift_flipped(flip_back(flipped, UNION.flip_pairs),
                            "shift" if shift_heatmap else "grid")
    assert torch.equal(codec.unflip(flipped, UNION.flip_pairs), aligned)
    assert torch.equal(codec.merge_flip(plain, flipped, UNION.flip_pairs),
                       (plain + aligned) * 0.5)


def test_predict_with_a_codec_equals_the_keyword_settings():
    """predict(codec=...) and predict(flip_test=..., shift_mode=..., post_type=...) agree, and
    keywords override the codec's values."""
    rng = np.random.default_rng(7)
    hm, _ = _asymmetric_maps(rng)
    samples = [{"image": torch.from_numpy(hm[i]),
                "meta": {"image_id": i, "center": np.array([96.0, 128.0], np.float32),
                         "scale": np.array([0.96, 1.28], np.float32), "rotation": 0.0,
                         "score": 1.0, "raw_box": np.zeros(4, np.float32), "index": i}}
               for i in range(2)]
    loader = DataLoader(samples, batch_size=2)
    models = {"m": lambda x: x}  # identity: the image is the heatmap
    codec = CODEC.with_overrides(flip_test=True, shift_heatmap=False, post_type="dark")
    by_codec = predict(models, loader, "cpu", codec=codec, flip_pairs=UNION.flip_pairs,
                       progress=False)["preds"]["m"]
    by_keywords = predict(models, loader, "cpu", flip_test=True, flip_pairs=UNION.flip_pairs,
                          shift_mode="grid", post_type="dark", progress=False)["preds"]["m"]
    np.testing.assert_array_equal(by_codec, by_keywords)
    overridden = predict(models, loader, "cpu", codec=codec, flip_test=False,
                         progress=False)["preds"]["m"]
    plain_dark = predict(models, loader, "cpu", post_type="dark", progress=False)["preds"]["m"]
    np.testing.assert_array_equal(overridden, plain_dark)
    assert not np.array_equal(by_codec, plain_dark)
