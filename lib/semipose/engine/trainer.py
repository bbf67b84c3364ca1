"""The one training loop. Read ``fit`` top to bottom: set up, then epochs of steps, with the side
work (validation, checkpoints, collapse monitor, pictures, summary) done by hooks (hooks.py) at
fixed points.

Everything device-, precision- and process-related lives here; the method object only turns a
batch into a ``StepOutput``. Only rank 0 writes logs, TensorBoard, results and checkpoints.
"""
from __future__ import annotations

import math
import os
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple, Type, TypeVar

import torch
from tqdm import tqdm
from yacs.config import CfgNode

from ..config import dump_cfg
from ..data.loaders import set_loader_epoch
from ..evaluation.accuracy import accuracy_tensor
from ..methods.base import labeled_part
from ..types import StepOutput
from ..utils.dist import DistInfo, any_rank, barrier
from ..utils.seed import seed_everything
from ..utils.streams import stream_seed
from .build import Run, build_run
from .data_setup import prepare_synthetic, resume_loader, until_stopped
from .device import mark_step_begin, move_batch
from .hooks import (Hook, StopSignals, Validation, ValidationFailed,  # noqa: F401 (re-export)
                    default_hooks, hooks_from_cfg)
from .log import Clock, PendingSteps, ScalarLog, record_step, setup_logger, step_line
from .optim import NonFiniteLossError, nonfinite_error, set_epoch_lr  # noqa: F401 (re-export)
from .runs import choose_run_folder, lock_run_folder, unlock_run_folder
from .state import TrainState, resume

H = TypeVar("H", bound=Hook)


