"""Batch tensor ops of the hard view: theta, warp, argmax, Joint Cutout (BEHAVIOR G8, G9)."""
import math

import pytest
import torch

from semipose.transforms.batch import (choose_joints, cutout_boxes, hard_affine_theta,
                                       joint_cutout, max_preds_tensor, theta_from, warp,
                                       warp_points)

ATOL = 1e-5


# ---------------------------------------------------------------- G9: theta and grid_sample
@pytest.mark.parametrize("rot,scale,expected", [
    (0, 1, [[1, 0, 0], [0, 1, 0]]),
    (30, 1, [[0.8660254, 0.5, 0], [-0.5, 0.8660254, 0]]),
    (0, 1.25, [[1.25, 0, 0], [0, 1.25, 0]]),
    (-20, 0.8, [[0.75175410, -0.27361611, 0], [0.27361611, 0.75175410, 0]]),
])
def test_theta_golden(rot, scale, expected):
    theta = theta_from(rot, scale)
    assert theta.shape == (1, 2, 3) and theta.dtype == torch.float32
    torch.testing.assert_close(theta[0], torch.tensor(expected, dtype=torch.float32),
                               atol=ATOL, rtol=0)


@pytest.mark.parametrize("align_corners", [False, True])
def test_warp_zoom_out_golden(align_corners):
    x = torch.zeros(1, 1, 8, 6)
    x[0, 0, 1, 1] = 1
    out = warp(x, theta_from(0, 1.25), align_corners=align_corners)[0, 0]
    expected = torch.zeros(8, 6)
    expected[1, 1], expected[1, 2], expected[2, 1], expected[2, 2] = 0.2344, 0.0469, 0.2344, 0.0469
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=0)


def test_warp_rot90_golden_non_square():
    x = torch.arange(48, dtype=torch.float32).reshape(1, 1, 8, 6)
    out = warp(x, theta_from(90, 1))[0, 0]
    expected = torch.tensor([
        [35.875, 28.875, 21.875, 14.875, 7.875, 0.875],
        [41.625, 33.625, 25.625, 17.625, 9.625, 1.625],
        [42.375, 34.375, 26.375, 18.375, 10.375, 2.375],
        [43.125, 35.125, 27.125, 19.125, 11.125, 3.125],
        [43.875, 35.875, 27.875, 19.875, 11.875, 3.875],
        [44.625, 36.625, 28.625, 20.625, 12.625, 4.625],
        [45.375, 37.375, 29.375, 21.375, 13.375, 5.375],
        [40.25, 33.25, 26.25, 19.25, 12.25, 5.25]])
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=0)


def test_warp_keeps_dtype_and_theta_precision():
    x = torch.rand(2, 3, 16, 12)
    theta = theta_from(torch.tensor([10.0, -35.0]), torch.tensor([0.9, 1.2]))
    ref = warp(x, theta)
    low = warp(x.to(torch.bfloat16), theta)
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), ref, atol=2e-2, rtol=0)


def test_hard_affine_theta_ranges_and_seed():
    g = torch.Generator().manual_seed(3)
    theta = hard_affine_theta(20000, 0.25, 30, g, "cpu")
    assert theta.shape == (20000, 2, 3) and theta.dtype == torch.float32
    a = theta[:, :, :2]
    scale = torch.sqrt(torch.linalg.det(a))
    rot = torch.rad2deg(torch.atan2(a[:, 0, 1], a[:, 0, 0]))
    assert scale.min() >= 0.75 - 1e-6 and scale.max() <= 1.25 + 1e-6
    assert rot.abs().max() <= 60 + 1e-4
    assert (theta[:, :, 2] == 0).all()
    # rotation applied with probability 0.8: about 20 % exactly zero
    zero_frac = (rot == 0).float().mean().item()
    assert abs(zero_frac - 0.2) < 0.02
    # clipped at 1 +- sf: about 31.7 % of N(1, sf) falls outside, so the bounds are hit often
    assert ((scale - 1.25).abs() < 1e-5).float().mean() > 0.1
    again = hard_affine_theta(20000, 0.25, 30, torch.Generator().manual_seed(3), "cpu")
    torch.testing.assert_close(theta, again, atol=0, rtol=0)


def test_warped_heatmap_follows_warped_keypoint():
    """A Gaussian at a point, warped with theta, peaks where warp_points maps the point."""
    h, w = 64, 48
    g = torch.Generator().manual_seed(0)
    theta = hard_affine_theta(16, 0.25, 30, g, "cpu")
    pts = torch.stack([torch.rand(16, generator=g) * 16 + 16,
                       torch.rand(16, generator=g) * 24 + 20], -1)  # x, y near the centre
    yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    hm = torch.exp(-((xx - pts[:, 0, None, None]) ** 2 + (yy - pts[:, 1, None, None]) ** 2) / 8)
    for align in (False, True):
        out = warp(hm[:, None], theta, align_corners=align)
        peak, _ = max_preds_tensor(out)
        mapped = warp_points(pts[:, None], theta, w, h, align_corners=align)
        assert (peak - mapped).abs().max() <= 1.0


