"""Scores for a dataset of one's own skeleton: OKS AP, PCK and pixel error.

One validation row is scored three ways, all returned in one mapping (the results table's
columns, in this order, and ``results.json``):

* **OKS AP** (``AP`` ... ``AR (L)``): the COCO keypoint protocol of coco_eval.py (rescoring,
  per-image OKS-NMS, pycocotools COCOeval) on the annotation json, with the OKS sigmas of the
  dataset description. A description without ``sigmas`` is scored with ``DEFAULT_SIGMA`` for
  every joint; the mapping then carries a ``sigma (default)`` column holding that value, so a
  reader of the table or ``results.json`` sees that the AP is not on the description's sigmas.
* **PCK@0.05, PCK@0.1**: the fraction of labeled joints (visibility > 0) whose prediction lies
  within ``thr x box size`` of the ground truth (distance <= threshold, as the MPII PCKh). The
  box size of a person is ``max(w, h)`` of its ground-truth box ``[x, y, w, h]`` (the record's
  ``raw_box``, the box of the annotation json), the normaliser mmpose's PCK uses for boxes. All
  labeled joints of all persons count equally.
* **Pixel error**: the Euclidean distance in image pixels between prediction and ground truth,
  over labeled joints: ``px <joint>`` is its mean per joint (NaN for a joint no validation
  person has labeled) and ``px error`` the mean of those per-joint means over the joints that
  have one (each joint weighs the same, however often it is labeled).

PCK and pixel error read the ground truth from the validation records (in the order of the
predictions), so they need no matching; records without labeled joints (detection boxes) give
NaN for them.
"""
from __future__ import annotations

import json
import logging
from collections import OrderedDict
from typing import Any, Mapping, Sequence, Tuple

import numpy as np

from semipose.data.keypoints import JointSet, to_native
from semipose.errors import DataError
from semipose.evaluation.coco_eval import (BOX_KEYS, METRIC_NAMES, build_results, result_file,
                                           run_cocoeval)
from semipose.utils.io import atomic_write_text

logger = logging.getLogger(__name__)

# OKS sigma of every joint when the description gives none. COCO's sigmas run from 0.025 (eyes)
# to 0.107 (hips); 0.05 sits between face points and limb joints: a 5 px error on a person of
# area 10,000 px^2 scores OKS exp(-25 / (2 * 10000 * (2 * 0.05)^2)) = 0.88.
DEFAULT_SIGMA = 0.05
PCK_THRESHOLDS = (0.05, 0.1)
DEFAULT_SIGMA_COLUMN = "sigma (default)"
MEAN_ERROR_COLUMN = "px error"

_warned_default: set = set()


def scoring_sigmas(native: JointSet) -> Tuple[np.ndarray, bool]:
    """(OKS sigmas [J], whether they are the default): the description's, else DEFAULT_SIGMA."""
    if not native.sigmas:
        return np.full(native.num_joints, DEFAULT_SIGMA, np.float64), True
    if len(native.sigmas) != native.num_joints:
        # the description reader refuses this; a joint set built in code may not
        raise DataError(f"joint set {native.describe()} has {len(native.sigmas)} OKS sigmas for "
                        f"{native.num_joints} joints: give one per joint in the order of 'joints'")
    return np.asarray(native.sigmas, np.float64), False


