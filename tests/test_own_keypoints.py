"""The "Train on your own keypoints" path of docs/own_keypoints.md, end to end on the CPU, as a
user runs it: a synthetic quadruped project (labels as a DeepLabCut CSV, an unlabeled clip as an
.mp4) -> ``python -m semipose.data.convert dlc`` -> PoseDual trained a few steps with the clip as
the unlabeled set -> valid.py (OKS AP, PCK, pixel error) -> demo.py on the clip and on an image
(the description's skeleton and colours) -> export.py to ONNX (the description stored in it).

Every step is its command-line tool in a subprocess; the model is tiny (64x64 crops, 3 steps), so
the numbers say nothing about accuracy, only that each stage produced real, consistent values.
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import subprocess
import sys
from typing import Sequence

import cv2
import numpy as np
import pytest
import yaml

from semipose.data.meta import dataset_meta
from semipose.data.synthetic import generate
from semipose.data.synthetic_quadruped import META as QUADRUPED

from conftest import ROOT, script_env, tiny, video_frames

POSEDUAL = os.path.join(ROOT, "experiments", "custom", "posedual.yaml")
SCRIPTS = os.path.join(ROOT, "pose_estimation")
# Where docs/own_keypoints.md says train.py leaves the model (relative to OUTPUT_DIR).
DOCS_MODEL = os.path.join("mix_custom", "pose_dual_18", "posedual", "latest", "final_state.pth.tar")
CLIP_FRAMES = 12
EVERY = 3  # DATASET.UNLABELED_EVERY: frames 0, 3, 6, 9 of the clip
# The skeleton's colour, set by hand in dataset.yaml as the docs ask users to edit it: magenta,
# which neither the default palette (the joints) nor the rendered scenes use.
LIMB_RGB = (255, 0, 255)
NETS = ("net1", "net2", "ensemble")


def run(args: Sequence[str], cwd: str) -> str:
    """Run a command-line tool like a user (in ``cwd``); fail with its output unless it exits 0.
    Returns stdout + stderr (the tools log to both)."""
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=script_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(args)} exited {proc.returncode}:\n{proc.stdout}"
    return proc.stdout


def distance_to_segments(points: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """Distance of each point [N, 2] to the nearest segment [E, 2, 2]."""
    a, b = segments[None, :, 0], segments[None, :, 1]
    ab = b - a
    t = np.clip(((points[:, None] - a) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-9), 0, 1)
    nearest = a + t[..., None] * ab
    return np.linalg.norm(points[:, None] - nearest, axis=-1).min(1)


def test_own_keypoints_end_to_end(tmp_path):
    tmp = str(tmp_path)

    # ---------------------------------------------------------------- 1. a synthetic project
    gen = generate(os.path.join(tmp, "project"), seed=0, body="quadruped", preset="light",
                   formats=("custom", "dlc"), num_train=12, num_val=4, num_unlabeled=0,
                   videos=1, clip_frames=CLIP_FRAMES, show_progress=False)
    clip = os.path.join(gen["videos"], "clip00.mp4")
    clip_frames = video_frames(clip)
    assert len(clip_frames) == CLIP_FRAMES
    assert clip_frames[0].shape == (240, 320, 3)

    # ---------------------------------------------------------------- 2. convert the DLC labels
    converted = os.path.join(tmp, "converted")
    skeleton = [f"{QUADRUPED.names[a]},{QUADRUPED.names[b]}" for a, b in QUADRUPED.skeleton]
    out = run(["-m", "semipose.data.convert", "dlc", "--csv", gen["dlc_csv"], "--images-root",
               gen["dlc_project"], "--out", converted, "--val-fraction", "0.25",
               "--skeleton", *skeleton], cwd=tmp)
    # The flip pairs printed for the user to check are exactly the quadruped's left/right pairs.
    printed = re.findall(r"^\s+(\S+) <-> (\S+)$", out, re.M)
    assert printed == [(QUADRUPED.names[a], QUADRUPED.names[b]) for a, b in QUADRUPED.flip_pairs]
    assert "16 bodyparts, one animal per image" in out
    assert "train 12 images / 12 persons, val 4 images / 4 persons" in out
    meta = dataset_meta(os.path.join(converted, "dataset.yaml"))
    assert meta.names == QUADRUPED.names
    assert meta.flip_pairs == QUADRUPED.flip_pairs
    assert meta.skeleton == QUADRUPED.skeleton
    with open(os.path.join(converted, "annotations", "val.json")) as f:
        val = json.load(f)
    assert len(val["images"]) == 4 and len(val["annotations"]) == 4
    # The user's edit after checking the description: the skeleton in its own colour.
    with open(os.path.join(converted, "dataset.yaml"), "a") as f:
        f.write(f"limb_colors: {[list(LIMB_RGB)] * len(QUADRUPED.skeleton)}\n")
    meta = dataset_meta(os.path.join(converted, "dataset.yaml"))
    assert set(meta.limb_colors) == {LIMB_RGB}

    # ---------------------------------------------------------------- 3. train PoseDual
    output = os.path.join(tmp, "output")
    # The same tiny model for every tool (so that valid / demo / export load the weights).
    opts = tiny("DATASET.ROOT", converted, "DATASET.TRAIN_LEN", "-1", "OUTPUT_DIR", output,
                "LOG_DIR", os.path.join(tmp, "log"))
    out = run([os.path.join(SCRIPTS, "train.py"), "--cfg", POSEDUAL, "--no-progress", *opts,
               "DATASET.UNLABELED", gen["videos"], "DATASET.UNLABELED_EVERY", str(EVERY),
               "TRAIN.END_EPOCH", "1", "TRAIN.LR_STEP", "[5]"], cwd=tmp)
    # Frames 0, 3, 6, 9 of the clip were decoded and cached as JPEG beside the video.
    cache = os.path.join(gen["videos"], ".frames_cache", "clip00.mp4")
    cached = sorted(f for f in os.listdir(cache) if f.endswith(".jpg"))
    assert cached == [f"{k:06d}.jpg" for k in range(0, CLIP_FRAMES, EVERY)]
    for name in cached:
        frame = cv2.imread(os.path.join(cache, name))
        assert frame is not None and frame.shape == (240, 320, 3)
    # 12 labeled crops paired with the 4 unlabeled frames: 3 steps of 4.
    assert "train: 12 items/epoch (3 batches); val: 4 persons" in out
    # Each net's table (and the ensemble's) has the custom metrics, a column per joint.
    headers = [line for line in out.splitlines() if line.startswith("| Arch |")]
    assert len(headers) == len(NETS)
    for header in headers:
        columns = [c.strip() for c in header.strip("|").split("|")]
        for col in ["AP", "PCK@0.05", "PCK@0.1", "px error"] + \
                [f"px {name}" for name in QUADRUPED.names]:
            assert col in columns, f"column {col!r} missing from the results table: {header}"
    # The model lies where the docs say (OUTPUT_DIR/.../latest/final_state.pth.tar).
    model = os.path.join(output, DOCS_MODEL)
    assert os.path.isfile(model), os.listdir(os.path.dirname(os.path.dirname(model)))
    run_dir = os.path.dirname(os.path.realpath(model))
    with open(os.path.join(run_dir, "results.json")) as f:
        trained = json.load(f)["rows"]

    # ---------------------------------------------------------------- 4. valid.py
    out = run([os.path.join(SCRIPTS, "valid.py"), "--cfg", POSEDUAL, "--no-progress", *opts,
               "--model-file", model], cwd=tmp)
    found = re.search(r"outputs in (\S+) \(results\.md", out)
    assert found, out
    with open(os.path.join(found.group(1), "results.json")) as f:
        rows = json.load(f)["rows"]
    assert list(rows) == list(NETS)
    for net in NETS:
        m = rows[net]["metrics"]
        values = [m["AP"], m["PCK@0.05"], m["PCK@0.1"], m["px error"]] + \
            [m[f"px {name}"] for name in QUADRUPED.names]
        assert all(isinstance(v, float) and math.isfinite(v) for v in values), m
        assert 0.0 <= m["AP"] <= 1.0
        assert 0.0 <= m["PCK@0.05"] <= m["PCK@0.1"] <= 1.0
        assert m["px error"] > 0.0 and all(m[f"px {name}"] >= 0.0 for name in QUADRUPED.names)
        # px error: the mean over joints of each joint's mean error
        per_joint = [m[f"px {name}"] for name in QUADRUPED.names]
        assert math.isclose(m["px error"], float(np.mean(per_joint)), rel_tol=1e-9)
        assert m["sigma (default)"] == 0.05  # the converted description has no sigmas
        # The same weights on the same val set: what training reported after its last epoch.
        for key, value in m.items():
            assert math.isclose(value, trained[net]["metrics"][key], rel_tol=1e-9, abs_tol=1e-12), \
                (net, key)

    # ---------------------------------------------------------------- 5. demo.py
    # The few-step model's confidences are about 0.002: --kpt-thre=-1 draws every joint and
    # limb at full strength (below the threshold they are blended in, not in their colour).
    demo = os.path.join(tmp, "demo")
    out = run([os.path.join(SCRIPTS, "demo.py"), "--cfg", POSEDUAL, "--no-progress", *opts,
               "--model-file", model, "--video", clip, "--out", demo, "--kpt-thre=-1"], cwd=tmp)
    assert f"{CLIP_FRAMES} frames, {CLIP_FRAMES} persons ({meta.name} joints)" in out
    drawn = video_frames(os.path.join(demo, "clip00_pose.mp4"))
    assert len(drawn) == CLIP_FRAMES
    limb_bgr = np.array(LIMB_RGB[::-1])
    for k, (before, after) in enumerate(zip(clip_frames, drawn)):
        assert after.shape == before.shape
        # The skeleton's colour (within the MPEG-4 coding error) is in every drawn frame and in
        # none of the clip's frames.
        near = [int((np.abs(f.astype(int) - limb_bgr).max(-1) < 60).sum()) for f in (before, after)]
        assert near[0] == 0 and near[1] > 200, f"frame {k}: limb-coloured pixels {near}"
    with open(os.path.join(demo, "keypoints_results.json")) as f:
        results = json.load(f)
    assert [r["image_id"] for r in results] == list(range(CLIP_FRAMES))
    for r in results:
        kpts = np.asarray(r["keypoints"], float).reshape(-1, 3)
        assert kpts.shape == (16, 3) and np.isfinite(kpts).all()
        assert r["bbox"] == [0.0, 0.0, 320.0, 240.0]  # no boxes given: the whole frame

    # On a lossless PNG: the skeleton is the description's, in its colour (not COCO's).
    image = os.path.join(converted, "images", *val["images"][0]["file_name"].split("/"))
    demo_img = os.path.join(tmp, "demo_image")
    run([os.path.join(SCRIPTS, "demo.py"), "--cfg", POSEDUAL, "--no-progress", *opts,
         "--model-file", model, "--image", image, "--out", demo_img, "--net", "ensemble",
         "--kpt-thre=-1"], cwd=tmp)
    stem = os.path.splitext(os.path.basename(image))[0]
    before = cv2.imread(image)
    after = cv2.imread(os.path.join(demo_img, stem + ".png"))
    assert after.shape == before.shape
    assert not (before == limb_bgr).all(-1).any()  # the colour is not in the scene
    ys, xs = np.nonzero((after == limb_bgr).all(-1))
    assert len(xs) > 30, f"only {len(xs)} pixels in the skeleton's colour"
    with open(os.path.join(demo_img, "keypoints_results.json")) as f:
        (result,) = json.load(f)
    kpts = np.asarray(result["keypoints"], float).reshape(-1, 3)[:, :2]
    segments = np.stack([[kpts[a], kpts[b]] for a, b in QUADRUPED.skeleton])
    # Every pixel of that colour lies on one of the quadruped's limbs (a 2-px anti-aliased line).
    assert distance_to_segments(np.stack([xs, ys], 1).astype(float), segments).max() < 3.0

    # ---------------------------------------------------------------- 6. export.py to ONNX
    if importlib.util.find_spec("onnx") is None or importlib.util.find_spec("onnxruntime") is None:
        pytest.skip("stage 6 (ONNX export) skipped: onnx / onnxruntime are not installed "
                    "(pip install -e '.[export]'); stages 1-5 passed")
    from semipose.engine.export import exported_joint_space

    onnx_file = os.path.join(tmp, "quadruped.onnx")
    out = run([os.path.join(SCRIPTS, "export.py"), "--cfg", POSEDUAL, "--no-progress", *opts,
               "--model-file", model, "--net", "ensemble", "--out", onnx_file], cwd=tmp)
    assert f"{meta.name} joints" in out
    space = exported_joint_space(onnx_file)
    assert space.names == QUADRUPED.names
    assert space.flip_pairs == QUADRUPED.flip_pairs and space.skeleton == QUADRUPED.skeleton
    with open(os.path.join(converted, "dataset.yaml")) as f:
        assert space.name == yaml.safe_load(f)["name"] == "converted"
