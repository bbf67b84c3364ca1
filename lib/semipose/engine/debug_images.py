"""The reference's DEBUG pictures: batch grids with ground-truth / predicted joints and heatmap grids,
written every PRINT_FREQ iterations of training and validation when DEBUG.DEBUG is on.

Files go to ``<run folder>/debug/`` as ``{train,val}_<iteration>_{gt,pred,hm_gt,hm_pred}.jpg``
(overwritten each epoch, as the reference does). For PoseCons / PoseDual training steps also
``train_<i>_easy.jpg`` (the unlabeled easy view with the teacher's joints), ``_hard.jpg`` (the hard
view after cutout and the hard affine, with the student's joints), ``_hm_teacher.jpg`` (the teacher
heatmaps warped into the hard view: the consistency target) and ``_hm_student.jpg``: a collapsing
run shows flat teacher maps here first.
"""
from __future__ import annotations

import math
import os
from typing import Mapping, Optional, Sequence

import cv2
import numpy as np
import torch
from yacs.config import CfgNode

from ..methods.base import labeled_part
from ..transforms.batch import max_preds_tensor
from ..transforms.sample import IMAGENET_MEAN, IMAGENET_STD
from ..types import StepOutput
from ..utils.io import atomic_write

MAX_SAMPLES = 16  # per picture: enough to judge a batch, small enough to open quickly
HEATMAP_ROWS = 8


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Normalised crops [N, 3, H, W] -> uint8 [N, H, W, 3] in the decoded channel order."""
    x = images.detach().float().cpu().numpy().transpose(0, 2, 3, 1)
    x = x * np.asarray(IMAGENET_STD, np.float32) + np.asarray(IMAGENET_MEAN, np.float32)
    return np.clip(x * 255.0, 0, 255).astype(np.uint8)


def _write_jpg(img: np.ndarray, path: str) -> None:
    ok, buf = cv2.imencode(".jpg", img)
    if ok:
        atomic_write(path, lambda f: f.write(buf.tobytes()), durable=False)


def batch_image_grid(images: torch.Tensor, joints: np.ndarray, vis: Optional[np.ndarray],
                     nrow: int = 8, padding: int = 2) -> np.ndarray:
    """Grid of crops with joints [N, J, 2] (crop pixels) drawn where vis [N, J] > 0."""
    imgs = to_uint8(images[:MAX_SAMPLES])
    n, h, w = imgs.shape[:3]
    cols = min(nrow, n)
    rows = math.ceil(n / cols)
    grid = np.zeros((rows * (h + padding) + padding, cols * (w + padding) + padding, 3), np.uint8)
    for k in range(n):
        tile = np.ascontiguousarray(imgs[k])
        for j in range(joints.shape[1]):
            if vis is None or vis[k, j] > 0:
                x, y = joints[k, j]
                cv2.circle(tile, (int(x), int(y)), 2, (0, 0, 255), -1)
        r, c = divmod(k, cols)
        y0, x0 = padding + r * (h + padding), padding + c * (w + padding)
        grid[y0:y0 + h, x0:x0 + w] = tile
    return grid


def heatmap_grid(images: torch.Tensor, heatmaps: torch.Tensor) -> np.ndarray:
    """One row per sample: the crop (heatmap size) with each joint's argmax, then every joint's
    heatmap in colour over the crop (the reference's save_batch_heatmaps layout)."""
    n = min(HEATMAP_ROWS, images.shape[0])
    imgs = to_uint8(images[:n])
    hm = heatmaps[:n].detach().float().cpu()
    coords, maxvals = max_preds_tensor(hm)
    hm = hm.clamp(0, 1).mul(255).byte().numpy()
    j, h, w = hm.shape[1:]
    grid = np.zeros((n * h, (j + 1) * w, 3), np.uint8)
    for k in range(n):
        small = cv2.resize(imgs[k], (w, h))
        first = small.copy()
        for q in range(j):
            x, y = coords[k, q].tolist()
            cv2.circle(first, (int(x), int(y)), 1, (0, 0, 255), -1)
            coloured = cv2.applyColorMap(np.ascontiguousarray(hm[k, q]), cv2.COLORMAP_JET)
            cell = (coloured * 0.7 + small * 0.3).astype(np.uint8)
            cv2.circle(cell, (int(x), int(y)), 1, (0, 0, 255), -1)
            grid[k * h:(k + 1) * h, (q + 1) * w:(q + 2) * w] = cell
        grid[k * h:(k + 1) * h, :w] = first
    return grid


def _joints_px(heatmaps: torch.Tensor, image_hw: Sequence[int]) -> np.ndarray:
    """Argmax of heatmaps [N, J, h, w] in crop pixels [N, J, 2]."""
    coords, _ = max_preds_tensor(heatmaps.detach().float().cpu())
    stride = np.array([image_hw[1] / heatmaps.shape[3], image_hw[0] / heatmaps.shape[2]])
    return coords.numpy() * stride


class DebugImages:
    """Writes the DEBUG pictures of ``cfg`` into ``<out_dir>/debug``; a no-op when DEBUG.DEBUG is
    off. Call ``due(i)`` first: pictures are made every PRINT_FREQ iterations (i % PRINT_FREQ == 0)."""

    def __init__(self, cfg: CfgNode, out_dir: str):
        d = cfg.DEBUG
        self.enabled = bool(d.DEBUG)
        self.gt, self.pred = bool(d.SAVE_BATCH_IMAGES_GT), bool(d.SAVE_BATCH_IMAGES_PRED)
        self.hm_gt, self.hm_pred = bool(d.SAVE_HEATMAPS_GT), bool(d.SAVE_HEATMAPS_PRED)
        self.freq = max(1, int(cfg.PRINT_FREQ))
        self.folder = os.path.join(out_dir, "debug")

    def due(self, i: int) -> bool:
        return self.enabled and i % self.freq == 0

    def _path(self, prefix: str, kind: str) -> str:
        return os.path.join(self.folder, f"{prefix}_{kind}.jpg")

    def save(self, prefix: str, images: torch.Tensor, target: Optional[torch.Tensor],
             target_weight: Optional[torch.Tensor], output: torch.Tensor) -> None:
        """The reference's four pictures of a batch: GT joints (from the target heatmaps' argmax,
        visible where target_weight > 0), predicted joints, GT and predicted heatmaps."""
        hw = images.shape[2:]
        if target is not None and self.gt:
            vis = None if target_weight is None else target_weight.reshape(
                target_weight.shape[0], -1).cpu().numpy()
            _write_jpg(batch_image_grid(images, _joints_px(target, hw), vis),
                       self._path(prefix, "gt"))
        if self.pred:
            _write_jpg(batch_image_grid(images, _joints_px(output, hw), None),
                       self._path(prefix, "pred"))
        if target is not None and self.hm_gt:
            _write_jpg(heatmap_grid(images, target), self._path(prefix, "hm_gt"))
        if self.hm_pred:
            _write_jpg(heatmap_grid(images, output), self._path(prefix, "hm_pred"))

    def train_step(self, i: int, batch: Mapping, out: StepOutput) -> None:
        """Pictures of training iteration ``i`` from the batch and the step's output."""
        lab = labeled_part(batch)
        prefix = f"train_{i}"
        self.save(prefix, lab["image"], lab.get("target"), lab.get("target_weight"),
                  out.sup_heatmaps)
        last = out.debug
        if "hard_images" not in last or "unlabeled" not in batch:
            return
        easy, hard = batch["unlabeled"]["image"], last["hard_images"]
        if self.pred:
            _write_jpg(batch_image_grid(easy, _joints_px(last["teacher_heatmaps"],
                                                         easy.shape[2:]), None),
                       self._path(prefix, "easy"))
            _write_jpg(batch_image_grid(hard, _joints_px(last["student_heatmaps"],
                                                         hard.shape[2:]), None),
                       self._path(prefix, "hard"))
        if self.hm_pred:
            _write_jpg(heatmap_grid(hard, last["teacher_warped"]), self._path(prefix, "hm_teacher"))
            _write_jpg(heatmap_grid(hard, last["student_heatmaps"]),
                       self._path(prefix, "hm_student"))

    def val_batch(self, i: int, batch: Mapping, heatmaps: torch.Tensor) -> None:
        """Pictures of validation batch ``i`` (net 1's heatmaps)."""
        self.save(f"val_{i}", batch["image"], batch.get("target"), batch.get("target_weight"),
                  heatmaps)