def test_warp_points_identity_and_inverse():
    pts = torch.tensor([[[3.0, 5.0], [40.5, 60.25]]])
    ident = theta_from(0, 1)
    torch.testing.assert_close(warp_points(pts, ident, 48, 64), pts, atol=1e-5, rtol=0)


# ---------------------------------------------------------------- G8: argmax and cutout
def test_max_preds_tensor_golden():
    hm = torch.zeros(1, 2, 64, 48)
    hm[0, 0, 40, 10] = 1
    hm[0, 1, 5, 47] = 2
    coords, maxvals = max_preds_tensor(hm)
    assert coords.dtype == torch.float32
    torch.testing.assert_close(coords, torch.tensor([[[10.0, 40.0], [47.0, 5.0]]]))
    torch.testing.assert_close(maxvals, torch.tensor([[[1.0], [2.0]]]))


def test_max_preds_tensor_keeps_negative_maxima():
    hm = -torch.ones(1, 1, 64, 48)
    hm[0, 0, 5, 7] = -0.5
    coords, maxvals = max_preds_tensor(hm)
    torch.testing.assert_close(coords, torch.tensor([[[7.0, 5.0]]]))
    torch.testing.assert_close(maxvals, torch.tensor([[[-0.5]]]))


G8_JOINTS = torch.tensor([[[96.0, 128.0], [20.0, 240.0], [180.0, 10.0]]])
G8_JITTER = torch.tensor([[[6.6135, 2.6692], [0.6168, 6.2132], [-4.5191, -1.6613]]])
G8_HALF = torch.tensor([[[16, 13], [13, 10], [12, 11]]])


def test_cutout_boxes_golden_reference_clamp_swap():
    mask = cutout_boxes(G8_JOINTS, G8_JITTER, G8_HALF, torch.tensor([[0, 1]]), 256, 192,
                        "reference")
    assert mask.shape == (1, 256, 192)
    assert int(mask.sum()) == 832
    expected = torch.zeros(256, 192, dtype=torch.bool)
    expected[117:143, 86:118] = True
    assert torch.equal(mask[0], expected)
    # joint 1 alone: its box y[236, 256) is clamped to [192, 192) -> nothing
    only1 = cutout_boxes(G8_JOINTS, G8_JITTER, G8_HALF, torch.tensor([[1, 1]]), 256, 192)
    assert int(only1.sum()) == 0


def test_cutout_boxes_corrected_masks_low_rows():
    mask = cutout_boxes(G8_JOINTS, G8_JITTER, G8_HALF, torch.tensor([[1]]), 256, 192, "corrected")
    expected = torch.zeros(256, 192, dtype=torch.bool)
    expected[236:256, 7:33] = True  # centre (20, 246), half (13, 10), bottom edge clamped at 256
    assert torch.equal(mask[0], expected)


def test_cutout_boxes_negative_centre_truncates_toward_zero():
    # centre x = trunc(-0.6) = 0 (not -1): box x[-10, 10) -> [0, 10)
    mask = cutout_boxes(torch.tensor([[[-0.6, 50.0]]]), torch.zeros(1, 1, 2),
                        torch.tensor([[[10, 10]]]), torch.tensor([[0]]), 100, 100, "corrected")
    assert mask[0, 45].nonzero().flatten().tolist() == list(range(10))


def _g8_cutout_params(seed, n, j, k):
    g = torch.Generator().manual_seed(seed)
    jitter = 10.0 * torch.randn(n, j, 2, generator=g)
    half = torch.randint(10, 20, (n, j, 2), generator=g)
    chosen = torch.randint(0, j, (n, k), generator=g)
    return jitter, half, chosen


def test_joint_cutout_matches_helper_on_g8_inputs():
    images = torch.ones(1, 3, 256, 192)
    out = joint_cutout(images, G8_JOINTS, 2, torch.Generator().manual_seed(1))
    assert torch.equal(images, torch.ones(1, 3, 256, 192))  # input untouched
    jitter, half, chosen = _g8_cutout_params(1, 1, 3, 2)
    mask = cutout_boxes(G8_JOINTS, jitter, half, chosen, 256, 192, "reference")
    assert torch.equal(out == 0, mask[:, None].expand(1, 3, 256, 192))
    assert (out[:, :, 192:] == 1).all()  # the reference clamp never reaches rows >= 192


def test_joint_cutout_batch_reference_properties():
    n, j = 64, 24
    g = torch.Generator().manual_seed(5)
    joints = torch.rand(n, j, 2, generator=g) * torch.tensor([192.0, 256.0])
    images = torch.randn(n, 3, 256, 192, generator=g)
    out = joint_cutout(images, joints, 3, torch.Generator().manual_seed(7))
    zeroed = out == 0
    assert torch.equal(zeroed[:, 0], zeroed[:, 1]) and torch.equal(zeroed[:, 0], zeroed[:, 2])
    assert not zeroed[:, :, 192:].any()
    per_sample = zeroed[:, 0].flatten(1).sum(1)
    assert (per_sample <= 3 * 38 * 38).all() and per_sample.float().mean() > 100
    assert torch.equal(out[~zeroed], images[~zeroed])
    assert torch.equal(joint_cutout(images, joints, 0, g), images)


