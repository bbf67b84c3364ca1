"""Per-step wall time of the trainer loop with a host read every step (before) and with the values
kept on the device between reads every PRINT_FREQ steps (now); tiny PoseDual setup, CPU or CUDA.

    python bench/bench_trainer_overhead.py                  # writes bench/results/trainer_overhead_cpu.md
    python bench/bench_trainer_overhead.py --device cuda    # writes .../trainer_overhead_cuda.md
    python bench/bench_trainer_overhead.py --epochs 3 --out -   # shorter, print only

The setup is the tests' tiny run (tests/conftest.py: 64x64 crops, 16x16 heatmaps, a narrow deconv
head, batches of 4, no loader workers) of experiments/synthetic/posedual.yaml on a small generated
synthetic set. The batches of one epoch are collated once and replayed, so the loop times the
trainer's step (PoseDual forward, backward, Adam, bookkeeping), not image decoding.

Three loops run interleaved, epoch by epoch, on the same trainer:
  * before: the step loop as it was (loss terms read with ``float`` every step, the training
    accuracy in numpy on host copies of the heatmaps, the non-finite and stop checks every step),
    kept below as the baseline;
  * now, PRINT_FREQ 20: ``Trainer.train_one_epoch`` (values read on the host every 20 steps);
  * now, PRINT_FREQ 1: the same loop reading every step.
The bookkeeping alone (everything but forward, backward and the optimizer) is also timed on the
same tensors, where the loop times are too noisy to show it.
On a CPU a host read costs no wait (every op has finished when it returns): the gain of the new
loop is on GPUs, where a read stalls the queue of kernels; this run measures the overhead the
on-device bookkeeping adds or saves on CPU.
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import tempfile
import time

import torch

from semipose.config import load_cfg
from semipose.engine.device import move_batch
from semipose.engine.log import AverageMeter
from semipose.engine.optim import adam_impl
from semipose.engine.trainer import Trainer
from semipose.evaluation.accuracy import accuracy, accuracy_tensor
from semipose.utils.dist import DistInfo
from semipose.utils.io import print_and_write

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POSEDUAL = os.path.join(ROOT, "experiments", "synthetic", "posedual.yaml")
sys.path.insert(0, os.path.join(ROOT, "tests"))
from conftest import TINY  # noqa: E402  (the tests' tiny-run overrides)


class Replay:
    """The collated batches of one epoch, replayed as a loader (no sampler, no dataset draws)."""

    sampler = generator = dataset = None

    def __init__(self, batches: list, steps: int):
        self.batches = [batches[i % len(batches)] for i in range(steps)]

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def epoch_before(trainer: Trainer, epoch: int) -> None:
    """The step loop before this change (a host read per loss term, numpy accuracy on host
    copies, the non-finite check and the stop check every step); progress bar left out."""
    cfg, run, state = trainer.cfg, trainer.run, trainer.state
    run.model.train()
    meters = state.meters = {}
    acc_m = meters.setdefault("accuracy", AverageMeter())
    bt, dt = AverageMeter(), AverageMeter()
    total = len(run.train_loader)
    end = time.time()
    for i, batch in enumerate(run.train_loader):
        dt.update(time.time() - end)
        batch = move_batch(batch, run.device, cfg.TRAIN.CHANNELS_LAST)
        run.method.set_progress(epoch + i / total)
        with torch.autocast(run.device.type, enabled=False):
            out = run.model(batch)
        sup_heatmaps = out.sup_heatmaps
        values = {k: float(v) for k, v in out.logged().items()}
        bad = [k for k, v in values.items() if not math.isfinite(v)]
        if bad:
            raise RuntimeError(f"non-finite loss: {bad}")
        run.optimizer.zero_grad(set_to_none=True)
        run.scaler.scale(out.loss).backward()
        run.scaler.step(run.optimizer)
        run.scaler.update()
        run.method.after_step()
        labeled = batch["labeled"] if "labeled" in batch else batch
        n = labeled["image"].shape[0]
        for k, v in values.items():
            meters.setdefault(k, AverageMeter()).update(v, n)
        sup = sup_heatmaps.detach().float().cpu().numpy()
        _, avg_acc, cnt, _ = accuracy(sup, labeled["target"].float().cpu().numpy())
        acc_m.update(avg_acc, cnt)
        bt.update(time.time() - end)
        state.global_step += 1
        for k, v in values.items():
            trainer.scalars.add(f"train/{k}", v, state.global_step)
        trainer.scalars.add("train/accuracy", avg_acc, state.global_step)
        if (i + 1) % cfg.PRINT_FREQ == 0 or i + 1 == total:
            trainer.log.info("Epoch: [%d][%d/%d]\tLoss %.5f (%.5f)\tAccuracy %.3f (%.3f)",
                             epoch + 1, i + 1, total, meters["loss"].val, meters["loss"].avg,
                             acc_m.val, acc_m.avg)
        trainer.clock.eta(cfg.TRAIN.END_EPOCH - epoch - 1, total, i + 1)
        end = time.time()
        if i + 1 < total and trainer._agree(True, False)[0]:  # the stop check of every rank
            return


def bookkeeping_times(trainer: Trainer, batch: dict, repeats: int) -> dict:
    """Seconds per step of the bookkeeping alone, before and now, on one batch's outputs."""
    run = trainer.run
    batch = move_batch(batch, run.device)
    out = run.model(batch)
    losses = {"loss": out.loss, **out.terms}  # the step's logged values, as the loop sees them
    sup = out.sup_heatmaps.detach()
    target = batch["labeled"]["target"]
    n = target.shape[0]
    keys = list(losses)

    sync = torch.cuda.synchronize if run.device.type == "cuda" else (lambda: None)

    def before() -> None:
        values = {k: float(v.detach()) for k, v in losses.items()}
        any(not math.isfinite(v) for v in values.values())
        accuracy(sup.float().cpu().numpy(), target.float().cpu().numpy())

    def now() -> None:
        terms = torch.stack([v.detach() for v in losses.values()])
        run.guard.arm(losses["loss"].detach(), terms)
        _, acc, counted, _ = accuracy_tensor(sup.float(), target.float())
        trainer.pending.add(0, 0, n, keys, terms, acc, counted, run.guard.flag)
        if len(trainer.pending.rows) == 20:  # one read every PRINT_FREQ 20 steps
            trainer.pending.read()

    out = {}
    for name, fn in (("before", before), ("now", now)):
        for _ in range(20):
            fn()
        sync()
        t0 = time.perf_counter()
        for _ in range(repeats):
            fn()
        sync()
        out[name] = (time.perf_counter() - t0) / repeats
    trainer.pending.read()
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20, help="steps per timed epoch")
    p.add_argument("--epochs", type=int, default=10, help="timed epochs per loop (interleaved)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (1: steadier on a machine shared with other jobs)")
    p.add_argument("--device", default="cpu", help="'cpu' or 'cuda' (the same tiny run)")
    p.add_argument("--out", default="",
                   help="report path (default bench/results/trainer_overhead_<device>.md; '-': "
                        "print only)")
    a = p.parse_args(argv)
    a.out = a.out or os.path.join(ROOT, "bench", "results",
                                  f"trainer_overhead_{a.device.split(':')[0]}.md")
    torch.set_num_threads(a.threads)
    from semipose.data.synthetic import generate

    tmp = tempfile.mkdtemp(prefix="bench_trainer_")
    root = os.path.join(tmp, "data")
    generate(root, seed=3, num_train=6, num_val=3, num_unlabeled=0, show_progress=False)
    det = os.path.join(root, "coco", "person_detection_results",
                       "synthetic_val2017_detections.json")
    opts = TINY + ["DATASET.ROOT", root, "OUTPUT_DIR", os.path.join(tmp, "out"),
                   "LOG_DIR", os.path.join(tmp, "tb"), "TEST.COCO_BBOX_FILE", det,
                   "MONITOR.ENABLED", "False", "DEVICE", a.device, "PRINT_FREQ", "20"]
    trainer = Trainer(load_cfg(POSEDUAL, opts), POSEDUAL, DistInfo(), progress=False)
    trainer.setup()  # run folder, data, nets and optimizer (fit() is not used here)
    trainer.log.setLevel("WARNING")  # no log lines in the timings' output
    batches = list(trainer.run.train_loader)
    trainer.run.train_loader = Replay(batches, a.steps)
    base_cfg, every_step = trainer.cfg, load_cfg(POSEDUAL, opts[:-2] + ["PRINT_FREQ", "1"])

    def before(epoch: int) -> None:
        trainer.cfg = base_cfg
        epoch_before(trainer, epoch)

    def now(cfg):
        def run(epoch: int) -> None:
            trainer.cfg, trainer.state.iteration = cfg, 0
            trainer.train_one_epoch(epoch)
        return run

    loops = {"before (host read every step)": before, "now, PRINT_FREQ 20": now(base_cfg),
             "now, PRINT_FREQ 1": now(every_step)}
    times = {k: [] for k in loops}
    sync = torch.cuda.synchronize if trainer.run.device.type == "cuda" else (lambda: None)
    for name, run in loops.items():  # warm-up: one epoch each, untimed
        run(0)
    for e in range(a.epochs):
        for name, run in loops.items():
            sync()
            t0 = time.perf_counter()
            run(e + 1)
            sync()
            times[name].append((time.perf_counter() - t0) / a.steps)
    book = bookkeeping_times(trainer, batches[0], repeats=200)

    med = {k: statistics.median(v) for k, v in times.items()}
    base = med["before (host read every step)"]
    lines = [
        "# Trainer loop overhead: host read every step vs. reads every PRINT_FREQ steps "
        f"({a.device})", "",
        f"`python bench/bench_trainer_overhead.py --steps {a.steps} --epochs {a.epochs} "
        f"--threads {a.threads} --device {a.device}`, "
        f"{time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()} "
        f"({os.cpu_count()} cores, {torch.get_num_threads()} threads), Python "
        f"{platform.python_version()}, torch {torch.__version__}; load average "
        f"{os.getloadavg()[0]:.1f} at the end (the machine was shared with another job).", "",
        "Tiny PoseDual run of the tests (64x64 crops, batch 4, ResNet-18 quarter width, 24 "
        f"joints, fp32, Adam '{adam_impl(base_cfg.TRAIN.ADAM_IMPL, trainer.run.device)}'); {a.steps} replayed steps per epoch, {a.epochs} timed epochs per loop, interleaved.", "",
        "| loop | median per step (ms) | ratio to before | per-epoch means (ms) |",
        "|---|---|---|---|"]
    lines += [f"| {k} | {med[k] * 1e3:.2f} | {med[k] / base:.3f} | "
              f"{', '.join(f'{x * 1e3:.1f}' for x in v)} |" for k, v in times.items()]
    lines += ["", "Bookkeeping alone per step (loss terms, non-finite flag, training accuracy, "
              "meters/rows; 200 repeats on one batch's outputs): "
              f"before {book['before'] * 1e6:.0f} us, now {book['now'] * 1e6:.0f} us "
              f"(ratio {book['now'] / book['before']:.2f})."]
    if trainer.run.device.type == "cpu":
        lines += ["", "On a CPU every op has finished when it returns, so a host read waits for "
                  "nothing: the loops differ only by the cost of their bookkeeping, small next to "
                  "the step. The gain of reading every PRINT_FREQ steps is on GPUs, where each "
                  "read stalls the queue of kernels (`--device cuda`)."]
    print_and_write("\n".join(lines) + "\n", a.out)


if __name__ == "__main__":
    sys.exit(main())
