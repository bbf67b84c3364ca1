"""OKS, OKS-NMS and rescoring against the reference's golden values (BEHAVIOR G4)."""
import numpy as np
import pytest

from semipose.data.keypoints import COCO
from semipose.evaluation.nms import greedy_keep, oks_iou, oks_matrix, oks_nms, rescore

SIGMAS = np.asarray(COCO.sigmas)


def _person(offset=(0.0, 0.0), seed=0):
    """17 COCO joints (x, y, 1) at fixed pseudo-random positions, shifted by ``offset``."""
    rng = np.random.default_rng(seed)
    k = np.ones((17, 3))
    k[:, :2] = rng.uniform(50, 400, size=(17, 2)) + np.asarray(offset)
    return k


GT = _person()
NEAR = _person((2, -1))
FAR = _person((10, 0))


def test_oks_golden_values():
    assert oks_iou(GT, NEAR[None], 10000, np.array([10000.]), SIGMAS)[0] == pytest.approx(
        0.97074572, abs=1e-5)
    assert oks_iou(GT, FAR[None], 10000, np.array([5000.]), SIGMAS)[0] == pytest.approx(
        0.58641263, abs=1e-5)
    # reference person (+10, 0) with area 5000 against GT and (+2, -1), both area 10000
    got = oks_iou(FAR, np.stack([GT, NEAR]), 5000, np.array([10000., 10000.]), SIGMAS)
    np.testing.assert_allclose(got, [0.58641263, 0.67592538], atol=1e-5)
    nose = GT.copy()
    nose[0, :2] += (3, 4)
    assert oks_iou(GT, nose[None], 100, np.array([100.]), SIGMAS)[0] == pytest.approx(
        16 / 17, abs=1e-5)


def test_oks_accepts_flat_keypoints_and_is_offset_only():
    flat = oks_iou(GT.reshape(-1), NEAR.reshape(1, -1), 10000, np.array([10000.]), SIGMAS)
    moved = oks_iou(GT + [100, 50, 0], (NEAR + [100, 50, 0])[None], 10000, np.array([10000.]),
                    SIGMAS)
    np.testing.assert_allclose(flat, [0.97074572], atol=1e-5)
    np.testing.assert_allclose(moved, flat, atol=1e-12)


def test_oks_visibility_filter():
    d = NEAR.copy()
    d[5:, 2] = 0.1  # only the 5 face joints stay above the threshold
    all_j = oks_iou(GT, d[None], 10000, np.array([10000.]), SIGMAS)[0]
    face = oks_iou(GT, d[None], 10000, np.array([10000.]), SIGMAS, in_vis_thre=0.2)[0]
    e = (2 ** 2 + 1 ** 2) / (2 * SIGMAS[:5]) ** 2 / (10000 + np.spacing(1)) / 2
    assert face == pytest.approx(np.exp(-e).mean(), abs=1e-12)
    assert all_j == pytest.approx(0.97074572, abs=1e-5)
    d[:, 2] = 0.0
    assert oks_iou(GT, d[None], 10000, np.array([10000.]), SIGMAS, in_vis_thre=0.2)[0] == 0.0


def test_oks_matrix_rows_equal_oks_iou():
    people = np.stack([GT, NEAR, FAR, _person(seed=3)])
    areas = np.array([10000., 10000., 5000., 300.])
    mat = oks_matrix(people, areas, SIGMAS)
    for i in range(4):
        np.testing.assert_array_equal(mat[i], oks_iou(people[i], people, areas[i], areas, SIGMAS))
    np.testing.assert_allclose(mat, mat.T, atol=0)
    np.testing.assert_allclose(np.diag(mat), 1.0)


def _db():
    return [{"keypoints": GT, "score": 0.9, "area": 10000.},
            {"keypoints": NEAR, "score": 0.8, "area": 10000.},
            {"keypoints": FAR, "score": 0.95, "area": 5000.}]


def test_oks_nms_golden_keep():
    assert oks_nms(_db(), 0.9, SIGMAS) == [2, 0]
    assert oks_nms(_db(), 0.5, SIGMAS) == [2]
    assert oks_nms([], 0.9, SIGMAS) == []
    # a threshold above every OKS keeps everyone, best score first
    assert oks_nms(_db(), 1.0, SIGMAS) == [2, 0, 1]


def test_greedy_keep_drops_nan_overlaps_like_the_reference():
    overlap = np.array([[1.0, np.nan], [np.nan, 1.0]])
    assert greedy_keep(np.array([0.2, 0.7]), overlap, 0.9) == [1]


def test_rescore():
    kp = np.zeros((3, 4, 3))
    kp[0, :, 2] = [0.9, 0.5, 0.1, 0.3]   # mean of {0.9, 0.5, 0.3} = 0.5666...
    kp[1, :, 2] = [0.1, 0.2, 0.05, 0.0]  # nothing above 0.2 (strict) -> 0
    kp[2, :, 2] = [1.0, 1.0, 1.0, 1.0]
    got = rescore(kp, np.array([0.5, 1.0, 0.25]), 0.2)
    np.testing.assert_allclose(got, [(0.9 + 0.5 + 0.3) / 3 * 0.5, 0.0, 0.25], atol=1e-12)
