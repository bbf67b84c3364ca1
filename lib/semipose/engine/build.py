"""The parts a run trains with, built once from the config in a fixed order.

The order matters: it is the order in which the run's random streams are consumed (nets are
initialised from torch's global generator after the data are built), so a seed gives the same run.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import nn
from torch.utils.data import DataLoader
from yacs.config import CfgNode

from ..transforms.device_pipeline import DeviceStage, device_stage_for
from ..utils.dist import DistInfo
from .data_setup import build_data
from .device import amp_settings
from .model_setup import build_method_for
from .optim import NonFiniteGuard, build_optimizer


@dataclass
class Run:
    """What a training run works with (all built by ``build_run``)."""

    train_set: Any
    val_set: Any
    train_loader: DataLoader
    val_loader: DataLoader
    stage: Optional[DeviceStage]  # DATASET.DEVICE_PIPELINE: plans -> crops on the device
    method: nn.Module  # the Method (nets, hard view, losses)
    model: nn.Module  # what the loop calls: the method, or its DDP wrapper
    optimizer: torch.optim.Optimizer
    amp_dtype: Optional[torch.dtype]  # None: fp32
    scaler: Any  # torch.amp.GradScaler (a no-op one without fp16)
    guard: Optional[NonFiniteGuard]  # no optimizer step on a non-finite loss; None: step anyway
    device: torch.device  # this process's device


def build_run(cfg: CfgNode, info: DistInfo, log: logging.Logger) -> Run:
    """Data, nets and method, optimiser, precision and the non-finite guard of a run."""
    train_set, val_set, train_loader, val_loader = build_data(cfg, info)
    stage = device_stage_for(train_set)
    log.info("train: %d items/epoch (%d batches); val: %d persons",
             len(train_set), len(train_loader), len(val_set))
    method, model = build_method_for(cfg, info, log)
    optimizer = build_optimizer(cfg, method.parameters())
    amp_dtype, scaler = amp_settings(cfg, info.device, log)
    guard = (NonFiniteGuard(optimizer, scaler, info.distributed)
             if cfg.TRAIN.STOP_ON_NONFINITE else None)
    return Run(train_set, val_set, train_loader, val_loader, stage, method, model, optimizer,
               amp_dtype, scaler, guard, info.device)
