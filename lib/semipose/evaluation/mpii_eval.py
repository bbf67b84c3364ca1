"""MPII PCKh evaluation (and the shared, vectorised PCKh core used by the AIC evaluation).

Ground truth: a MATLAB file ``<root>/mpii/annot/gt_<TEST_SET>.mat`` with
``dataset_joints`` (names), ``jnt_missing`` [16, N], ``pos_gt_src`` [16, 2, N] (1-based pixels) and
``headboxes_src`` [2, 2, N] (corner, xy, person). The persons are in the order of
``<TEST_SET>.json``, i.e. the order of the predictions.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np
import scipy.io

from semipose.data.keypoints import MPII, JointSet, to_native
from semipose.data.mpii import write_gt_mat
from semipose.errors import DataError, MissingFileError
from semipose.utils.io import atomic_write_mat, read_json

SC_BIAS = 0.6  # MPII head size = 0.6 x head-box diagonal
# PCK curve grid 0, 0.01, ..., 0.50; "Mean@0.1" reads grid index 11 (= 0.11) like the reference.
PCK_GRID = np.arange(0, 0.5 + 0.01, 0.01)
CURVE_COLUMNS = (("Mean@0.1", 11), ("Mean@0.2", 20), ("Mean@0.3", 30), ("Mean@0.4", 40))
# Joints left out of the MPII Mean (pelvis, thorax), as in the standard MPII protocol.
MPII_MEAN_EXCLUDED = ("root", "thorax")


def pck_curve(pred: np.ndarray, gt: np.ndarray, visible: np.ndarray, headsize: np.ndarray,
              thresholds: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """PCK at each threshold.

    Args:
        pred, gt: [N, J, 2] pixels; visible: [N, J] (0/1); headsize: [N] normaliser (pixels);
        thresholds: [T] normalised distances.
    Returns:
        (pck [T, J] in percent, NaN for a joint never visible; counts [J] of visible joints).
    """
    vis = visible.astype(bool)
    # A zero head size gives inf/NaN errors, i.e. a miss; a never-visible joint gives NaN PCK.
    with np.errstate(invalid="ignore", divide="ignore"):
        err = np.linalg.norm(pred - gt, axis=-1) / headsize[:, None]           # [N, J]
        hits = (err[None] <= thresholds[:, None, None]) & vis[None]            # [T, N, J]
        counts = vis.sum(axis=0).astype(np.float64)                            # [J]
        pck = 100.0 * hits.sum(axis=1) / counts[None]
    return pck, counts


def summarize(pck_at_thr: np.ndarray, curve: np.ndarray, counts: np.ndarray,
              names: Sequence[str], columns: Sequence[Tuple[str, Sequence[str]]],
              excluded: Sequence[str] = ()) -> "OrderedDict[str, float]":
    """Table of per-part PCK (mean of the listed joints) + count-weighted Means.

    ``pck_at_thr`` [J] and ``curve`` [T, J] are per-joint PCK; ``excluded`` joints are left out of
    the Means (weight 0). Joints never visible carry weight 0 in the Means.
    """
    weights = counts.copy()
    weights[[names.index(n) for n in excluded]] = 0.0
    weights = weights / max(weights.sum(), 1.0)
    table: "OrderedDict[str, float]" = OrderedDict()
    for column, joint_names in columns:
        table[column] = float(np.mean([pck_at_thr[names.index(n)] for n in joint_names]))
    table["Mean"] = float(np.sum(np.nan_to_num(pck_at_thr) * weights))
    for column, idx in CURVE_COLUMNS:
        table[column] = float(np.sum(np.nan_to_num(curve[idx]) * weights))
    return table


MPII_COLUMNS = (("Head", ("head_top",)), ("Shoulder", ("lsho", "rsho")), ("Elbow", ("lelb", "relb")),
                ("Wrist", ("lwri", "rwri")), ("Hip", ("lhip", "rhip")), ("Knee", ("lkne", "rkne")),
                ("Ankle", ("lank", "rank")))


def load_mpii_gt(gt_file: str) -> Dict[str, np.ndarray]:
    """Read a GT .mat -> {'pos' [N, 16, 2] 1-based, 'visible' [N, 16], 'headboxes' [N, 2, 2]}."""
    if not os.path.isfile(gt_file):
        raise MissingFileError(
            f"MPII PCKh ground truth not found: {gt_file}. It is the MPII annotation release's "
            f"gt_<TEST_SET>.mat (shipped with the Simple-Baseline/HRNet MPII json annotations; "
            f"rename gt_valid.mat to match TEST_SET or set DATASET.TEST_SET), or build one from "
            f"<TEST_SET>.json with semipose.evaluation.mpii_eval.write_mpii_gt_mat (head boxes then "
            f"derived from head top / upper neck, not the dataset's)."
        )
    mat = scipy.io.loadmat(gt_file)
    missing = np.asarray(mat["jnt_missing"], np.float64)                       # [16, N]
    n = missing.shape[1]
    pos = np.asarray(mat["pos_gt_src"], np.float64).reshape(MPII.num_joints, 2, n)
    boxes = np.asarray(mat["headboxes_src"], np.float64).reshape(2, 2, n)
    return {"pos": pos.transpose(2, 0, 1), "visible": 1.0 - missing.T,
            "headboxes": boxes.transpose(2, 0, 1)}


def evaluate_mpii(preds: np.ndarray, joint_set: JointSet, gt_file: str, output_dir: str,
                  pred_file_name: str = "pred.mat", test_set: str = "validation",
                  threshold: float = 0.5) -> Tuple["OrderedDict[str, float]", float]:
    """PCKh of predictions against the MPII GT .mat.

    Args:
        preds: [N, J, 2 or 3] in 0-based image pixels, joint order ``joint_set`` (union or MPII);
            persons in the order of the GT file. Not modified.
        joint_set: the model joint space of ``preds``.
        gt_file: GT .mat path (see ``semipose.data.mpii.mpii_gt_path``); not read when 'test' is
            in ``test_set``.
        output_dir: where ``pred_file_name`` ([N, 16, 2] 1-based, key 'preds') is written.
    Returns:
        (OrderedDict Head, Shoulder, Elbow, Wrist, Hip, Knee, Ankle, Mean, Mean@0.1 (0.11 as in the
        reference), Mean@0.2, Mean@0.3, Mean@0.4 — percentages; the 'Mean' value).
        For a test split: ({'Null': 0}, 0).
    """
    pred = to_native(np.asarray(preds, np.float64)[..., :2], joint_set, MPII) + 1.0
    atomic_write_mat(os.path.join(output_dir, pred_file_name), {"preds": pred})
    if "test" in test_set:
        return OrderedDict([("Null", 0)]), 0

    gt = load_mpii_gt(gt_file)
    if gt["pos"].shape[0] != pred.shape[0]:
        raise DataError(f"{gt_file} has {gt['pos'].shape[0]} persons but {pred.shape[0]} "
                        f"predictions were given; the GT must match DATASET.TEST_SET's json.")
    headsize = SC_BIAS * np.linalg.norm(gt["headboxes"][:, 1] - gt["headboxes"][:, 0], axis=-1)
    curve, counts = pck_curve(pred, gt["pos"], gt["visible"], headsize, PCK_GRID)
    at_thr, _ = pck_curve(pred, gt["pos"], gt["visible"], headsize, np.array([threshold]))
    table = summarize(at_thr[0], curve, counts, MPII.names, MPII_COLUMNS, MPII_MEAN_EXCLUDED)
    return table, table["Mean"]


def head_boxes_from_joints(joints: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """Square head boxes [N, 2, 2] (corner, xy) around the upper-neck -> head-top segment.

    The square is centred on the segment's midpoint with side = segment length, so the PCKh head size
    is 0.6 * sqrt(2) * |head top - upper neck|. The real MPII head boxes are annotated rectangles;
    this stand-in is for GT built from json annotations (tests, synthetic data).
    """
    top, neck = MPII.index("head_top"), MPII.index("upper_neck")
    bad = np.flatnonzero((visible[:, top] <= 0) | (visible[:, neck] <= 0))
    if bad.size:
        raise ValueError(f"persons {bad.tolist()} lack a labeled head top or upper neck: pass "
                         f"headboxes [N, 2, 2] explicitly to write_mpii_gt_mat")
    mid = 0.5 * (joints[:, top] + joints[:, neck])
    half = 0.5 * np.linalg.norm(joints[:, top] - joints[:, neck], axis=-1)[:, None]
    return np.stack([mid - half, mid + half], axis=1)


def write_mpii_gt_mat(source: Union[str, Sequence[Dict[str, Any]], Tuple[np.ndarray, np.ndarray]],
                      path: str, headboxes: Optional[np.ndarray] = None) -> None:
    """Write a PCKh GT .mat from MPII-format annotations.

    Args:
        source: an MPII json path, its list of entries (joints 1-based), or a tuple
            (joints [N, 16, 2] 1-based native MPII order, joints_vis [N, 16]).
        path: output .mat file (written atomically).
        headboxes: optional [N, 2, 2] (corner, xy) head boxes; default ``head_boxes_from_joints``.
    """
    if isinstance(source, str):
        source = read_json(source, "MPII annotation file")
    if isinstance(source, tuple):
        joints, vis = (np.asarray(a, np.float64) for a in source)
    else:
        joints = np.array([e["joints"] for e in source], np.float64)
        vis = np.array([e["joints_vis"] for e in source], np.float64)
    joints = joints.reshape(-1, MPII.num_joints, 2)
    vis = vis.reshape(-1, MPII.num_joints)
    boxes = head_boxes_from_joints(joints, vis) if headboxes is None else np.asarray(headboxes, float)
    write_gt_mat(path, joints, vis, boxes)
