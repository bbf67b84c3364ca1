"""Interruptions: SIGKILL during checkpoint writes leaves the previous file loadable; SIGINT/SIGTERM
checkpoint mid-epoch and exit cleanly; resuming from such a checkpoint equals the uninterrupted
run step for step."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from semipose.config import experiment_dir, load_cfg
from semipose.engine.runs import latest_run
from semipose.engine.hooks import StopSignals
from semipose.engine.trainer import Trainer
from semipose.utils.dist import DistInfo

from conftest import script_env, synthetic_opts, tiny
from entry_points import load_script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POSEDUAL = os.path.join(ROOT, "experiments", "synthetic", "posedual.yaml")
SUPERVISED = os.path.join(ROOT, "experiments", "synthetic", "supervised.yaml")
TINY = tiny("CUDNN.DETERMINISTIC", "True")


def _opts(root: str, out: str, *extra: str) -> list:
    return synthetic_opts(root, out, TINY, *extra)


# ------------------------------------------------------------------------------------ SIGKILL
_SAVER = textwrap.dedent("""
    import sys, torch
    from semipose.engine.checkpoint import atomic_torch_save
    path, start = sys.argv[1], int(sys.argv[2])
    step = start
    while True:
        step += 1
        # ~24 MB: writing it takes long enough for kills to land mid-write
        atomic_torch_save({"step": step, "data": torch.full((6_000_000,), float(step))}, path)
        print(step, flush=True)
