"""The one training loop: data, nets, method, optimiser, resume, epochs, validation, checkpoints.

Everything device-, precision- and process-related lives here; the method object only turns a batch
into named losses. Only rank 0 writes logs, TensorBoard, results and checkpoints.
"""
from __future__ import annotations

import math
import os
import signal
import time
from typing import Any, Dict, Optional, Tuple

import torch
from tqdm import tqdm
from yacs.config import CfgNode

from ..config import dump_cfg, model_name, output_dir as run_dir
from ..data.loaders import set_loader_epoch
from ..evaluation.accuracy import accuracy_tensor
from ..methods import CollapseMonitor
from ..transforms.device_pipeline import device_stage_for
from ..utils.dist import DistInfo, any_rank, barrier
from ..utils.seed import seed_everything
from ..models.weights import nets_state_dict
from .checkpoint import FINAL, atomic_torch_save
from .debug_images import DebugImages
from .runs import choose_run_folder, lock_run_folder, unlock_run_folder
from .log import (AverageMeter, PendingSteps, ScalarLog, Throughput, record_step, scalar_tag,
                  setup_logger, step_line)
from .optim import (NonFiniteGuard, NonFiniteLossError, build_optimizer, nonfinite_error,
                    set_epoch_lr)
from .data_setup import (build_data, monitor_crops, prepare_synthetic, resume_loader,
                         skipped_images, until_stopped)
from .device import amp_settings, mark_step_begin, move_batch
from .model_setup import build_method_for
from .state import load_state, nonfinite_tensors, save_state
from .validate import run_validation, settings_line


# Signals that checkpoint and stop a run: Ctrl-C, schedulers/torchrun, and a closed terminal or
# dropped ssh session (SIGHUP, where the platform has it).
STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


class ValidationFailed(ValueError):
    """Validation raised a user error after an epoch that is already saved."""


