"""What a resumable checkpoint holds, and restoring a trainer from it.

Besides weights, optimizer and AMP scaler, the checkpoint keeps where to continue (epoch and, after
SIGINT/SIGTERM, the first batch not yet trained), the running averages of an interrupted epoch and
every rank's RNG states (python/numpy/torch and the methods' hard-view generators). The data order
and augmentation are functions of (SEED, epoch, rank), so a resumed run with the same world size
repeats the uninterrupted one step for step.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Dict, Optional

import torch

from ..config import model_name
from ..models.checkpoint import load_checkpoint, nets_state_dict
from ..utils.dist import all_gather_objects
from ..utils.seed import rng_state, seed_everything, set_rng_state
from .checkpoint import (BEST, CHECKPOINT, atomic_torch_save, load_resume_state,
                         remove_stale_temp_files)

logger = logging.getLogger("semipose")


def _rank_rng(method: Any) -> Dict[str, Any]:
    return {"rng": rng_state(),
            "method_rng": {k: g.get_state() for k, g in getattr(method, "_generators", {}).items()}}


def save_state(trainer: Any, epoch: int, iteration: int, is_best: bool) -> None:
    """Write checkpoint.pth.tar (and model_best.pth.tar when ``is_best``) on rank 0.

    Every rank must call it (the RNG states are gathered). ``epoch``/``iteration``: where a
    resumed run continues (the next epoch and, after a signal, the first batch not yet trained).
    """
    method = trainer.method
    ranks = all_gather_objects(_rank_rng(method), trainer.info)
    if not trainer.info.is_main:
        return
    weights = nets_state_dict(method.nets)
    meters = getattr(trainer, "meters", {}) if iteration > 0 else {}
    state = {
        "epoch": epoch, "iteration": iteration, "global_step": trainer.global_step,
        "model": model_name(trainer.cfg), "state_dict": weights, "perf": trainer.best_perf,
        "best_epoch": trainer.best_epoch,
        "optimizer": trainer.optimizer.state_dict(), "scaler": trainer.scaler.state_dict(),
        "rng": ranks[0]["rng"], "method_rng": ranks[0]["method_rng"],
        "rank_rng": ranks, "world_size": trainer.info.world_size,
        "meters": {k: (m.sum, m.count) for k, m in meters.items()},
        "data": {"seed": trainer.cfg.SEED, "epoch": epoch},  # pairing = f(seed, epoch, rank)
    }
    atomic_torch_save(state, os.path.join(trainer.out_dir, CHECKPOINT))
    if is_best:
        atomic_torch_save(weights, os.path.join(trainer.out_dir, BEST))
    done = epoch - 1  # 0-based index of the epoch just finished (reference naming)
    every = trainer.cfg.SAVE_INTER
    if every > 0 and iteration == 0 and done % every == 0:
        atomic_torch_save(weights, os.path.join(trainer.out_dir, f"State_epoch{done}.pth.tar"))
    trainer.scalars.flush()


def load_state(trainer: Any) -> Optional[str]:
    """Restore ``trainer`` from its run folder's checkpoint; returns the path or None."""
    if trainer.info.is_main:  # the only writer of the folder, and it is not writing now
        remove_stale_temp_files(trainer.out_dir)
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
    trainer.best_epoch = state.get("best_epoch")
    _restore_meters(trainer, state.get("meters", {}))
    _restore_rng(trainer, state)
    return path


def _restore_meters(trainer: Any, saved: Dict[str, Any]) -> None:
    from .log import AverageMeter
    trainer.meters = {}
    for k, (total, count) in saved.items():
        m = AverageMeter()
        m.sum, m.count = float(total), int(count)
        m.avg = m.sum / max(m.count, 1)
        trainer.meters[k] = m


def _restore_rng(trainer: Any, state: Dict[str, Any]) -> None:
    """This rank's RNG states; fresh distinct streams when the world size changed."""
    info, method = trainer.info, trainer.method
    ranks = state.get("rank_rng")
    saved_world = int(state.get("world_size", 1))
    if ranks is not None and len(ranks) == info.world_size:
        mine = ranks[info.rank]
    elif ranks is None and info.world_size == 1:  # checkpoints without per-rank states
        mine = {"rng": state.get("rng"), "method_rng": state.get("method_rng", {})}
    else:
        seed = (int(trainer.cfg.SEED) + info.rank) * 1_000_003 + trainer.global_step
        logger.warning("checkpoint written by %d process(es), resumed by %d: rank %d continues "
                       "with fresh random streams (seed %d), not a bit-exact continuation",
                       saved_world, info.world_size, info.rank, seed)
        seed_everything(seed)
        for gen in getattr(method, "_generators", {}).values():
            gen.manual_seed(seed)
        if hasattr(method, "seed"):
            method.seed = seed  # generators created later start from it too
        return
    if mine.get("rng"):
        set_rng_state(mine["rng"])
    for key, gstate in mine.get("method_rng", {}).items():
        method.generator(torch.device(key)).set_state(gstate)
