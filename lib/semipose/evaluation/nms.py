"""Object keypoint similarity (OKS), OKS-based NMS and keypoint rescoring, in vectorised numpy.

These decide which predicted people reach COCOeval, so the arithmetic follows the reference
implementation exactly: OKS is the mean of ``exp(-e)`` over all joints (no visibility filter unless
``in_vis_thre`` is given) with
``e = (dx^2 + dy^2) / (2 sigma)^2 / ((area_g + area_d) / 2 + eps) / 2`` and ``eps = np.spacing(1)``.
"""
from __future__ import annotations

from typing import Callable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

_EPS = np.spacing(1)


def _as_kpts(x: np.ndarray, num_joints: int) -> np.ndarray:
    """Reshape flat [..., K*3] keypoints to [..., K, 3] (no-op for [..., K, 3])."""
    x = np.asarray(x, dtype=np.float64)
    if x.shape[-1] == 3 and x.ndim >= 2 and x.shape[-2] == num_joints:
        return x
    return x.reshape(x.shape[:-1] + (num_joints, 3))


def _oks_from_parts(dx2: np.ndarray, vis: Optional[np.ndarray], area_mean: np.ndarray,
                    sigmas: np.ndarray) -> np.ndarray:
    """OKS from squared distances [..., K]; ``vis`` [..., K] masks joints (None: all count)."""
    variances = (sigmas * 2.0) ** 2
    e = dx2 / variances / (area_mean[..., None] + _EPS) / 2.0
    sim = np.exp(-e)
    if vis is None:
        return sim.mean(axis=-1)
    count = vis.sum(axis=-1)
    total = np.where(vis, sim, 0.0).sum(axis=-1)
    # No jointly visible joint means no evidence of overlap: OKS 0, as in the reference.
    return np.divide(total, count, out=np.zeros_like(total), where=count > 0)


def _pair_oks(g: Sequence[np.ndarray], d: Sequence[np.ndarray], area_g: np.ndarray,
              area_d: np.ndarray, sigmas: np.ndarray, in_vis_thre: Optional[float]) -> np.ndarray:
    """OKS of reference people ``g`` against others ``d``, broadcast over the leading axes.

    g, d: (x, y, score) arrays, each [..., K]; area_g, area_d: [...]. Every OKS in this module
    goes through here, so a pair's value does not depend on which function (or batch) computed
    it. ``dx*dx + dy*dy`` is bit for bit the reference's ``sum((d - g)**2)`` over x and y.
    """
    dx = d[0] - g[0]
    dy = d[1] - g[1]
    vis = None
    if in_vis_thre is not None:
        vis = (g[2] > in_vis_thre) & (d[2] > in_vis_thre)
    return _oks_from_parts(dx * dx + dy * dy, vis, (area_g + area_d) / 2.0, sigmas)