class Trainer:
    """Train ``cfg`` (a frozen CfgNode loaded from ``cfg_path``) on this process's device."""

    def __init__(self, cfg: CfgNode, cfg_path: str, info: DistInfo, progress: bool = True):
        self.cfg, self.info, self.device, self.progress = cfg, info, info.device, progress
        self.experiment_dir = run_dir(cfg, cfg_path)
        self.out_dir = choose_run_folder(cfg, cfg_path, info)  # one folder per run
        self.cfg_name = os.path.splitext(os.path.basename(cfg_path))[0]
        self.arch_name = model_name(cfg)[1]
        if info.is_main:
            os.makedirs(self.out_dir, exist_ok=True)
            lock_run_folder(self.out_dir)  # one live process per run folder
            dump_cfg(cfg, os.path.join(self.out_dir, "config.yaml"))
        self.log = setup_logger(self.out_dir, self.cfg_name, "train", info.is_main)
        self.log.info("run folder %s; device %s; world size %d; torch %s", self.out_dir,
                      self.device, info.world_size, torch.__version__)
        seed_everything(cfg.SEED + info.rank, deterministic=cfg.CUDNN.DETERMINISTIC)
        torch.backends.cudnn.benchmark = cfg.CUDNN.BENCHMARK
        torch.backends.cudnn.enabled = cfg.CUDNN.ENABLED

        if info.is_main:
            prepare_synthetic(cfg, self.log)
        barrier(info)
        self.train_set, self.val_set, self.train_loader, self.val_loader = build_data(cfg, info)
        self.stage = device_stage_for(self.train_set)  # DATASET.DEVICE_PIPELINE, else None
        self.log.info("train: %d items/epoch (%d batches); val: %d persons",
                      len(self.train_set), len(self.train_loader), len(self.val_set))
        self.method, self.model = build_method_for(cfg, info, self.log)
        self.optimizer = build_optimizer(cfg, self.method.parameters())
        self.amp_dtype, self.scaler = amp_settings(cfg, self.device, self.log)
        # no optimizer step on a non-finite loss (see NonFiniteGuard); None: step regardless
        self.guard = (NonFiniteGuard(self.optimizer, self.scaler, info.distributed)
                      if cfg.TRAIN.STOP_ON_NONFINITE else None)
        self.pending = PendingSteps()  # this epoch's steps not yet read on the host
        # TensorBoard events of each run in a folder of their own (runs overlay in the UI)
        tb = os.path.join(cfg.LOG_DIR or self.out_dir, cfg.DATASET.TRAIN_DATASET,
                          model_name(cfg)[0], self.cfg_name,
                          os.path.basename(self.out_dir)) if info.is_main else None
        self.scalars = ScalarLog(tb, os.path.join(self.out_dir, "history.json"), info.is_main)
        self.monitor = CollapseMonitor.from_cfg(cfg) if self._monitor_on() else None
        self.monitor_images = (monitor_crops(self.train_set.unlabeled, cfg.MONITOR.NUM_SAMPLES,
                                             cfg.SEED, self.stage) if self.monitor else None)
        self.debug = DebugImages(cfg, self.out_dir)  # the DEBUG.* pictures (off by default)

        self.begin_epoch, self.start_iter = cfg.TRAIN.BEGIN_EPOCH, 0
        self.best_perf, self.global_step, self.last_results = -math.inf, 0, {}
        self.best_epoch: Optional[int] = None  # 1-based epoch of best_perf
        self.t_start, self.steps_here = time.time(), 0  # for the whole-run ETA
        self.meters: Dict[str, AverageMeter] = {}  # this epoch's running averages (resumable)
        if cfg.TRAIN.RESUME:
            resumed = load_state(self)
            if not resumed:
                self.log.info("TRAIN.RESUME: no checkpoint in %s; training from the start",
                              self.out_dir)
            else:
                self.scalars.load()
                self.log.info("resumed from %s at epoch %d, iteration %d (best %.4f)", resumed,
                              self.begin_epoch, self.start_iter, self.best_perf)
        self._stop_signal: Optional[int] = None

    # ------------------------------------------------------------------------------ helpers
    def _monitor_on(self) -> bool:
        return bool(self.cfg.MONITOR.ENABLED) and hasattr(self.train_set, "unlabeled")

    def _on_signal(self, signum: int, _frame: Any) -> None:
        # Only a flag: logging here could re-enter a stream write the main thread is inside.
        if self._stop_signal is not None:  # a second Ctrl-C: stop now (checkpoints are atomic)
            raise KeyboardInterrupt
        self._stop_signal = signum

    def _stop_requested(self) -> bool:
        """Whether any rank got a stop signal (all ranks must stop at the same step)."""
        return self._agree(True, False)[0]

    def _agree(self, may_stop: bool, bad: bool) -> Tuple[bool, bool]:
        """(stop, non-finite) OR-ed over all ranks in one small all-reduce, so that every rank
        takes the same decision at the same step: a stop signal (counted when ``may_stop``) and
        a non-finite loss. Every rank calls it at the same steps."""
        stop, bad = any_rank([may_stop and self._stop_signal is not None, bad], self.info)
        if stop and not bad:
            self.log.warning("received %s: saving a checkpoint and stopping",
                             f"signal {self._stop_signal}" if self._stop_signal is not None
                             else "a stop request on another rank")
        return stop, bad

    def _run_eta(self, epoch: int, done: int, total: int) -> str:
        """Time left for the whole run at this process's mean step time (validation excluded)."""
        if self.steps_here == 0:
            return "?"
        left = (self.cfg.TRAIN.END_EPOCH - epoch - 1) * total + (total - done)
        sec = int(left * (time.time() - self.t_start) / self.steps_here)
        return f"{sec // 3600}:{sec % 3600 // 60:02d}:{sec % 60:02d}"

    # ------------------------------------------------------------------------------ loop
    def fit(self) -> Dict[str, Any]:
        """Train from begin_epoch to TRAIN.END_EPOCH; returns the last validation results."""
        cfg = self.cfg
        old = {s: signal.signal(s, self._on_signal) for s in STOP_SIGNALS}
        try:
            for epoch in range(self.begin_epoch, cfg.TRAIN.END_EPOCH):
                finished = self.train_one_epoch(epoch)
                if not finished:  # stopped by a signal: checkpoint mid-epoch and leave
                    save_state(self, epoch, self.start_iter, is_best=False)
                    self.log.warning("stopped at epoch %d/%d after iteration %d; resume with "
                                     "TRAIN.RESUME True", epoch + 1, cfg.TRAIN.END_EPOCH,
                                     self.start_iter)
                    return self.last_results
                self.start_iter = 0
                last = epoch + 1 == cfg.TRAIN.END_EPOCH
                if (epoch + 1) % cfg.TEST.INTERVAL == 0 or last:
                    # the trained epoch goes to disk first: a failing validation loses nothing
                    save_state(self, epoch + 1, 0, is_best=False)
                    is_best = self._validate_or_explain(epoch)
                    save_state(self, epoch + 1, 0, is_best)  # with the new best metric
                else:
                    save_state(self, epoch + 1, 0, is_best=False)
                if epoch + 1 < cfg.TRAIN.END_EPOCH and self._stop_requested():
                    self.log.warning("stopped after epoch %d/%d; resume with TRAIN.RESUME True",
                                     epoch + 1, cfg.TRAIN.END_EPOCH)
                    return self.last_results
            if self.info.is_main:
                final = nets_state_dict(self.method.nets)
                if nonfinite_tensors(final):
                    self.log.warning("%s holds NaN/inf weights (%s, ...): the run diverged",
                                     FINAL, nonfinite_tensors(final)[0])
                atomic_torch_save(final, os.path.join(self.out_dir, FINAL))
                self._visualise()
                self._summary()
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            self.scalars.close()
            if self.info.is_main:
                unlock_run_folder(self.out_dir)
        return self.last_results

    def train_one_epoch(self, epoch: int) -> bool:
        """One pass over the training loader; False when a signal asked to stop.

        A step queues its work on the device without waiting for it: the loss terms and the
        training accuracy stay there (``self.pending``) until the host reads them every
        PRINT_FREQ steps and at the end of the epoch. Only a read updates the running averages,
        the per-step scalars and the log line, and decides on stopping (see ``_read``).
        """
        cfg, info = self.cfg, self.info
        self.model.train()
        set_loader_epoch(self.train_loader, epoch)
        lr = set_epoch_lr(self.optimizer, cfg, epoch)
        loader = resume_loader(self.train_loader, self.start_iter)
        total = len(self.train_loader)
        if self.start_iter == 0:  # else: continue the averages restored with the checkpoint
            self.meters = {}
        self.times = {"batch": AverageMeter(), "data": AverageMeter()}
        self.speed = Throughput()  # the log line's samples/s since the previous line
        bar = tqdm(total=total, initial=self.start_iter,
                   desc=f"epoch {epoch + 1}/{cfg.TRAIN.END_EPOCH}",
                   disable=not (self.progress and info.is_main), dynamic_ncols=True, leave=False)
        end = time.time()
        # Single process: a group-wide SIGTERM that also ended the loader's workers stops here.
        # Under DDP the ranks must stop at the same step, so a failing loader stays an error.
        stopping = lambda: self._stop_signal is not None and not info.distributed  # noqa: E731
        for i, batch in enumerate(until_stopped(loader, stopping), start=self.start_iter):
            self.times["data"].update(time.time() - end)
            host_skip = self._train_step(epoch, i, batch)
            self.times["batch"].update(time.time() - end)
            self.steps_here += 1
            self.global_step += 1
            self.start_iter = i + 1
            due = (i + 1) % cfg.PRINT_FREQ == 0 or i + 1 == total
            # a single process stops at the step after a signal (no other rank to agree with);
            # under DDP the ranks agree at the reads; a skip the host saw raises at once
            if due or stopping() or host_skip:
                stop = self._read(epoch, total, log_line=due)
                bar.set_postfix(loss=f"{self.meters['loss'].avg:.5f}",
                                acc=f"{self.meters['accuracy'].avg:.3f}",
                                run_eta=self._run_eta(epoch, i + 1, total))
                if stop:
                    bar.update(1)
                    bar.close()
                    return False
            bar.update(1)
            end = time.time()
        bar.close()
        if self.start_iter < total:  # the loader ended early after a signal
            self._read(epoch, total, log_line=False)
            return False
        if info.is_main:  # per-epoch scalars at step = epochs done (1 after the first epoch)
            self.scalars.add("train/lr", lr, epoch + 1)
            for k, m in self.meters.items():
                self.scalars.add(f"epoch/{k}", m.avg, epoch + 1)
        skipped = skipped_images(self.train_set)
        if skipped:
            self.log.warning("skipped %d unreadable images so far (DATASET.SKIP_BAD_IMAGES)",
                             skipped)
        self._monitor(epoch)
        return True

    def _train_step(self, epoch: int, i: int, batch: Any) -> bool:
        """Forward, backward and optimizer step on one batch, queued on the device; the step's
        values go to ``self.pending``. True when the guard, reading on the host, skipped it."""
        cfg = self.cfg
        mark_step_begin(cfg)
        if self.stage is not None:  # plans -> crops and targets on the device
            batch = self.stage(batch, self.device)
        batch = move_batch(batch, self.device, cfg.TRAIN.CHANNELS_LAST)
        self.method.set_progress(epoch + i / len(self.train_loader))  # e.g. the consistency ramp-up
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            losses = dict(self.model(batch))
        sup_heatmaps = losses.pop("sup_heatmaps", None)
        if sup_heatmaps is None:
            raise KeyError(f"{type(self.method).__name__}.training_step must return "
                           "'sup_heatmaps' (net 1 on the labeled images) with its losses")
        terms = torch.stack([v.detach() for v in losses.values()])
        self.optimizer.zero_grad(set_to_none=True)
        if self.guard is None:  # TRAIN.STOP_ON_NONFINITE False: step whatever the loss
            self.scaler.scale(losses["loss"]).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            skipped = None
        else:
            self.scaler.scale(self.guard.arm(losses["loss"], terms)).backward()
            skipped = self.guard.step(self.optimizer)
        labeled = batch["labeled"] if "labeled" in batch else batch
        _, acc, counted, _ = accuracy_tensor(sup_heatmaps.detach().float(),
                                             labeled["target"].float())
        self.pending.add(i, self.global_step, labeled["image"].shape[0], list(losses), terms,
                         acc, counted, skipped)
        host_skip = skipped is not None and not self.guard.on_device and bool(skipped)
        if not host_skip:
            self.method.after_step()  # e.g. an EMA teacher follows its student
        if self.info.is_main and self.debug.due(i):
            self.debug.train_step(i, batch, self.method.last)
        return host_skip

    def _read(self, epoch: int, total: int, log_line: bool) -> bool:
        """Read the pending steps on the host: running averages, per-step scalars (at their own
        global steps), the log line; raise NonFiniteLossError at the first step whose loss or
        gradients were non-finite. Returns whether to stop: a signal on any rank, decided
        together with the non-finite check in one small all-reduce under DDP."""
        rows = self.pending.read()
        bad = None
        if self.guard is not None:
            bad = next((r for r in rows if r.skipped
                        or not all(math.isfinite(v) for v in r.terms.values())), None)
        stop, any_bad = self._agree(self.start_iter < total, bad is not None)
        for row in rows:
            if row is bad:
                break
            record_step(row, self.meters, self.scalars if self.info.is_main else None)
        if any_bad:
            raise nonfinite_error(f"epoch {epoch + 1}/{self.cfg.TRAIN.END_EPOCH}", total, bad,
                                  rows, self.start_iter, self.out_dir)
        self.speed.add(sum(r.batch for r in rows) * self.info.world_size, len(rows))
        if log_line and rows and self.info.is_main:  # after the read: every queued step has run
            rate = self.speed.rate()
            self.log.info(step_line(f"{epoch + 1}/{self.cfg.TRAIN.END_EPOCH}", total, rows[-1],
                                    self.meters, self.times, rate, self.speed.step_time))
        return stop

    def _monitor(self, epoch: int) -> None:
        if self.monitor is None or not self.info.is_main:
            return
        mask = torch.from_numpy(self.train_set.unlabeled_mask > 0)
        stats = self.monitor.measure(self.method, self.monitor_images.to(self.device),
                                     mask.to(self.device))
        for k, v in stats.items():
            self.scalars.add(f"monitor/{k}", v, epoch + 1)
        self.log.info("collapse monitor: %s",
                      ", ".join(f"{k}={v:.4f}" for k, v in sorted(stats.items())))
        for w in self.monitor.update(stats):
            self.log.warning("collapse monitor: %s", w)

    def _validate_or_explain(self, epoch: int) -> bool:
        """``validate``; a user error there (e.g. an unreadable val image) says that the epoch
        is saved and how to continue."""
        try:
            return self.validate(epoch)
        except (OSError, ValueError, KeyError) as exc:
            from .cli import error_line
            raise ValidationFailed(
                f"validation after epoch {epoch + 1} failed: {error_line(exc)}. The trained epoch "
                f"is saved in {os.path.join(self.out_dir, 'checkpoint.pth.tar')}; fix the cause "
                f"and continue with TRAIN.RESUME True") from exc

    def validate(self, epoch: int) -> bool:
        """Evaluate every net; returns whether the selection metric improved."""
        provenance = (f"train.py: epoch {epoch + 1}/{self.cfg.TRAIN.END_EPOCH} of run "
                      f"{self.out_dir}; {settings_line(self.cfg)}")
        results, pred = run_validation(self.cfg, self.model, self.val_set, self.val_loader,
                                       self.info, self.out_dir, self.arch_name, self.progress,
                                       debug=self.debug, provenance=provenance)
        if not self.info.is_main:
            return False
        self.last_results, self.last_pred = results, pred
        for net, (metrics, _) in results.items():
            for k, v in metrics.items():
                self.scalars.add(f"val_{net}/{scalar_tag(k)}", v, epoch + 1)
        self._log_grid(pred, epoch + 1)
        if pred.get("loss") is not None:
            self.scalars.add("val/loss", pred["loss"], epoch + 1)
        self.scalars.flush()
        key = self.cfg.TEST.BEST_METRIC if self.cfg.TEST.BEST_METRIC in results else "net1"
        perf = float(results[key][1])
        is_best = perf > self.best_perf
        if is_best:
            self.best_epoch = epoch + 1
        self.best_perf = max(self.best_perf, perf)
        self.log.info("epoch %d/%d: %s metric %.4f (best %.4f, epoch %s)", epoch + 1,
                      self.cfg.TRAIN.END_EPOCH, key, perf, self.best_perf, self.best_epoch)
        return is_best

    def _log_grid(self, pred: Dict[str, Any], epoch: int) -> None:
        """The prediction grid of this validation as a TensorBoard image (net 1)."""
        if self.scalars.writer is None or not pred:
            return
        from .visualize import prediction_grid
        try:
            self.scalars.add_image("val_net1/predictions", prediction_grid(
                self.val_set, pred, epoch=epoch), epoch)
        except Exception as exc:  # a picture must never fail a run
            self.log.warning("could not log the prediction grid: %s", exc)

    def _summary(self) -> None:
        """The end-of-run lines: budget, wall time, best and final metrics, where outputs are."""
        cfg = self.cfg
        sec = time.time() - self.t_start
        wall = f"{sec:.0f} s" if sec < 120 else f"{sec / 60:.1f} min"
        final = ", ".join(f"{net} {m:.4f}" for net, (_, m) in self.last_results.items())
        key = cfg.TEST.BEST_METRIC if cfg.TEST.BEST_METRIC in self.last_results else "net1"
        files = [f for f in (FINAL, "model_best.pth.tar", "checkpoint.pth.tar", "results.md",
                             "predictions.png", "training_curves.png", "history.json")
                 if os.path.exists(os.path.join(self.out_dir, f))]
        self.log.info("done: %d epochs (%d steps), %s in this process; final %s; best %s "
                      "%.4f at epoch %s", cfg.TRAIN.END_EPOCH, self.global_step, wall,
                      final or "(no validation)", key, self.best_perf, self.best_epoch)
        self.log.info("outputs in %s: %s%s", self.out_dir, ", ".join(files),
                      f"; TensorBoard: {self.scalars.tb_dir}" if self.scalars.tb_dir else "")

    def _visualise(self) -> None:
        from .visualize import save_curves, save_prediction_grid
        try:
            save_curves(self.scalars.history, os.path.join(self.out_dir, "training_curves.png"))
            if getattr(self, "last_pred", None):
                save_prediction_grid(self.val_set, self.last_pred,
                                     os.path.join(self.out_dir, "predictions.png"),
                                     epoch=self.cfg.TRAIN.END_EPOCH)
        except Exception as exc:  # figures are a convenience; never fail a finished run
            self.log.warning("could not draw figures: %s", exc)
