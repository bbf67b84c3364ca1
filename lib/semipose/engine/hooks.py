"""Side work of a training run, called by the loop at fixed points (engine/trainer.py).

The loop only trains; everything else a run does is a ``Hook``:

    setup(t)                           when the run is built (Trainer.setup), before a resume
    before_run(t)                      at the start of fit, before the first epoch
    after_step(t, i, batch, out)       after the optimizer step of batch ``i`` (out: StepOutput)
    end_of_epoch(t, epoch)             after a completed epoch (0-based ``epoch``), in list order
    on_stop(t, epoch)                  a stop signal ended the run mid-epoch
    end_of_run(t)                      after the last epoch
    close(t)                           always, last (also after an error)

``t`` is the Trainer: ``t.cfg``, ``t.info``, ``t.run`` (data, method, optimizer... see build.py),
``t.state`` (epoch, global step, best metric...), ``t.scalars`` (TensorBoard + history),
``t.log`` and ``t.run_dir``. A new hook is one class in one file; give it to
``Trainer(..., hooks=[...])`` or register it with ``@register_hook("name")`` and list the name in
TRAIN.HOOKS. The default hooks, in order, are ``default_hooks()``.
"""
from __future__ import annotations

import os
import signal
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional

import torch

from ..config import model_name
from ..errors import UserError
from ..methods import CollapseMonitor
from ..models.weights import nets_state_dict
from ..transforms.codec import Codec
from ..types import StepOutput
from .checkpoint import BEST, CHECKPOINT, FINAL, atomic_torch_save
from .data_setup import monitor_crops, skipped_images
from .debug_images import DebugImages
from .log import scalar_tag
from .state import nonfinite_tensors, save_state
from .validate import run_validation, settings_line

if TYPE_CHECKING:
    from .trainer import Trainer

# Signals that checkpoint and stop a run: Ctrl-C, schedulers/torchrun, and a closed terminal or
# dropped ssh session (SIGHUP, where the platform has it).
STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP")
                     if hasattr(signal, n))


class ValidationFailed(UserError, ValueError):
    """Validation raised a user error after an epoch that is already saved (a user error too:
    one 'error:' line saying how to continue)."""


class Hook:
    """Base class: every call point does nothing."""

    def setup(self, t: "Trainer") -> None:
        pass

    def before_run(self, t: "Trainer") -> None:
        pass

    def after_step(self, t: "Trainer", i: int, batch: Any, out: StepOutput) -> None:
        pass

    def end_of_epoch(self, t: "Trainer", epoch: int) -> None:
        pass

    def on_stop(self, t: "Trainer", epoch: int) -> None:
        pass

    def end_of_run(self, t: "Trainer") -> None:
        pass

    def close(self, t: "Trainer") -> None:
        pass


HOOKS: Dict[str, Callable[[], Hook]] = {}


def register_hook(name: str) -> Callable[[type], type]:
    """Class decorator: make ``name`` usable in TRAIN.HOOKS (the class is built without args)."""
    def deco(cls: type) -> type:
        if name in HOOKS and HOOKS[name] is not cls:
            raise ValueError(f"hook {name!r} is already registered to {HOOKS[name].__name__}")
        HOOKS[name] = cls
        return cls
    return deco


class StopSignals(Hook):
    """SIGINT / SIGTERM / SIGHUP set a flag that the loop reads; a second Ctrl-C stops at once."""

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self.old: Dict[int, Any] = {}

    def handle(self, signum: int, _frame: Any) -> None:
        # Only a flag: logging here could re-enter a stream write the main thread is inside.
        if self.signum is not None:  # a second Ctrl-C: stop now (checkpoints are atomic)
            raise KeyboardInterrupt
        self.signum = signum

    def before_run(self, t: "Trainer") -> None:
        self.old = {s: signal.signal(s, self.handle) for s in STOP_SIGNALS}

    def close(self, t: "Trainer") -> None:
        for s, h in self.old.items():
            signal.signal(s, h)
        self.old = {}


class EpochScalars(Hook):
    """Per-epoch scalars at step = epochs done: the learning rate and every running average;
    a warning when unreadable images were skipped (DATASET.SKIP_BAD_IMAGES)."""

    def end_of_epoch(self, t: "Trainer", epoch: int) -> None:
        if t.info.is_main:
            t.scalars.add("train/lr", t.run.optimizer.param_groups[0]["lr"], epoch + 1)
            for k, m in t.state.meters.items():
                t.scalars.add(f"epoch/{k}", m.avg, epoch + 1)
        skipped = skipped_images(t.run.train_set)
        if skipped:
            t.log.warning("skipped %d unreadable images so far (DATASET.SKIP_BAD_IMAGES)", skipped)


