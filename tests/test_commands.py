"""The `semipose` command: dispatch, help and version, `keys` filtering, the one-line user
errors and their exit status, and the pose_estimation/ scripts that call the same commands."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import semipose
from conftest import make_synthetic, script_env, synthetic_opts, tiny
from entry_points import load_script
from semipose.commands import COMMANDS, main, usage
from semipose.config.describe import all_key_docs, format_key_docs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUPERVISED = os.path.join(ROOT, "experiments", "synthetic", "supervised.yaml")
TINY = tiny("MODEL.EXTRA.BASE_WIDTH", "16", "TRAIN.END_EPOCH", "1", "TRAIN.LR_STEP", "[5]")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> str:
    return make_synthetic(tmp_path_factory, "synthetic_commands", num_train=4, num_val=2)


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_help_lists_every_command_once(capsys):
    for flag in ([], ["--help"], ["-h"]):
        assert main(flag) == 0
        assert capsys.readouterr().out == usage() + "\n"
    text = usage()
    assert text.splitlines()[0] == "usage: semipose <command> [options] [KEY VALUE ...]"
    start = text.splitlines().index("commands:") + 1
    listed = text.splitlines()[start:start + len(COMMANDS)]
    width = max(len(n) for n in COMMANDS)
    assert listed == [f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items()]
    assert list(COMMANDS) == ["train", "valid", "demo", "export", "convert", "bench", "compare",
                              "keys"]


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"semipose {semipose.__version__}\n"


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_command_has_its_own_help(name, capsys):
    assert main([name, "--help"]) == 0
    out = capsys.readouterr().out
    if name == "bench":  # the benchmark script prints its own usage (a process of its own)
        return
    assert out.startswith(f"usage: semipose {name} ")


def test_bench_runs_the_checkout_script():
    # in a process, as the installed command runs (the script's output is not captured)
    out = subprocess.run([sys.executable, "-m", "semipose", "bench", "--help"], cwd=ROOT,
                         env=script_env(), capture_output=True, text=True)
    assert out.returncode == 0
    assert out.stdout.startswith("usage: ssl_benchmark.py")
    assert "Synthetic SSL benchmark" in out.stdout and "--dataset-cfg" in out.stdout


def test_bench_without_the_checkout_is_one_line(monkeypatch, capsys):
    from semipose.commands import bench
    monkeypatch.setattr(bench, "benchmark_script", lambda: "")
    assert main(["bench", "--quick"]) == 2
    line = _one_error_line(capsys)
    assert "ships with the source checkout" in line
    assert os.path.join(ROOT, "bench", "ssl_benchmark.py") in line


def test_keys_filters_by_substring_or_glob(capsys):
    assert main(["keys", "train.lr*"]) == 0  # a glob, any case
    assert capsys.readouterr().out.splitlines() == [
        "TRAIN.LR_FACTOR  0.1  # MultiStepLR gamma",
        "TRAIN.LR_STEP    (90, 110)  # MultiStepLR milestones (epochs)",
        "TRAIN.LR         0.001  # base learning rate",
    ]
    assert main(["keys", "Flip_Test"]) == 0  # a part of the key, any case
    assert capsys.readouterr().out == (
        "TEST.FLIP_TEST  False  # average with the prediction on the flipped image\n")
    # a glob matches the whole key: '*.LR' is TRAIN.LR alone, 'LR' as a part is more
    assert main(["keys", "*.LR"]) == 0
    assert [ln.split()[0] for ln in capsys.readouterr().out.splitlines()] == ["TRAIN.LR"]
    assert main(["keys", "thre"]) == 0
    found = [ln.split()[0] for ln in capsys.readouterr().out.splitlines()]
    assert found == [k for k, _, _ in all_key_docs() if "THRE" in k]
    assert {"TEST.OKS_THRE", "TEST.IN_VIS_THRE", "TEST.IMAGE_THRE"} <= set(found)
    # no pattern: the same lines as --list-keys
    assert main(["keys"]) == 0
    assert capsys.readouterr().out == format_key_docs() + "\n"


def test_keys_without_a_match_is_a_user_error(capsys):
    assert main(["keys", "no_such_key*"]) == 2
    line = _one_error_line(capsys)
    assert line.startswith("error: no config key matches 'no_such_key*'")


def test_unknown_command_and_option(capsys):
    assert main(["trian"]) == 2
    line = _one_error_line(capsys)
    assert "unknown command 'trian'" in line and "did you mean 'train'?" in line
    assert main(["--cfg", "x.yaml"]) == 2
    assert "unknown option '--cfg': give a command first" in _one_error_line(capsys)


def test_user_errors_of_the_commands_are_one_line(tmp_path, capsys):
    missing = str(tmp_path / "nope.yaml")
    for name in ("train", "valid", "demo", "export"):
        assert main([name, "--cfg", missing]) == 2
        assert _one_error_line(capsys) == f"error: config file not found: {missing!r} " \
                                          f"(cwd {os.getcwd()!r})"
    csv = str(tmp_path / "labels.csv")
    assert main(["convert", "dlc", "--csv", csv, "--images-root", str(tmp_path),
                 "--out", str(tmp_path / "ds")]) == 2
    assert csv in _one_error_line(capsys)
    # argparse's own errors keep their usage line and status 2
    assert main(["compare"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: semipose compare") and "the following arguments are " \
                                                         "required: RUN" in err


def test_train_through_the_command_and_the_script(data_root, tmp_path, capsys):
    """`semipose train` and pose_estimation/train.py run the same function: same options, same
    run folder layout, the same exit statuses (3 for a non-finite loss)."""
    out = str(tmp_path / "out")
    args = ["--cfg", SUPERVISED, "--no-progress", *synthetic_opts(data_root, out, TINY)]
    assert main(["train", *args, "RUN_NAME", "via_command"]) == 0
    script = load_script("train")
    assert script.main is semipose.commands.train.main
    assert script.main([*args, "RUN_NAME", "via_script"]) == 0
    experiment = os.path.join(out, "coco", "pose_resnet_18", "supervised")
    rows = []
    for name in ("via_command", "via_script"):
        with open(os.path.join(experiment, name, "results.json")) as f:
            rows.append(json.load(f)["rows"])
    assert list(rows[0]) == list(rows[1]) == ["net1"]
    assert rows[0]["net1"]["metrics"] == rows[1]["net1"]["metrics"]  # same seed, same numbers
    capsys.readouterr()
    assert main(["train", *args, "RUN_NAME", "diverges", "TRAIN.LR", "1e30"]) == 3
    err = capsys.readouterr().err.splitlines()  # the training log, then the one error line
    assert [ln for ln in err if ln.startswith("error:")] == err[-1:]
    assert err[-1].startswith("error: non-finite loss at epoch 1/1 iteration 2/2")


def test_scripts_keep_their_usage_text():
    for name, first in (("train", "Train a pose model"), ("valid", "Score a trained model"),
                        ("demo", "Run a trained model"), ("export", "Export a trained net")):
        script = load_script(name)
        assert script.__doc__.startswith(first)
        assert f"python pose_estimation/{name}.py --cfg" in script.__doc__
        # the help of the script and of the command open with the same description
        module = __import__(f"semipose.commands.{name}", fromlist=["main"])
        assert module.__doc__.splitlines()[0] == script.__doc__.splitlines()[0]


def test_script_and_module_entry_points_in_a_process(tmp_path):
    env = script_env()
    out = subprocess.run([sys.executable, os.path.join(ROOT, "pose_estimation", "valid.py"),
                          "--help"], cwd=str(tmp_path), env=env, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("usage: valid.py ")
    assert "Score a trained model on the validation set" in out.stdout
    out = subprocess.run([sys.executable, "-m", "semipose", "--version"], cwd=str(tmp_path),
                         env=env, capture_output=True, text=True)
    assert (out.returncode, out.stdout) == (0, f"semipose {semipose.__version__}\n")
    out = subprocess.run([sys.executable, "-m", "semipose", "keys", "NO_SUCH_*"],
                         cwd=str(tmp_path), env=env, capture_output=True, text=True)
    assert out.returncode == 2 and len(out.stderr.splitlines()) == 1


def test_valid_script_scorer_stays_replaceable(data_root, tmp_path, monkeypatch):
    valid_cli = load_script("valid")
    seen = {}
    monkeypatch.setattr(valid_cli, "evaluate_checkpoint",
                        lambda cfg, path, info, **kw: seen.update(path=path, **kw))
    args = ["--cfg", SUPERVISED, *synthetic_opts(data_root, str(tmp_path), TINY)]
    assert valid_cli.main(args + ["--allow-single"]) == 0
    assert seen == {"path": SUPERVISED, "progress": True, "allow_single": True}