""")


def test_sigkill_during_writes_keeps_a_loadable_checkpoint(tmp_path):
    path = str(tmp_path / "checkpoint.pth.tar")
    script = tmp_path / "saver.py"
    script.write_text(_SAVER)
    rng = random.Random(0)
    last_seen = 0
    for round_ in range(4):
        proc = subprocess.Popen([sys.executable, str(script), path, str(last_seen * 10)],
                                stdout=subprocess.PIPE, text=True, env=script_env())
        proc.stdout.readline()  # at least one complete save of this process
        time.sleep(rng.uniform(0.0, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        state = torch.load(path, weights_only=False)
        step = state["step"]
        assert step > last_seen * 10, round_
        assert state["data"].shape == (6_000_000,)
        assert bool((state["data"] == float(step)).all())  # written whole, not half old/new
        last_seen = step
    # the killed writes leave at most a temporary sibling, never a damaged target
    leftovers = [f for f in os.listdir(tmp_path) if f.startswith(".tmp_")]
    assert len(leftovers) <= 4
    from semipose.engine.checkpoint import remove_stale_temp_files
    assert remove_stale_temp_files(str(tmp_path)) == len(leftovers)
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp_")]


# ------------------------------------------------------------------------------ SIGTERM / SIGINT
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_checkpoints_mid_epoch_and_resume_finishes(data_root, tmp_path, sig):
    """train.py with a DataLoader worker; SIGTERM (or SIGHUP: a closed terminal) to the whole
    process group after the first log line -> checkpoint with iteration > 0, status 0;
    TRAIN.RESUME then finishes the run."""
    out = str(tmp_path / "out")
    # all training persons, 2 per batch: enough steps that the signal lands mid-epoch
    opts = _opts(data_root, out, "WORKERS", "1", "TRAIN.END_EPOCH", "50", "TRAIN.LR_STEP", "[90]",
                 "TEST.INTERVAL", "100", "DATASET.TRAIN_LEN", "0", "TRAIN.BATCH_SIZE", "2")
    cmd = [sys.executable, os.path.join(ROOT, "pose_estimation", "train.py"), "--cfg", SUPERVISED,
           "--no-progress", *opts]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=script_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines, steps = [], 0
    try:
        for line in proc.stdout:
            lines.append(line)
            if "Epoch: [" in line:
                steps = int(line.split("Epoch: [1/50][1/")[1].split("]")[0])
                os.killpg(proc.pid, sig)  # as a scheduler or a closed terminal would: everyone
                break
        lines += proc.stdout.readlines()
        rc = proc.wait(60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    log = "".join(lines)
    assert rc == 0, log[-3000:]
    assert "Traceback" not in log and f"received signal {int(sig)}" in log
    assert "stopped at epoch" in log
    run = latest_run(experiment_dir(load_cfg(SUPERVISED, opts), SUPERVISED))
    ckpt = torch.load(os.path.join(run, "checkpoint.pth.tar"), weights_only=False)
    assert steps >= 4 and 0 < ckpt["iteration"] < steps and ckpt["epoch"] < 50
    assert ckpt["global_step"] == ckpt["epoch"] * steps + ckpt["iteration"]
    assert not os.path.exists(os.path.join(run, "final_state.pth.tar"))

    train_cli = load_script("train")
    end = str(ckpt["epoch"] + 1)
    rc = train_cli.main(["--cfg", SUPERVISED, "--no-progress",
                         *_opts(data_root, out, "TRAIN.END_EPOCH", end, "TRAIN.LR_STEP", "[90]",
                                "DATASET.TRAIN_LEN", "0", "TRAIN.BATCH_SIZE", "2",
                                "TRAIN.RESUME", "True")])
    assert rc == 0
    done = torch.load(os.path.join(run, "checkpoint.pth.tar"), weights_only=False)
    assert done["epoch"] == ckpt["epoch"] + 1 and done["iteration"] == 0
    assert done["global_step"] == (ckpt["epoch"] + 1) * steps
    assert os.path.exists(os.path.join(run, "final_state.pth.tar"))


def _fit(cfg, patch=None):
    trainer = Trainer(cfg, POSEDUAL, DistInfo(), progress=False)
    if patch:
        patch(trainer)
    trainer.fit()
    return trainer


def test_mid_epoch_signal_resume_equals_uninterrupted(data_root, tmp_path):
    """SIGINT in the middle of step 2: the run checkpoints (epoch 0, iteration 2) and stops;
    resuming gives the uninterrupted run's per-step losses, epoch averages and weights. (Resume
    at an epoch boundary: tests/test_train_e2e.py.)"""
    extra = ["TRAIN.END_EPOCH", "1", "TRAIN.LR_STEP", "[5]", "MASK_JOINT_NUM", "2",
             "TEST.INTERVAL", "5", "MONITOR.ENABLED", "False"]
    ta = _fit(load_cfg(POSEDUAL, _opts(data_root, str(tmp_path / "a"), *extra)))
    steps_per_epoch = len(ta.run.train_loader)
    assert steps_per_epoch >= 3

    def interrupt_at_step(trainer, epoch=0, step=2):
        trainer.setup()  # builds the method (fit's first call, then a no-op)
        original = trainer.method.training_step
        calls = {"n": 0}

        def step_fn(batch):
            calls["n"] += 1
            if calls["n"] == epoch * steps_per_epoch + step:
                os.kill(os.getpid(), signal.SIGINT)  # handled between bytecodes, mid-step
            return original(batch)
        trainer.method.training_step = step_fn

    cfg_b = load_cfg(POSEDUAL, _opts(data_root, str(tmp_path / "b"), *extra))
    before = signal.getsignal(signal.SIGINT)
    tb1 = _fit(cfg_b, interrupt_at_step)
    assert tb1.hook(StopSignals).signum == signal.SIGINT
    assert signal.getsignal(signal.SIGINT) is before  # the trainer's handler is removed
    ckpt = torch.load(os.path.join(tb1.out_dir, "checkpoint.pth.tar"), weights_only=False)
    assert (ckpt["epoch"], ckpt["iteration"], ckpt["global_step"]) == (0, 2, 2)
    assert len(tb1.scalars.history["train/loss"]) == 2

    tb = Trainer(load_cfg(POSEDUAL, _opts(data_root, str(tmp_path / "b"), *extra,
                                          "TRAIN.RESUME", "True")), POSEDUAL, DistInfo(),
                 progress=False)
    tb.setup()  # resumes
    begin_epoch = tb.state.epoch
    tb.fit()
    assert (begin_epoch, tb.state.global_step) == (0, steps_per_epoch)
    ha, hb = ta.scalars.history, tb.scalars.history
    assert [s for s, _ in ha["train/loss"]] == [s for s, _ in hb["train/loss"]]
    assert [v for _, v in ha["train/loss"]] == [v for _, v in hb["train/loss"]]
    for key in ("epoch/loss", "epoch/loss_cons", "epoch/accuracy"):
        assert [e for e, _ in hb[key]] == [e for e, _ in ha[key]] == [1]  # epochs done
        assert [v for _, v in hb[key]] == pytest.approx([v for _, v in ha[key]], rel=1e-12), key
    sa, sb = ta.method.nets.state_dict(), tb.method.nets.state_dict()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_atomic_files_follow_the_umask(tmp_path):
    """Atomically written files get the mode of ordinary files (not mkstemp's 0600)."""
    from semipose.utils.io import atomic_write

    old = os.umask(0o022)
    try:
        path = str(tmp_path / "results.md")
        atomic_write(path, lambda f: f.write(b"x"))
        assert os.stat(path).st_mode & 0o777 == 0o644
        os.umask(0o077)
        atomic_write(path, lambda f: f.write(b"y"))
        assert os.stat(path).st_mode & 0o777 == 0o600
    finally:
        os.umask(old)


def test_print_and_write_reports(tmp_path, capsys):
    """A benchmark report is printed and written whole; '-' prints it and writes nothing."""
    from semipose.utils.io import print_and_write

    path = str(tmp_path / "bench.md")
    print_and_write("| a | b |\n|---|---|\n", path)
    with open(path) as f:
        assert f.read() == "| a | b |\n|---|---|\n"
    assert capsys.readouterr().out == f"| a | b |\n|---|---|\n\nwrote {path}\n"
    print_and_write("only printed\n", "-")
    assert capsys.readouterr().out == "only printed\n\n"
    assert os.listdir(tmp_path) == ["bench.md"]