class CollapseWatch(Hook):
    """Teacher-confidence statistics on a fixed unlabeled sample after every epoch (MONITOR.*),
    with a warning when they point to a collapse."""

    def __init__(self) -> None:
        self.monitor: Optional[CollapseMonitor] = None
        self.images: Optional[torch.Tensor] = None

    def setup(self, t: "Trainer") -> None:
        train_set = t.run.train_set
        if t.cfg.MONITOR.ENABLED and hasattr(train_set, "unlabeled"):
            self.monitor = CollapseMonitor.from_cfg(t.cfg)
            self.images = monitor_crops(train_set.unlabeled, t.cfg.MONITOR.NUM_SAMPLES,
                                        t.cfg.SEED, t.run.stage)

    def end_of_epoch(self, t: "Trainer", epoch: int) -> None:
        if self.monitor is None or not t.info.is_main:
            return
        mask = torch.from_numpy(t.run.train_set.unlabeled_mask > 0)
        stats = self.monitor.measure(t.run.method, self.images.to(t.info.device),
                                     mask.to(t.info.device))
        for k, v in stats.items():
            t.scalars.add(f"monitor/{k}", v, epoch + 1)
        t.log.info("collapse monitor: %s",
                   ", ".join(f"{k}={v:.4f}" for k, v in sorted(stats.items())))
        for w in self.monitor.update(stats):
            t.log.warning("collapse monitor: %s", w)


class Checkpoints(Hook):
    """checkpoint.pth.tar after every epoch and at a stop; final_state.pth.tar at the end.

    It saves before validation (the next hook), so a failing validation loses no training."""

    def end_of_epoch(self, t: "Trainer", epoch: int) -> None:
        save_state(t, epoch + 1, 0, is_best=False)

    def on_stop(self, t: "Trainer", epoch: int) -> None:
        save_state(t, epoch, t.state.iteration, is_best=False)
        t.log.warning("stopped at epoch %d/%d after iteration %d; resume with TRAIN.RESUME True",
                      epoch + 1, t.cfg.TRAIN.END_EPOCH, t.state.iteration)

    def end_of_run(self, t: "Trainer") -> None:
        if not t.info.is_main:
            return
        final = nets_state_dict(t.run.method.nets)
        if nonfinite_tensors(final):
            t.log.warning("%s holds NaN/inf weights (%s, ...): the run diverged", FINAL,
                          nonfinite_tensors(final)[0])
        atomic_torch_save(final, os.path.join(t.run_dir, FINAL))


class Validation(Hook):
    """Every TEST.INTERVAL epochs and after the last: score every net, log the AP tables and
    scalars, keep the best checkpoint (TEST.BEST_METRIC), and draw the prediction grid."""

    def __init__(self) -> None:
        self.results: Dict[str, Any] = {}  # the last validation's rows (fit() returns them)
        self.pred: Dict[str, Any] = {}  # and its predictions (for the final pictures)
        self.debug: Optional[DebugImages] = None
        self.codec: Optional[Codec] = None

    def setup(self, t: "Trainer") -> None:
        self.debug = DebugImages(t.cfg, t.run_dir)
        self.codec = Codec.from_cfg(t.cfg)  # decoding and flip-test settings, built once

    def end_of_epoch(self, t: "Trainer", epoch: int) -> None:
        last = epoch + 1 == t.cfg.TRAIN.END_EPOCH
        if (epoch + 1) % t.cfg.TEST.INTERVAL != 0 and not last:
            return
        try:
            is_best = self.validate(t, epoch)
        except (UserError, OSError) as exc:  # e.g. an unreadable val image: say how to go on
            from .cli import error_line
            raise ValidationFailed(
                f"validation after epoch {epoch + 1} failed: {error_line(exc)}. The trained "
                f"epoch is saved in {os.path.join(t.run_dir, CHECKPOINT)}; fix the cause and "
                "continue with TRAIN.RESUME True") from exc
        save_state(t, epoch + 1, 0, is_best)  # with the new best metric

    def validate(self, t: "Trainer", epoch: int) -> bool:
        """Evaluate every net; returns whether the selection metric improved."""
        cfg, state = t.cfg, t.state
        provenance = (f"train.py: epoch {epoch + 1}/{cfg.TRAIN.END_EPOCH} of run {t.run_dir}; "
                      f"{settings_line(cfg, self.codec)}")
        results, pred = run_validation(cfg, t.run.model, t.run.val_set, t.run.val_loader,
                                       t.info, t.run_dir, model_name(cfg)[1], t.progress,
                                       debug=self.debug, provenance=provenance, codec=self.codec)
        if not t.info.is_main:
            return False
        self.results, self.pred = results, pred
        for net, (metrics, _) in results.items():
            for k, v in metrics.items():
                t.scalars.add(f"val_{net}/{scalar_tag(k)}", v, epoch + 1)
        self._log_grid(t, pred, epoch + 1)
        if pred.get("loss") is not None:
            t.scalars.add("val/loss", pred["loss"], epoch + 1)
        t.scalars.flush()
        key = cfg.TEST.BEST_METRIC if cfg.TEST.BEST_METRIC in results else "net1"
        perf = float(results[key][1])
        is_best = perf > state.best_perf
        if is_best:
            state.best_epoch = epoch + 1
        state.best_perf = max(state.best_perf, perf)
        t.log.info("epoch %d/%d: %s metric %.4f (best %.4f, epoch %s)", epoch + 1,
                   cfg.TRAIN.END_EPOCH, key, perf, state.best_perf, state.best_epoch)
        return is_best

    def _log_grid(self, t: "Trainer", pred: Mapping[str, Any], epoch: int) -> None:
        """The prediction grid of this validation as a TensorBoard image (net 1)."""
        if t.scalars.writer is None or not pred:
            return
        from .visualize import prediction_grid
        try:
            t.scalars.add_image("val_net1/predictions",
                                prediction_grid(t.run.val_set, pred, epoch=epoch), epoch)
        except Exception as exc:  # a picture must never fail a run
            t.log.warning("could not log the prediction grid: %s", exc)


