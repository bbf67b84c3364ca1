"""What a resumable checkpoint holds, and restoring a trainer from it."""
from __future__ import annotations

import os
from typing import Any, Optional

import torch

from ..config import model_name
from ..models.checkpoint import load_checkpoint, nets_state_dict
from ..utils.seed import rng_state, set_rng_state
from .checkpoint import BEST, CHECKPOINT, atomic_torch_save, load_resume_state


def save_state(trainer: Any, epoch: int, iteration: int, is_best: bool) -> None:
    """Write checkpoint.pth.tar (and model_best.pth.tar when ``is_best``) on rank 0.

    ``epoch``/``iteration``: where a resumed run continues (the next epoch and, after a signal,
    the first batch not yet trained).
    """
    if not trainer.info.is_main:
        return
    method = trainer.method
    weights = nets_state_dict(method.nets)
    state = {
        "epoch": epoch, "iteration": iteration, "global_step": trainer.global_step,
        "model": model_name(trainer.cfg), "state_dict": weights, "perf": trainer.best_perf,
        "optimizer": trainer.optimizer.state_dict(), "scaler": trainer.scaler.state_dict(),
        "rng": rng_state(),
        "method_rng": {k: g.get_state() for k, g in getattr(method, "_generators", {}).items()},
        "data": {"seed": trainer.cfg.SEED, "epoch": epoch},  # pairing = f(seed, epoch, rank)
    }
    atomic_torch_save(state, os.path.join(trainer.out_dir, CHECKPOINT))
    if is_best:
        atomic_torch_save(weights, os.path.join(trainer.out_dir, BEST))
    trainer.scalars.flush()


def load_state(trainer: Any) -> Optional[str]:
    """Restore ``trainer`` from its run folder's checkpoint; returns the path or None."""
    state = load_resume_state(trainer.out_dir)
    if state is None:
        return None
    path = os.path.join(trainer.out_dir, CHECKPOINT)
    load_checkpoint(state["state_dict"], trainer.method.nets)
    trainer.optimizer.load_state_dict(state["optimizer"])
    if state.get("scaler"):
        trainer.scaler.load_state_dict(state["scaler"])
    trainer.begin_epoch = int(state["epoch"])
    trainer.start_iter = int(state.get("iteration", 0))
    trainer.global_step = int(state.get("global_step", 0))
    trainer.best_perf = float(state.get("perf", float("-inf")))
    if "rng" in state:
        set_rng_state(state["rng"])
    for key, gstate in state.get("method_rng", {}).items():
        trainer.method.generator(torch.device(key)).set_state(gstate)
    return path