class Trainer:
    """Train ``cfg`` (frozen, loaded from ``cfg_path``) on this process's device. Constructing
    it does nothing else: ``setup`` (called by ``fit``) makes the run folder, takes its lock,
    builds the run and resumes. ``hooks`` run after the default ones and TRAIN.HOOKS'."""

    def __init__(self, cfg: CfgNode, cfg_path: str, info: DistInfo, progress: bool = True,
                 hooks: Sequence[Hook] = ()):
        self.cfg, self.cfg_path, self.info, self.progress = cfg, cfg_path, info, progress
        self.hooks: List[Hook] = default_hooks(cfg) + hooks_from_cfg(cfg.TRAIN.HOOKS) + list(hooks)
        self.state = TrainState(epoch=cfg.TRAIN.BEGIN_EPOCH)
        self.run_dir = ""  # the run folder, chosen by setup()
        self.run: Optional[Run] = None
        self.log: Any = None
        self.scalars: Any = None
        self.pending = PendingSteps()  # this epoch's steps not yet read on the host
        self.clock = Clock()

    method = property(lambda self: self.run.method)  # shortcuts
    out_dir = property(lambda self: self.run_dir)

    def hook(self, kind: Type[H]) -> Optional[H]:
        """The first hook of a class (e.g. ``t.hook(Validation).results``), or None."""
        return next((h for h in self.hooks if isinstance(h, kind)), None)

    def setup(self) -> None:
        """Run folder and lock, logger, seeds, data, nets, method, optimiser; then resume."""
        if self.run is not None:
            return
        cfg, info = self.cfg, self.info
        run_dir = choose_run_folder(cfg, self.cfg_path, info)  # one folder per run
        cfg_name = os.path.splitext(os.path.basename(self.cfg_path))[0]
        if info.is_main:
            os.makedirs(run_dir, exist_ok=True)
            lock_run_folder(run_dir)  # one live process per run folder
            dump_cfg(cfg, os.path.join(run_dir, "config.yaml"))
        self.run_dir = run_dir  # set once locked: fit() unlocks what this process locked
        self.log = setup_logger(self.run_dir, cfg_name, "train", info.is_main)
        self.log.info("run folder %s; device %s; world size %d; torch %s", self.run_dir,
                      info.device, info.world_size, torch.__version__)
        seed_everything(stream_seed("process", seed=cfg.SEED, rank=info.rank),
                        deterministic=cfg.CUDNN.DETERMINISTIC, cudnn=cfg.CUDNN)
        if info.is_main:
            prepare_synthetic(cfg, self.log)
        barrier(info)
        self.run = build_run(cfg, info, self.log)
        self.scalars = ScalarLog.for_run(cfg, cfg_name, self.run_dir, info.is_main)
        self._call("setup")
        if cfg.TRAIN.RESUME:
            resume(self)
        self.clock = Clock()

    # ------------------------------------------------------------------------------ loop
    def fit(self) -> Dict[str, Any]:
        """Train from the state's epoch to TRAIN.END_EPOCH; returns the last validation results."""
        try:
            self.setup()
            self._call("before_run")
            for epoch in range(self.state.epoch, self.cfg.TRAIN.END_EPOCH):
                if not self.train_one_epoch(epoch):  # stopped by a signal: checkpoint and leave
                    self._call("on_stop", epoch)
                    return self.last_results
                self.state.epoch, self.state.iteration = epoch + 1, 0
                self._call("end_of_epoch", epoch)
                if epoch + 1 < self.cfg.TRAIN.END_EPOCH and self._agree(True, False)[0]:
                    self.log.warning("stopped after epoch %d/%d; resume with TRAIN.RESUME True",
                                     epoch + 1, self.cfg.TRAIN.END_EPOCH)
                    return self.last_results
            self._call("end_of_run")
        finally:
            self._call("close")
            if self.scalars is not None:
                self.scalars.close()
            if self.info.is_main and self.run_dir:
                unlock_run_folder(self.run_dir)
        return self.last_results

    @property
    def last_results(self) -> Dict[str, Any]:
        val = self.hook(Validation)
        return val.results if val else {}

    def train_one_epoch(self, epoch: int) -> bool:
        """One pass over the training loader; False when a signal asked to stop. A step queues
        its work on the device; its values wait there (``self.pending``) until ``_read``."""
        cfg, info, run, state = self.cfg, self.info, self.run, self.state
        run.model.train()
        set_loader_epoch(run.train_loader, epoch)
        set_epoch_lr(run.optimizer, cfg, epoch)
        loader = resume_loader(run.train_loader, state.iteration)
        total = len(run.train_loader)
        if state.iteration == 0:  # else: continue the averages restored with the checkpoint
            state.meters = {}
        self.clock.new_epoch()
        bar = tqdm(total=total, initial=state.iteration,
                   desc=f"epoch {epoch + 1}/{cfg.TRAIN.END_EPOCH}",
                   disable=not (self.progress and info.is_main), dynamic_ncols=True, leave=False)
        end = time.time()
        # Single process: a group-wide SIGTERM that also ended the loader's workers stops here.
        # Under DDP the ranks must stop at the same step, so a failing loader stays an error.
        stopping = lambda: self._signal() is not None and not info.distributed  # noqa: E731
        for i, batch in enumerate(until_stopped(loader, stopping), start=state.iteration):
            self.clock.data.update(time.time() - end)
            host_skip = self._train_step(epoch, i, batch)
            self.clock.batch.update(time.time() - end)
            self.clock.steps += 1
            state.global_step += 1
            state.iteration = i + 1
            due = (i + 1) % cfg.PRINT_FREQ == 0 or i + 1 == total
            # a single process stops at the step after a signal (no other rank to agree with);
            # under DDP the ranks agree at the reads; a skip the host saw raises at once
            if due or stopping() or host_skip:
                stop = self._read(epoch, total, log_line=due)
                bar.set_postfix(loss=f"{state.meters['loss'].avg:.5f}",
                                acc=f"{state.meters['accuracy'].avg:.3f}",
                                run_eta=self.clock.eta(cfg.TRAIN.END_EPOCH - epoch - 1, total,
                                                       i + 1))
                if stop:
                    bar.update(1)
                    bar.close()
                    return False
            bar.update(1)
            end = time.time()
        bar.close()
        if state.iteration < total:  # the loader ended early after a signal
            self._read(epoch, total, log_line=False)
            return False
        return True

    def _train_step(self, epoch: int, i: int, batch: Any) -> bool:
        """Forward, backward and optimizer step on one batch, queued on the device; the step's
        values go to ``self.pending``. True when the guard, reading on the host, skipped it."""
        cfg, run = self.cfg, self.run
        mark_step_begin(cfg)
        if run.stage is not None:  # plans -> crops and targets on the device
            batch = run.stage(batch, run.device)
        batch = move_batch(batch, run.device, cfg.TRAIN.CHANNELS_LAST)
        run.method.set_progress(epoch + i / len(run.train_loader))  # e.g. the consistency ramp-up
        with torch.autocast(run.device.type, dtype=run.amp_dtype or torch.float32,
                            enabled=run.amp_dtype is not None):
            out = run.model(batch)
        if not isinstance(out, StepOutput):
            raise TypeError(f"{type(run.method).__name__}.training_step must return a "
                            f"StepOutput (semipose.types), not {type(out).__name__}")
        logged = out.logged()
        terms = torch.stack(list(logged.values()))
        run.optimizer.zero_grad(set_to_none=True)
        if run.guard is None:  # TRAIN.STOP_ON_NONFINITE False: step whatever the loss
            run.scaler.scale(out.loss).backward()
            run.scaler.step(run.optimizer)
            run.scaler.update()
            skipped = None
        else:
            run.scaler.scale(run.guard.arm(out.loss, terms)).backward()
            skipped = run.guard.step(run.optimizer)
        labeled = labeled_part(batch)
        _, acc, counted, _ = accuracy_tensor(out.sup_heatmaps.detach().float(),
                                             labeled["target"].float())
        self.pending.add(i, self.state.global_step, labeled["image"].shape[0], list(logged),
                         terms, acc, counted, skipped)
        host_skip = skipped is not None and not run.guard.on_device and bool(skipped)
        if not host_skip:
            run.method.after_step()  # e.g. an EMA teacher follows its student
        self._call("after_step", i, batch, out)
        return host_skip

    def _read(self, epoch: int, total: int, log_line: bool) -> bool:
        """Read the pending steps on the host (running averages, per-step scalars, the log line;
        NonFiniteLossError at a non-finite step); whether to stop."""
        rows, meters = self.pending.read(), self.state.meters
        bad = None
        if self.run.guard is not None:
            bad = next((r for r in rows if r.skipped
                        or not all(math.isfinite(v) for v in r.terms.values())), None)
        stop, any_bad = self._agree(self.state.iteration < total, bad is not None)
        for row in rows:
            if row is bad:
                break
            record_step(row, meters, self.scalars if self.info.is_main else None)
        if any_bad:
            raise nonfinite_error(f"epoch {epoch + 1}/{self.cfg.TRAIN.END_EPOCH}", total, bad,
                                  rows, self.state.iteration, self.run_dir)
        speed = self.clock.speed
        speed.add(sum(r.batch for r in rows) * self.info.world_size, len(rows))
        if log_line and rows and self.info.is_main:  # after the read: every queued step has run
            times = {"batch": self.clock.batch, "data": self.clock.data}
            self.log.info(step_line(f"{epoch + 1}/{self.cfg.TRAIN.END_EPOCH}", total, rows[-1],
                                    meters, times, speed.rate(), speed.step_time))
        return stop

    # ------------------------------------------------------------------------------ helpers
    def _call(self, point: str, *args: Any) -> None:
        """Every hook's ``point``, in order (hooks that keep the base's no-op are skipped)."""
        for hook in self.hooks:
            if getattr(type(hook), point) is not getattr(Hook, point):
                getattr(hook, point)(self, *args)

    def _signal(self) -> Optional[int]:
        signals = self.hook(StopSignals)
        return signals.signum if signals else None

    def _agree(self, may_stop: bool, bad: bool) -> Tuple[bool, bool]:
        """(stop signal if ``may_stop``, non-finite loss) OR-ed over all ranks in one small
        all-reduce, so that every rank decides alike at the same step."""
        signum = self._signal()
        stop, bad = any_rank([may_stop and signum is not None, bad], self.info)
        if stop and not bad:
            self.log.warning("received %s: saving a checkpoint and stopping",
                             f"signal {signum}" if signum is not None
                             else "a stop request on another rank")
        return stop, bad