def test_joint_cutout_corrected_uses_joint_mask_and_true_bounds():
    images = torch.ones(2, 3, 256, 192)
    joints = torch.tensor([[[20.0, 240.0], [96.0, 128.0]]]).expand(2, 2, 2)
    mask = torch.tensor([[True, False], [False, False]])  # sample 1 has no supervised joint
    out = joint_cutout(images, joints, 4, torch.Generator().manual_seed(0), "corrected", mask)
    zero_rows = (out[0, 0] == 0).any(1).nonzero().flatten()
    zero_cols = (out[0, 0] == 0).any(0).nonzero().flatten()
    # only joint 0 (row 240, col 20) is drawn: boxes reach below row 192 (the reference cannot)
    # and stay within jitter (5 sigma = 50 px) + half size (< 20 px) of the joint
    assert zero_rows.max() >= 230 and zero_rows.min() >= 240 - 70
    assert zero_cols.max() < 20 + 70
    assert not (out[0, :, 100:160, 60:140] == 0).any()  # joint 1's neighbourhood untouched
    assert (out[1] == 1).all()


def test_joint_cutout_scale_rescales_the_same_draws():
    """CUTOUT_SCALE: 1.0 is the reference exactly; another scale multiplies the same draws'
    jitter and half sizes (rounded, >= 1 px), so 0.354 gives a 96x64 crop about the share of
    erased pixels that a 256x192 crop has with the reference sizes (about 6%, against 30%)."""
    n, j = 400, 24
    g = torch.Generator().manual_seed(2)

    def crop_joints(h, w):
        u = torch.rand(n, j, 2, generator=g)
        return torch.stack([(0.2 + 0.6 * u[..., 0]) * w, (0.1 + 0.8 * u[..., 1]) * h], -1)

    small, big = crop_joints(96, 64), crop_joints(256, 192)
    img_s, img_b = torch.ones(n, 3, 96, 64), torch.ones(n, 3, 256, 192)
    gen = lambda: torch.Generator().manual_seed(9)  # noqa: E731
    ref = joint_cutout(img_s, small, 5, gen())
    assert torch.equal(joint_cutout(img_s, small, 5, gen(), scale=1.0), ref)
    scaled = joint_cutout(img_s, small, 5, gen(), "corrected", scale=0.354)
    g2 = gen()
    jitter = 10.0 * torch.randn(n, j, 2, generator=g2)
    half = torch.randint(10, 20, (n, j, 2), generator=g2)
    chosen = torch.randint(0, j, (n, 5), generator=g2)
    expected = cutout_boxes(small, jitter * 0.354, torch.round(half * 0.354).long(), chosen, 96,
                            64, "corrected")
    assert torch.equal(scaled[:, 0] == 0, expected)
    share = lambda out: float((out[:, 0] == 0).float().mean())  # noqa: E731
    paper = share(joint_cutout(img_b, big, 5, gen()))
    assert 0.04 < paper < 0.08 and share(ref) > 4 * paper
    assert abs(share(joint_cutout(img_s, small, 5, gen(), scale=0.354)) - paper) < 0.015
    assert torch.equal(joint_cutout(img_s, small, 5, gen(), scale=0.01)[:, 0] == 0,
                       cutout_boxes(small, jitter * 0.01, torch.ones_like(half), chosen, 96, 64,
                                    "reference"))


def test_choose_joints_only_allowed_and_uniform():
    g = torch.Generator().manual_seed(0)
    allowed = torch.zeros(24, dtype=torch.bool)
    allowed[[1, 5, 11, 23]] = True
    chosen, valid = choose_joints(5000, 4, 24, g, "cpu", allowed)
    assert valid.all()
    counts = torch.bincount(chosen.flatten(), minlength=24)
    assert set(counts.nonzero().flatten().tolist()) == {1, 5, 11, 23}
    assert (counts[[1, 5, 11, 23]].float() / chosen.numel() - 0.25).abs().max() < 0.02
    per_sample = torch.zeros(3, 24, dtype=torch.bool)
    per_sample[0, 2] = True
    per_sample[2, [0, 23]] = True
    chosen, valid = choose_joints(3, 50, 24, g, "cpu", per_sample)
    assert (chosen[0] == 2).all() and not valid[1].any() and valid[0].all()
    assert set(chosen[2].tolist()) == {0, 23}


def test_reference_rotation_is_degrees():
    t = theta_from(torch.tensor([90.0]), torch.tensor([2.0]))
    torch.testing.assert_close(t[0, :, :2], torch.tensor([[0.0, 2.0], [-2.0, 0.0]]),
                               atol=1e-6, rtol=0)
    assert math.isclose(float(theta_from(45, 1)[0, 0, 0]), math.sqrt(0.5), abs_tol=1e-6)
