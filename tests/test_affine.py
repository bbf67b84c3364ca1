"""Crop affines, box -> center/scale, point transforms and joint flips (BEHAVIOR §2.2, §3, G1/G5/G6)."""
import cv2
import numpy as np
import pytest

from semipose.data.keypoints import UNION
from semipose.transforms.affine import (affine_points, box_to_center_scale, crop_points,
                                        flip_joints, flip_permutation, get_affine_transform,
                                        get_affine_transforms, sanitize_box, transform_preds)

TOL = dict(rtol=0, atol=1e-5)
C = np.array([100, 120], np.float32)
S = np.array([1.0, 1.3333334], np.float32)


# ---------------------------------------------------------------- G1
def test_g1_rot0_forward_inverse_and_points():
    fwd = get_affine_transform(C, S, 0, [192, 256])
    inv = get_affine_transform(C, S, 0, [192, 256], inv=True)
    np.testing.assert_allclose(fwd, [[0.96, 0, 0], [0, 0.96, 12.8]], **TOL)
    np.testing.assert_allclose(inv, [[1.0416667, 0, 0], [0, 1.0416667, -13.333333]], **TOL)
    pts = np.array([[100, 120], [110, 100]], np.float32)
    out = affine_points(pts, fwd)
    np.testing.assert_allclose(out, [[96, 128], [105.6, 108.8]], **TOL)
    np.testing.assert_allclose(affine_points(out, inv), pts, **TOL)


def test_g1_rot30():
    fwd = get_affine_transform(C, S, 30, [192, 256])
    inv = get_affine_transform(C, S, 30, [192, 256], inv=True)
    np.testing.assert_allclose(fwd, [[0.83138439, 0.48000001, -44.73844071],
                                     [-0.48000001, 0.83138439, 76.23387382]], **TOL)
    np.testing.assert_allclose(inv, [[0.90210978, -0.52083333, 80.06412760],
                                     [0.52083333, 0.90210978, -45.47005208]], **TOL)
    out = affine_points(np.array([[100, 120], [110, 100]]), fwd)
    np.testing.assert_allclose(out, [[96, 128], [94.71384372, 106.57231201]], **TOL)


def test_g1_rot_minus45_small_output():
    c, s = np.array([320.5, 240.25]), np.array([0.9, 1.2])
    fwd = get_affine_transform(c, s, -45, [48, 64])
    inv = get_affine_transform(c, s, -45, [48, 64], inv=True)
    np.testing.assert_allclose(fwd, [[0.18856179, -0.18856179, 8.86791669],
                                     [0.18856179, 0.18856179, -73.73602136]], **TOL)
    np.testing.assert_allclose(inv, [[2.65165075, 2.65165075, 172.00755819],
                                     [-2.65165075, 2.65165075, 219.03679403]], **TOL)
    np.testing.assert_allclose(affine_points([[330.5, 220.25]], fwd),
                               [[29.65685357, 30.11438214]], **TOL)


def test_g1_shift_and_scalar_scale():
    fwd = get_affine_transform(C, S, 0, [192, 256], shift=(0.1, -0.05))
    np.testing.assert_allclose(fwd, [[0.96, 0, -19.2], [0, 0.96, 25.6]], **TOL)
    fwd = get_affine_transform(np.array([50, 50]), 1.0, 0, [64, 64])
    np.testing.assert_allclose(fwd, [[0.32, 0, 16], [0, 0.32, 16]], **TOL)


def _cv2_affine(center, scale, rot, size, shift=(0.0, 0.0), inv=False):
    """The three float32 correspondence points, solved by OpenCV (independent oracle)."""
    sw = scale[0] * 200.0
    r = np.deg2rad(rot)
    d = np.array([0.5 * sw * np.sin(r), -0.5 * sw * np.cos(r)])
    off = np.asarray(scale) * 200.0 * np.asarray(shift)
    src = np.zeros((3, 2), np.float32)
    dst = np.zeros((3, 2), np.float32)
    src[0], src[1] = center + off, center + d + off
    dst[0], dst[1] = (size[0] / 2, size[1] / 2), (size[0] / 2, size[1] / 2 - size[0] / 2)
    for p in (src, dst):
        v = p[0] - p[1]
        p[2] = p[1] + np.array([-v[1], v[0]], np.float32)
    return cv2.getAffineTransform(dst, src) if inv else cv2.getAffineTransform(src, dst)


