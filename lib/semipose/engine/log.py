"""Logging: a file + console logger, running averages, per-step values kept on the device between
host reads, TensorBoard scalars, a scalar history."""
from __future__ import annotations

import json
import logging
import math
import re
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import torch

from ..errors import DataError
from ..utils.io import atomic_write_text, read_json


FILE_ONLY = {"file_only": True}  # logger.info(..., extra=FILE_ONLY): the log file, not the console


class ConsoleHandler(logging.StreamHandler):
    """Console lines printed through tqdm, so they appear above a running progress bar instead of
    breaking it; records marked FILE_ONLY (e.g. pycocotools' chatter) stay in the log file."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, "file_only", False) and super().filter(record)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm
            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # never let logging take a run down
            self.handleError(record)


def setup_logger(output_dir: str, cfg_name: str, phase: str, is_main: bool = True) -> logging.Logger:
    """Logger 'semipose' writing to console and ``<output_dir>/<cfg>_<time>_<phase>.log`` (rank 0)."""
    logger = logging.getLogger("semipose")
    logger.setLevel(logging.INFO if is_main else logging.WARNING)
    logger.propagate = False
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()
    fmt = logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S")
    console = ConsoleHandler()
    console.setFormatter(fmt)
    logger.addHandler(console)
    if is_main:
        os.makedirs(output_dir, exist_ok=True)
        stamp = time.strftime("%Y-%m-%d-%H-%M")
        fh = logging.FileHandler(os.path.join(output_dir, f"{cfg_name}_{stamp}_{phase}.log"))
        fh.setFormatter(fmt)
        logger.addHandler(fh)
    return logger


class AverageMeter:
    """Running value, sum, count and average."""

    def __init__(self) -> None:
        self.val = self.sum = self.avg = 0.0
        self.count = 0

    def update(self, val: float, n: int = 1) -> None:
        self.val = float(val)
        self.sum += float(val) * n
        self.count += n
        self.avg = self.sum / max(self.count, 1)


@dataclass
class StepRow:
    """One training step's values, as read on the host."""

    iteration: int  # 0-based, within the epoch
    global_step: int  # steps done before this one
    batch: int  # labeled images: the weight of this step in the running averages
    terms: Dict[str, float]  # the method's loss terms
    accuracy: float  # training accuracy of net 1 on the labeled images
    counted: int  # joints that accuracy counted: its weight
    skipped: bool  # the optimizer step was skipped (non-finite loss or gradients)


class PendingSteps:
    """Per-step loss terms and accuracy kept on the device until the trainer reads them (every
    PRINT_FREQ steps), so that a step never waits for the device to finish."""

    def __init__(self) -> None:
        self.rows: list = []

    def add(self, iteration: int, global_step: int, batch: int, keys: Sequence[str],
            terms: torch.Tensor, accuracy: torch.Tensor, counted: torch.Tensor,
            skipped: Optional[torch.Tensor]) -> None:
        """terms [K] (one per key), accuracy / counted / skipped: 0-dim, any device."""
        f64 = dict(device=terms.device, dtype=torch.float64)
        skip = torch.zeros(1, **f64) if skipped is None else skipped.to(**f64).view(1)
        packed = torch.cat([terms.to(torch.float64), accuracy.to(**f64).view(1),
                            counted.to(**f64).view(1), skip])
        self.rows.append((iteration, global_step, batch, tuple(keys), packed))

    def read(self) -> List[StepRow]:
        """The rows added since the last read, in order (one transfer to the host)."""
        if not self.rows:
            return []
        flat = torch.cat([packed for *_, packed in self.rows]).tolist()
        out, at = [], 0
        for iteration, global_step, batch, keys, packed in self.rows:
            v = flat[at:at + len(packed)]
            at += len(packed)
            out.append(StepRow(iteration, global_step, batch, dict(zip(keys, v)), v[-3],
                               int(v[-2]), bool(v[-1])))
        self.rows = []
        return out


def record_step(row: StepRow, meters: Dict[str, AverageMeter],
                scalars: Optional["ScalarLog"]) -> None:
    """Fold one step read from the device into the running averages and, given ``scalars``
    (the main rank), into its per-step train/* scalars at the step's own global step."""
    for k, v in row.terms.items():
        meters.setdefault(k, AverageMeter()).update(v, row.batch)
    meters.setdefault("accuracy", AverageMeter()).update(row.accuracy, row.counted)
    if scalars is not None:
        for k, v in row.terms.items():
            scalars.add(f"train/{k}", v, row.global_step + 1)
        scalars.add("train/accuracy", row.accuracy, row.global_step + 1)


class Throughput:
    """Samples per second and seconds per step over a window of steps, on the host's wall clock.
    Take ``rate`` only right after a device sync (the trainer's loss read): before it, the host
    may have queued steps that have not run yet, and one step's host time says nothing about the
    device's."""

    def __init__(self, now: Optional[float] = None):
        self.start = time.time() if now is None else now
        self.count = self.steps = 0
        self.step_time = 0.0  # seconds per step of the last closed window

    def add(self, samples: int, steps: int = 1) -> None:
        self.count += samples
        self.steps += steps

    def rate(self, now: Optional[float] = None) -> float:
        """The window's samples per second (its seconds per step go to ``step_time``); a new
        window starts."""
        now = time.time() if now is None else now
        elapsed = max(now - self.start, 1e-9)
        rate = self.count / elapsed
        self.step_time = elapsed / self.steps if self.steps else 0.0
        self.start, self.count, self.steps = now, 0, 0
        return rate


