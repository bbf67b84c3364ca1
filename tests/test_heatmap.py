"""Heatmap encode/decode, flip-test helpers and accuracy (BEHAVIOR §3.2, §8.2, §8.3, §8.7;
golden numbers G2, G3, G5, G10, G11)."""
import math

import cv2
import numpy as np
import pytest
import torch

from semipose.data.keypoints import UNION
from semipose.transforms.affine import affine_points, get_affine_transform
from semipose.evaluation.accuracy import accuracy, accuracy_tensor
from semipose.transforms.heatmap import (flip_back, generate_target, get_final_preds, get_max_preds,
                                         shift_flipped)

TOL = dict(rtol=0, atol=1e-5)
IMG, HM = (192, 256), (48, 64)


def _one(x, y, vis=1.0, sigma=2, image=IMG, heat=HM):
    t, w = generate_target(np.array([[x, y]], np.float32), np.array([vis]), image, heat, sigma)
    return t[0], w[0, 0]


# ------------------------------------------------------------------ slow per-joint oracle
def loop_target(joints, vis, image_size, heatmap_size, sigma):
    """Per-joint patch pasting, written directly from the §3.2 description."""
    w, h = heatmap_size
    stride = np.array(image_size, float) / np.array(heatmap_size, float)
    target = np.zeros((len(joints), h, w), np.float32)
    weight = np.array(vis, np.float32).copy()
    tmp = sigma * 3
    for j, (x, y) in enumerate(joints):
        mx, my = int(x / stride[0] + 0.5), int(y / stride[1] + 0.5)
        ul = (int(mx - tmp), int(my - tmp))
        br = (int(mx + tmp + 1), int(my + tmp + 1))
        if ul[0] >= w or ul[1] >= h or br[0] < 0 or br[1] < 0:
            weight[j] = 0
            continue
        size = 2 * tmp + 1
        gx = np.arange(0, size, 1, np.float32)
        gy = gx[:, None]
        c = size // 2
        g = np.exp(-((gx - c) ** 2 + (gy - c) ** 2) / (2 * sigma ** 2))
        if weight[j] > 0.5:
            x0, x1 = max(0, ul[0]), min(br[0], w)
            y0, y1 = max(0, ul[1]), min(br[1], h)
            target[j, y0:y1, x0:x1] = g[y0 - ul[1]:y1 - ul[1], x0 - ul[0]:x1 - ul[0]]
    return target, weight[:, None]


@pytest.mark.parametrize("sigma", [2, 3, 1.5, 1, 2.5, 2.3])
def test_generate_target_equals_loop_oracle(sigma):
    rng = np.random.default_rng(int(sigma * 10))
    n = 400
    joints = np.stack([rng.uniform(-80, 280, n), rng.uniform(-80, 340, n)], 1).astype(np.float32)
    joints[:40] = np.round(joints[:40])  # integer pixels hit the rounding boundaries
    joints[40:60, 0] = -4 * (3 * sigma + 1) + rng.uniform(-3, 3, 20)  # around the left edge case
    vis = rng.choice([0.0, 1.0, 1.0, 1.0, 0.7, 0.3], n).astype(np.float32)
    t, w = generate_target(joints, vis, IMG, HM, sigma)
    rt, rw = loop_target(joints, vis, IMG, HM, sigma)
    assert t.shape == (n, 64, 48) and t.dtype == np.float32 and w.shape == (n, 1)
    np.testing.assert_array_equal(w, rw)
    np.testing.assert_allclose(t, rt, rtol=0, atol=1e-6)


# ------------------------------------------------------------------ G2
def test_g2_peak_profile_and_rounding():
    t, w = _one(100, 130)
    assert w == 1 and t[33, 25] == 1.0 and np.unravel_index(t.argmax(), t.shape) == (33, 25)
    prof = [0.32465243, 0.60653066, 0.88249689, 1.0, 0.88249689, 0.60653066, 0.32465243]
    np.testing.assert_allclose(t[33, 22:29], prof, rtol=0, atol=1e-6)
    np.testing.assert_allclose(t[30:37, 25], prof, rtol=0, atol=1e-6)
    assert (t > 0).sum() == 169
    np.testing.assert_allclose(t.sum(), 25.081287, rtol=1e-6)
    np.testing.assert_array_equal(_one(101.9, 130.1)[0], t)


