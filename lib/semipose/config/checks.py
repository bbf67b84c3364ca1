"""Checks of enumerated values and of relations between keys, run on every loaded config."""
from __future__ import annotations

import re
from typing import Any, Dict, Tuple

from yacs.config import CfgNode as CN

from .merge import ConfigError

# dotted key -> allowed values
CHOICES: Dict[str, Tuple[Any, ...]] = {
    "MODEL.STYLE": ("pytorch", "caffe"),
    "MODEL.EXTRA.TARGET_TYPE": ("gaussian",),
    "DATASET.DATA_FORMAT": ("jpg", "zip"),
    "TRAIN.OPTIMIZER": ("adam", "sgd"),
    "TRAIN.AMP": ("", "bf16", "fp16"),
    "TRAIN.ADAM_IMPL": ("auto", "for_loop", "foreach", "fused"),
    "TRAIN.COMPILE": ("", "default", "reduce-overhead", "max-autotune"),
    "TRAIN.COMPILE_SCOPE": ("nets", "step"),
    "TEST.POST_TYPE": ("shift", "dark"),
    "SYNTHETIC.PRESET": ("standard", "light"),
}

# keys that must be > 0, and keys that must be >= 0
# (The SSL section is checked by the parts that read it: see _check_method.)
POSITIVE = ("MODEL.NUM_JOINTS", "DATASET.UNLABELED_EVERY", "TRAIN.BATCH_SIZE", "TEST.BATCH_SIZE",
            "TEST.INTERVAL", "TRAIN.LR", "PRINT_FREQ", "MODEL.EXTRA.SIGMA")
NON_NEGATIVE = ("WORKERS", "DATASET.UNLABELED_PER_VIDEO", "SAVE_INTER", "TRAIN.BEGIN_EPOCH",
                "LOCAL_RANK",
                "SYNTHETIC.NUM_TRAIN", "SYNTHETIC.NUM_VAL", "SYNTHETIC.NUM_UNLABELED",
                "MONITOR.NUM_SAMPLES", "DATASET.SCALE_FACTOR", "DATASET.ROT_FACTOR")


def get_key(cfg: CN, full_key: str) -> Any:
    node = cfg
    for part in full_key.split("."):
        node = node[part]
    return node


def _check(ok: bool, msg: str, source: str) -> None:
    if not ok:
        raise ConfigError(f"{msg} (config {source})")


