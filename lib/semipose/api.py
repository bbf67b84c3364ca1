"""The Python interface: load a config, train, score a checkpoint, predict keypoints.

    import semipose
    cfg = semipose.load_cfg("experiments/synthetic/supervised.yaml", {"TRAIN.END_EPOCH": 2})
    run = semipose.train(cfg)                      # run.run_dir, run.results
    scores = semipose.evaluate(cfg, run.model_file)
    pose = semipose.PoseEstimator.from_checkpoint(cfg, run.model_file)
    keypoints = pose(image)                        # [N, J, 3] (x, y, confidence), image pixels

Everything runs in this process, as ``semipose train`` / ``valid`` do on one device, and writes
the same run and score folders. Configs are validated and frozen as the command line's are.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Sequence, Tuple, Union

from yacs.config import CfgNode

from .config.loader import build_cfg, load_cfg_dict, read_with_bases

ConfigSource = Union[str, "os.PathLike[str]", Mapping[str, Any]]
Overrides = Union[None, Sequence[Any], Mapping[str, Any]]


def flat_overrides(overrides: Overrides) -> List[Any]:
    """[KEY, VALUE, ...] from a flat list or a {"A.B": value} mapping (values may be Python
    values or command-line strings)."""
    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        return [x for key, value in overrides.items() for x in (key, value)]
    if isinstance(overrides, (str, bytes)):
        raise TypeError(f"overrides are a [KEY, VALUE, ...] list or a {{KEY: value}} dict, not "
                        f"the string {overrides!r}")
    return list(overrides)


def load_cfg(source: ConfigSource, overrides: Overrides = None, base_dir: str = "") -> CfgNode:
    """A validated, frozen config from a YAML file or a mapping, with overrides.

    ``source``: a YAML path (merged over its ``_BASE_`` files, as ``--cfg`` is), or a nested
    mapping with the same keys (e.g. ``{"MODEL": {"NAME": "pose_dual"}, "TRAIN": {"LR": 0.002}}``;
    its ``_BASE_`` files are relative to ``base_dir``, default the current folder; a loaded
    config works too). ``overrides``: ``["TRAIN.LR", 0.002, ...]`` or ``{"TRAIN.LR": 0.002}``,
    merged last, as trailing KEY VALUE pairs are on the command line.
    """
    opts = flat_overrides(overrides)
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        return build_cfg(read_with_bases(path), path, opts, "overrides")
    if isinstance(source, Mapping):
        return load_cfg_dict(source, opts, base_dir=base_dir)
    raise TypeError(f"load_cfg: source is a YAML path or a mapping of keys, not a "
                    f"{type(source).__name__}")


def _config_and_name(cfg: Union[ConfigSource, CfgNode], overrides: Overrides, name: str
                     ) -> Tuple[CfgNode, str]:
    """(frozen config, the name its experiment folder takes): ``name``, else the YAML file's
    name, else MODEL.NAME (a config from a mapping has no file)."""
    if isinstance(cfg, CfgNode) and cfg.is_frozen() and not flat_overrides(overrides):
        node = cfg  # loaded and validated already
    else:
        node = load_cfg(cfg, overrides)
    if not name:
        name = os.fspath(cfg) if isinstance(cfg, (str, os.PathLike)) else node.MODEL.NAME
    return node, name


def _device_info(cfg: CfgNode) -> Any:
    from .utils.dist import DistInfo, pick_device
    return DistInfo(device=pick_device(cfg.DEVICE))


@dataclass
class TrainResult:
    """What :func:`train` returns."""

    run_dir: str  # the run folder (config.yaml, results.json, history.json, checkpoints, ...)
    results: Dict[str, Tuple[Mapping[str, float], float]]  # last validation: row -> (metrics, main)
    trainer: Any  # the Trainer (its nets, state, hooks), for a closer look

    @property
    def model_file(self) -> str:
        """The final weights (what ``semipose valid`` and ``demo`` read by default)."""
        from .engine.checkpoint import FINAL
        return os.path.join(self.run_dir, FINAL)

    @property
    def main_metrics(self) -> Dict[str, float]:
        """Row -> main metric (AP, or PCKh Mean) of the last validation."""
        return {row: float(main) for row, (_, main) in self.results.items()}


def train(cfg: Union[ConfigSource, CfgNode], name: str = "", overrides: Overrides = None,
          progress: bool = False, hooks: Sequence[Any] = ()) -> TrainResult:
    """Train ``cfg`` (a loaded config, a YAML path or a mapping, see :func:`load_cfg`) in this
    process on DEVICE ('' = a GPU when present), as ``semipose train`` does without a launcher.

    The run folder is OUTPUT_DIR/<dataset>/<model>/<name>/run_<time>; ``name`` defaults to the
    YAML file's name, or MODEL.NAME for a config made from a mapping. ``hooks`` run after the
    default ones (engine/hooks.py). A non-finite loss raises NonFiniteLossError; Ctrl-C saves a
    checkpoint and returns the results so far (continue with TRAIN.RESUME True).
    """
    from .engine.trainer import Trainer
    node, name = _config_and_name(cfg, overrides, name)
    trainer = Trainer(node, name, _device_info(node), progress=progress, hooks=hooks)
    results = trainer.fit()
    return TrainResult(trainer.run_dir, results, trainer)


def evaluate(cfg: Union[ConfigSource, CfgNode], model_file: str = "", name: str = "",
             overrides: Overrides = None, progress: bool = False, allow_single: bool = False
             ) -> Dict[str, Tuple[Mapping[str, float], float]]:
    """Score a checkpoint on the config's validation set, as ``semipose valid`` does: row ->
    (metrics, main metric). ``model_file`` defaults to TEST.MODEL_FILE, else the final weights
    of the latest run of the experiment ``name`` (as in :func:`train`). The outputs go to
    <experiment folder>/valid/<run>_<weights>[_flags]."""
    from .engine.validate import evaluate_checkpoint
    node, name = _config_and_name(cfg, overrides, name)
    if model_file:
        node = node.clone()
        node.defrost()
        node.TEST.MODEL_FILE = os.fspath(model_file)
        node.freeze()
    return evaluate_checkpoint(node, name, _device_info(node), progress=progress,
                               allow_single=allow_single)


__all__ = ["TrainResult", "evaluate", "flat_overrides", "load_cfg", "train"]