def test_g2_edges_and_invisible():
    t, w = _one(-20, 50)
    # mu_x = -4: window columns [-10, 3) clipped to 0..2 (13 rows x 3 columns = 39 px), peak in col 0
    assert w == 1 and (t > 0).sum() == 39 and (t[:, 3:] == 0).all()
    np.testing.assert_allclose(t[13, 0], 0.13533528, **TOL)
    assert t.argmax() == np.ravel_multi_index((13, 0), t.shape)
    np.testing.assert_allclose(t.sum(), 0.953452, rtol=1e-6)
    t, w = _one(100, 130, vis=0)
    assert w == 0 and not t.any()
    t, _ = _one(1, 1)
    np.testing.assert_allclose(t.sum(), 9.024384, rtol=1e-6)
    assert np.unravel_index(t.argmax(), t.shape) == (0, 0)
    t, _ = _one(191, 255)
    np.testing.assert_allclose(t.sum(), 4.016261, rtol=1e-6)
    assert np.unravel_index(t.argmax(), t.shape) == (63, 47)


@pytest.mark.parametrize("x, weight, total, cols", [
    (-30, 1, 0.0, None), (-29, 1, 0.055635, (0, 1)), (-26, 1, 0.055635, (0, 1)),
    (-3, 1, 15.044705, (0, 7)), (-1, 1, 15.044705, (0, 7)), (5.9, 1, 19.464357, None),
    (6.0, 1, 22.501938, None), (209.9, 1, 0.275677, (46, 48)), (210.0, 1, 0.055635, (47, 48)),
    (213.9, 1, 0.055635, (47, 48)), (214.0, 0, 0.0, None)])
def test_g2b_x_sweep(x, weight, total, cols):
    t, w = _one(x, 100)
    assert w == weight
    np.testing.assert_allclose(t.sum(), total, rtol=1e-5, atol=1e-6)
    if cols is not None:
        nz = np.flatnonzero(t.any(axis=0))
        assert (nz.min(), nz.max() + 1) == cols


def test_g2_sigma3():
    t, w = _one(144, 192, sigma=3, image=(288, 384), heat=(72, 96))
    assert w == 1 and (t > 0).sum() == 361
    np.testing.assert_allclose(t[48, 33:40], [0.60653066, 0.80073738, 0.94595945, 1.0,
                                              0.94595945, 0.80073738, 0.60653066], **TOL)


# ------------------------------------------------------------------ G3
def g3_heatmaps():
    y, x = np.mgrid[0:64, 0:48].astype(np.float32)
    hm = np.empty((1, 3, 64, 48), np.float32)
    hm[0, 0] = np.exp(-((x - 20.3) ** 2 + (y - 30.6) ** 2) / 8)
    hm[0, 1] = np.exp(-((x - 1.0) ** 2 + (y - 10.0) ** 2) / 8)
    hm[0, 2] = -1
    hm[0, 2, 5, 7] = -0.5
    return hm


C = np.array([[100, 120]], np.float32)
S = np.array([[1.0, 1.3333334]], np.float32)


def test_g3_get_max_preds():
    coords, maxvals = get_max_preds(g3_heatmaps())
    np.testing.assert_array_equal(coords[0], [[20, 31], [1, 10], [0, 0]])
    np.testing.assert_allclose(maxvals[0, :, 0], [0.96923321, 1.0, -0.5], **TOL)
    tie = np.zeros((1, 1, 4, 5), np.float32)
    tie[0, 0, 1, 3] = tie[0, 0, 2, 1] = 1  # first maximal index wins
    np.testing.assert_array_equal(get_max_preds(tie)[0][0, 0], [3, 1])


