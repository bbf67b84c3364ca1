"""Faults and bad input: every expected user error ends in one 'error: ...' line naming the file or
key (exit status 2), also from DataLoader workers; a non-finite loss stops the run naming the step
and the loss term (status 3) and keeps the last good checkpoint."""
from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import shutil
from types import SimpleNamespace

import pytest
import torch

from semipose.config import experiment_dir, load_cfg
from semipose.data.imageio import ImageReadError, read_image
from semipose.engine.checkpoint import CheckpointError, load_resume_state
from semipose.engine.data_setup import skipped_images
from semipose.engine.hooks import CollapseWatch
from semipose.engine.runs import latest_run
from semipose.engine.trainer import NonFiniteLossError, Trainer
from semipose.utils.dist import DistInfo

from conftest import synthetic_opts, tiny
from entry_points import load_script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUPERVISED = os.path.join(ROOT, "experiments", "synthetic", "supervised.yaml")
TINY = tiny("MONITOR.ENABLED", "False")

train_cli = load_script("train")
valid_cli = load_script("valid")


@pytest.fixture
def root(data_root, tmp_path) -> str:
    """A private copy of the tiny set, free to damage."""
    dst = str(tmp_path / "data")
    shutil.copytree(data_root, dst)
    return dst


def _det(root: str) -> str:
    return os.path.join(root, "coco", "person_detection_results",
                        "synthetic_val2017_detections.json")


def _args(root: str, out: str, *extra: str, cfg: str = SUPERVISED) -> list:
    return ["--cfg", cfg, "--no-progress", *synthetic_opts(root, out, TINY, *extra)]


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    return lines[0]


def _train_fails(capsys, args: list, *names: str, rc: int = 2) -> str:
    assert train_cli.main(args) == rc
    line = _error_line(capsys)
    for name in names:
        assert name in line, line
    return line


# ------------------------------------------------------------------------------------ config
def test_config_errors(root, tmp_path, capsys):
    out = str(tmp_path / "out")
    _train_fails(capsys, _args(root, out, "TRAIN.LRR", "0.1"), "TRAIN.LRR", "TRAIN.LR")
    _train_fails(capsys, _args(root, out, "TRAIN.LR", "fast"), "TRAIN.LR", "fast")
    missing = str(tmp_path / "nope.yaml")
    _train_fails(capsys, ["--cfg", missing], missing)
    assert valid_cli.main(["--cfg", missing]) == 2
    assert missing in _error_line(capsys)


# ------------------------------------------------------------------------------------ data files
def test_missing_annotation_file(root, tmp_path, capsys):
    ann = os.path.join(root, "coco", "annotations", "person_keypoints_train2017.json")
    os.remove(ann)
    _train_fails(capsys, _args(root, str(tmp_path / "out")), ann, "DATASET.ROOT")


def test_missing_image_folder(root, tmp_path, capsys):
    folder = os.path.join(root, "coco", "images", "val2017")
    shutil.rmtree(folder)
    _train_fails(capsys, _args(root, str(tmp_path / "out")), folder, "DATASET.ROOT")


def _first_train_image(root: str) -> str:
    folder = os.path.join(root, "coco", "images", "train2017")
    return os.path.join(folder, sorted(os.listdir(folder))[0])


@pytest.mark.parametrize("workers", ["0", "1"])
@pytest.mark.parametrize("damage", ["corrupt", "missing"])
def test_bad_jpeg_is_named(root, tmp_path, capsys, workers, damage):
    image = _first_train_image(root)
    if damage == "corrupt":
        with open(image, "r+b") as f:  # keep the JPEG header, destroy the data
            f.seek(20)
            f.write(b"\0" * 4000)
            f.truncate(4020)
    else:
        os.remove(image)
    args = _args(root, str(tmp_path / "out"), "WORKERS", workers, "DATASET.TRAIN_LEN", "0")
    line = _train_fails(capsys, args, image, "SKIP_BAD_IMAGES" if damage == "corrupt" else
                        "DATASET.ROOT")
    assert ("DataLoader worker" in line) == (workers == "1")
    # the library raises the project's error type, with the file in the message, from workers too
    cfg = load_cfg(SUPERVISED, args[3:])
    with pytest.raises(ImageReadError, match=os.path.basename(image)):
        Trainer(cfg, SUPERVISED, DistInfo(), progress=False).fit()


