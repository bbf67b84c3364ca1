"""DATASET.TEST_DATASET name -> evaluator: the scoring table beside data/build.py's dataset table.

An evaluator is ``fn(cfg, val_set, net, keypoints, pred, output_dir) -> (metrics, main metric)``
for one validation row ``net`` ('net1', 'ensemble', ...): ``keypoints`` [N, J, 3] in image
pixels and ``pred`` the merged prediction dict (boxes, image ids). A new dataset registers its
builders in data/build.py and its evaluator here with ``@register_evaluator("name")``; the config
checks accept a TEST_DATASET only when both exist. The evaluation modules are imported inside the
evaluators, so a COCO run never imports the MPII or AI Challenger code.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Mapping, Tuple

import numpy as np

from ..errors import ConfigError

Evaluator = Callable[..., Tuple[Mapping[str, float], float]]
EVALUATORS: Dict[str, Evaluator] = {}

# Output-file names per validation row, as in the reference (eval_1/2/3, MPII pred file names);
# other rows use their own name.
COCO_PREFIX = {"net1": "eval_1", "net2": "eval_2", "ensemble": "eval_3"}
MAT_FILE = {"net1": "pred.mat", "net2": "head2_pred.mat", "ensemble": "ensemble_pred.mat"}


def register_evaluator(name: str):
    """Decorator: ``fn`` scores validation rows of DATASET.TEST_DATASET ``name``."""
    def deco(fn: Evaluator) -> Evaluator:
        EVALUATORS[name] = fn
        return fn
    return deco


def evaluator_for(name: str) -> Evaluator:
    if name not in EVALUATORS:
        raise ConfigError(f"DATASET.TEST_DATASET {name!r} has no evaluator; registered: "
                          f"{sorted(EVALUATORS)} (add one with @register_evaluator)")
    return EVALUATORS[name]


@register_evaluator("coco")
def score_coco(cfg, val_set: Any, net: str, keypoints: np.ndarray, pred: Dict[str, Any],
               output_dir: str):
    from .coco_eval import evaluate_coco
    boxes = {k: pred[k] for k in ("center", "scale", "area", "score", "raw_box")}
    return evaluate_coco(keypoints, boxes, pred["image_ids"], val_set.annotation_file,
                         val_set.image_set, output_dir, val_set.joint_set,
                         prefix=COCO_PREFIX.get(net, net), in_vis_thre=cfg.TEST.IN_VIS_THRE,
                         oks_thre=cfg.TEST.OKS_THRE, save_result=cfg.TEST.SAVE_RESULT,
                         native=val_set.native_joint_set)


@register_evaluator("mpii")
def score_mpii(cfg, val_set: Any, net: str, keypoints: np.ndarray, pred: Dict[str, Any],
               output_dir: str):
    from .mpii_eval import evaluate_mpii
    return evaluate_mpii(keypoints, val_set.joint_set, val_set.source.gt_file, output_dir,
                         pred_file_name=MAT_FILE.get(net, f"{net}_pred.mat"),
                         test_set=cfg.DATASET.TEST_SET)


@register_evaluator("ai_challenger")
def score_aic(cfg, val_set: Any, net: str, keypoints: np.ndarray, pred: Dict[str, Any],
              output_dir: str):
    import os

    from .aic_eval import evaluate_aic
    npy = val_set.source.gt_npy_file
    npy = npy if os.path.isfile(npy) else None
    return evaluate_aic(keypoints, val_set.records, val_set.joint_set, val_set.annotation_file,
                        output_dir, gt_npy=npy,
                        pred_file_name=MAT_FILE.get(net, f"{net}_pred.mat"))


@register_evaluator("custom")
def score_custom(cfg, val_set: Any, net: str, keypoints: np.ndarray, pred: Dict[str, Any],
                 output_dir: str):
    """A dataset of one's own skeleton: OKS AP with the description's sigmas (or the stated
    default), PCK@0.05 / 0.1 of the box size and pixel error per joint (custom_eval.py)."""
    from .custom_eval import evaluate_custom
    boxes = {k: pred[k] for k in ("center", "scale", "area", "score", "raw_box")}
    native = val_set.native_joint_set
    return evaluate_custom(keypoints, boxes, pred["image_ids"], val_set.records,
                           val_set.annotation_file, val_set.image_set, output_dir,
                           getattr(val_set, "joint_set", native), native,
                           prefix=COCO_PREFIX.get(net, net), in_vis_thre=cfg.TEST.IN_VIS_THRE,
                           oks_thre=cfg.TEST.OKS_THRE, save_result=cfg.TEST.SAVE_RESULT)