@pytest.mark.parametrize("kwargs, expected", [
    ({}, [(84.375, 114.791664), (4.1666665, 28.333334), (0.0, -13.333333)]),
    ({"rotation": [30.0]}, [(89.072517, 107.676949), (62.839233, -7.3023276),
                            (80.064125, -45.470051)]),
    ({"post_process": False}, [(83.333336, 115.833336), (4.1666665, 28.333334),
                               (0.0, -13.333333)]),
    ({"post_type": "dark"}, [(84.582687, 114.167648), (4.1666665, 28.333334),
                             (0.0, -13.333333)]),
])
def test_g3_get_final_preds(kwargs, expected):
    hm = g3_heatmaps()
    before = hm.copy()
    preds, maxvals = get_final_preds(hm, C, S, **kwargs)
    assert preds.shape == (1, 3, 2) and preds.dtype == np.float32 and maxvals.shape == (1, 3, 1)
    np.testing.assert_allclose(preds[0], expected, **TOL)
    np.testing.assert_array_equal(hm, before)  # heatmaps are not modified


def _random_heatmaps(rng, n, j, h=64, w=48):
    y, x = np.mgrid[0:h, 0:w]
    mu = rng.uniform(-2, [w + 1, h + 1], (n, j, 2))
    s = rng.uniform(1.0, 3.0, (n, j, 1, 1))
    hm = np.exp(-((x - mu[..., :1, None]) ** 2 + (y - mu[..., 1:, None]) ** 2) / (2 * s ** 2))
    return (hm + rng.normal(0, 0.02, hm.shape)).astype(np.float32)


def test_shift_and_dark_match_per_joint_loops():
    rng = np.random.default_rng(7)
    hm = _random_heatmaps(rng, 4, 6)
    hm[0, 0] = 0  # all-zero map
    n, j, h, w = hm.shape
    coords, _ = get_max_preds(hm)
    shift, dark = coords.copy(), coords.copy()
    border = 5
    for a in range(n):
        for b in range(j):
            m = hm[a, b]
            px, py = math.floor(coords[a, b, 0] + 0.5), math.floor(coords[a, b, 1] + 0.5)
            if 1 < px < w - 1 and 1 < py < h - 1:
                d = np.array([m[py, px + 1] - m[py, px - 1], m[py + 1, px] - m[py - 1, px]])
                shift[a, b] += np.sign(d) * 0.25
            pad = np.zeros((h + 2 * border, w + 2 * border))
            pad[border:-border, border:-border] = m
            bl = cv2.GaussianBlur(pad, (11, 11), 0)[border:-border, border:-border]
            bl = bl.astype(np.float32)
            with np.errstate(invalid="ignore", divide="ignore"):
                bl = np.log(np.maximum(bl * (m.max() / bl.max()), 1e-10))
            px, py = int(coords[a, b, 0]), int(coords[a, b, 1])
            if 1 < px < w - 2 and 1 < py < h - 2:
                g = np.array([0.5 * (bl[py, px + 1] - bl[py, px - 1]),
                              0.5 * (bl[py + 1, px] - bl[py - 1, px])])
                dxx = 0.25 * (bl[py, px + 2] - 2 * bl[py, px] + bl[py, px - 2])
                dyy = 0.25 * (bl[py + 2, px] - 2 * bl[py, px] + bl[py - 2, px])
                dxy = 0.25 * (bl[py + 1, px + 1] - bl[py - 1, px + 1] - bl[py + 1, px - 1]
                              + bl[py - 1, px - 1])
                if dxx * dyy - dxy ** 2 != 0:
                    dark[a, b] -= np.linalg.inv(np.array([[dxx, dxy], [dxy, dyy]])) @ g
    # identity-like box: image pixels = 4 x heatmap pixels
    c, s = np.tile([[96.0, 128.0]], (n, 1)), np.tile([[0.96, 1.28]], (n, 1))
    got_shift, _ = get_final_preds(hm, c, s)
    got_dark, _ = get_final_preds(hm, c, s, post_type="dark")
    np.testing.assert_allclose(got_shift, shift * 4, rtol=0, atol=1e-5)
    np.testing.assert_allclose(got_dark, dark * 4, rtol=0, atol=1e-5)
    assert np.abs(got_dark - coords * 4).max() > 0.1  # the refinement did something


