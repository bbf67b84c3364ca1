"""COCO keypoint evaluation: rescoring, per-image OKS-NMS, result JSON, pycocotools COCOeval.

Steps (as the reference implementation): predictions in the model's joint space are reordered to
COCO-17; each person's score becomes (mean joint maxval above ``in_vis_thre``) x box score; OKS-NMS
runs per image; the survivors are written as a COCO result list and scored with COCOeval
('keypoints'). Each result carries its box as 'bbox', so pycocotools' loadRes takes its bbox branch
and a detection's area is the box area (this only changes which unmatched detections are ignored in
the medium/large ranges).
"""
from __future__ import annotations

import contextlib
import gc
import io
import json
import logging
import os
from collections import OrderedDict
from typing import Any, Dict, List, Mapping, Sequence, Tuple, Union

import numpy as np

from semipose.data.keypoints import COCO, JointSet, to_native
from semipose.errors import DataError, MissingFileError
from semipose.evaluation.nms import oks_nms_batched, rescore
from semipose.utils.io import atomic_write_text

logger = logging.getLogger(__name__)

METRIC_NAMES = ("AP", "Ap .5", "AP .75", "AP (M)", "AP (L)",
                "AR", "AR .5", "AR .75", "AR (M)", "AR (L)")
BOX_KEYS = ("center", "scale", "area", "score", "raw_box")

_GT_CACHE: Dict[Tuple[str, int, int], Any] = {}


def boxes_from_array(all_boxes: np.ndarray) -> Dict[str, np.ndarray]:
    """Split the reference's [N, 10] rows [cx, cy, sw, sh, area, score, x, y, w, h] into a dict."""
    b = np.asarray(all_boxes, dtype=np.float64).reshape(-1, 10)
    return {"center": b[:, 0:2], "scale": b[:, 2:4], "area": b[:, 4], "score": b[:, 5],
            "raw_box": b[:, 6:10]}


def result_file(output_dir: str, image_set: str, prefix: str = "") -> str:
    """``<output_dir>/results/person_keypoints_<image_set>_<prefix or 'results'>.json``."""
    return os.path.join(output_dir, "results",
                        f"person_keypoints_{image_set}_{prefix or 'results'}.json")


def has_ground_truth(image_set: str) -> bool:
    """Test and unlabeled sets carry no keypoint annotations to score against."""
    return "test" not in image_set and "unlabeled" not in image_set


def _json_id(image_id: Any) -> Union[int, str]:
    """COCO image ids are ints in the annotation file; numpy/tensor scalars are not JSON-ready."""
    if isinstance(image_id, (str, bytes)):
        return image_id.decode() if isinstance(image_id, bytes) else image_id
    return int(image_id)


