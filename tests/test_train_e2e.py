"""End to end on CPU: train on a tiny generated COCO-format set, resume, and score with valid.py."""
from __future__ import annotations

import glob
import json
import math
import os
import re

import pytest
import torch

from semipose.config import load_cfg
from semipose.data.synthetic import generate
from semipose.engine.log import Throughput
from semipose.engine.trainer import Trainer
from semipose.engine.validate import evaluate_checkpoint
from semipose.models.weights import to_reference_state_dict
from semipose.utils.dist import DistInfo

from conftest import synthetic_opts, tiny

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUPERVISED = os.path.join(ROOT, "experiments", "synthetic", "supervised.yaml")
POSEDUAL = os.path.join(ROOT, "experiments", "synthetic", "posedual.yaml")
POSECONS = os.path.join(ROOT, "experiments", "synthetic", "posecons.yaml")

TINY = tiny("PRINT_FREQ", "2", "CUDNN.DETERMINISTIC", "True")


def _cfg(path: str, root: str, out: str, *extra: str):
    return load_cfg(path, synthetic_opts(root, out, TINY, *extra))


def _fit(cfg, path: str):
    trainer = Trainer(cfg, path, DistInfo(), progress=False)
    trainer.setup()  # builds the run and resumes (what fit does first)
    trainer.begin_epoch = trainer.state.epoch  # the epoch training starts from
    results = trainer.fit()
    return trainer, results


def test_throughput_window():
    speed = Throughput(now=100.0)
    for _ in range(20):
        speed.add(32)
    assert speed.rate(now=102.0) == pytest.approx(320.0)  # 640 samples in 2 s
    assert speed.step_time == pytest.approx(0.1)  # 20 steps in 2 s
    speed.add(16)  # a new window from 102 s
    speed.add(48, steps=3)
    assert speed.rate(now=102.5) == pytest.approx(128.0)
    assert speed.step_time == pytest.approx(0.125)  # 4 steps in 0.5 s
    assert speed.rate(now=103.0) == 0.0 and speed.step_time == 0.0


def test_supervised_train_resume_and_valid(data_root, tmp_path):
    out = str(tmp_path / "out")
    cfg1 = _cfg(SUPERVISED, data_root, out, "TRAIN.END_EPOCH", "1", "TRAIN.LR_STEP", "[1]",
                "SAVE_INTER", "1")
    t1, _ = _fit(cfg1, SUPERVISED)
    ckpt = torch.load(os.path.join(t1.out_dir, "checkpoint.pth.tar"), weights_only=False)
    assert ckpt["epoch"] == 1 and ckpt["iteration"] == 0
    assert os.path.exists(os.path.join(t1.out_dir, "config.yaml"))
    assert os.path.exists(os.path.join(t1.out_dir, "State_epoch0.pth.tar"))  # SAVE_INTER 1
    # a log line every PRINT_FREQ (2) steps, with the samples/s of its window
    with open(glob.glob(os.path.join(t1.out_dir, "*_train.log"))[0]) as f:
        lines = re.findall(r"Time ([0-9.]+)s \([0-9.]+s\)\tSpeed ([0-9.]+) samples/s", f.read())
    assert len(lines) == math.ceil(len(t1.run.train_loader) / 2)
    # Window speed > 0, and the window's step time agrees with it: speed x step time = samples
    # per step, the batch size (less in the window holding the epoch's last, smaller batch),
    # up to the rounding of the printed digits.
    batch = cfg1.TRAIN.BATCH_SIZE
    for k, (step_time, speed) in enumerate((float(a), float(b)) for a, b in lines):
        assert speed > 0 and step_time > 0
        slack = speed * 0.0005 + step_time * 0.05 + 1e-6
        if k < len(lines) - 1:
            assert abs(speed * step_time - batch) <= slack
        else:
            assert speed * step_time <= batch + slack

    cfg2 = _cfg(SUPERVISED, data_root, out, "TRAIN.END_EPOCH", "2", "TRAIN.LR_STEP", "[1]",
                "TRAIN.RESUME", "True")
    t2, results = _fit(cfg2, SUPERVISED)
    assert t2.begin_epoch == 1  # continued, did not restart
    ckpt = torch.load(os.path.join(t2.out_dir, "checkpoint.pth.tar"), weights_only=False)
    assert ckpt["epoch"] == 2
    # LR of the second epoch follows the step schedule (1e-3 * 0.1 after milestone 1).
    assert t2.run.optimizer.param_groups[0]["lr"] == pytest.approx(cfg2.TRAIN.LR * 0.1)
    for name in ("final_state.pth.tar", "model_best.pth.tar", "results.md",
                 "training_curves.png", "predictions.png", "history.json"):
        assert os.path.exists(os.path.join(t2.out_dir, name)), name
    # valid.py on the final weights reproduces the training-time validation numbers.
    cfg3 = _cfg(SUPERVISED, data_root, out, "TEST.MODEL_FILE",
                os.path.join(t2.out_dir, "final_state.pth.tar"))
    again = evaluate_checkpoint(cfg3, SUPERVISED, DistInfo(), progress=False)
    assert list(again) == ["net1"]
    assert dict(again["net1"][0]) == pytest.approx(dict(results["net1"][0]), abs=1e-9)
    # The same weights saved in the reference's pose_resnet layout ('module.' prefix and a
    # 'state_dict' wrapper, as DataParallel checkpoints have) score the same.
    ref = to_reference_state_dict(t2.method.nets, "pose_resnet")
    ref_file = str(tmp_path / "reference_layout.pth.tar")
    torch.save({"state_dict": {"module." + k: v for k, v in ref.items()}}, ref_file)
    cfg4 = _cfg(SUPERVISED, data_root, out, "TEST.MODEL_FILE", ref_file)
    ref_results = evaluate_checkpoint(cfg4, SUPERVISED, DistInfo(), progress=False)
    assert dict(ref_results["net1"][0]) == pytest.approx(dict(results["net1"][0]), abs=1e-9)