def step_line(epoch: str, total: int, row: StepRow, meters: Dict[str, AverageMeter],
              times: Dict[str, AverageMeter], speed: float, step_time: float) -> str:
    """The per-step training log line (the reference's fields, then every other loss term);
    ``epoch`` is "current/last", 1-based; ``speed`` and ``step_time``: samples per second of
    all ranks and seconds per step over the steps since the previous line (``Throughput``).
    ``Time`` shows that window's step time, then the epoch's mean host time per step."""
    bt, dt = times["batch"], times["data"]
    terms = "\t".join(f"{k}: {m.val:.6f}" for k, m in meters.items()
                      if k not in ("loss", "accuracy"))
    return (f"Epoch: [{epoch}][{row.iteration + 1}/{total}]\tTime {step_time:.3f}s ({bt.avg:.3f}s)"
            f"\tSpeed {speed:.1f} samples/s\tData {dt.val:.3f}s ({dt.avg:.3f}s)"
            f"\tLoss {meters['loss'].val:.5f} ({meters['loss'].avg:.5f})"
            f"\tAccuracy {meters['accuracy'].val:.3f} ({meters['accuracy'].avg:.3f})\t{terms}")


def scalar_tag(metric: str) -> str:
    """A metric name as a readable TensorBoard tag: 'Ap .5' -> 'AP.5', 'AP (M)' -> 'AP_M',
    'Mean@0.1' -> 'Mean@0.1' (TensorBoard keeps letters, digits, '.', '_', '-', '/', '@')."""
    tag = metric.replace("Ap ", "AP ").replace(" (", "_").replace(")", "").replace(" ", "")
    return re.sub(r"[^A-Za-z0-9_.\-/@]", "_", tag)


class ScalarLog:
    """TensorBoard scalars (rank 0 only) plus an in-memory history saved as JSON for plots."""

    def __init__(self, tb_dir: Optional[str], history_path: Optional[str], enabled: bool = True):
        self.enabled = enabled
        self.history: Dict[str, List[List[float]]] = defaultdict(list)
        self.history_path = history_path
        self.writer = None
        self.tb_dir = tb_dir if enabled else None
        if enabled and tb_dir:
            from tensorboardX import SummaryWriter
            os.makedirs(tb_dir, exist_ok=True)
            self.writer = SummaryWriter(log_dir=tb_dir)

    @classmethod
    def for_run(cls, cfg, cfg_name: str, run_dir: str, is_main: bool) -> "ScalarLog":
        """A run's scalars: TensorBoard events in a folder of the run's own under LOG_DIR (runs
        overlay in the UI) and the history in <run folder>/history.json."""
        from ..config import model_name
        tb = os.path.join(cfg.LOG_DIR or run_dir, cfg.DATASET.TRAIN_DATASET, model_name(cfg)[0],
                          cfg_name, os.path.basename(run_dir)) if is_main else None
        return cls(tb, os.path.join(run_dir, "history.json"), is_main)

    def add(self, tag: str, value: float, step: int) -> None:
        if not self.enabled:
            return
        self.history[tag].append([step, float(value)])
        # TensorBoard cannot plot NaN (tensorboardX prints a warning per value); history keeps it.
        if self.writer is not None and math.isfinite(float(value)):
            self.writer.add_scalar(tag, float(value), step)

    def add_image(self, tag: str, image_bgr, step: int) -> None:
        """A BGR uint8 image [H, W, 3] to TensorBoard (not kept in the history)."""
        if self.enabled and self.writer is not None:
            self.writer.add_image(tag, image_bgr[:, :, ::-1].copy(), step, dataformats="HWC")

    def load(self) -> None:
        """Continue a resumed run's history."""
        if self.history_path and os.path.exists(self.history_path):
            history = read_json(self.history_path, "scalar history of the resumed run")
            if not isinstance(history, dict):
                raise DataError(f"{self.history_path} is not a scalar history (a json object); "
                                f"move it away to resume without the earlier curves")
            for k, v in history.items():
                self.history[k] = v

    def flush(self) -> None:
        if not self.enabled:
            return
        if self.writer is not None:
            self.writer.flush()
        if self.history_path:
            atomic_write_text(json.dumps(self.history), self.history_path)

    def close(self) -> None:
        self.flush()
        if self.writer is not None:
            self.writer.close()


@dataclass
class Clock:
    """Wall-clock bookkeeping of the loop: the run's start and steps (for the whole-run ETA),
    this epoch's batch / data times and the log line's throughput window."""

    t_start: float = field(default_factory=time.time)
    steps: int = 0
    batch: AverageMeter = field(default_factory=AverageMeter)
    data: AverageMeter = field(default_factory=AverageMeter)
    speed: Throughput = field(default_factory=Throughput)

    def new_epoch(self) -> None:
        self.batch, self.data, self.speed = AverageMeter(), AverageMeter(), Throughput()

    def eta(self, epochs_left: int, total: int, done: int) -> str:
        """Time left for the run at this process's mean step time (validation excluded)."""
        if self.steps == 0:
            return "?"
        sec = int((epochs_left * total + (total - done)) * (time.time() - self.t_start)
                  / self.steps)
        return f"{sec // 3600}:{sec % 3600 // 60:02d}:{sec % 60:02d}"
