"""The benchmark scripts still run: the GPU suite parses and names existing configs, the step
benchmark's switches reach the step, and the evaluation benchmark's two paths agree."""
import os
import re
import subprocess
import sys

import pytest

from semipose.config import load_cfg

from entry_points import load_script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUITE = os.path.join(ROOT, "bench", "gpu_suite.sh")


def test_gpu_suite_parses_and_its_configs_load():
    subprocess.run(["bash", "-n", SUITE], check=True)
    with open(SUITE) as f:
        text = f.read()
    cfgs = sorted(set(re.findall(r"experiments/[\w/.-]+\.yaml", text)))
    assert len(cfgs) >= 4
    for path in cfgs:  # a renamed or broken config would only show on the GPU machine
        cfg = load_cfg(os.path.join(ROOT, path))
        assert cfg.MODEL.NUM_JOINTS == 24, path


def _run(script: str, *args: str) -> str:
    out = subprocess.run([sys.executable, os.path.join(ROOT, "bench", script), *args], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stdout[-3000:]
    return out.stdout


def test_step_benchmark_switches_reach_the_step():
    text = _run("bench_train_step.py", "--device", "cpu", "--depth", "18", "--image-size", "32",
                "32", "--joints", "4", "--batch", "2", "--steps", "1", "--warmup", "1",
                "--channels-last", "--adam", "foreach", "--threads", "1")
    # the fp32 baseline and the variant, each with the Adam kernels asked for
    assert "[amp=off, channels_last=False, compile=off, adam=foreach]" in text
    assert "[amp=off, channels_last=True, compile=off, adam=foreach]" in text
    losses = [float(x) for x in re.findall(r"last loss ([-+0-9.e]+)", text)]
    assert len(losses) == 2 and all(0 < v < 10 for v in losses)
    assert "speed vs fp32 baseline" in text


@pytest.mark.parametrize("flag, mode", [(["--compile"], "default"),
                                        (["--compile", "reduce-overhead"], "reduce-overhead"),
                                        ([], "")])
def test_step_benchmark_compile_modes(flag, mode, monkeypatch):
    bench_train_step = load_script("bench_train_step", "bench")
    monkeypatch.setattr(sys, "argv", ["bench_train_step.py", *flag])
    args = bench_train_step.parse_args()
    assert args.compile == mode and args.compile_scope == "nets"
    monkeypatch.setattr(sys, "argv", ["bench_train_step.py", *flag, "--compile-scope", "step"])
    assert bench_train_step.parse_args().compile_scope == "step"


def test_eval_benchmark_paths_agree(tmp_path):
    out = tmp_path / "eval.md"
    text = _run("bench_eval.py", "--images", "60", "--repeats", "1", "--out", str(out),
                "--note", "a test run")
    # bench_eval exits non-zero when the batched and per-image results differ
    body = out.read_text()
    assert "identical in both" in body and "a test run" in body and "Speed-up" in text
    kept = int(re.search(r"(\d+) of 1200 detections survive", body).group(1))
    assert 60 <= kept < 1200  # at least one per image, and some duplicates suppressed


def test_data_bench_stage_timer_counts_wall_and_host_time():
    """bench_data's device-stage timer: one warm-up call and 4 batches per repeat, wall time per
    pair from the calls (a stage that sleeps 4 ms a batch of 2 takes >= 2 ms per pair) and host
    CPU per pair (sleeping costs next to none)."""
    import time

    import torch

    bench_data = load_script("bench_data", "bench")
    calls = []

    def stage(plan, device):
        calls.append(plan)
        time.sleep(0.004)

    wall, host = bench_data.stage_ms(stage, ["a", "b"], torch.device("cpu"), repeats=3, batch=2)
    assert calls == ["a"] + ["a", "b", "a", "b"] * 3
    assert wall >= 2.0 and 0.0 <= host < wall


def test_jo_op_matches_the_described_steps_and_only_reading_a_zero_fills():
    """bench/jo_outcomes.py's straight-from-the-description JO (numpy, one draw per row) and the
    library's vectorised op give the same paste / zero-fill / nothing fractions in 'reference'
    mode (reading A of the clamp bounds); reading B never zero-fills, so it cannot be the
    released op, which the description says zero-fills about one draw in five."""
    import numpy as np

    jo = load_script("jo_outcomes", "bench")
    n = 2000  # sampling sd of each fraction <= 0.011, so 0.05 is over 3 sd of the difference
    for spread in (jo.SPREADS["uniform over the crop"],
                   jo.SPREADS["central 60%, 7 of 24 at (0, 0)"]):
        rng = np.random.default_rng(1)
        own, partner = jo.joints(rng, n, spread), jo.joints(rng, n, spread)
        described = {r: jo.described_outcomes(own, partner, rng, r) for r in ("A", "B")}
        op = jo.op_outcomes(np.random.default_rng(2), n, spread, "reference", 2)
        for key in ("paste", "zero-fill", "nothing"):
            assert abs(described["A"][key] - op[key]) < 0.05, (spread, key, described, op)
        assert described["B"]["zero-fill"] == 0
        assert op["zero-fill"] > 0.15
        assert jo.op_outcomes(np.random.default_rng(2), 500, spread, "corrected", 2)["zero-fill"] == 0


def test_labeled_fit_averages_the_nets_over_the_last_epochs(tmp_path):
    """bench/labeled_fit.py: per-net loss_pose_<net> fields are averaged (a single net's
    loss_pose is taken as it is) over the iterations of the last epochs only."""
    fit = load_script("labeled_fit", "bench")
    line = "12:00:00 Epoch: [{e}/4][{i}/10]\tLoss 1 (1)\tAccuracy 0.5 (0.5)\t{fields}\n"
    dual = [line.format(e=1, i=10, fields="loss_pose: 9.0\tloss_pose_1: 9.0\tloss_pose_2: 9.0"),
            line.format(e=3, i=5, fields="loss_pose: 0.5\tloss_pose_1: 0.002\tloss_pose_2: 0.004"),
            line.format(e=4, i=10, fields="loss_pose: 0.5\tloss_pose_1: 0.004\tloss_pose_2: 0.006")]
    single = [line.format(e=2, i=10, fields="loss_pose: 7.0\tloss_cons: 1.0"),
              line.format(e=4, i=10, fields="loss_pose: 0.001\tloss_cons: 1.0")]
    (tmp_path / "posedual_L100_s0.log").write_text("".join(dual))
    (tmp_path / "supervised_L100_s0.log").write_text("".join(single))
    (tmp_path / "supervised_L300_s0.log").write_text("".join(single))
    table = fit.collect(str(tmp_path), labels=100, last=2)
    assert table["posedual"][0] == pytest.approx((0.003 + 0.005) / 2)
    assert table["supervised"] == {0: pytest.approx(0.001)}
    text = fit.report(table, 100, 2)
    assert "| supervised | 0.0010 | 0.0010 | 0.25x (n=1) |" in text
