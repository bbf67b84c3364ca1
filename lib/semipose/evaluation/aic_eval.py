"""AI Challenger evaluation: AIC-AP (the challenge's OKS metric) and a PCKh-like table.

AIC-AP: per image, OKS between every GT human and every prediction over the GT joints with v == 1,
with the AIC deltas (``keypoints.AIC.sigmas``) and scale = GT box area; each GT keeps its best OKS;
the normaliser adds max(#gt, #pred) per image (#gt alone for annotated images without predictions);
AP = mean over thresholds 0.50:0.05:0.95 of (#best OKS > t) / normaliser. No NMS.

PCKh-like: per person, head size = diagonal of the head box whose corners are the head top and the
neck (SC_BIAS 1), 95 px where either is unlabeled; joints count when labeled (v < 3, the dataset's
visibility rule); threshold 0.5; Mean weighted by labeled counts over all 14 joints.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from semipose.data.aic import UNLABELED, aic_humans
from semipose.data.keypoints import AIC, JointSet, to_native
from semipose.errors import DataError, MissingFileError
from semipose.evaluation.mpii_eval import PCK_GRID, pck_curve, summarize
from semipose.utils.io import atomic_write_mat, read_json

AIC_SC_BIAS = 1.0
AIC_DEFAULT_HEAD_SIZE = 95.0  # pixels, where head top or neck is unlabeled
AP_THRESHOLDS = np.linspace(0.5, 0.95, 10)
AIC_COLUMNS = (("Head", ("head_top",)), ("Neck", ("neck",)), ("Shoulder", ("lsho", "rsho")),
               ("Elbow", ("lelb", "relb")), ("Wrist", ("lwri", "rwri")), ("Hip", ("lhip", "rhip")),
               ("Knee", ("lkne", "rkne")), ("Ankle", ("lank", "rank")))


def _read_humans(annotation_file: str):
    if not os.path.isfile(annotation_file):
        raise MissingFileError(f"AI Challenger annotation file not found: {annotation_file}")
    return aic_humans(read_json(annotation_file, "AI Challenger annotation file"), annotation_file)


def aic_pckh_gt(annotation_file: str, records: Sequence[Dict[str, Any]]) -> Dict[str, np.ndarray]:
    """PCKh GT aligned with ``records`` (matched by image_id and human key).

    Returns {'pos_gt_src' [14, 2, N], 'jnt_visible' [14, N] (v < 3), 'headboxes_src' [2, 2, N]
    (corner, xy, person) = (head top, neck)} — the layout of the optional ``gt_<set>.npy``.
    """
    image_ids, humans, kpts, _ = _read_humans(annotation_file)
    row = {(i, h): k for k, (i, h) in enumerate(zip(image_ids, humans))}
    try:
        idx = np.array([row[(str(r["image_id"]), r["human"])] for r in records], np.int64)
    except KeyError as err:
        raise ValueError(f"record {err} is not in {annotation_file}; AIC records must come from the "
                         f"same annotation file (load_aic_records) and keep their 'human' key")
    gt = kpts[idx].reshape(len(records), AIC.num_joints, 3)
    top, neck = AIC.index("head_top"), AIC.index("neck")
    return {"pos_gt_src": gt[..., :2].transpose(1, 2, 0),
            "jnt_visible": (gt[..., 2] < UNLABELED).astype(np.float64).T,
            "headboxes_src": gt[:, [top, neck], :2].transpose(1, 2, 0)}


def write_aic_gt_npy(annotation_file: str, records: Sequence[Dict[str, Any]], path: str) -> None:
    """Save ``aic_pckh_gt`` as a pickled dict .npy (the ``gt_<set>.npy`` this module reads)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    np.save(path, aic_pckh_gt(annotation_file, records), allow_pickle=True)


def load_aic_gt_npy(path: str) -> Dict[str, np.ndarray]:
    """Read a ``gt_<set>.npy`` dict with keys pos_gt_src, jnt_visible, headboxes_src."""
    if not os.path.isfile(path):
        raise MissingFileError(
            f"AIC PCKh ground truth not found: {path}. Create it with "
            f"semipose.evaluation.aic_eval.write_aic_gt_npy(annotation_file, records, path), or pass "
            f"gt_npy=None to derive the same GT from the annotation json.")
    gt = np.load(path, allow_pickle=True).item()
    missing = {"pos_gt_src", "jnt_visible", "headboxes_src"} - set(gt)
    if missing:
        raise DataError(f"{path} lacks keys {sorted(missing)}")
    return gt


def aic_pckh(pred: np.ndarray, gt: Dict[str, np.ndarray], thresholds: np.ndarray
             ) -> Tuple[np.ndarray, np.ndarray]:
    """PCKh curve of native predictions [N, 14, 2] against a GT dict -> (pck [T, 14], counts [14])."""
    pos = np.asarray(gt["pos_gt_src"], np.float64).transpose(2, 0, 1)        # [N, 14, 2]
    visible = np.asarray(gt["jnt_visible"], np.float64).T                     # [N, 14]
    boxes = np.asarray(gt["headboxes_src"], np.float64).transpose(2, 0, 1)   # [N, 2, 2]
    if pos.shape[0] != pred.shape[0]:
        raise ValueError(f"PCKh GT has {pos.shape[0]} persons, predictions {pred.shape[0]}")
    head_ok = (visible[:, AIC.index("head_top")] > 0) & (visible[:, AIC.index("neck")] > 0)
    diag = np.linalg.norm(boxes[:, 1] - boxes[:, 0], axis=-1)
    headsize = np.where(head_ok, AIC_SC_BIAS * diag, AIC_DEFAULT_HEAD_SIZE)
    return pck_curve(pred, pos, visible, headsize, thresholds)


