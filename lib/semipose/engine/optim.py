"""Optimiser and learning-rate schedule as in the reference (Adam without weight decay, or SGD;
MultiStepLR by epoch), and the guard that keeps non-finite losses out of optimizer steps."""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Dict, Iterable, List, Optional

import torch
from yacs.config import CfgNode

from ..errors import ConfigError
from .log import StepRow

# TRAIN.ADAM_IMPL -> torch.optim.Adam keywords. All three compute the same update up to float
# rounding; 'for_loop' is the reference's per-tensor loop (torch's CPU default).
ADAM_KERNELS: Dict[str, Dict[str, bool]] = {
    "for_loop": {"foreach": False, "fused": False},
    "foreach": {"foreach": True, "fused": False},
    "fused": {"foreach": False, "fused": True},
}


def adam_impl(choice: str, device: torch.device) -> str:
    """TRAIN.ADAM_IMPL resolved for ``device``: 'auto' is 'fused' on CUDA (one kernel for all
    tensors, and a skipped step costs no host read), 'for_loop' elsewhere."""
    if choice != "auto":
        return choice
    return "fused" if device.type == "cuda" else "for_loop"


def build_optimizer(cfg: CfgNode, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """TRAIN.OPTIMIZER 'adam' -> Adam(LR) with torch defaults and the TRAIN.ADAM_IMPL kernels;
    'sgd' -> SGD(LR, MOMENTUM, WD, NESTEROV)."""
    t = cfg.TRAIN
    params = list(params)
    if t.OPTIMIZER == "adam":
        device = params[0].device if params else torch.device("cpu")
        return torch.optim.Adam(params, lr=t.LR, **ADAM_KERNELS[adam_impl(t.ADAM_IMPL, device)])
    if t.OPTIMIZER == "sgd":
        return torch.optim.SGD(params, lr=t.LR, momentum=t.MOMENTUM, weight_decay=t.WD,
                               nesterov=t.NESTEROV)
    raise ConfigError(f"TRAIN.OPTIMIZER='{t.OPTIMIZER}' is not supported; use 'adam' or 'sgd'")


def lr_at_epoch(base_lr: float, milestones: Iterable[int], factor: float, epoch: int) -> float:
    """LR used during 0-based ``epoch``: base * factor ** (#milestones <= epoch)."""
    return base_lr * factor ** sum(1 for m in milestones if m <= epoch)


def set_epoch_lr(optimizer: torch.optim.Optimizer, cfg: CfgNode, epoch: int) -> float:
    """Set every param group's LR for ``epoch`` from the closed form (exact on resume)."""
    lr = lr_at_epoch(cfg.TRAIN.LR, cfg.TRAIN.LR_STEP, cfg.TRAIN.LR_FACTOR, epoch)
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


def nonfinite_grads(optimizer: torch.optim.Optimizer, device: torch.device) -> torch.Tensor:
    """Whether a gradient of ``optimizer``'s parameters holds NaN/inf: a 0-dim bool on ``device``,
    computed there (GradScaler's fused check; at scale 1.0 it leaves the gradients unchanged)."""
    found = torch.zeros((), dtype=torch.float32, device=device)
    one = torch.ones((), dtype=torch.float32, device=device)
    grads = defaultdict(list)
    for group in optimizer.param_groups:
        for p in group["params"]:
            if p.grad is not None:
                grads[p.grad.dtype].append(p.grad)
    for same_dtype in grads.values():
        torch._amp_foreach_non_finite_check_and_unscale_(same_dtype, found, one)
    return found > 0


class NonFiniteGuard:
    """No optimizer step is ever taken on a non-finite loss, and no host read is needed for it
    where the optimizer can skip a step on the device.

    ``arm(loss, terms)`` flags the step when a loss term is NaN/inf. The flag stays set (no later
    step is taken either) until the trainer reads the loss terms and raises. It returns the loss
    to back-propagate: ``loss`` times 1.0 (the same gradients), or times NaN once flagged, so that
    the gradients are NaN; under DDP the gradient all-reduce carries them to every rank, and
    every rank skips the same steps without a collective of its own.

    ``step(optimizer)`` takes the step unless it is flagged and returns the flag of this
    step (0-dim bool):
      - with the fp16 GradScaler, the scaler finds the NaN gradients and skips the step, as it
        does after an overflow;
      - fused optimizers skip on the device through ``found_inf`` (what GradScaler uses): weights
        and moments untouched, fused Adam also takes back its step count;
      - other optimizers (for_loop / foreach Adam, SGD) read the flag on the host before the
        step (``on_device`` False): one wait per step, which costs nothing on a CPU.
    Under DDP the flag also covers the gradients, which hold another rank's NaN.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                 distributed: bool):
        self.scaler, self.distributed = scaler, distributed
        self.fused = all(g.get("fused") for g in optimizer.param_groups)
        self.on_device = scaler.is_enabled() or self.fused
        self.flag = None  # set once a loss term was non-finite (0-dim bool, on the loss device)

    def arm(self, loss: torch.Tensor, terms: torch.Tensor) -> torch.Tensor:
        bad = ~torch.isfinite(terms).all()
        self.flag = bad if self.flag is None else self.flag | bad
        return loss * torch.where(self.flag, float("nan"), 1.0)

    def step(self, optimizer: torch.optim.Optimizer) -> torch.Tensor:
        if self.scaler.is_enabled():
            self.scaler.step(optimizer)
            self.scaler.update()
            return self.flag
        skip = self.flag
        if self.distributed:
            skip = skip | nonfinite_grads(optimizer, skip.device)
        if self.fused:
            optimizer.found_inf = skip.to(torch.float32)
            try:
                optimizer.step()
            finally:
                del optimizer.found_inf
            return skip
        skip = skip.cpu()  # the host read
        if not skip:
            optimizer.step()
        return skip


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN/inf; the last good checkpoint is kept."""


def nonfinite_error(epoch: str, total: int, bad: Optional[StepRow], rows: List[StepRow],
                    start_iter: int, out_dir: str) -> NonFiniteLossError:
    """The error naming the first bad step: this rank's ``bad`` row, else (another rank's loss,
    or non-finite gradients) the span of the steps just read. ``epoch``: "epoch e/E"."""
    if bad is not None:
        where = f"iteration {bad.iteration + 1}/{total} (global step {bad.global_step})"
        what = ", ".join(f"{k}={v}" for k, v in bad.terms.items() if not math.isfinite(v))
    else:
        span = f"{rows[0].iteration + 1}-{rows[-1].iteration + 1}" if rows else str(start_iter)
        where, what = f"iterations {span}/{total}", ""
    return NonFiniteLossError(
        f"non-finite loss at {epoch} {where}: "
        f"{what or 'on another rank (or non-finite gradients)'}. No optimizer step was "
        f"taken and the last good checkpoint in {out_dir} is kept; lower TRAIN.LR, "
        f"try TRAIN.AMP '' or check the data.")