def test_encode_decode_round_trip():
    """Joints inside the crop come back within half a heatmap pixel (x stride) per axis."""
    rng = np.random.default_rng(11)
    n, j = 20, 24
    center = rng.uniform(100, 500, (n, 2)).astype(np.float32)
    scale = rng.uniform(0.5, 3.0, (n, 2)).astype(np.float32)
    rot = rng.uniform(-60, 60, n)
    stride = IMG[0] / HM[0]
    crop = rng.uniform(0, 1, (n, j, 2)) * (np.array(HM) - 0.5) * stride  # peak inside the map
    heat = np.empty((n, j, HM[1], HM[0]), np.float32)
    image_pts = np.empty((n, j, 2))
    for i in range(n):  # per sample, as the dataset pipeline encodes
        inv = get_affine_transform(center[i], scale[i], rot[i], IMG, inv=True)
        image_pts[i] = affine_points(crop[i], inv)
        fwd = get_affine_transform(center[i], scale[i], rot[i], IMG)
        heat[i], _ = generate_target(affine_points(image_pts[i], fwd), np.ones(j), IMG, HM, 2)
    preds, maxvals = get_final_preds(heat, center, scale, rot)
    assert (maxvals == 1).all()
    for i in range(n):
        back = affine_points(preds[i], get_affine_transform(center[i], scale[i], rot[i], IMG))
        assert np.abs(back - crop[i]).max() <= 0.5 * stride + 1e-3
    px_per_crop = scale[:, 0, None] * 200 / IMG[0]
    err = np.linalg.norm(preds - image_pts, axis=-1)
    assert (err <= math.sqrt(2) * 0.5 * stride * px_per_crop + 1e-3).all()


# ------------------------------------------------------------------ G5 flip_back, G11 shifts
def test_g5_flip_back():
    x = torch.arange(2 * 24 * 2 * 3, dtype=torch.float32).reshape(2, 24, 2, 3)
    out = flip_back(x, UNION.flip_pairs)
    assert out.shape == x.shape
    assert out[0, 1].tolist() == [[26, 25, 24], [29, 28, 27]]
    assert out[0, 0].tolist() == [[2, 1, 0], [5, 4, 3]]
    assert torch.equal(flip_back(out, UNION.flip_pairs), x)  # an involution
    np_out = flip_back(x.numpy(), UNION.flip_pairs)
    np.testing.assert_array_equal(np_out, out.numpy())
    np.testing.assert_array_equal(flip_back(np_out, UNION.flip_pairs), x.numpy())


def test_g11_shift_variants():
    row = torch.zeros(1, 1, 4, 6)
    row[..., 2] = 1
    np.testing.assert_allclose(shift_flipped(row, "shift")[0, 0, 0], [0, 0, 0, 1, 0, 0])
    np.testing.assert_allclose(shift_flipped(row, "grid")[0, 0, 1], [0, 0, 0.25, 0.75, 0, 0],
                               **TOL)
    np.testing.assert_allclose(shift_flipped(row, "grid", align_corners=True)[0, 0, 1],
                               [0, 0, 0.375, 0.625, 0, 0], **TOL)
    x = torch.arange(12.0).reshape(1, 2, 1, 6)
    assert shift_flipped(x, "shift")[0, 1, 0].tolist() == [6, 6, 7, 8, 9, 10]  # col 0 duplicated
    np.testing.assert_array_equal(shift_flipped(x.numpy(), "shift"), shift_flipped(x, "shift"))
    with pytest.raises(ValueError):
        shift_flipped(x, "bogus")


# ------------------------------------------------------------------ G10 accuracy
def test_g10_accuracy():
    out = np.zeros((1, 3, 64, 48), np.float32)
    tgt = np.zeros_like(out)
    out[0, 0, 30, 20] = out[0, 1, 30, 20] = out[0, 2, 10, 10] = 1
    tgt[0, 0, 31, 22] = tgt[0, 1, 30, 24] = 1
    acc, avg, cnt, pred = accuracy(out, tgt)
    np.testing.assert_allclose(acc, [0.5, 1.0, 0.0, -1.0], **TOL)
    assert avg == pytest.approx(0.5) and cnt == 2
    np.testing.assert_array_equal(pred[0], [[20, 30], [20, 30], [10, 10]])
    acc, avg, cnt, _ = accuracy(out, np.zeros_like(out))  # nothing counted
    np.testing.assert_array_equal(acc, [0, -1, -1, -1])
    assert avg == 0 and cnt == 0


