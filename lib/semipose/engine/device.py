"""The run's device and precision: SyncBatchNorm, channels_last, torch.compile and the DDP wrap of
a method, autocast settings, CUDA-graph step marks, and batch transfer."""
from __future__ import annotations

import logging
from typing import Any, Optional, Tuple

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from yacs.config import CfgNode

from ..utils.dist import DistInfo


def place_method(method: nn.Module, cfg: CfgNode, info: DistInfo, log: logging.Logger
                 ) -> Tuple[nn.Module, nn.Module]:
    """(method, model to call) on ``info.device``: the model is the method, or its DDP wrapper."""
    if cfg.TRAIN.SYNC_BN and info.distributed:
        if info.device.type == "cpu":  # torch's SyncBatchNorm runs on accelerators only
            log.warning("TRAIN.SYNC_BN is ignored on CPU: each rank keeps its own BatchNorm "
                        "statistics")
        else:
            method = nn.SyncBatchNorm.convert_sync_batchnorm(method)
    method.to(info.device)
    if cfg.TRAIN.CHANNELS_LAST:
        method.to(memory_format=torch.channels_last)
    compile_method(method, cfg.TRAIN.COMPILE, cfg.TRAIN.COMPILE_SCOPE)
    model: nn.Module = method
    if info.distributed:
        ids = [info.device.index] if info.device.type == "cuda" else None
        model = DistributedDataParallel(method, device_ids=ids)
    return method, model


def compile_method(method: nn.Module, mode: str, scope: str = "nets") -> None:
    """torch.compile of TRAIN.COMPILE (mode, '' = off) and TRAIN.COMPILE_SCOPE.

    'nets': each net in place (state-dict keys unchanged); the method step around them (hard view,
    losses) stays eager. 'step': the whole training step, nets included, as one graph, with the
    hard view's random draws replayed from the method's generator (methods/compiled.py). Either
    way a seed gives the same draws as without compile.
    """
    if not mode:
        return
    if scope == "step":
        method.compile_step(mode)
    else:
        for net in method.nets.values():
            net.compile(mode=mode)


def amp_settings(cfg: CfgNode, device: torch.device, log: logging.Logger
                 ) -> Tuple[Optional[torch.dtype], torch.amp.GradScaler]:
    """(autocast dtype or None, GradScaler) for TRAIN.AMP ('', 'bf16', 'fp16').

    fp16 uses a GradScaler (enabled only then). Both work on CPU, but a CPU without native
    bf16/fp16 kernels (e.g. AVX2 only) emulates them and runs slower than fp32: warn.
    """
    amp = cfg.TRAIN.AMP
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    if dtype is not None and device.type == "cpu":
        native = (torch.ops.mkldnn._is_mkldnn_bf16_supported() if amp == "bf16"
                  else torch.ops.mkldnn._is_mkldnn_fp16_supported())
        if not native:
            log.warning("TRAIN.AMP %s on this CPU (%s) has no native %s kernels: it is emulated, "
                        "tens of times slower than fp32 (bench/results/train_step_cpu.md); use "
                        "TRAIN.AMP '' here (AMP pays off on GPUs and AMX/AVX512-BF16 CPUs)", amp,
                        torch.backends.cpu.get_cpu_capability(), amp)
    return dtype, torch.amp.GradScaler(device.type, enabled=amp == "fp16")


def move_batch(batch: Any, device: torch.device, channels_last: bool = False) -> Any:
    """Tensors of a (nested) batch to ``device``; 4-D images optionally channels_last."""
    if isinstance(batch, torch.Tensor):
        batch = batch.to(device, non_blocking=True)
        if channels_last and batch.dim() == 4:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch
    if isinstance(batch, dict):
        return {k: (v if k == "meta" else move_batch(v, device, channels_last))
                for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_batch(v, device, channels_last) for v in batch)
    return batch


def mark_step_begin(cfg: CfgNode) -> None:
    """Tell CUDA graphs (TRAIN.COMPILE 'reduce-overhead') that a new training step begins: the
    graphs may then reuse the memory of the previous step's outputs. The trainer keeps no net
    output across steps (losses and accuracy are copied into tensors of its own)."""
    if cfg.TRAIN.COMPILE == "reduce-overhead":
        torch.compiler.cudagraph_mark_step_begin()