def _sorted_groups(keys: np.ndarray, n: int) -> Tuple[np.ndarray, np.ndarray]:
    """Rows stably sorted by group key (-1 dropped), and the row count of each of the n groups."""
    order = np.argsort(keys, kind="stable")
    order = order[keys[order] >= 0]
    return order, np.bincount(keys[order], minlength=n)


def aic_ap(pred: np.ndarray, pred_image_ids: Sequence[str], annotation_file: str) -> float:
    """AIC-AP of native predictions [N, 14, 2+] grouped by image id (vectorised per (#gt, #pred))."""
    image_ids, _, kpts, boxes = _read_humans(annotation_file)
    names = list(dict.fromkeys(image_ids))
    index = {name: k for k, name in enumerate(names)}
    gt_order, gt_count = _sorted_groups(np.array([index[i] for i in image_ids], np.int64), len(names))
    pr_keys = np.array([index.get(str(i), -1) for i in pred_image_ids], np.int64)
    pr_order, pr_count = _sorted_groups(pr_keys, len(names))
    gt_img = np.repeat(np.arange(len(names)), gt_count)
    pr_img = np.repeat(np.arange(len(names)), pr_count)
    delta2 = np.square(np.asarray(AIC.sigmas, np.float64))

    best: List[np.ndarray] = []
    normaliser = 0
    for g, p in set(zip(gt_count.tolist(), pr_count.tolist())):
        images = np.flatnonzero((gt_count == g) & (pr_count == p))
        normaliser += images.size * max(g, p)
        if g == 0 or p == 0:
            continue
        gt = kpts[gt_order[np.isin(gt_img, images)]].reshape(images.size, g, AIC.num_joints, 3)
        box = boxes[gt_order[np.isin(gt_img, images)]].reshape(images.size, g, 4)
        pr = pred[pr_order[np.isin(pr_img, images)], :, :2].reshape(images.size, p, AIC.num_joints, 2)
        vis = (gt[..., 2] == 1).astype(np.float64)                                # [I, G, 14]
        area = ((box[..., 2] - box[..., 0]) * (box[..., 3] - box[..., 1])).astype(np.float32)
        d2 = np.square(gt[:, :, None, :, :2] - pr[:, None]).sum(-1)               # [I, G, P, 14]
        e = np.exp(-d2 / 2.0 / delta2 / (area[..., None, None] + 1.0))
        nvis = vis.sum(-1)[..., None]                                            # [I, G, 1]
        oks = np.where(nvis > 0, (e * vis[:, :, None]).sum(-1) / np.maximum(nvis, 1.0), 0.0)
        best.append(oks.max(axis=2).ravel())
    if normaliser == 0:
        return 0.0
    best_all = np.concatenate(best) if best else np.zeros(0)
    hits = (best_all[None] > AP_THRESHOLDS[:, None]).sum(axis=1)
    return float(np.mean(hits / np.float32(normaliser)))


def evaluate_aic(preds: np.ndarray, records: Sequence[Dict[str, Any]], joint_set: JointSet,
                 annotation_file: str, output_dir: str, gt_npy: Optional[str] = None,
                 pred_file_name: str = "pred.mat", threshold: float = 0.5
                 ) -> Tuple["OrderedDict[str, float]", float]:
    """AIC evaluation of predictions made on ``records`` (one per GT person, as load_aic_records).

    Args:
        preds: [N, J, 2 or 3] image pixels in ``joint_set`` order (union or AIC), N = len(records).
        records: person records with 'image_id' and 'human' (the json human key).
        annotation_file: the split's keypoint_<set>_annotation.json (AP and, by default, PCKh GT).
        output_dir: where ``pred_file_name`` ([N, 14, 2] native pixels as given, key 'preds') goes.
        gt_npy: optional PCKh GT .npy (see write_aic_gt_npy); a missing one is an error.
    Returns:
        (OrderedDict Head, Neck, Shoulder, Elbow, Wrist, Hip, Knee, Ankle, Mean, Mean@0.1 (0.11),
        Mean@0.2, Mean@0.3, Mean@0.4 — percentages — and AP in [0, 1]; the 'Mean' value).
    """
    if len(records) != len(preds):
        raise ValueError(f"{len(preds)} predictions for {len(records)} records")
    pred = to_native(np.asarray(preds, np.float64)[..., :2], joint_set, AIC)
    atomic_write_mat(os.path.join(output_dir, pred_file_name), {"preds": pred})
    gt = load_aic_gt_npy(gt_npy) if gt_npy is not None else aic_pckh_gt(annotation_file, records)
    curve, counts = aic_pckh(pred, gt, PCK_GRID)
    at_thr, _ = aic_pckh(pred, gt, np.array([threshold]))
    table = summarize(at_thr[0], curve, counts, AIC.names, AIC_COLUMNS)
    table["AP"] = aic_ap(pred, [str(r["image_id"]) for r in records], annotation_file)
    return table, table["Mean"]
