"""pose_estimation/export.py's job: load a checkpoint, export one net or the ensemble, check it."""
from __future__ import annotations

import os
from typing import Callable, Dict

import torch
from torch import nn
from yacs.config import CfgNode

from ..errors import ConfigError, DataError, UserError
from ..data.keypoints import model_space_of_cfg
from ..data.meta import DatasetMeta
from ..inference import load_method
from ..models.export import JOINT_SPACE_KEY, MeanOfNets, export_onnx, onnx_max_abs_diff, require
from ..utils.streams import stream_seed


def exported_module(method: nn.Module, net: str) -> nn.Module:
    """The module behind ``net`` of the method's ``eval_spec``: a net, or an average of nets
    (e.g. PoseDual's 'ensemble') as one module."""
    models, averages = method.eval_spec()
    if net in models:
        return models[net]
    if net in averages:
        return MeanOfNets([models[m] for m in averages[net]])
    raise ConfigError(f"--net {net!r}: this model offers {list(models) + list(averages)}")


def check_batches(cfg: CfgNode, num: int, echo: Callable[[str], None]) -> Dict[str, torch.Tensor]:
    """Random crops (seeded) and the first ``num`` validation crops of the config."""
    w, h = (int(v) for v in cfg.MODEL.IMAGE_SIZE)
    gen = torch.Generator().manual_seed(stream_seed("export_check"))
    batches = {"random": torch.randn(num, 3, h, w, generator=gen)}
    try:
        from ..data.build import build_val_dataset
        val = build_val_dataset(cfg)
        if len(val):
            batches["validation"] = torch.stack([val[i]["image"] for i in range(min(num, len(val)))])
    except (UserError, OSError) as err:  # no usable validation set; a bug keeps its traceback
        echo(f"no validation crops to check ({str(err).splitlines()[0]}): random crops only")
    return batches


def export_and_check(cfg: CfgNode, model_file: str, net: str, out: str, opset: int = 17,
                     tolerance: float = 1e-4, num_check: int = 8,
                     allow_single: bool = False, echo: Callable[[str], None] = print
                     ) -> Dict[str, float]:
    """Export ``net`` of ``model_file`` to ``out`` and compare it with PyTorch; returns the max
    abs differences per check batch. Raises ValueError above ``tolerance``."""
    require("onnx")
    require("onnxruntime")
    _, space = model_space_of_cfg(cfg)  # the heatmap channels' joints, stored in the file
    method, layout = load_method(cfg, model_file, "cpu", allow_single)
    module = exported_module(method, net)
    export_onnx(module, out, cfg.MODEL.IMAGE_SIZE, opset=opset,
                metadata={JOINT_SPACE_KEY: space.to_yaml()})
    diffs = onnx_max_abs_diff(out, module, check_batches(cfg, num_check, echo))
    size = os.path.getsize(out) / 2 ** 20
    echo(f"exported {net} of {model_file} ({layout} layout) to {out} ({size:.1f} MiB, opset "
         f"{opset}, dynamic batch, {space.name} joints); onnxruntime vs PyTorch max |diff|: " +
         ", ".join(f"{k} crops {v:.2e}" for k, v in diffs.items()))
    worst = max(diffs.values())
    if worst > tolerance:
        raise ConfigError(f"{out}: ONNX heatmaps differ from PyTorch by {worst:.2e} > "
                          f"--tolerance {tolerance:g}; try another --opset")
    return diffs


def exported_joint_space(path: str) -> DatasetMeta:
    """The joint space (channel order, flip pairs, skeleton, ...) an exported ONNX file stores."""
    import yaml
    onnx = require("onnx")
    props = {p.key: p.value for p in onnx.load(path, load_external_data=False).metadata_props}
    if JOINT_SPACE_KEY not in props:
        raise DataError(f"{path} stores no joint space ('{JOINT_SPACE_KEY}'): export it again "
                        f"with pose_estimation/export.py")
    return DatasetMeta.from_dict(yaml.safe_load(props[JOINT_SPACE_KEY]), source=path)