def ground_truth(records: Sequence[Mapping[str, Any]], num_joints: int
                 ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stack the records' ground truth: joints [N, J, 2], labeled [N, J] (bool), box size [N]
    (max(w, h) of 'raw_box'). Joints are in the records' (model) joint order."""
    joints = np.stack([np.asarray(r["joints"], np.float64)[:, :2] for r in records])
    vis = np.stack([np.asarray(r["joints_vis"], np.float64) for r in records])
    if vis.ndim == 3:  # [N, J, k] visibility copies per coordinate: one is enough
        vis = vis[..., 0]
    boxes = np.stack([np.asarray(r["raw_box"], np.float64).reshape(4) for r in records])
    if joints.shape[1] != num_joints or vis.shape != joints.shape[:2]:
        raise ValueError(f"records hold joints {joints.shape} and joints_vis {vis.shape}; "
                         f"expected [N, {num_joints}, 2] and [N, {num_joints}]")
    return joints, vis > 0, boxes[:, 2:4].max(axis=1)


def joint_distances(pred_xy: np.ndarray, gt_xy: np.ndarray) -> np.ndarray:
    """Euclidean distance [N, J] in pixels between predictions and ground truth [N, J, 2]."""
    return np.linalg.norm(np.asarray(pred_xy, np.float64)[..., :2] - gt_xy, axis=-1)


def pixel_errors(dist: np.ndarray, labeled: np.ndarray) -> np.ndarray:
    """Mean distance per joint over the persons that have it labeled [J]; NaN where none has."""
    counts = labeled.sum(axis=0)
    sums = np.where(labeled, dist, 0.0).sum(axis=0)
    return np.divide(sums, counts, out=np.full(dist.shape[1], np.nan), where=counts > 0)


def pck(dist: np.ndarray, labeled: np.ndarray, box_size: np.ndarray, thr: float) -> float:
    """Fraction of labeled joints with distance <= thr * box size (NaN without labeled joints)."""
    total = int(labeled.sum())
    if total == 0:
        return float("nan")
    hits = (dist <= thr * box_size[:, None]) & labeled
    return float(hits.sum() / total)


def keypoint_metrics(pred_xy: np.ndarray, gt_xy: np.ndarray, labeled: np.ndarray,
                     box_size: np.ndarray, joint_names: Sequence[str]) -> "OrderedDict[str, float]":
    """PCK@thr for PCK_THRESHOLDS, 'px error' and 'px <joint>' per joint (see the module doc)."""
    dist = joint_distances(pred_xy, gt_xy)
    per_joint = pixel_errors(dist, labeled)
    out: "OrderedDict[str, float]" = OrderedDict(
        (f"PCK@{thr:g}", pck(dist, labeled, box_size, thr)) for thr in PCK_THRESHOLDS)
    have = ~np.isnan(per_joint)
    out[MEAN_ERROR_COLUMN] = float(per_joint[have].mean()) if have.any() else float("nan")
    out.update((f"px {name}", float(e)) for name, e in zip(joint_names, per_joint))
    return out


def evaluate_custom(keypoints: np.ndarray, boxes: Mapping[str, np.ndarray], image_ids: Sequence,
                    records: Sequence[Mapping[str, Any]], annotation_file: str, image_set: str,
                    output_dir: str, joint_set: JointSet, native: JointSet, prefix: str = "",
                    in_vis_thre: float = 0.2, oks_thre: float = 0.9, save_result: bool = True
                    ) -> Tuple["OrderedDict[str, float]", float]:
    """Score keypoint predictions on a custom COCO-format set.

    Args:
        keypoints: [N, J, 3] (x, y, maxval) in image pixels, in ``joint_set`` order and in the
            order of ``records``.
        boxes: 'center', 'scale', 'area', 'score', 'raw_box' per prediction (as coco_eval.py).
        image_ids: [N] image id of each prediction (the annotation json's ids).
        records: the validation person records: 'joints' [J, 2], 'joints_vis' [J] and
            'raw_box' [x, y, w, h] in ``joint_set`` order (the PCK / pixel-error ground truth).
        annotation_file: the COCO-format json of ``image_set`` (the OKS AP ground truth).
        output_dir: the result json goes to ``<output_dir>/results/`` (see coco_eval.result_file).
        joint_set: the model's joint space; native: the description's joint set (the json's
            joint order, its names and sigmas).
        prefix, in_vis_thre, oks_thre, save_result: as coco_eval.evaluate_coco.
    Returns:
        (OrderedDict: the 10 COCO metrics, PCK@0.05, PCK@0.1, 'px error', 'px <joint>' per
        joint, and 'sigma (default)' when the default sigma was used; AP).
    """
    keypoints = np.asarray(keypoints)
    if keypoints.ndim != 3 or keypoints.shape[2] != 3 or keypoints.shape[1] != joint_set.num_joints:
        raise ValueError(f"keypoints must be [N, {joint_set.num_joints}, 3] (x, y, maxval) in "
                         f"'{joint_set.name}' order, got shape {keypoints.shape}")
    if len(records) != len(keypoints):
        raise ValueError(f"got {len(keypoints)} predictions for {len(records)} validation "
                         f"records; they must correspond one to one")
    missing = [k for k in BOX_KEYS if k not in boxes]
    if missing:
        raise KeyError(f"boxes lacks {missing}; expected keys {list(BOX_KEYS)}")
    sigmas, defaulted = scoring_sigmas(native)
    if defaulted:
        _note_default_sigma(native)

    kpts = to_native(keypoints, joint_set, native)
    results = build_results(kpts, boxes, image_ids, sigmas, in_vis_thre, oks_thre)
    path = result_file(output_dir, image_set, prefix)
    if save_result:
        atomic_write_text(json.dumps(results, sort_keys=True, indent=4), path)
        logger.info("=> wrote %d keypoint results to %s", len(results), path)
    if results:
        metrics = run_cocoeval(annotation_file, path if save_result else results, sigmas)
    else:
        metrics = OrderedDict((name, 0.0) for name in METRIC_NAMES)

    gt_xy, labeled, box_size = ground_truth(records, joint_set.num_joints)
    metrics.update(keypoint_metrics(kpts[..., :2], to_native(gt_xy, joint_set, native),
                                    to_native(labeled, joint_set, native), box_size,
                                    native.names))
    if defaulted:
        metrics[DEFAULT_SIGMA_COLUMN] = DEFAULT_SIGMA
    return metrics, metrics["AP"]


def _note_default_sigma(native: JointSet) -> None:
    """Say once per description that its AP is computed with the default sigma."""
    key = (native.name, native.source)
    if key not in _warned_default:
        _warned_default.add(key)
        logger.warning("dataset description %s gives no OKS sigmas: OKS AP uses sigma %g for "
                       "every joint (the '%s' column); add 'sigmas' (one per joint) to the "
                       "description to score with your own", native.describe(), DEFAULT_SIGMA,
                       DEFAULT_SIGMA_COLUMN)


__all__ = ["DEFAULT_SIGMA", "PCK_THRESHOLDS", "evaluate_custom", "keypoint_metrics",
           "scoring_sigmas", "ground_truth", "pixel_errors", "pck"]