def validate(cfg: CN, source: str) -> None:
    """Raise ConfigError naming the key, the value and the allowed values for the first problem."""
    # Names registered in the tables of methods, datasets and evaluators (one place each).
    from ..data.build import TRAIN_DATASETS, VAL_DATASETS
    from ..evaluation.registry import EVALUATORS
    from ..methods.registry import method_names, resolve_cfg
    from ..models.registry import backbones
    registered = {"MODEL.NAME": method_names(), "MODEL.BACKBONE": tuple(backbones()),
                  "DATASET.TRAIN_DATASET": tuple(TRAIN_DATASETS),
                  "DATASET.TEST_DATASET": tuple(n for n in VAL_DATASETS if n in EVALUATORS)}
    for key, allowed in dict(CHOICES, **registered).items():
        value = get_key(cfg, key)
        _check(value in allowed, f"{key} is {value!r}; choose one of {list(allowed)}", source)
    if "FINAL_CONV_KERNEL" in cfg.MODEL.EXTRA:  # the heatmap head's kernel, where a backbone has one
        kernel = cfg.MODEL.EXTRA.FINAL_CONV_KERNEL
        _check(kernel in (1, 3), f"MODEL.EXTRA.FINAL_CONV_KERNEL is {kernel!r}; choose one of [1, 3]",
               source)
    method, _ = resolve_cfg(cfg)  # the method class, checked against its own rows and keys
    rows = method.eval_rows()  # what this method's validation reports
    _check(cfg.TEST.BEST_METRIC in rows, f"TEST.BEST_METRIC is {cfg.TEST.BEST_METRIC!r}, which "
           f"MODEL.NAME {cfg.MODEL.NAME!r} does not report; choose one of {list(rows)}", source)
    _check_method(cfg, source)
    for key in POSITIVE:
        _check(get_key(cfg, key) > 0, f"{key} is {get_key(cfg, key)!r}; it must be > 0", source)
    for key in NON_NEGATIVE:
        _check(get_key(cfg, key) >= 0, f"{key} is {get_key(cfg, key)!r}; it must be >= 0", source)
    from ..data.keypoints import cfg_joint_space_problem
    problem = cfg_joint_space_problem(cfg)  # a custom dataset's space is its description
    _check(problem is None, str(problem), source)
    for key in ("MODEL.IMAGE_SIZE", "MODEL.EXTRA.HEATMAP_SIZE"):
        _check(min(get_key(cfg, key)) > 0, f"{key} is {list(get_key(cfg, key))}; sizes must be > 0", source)
    _check(re.fullmatch(r"|cpu|cuda(:\d+)?|mps", cfg.DEVICE) is not None,
           f"DEVICE is {cfg.DEVICE!r}; use '', 'cpu', 'cuda', 'cuda:<index>' or 'mps'", source)
    _check(cfg.TRAIN.END_EPOCH > cfg.TRAIN.BEGIN_EPOCH,
           f"TRAIN.END_EPOCH ({cfg.TRAIN.END_EPOCH}) must exceed TRAIN.BEGIN_EPOCH "
           f"({cfg.TRAIN.BEGIN_EPOCH})", source)
    steps = list(cfg.TRAIN.LR_STEP)
    _check(steps == sorted(steps), f"TRAIN.LR_STEP {steps} must be increasing", source)

    backbone = backbones()[resolve_cfg(cfg)[1]]
    held = [b for b in backbones().values() if b.marker in cfg.MODEL.EXTRA]
    _check(held == [backbone],
           f"MODEL.NAME {cfg.MODEL.NAME!r} with MODEL.BACKBONE {cfg.MODEL.BACKBONE!r} selects "
           f"the {backbone.title} backbone but MODEL.EXTRA holds "
           f"{' and '.join(f'{b.title} ({b.marker})' for b in held) or 'no architecture'} keys; "
           f"give MODEL.EXTRA of the matching architecture", source)
    problem = backbone.check(cfg.MODEL.EXTRA)
    _check(problem is None, str(problem), source)
    _check_sizes(cfg, backbone.stride(cfg.MODEL.EXTRA), source)


def _check_method(cfg: CN, source: str) -> None:
    """The method's options (the SSL section and its own keys), checked by building the method
    around placeholder nets: the checks are the ones its parts run when a run builds it, written
    once, in methods/parts.py and the method's file."""
    from ..methods.registry import placeholder_method
    try:
        placeholder_method(cfg)
    except ConfigError as exc:  # a bad value; a bug in a constructor keeps its traceback
        raise ConfigError(f"{exc} (config {source})") from exc


def _check_sizes(cfg: CN, stride: int, source: str) -> None:
    """The backbones downsample by 32 and the heads output the backbone's stride (4 for HRNet,
    32 / 2**NUM_DECONV_LAYERS for ResNet): other sizes would give heatmaps of the wrong shape."""
    img, hm = list(cfg.MODEL.IMAGE_SIZE), list(cfg.MODEL.EXTRA.HEATMAP_SIZE)
    _check(all(v % 32 == 0 for v in img),
           f"MODEL.IMAGE_SIZE {img}: both sides must be multiples of 32 (the backbone "
           f"downsamples by 32), e.g. [192, 256]", source)
    want = [v // stride for v in img]
    _check(hm == want, f"MODEL.EXTRA.HEATMAP_SIZE {hm} does not match the network output for "
           f"MODEL.IMAGE_SIZE {img} (stride {stride}); use {want}", source)