def test_matches_opencv_three_point_solve_and_batch():
    rng = np.random.default_rng(0)
    n = 50
    c = rng.uniform(-50, 700, (n, 2))
    s = rng.uniform(0.2, 4, (n, 2))
    r = rng.uniform(-90, 90, n)
    sh = (0.03, -0.02)
    for inv in (False, True):
        batch = get_affine_transforms(c, s, r, (48, 64), shift=sh, inv=inv)
        for i in range(n):
            ref = _cv2_affine(c[i], s[i], r[i], (48, 64), sh, inv)
            np.testing.assert_allclose(batch[i], ref, rtol=1e-9, atol=1e-9)
            np.testing.assert_allclose(
                get_affine_transform(c[i], s[i], r[i], (48, 64), shift=sh, inv=inv), batch[i],
                rtol=1e-9, atol=1e-9)


def test_single_crop_path_builds_the_batched_points_and_solves_them_with_opencv():
    # The one-box function takes a scalar route for speed; its float32 points must be exactly
    # the batched ones (dtype rules included) and its solver OpenCV's, bit for bit.
    rng = np.random.default_rng(3)
    for i in range(600):
        dt = (np.float32, np.float64)[i % 2]
        c = rng.uniform(-50, 700, 2).astype(dt)
        s = rng.uniform(0.05, 4, 2).astype(dt)
        r = float(rng.uniform(-180, 180)) if i % 3 else 0
        sh = tuple(rng.uniform(-0.1, 0.1, 2)) if i % 4 == 0 else (0.0, 0.0)
        inv = i % 5 == 0
        size = ((48, 64), (192, 256), (64, 96))[i % 3]
        src, dst = crop_points(c[None], s[None], r, size, sh, inv)
        np.testing.assert_array_equal(get_affine_transform(c, s, r, size, sh, inv),
                                      cv2.getAffineTransform(src[0], dst[0]))
    # a scalar scale and integer inputs take the same route
    np.testing.assert_array_equal(get_affine_transform(np.array([50, 50]), 1, 0, [64, 64]),
                                  get_affine_transform(np.array([50.0, 50.0]), 1.0, 0, [64, 64]))


def test_forward_inverse_round_trip_and_closed_form():
    rng = np.random.default_rng(1)
    c, s, r = np.array([321.0, 211.5]), np.array([1.7, 2.2]), 37.0
    fwd = get_affine_transform(c, s, r, (192, 256))
    inv = get_affine_transform(c, s, r, (192, 256), inv=True)
    pts = rng.uniform(0, 600, (100, 2))
    np.testing.assert_allclose(affine_points(affine_points(pts, fwd), inv), pts, atol=1e-4)
    k, t = 192 / (s[0] * 200), np.deg2rad(r)
    closed = [[k * np.cos(t), k * np.sin(t), 96 - k * (np.cos(t) * c[0] + np.sin(t) * c[1])],
              [-k * np.sin(t), k * np.cos(t), 128 - k * (-np.sin(t) * c[0] + np.cos(t) * c[1])]]
    np.testing.assert_allclose(fwd, closed, rtol=1e-6, atol=1e-4)


def test_affine_points_batched_matrices():
    rng = np.random.default_rng(2)
    M = rng.normal(size=(4, 2, 3))
    pts = rng.normal(size=(4, 7, 2))
    out = affine_points(pts, M)
    for i in range(4):
        ref = (M[i] @ np.c_[pts[i], np.ones(7)].T).T
        np.testing.assert_allclose(out[i], ref, rtol=1e-12)


# ---------------------------------------------------------------- transform_preds (G3)
def test_transform_preds_golden_and_batched():
    coords = np.array([[0, 0], [47, 63], [24, 32]], np.float32)
    out = transform_preds(coords, C, S, 0, [48, 64])
    np.testing.assert_allclose(out, [[0, -13.333333], [195.833333, 249.166667], [100, 120]], **TOL)
    batch = transform_preds(np.stack([coords, coords]), np.stack([C, C]), np.stack([S, S]),
                            np.array([0.0, 30.0]), [48, 64])
    np.testing.assert_allclose(batch[0], out, **TOL)
    np.testing.assert_allclose(batch[1], transform_preds(coords, C, S, 30, [48, 64]), **TOL)
    np.testing.assert_allclose(transform_preds(coords, C, S, None, [48, 64]), out, **TOL)


