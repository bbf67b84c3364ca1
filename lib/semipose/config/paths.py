"""Names and folders derived from a config: model names, experiment folders, data-dir prefixing.

Three folders, three names: the output root (OUTPUT_DIR), the experiment folder of a config file
(``experiment_dir``: OUTPUT_DIR/<dataset>/<model>/<cfg name>) and the run folder of one training
run inside it (engine/runs.py: ``choose_run_folder``, ``latest_run``).
"""
from __future__ import annotations

import os
from typing import Tuple

from yacs.config import CfgNode as CN

from ..errors import ConfigError

# Path-valued keys that DATA_DIR prefixes (OUTPUT_DIR too, but not LOG_DIR), as in the reference.
DATA_DIR_KEYS = ("DATASET.ROOT", "TEST.COCO_BBOX_FILE", "TEST.MODEL_FILE", "MODEL.PRETRAINED",
                 "OUTPUT_DIR")


def apply_dirs(cfg: CN, model_dir: str = "", log_dir: str = "", data_dir: str = "") -> CN:
    """A frozen copy of ``cfg`` with the --modelDir/--logDir/--dataDir overrides applied.

    Non-empty arguments replace OUTPUT_DIR / LOG_DIR / DATA_DIR; then, if DATA_DIR is set, it is
    joined in front of each DATA_DIR_KEYS path. Unlike the reference, empty paths stay empty
    (empty means 'not set', e.g. TEST.MODEL_FILE ''). Apply once.
    """
    out = cfg.clone()
    out.defrost()
    if model_dir:
        out.OUTPUT_DIR = model_dir
    if log_dir:
        out.LOG_DIR = log_dir
    if data_dir:
        out.DATA_DIR = data_dir
    if out.DATA_DIR:
        for full in DATA_DIR_KEYS:
            *parents, leaf = full.split(".")
            node = out
            for p in parents:
                node = node[p]
            if node[leaf]:
                node[leaf] = os.path.join(out.DATA_DIR, node[leaf])
    out.freeze()
    return out


def model_name(cfg: CN) -> Tuple[str, str]:
    """(name, full_name), e.g. ('pose_dual_18', '256x192_pose_dual_18_d256d256d256').

    name = <MODEL.NAME>_<tag>, full_name = <H>x<W>_<name>_<suffix>, with the backbone's tag and
    suffix (models/registry.py): ResNet <NUM_LAYERS> and <d<f> per deconv filter>, HRNet <STAGE2
    width> and an empty suffix (keeping the underscore).
    """
    from ..methods.registry import METHODS, resolve_cfg
    from ..models.registry import get_backbone
    name = cfg.MODEL.NAME
    if name not in METHODS:
        raise ConfigError(f"model_name: MODEL.NAME {name!r} is not a registered method")
    tag, suffix = get_backbone(resolve_cfg(cfg)[1]).run_name(cfg.MODEL.EXTRA)
    name = f"{name}_{tag}"
    width, height = cfg.MODEL.IMAGE_SIZE
    return name, f"{height}x{width}_{name}_{suffix}"


def experiment_dir(cfg: CN, cfg_path: str) -> str:
    """Experiment folder OUTPUT_DIR/<TRAIN_DATASET[_HYBRID_JOINTS_TYPE]>/<name>/<cfg file stem>
    (not created); it holds one run folder per training run (engine/runs.py)."""
    dataset = cfg.DATASET.TRAIN_DATASET
    if cfg.DATASET.HYBRID_JOINTS_TYPE:
        dataset = f"{dataset}_{cfg.DATASET.HYBRID_JOINTS_TYPE}"
    dataset = dataset.replace(":", "_")
    stem = os.path.splitext(os.path.basename(cfg_path))[0]
    return os.path.join(cfg.OUTPUT_DIR, dataset, model_name(cfg)[0], stem)
