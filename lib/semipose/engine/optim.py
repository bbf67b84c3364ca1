"""Optimiser and learning-rate schedule as in the reference (Adam without weight decay, or SGD;
MultiStepLR by epoch)."""
from __future__ import annotations

from typing import Iterable

import torch
from yacs.config import CfgNode


def build_optimizer(cfg: CfgNode, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """TRAIN.OPTIMIZER 'adam' -> Adam(LR) with torch defaults; 'sgd' -> SGD(LR, MOMENTUM, WD, NESTEROV)."""
    t = cfg.TRAIN
    if t.OPTIMIZER == "adam":
        return torch.optim.Adam(params, lr=t.LR)
    if t.OPTIMIZER == "sgd":
        return torch.optim.SGD(params, lr=t.LR, momentum=t.MOMENTUM, weight_decay=t.WD,
                               nesterov=t.NESTEROV)
    raise ValueError(f"TRAIN.OPTIMIZER='{t.OPTIMIZER}' is not supported; use 'adam' or 'sgd'")


def lr_at_epoch(base_lr: float, milestones: Iterable[int], factor: float, epoch: int) -> float:
    """LR used during 0-based ``epoch``: base * factor ** (#milestones <= epoch)."""
    return base_lr * factor ** sum(1 for m in milestones if m <= epoch)


def set_epoch_lr(optimizer: torch.optim.Optimizer, cfg: CfgNode, epoch: int) -> float:
    """Set every param group's LR for ``epoch`` from the closed form (exact on resume)."""
    lr = lr_at_epoch(cfg.TRAIN.LR, cfg.TRAIN.LR_STEP, cfg.TRAIN.LR_FACTOR, epoch)
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr
