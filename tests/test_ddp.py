"""Distributed training and evaluation on CPU (gloo): 2-process PoseDual run under torchrun, sharded
validation under torch.distributed.launch, both equal to the single-process evaluation; sampler
sharding and per-rank pairing; launcher flags."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from semipose.config import load_cfg
from semipose.data.build import build_train_dataset
from semipose.data.loaders import build_loader, set_loader_epoch
from semipose.engine.cli import base_parser
from semipose.engine.data_setup import resume_loader
from semipose.engine.log import scalar_tag
from semipose.engine.runs import latest_run
from semipose.engine.validate import evaluate_checkpoint
from semipose.utils.dist import DistInfo

from conftest import script_env, synthetic_opts, tiny

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POSEDUAL = os.path.join(ROOT, "experiments", "synthetic", "posedual.yaml")
TINY = tiny("TEST.BATCH_SIZE", "4")


def _opts(root: str, out: str, *extra: str) -> list:
    return synthetic_opts(root, out, TINY, *extra)


def _launch(launcher: list, script: str, args: list, timeout: int = 120):
    cmd = [sys.executable, "-m", *launcher, "--nproc_per_node=2", "--master_port",
           str(_free_port()), os.path.join(ROOT, "pose_estimation", script), *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=script_env(), capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keypoint_results(run_dir: str) -> dict:
    out = {}
    for i in (1, 2, 3):
        with open(os.path.join(run_dir, "results",
                               f"person_keypoints_val2017_eval_{i}.json")) as f:
            out[i] = sorted(json.load(f), key=lambda r: (r["image_id"], -r["score"]))
    return out


def _assert_same_results(a: dict, b: dict) -> None:
    for i in a:
        assert len(a[i]) == len(b[i]) > 0
        for ra, rb in zip(a[i], b[i]):
            assert ra["image_id"] == rb["image_id"]
            np.testing.assert_allclose(ra["keypoints"], rb["keypoints"], rtol=1e-5, atol=1e-3)
            assert ra["score"] == pytest.approx(rb["score"], rel=1e-5)


def test_two_process_posedual_equals_single_process_eval(data_root, tmp_path):
    out = str(tmp_path / "out")
    train_args = ["--cfg", POSEDUAL, "--no-progress",
                  *_opts(data_root, out, "TRAIN.END_EPOCH", "1", "TRAIN.LR_STEP", "[5]")]
    proc = _launch(["torch.distributed.run"], "train.py", train_args)
    cfg = load_cfg(POSEDUAL, _opts(data_root, out))
    from semipose.config import experiment_dir
    from semipose.engine.validate import valid_folder
    run = latest_run(experiment_dir(cfg, POSEDUAL))
    log = proc.stdout + proc.stderr
    assert "world size 2" in log
    ckpt = torch.load(os.path.join(run, "checkpoint.pth.tar"), weights_only=False)
    assert ckpt["epoch"] == 1 and ckpt["world_size"] == 2 and len(ckpt["rank_rng"]) == 2
    # distinct per-rank hard-view streams were saved (exact DDP resume needs each rank's own)
    assert not torch.equal(ckpt["rank_rng"][0]["method_rng"]["cpu"],
                           ckpt["rank_rng"][1]["method_rng"]["cpu"])
    with open(os.path.join(run, "history.json")) as f:
        hist = json.load(f)
    # rank 0 alone writes: one log file, one history with one entry per step
    assert len([f for f in os.listdir(run) if f.endswith("_train.log")]) == 1
    n_steps = len(hist["train/loss"])
    assert n_steps >= 2 and [s for s, _ in hist["train/loss"]] == list(range(1, n_steps + 1))
    ddp_results = _keypoint_results(run)
    ddp_preds = np.load(os.path.join(run, "all_preds.npy"))
    ddp_metrics = {k[len("val_"):]: v[-1][1] for k, v in hist.items() if k.startswith("val_")}
    shutil.copytree(run, str(tmp_path / "ddp_run"))

    # the same checkpoint scored by one process; one thread as each DDP process had, so that the
    # convolutions sum in the same order (an untrained net's heatmaps are nearly flat and their
    # argmax would follow rounding differences)
    final = os.path.join(run, "final_state.pth.tar")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = evaluate_checkpoint(
            load_cfg(POSEDUAL, _opts(data_root, out, "TEST.MODEL_FILE", final)), POSEDUAL,
            DistInfo(), progress=False)
    finally:
        torch.set_num_threads(threads)
    assert list(single) == ["net1", "net2", "ensemble"]
    for net, (metrics, ap) in single.items():
        for k, v in metrics.items():
            assert ddp_metrics[f"{net}/{scalar_tag(k)}"] == pytest.approx(v, abs=1e-9), (net, k)
    # valid.py writes into a folder of its own, named after the checkpoint, not into the run
    vdir = valid_folder(cfg, experiment_dir(cfg, POSEDUAL), final)
    assert os.path.dirname(vdir) != run and os.path.basename(vdir).endswith("final_state")
    single_preds = np.load(os.path.join(vdir, "all_preds.npy"))
    np.testing.assert_allclose(ddp_preds, single_preds, rtol=1e-5, atol=1e-3)
    _assert_same_results(ddp_results, _keypoint_results(vdir))
    np.testing.assert_array_equal(np.load(os.path.join(run, "all_preds.npy")), ddp_preds)
    with open(os.path.join(vdir, "results.md")) as f:
        assert os.path.abspath(final) in f.read()

    # valid.py sharded over 2 processes by the legacy launcher (--local-rank flag + --distributed)
    shutil.rmtree(os.path.join(vdir, "results"))
    _launch(["torch.distributed.launch"], "valid.py",
            ["--distributed", "--cfg", POSEDUAL, "--no-progress", "--model-file", final,
             *_opts(data_root, out)])
    np.testing.assert_allclose(np.load(os.path.join(vdir, "all_preds.npy")), single_preds,
                               rtol=1e-5, atol=1e-3)
    _assert_same_results(ddp_results, _keypoint_results(vdir))


def test_distributed_shards_and_per_rank_pairing(data_root):
    """Each unlabeled crop once per epoch across ranks; labeled draws differ per rank and epoch;
    the order is a function of (seed, epoch) however the loader is iterated."""
    cfg = load_cfg(POSEDUAL, _opts(data_root, "/unused"))
    seen, labeled = {}, {}
    for epoch in (0, 1):
        for rank in (0, 1):
            ds = build_train_dataset(cfg)
            loader = build_loader(ds, 3, 0, shuffle=True, distributed=True, seed=cfg.SEED,
                                  rank=rank, world_size=2)
            set_loader_epoch(loader, epoch)
            order = [i for b in loader.batch_sampler for i in b]
            assert [i for b in loader.batch_sampler for i in b] == order  # listing is stable
            seen[epoch, rank] = order
            labeled[epoch, rank] = ds.labeled_index.copy()
    n = len(build_train_dataset(cfg))
    for epoch in (0, 1):
        both = seen[epoch, 0] + seen[epoch, 1]
        assert set(both) == set(range(n)) and len(both) - n <= 1  # padding: at most 1 repeat
        assert not np.array_equal(labeled[epoch, 0], labeled[epoch, 1])
    assert seen[0, 0] != seen[1, 0]
    assert not np.array_equal(labeled[0, 0], labeled[1, 0])


def test_single_process_order_is_iteration_independent(data_root):
    """list(batch_sampler) == the order the loader yields (what a mid-epoch resume replays)."""
    cfg = load_cfg(POSEDUAL, _opts(data_root, "/unused"))
    ds = build_train_dataset(cfg)
    loader = build_loader(ds, 4, 0, shuffle=True, seed=cfg.SEED)
    set_loader_epoch(loader, 2)
    listed = [i for b in loader.batch_sampler for i in b]
    set_loader_epoch(loader, 2)
    iterated = [int(i) for b in loader for i in b["unlabeled"]["meta"]["index"]]
    assert listed == iterated and sorted(listed) == list(range(len(ds)))
    assert listed != list(range(len(ds)))  # shuffled
    set_loader_epoch(loader, 2)
    rest = [int(i) for b in resume_loader(loader, 1) for i in b["unlabeled"]["meta"]["index"]]
    assert rest == listed[4:]


@pytest.mark.parametrize("flag", [["--local_rank", "1"], ["--local-rank=1"]])
def test_launcher_local_rank_flags(flag):
    args = base_parser("x").parse_args([*flag, "--distributed", "--cfg", "a.yaml", "TRAIN.LR", "1"])
    assert args.local_rank == 1 and args.distributed and args.opts == ["TRAIN.LR", "1"]


_FROZEN = """
import os, signal, sys
import torch.distributed as dist
from semipose.engine.cli import base_parser, parse_cli, run_job

def job(cfg, info):
    if info.rank == 1:
        os.kill(os.getpid(), signal.SIGSTOP)  # frozen, not killed
    dist.barrier()

sys.exit(run_job(parse_cli(base_parser("frozen"), sys.argv[1:]), [], job))
"""


def test_a_frozen_rank_ends_the_job_after_dist_timeout(tmp_path):
    """A stopped rank no longer blocks the others for torch's 30 minutes: after DIST_TIMEOUT_S
    the waiting rank ends with one line saying what happened."""
    import signal
    import time
    script = tmp_path / "frozen.py"
    script.write_text(_FROZEN)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port",
           str(_free_port()), str(script), "--cfg", POSEDUAL, "DIST_TIMEOUT_S", "4",
           "DEVICE", "cpu"]
    t0 = time.time()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=script_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=150)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # also the stopped rank, if still there
        except ProcessLookupError:
            pass
    waited = time.time() - t0
    assert proc.returncode != 0
    line = [ln for ln in out.splitlines() if ln.startswith("error: rank 0:")]
    assert line and "DIST_TIMEOUT_S=4 s" in line[0] and "stuck or stopped" in line[0], out[-3000:]
    assert "rank(s) [1] did not respond" in line[0]  # the frozen one, named
    assert waited < 150


_NAN_ON_RANK_1 = """
import dataclasses, json, sys
import torch
from semipose.engine.cli import base_parser, parse_cli, run_job
from semipose.engine.trainer import NonFiniteLossError, Trainer

def job(cfg, info):
    trainer = Trainer(cfg, sys.argv[2], info, progress=False)
    trainer.setup()
    original, calls, saved = trainer.method.training_step, {"n": 0}, {}

    def step(batch):  # rank 1 alone logs a NaN term at step 2 (its gradients stay finite)
        calls["n"] += 1
        out = original(batch)
        if calls["n"] == 2:
            saved["w"] = [p.detach().clone() for p in trainer.method.parameters()]
            if info.rank == 1:
                out = dataclasses.replace(
                    out, terms=dict(out.terms, loss_pose=torch.tensor(float("nan"))))
        return out
    trainer.method.training_step = step
    try:
        trainer.fit()
        error = None
    except NonFiniteLossError as exc:
        error = str(exc)
    weights = list(trainer.method.parameters())
    with open(f"{cfg.OUTPUT_DIR}/rank{info.rank}.json", "w") as f:
        json.dump({"error": error, "calls": calls["n"],
                   "unchanged": all(torch.equal(a, b) for a, b in zip(saved["w"], weights)),
                   "sum": float(sum(p.double().sum() for p in weights))}, f)

sys.exit(run_job(parse_cli(base_parser("nan"), sys.argv[1:]), [], job))
"""


@pytest.mark.parametrize("impl", ["for_loop", "fused"])
def test_a_nan_on_one_rank_stops_every_rank_at_the_same_step(data_root, tmp_path, impl):
    """Rank 1 alone has a NaN loss term at step 2 of 3 (PRINT_FREQ 3). Its guard turns the NaN
    into NaN gradients, the DDP all-reduce hands them to rank 0, and both ranks skip step 2 and
    later ones: same weights on both, untouched since step 1. for_loop raises at once on both
    ranks, fused at the read after step 3; rank 1 names its term, rank 0 another rank."""
    script = tmp_path / "nan.py"
    script.write_text(_NAN_ON_RANK_1)
    out = str(tmp_path / "out")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port",
           str(_free_port()), str(script), "--cfg", POSEDUAL,
           *_opts(data_root, out, "TRAIN.END_EPOCH", "1", "PRINT_FREQ", "3", "TRAIN.BATCH_SIZE",
                  "2", "MONITOR.ENABLED", "False", "TRAIN.ADAM_IMPL", impl)]
    os.makedirs(out)
    proc = subprocess.run(cmd, cwd=ROOT, env=script_env(), capture_output=True, text=True, timeout=150)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = []
    for r in (0, 1):
        with open(os.path.join(out, f"rank{r}.json")) as f:
            ranks.append(json.load(f))
    for r in ranks:
        assert r["calls"] == (3 if impl == "fused" else 2)
        assert r["unchanged"] and r["error"] is not None
        assert "epoch 1/1 iteration 2/" in r["error"] and "(global step 1)" in r["error"]
    assert ranks[0]["sum"] == ranks[1]["sum"]
    assert "loss_pose=nan" in ranks[1]["error"]
    assert "on another rank (or non-finite gradients)" in ranks[0]["error"]