@pytest.mark.parametrize("path", [POSECONS, POSEDUAL])
def test_semi_methods_short_run(data_root, tmp_path, path):
    out = str(tmp_path / "out")
    # width, cutout and LR pinned: the loss must fall whatever the shipped configs choose
    cfg = _cfg(path, data_root, out, "TRAIN.END_EPOCH", "2", "TRAIN.LR_STEP", "[5]",
               "TRAIN.LR", "0.002", "MODEL.EXTRA.BASE_WIDTH", "64",
               "MASK_JOINT_NUM", "5" if "dual" in path else "0", "DEBUG.DEBUG", "True",
               "DEBUG.SAVE_BATCH_IMAGES_GT", "True", "DEBUG.SAVE_BATCH_IMAGES_PRED", "True",
               "DEBUG.SAVE_HEATMAPS_GT", "True", "DEBUG.SAVE_HEATMAPS_PRED", "True")
    trainer, results = _fit(cfg, path)
    nets = ["net1", "net2", "ensemble"] if "dual" in path else ["net1"]
    assert list(results) == nets
    for net in nets:
        metrics, ap = results[net]
        assert len(metrics) == 10 and 0.0 <= ap <= 1.0
    with open(os.path.join(trainer.out_dir, "history.json")) as f:
        hist = json.load(f)
    losses = [v for _, v in hist["epoch/loss"]]
    assert len(losses) == 2 and losses[1] < losses[0]
    assert any(k.startswith("monitor/net1/collapse_frac") for k in hist)
    assert "train/loss_cons" in hist and "train/loss_pose" in hist
    _check_debug_pictures(os.path.join(trainer.out_dir, "debug"), cfg,
                          len(trainer.run.train_loader), len(trainer.run.val_loader))


