"""The loop's state (``TrainState``), what a resumable checkpoint holds, and restoring from it.

Besides weights, optimizer and AMP scaler, the checkpoint keeps where to continue (epoch and, after
SIGINT/SIGTERM, the first batch not yet trained), the running averages of an interrupted epoch and
every rank's RNG states (python/numpy/torch and the methods' hard-view generators). The data order
and augmentation are functions of (SEED, epoch, rank), so a resumed run with the same world size
repeats the uninterrupted one step for step.
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional

import torch

from ..config import model_name
from ..models.weights import load_checkpoint, nets_state_dict
from ..utils.dist import all_gather_objects
from ..utils.seed import rng_state, seed_everything, set_rng_state
from ..utils.streams import stream_seed
from .checkpoint import (BEST, CHECKPOINT, CheckpointError, atomic_torch_save,
                         load_resume_state, remove_stale_temp_files)

from .log import AverageMeter

if TYPE_CHECKING:
    from .build import Run
    from .trainer import Trainer

logger = logging.getLogger("semipose")


def nonfinite_tensors(state: Dict[str, torch.Tensor]) -> list:
    """Names of floating-point tensors holding NaN or inf."""
    return [k for k, v in state.items()
            if torch.is_tensor(v) and v.is_floating_point() and not bool(torch.isfinite(v).all())]


@dataclass
class TrainState:
    """Where training stands: the one object of the loop's counters, saved in checkpoints.

    epoch / iteration: where the loop (re)starts (the next epoch and, after a stop signal, the
    first batch not yet trained); global_step: optimizer steps so far; best_perf / best_epoch:
    the selection metric's best (1-based epoch); meters: this epoch's running averages (kept
    across a mid-epoch resume).
    """

    epoch: int = 0
    iteration: int = 0
    global_step: int = 0
    best_perf: float = -math.inf
    best_epoch: Optional[int] = None
    meters: Dict[str, AverageMeter] = field(default_factory=dict)

    def state_dict(self, epoch: int, iteration: int) -> Dict[str, Any]:
        """The checkpoint's entries of a save at (epoch, iteration) (the keys are those of every
        checkpoint written so far, so old checkpoints resume)."""
        meters = self.meters if iteration > 0 else {}
        return {"epoch": epoch, "iteration": iteration, "global_step": self.global_step,
                "perf": self.best_perf, "best_epoch": self.best_epoch,
                "meters": {k: (m.sum, m.count) for k, m in meters.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        self.iteration = int(state.get("iteration", 0))
        self.global_step = int(state.get("global_step", 0))
        self.best_perf = float(state.get("perf", float("-inf")))
        self.best_epoch = state.get("best_epoch")
        self.meters = {}
        for k, (total, count) in state.get("meters", {}).items():
            m = AverageMeter()
            m.sum, m.count = float(total), int(count)
            m.avg = m.sum / max(m.count, 1)
            self.meters[k] = m


def _rank_rng(method: Any) -> Dict[str, Any]:
    return {"rng": rng_state(), "method_rng": method.rng_state()}


def save_state(trainer: "Trainer", epoch: int, iteration: int, is_best: bool) -> None:
    """Write checkpoint.pth.tar (and model_best.pth.tar when ``is_best``) on rank 0.

    Every rank must call it (the RNG states are gathered). ``epoch``/``iteration``: where a
    resumed run continues (the next epoch and, after a signal, the first batch not yet trained).
    """
    run, cfg, info, folder = trainer.run, trainer.cfg, trainer.info, trainer.run_dir
    method = run.method
    ranks = all_gather_objects(_rank_rng(method), info)
    if not info.is_main:
        return
    weights = nets_state_dict(method.nets)
    state = {
        **trainer.state.state_dict(epoch, iteration),
        "model": model_name(cfg), "state_dict": weights,
        "optimizer": run.optimizer.state_dict(), "scaler": run.scaler.state_dict(),
        "rng": ranks[0]["rng"], "method_rng": ranks[0]["method_rng"],
        "rank_rng": ranks, "world_size": info.world_size,
        "data": {"seed": cfg.SEED, "epoch": epoch},  # pairing = f(seed, epoch, rank)
        "guard": resume_guard(cfg, info, run),
        "method_state": method.extra_state(),
    }
    bad = nonfinite_tensors(weights)
    if bad:
        logger.warning("the weights hold NaN/inf values (%d tensors, e.g. %s) at epoch %d "
                       "iteration %d: checkpoint.pth.tar keeps them for inspection, model_best "
                       "is not updated; lower TRAIN.LR or set TRAIN.STOP_ON_NONFINITE True",
                       len(bad), bad[0], epoch, iteration)
    atomic_torch_save(state, os.path.join(folder, CHECKPOINT))
    if is_best and not bad:  # model_best never becomes non-finite
        atomic_torch_save(weights, os.path.join(folder, BEST))
    done = epoch - 1  # 0-based index of the epoch just finished (reference naming)
    every = cfg.SAVE_INTER
    if every > 0 and iteration == 0 and done % every == 0:
        atomic_torch_save(weights, os.path.join(folder, f"State_epoch{done}.pth.tar"))
    trainer.scalars.flush()


# Keys that must not change across a resume: the architecture and optimizer (always), and what
# lays out an epoch (only when resuming mid-epoch: the iteration counter indexes that layout).
_ARCH_KEYS = ("MODEL.NAME", "MODEL.BACKBONE", "MODEL.NUM_JOINTS", "DATASET.JOINT_SPACE",
              "MODEL.IMAGE_SIZE", "MODEL.EXTRA", "TRAIN.OPTIMIZER")
_EPOCH_KEYS = ("TRAIN.BATCH_SIZE", "batches per epoch", "items per epoch", "world size")


def _key(cfg: Any, full: str) -> Any:
    from ..config import to_plain
    node = cfg
    for part in full.split("."):
        node = node[part]
    return to_plain(node)


def resume_guard(cfg: Any, info: Any, run: "Run") -> Dict[str, Any]:
    """The values checked when this run is resumed (see _ARCH_KEYS / _EPOCH_KEYS)."""
    out = {k: _key(cfg, k) for k in _ARCH_KEYS}
    out.update({"TRAIN.BATCH_SIZE": int(cfg.TRAIN.BATCH_SIZE),
                "batches per epoch": len(run.train_loader),
                "items per epoch": len(run.train_set),
                "world size": info.world_size})
    return out


def _differences(old: Any, new: Any, key: str) -> list:
    """'KEY: old -> new' for every differing leaf (nested dicts such as MODEL.EXTRA)."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for k in sorted(set(old) | set(new))
                for d in _differences(old.get(k), new.get(k), f"{key}.{k}")]
    old = list(old) if isinstance(old, tuple) else old
    new = list(new) if isinstance(new, tuple) else new
    return [] if old == new else [f"{key} {old!r} in the checkpoint, {new!r} now"]


