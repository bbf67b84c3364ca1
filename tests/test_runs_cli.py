"""Daily use: one folder per run, valid.py's own folder, a quiet console with a summary, and the
command line (flags anywhere, --no-* forms, --print-config, --list-keys, no-GPU errors)."""
from __future__ import annotations

import glob
import json
import os

import pytest
import torch
import yaml

from conftest import make_synthetic, synthetic_opts, tiny
from entry_points import load_script
from semipose.config import experiment_dir, load_cfg
from semipose.config.describe import all_key_docs, key_docs
from semipose.engine.cli import base_parser, parse_cli
from semipose.engine.runs import LATEST, latest_run
from semipose.engine.validate import valid_folder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUPERVISED = os.path.join(ROOT, "experiments", "synthetic", "supervised.yaml")
TINY = tiny("MODEL.EXTRA.BASE_WIDTH", "16", "TRAIN.END_EPOCH", "1", "TRAIN.LR_STEP", "[5]")
train_cli = load_script("train")
valid_cli = load_script("valid")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> str:
    return make_synthetic(tmp_path_factory, "synthetic_runs", num_train=4, num_val=2)


def _args(root: str, out: str, *extra: str):
    return ["--cfg", SUPERVISED, "--no-progress", *synthetic_opts(root, out, TINY, *extra)]


def test_runs_never_overwrite_and_resume_continues_latest(data_root, tmp_path, capfd):
    out = str(tmp_path / "out")
    args = _args(data_root, out)
    experiment = experiment_dir(load_cfg(SUPERVISED, args[3:]), SUPERVISED)
    assert train_cli.main(args) == 0
    first = latest_run(experiment)
    first_ckpt = torch.load(os.path.join(first, "checkpoint.pth.tar"), weights_only=False)
    assert train_cli.main(args) == 0  # the same config again: a second run folder
    second = latest_run(experiment)
    assert second != first and os.path.dirname(second) == experiment
    assert os.path.realpath(os.path.join(experiment, LATEST)) == os.path.realpath(second)
    again = torch.load(os.path.join(first, "checkpoint.pth.tar"), weights_only=False)
    assert again["global_step"] == first_ckpt["global_step"]
    assert torch.equal(next(iter(again["state_dict"].values())),
                       next(iter(first_ckpt["state_dict"].values())))
    # each run's TensorBoard events in a folder of its own
    tb = glob.glob(os.path.join(out, "tb", "**", "events.out.tfevents.*"), recursive=True)
    assert len({os.path.dirname(p) for p in tb}) == 2
    # RESUME continues the latest run (one more epoch), no third folder
    assert train_cli.main(args + ["TRAIN.RESUME", "True", "TRAIN.END_EPOCH", "2"]) == 0
    assert latest_run(experiment) == second
    assert len([d for d in os.listdir(experiment) if d.startswith("run_")]) == 2
    state = torch.load(os.path.join(second, "checkpoint.pth.tar"), weights_only=False)
    assert state["epoch"] == 2
    console = capfd.readouterr()
    # pycocotools' chatter stays in the log file; the console gets the tables and a summary
    assert "index created!" not in console.out + console.err
    log = "".join(open(p).read() for p in glob.glob(os.path.join(second, "*_train.log")))
    assert "index created!" in log
    assert "done: 2 epochs" in console.err and f"outputs in {second}" in console.err
    assert (console.out + console.err).count("nets start from random weights") == 3  # once a run
    # a named run refuses to be overwritten
    named = args + ["RUN_NAME", "baseline"]
    assert train_cli.main(named) == 0
    assert train_cli.main(named) == 2
    assert "RUN_NAME 'baseline' already holds a run" in capfd.readouterr().err
    # valid.py scores the latest run's final weights into a folder of its own
    assert valid_cli.main(_args(data_root, out, "TEST.FLIP_TEST", "True")) == 0
    cfg = load_cfg(SUPERVISED, _args(data_root, out, "TEST.FLIP_TEST", "True")[3:])
    vdir = valid_folder(cfg, experiment, os.path.join(latest_run(experiment),
                                                      "final_state.pth.tar"))
    assert os.path.basename(vdir) == "baseline_final_state_flip"
    with open(os.path.join(vdir, "results.md")) as f:
        head = f.read()
    assert "final_state.pth.tar" in head and "flip test on" in head
    with open(os.path.join(vdir, "results.json")) as f:
        scored = json.load(f)
    assert scored["provenance"] in head and list(scored["rows"]) == ["net1"]
    row = scored["rows"]["net1"]
    assert row["main"] == row["metrics"]["AP"] and 0.0 <= row["main"] <= 1.0
    assert f"| {row['main']:.4f} |" in head  # the table's AP, rounded
    with open(os.path.join(latest_run(experiment), "results.md")) as f:
        assert "train.py: epoch 1/1" in f.read()