def _assert_same_accuracy(out: np.ndarray, tgt: np.ndarray) -> None:
    """accuracy_tensor gives accuracy's numbers bit for bit (float64 per joint, average, count,
    argmax coordinates)."""
    acc, avg, cnt, pred = accuracy(out, tgt)
    t_acc, t_avg, t_cnt, t_pred = accuracy_tensor(torch.from_numpy(out), torch.from_numpy(tgt))
    assert t_acc.dtype == t_avg.dtype == torch.float64 and t_pred.dtype == torch.float32
    np.testing.assert_array_equal(t_acc.numpy(), acc)
    assert t_avg.item() == avg and t_cnt.item() == cnt
    np.testing.assert_array_equal(t_pred.numpy(), pred)


def test_g10_accuracy_tensor_golden():
    out = np.zeros((1, 3, 64, 48), np.float32)
    tgt = np.zeros_like(out)
    out[0, 0, 30, 20] = out[0, 1, 30, 20] = out[0, 2, 10, 10] = 1
    tgt[0, 0, 31, 22] = tgt[0, 1, 30, 24] = 1
    acc, avg, cnt, _ = accuracy_tensor(torch.from_numpy(out), torch.from_numpy(tgt))
    assert acc.tolist() == [0.5, 1.0, 0.0, -1.0] and avg.item() == 0.5 and cnt.item() == 2
    _assert_same_accuracy(out, tgt)
    _assert_same_accuracy(out, np.zeros_like(out))  # nothing counted: avg 0, count 0


@pytest.mark.parametrize("n, j", [(1, 1), (2, 5), (4, 7), (3, 8), (8, 9), (5, 17), (16, 24),
                                  (6, 33), (4, 64), (2, 128)])
def test_accuracy_tensor_equals_numpy_on_random_heatmaps(n, j):
    """Random Gaussian maps, some joints invisible (all-zero target), some predictions empty
    or off target: every count of counted joints across numpy's summation orders."""
    rng = np.random.default_rng(n * 1000 + j)
    for trial in range(20):
        out, tgt = _random_heatmaps(rng, n, j, 16, 12), _random_heatmaps(rng, n, j, 16, 12)
        tgt[rng.random((n, j)) < rng.random()] = 0  # unlabeled joints are never counted
        out[rng.random((n, j)) < 0.1] = -1  # an all-negative prediction decodes to (0, 0)
        if trial % 2:  # predictions near the targets: hits and misses per joint
            out = np.roll(tgt, rng.integers(-2, 3), axis=3) + rng.normal(0, 0.05, tgt.shape)
            out = out.astype(np.float32)
        _assert_same_accuracy(out, tgt)


def test_accuracy_tensor_equals_numpy_on_real_heatmaps():
    """Targets of the real COCO fixture persons (24 union joints, some unlabeled) against the
    targets of the same persons under the training augmentation (shift, scale, rotation, flip)."""
    from semipose.data.build import build_train_dataset, build_val_dataset
    from test_coco_data import make_cfg

    cfg = make_cfg()
    val, train = build_val_dataset(cfg), build_train_dataset(cfg)
    assert len(val) == len(train) == 12
    tgt = np.stack([val[i]["target"].numpy() for i in range(len(val))])
    for seed in range(3):
        train.set_epoch(seed)
        out = np.stack([train[i]["target"].numpy() for i in range(len(train))])
        _assert_same_accuracy(out, tgt)
        _assert_same_accuracy(out + np.float32(0.01) * out[:, ::-1], tgt)


def test_accuracy_tensor_average_adds_in_numpy_order():
    """The per-joint average is summed as numpy sums: a plain torch sum of the same values
    differs in the last bit for some of these vectors, the numpy-order sum never does."""
    from semipose.evaluation.accuracy import _numpy_order_sum

    rng = np.random.default_rng(0)
    plain_differs = 0
    for _ in range(2000):
        size = int(rng.integers(1, 129))
        values = rng.integers(0, 33, size) / rng.integers(1, 33, size)
        keep = rng.random(size) < rng.random()
        keep[rng.integers(size)] = True
        expected = values[keep].sum()
        got = _numpy_order_sum(torch.from_numpy(values), torch.from_numpy(keep)).item()
        assert got == expected, (values[keep], got, expected)
        plain_differs += torch.from_numpy(values[keep]).sum().item() != expected
    assert plain_differs > 0