def check_resume(cfg: Any, info: Any, run: "Run", state: Dict[str, Any], path: str) -> None:
    """Refuse a resume whose config changed what the checkpoint depends on, naming the key."""
    saved = state.get("guard")
    if not saved:  # checkpoints written before the guard existed
        return
    now = resume_guard(cfg, info, run)
    keys = list(_ARCH_KEYS) + (list(_EPOCH_KEYS) if int(state.get("iteration", 0)) > 0 else [])
    diffs = [d for k in keys if k in saved for d in _differences(saved[k], now[k], k)]
    if diffs:
        where = (f"mid-epoch (epoch {int(state['epoch']) + 1}, iteration {state['iteration']}), "
                 f"so the epoch layout must match; " if int(state.get("iteration", 0)) else "")
        raise CheckpointError(
            f"cannot resume {path}: {'; '.join(diffs)}. It was saved {where}restore those "
            f"values, or set TRAIN.RESUME False (a new run folder) to start afresh")


def load_state(trainer: "Trainer") -> Optional[str]:
    """Restore a trainer's run and state from its run folder's checkpoint; the path or None."""
    cfg, info, run, folder = trainer.cfg, trainer.info, trainer.run, trainer.run_dir
    if info.is_main:  # the only writer of the folder, and it is not writing now
        remove_stale_temp_files(folder)
    state = load_resume_state(folder)
    if state is None:
        return None
    path = os.path.join(folder, CHECKPOINT)
    check_resume(cfg, info, run, state, path)
    load_checkpoint(state["state_dict"], run.method.nets)
    run.optimizer.load_state_dict(state["optimizer"])
    if state.get("scaler"):
        run.scaler.load_state_dict(state["scaler"])
    trainer.state.load_state_dict(state)
    run.method.load_extra_state(state.get("method_state", {}))
    _restore_rng(cfg, info, run.method, trainer.state.global_step, state)
    return path


def resume(trainer: "Trainer") -> Optional[str]:
    """TRAIN.RESUME: continue from the run folder's checkpoint if there is one (weights,
    optimizer, state, RNG streams, scalar history); the checkpoint's path or None."""
    resumed = load_state(trainer)
    if not resumed:
        trainer.log.info("TRAIN.RESUME: no checkpoint in %s; training from the start",
                         trainer.run_dir)
    else:
        trainer.scalars.load()
        trainer.log.info("resumed from %s at epoch %d, iteration %d (best %.4f)", resumed,
                         trainer.state.epoch, trainer.state.iteration, trainer.state.best_perf)
    return resumed


def _restore_rng(cfg: Any, info: Any, method: Any, global_step: int,
                 state: Dict[str, Any]) -> None:
    """This rank's RNG states; fresh distinct streams when the world size changed."""
    ranks = state.get("rank_rng")
    saved_world = int(state.get("world_size", 1))
    if ranks is not None and len(ranks) == info.world_size:
        mine = ranks[info.rank]
    elif ranks is None and info.world_size == 1:  # checkpoints without per-rank states
        mine = {"rng": state.get("rng"), "method_rng": state.get("method_rng", {})}
    else:
        seed = stream_seed("world_change", seed=cfg.SEED, rank=info.rank, step=global_step)
        logger.warning("checkpoint written by %d process(es), resumed by %d: rank %d continues "
                       "with fresh random streams (seed %d), not a bit-exact continuation",
                       saved_world, info.world_size, info.rank, seed)
        seed_everything(seed)
        method.reseed(seed)
        return
    if mine.get("rng"):
        set_rng_state(mine["rng"])
    method.set_rng_state(mine.get("method_rng", {}))