def test_flags_anywhere_and_no_forms():
    p = base_parser("x")
    p.add_argument("--post-process", dest="post_process",
                   action=__import__("argparse").BooleanOptionalAction, default=None)
    args = parse_cli(p, ["--cfg", "a.yaml", "TRAIN.LR", "0.1", "--no-progress",
                         "TEST.IMAGE_THRE", "-1", "--no-post-process"])
    assert args.opts == ["TRAIN.LR", "0.1", "TEST.IMAGE_THRE", "-1"]
    assert args.no_progress is True and args.post_process is False


def test_valid_no_flags_reach_the_config(data_root, tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(valid_cli, "evaluate_checkpoint",
                        lambda cfg, *a, **k: seen.update(cfg=cfg, allow=k["allow_single"]))
    assert valid_cli.main(_args(data_root, str(tmp_path)) +
                          ["--no-post-process", "--no-shift-heatmap", "--flip-test",
                           "--allow-single"]) == 0
    test = seen["cfg"].TEST
    assert (test.POST_PROCESS, test.SHIFT_HEATMAP, test.FLIP_TEST) == (False, False, True)
    assert seen["allow"] is True


def test_print_config_and_list_keys(data_root, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        train_cli.main(["--list-keys"])
    assert stop.value.code == 0
    listing = capsys.readouterr().out
    assert "TRAIN.LR " in listing and "MODEL.EXTRA.BASE_WIDTH" in listing
    assert len(listing.splitlines()) == len(all_key_docs()) > 100
    assert train_cli.main(_args(data_root, str(tmp_path), "TRAIN.LR", "0.125") +
                          ["--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["TRAIN"]["LR"] == 0.125 and printed["MODEL"]["NAME"] == "pose_resnet"
    assert not os.listdir(tmp_path)  # printing trains nothing and writes nothing


def test_every_default_key_is_documented():
    from semipose.config import get_defaults
    from semipose.config.defaults import hrnet_extra

    def flat(node, prefix=""):
        for k, v in node.items():
            if hasattr(v, "items"):
                yield from flat(v, prefix + k + ".")
            else:
                yield prefix + k
    documented = {k for k, _, c in key_docs() if c}
    keys = set(flat(get_defaults())) | {"MODEL.EXTRA." + k for k in flat(hrnet_extra())}
    keys = {k.replace("STAGE2", "STAGE<n>").replace("STAGE3", "STAGE<n>")
            .replace("STAGE4", "STAGE<n>") for k in keys}
    assert keys - documented == set()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
@pytest.mark.parametrize("flags", [["DEVICE", "cuda"], ["--gpus", "0"]])
def test_cuda_without_gpu_is_one_line(flags, data_root, tmp_path, capsys):
    args = _args(data_root, str(tmp_path))
    k = args.index("DEVICE")
    del args[k:k + 2]  # trailing overrides win over flags: leave DEVICE to the flag under test
    assert train_cli.main(args + flags) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "CUDA is not available" in err
    assert len(err.splitlines()) == 1


def test_generated_root_without_unlabeled_images_is_reported(data_root, tmp_path):
    """posedual_wild.yaml on a root that supervised.yaml generated (0 unlabeled images)."""
    import logging
    from semipose.engine.data_setup import prepare_synthetic
    wild = os.path.join(ROOT, "experiments", "synthetic", "posedual_wild.yaml")
    cfg = load_cfg(wild, ["DATASET.ROOT", data_root, "SYNTHETIC.GENERATE_IF_MISSING", "True"])
    with pytest.raises(ValueError, match=f"under {data_root} has no unlabeled2017 images"):
        prepare_synthetic(cfg, logging.getLogger("test"))
    ok = load_cfg(SUPERVISED, ["DATASET.ROOT", data_root, "SYNTHETIC.GENERATE_IF_MISSING", "True"])
    prepare_synthetic(ok, logging.getLogger("test"))  # a config without unlabeled2017: fine


def _tb_events(folder: str):
    """(tag, kind) of every summary value in the TensorBoard event files under ``folder``."""
    import struct
    from tensorboardX.proto import event_pb2
    out = []
    for path in glob.glob(os.path.join(folder, "**", "events.out.tfevents.*"), recursive=True):
        with open(path, "rb") as f:
            data = f.read()
        pos = 0
        while pos + 12 <= len(data):
            (n,) = struct.unpack("<Q", data[pos:pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + n])
            pos += 12 + n + 4
            for v in event.summary.value:
                out.append((v.tag, v.WhichOneof("value")))
    return out


def test_tensorboard_tags_are_readable_and_the_grid_is_logged(data_root, tmp_path):
    out = str(tmp_path / "out")
    assert train_cli.main(_args(data_root, out)) == 0
    events = _tb_events(os.path.join(out, "tb"))
    tags = {t for t, _ in events}
    assert {"val_net1/AP", "val_net1/AP.5", "val_net1/AP.75", "val_net1/AP_M",
            "val_net1/AR_L"} <= tags
    assert not [t for t in tags if "(" in t or " " in t or "__" in t]
    assert ("val_net1/predictions", "image") in events
