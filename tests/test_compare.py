"""`semipose compare` / semipose.engine.compare: the metrics and config-difference tables and the
curves picture, on runs trained here and on hand-written run folders with known numbers."""
from __future__ import annotations

import json
import os

import cv2
import pytest
import yaml

from conftest import make_synthetic, synthetic_opts, tiny
from semipose.commands import main
from semipose.engine.compare import (compare_runs, differing_keys, flatten, load_run,
                                     short_labels)
from semipose.errors import ConfigError, MissingFileError, RunFolderError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUPERVISED = os.path.join(ROOT, "experiments", "synthetic", "supervised.yaml")
TINY = tiny("MODEL.EXTRA.BASE_WIDTH", "16", "TRAIN.END_EPOCH", "2", "TRAIN.LR_STEP", "[5]")


# ------------------------------------------------------------------------ runs trained here
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two 2-epoch runs of one experiment that differ in TRAIN.LR and SEED (and RUN_NAME)."""
    root = make_synthetic(tmp_path_factory, "synthetic_compare", num_train=4, num_val=2)
    out = str(tmp_path_factory.mktemp("compare_runs"))
    base = ["--cfg", SUPERVISED, "--no-progress", *synthetic_opts(root, out, TINY)]
    assert main(["train", *base, "RUN_NAME", "lr_low"]) == 0
    assert main(["train", *base, "RUN_NAME", "lr_high", "TRAIN.LR", "0.004", "SEED", "7"]) == 0
    experiment = os.path.join(out, "coco", "pose_resnet_18", "supervised")
    return experiment, os.path.join(experiment, "lr_low"), os.path.join(experiment, "lr_high")


def _results(run: str) -> dict:
    with open(os.path.join(run, "results.json")) as f:
        return json.load(f)["rows"]


def _history(run: str) -> dict:
    with open(os.path.join(run, "history.json")) as f:
        return json.load(f)


def _tables(text: str):
    """The markdown tables of the output: lists of rows of cells (header first)."""
    tables, current = [], []
    for line in text.splitlines():
        if line.startswith("|"):
            if not line.startswith("|---"):
                current.append([c.strip() for c in line.strip("|").split(" | ")])
        elif current:
            tables.append(current)
            current = []
    if current:
        tables.append(current)
    return tables


def test_compare_two_trained_runs(trained, tmp_path, capsys):
    experiment, low, high = trained
    png = str(tmp_path / "curves.png")
    capsys.readouterr()
    # the experiment folder stands for its latest run (lr_high, trained last)
    assert main(["compare", low, experiment, "--out", png]) == 0
    out = capsys.readouterr().out
    metrics, keys = _tables(out)
    assert metrics[0] == ["run", "method", "epochs", "net1 final", "net1 best"]
    assert [row[0] for row in metrics[1:]] == ["lr_low", "lr_high"]
    for row, run in zip(metrics[1:], (low, high)):
        assert row[1:3] == ["pose_resnet", "2/2"]
        assert row[3] == f"{_results(run)['net1']['metrics']['AP']:.4f}"
        curve = _history(run)["val_net1/AP"]
        assert [e for e, _ in curve] == [1, 2]
        epoch, value = max(curve, key=lambda p: (p[1], -p[0]))
        assert row[4] == f"{value:.4f} (epoch {epoch})"
    # exactly the keys the two runs were given differently
    assert keys[0] == ["key", "lr_low", "lr_high"]
    assert keys[1:] == [["RUN_NAME", "lr_low", "lr_high"], ["SEED", "1314", "7"],
                        ["TRAIN.LR", "0.001", "0.004"]]
    assert out.rstrip().endswith(f"wrote {png}")
    # a valid picture of the figure's size (9 x 5.5 in at 90 dpi)
    image = cv2.imread(png)
    assert image is not None and image.shape == (495, 810, 3) and image.std() > 10
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp")]


def test_compare_from_python_matches_the_files(trained, tmp_path, monkeypatch):
    experiment, low, high = trained
    comparison = compare_runs([high, low])
    assert comparison.metric == "AP" and comparison.rows == ["net1"]
    for run, path in zip(comparison.runs, (high, low)):
        assert run.path == os.path.realpath(path)
        for name, value in _results(path)["net1"]["metrics"].items():
            assert run.final("net1", name) == value  # exact: read from results.json
        assert run.epochs_done == run.end_epoch == 2
        with open(os.path.join(path, "config.yaml")) as f:
            assert run.config == yaml.safe_load(f)
    assert list(comparison.differing()) == ["RUN_NAME", "SEED", "TRAIN.LR"]
    # the default picture name, in the current folder
    monkeypatch.chdir(tmp_path)
    assert main(["compare", low]) == 0
    assert cv2.imread(str(tmp_path / "compare.png")) is not None


# ------------------------------------------------------------------- hand-written run folders
def _fake_run(folder, name: str, lr: float, curves: dict, end_epoch: int, extra=None) -> str:
    """A run folder as training writes it, with chosen numbers: curves = row -> AP per epoch."""
    os.makedirs(folder)
    config = {"MODEL": {"NAME": name, "IMAGE_SIZE": [64, 64]},
              "TRAIN": {"LR": lr, "END_EPOCH": end_epoch, "LR_STEP": [3]},
              "DATASET": {"TEST_DATASET": "coco", "ROOT": ""}}
    config.update(extra or {})
    with open(os.path.join(folder, "config.yaml"), "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    epochs = len(next(iter(curves.values())))
    history = {"epoch/loss": [[e, 1.0 / e] for e in range(1, epochs + 1)]}
    rows = {}
    for row, aps in curves.items():
        history[f"val_{row}/AP"] = [[e, v] for e, v in enumerate(aps, 1)]
        history[f"val_{row}/AP_M"] = [[e, v / 2] for e, v in enumerate(aps, 1)]
        history[f"val_{row}/pxerror"] = [[e, 10.0 - 10 * v] for e, v in enumerate(aps, 1)]
        rows[row] = {"metrics": {"AP": aps[-1], "AP (M)": aps[-1] / 2,
                                 "px error": 10.0 - 10 * aps[-1]}, "main": aps[-1]}
    with open(os.path.join(folder, "history.json"), "w") as f:
        json.dump(history, f)
    with open(os.path.join(folder, "results.json"), "w") as f:
        json.dump({"provenance": "test", "rows": rows}, f)
    return str(folder)


@pytest.fixture
def fake_runs(tmp_path):
    sup = _fake_run(tmp_path / "supervised" / "run_a", "pose_resnet", 0.001,
                    {"net1": [0.1, 0.32, 0.41, 0.38, 0.45, 0.44]}, 6)
    dual = _fake_run(tmp_path / "posedual" / "run_b", "pose_dual", 0.002,
                     {"net1": [0.12, 0.35, 0.47, 0.5, 0.52, 0.515],
                      "net2": [0.11, 0.3, 0.44, 0.49, 0.5, 0.51],
                      "ensemble": [0.13, 0.37, 0.5, 0.53, 0.55, 0.55]}, 8,
                     extra={"RUN_NAME": "x|y"})
    return sup, dual


def test_tables_of_known_numbers(fake_runs, tmp_path):
    sup, dual = fake_runs
    # an experiment folder with one run_* folder (no 'latest' link) stands for that run
    comparison = compare_runs([sup, str(tmp_path / "posedual")], metric="AP (M)")
    assert comparison.markdown() == f"""\
Validation AP (M): final = the last validation (results.json), best = the highest over the \
validations (history.json) and its epoch; epochs = finished / TRAIN.END_EPOCH.

| run | method | epochs | net1 final | net1 best | net2 final | net2 best | ensemble final | \
ensemble best |
|---|---|---|---|---|---|---|---|---|
| supervised | pose_resnet | 6/6 | 0.2200 | 0.2250 (epoch 5) | – | – | – | – |
| posedual | pose_dual | 6/8 | 0.2575 | 0.2600 (epoch 5) | 0.2550 | 0.2550 (epoch 6) | \
0.2750 | 0.2750 (epoch 5) |

Config keys that differ (4):

| key | supervised | posedual |
|---|---|---|
| MODEL.NAME | pose_resnet | pose_dual |
| TRAIN.LR | 0.001 | 0.002 |
| TRAIN.END_EPOCH | 6 | 8 |
| RUN_NAME | – | x\\|y |

Runs:
- supervised: {sup}
- posedual: {dual}"""
    # the history tag names the same metric; a pixel error is best where lowest
    assert compare_runs([sup], metric="AP_M").metric == "AP (M)"
    px = compare_runs([sup], metric="px error")
    assert px.runs[0].best("net1", px.metric) == (pytest.approx(5.5), 5)
    assert "best = the lowest" in px.markdown() and "One run: no configs to compare." in \
        px.markdown()


def test_picture_of_known_curves(fake_runs, tmp_path):
    from semipose.engine.compare import plot_comparison
    out = str(tmp_path / "pictures" / "dual.png")  # the folder is made
    assert plot_comparison(compare_runs(list(fake_runs)), out) == out
    image = cv2.imread(out)
    assert image.shape == (495, 810, 3)
    # four curves in two colours: tab10 blue (run 1) and orange (run 2) pixels are drawn
    blue = ((abs(image[..., 0].astype(int) - 180) < 20) & (abs(image[..., 1].astype(int) - 119)
                                                          < 20) & (image[..., 2] < 60)).sum()
    orange = ((image[..., 0] < 60) & (abs(image[..., 1].astype(int) - 127) < 20)
              & (image[..., 2] > 230)).sum()
    assert blue > 200 and orange > 600


def test_flatten_and_differing_keys():
    a = {"A": {"B": 1, "C": [1, 2]}, "D": "", "E": True}
    b = {"A": {"B": 1, "C": (1, 3)}, "D": "x", "F": 2.5}
    assert flatten(a) == {"A.B": 1, "A.C": [1, 2], "D": "", "E": True}
    assert differing_keys([a, b]) == {"A.C": ["[1, 2]", "[1, 3]"], "D": ["''", "x"],
                                      "E": ["True", "–"], "F": ["–", "2.5"]}
    assert differing_keys([a, dict(a, A={"B": 1, "C": (1, 2)})]) == {}  # list == tuple
    assert short_labels(["/x/a/cfg/run_1", "/y/b/cfg/run_1", "/z/other/run_2"]) == \
        ["x/a/cfg", "y/b/cfg", "z/other"]
    # what the runs share is dropped; the run folder stays where it is what tells them apart
    assert short_labels(["/o/sup_s0/coco/pose_resnet_18/exp/run_1",
                         "/o/dual_s0/coco/pose_dual_18/exp/run_2"]) == \
        ["sup_s0/pose_resnet_18", "dual_s0/pose_dual_18"]
    assert short_labels(["/o/coco/exp/run_1", "/o/coco/exp/run_2"]) == ["run_1", "run_2"]
    assert short_labels(["/o/coco/exp/run_1"]) == ["exp/run_1"]


def test_folders_that_are_not_runs(fake_runs, tmp_path, capsys):
    sup, _ = fake_runs
    with pytest.raises(MissingFileError, match="run folder '.*nowhere' not found"):
        load_run(str(tmp_path / "nowhere"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RunFolderError, match=f"{empty} is not a run folder .*expected a run "
                                             f"folder as training writes it"):
        load_run(str(empty))
    with pytest.raises(RunFolderError, match="is a file, not a run folder"):
        load_run(os.path.join(sup, "config.yaml"))
    with pytest.raises(ConfigError, match=r"--metric 'PCKh': the runs report AP, AP \(M\), "
                                          r"px error"):
        compare_runs([sup], metric="PCKh")
    # the command: one line, status 2
    for args, says in ((["compare", sup, str(empty)], f"error: {empty} is not a run folder"),
                       (["compare", sup, "--metric", "PCKh"], "error: --metric 'PCKh'"),
                       (["compare", sup, "--out", str(tmp_path / "curves.pdf")],
                        "error: --out '" + str(tmp_path / "curves.pdf") + "': the picture is a "
                        "PNG; give a file name ending in .png")):
        assert main(args) == 2
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and err[0].startswith(says), err
    assert not os.path.exists(tmp_path / "curves.pdf")