def build_results(kpts: np.ndarray, boxes: Mapping[str, np.ndarray], image_ids: Sequence,
                  sigmas: Sequence[float], in_vis_thre: float, oks_thre: float
                  ) -> List[Dict[str, Any]]:
    """Rescore, OKS-NMS per image and format COCO keypoint results.

    Args:
        kpts: [N, 17, 3] (x, y, maxval) in image pixels, COCO order.
        boxes: 'center' [N, 2], 'scale' [N, 2], 'area' [N], 'score' [N], 'raw_box' [N, 4].
        image_ids: [N] COCO image ids.
    Returns:
        Result dicts grouped by image (first-appearance order), survivors best score first.
    """
    n = kpts.shape[0]
    area = np.asarray(boxes["area"], dtype=np.float64).reshape(n)
    scores = rescore(kpts, np.asarray(boxes["score"], dtype=np.float64).reshape(n), in_vis_thre)
    center = np.asarray(boxes["center"], dtype=np.float64).reshape(n, 2)
    scale = np.asarray(boxes["scale"], dtype=np.float64).reshape(n, 2)
    raw_box = np.asarray(boxes["raw_box"], dtype=np.float64).reshape(n, 4)
    ids = image_ids.tolist() if isinstance(image_ids, np.ndarray) and image_ids.dtype.kind in "iu" \
        else [_json_id(i) for i in image_ids]
    if len(ids) != n:
        raise ValueError(f"got {n} predictions but {len(ids)} image ids")

    groups: Dict[Union[int, str], List[int]] = {}
    for i, img in enumerate(ids):
        groups.setdefault(img, []).append(i)
    # Images with the same number of people are suppressed together: one batched greedy pass per
    # group size, computing OKS rows for kept people only, instead of ~20 numpy calls per image
    # (with the result building below, 2.2x faster than a per-image loop at 5,000 images x 20
    # detections; bench/results/eval_nms_cpu.md). ``chosen`` lists the survivors' indices per
    # image (first-appearance order of images, best score first), exactly as a per-image loop
    # would.
    by_size: Dict[int, List[int]] = {}
    members = list(groups.values())
    for g, mem in enumerate(members):
        by_size.setdefault(len(mem), []).append(g)
    chosen_of: List[np.ndarray] = [None] * len(members)  # type: ignore[list-item]
    for m, gs in by_size.items():
        idx = np.array([members[g] for g in gs], dtype=np.int64)  # [G, m]
        # a chunk's per-rank distances stay under ~32 MB of float64
        step = max(1, 4_000_000 // (m * kpts.shape[1]))
        for c in range(0, len(gs), step):
            part = idx[c:c + step]
            order, kept = oks_nms_batched(kpts[part], area[part], scores[part], sigmas,
                                          oks_thre)
            # the first visited person is never suppressed, so no image loses all its people
            for row, g in enumerate(gs[c:c + step]):
                chosen_of[g] = part[row, order[row][kept[row]]]
    chosen = np.concatenate(chosen_of) if chosen_of else np.zeros(0, dtype=np.int64)

    # one tolist per field instead of four per person; survivors are picked before the float64
    # copy (float32 -> float64 is exact, so the values are those of the float32 predictions)
    img_of = np.repeat(np.arange(len(members)), [len(c) for c in chosen_of])
    keys = list(groups)
    with gc_paused():
        kp_l = kpts.reshape(n, kpts.shape[1] * kpts.shape[2])[chosen].astype(np.float64).tolist()
        sc_l = scores[chosen].tolist()
        ce_l = center[chosen].tolist()
        sa_l = scale[chosen].tolist()
        bb_l = raw_box[chosen].tolist()
        return [{"image_id": keys[g], "category_id": 1, "keypoints": kp, "score": sc,
                 "center": ce, "scale": sa, "bbox": bb}
                for g, kp, sc, ce, sa, bb in zip(img_of.tolist(), kp_l, sc_l, ce_l, sa_l, bb_l)]


@contextlib.contextmanager
def gc_paused():
    """Switch off Python's cyclic garbage collector while a block builds many containers.

    The result lists of 5,000 images hold ~50K dicts and ~200K lists, none of them in a cycle,
    yet each 700 new containers start a collection that walks young (and, now and then, all)
    tracked objects: that was ~40% of ``build_results`` (bench/results/eval_nms_cpu.md).
    Reference counting still frees everything; the collector's previous state is restored.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _load_gt(annotation_file: str):
    """COCO ground truth, cached per file version (COCOeval only adds idempotent 'ignore' flags)."""
    from pycocotools.coco import COCO as CocoApi

    if not os.path.isfile(annotation_file):
        raise MissingFileError(
            f"COCO annotation file '{annotation_file}' not found: place the person_keypoints "
            f"JSON there or point DATASET.ROOT / TEST_SET at the right folder.")
    st = os.stat(annotation_file)
    key = (os.path.abspath(annotation_file), st.st_mtime_ns, st.st_size)
    if key not in _GT_CACHE:
        _GT_CACHE.clear()
        with _captured("load ground truth"):
            _GT_CACHE[key] = CocoApi(annotation_file)
    return _GT_CACHE[key]


@contextlib.contextmanager
def _captured(what: str):
    """Route pycocotools' prints into the log instead of stdout."""
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            yield
    finally:
        text = buf.getvalue().strip()
        if text:
            # the log file keeps pycocotools' output; the console gets the tables once
            logger.info("pycocotools (%s):\n%s", what, text, extra={"file_only": True})


def run_cocoeval(annotation_file: str, results: Union[str, List[Dict[str, Any]]],
                 sigmas: Sequence[float] = COCO.sigmas) -> "OrderedDict[str, float]":
    """COCOeval('keypoints') of a result file path or result list; the 10 summary metrics.
    ``sigmas``: the OKS sigmas of the annotation files' joints (COCO-17's by default)."""
    from pycocotools.cocoeval import COCOeval

    coco_gt = _load_gt(annotation_file)
    with _captured("keypoint evaluation"):
        coco_dt = coco_gt.loadRes(results)
        coco_eval = COCOeval(coco_gt, coco_dt, "keypoints")
        coco_eval.params.useSegm = None
        # pycocotools' own table holds COCO's sigmas; the joint set's replace it (same values
        # for COCO), so any joint count is scored with its own.
        coco_eval.params.kpt_oks_sigmas = np.asarray(sigmas, np.float64)
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return OrderedDict((name, float(coco_eval.stats[i])) for i, name in enumerate(METRIC_NAMES))


def evaluate_coco(preds: np.ndarray, boxes: Union[Mapping[str, np.ndarray], np.ndarray],
                  image_ids: Sequence, annotation_file: str, image_set: str, output_dir: str,
                  joint_set: JointSet, prefix: str = "", in_vis_thre: float = 0.2,
                  oks_thre: float = 0.9, save_result: bool = True, native: JointSet = COCO
                  ) -> Tuple[Mapping[str, float], float]:
    """Score keypoint predictions on a COCO set.

    Args:
        preds: [N, J, 3] (x, y, maxval) in original-image pixels, in ``joint_set`` order
            (the model's joint space: union-24 or COCO-17).
        boxes: dict with 'center' [N, 2], 'scale' [N, 2], 'area' [N], 'score' [N] (box score,
            1 for GT boxes), 'raw_box' [N, 4] (x, y, w, h), or the reference's [N, 10] rows.
        image_ids: [N] COCO image id of each prediction.
        annotation_file: person_keypoints JSON of ``image_set``.
        image_set: e.g. 'val2017'; names containing 'test'/'unlabeled' are not scored.
        output_dir: results go to ``<output_dir>/results/``.
        prefix: result file suffix ('eval_1', ...); '' gives '..._results.json'.
        in_vis_thre: joints with maxval above it enter the keypoint score.
        oks_thre: OKS-NMS threshold.
        save_result: write the result JSON (atomically).
        native: the annotation files' joint set (COCO-17 or a dataset's own); its OKS sigmas
            drive the OKS-NMS and the results are written in its order.
    Returns:
        (OrderedDict of the 10 COCO metrics, AP), or ({'Null': 0}, 0) for unscored sets.
    """
    preds = np.asarray(preds)
    if preds.ndim != 3 or preds.shape[2] != 3 or preds.shape[1] != joint_set.num_joints:
        raise ValueError(f"preds must be [N, {joint_set.num_joints}, 3] (x, y, maxval) in "
                         f"'{joint_set.name}' order, got shape {preds.shape}")
    if not isinstance(boxes, Mapping):
        boxes = boxes_from_array(boxes)
    missing = [k for k in BOX_KEYS if k not in boxes]
    if missing:
        raise KeyError(f"boxes lacks {missing}; expected keys {list(BOX_KEYS)}")

    if len(native.sigmas) != native.num_joints:
        raise DataError(f"joint set {native.describe()} has no OKS sigmas: add 'sigmas' (one per "
                        f"joint) to its description to score OKS AP")
    kpts = to_native(preds, joint_set, native)
    results = build_results(kpts, boxes, image_ids, native.sigmas, in_vis_thre, oks_thre)
    path = result_file(output_dir, image_set, prefix)
    if save_result:
        atomic_write_text(json.dumps(results, sort_keys=True, indent=4), path)
        logger.info("=> wrote %d keypoint results to %s", len(results), path)

    if not has_ground_truth(image_set):
        return {"Null": 0}, 0
    if not results:
        logger.warning("no predictions to evaluate for %s; reporting zeros", image_set)
        zeros = OrderedDict((name, 0.0) for name in METRIC_NAMES)
        return zeros, 0.0
    name_values = run_cocoeval(annotation_file, path if save_result else results, native.sigmas)
    return name_values, name_values["AP"]
