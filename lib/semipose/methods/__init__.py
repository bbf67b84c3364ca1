"""Training methods: one object per method, same interface (see base.Method).

``build_method(cfg, nets)`` picks the method from MODEL.NAME (the table in registry.py, filled by
``@register_method``); ``num_nets(cfg)`` says how many nets the trainer must build for it.
"""
from __future__ import annotations

from typing import Optional

import torch

from .base import Method, NetsArg, SemiMethod
from .mean_teacher import EMATeachers, MeanTeacher, PoseDualMeanTeacher
from .monitor import CollapseMonitor
from .multi_path import MultiPath
from .multiaugs import MultiAugs, MultiAugsDual
from .posecons import PoseCons
from .posedual import PoseDual
from .sspcm import SSPCM
from .registry import METHODS, method_class, register_method, resolve, resolve_cfg
from .supervised import Supervised


def num_nets(cfg) -> int:
    """Number of nets MODEL.NAME needs (its class's ``net_names``; e.g. 2 for pose_dual)."""
    return len(method_class(cfg.MODEL.NAME).net_names)


def build_method(cfg, nets: NetsArg, seed: Optional[int] = None,
                 joint_mask: Optional[torch.Tensor] = None) -> Method:
    """Method for MODEL.NAME around ``nets`` (ModuleDict "net1"[, "net2"], a list, or one module).

    ``seed`` overrides cfg.SEED for the hard-view generator (pass SEED + rank under DDP);
    ``joint_mask`` [J] bool fixes the joints a corrected cutout may use (default: per sample from
    the unlabeled target_weight).
    """
    return method_class(cfg.MODEL.NAME).from_cfg(cfg, nets, seed=seed, joint_mask=joint_mask)


__all__ = ["Method", "SemiMethod", "Supervised", "PoseCons", "PoseDual", "MeanTeacher",
           "PoseDualMeanTeacher", "EMATeachers", "MultiPath", "MultiAugs", "MultiAugsDual", "SSPCM", "CollapseMonitor", "METHODS",
           "method_class", "register_method", "resolve", "resolve_cfg", "num_nets", "build_method"]
