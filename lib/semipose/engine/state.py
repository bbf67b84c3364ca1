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
from ..models.weights import load_checkpoint, nets_state_dict
from ..utils.dist import all_gather_objects
from ..utils.seed import rng_state, seed_everything, set_rng_state
from .checkpoint import (BEST, CHECKPOINT, CheckpointError, atomic_torch_save,
                         load_resume_state, remove_stale_temp_files)

logger = logging.getLogger("semipose")


def nonfinite_tensors(state: Dict[str, torch.Tensor]) -> list:
    """Names of floating-point tensors holding NaN or inf."""
    return [k for k, v in state.items()
            if torch.is_tensor(v) and v.is_floating_point() and not bool(torch.isfinite(v).all())]


def _rank_rng(method: Any) -> Dict[str, Any]:
    return {"rng": rng_state(),
            "method_rng": method.rng_state()}


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
        "guard": resume_guard(trainer),
        "method_state": method.extra_state(),
    }
    bad = nonfinite_tensors(weights)
    if bad:
        logger.warning("the weights hold NaN/inf values (%d tensors, e.g. %s) at epoch %d "
                       "iteration %d: checkpoint.pth.tar keeps them for inspection, model_best "
                       "is not updated; lower TRAIN.LR or set TRAIN.STOP_ON_NONFINITE True",
                       len(bad), bad[0], epoch, iteration)
    atomic_torch_save(state, os.path.join(trainer.out_dir, CHECKPOINT))
    if is_best and not bad:  # model_best never becomes non-finite
        atomic_torch_save(weights, os.path.join(trainer.out_dir, BEST))
    done = epoch - 1  # 0-based index of the epoch just finished (reference naming)
    every = trainer.cfg.SAVE_INTER
    if every > 0 and iteration == 0 and done % every == 0:
        atomic_torch_save(weights, os.path.join(trainer.out_dir, f"State_epoch{done}.pth.tar"))
    trainer.scalars.flush()


# Keys that must not change across a resume: the architecture and optimizer (always), and what
# lays out an epoch (only when resuming mid-epoch: the iteration counter indexes that layout).
_ARCH_KEYS = ("MODEL.NAME", "MODEL.BACKBONE", "MODEL.NUM_JOINTS", "MODEL.IMAGE_SIZE",
              "MODEL.EXTRA", "TRAIN.OPTIMIZER")
_EPOCH_KEYS = ("TRAIN.BATCH_SIZE", "batches per epoch", "items per epoch", "world size")


def _key(cfg: Any, full: str) -> Any:
    from ..config import to_plain
    node = cfg
    for part in full.split("."):
        node = node[part]
    return to_plain(node)


def resume_guard(trainer: Any) -> Dict[str, Any]:
    """The values checked when this run is resumed (see _ARCH_KEYS / _EPOCH_KEYS)."""
    out = {k: _key(trainer.cfg, k) for k in _ARCH_KEYS}
    out.update({"TRAIN.BATCH_SIZE": int(trainer.cfg.TRAIN.BATCH_SIZE),
                "batches per epoch": len(trainer.train_loader),
                "items per epoch": len(trainer.train_set),
                "world size": trainer.info.world_size})
    return out


def _differences(old: Any, new: Any, key: str) -> list:
    """'KEY: old -> new' for every differing leaf (nested dicts such as MODEL.EXTRA)."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for k in sorted(set(old) | set(new))
                for d in _differences(old.get(k), new.get(k), f"{key}.{k}")]
    old = list(old) if isinstance(old, tuple) else old
    new = list(new) if isinstance(new, tuple) else new
    return [] if old == new else [f"{key} {old!r} in the checkpoint, {new!r} now"]


def check_resume(trainer: Any, state: Dict[str, Any], path: str) -> None:
    """Refuse a resume whose config changed what the checkpoint depends on, naming the key."""
    saved = state.get("guard")
    if not saved:  # checkpoints written before the guard existed
        return
    now = resume_guard(trainer)
    keys = list(_ARCH_KEYS) + (list(_EPOCH_KEYS) if int(state.get("iteration", 0)) > 0 else [])
    diffs = [d for k in keys if k in saved for d in _differences(saved[k], now[k], k)]
    if diffs:
        where = (f"mid-epoch (epoch {int(state['epoch']) + 1}, iteration {state['iteration']}), "
                 f"so the epoch layout must match; " if int(state.get("iteration", 0)) else "")
        raise CheckpointError(
            f"cannot resume {path}: {'; '.join(diffs)}. It was saved {where}restore those "
            f"values, or set TRAIN.RESUME False (a new run folder) to start afresh")


def load_state(trainer: Any) -> Optional[str]:
    """Restore ``trainer`` from its run folder's checkpoint; returns the path or None."""
    if trainer.info.is_main:  # the only writer of the folder, and it is not writing now
        remove_stale_temp_files(trainer.out_dir)
    state = load_resume_state(trainer.out_dir)
    if state is None:
        return None
    path = os.path.join(trainer.out_dir, CHECKPOINT)
    check_resume(trainer, state, path)
    load_checkpoint(state["state_dict"], trainer.method.nets)
    trainer.optimizer.load_state_dict(state["optimizer"])
    if state.get("scaler"):
        trainer.scaler.load_state_dict(state["scaler"])
    trainer.begin_epoch = int(state["epoch"])
    trainer.start_iter = int(state.get("iteration", 0))
    trainer.global_step = int(state.get("global_step", 0))
    trainer.best_perf = float(state.get("perf", float("-inf")))
    trainer.best_epoch = state.get("best_epoch")
    trainer.method.load_extra_state(state.get("method_state", {}))
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
        method.reseed(seed)
        return
    if mine.get("rng"):
        set_rng_state(mine["rng"])
    method.set_rng_state(mine.get("method_rng", {}))