def _check_debug_pictures(folder: str, cfg, train_batches: int, val_batches: int) -> None:
    """DEBUG pictures every PRINT_FREQ iterations: reference kinds for train and val, plus the
    easy / hard views and teacher / student heatmaps of a semi-supervised step."""
    import cv2
    w, h = cfg.MODEL.IMAGE_SIZE
    hw, hh = cfg.MODEL.EXTRA.HEATMAP_SIZE
    j = cfg.MODEL.NUM_JOINTS
    kinds = {"train": ["gt", "pred", "hm_gt", "hm_pred", "easy", "hard", "hm_teacher",
                       "hm_student"], "val": ["gt", "pred", "hm_gt", "hm_pred"]}
    counts = {"train": train_batches, "val": val_batches}
    names = set(os.listdir(folder))
    for split, kind_list in kinds.items():
        iters = [i for i in range(counts[split]) if i % cfg.PRINT_FREQ == 0]
        for i in iters:
            for kind in kind_list:
                name = f"{split}_{i}_{kind}.jpg"
                assert name in names, name
                img = cv2.imread(os.path.join(folder, name))
                if kind.startswith("hm"):  # one row per crop, the crop then J heatmaps
                    assert img.shape[1] == (j + 1) * hw and img.shape[0] % hh == 0, name
                else:  # crops in a grid with 2 px borders
                    assert (img.shape[1] - 2) % (w + 2) == 0 and (img.shape[0] - 2) % (h + 2) == 0
                assert img.std() > 5, f"{name} is blank"
        # joints are drawn in red on the crops
        pred = cv2.imread(os.path.join(folder, f"{split}_0_pred.jpg")).astype(int)
        red = (pred[..., 2] > 180) & (pred[..., 1] < 90) & (pred[..., 0] < 90)
        assert red.sum() > 0
    assert not any(n.startswith(".tmp") for n in names)


def test_exact_resume_equals_uninterrupted(data_root, tmp_path):
    """2 epochs == 1 epoch + resume + 1 epoch: same per-step losses and same final weights."""
    extra = ["TRAIN.LR_STEP", "[5]", "MASK_JOINT_NUM", "2", "TEST.INTERVAL", "5"]
    a = _cfg(POSEDUAL, data_root, str(tmp_path / "a"), "TRAIN.END_EPOCH", "2", *extra)
    ta, _ = _fit(a, POSEDUAL)
    b1 = _cfg(POSEDUAL, data_root, str(tmp_path / "b"), "TRAIN.END_EPOCH", "1", *extra)
    _fit(b1, POSEDUAL)
    b2 = _cfg(POSEDUAL, data_root, str(tmp_path / "b"), "TRAIN.END_EPOCH", "2",
              "TRAIN.RESUME", "True", *extra)
    tb, _ = _fit(b2, POSEDUAL)
    ha = ta.scalars.history["train/loss"]
    hb = tb.scalars.history["train/loss"]
    assert [s for s, _ in ha] == [s for s, _ in hb]
    assert [v for _, v in ha] == [v for _, v in hb]
    sa, sb = ta.method.nets.state_dict(), tb.method.nets.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_mpii_aic_posedual_short_run_ends_with_pckh_table(tmp_path):
    root = str(tmp_path / "synthetic")
    generate(root, seed=1, num_train=8, num_val=4, num_unlabeled=8, show_progress=False,
             formats=("mpii", "aic"))
    path = os.path.join(ROOT, "experiments", "synthetic", "posedual_mpii_aic.yaml")
    out = str(tmp_path / "out")
    cfg = load_cfg(path, TINY + ["DATASET.ROOT", root, "OUTPUT_DIR", out, "LOG_DIR",
                                 os.path.join(out, "tb"), "TRAIN.END_EPOCH", "1"])
    trainer, results = _fit(cfg, path)
    assert list(results) == ["net1", "net2", "ensemble"]
    for net, (metrics, mean) in results.items():
        assert list(metrics)[:8] == ["Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee",
                                     "Ankle", "Mean"]
        assert 0.0 <= mean <= 100.0
    for name in ("pred.mat", "head2_pred.mat", "ensemble_pred.mat"):
        assert os.path.exists(os.path.join(trainer.out_dir, name)), name
    with open(os.path.join(trainer.out_dir, "results.md")) as f:
        assert "| Arch | Head | Shoulder |" in f.read()