# ---------------------------------------------------------------- G6
@pytest.mark.parametrize("box, center, scale", [
    ((10, 20, 100, 50), (60, 45), (0.625, 0.8333334)),
    ((10, 20, 30, 200), (25, 120), (0.9375, 1.25)),
    ((0, 0, 75, 100), (37.5, 50), (0.46875, 0.625)),
    ((339.88, 22.16, 153.88, 300.73), (416.82001, 172.52499), (1.4096719, 1.8795624)),
])
def test_g6_box_to_center_scale(box, center, scale):
    for aspect in (192 / 256, 288 / 384):
        c, s = box_to_center_scale(box, aspect)
        assert c.dtype == np.float32 and s.dtype == np.float32
        np.testing.assert_allclose(c, center, **TOL)
        np.testing.assert_allclose(s, scale, **TOL)


def test_box_to_center_scale_batched_and_no_padding_marker():
    boxes = np.array([[10, 20, 100, 50], [10, 20, 30, 200], [-2, 5, 2, 10]], np.float64)
    c, s = box_to_center_scale(boxes, 0.75)
    assert c.shape == s.shape == (3, 2)
    np.testing.assert_allclose(s[0], [0.625, 0.8333334], **TOL)
    np.testing.assert_allclose(s[1], [0.9375, 1.25], **TOL)
    # center x == -1 means "no box": the padding factor is not applied
    np.testing.assert_allclose(c[2], [-1, 10], **TOL)
    np.testing.assert_allclose(s[2], [10 * 0.75 / 200, 10 / 200], **TOL)
    _, s2 = box_to_center_scale(boxes[0], 0.75, padding=1.0)
    np.testing.assert_allclose(s2, np.array([0.625, 0.8333334]) / 1.25, **TOL)


def test_g6_sanitize_box():
    assert sanitize_box([-5, 10, 100, 500], 640, 480) == [0, 10, 99, 469]
    assert sanitize_box([10, 10, 0.5, 0.5], 640, 480) == [10, 10, 0, 0]
    assert sanitize_box([700, 10, 20, 20], 640, 480) is None  # fully right of the image
    assert sanitize_box([10, 10, 20, 20], 640, 480, area=0) is None
    assert sanitize_box([10, 10, 20, 20], 640, 480, area=12.5) == [10, 10, 19, 19]


# ---------------------------------------------------------------- G5 fliplr_joints
def test_g5_flip_joints():
    joints = np.zeros((UNION.num_joints, 2), np.float32)
    vis = np.zeros(UNION.num_joints, np.float32)
    joints[1], vis[1] = (10, 20), 1
    joints[4], vis[4] = (30, 40), 0
    joints[11], vis[11] = (50, 60), 1
    j0, v0 = joints.copy(), vis.copy()
    fj, fv = flip_joints(joints, vis, 640, UNION.flip_pairs)
    np.testing.assert_array_equal(joints, j0)  # inputs untouched
    np.testing.assert_array_equal(vis, v0)
    np.testing.assert_allclose(fj[1], [0, 0])  # took lhip's invisibility
    assert fv[1] == 0
    np.testing.assert_allclose(fj[4], [629, 20])
    assert fv[4] == 1
    np.testing.assert_allclose(fj[11], [589, 60])
    assert fj.dtype == np.float32


def test_flip_joints_twice_and_batched():
    rng = np.random.default_rng(3)
    joints = rng.uniform(0, 600, (5, UNION.num_joints, 2)).astype(np.float32)
    vis = np.ones((5, UNION.num_joints), np.float32)
    width = np.array([640, 600, 500, 700, 800])
    fj, fv = flip_joints(joints, vis, width, UNION.flip_pairs)
    back, bv = flip_joints(fj, fv, width, UNION.flip_pairs)
    np.testing.assert_allclose(back, joints, atol=1e-4)
    single, _ = flip_joints(joints[2], vis[2], 500, UNION.flip_pairs)
    np.testing.assert_allclose(fj[2], single)
    perm = flip_permutation(UNION.num_joints, UNION.flip_pairs)
    np.testing.assert_array_equal(perm[perm], np.arange(UNION.num_joints))
    assert perm[1] == 4 and perm[23] == 22 and perm[0] == 0