class DebugPictures(Hook):
    """The DEBUG.* pictures of training steps (every PRINT_FREQ iterations; off by default)."""

    def __init__(self) -> None:
        self.debug: Optional[DebugImages] = None

    def setup(self, t: "Trainer") -> None:
        self.debug = DebugImages(t.cfg, t.run_dir)

    def after_step(self, t: "Trainer", i: int, batch: Any, out: StepOutput) -> None:
        if t.info.is_main and self.debug.due(i):
            self.debug.train_step(i, batch, out)


class Figures(Hook):
    """training_curves.png and predictions.png at the end of a run (rank 0)."""

    def end_of_run(self, t: "Trainer") -> None:
        if not t.info.is_main:
            return
        from .visualize import save_curves, save_prediction_grid
        try:
            save_curves(t.scalars.history, os.path.join(t.run_dir, "training_curves.png"))
            pred = t.hook(Validation).pred if t.hook(Validation) else None
            if pred:
                save_prediction_grid(t.run.val_set, pred, os.path.join(t.run_dir,
                                                                       "predictions.png"),
                                     epoch=t.cfg.TRAIN.END_EPOCH)
        except Exception as exc:  # figures are a convenience; never fail a finished run
            t.log.warning("could not draw figures: %s", exc)


class Summary(Hook):
    """The closing lines: budget, wall time, best and final metrics, where the outputs are."""

    def end_of_run(self, t: "Trainer") -> None:
        if not t.info.is_main:
            return
        cfg, state = t.cfg, t.state
        sec = time.time() - t.clock.t_start
        wall = f"{sec:.0f} s" if sec < 120 else f"{sec / 60:.1f} min"
        val = t.hook(Validation)
        results = val.results if val else {}
        final = ", ".join(f"{net} {m:.4f}" for net, (_, m) in results.items())
        key = cfg.TEST.BEST_METRIC if cfg.TEST.BEST_METRIC in results else "net1"
        files = [f for f in (FINAL, BEST, CHECKPOINT, "results.md", "predictions.png",
                             "training_curves.png", "history.json")
                 if os.path.exists(os.path.join(t.run_dir, f))]
        t.log.info("done: %d epochs (%d steps), %s in this process; final %s; best %s "
                   "%.4f at epoch %s", cfg.TRAIN.END_EPOCH, state.global_step, wall,
                   final or "(no validation)", key, state.best_perf, state.best_epoch)
        t.log.info("outputs in %s: %s%s", t.run_dir, ", ".join(files),
                   f"; TensorBoard: {t.scalars.tb_dir}" if t.scalars.tb_dir else "")


def default_hooks(cfg: Any) -> List[Hook]:
    """The hooks of every run, in the order they are called at each point (the training-step
    pictures only with DEBUG.DEBUG, so that a plain step calls no hook)."""
    debug = [DebugPictures()] if cfg.DEBUG.DEBUG else []
    return [StopSignals(), EpochScalars(), CollapseWatch(), Checkpoints(), Validation(),
            *debug, Figures(), Summary()]


def hooks_from_cfg(names: Any) -> List[Hook]:
    """The registered hooks named in TRAIN.HOOKS, built in order."""
    out = []
    for name in names:
        if name not in HOOKS:
            raise UserError(f"TRAIN.HOOKS: no hook named {name!r}; registered: {sorted(HOOKS)} "
                            "(a hook registers itself with @register_hook when its module is "
                            "imported)")
        out.append(HOOKS[name]())
    return out