@pytest.mark.parametrize("keep", [0.0, 0.02, 0.5], ids=["empty", "cut_2pct", "cut_50pct"])
def test_truncated_and_empty_jpegs_are_unreadable(root, keep):
    """libjpeg decodes a cut JPEG as a grey-filled image with only a stderr warning: such files,
    and empty ones, are errors naming the file, never training data."""
    image = _first_train_image(root)
    with open(image, "rb") as f:
        data = f.read()
    assert read_image(image).shape[2] == 3  # the intact file reads
    with open(image, "wb") as f:
        f.write(data[:int(len(data) * keep)])
    with pytest.raises(ImageReadError, match=re.escape(image)) as err:
        read_image(image)
    assert ("empty file" if keep == 0 else "truncated JPEG") in str(err.value)
    assert "SKIP_BAD_IMAGES" in str(err.value)


@pytest.mark.parametrize("damage", ["garbage", "empty", "truncated"])
def test_skip_bad_images_counts_them(root, tmp_path, capsys, damage):
    image = _first_train_image(root)
    with open(image, "rb") as f:
        data = f.read()
    with open(image, "wb") as f:
        f.write({"garbage": b"not a jpeg", "empty": b"", "truncated": data[:len(data) // 2]}[damage])
    out = str(tmp_path / "out")
    args = _args(root, out, "DATASET.SKIP_BAD_IMAGES", "True", "DATASET.TRAIN_LEN", "0",
                 "TRAIN.END_EPOCH", "1")
    assert train_cli.main(args) == 0
    run = latest_run(experiment_dir(load_cfg(SUPERVISED, args[3:]), SUPERVISED))
    log = "".join(open(os.path.join(run, f)).read() for f in os.listdir(run) if f.endswith(".log"))
    # one warning naming the file, and the count (one per person record read from it, plus
    # replacement draws that hit it again) at the end of the epoch
    assert log.count(f"skipping unreadable image (DATASET.SKIP_BAD_IMAGES): cannot read image "
                     f"'{image}'") == 1
    count = re.search(r"skipped (\d+) unreadable images so far \(DATASET.SKIP_BAD_IMAGES\)", log)
    assert count and int(count.group(1)) >= 1
    assert os.path.exists(os.path.join(run, "final_state.pth.tar"))


def test_skipped_images_counts_both_sides_of_a_pair():
    pose = SimpleNamespace(skipped=2)
    pair = SimpleNamespace(labeled=SimpleNamespace(skipped=1), unlabeled=SimpleNamespace(skipped=3))
    assert skipped_images(pose) == 2 and skipped_images(pair) == 4


def test_missing_pretrained_file(root, tmp_path, capsys):
    missing = str(tmp_path / "imagenet" / "resnet18.pth")
    _train_fails(capsys, _args(root, str(tmp_path / "out"), "MODEL.PRETRAINED", missing), missing)


# ------------------------------------------------------------------------------------ valid.py
def _save_weights(tmp_path, *opts: str) -> str:
    from semipose.models.build import build_net
    from semipose.models.weights import nets_state_dict
    cfg = load_cfg(SUPERVISED, TINY + list(opts))
    path = str(tmp_path / "weights.pth.tar")
    torch.save(nets_state_dict({"net1": build_net(cfg)}), path)
    return path


def test_checkpoint_of_another_architecture(root, tmp_path, capsys):
    r50 = _save_weights(tmp_path, "MODEL.EXTRA.NUM_LAYERS", "50")
    assert valid_cli.main(_args(root, str(tmp_path / "out"), "TEST.MODEL_FILE", r50)) == 2
    line = _error_line(capsys)
    assert r50 in line and "does not match the model" in line
    assert "unexpected" in line and "conv3.weight" in line  # a Bottleneck tensor R18 lacks
    # same layers, other shapes: 17 instead of 24 heatmap channels
    j17 = _save_weights(tmp_path, "MODEL.NUM_JOINTS", "17")
    assert valid_cli.main(_args(root, str(tmp_path / "out"), "TEST.MODEL_FILE", j17)) == 2
    line = _error_line(capsys)
    assert "final_layer.weight" in line and "(17, 32, 1, 1)" in line and "(24, 32, 1, 1)" in line


def test_missing_model_file(root, tmp_path, capsys):
    missing = str(tmp_path / "final_state.pth.tar")
    assert valid_cli.main(_args(root, str(tmp_path / "out"), "TEST.MODEL_FILE", missing)) == 2
    assert missing in _error_line(capsys)


def test_detections_filtered_to_nothing(root, tmp_path, capsys):
    weights = _save_weights(tmp_path)
    args = _args(root, str(tmp_path / "out"), "TEST.MODEL_FILE", weights,
                 "TEST.USE_GT_BBOX", "False", "TEST.IMAGE_THRE", "1.1")
    assert valid_cli.main(args) == 2
    line = _error_line(capsys)
    assert _det(root) in line and "TEST.IMAGE_THRE" in line
    # a detection file without any person box (category 1)
    with open(_det(root)) as f:
        dets = json.load(f)
    for d in dets:
        d["category_id"] = 2
    with open(_det(root), "w") as f:
        json.dump(dets, f)
    assert valid_cli.main(args[:-2]) == 2
    line = _error_line(capsys)
    assert _det(root) in line and "no person boxes" in line


# ------------------------------------------------------------------------------------ NaN
def test_nonfinite_loss_keeps_last_good_checkpoint(root, tmp_path):
    out = str(tmp_path / "out")
    opts = _args(root, out, "TRAIN.END_EPOCH", "2", "TEST.INTERVAL", "5")[3:]
    trainer = Trainer(load_cfg(SUPERVISED, opts), SUPERVISED, DistInfo(), progress=False)
    trainer.setup()
    steps = len(trainer.run.train_loader)
    original, calls = trainer.method.training_step, {"n": 0}

    def poisoned(batch):  # the first step of epoch 1 returns a NaN pose loss
        calls["n"] += 1
        out = original(batch)
        if calls["n"] == steps + 1:
            out = dataclasses.replace(out, loss=out.loss * float("nan"),
                                      terms=dict(out.terms, loss_pose=torch.tensor(float("nan"))))
        return out
    trainer.method.training_step = poisoned
    good = None

    def remember_weights(_trainer, _epoch):
        nonlocal good
        good = {k: v.clone() for k, v in trainer.method.nets.state_dict().items()}
    trainer.hook(CollapseWatch).end_of_epoch = remember_weights  # runs at the end of each epoch
    with pytest.raises(NonFiniteLossError) as err:
        trainer.fit()
    msg = str(err.value)
    assert f"epoch 2/2 iteration 1/{steps} (global step {steps})" in msg  # counted from 1
    assert "loss=nan" in msg and "loss_pose=nan" in msg and out in msg
    # no optimizer step was taken; epoch 0's checkpoint is intact and resumable
    for k, v in trainer.method.nets.named_parameters():
        assert torch.equal(v, good[k]), k
    state = load_resume_state(trainer.out_dir)
    assert (state["epoch"], state["iteration"], state["global_step"]) == (1, 0, steps)
    for k, v in good.items():
        assert torch.equal(state["state_dict"][k], v), k
    resumed = Trainer(load_cfg(SUPERVISED, opts + ["TRAIN.RESUME", "True"]), SUPERVISED,
                      DistInfo(), progress=False)
    resumed.setup()
    assert (resumed.state.epoch, resumed.state.global_step) == (1, steps)


def test_diverging_run_exits_with_status_3(root, tmp_path, capsys):
    args = _args(root, str(tmp_path / "out"), "TRAIN.LR", "1e30", "TRAIN.END_EPOCH", "1")
    line = _train_fails(capsys, args, "non-finite loss at epoch 1/1 iteration", "TRAIN.LR", rc=3)
    assert "loss=" in line


def _optimizer_state(optimizer) -> dict:
    return {i: {k: v.clone() for k, v in st.items()}
            for i, st in optimizer.state_dict()["state"].items()}


@pytest.mark.parametrize("impl", ["for_loop", "foreach", "fused"])
@pytest.mark.parametrize("poison", ["loss", "logged term"])
def test_nonfinite_loss_between_reads_takes_no_step(root, tmp_path, impl, poison):
    """Values are read every PRINT_FREQ (4) steps; step 2 has a NaN: in the loss itself (NaN
    gradients) or only in a logged term (finite gradients). No optimizer step is taken from then
    on: weights and Adam's moments and step counts stay as after step 1. for_loop / foreach read
    the flag on the host and raise at once; fused skips on the device and raises at the read
    after step 4. The error names step 2 either way."""
    out = str(tmp_path / "out")
    opts = _args(root, out, "TRAIN.END_EPOCH", "1", "TEST.INTERVAL", "5", "PRINT_FREQ", "4",
                 "TRAIN.BATCH_SIZE", "2", "TRAIN.ADAM_IMPL", impl)[3:]
    trainer = Trainer(load_cfg(SUPERVISED, opts), SUPERVISED, DistInfo(), progress=False)
    trainer.setup()
    steps = len(trainer.run.train_loader)
    assert steps >= 4
    assert trainer.run.guard.on_device == (impl == "fused")
    original, calls, saved = trainer.method.training_step, {"n": 0}, {}

    def poisoned(batch):
        calls["n"] += 1
        out = original(batch)
        if calls["n"] == 2:
            saved["weights"] = {k: v.detach().clone()
                                for k, v in trainer.method.nets.named_parameters()}
            saved["adam"] = _optimizer_state(trainer.run.optimizer)
            nan = torch.tensor(float("nan"))
            out = dataclasses.replace(out, terms=dict(out.terms, loss_pose=nan))
            if poison == "loss":
                out = dataclasses.replace(out, loss=out.loss * nan)
        return out
    trainer.method.training_step = poisoned
    with pytest.raises(NonFiniteLossError) as err:
        trainer.fit()
    msg = str(err.value)
    named = "loss=nan, loss_pose=nan" if poison == "loss" else "loss_pose=nan"
    assert f"epoch 1/1 iteration 2/{steps} (global step 1): {named}. No optimizer step" in msg
    assert calls["n"] == (4 if impl == "fused" else 2)
    for k, v in trainer.method.nets.named_parameters():
        assert torch.equal(v, saved["weights"][k]), k
    adam = _optimizer_state(trainer.run.optimizer)
    assert adam.keys() == saved["adam"].keys() and len(adam) > 0
    for i, st in saved["adam"].items():
        assert int(st["step"]) == 1
        for k, v in st.items():
            assert torch.equal(adam[i][k], v), (i, k)
    assert [s for s, _ in trainer.scalars.history["train/loss"]] == [1]  # step 1 was read
    assert not os.path.exists(os.path.join(trainer.out_dir, "checkpoint.pth.tar"))


# ------------------------------------------------------------------------------ no lost work
def _val_image(root: str) -> str:
    folder = os.path.join(root, "coco", "images", "val2017")
    return os.path.join(folder, sorted(os.listdir(folder))[0])


def test_failed_validation_keeps_the_trained_epoch(root, tmp_path, capsys):
    """An unreadable val image (skipped) leaves persons without a prediction: validation fails,
    but only after the epoch's checkpoint is on disk; the message says how to continue."""
    with open(_val_image(root), "wb") as f:
        f.write(b"")
    out = str(tmp_path / "out")
    args = _args(root, out, "DATASET.SKIP_BAD_IMAGES", "True", "TRAIN.END_EPOCH", "1")
    line = _train_fails(capsys, args, "validation after epoch 1 failed", "TRAIN.RESUME True")
    run = latest_run(experiment_dir(load_cfg(SUPERVISED, args[3:]), SUPERVISED))
    assert os.path.join(run, "checkpoint.pth.tar") in line
    state = load_resume_state(run)
    assert (state["epoch"], state["iteration"]) == (1, 0)


def _stopped_mid_epoch(cfg, step: int = 2) -> Trainer:
    """A trainer that got SIGINT during step ``step`` of epoch 1 (checkpoint mid-epoch)."""
    trainer = Trainer(cfg, SUPERVISED, DistInfo(), progress=False)
    trainer.setup()
    original, calls = trainer.method.training_step, {"n": 0}

    def step_fn(batch):
        calls["n"] += 1
        if calls["n"] == step:
            os.kill(os.getpid(), signal.SIGINT)
        return original(batch)
    trainer.method.training_step = step_fn
    trainer.fit()
    return trainer


@pytest.mark.parametrize("change, needle", [
    (["TRAIN.BATCH_SIZE", "2"], "TRAIN.BATCH_SIZE 4 in the checkpoint, 2 now"),
    (["DATASET.TRAIN_LEN", "4"], "items per epoch"),
    (["MODEL.EXTRA.NUM_DECONV_FILTERS", "[16, 16, 16]"],
     "MODEL.EXTRA.NUM_DECONV_FILTERS [32, 32, 32] in the checkpoint, [16, 16, 16] now"),
    (["TRAIN.OPTIMIZER", "sgd"], "TRAIN.OPTIMIZER 'adam' in the checkpoint, 'sgd' now")])
def test_resume_refuses_a_changed_layout(root, tmp_path, change, needle):
    out = str(tmp_path / "out")
    base = _args(root, out, "TRAIN.END_EPOCH", "2", "DATASET.TRAIN_LEN", "0")[3:]
    first = _stopped_mid_epoch(load_cfg(SUPERVISED, base))
    state = load_resume_state(first.out_dir)
    assert state["iteration"] == 2 and state["epoch"] == 0
    with pytest.raises(CheckpointError, match=re.escape(needle)) as err:
        Trainer(load_cfg(SUPERVISED, base + ["TRAIN.RESUME", "True"] + change), SUPERVISED,
                DistInfo(), progress=False).setup()
    assert os.path.join(first.out_dir, "checkpoint.pth.tar") in str(err.value)
    # unchanged, it resumes
    Trainer(load_cfg(SUPERVISED, base + ["TRAIN.RESUME", "True"]), SUPERVISED, DistInfo(),
            progress=False).setup()


def test_disk_full_names_the_file_and_keeps_the_previous_one(tmp_path, monkeypatch):
    from semipose.engine import checkpoint as ckpt_mod
    path = str(tmp_path / "checkpoint.pth.tar")
    ckpt_mod.atomic_torch_save({"epoch": 1}, path)

    def full(obj, f):
        f.write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 64 vs 12")
    monkeypatch.setattr(ckpt_mod.torch, "save", full)
    with pytest.raises(OSError, match=re.escape(f"no space left on device while writing {path}; "
                                                "the previous checkpoint.pth.tar is intact")):
        ckpt_mod.atomic_torch_save({"epoch": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=False) == {"epoch": 1}
    assert os.listdir(tmp_path) == ["checkpoint.pth.tar"]  # no temporary file left


def test_nonfinite_weights_never_become_model_best(root, tmp_path, capsys):
    from semipose.engine.state import save_state
    out = str(tmp_path / "out")
    trainer = Trainer(load_cfg(SUPERVISED, _args(root, out)[3:]), SUPERVISED, DistInfo(),
                      progress=False)
    trainer.setup()
    save_state(trainer, 1, 0, is_best=True)
    best = os.path.join(trainer.out_dir, "model_best.pth.tar")
    good = torch.load(best, weights_only=True)
    with torch.no_grad():
        next(trainer.method.nets["net1"].parameters()).fill_(float("nan"))
    capsys.readouterr()
    save_state(trainer, 2, 0, is_best=True)
    err = capsys.readouterr().err
    assert "NaN/inf" in err and "model_best is not updated" in err
    kept = torch.load(best, weights_only=True)
    assert all(torch.equal(kept[k], good[k]) for k in good)  # still the finite weights
    assert load_resume_state(trainer.out_dir)["epoch"] == 2  # the checkpoint keeps the NaNs


def test_a_live_run_folder_is_locked(root, tmp_path):
    import socket
    import subprocess
    import sys
    out = str(tmp_path / "out")
    opts = _args(root, out, "TRAIN.RESUME", "True")[3:]
    first = Trainer(load_cfg(SUPERVISED, opts), SUPERVISED, DistInfo(), progress=False)
    first.fit()  # leaves a checkpoint; the next RESUME picks the same folder
    lock = os.path.join(first.out_dir, ".lock")
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with open(lock, "w") as f:
            f.write(f"{socket.gethostname()} {other.pid}\n")
        tmp_file = os.path.join(first.out_dir, ".tmp_in_flight_checkpoint")
        open(tmp_file, "w").close()
        with pytest.raises(ValueError, match=f"in use by process {other.pid}"):
            Trainer(load_cfg(SUPERVISED, opts), SUPERVISED, DistInfo(), progress=False).setup()
        assert os.path.exists(tmp_file)  # the live run's temporary file is left alone
    finally:
        other.kill()
        other.wait()
    # the same lock from a process that is gone is taken over
    resumed = Trainer(load_cfg(SUPERVISED, opts), SUPERVISED, DistInfo(), progress=False)
    resumed.setup()
    assert resumed.out_dir == first.out_dir
    with open(lock) as f:
        assert f.read().split() == [socket.gethostname(), str(os.getpid())]


# ------------------------------------------------------------------------ files named in errors
def _ann_file(root: str, split: str = "train2017") -> str:
    return os.path.join(root, "coco", "annotations", f"person_keypoints_{split}.json")


@pytest.mark.parametrize("damage, needle", [
    ("invalid_json", "is not valid JSON"), ("list", "holds a list at top level"),
    ("no_images", "has no 'images' list"), ("short_keypoints", "has 50 'keypoints' values")])
def test_bad_annotation_json_is_named(root, tmp_path, capsys, damage, needle):
    path = _ann_file(root)
    with open(path) as f:
        ann = json.load(f)
    if damage == "invalid_json":
        text = json.dumps(ann)[:-20]
    elif damage == "list":
        text = json.dumps(ann["annotations"])
    elif damage == "no_images":
        text = json.dumps({"annotations": ann["annotations"]})
    else:
        ann["annotations"][0]["keypoints"] = ann["annotations"][0]["keypoints"][:50]
        text = json.dumps(ann)
    with open(path, "w") as f:
        f.write(text)
    line = _train_fails(capsys, _args(root, str(tmp_path / "out")), path, needle)
    if damage == "short_keypoints":
        assert f"annotation {ann['annotations'][0]['id']}" in line


def test_bad_boxes_are_dropped_and_counted(root, tmp_path, capsys):
    """Negative, NaN and zero-size boxes ('Singular matrix' before): dropped with one warning."""
    path = _ann_file(root)
    with open(path) as f:
        ann = json.load(f)
    people = [a for a in ann["annotations"] if max(a["keypoints"]) > 0]
    for a, box in zip(people, ([10, 10, -5, 20], [float("nan"), 1, 2, 3], [3, 4, 0, 0])):
        a["bbox"] = box
    with open(path, "w") as f:
        json.dump(ann, f)
    out = str(tmp_path / "out")
    assert train_cli.main(_args(root, out, "DATASET.TRAIN_LEN", "0", "TRAIN.END_EPOCH", "1")) == 0
    err = capsys.readouterr().err
    assert f"{path}: dropped 3 person(s) with a missing, non-finite or empty 'bbox'" in err


@pytest.mark.parametrize("damage, needle", [
    ("invalid_json", "is not valid JSON"), ("dict", "holds a dict; expected a list"),
    ("no_score", "entry 0 lacks ['score']"), ("other_images", "holds no boxes of val2017 images")])
def test_bad_detection_json_is_named(root, tmp_path, capsys, damage, needle):
    weights = _save_weights(tmp_path)
    det = str(tmp_path / "dets.json")
    with open(_det(root)) as f:
        dets = json.load(f)
    if damage == "invalid_json":
        text = "[{"
    elif damage == "dict":
        text = json.dumps({"detections": dets})
    elif damage == "no_score":
        del dets[0]["score"]
        text = json.dumps(dets)
    else:  # boxes of other images: the WILD configs' unlabeled2017 file given for val2017
        text = json.dumps([dict(d, image_id=d["image_id"] + 10 ** 9) for d in dets])
    with open(det, "w") as f:
        f.write(text)
    args = _args(root, str(tmp_path / "out"), "TEST.MODEL_FILE", weights, "TEST.USE_GT_BBOX",
                 "False", "TEST.COCO_BBOX_FILE", det)  # (KEY VALUE pairs win over flags)
    assert valid_cli.main(args) == 2
    line = _error_line(capsys)
    assert det in line and needle in line
    if damage == "other_images":
        assert "--coco-bbox-file" in line


@pytest.mark.parametrize("damage", ["truncated", "not_torch", "json", "pickled_module"])
@pytest.mark.parametrize("use", ["valid", "pretrained"])
def test_unreadable_checkpoints_are_one_line(root, tmp_path, capsys, damage, use):
    good = _save_weights(tmp_path)
    path = str(tmp_path / f"{damage}.pth")
    with open(good, "rb") as f:
        data = f.read()
    if damage == "truncated":
        blob = data[:len(data) // 3]
    elif damage == "not_torch":
        blob = os.urandom(2048)
    elif damage == "json":
        blob = b'{"state_dict": {}}'
    else:
        torch.save(torch.nn.Linear(2, 2), path)
        blob = None
    if blob is not None:
        with open(path, "wb") as f:
            f.write(blob)
    if use == "valid":
        assert valid_cli.main(_args(root, str(tmp_path / "out"), "TEST.MODEL_FILE", path)) == 2
        line = _error_line(capsys)
    else:
        line = _train_fails(capsys, _args(root, str(tmp_path / "out"), "MODEL.PRETRAINED", path))
    assert path in line and "is not a readable checkpoint" in line
    if damage == "pickled_module":
        assert "state_dict()" in line


def test_valid_reads_the_resumable_checkpoint_without_unsafe_pickles(root, tmp_path, capsys):
    out = str(tmp_path / "out")
    args = _args(root, out, "TRAIN.END_EPOCH", "1")
    assert train_cli.main(args) == 0
    run = latest_run(experiment_dir(load_cfg(SUPERVISED, args[3:]), SUPERVISED))
    ckpt = os.path.join(run, "checkpoint.pth.tar")
    assert valid_cli.main(_args(root, out, "TEST.MODEL_FILE", ckpt)) == 0
    with open(os.path.join(run, "results.md")) as f:
        trained = f.read().split("### net1")[1]
    vdir = os.path.join(os.path.dirname(run), "valid", os.path.basename(run) + "_checkpoint")
    with open(os.path.join(vdir, "results.md")) as f:
        assert f.read().split("### net1")[1] == trained  # the same numbers


def test_two_net_file_of_another_depth_points_at_the_architecture(tmp_path):
    from semipose.models.build import build_net
    from semipose.models.weights import load_checkpoint, nets_state_dict
    dual = os.path.join(ROOT, "experiments", "synthetic", "posedual.yaml")
    r34 = load_cfg(dual, ["MODEL.EXTRA.NUM_LAYERS", "34"])
    state = nets_state_dict({"net1": build_net(r34), "net2": build_net(r34)})
    r18 = load_cfg(dual)
    with pytest.raises(ValueError, match="NUM_LAYERS") as err:
        load_checkpoint(state, {"net1": build_net(r18), "net2": build_net(r18)})
    assert "MODEL.NAME" not in str(err.value)


def test_every_json_reader_names_a_broken_file(tmp_path):
    """MPII / AIC annotations, a resumed run's history: invalid JSON is one ValueError naming
    the file (not a raw JSONDecodeError)."""
    from semipose.data.aic import read_aic_annotations
    from semipose.data.mpii import read_mpii_annotations
    from semipose.engine.log import ScalarLog
    bad = tmp_path / "broken.json"
    bad.write_text('[{"image": "a.jpg", ')
    for reader in (read_aic_annotations, read_mpii_annotations,
                   lambda p: ScalarLog(None, p).load()):
        with pytest.raises(ValueError, match=re.escape(str(bad)) + " is not valid JSON"):
            reader(str(bad))