def _split(kpts: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """[..., K, 3] -> contiguous x, y, score arrays [..., K]."""
    return tuple(np.ascontiguousarray(kpts[..., c]) for c in range(3))  # type: ignore[return-value]


def oks_iou(g: np.ndarray, d: np.ndarray, area_g: float, area_d: np.ndarray,
            sigmas: Sequence[float], in_vis_thre: Optional[float] = None) -> np.ndarray:
    """OKS of one reference person against M others.

    Args:
        g: keypoints of the reference person, [K, 3] or flat [K*3] as (x, y, score).
        d: keypoints of the others, [M, K, 3] or [M, K*3].
        area_g: area of the reference person (box area in pixels^2).
        area_d: areas of the others, [M].
        sigmas: per-joint OKS sigmas, [K].
        in_vis_thre: if given, only joints whose score exceeds it in both persons count.
    Returns:
        OKS values, float64 [M].
    """
    sigmas = np.asarray(sigmas, dtype=np.float64)
    k = sigmas.shape[0]
    g = _as_kpts(g, k)
    d = _as_kpts(d, k).reshape(-1, k, 3)
    area_d = np.asarray(area_d, dtype=np.float64).reshape(-1)
    return _pair_oks(_split(g[None]), _split(d), np.float64(area_g), area_d, sigmas,
                     in_vis_thre)


def oks_matrix(kpts: np.ndarray, areas: np.ndarray, sigmas: Sequence[float],
               in_vis_thre: Optional[float] = None) -> np.ndarray:
    """Pairwise OKS of N persons, [N, N] (symmetric; row i = oks_iou of person i vs all).

    Args:
        kpts: [N, K, 3] keypoints (x, y, score). areas: [N]. sigmas: [K].
    """
    sigmas = np.asarray(sigmas, dtype=np.float64)
    kpts = _as_kpts(kpts, sigmas.shape[0]).reshape(-1, sigmas.shape[0], 3)
    areas = np.asarray(areas, dtype=np.float64).reshape(-1)
    x, y, v = _split(kpts)
    return _pair_oks((x[:, None], y[:, None], v[:, None]), (x[None], y[None], v[None]),
                     areas[:, None], areas[None, :], sigmas, in_vis_thre)


def greedy_keep(scores: np.ndarray, overlap: np.ndarray, thr: float) -> List[int]:
    """Greedy NMS on a precomputed [N, N] overlap matrix: indices kept, best score first.

    Visits persons by descending score (the reference's ``argsort()[::-1]`` order, ties included);
    a person is dropped once its overlap with any kept person is not ``<= thr`` (so NaN drops too).
    """
    overlap = np.asarray(overlap)[None]
    order, kept = greedy_keep_batched(np.asarray(scores).reshape(1, -1),
                                      lambda gs, i: overlap[gs, i], thr)
    return order[0][kept[0]].tolist()


def greedy_keep_batched(scores: np.ndarray, overlap_rows: Callable[[np.ndarray, np.ndarray],
                                                                    np.ndarray],
                        thr: float) -> Tuple[np.ndarray, np.ndarray]:
    """``greedy_keep`` for G groups of M people at once.

    Args:
        scores: [G, M].
        overlap_rows: ``(groups [n], persons [n]) -> [n, M]``, the overlap of each listed
            group's person with every member of that group. It is asked only for people that
            are kept, so OKS-NMS computes ~kept x M OKS values instead of M x M.
    Returns:
        order [G, M] (each row's visiting order, best score first) and kept [G, M] (bool, in
        visiting order): group g keeps ``order[g][kept[g]]``. The loop runs over the M visiting
        ranks, each vectorised over the groups; rows are ordered by the same 1-D argsort the
        single-group rule uses, so ties fall exactly as there.
    """
    g, m = scores.shape
    order = np.argsort(scores, axis=1)[:, ::-1]
    suppressed = np.zeros((g, m), dtype=bool)
    kept = np.zeros((g, m), dtype=bool)
    rows = np.arange(g)
    for r in range(m):
        i = order[:, r]
        keep = ~suppressed[rows, i]
        kept[:, r] = keep
        gs = np.flatnonzero(keep)
        if gs.size:
            suppressed[gs] |= ~(overlap_rows(gs, i[gs]) <= thr)
    return order, kept


def oks_nms_batched(kpts: np.ndarray, areas: np.ndarray, scores: np.ndarray,
                    sigmas: Sequence[float], thr: float,
                    in_vis_thre: Optional[float] = None) -> Tuple[np.ndarray, np.ndarray]:
    """OKS-NMS in G images of M people each: kpts [G, M, K, 3], areas and scores [G, M].

    Returns ``(order, kept)`` as ``greedy_keep_batched``; the same survivors as ``oks_nms`` on
    each image alone.
    """
    sigmas = np.asarray(sigmas, dtype=np.float64)
    xyv = _split(np.asarray(kpts, dtype=np.float64))
    areas = np.asarray(areas, dtype=np.float64)

    def rows(gs: np.ndarray, i: np.ndarray) -> np.ndarray:
        return _pair_oks([c[gs, i][:, None] for c in xyv], [c[gs] for c in xyv],
                         areas[gs, i][:, None], areas[gs], sigmas, in_vis_thre)

    return greedy_keep_batched(np.asarray(scores, dtype=np.float64), rows, thr)


def oks_nms(kpts_db: Sequence[Mapping], thr: float, sigmas: Sequence[float],
            in_vis_thre: Optional[float] = None) -> List[int]:
    """OKS non-maximum suppression over the people of one image.

    Args:
        kpts_db: list of dicts with 'keypoints' [K, 3], 'score' (float) and 'area' (float).
        thr: a person is suppressed if its OKS with a higher-scoring kept person is > thr.
        sigmas: per-joint OKS sigmas [K].
    Returns:
        Indices into ``kpts_db`` that survive, highest score first ([] for an empty list).
    """
    if len(kpts_db) == 0:
        return []
    kpts = np.stack([np.asarray(p["keypoints"], dtype=np.float64).reshape(-1, 3) for p in kpts_db])
    scores = np.array([p["score"] for p in kpts_db], dtype=np.float64)
    areas = np.array([p["area"] for p in kpts_db], dtype=np.float64)
    return greedy_keep(scores, oks_matrix(kpts, areas, sigmas, in_vis_thre), thr)


def rescore(keypoints: np.ndarray, box_scores: np.ndarray, in_vis_thre: float) -> np.ndarray:
    """Person score = (mean of joint maxvals above ``in_vis_thre``, 0 if none) x box score.

    Args:
        keypoints: [N, K, 3] (x, y, maxval). box_scores: [N].
    Returns:
        float64 [N].
    """
    maxvals = np.asarray(keypoints, dtype=np.float64)[..., 2]
    valid = maxvals > in_vis_thre
    count = valid.sum(axis=-1)
    total = np.where(valid, maxvals, 0.0).sum(axis=-1)
    kpt_score = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    return kpt_score * np.asarray(box_scores, dtype=np.float64)
