"""Figures of a finished run: a grid of val crops with predicted skeletons, and training curves."""
from __future__ import annotations

from typing import Any, Dict, List, Sequence

import cv2
import numpy as np

from ..data.imageio import read_image
from ..data.keypoints import COCO, COCO_SKELETON, JointSet, slots_in
from ..transforms.affine import affine_points, get_affine_transform
from ..utils.io import atomic_write

_LEFT, _RIGHT, _MID = (60, 120, 255), (255, 160, 40), (80, 230, 80)  # BGR


def _edges(joint_set: JointSet) -> List[tuple]:
    """COCO skeleton edges expressed in ``joint_set`` indices (edges it lacks are dropped)."""
    idx = slots_in(joint_set, COCO)
    return [(int(idx[a]), int(idx[b])) for a, b in COCO_SKELETON if idx[a] >= 0 and idx[b] >= 0]


def draw_pose(img: np.ndarray, kpts: np.ndarray, joint_set: JointSet, thr: float = 0.2) -> None:
    """Draw kpts [J, 3] (x, y, score) on a BGR image in place; joints below ``thr`` are skipped."""
    names = joint_set.names
    for a, b in _edges(joint_set):
        if kpts[a, 2] > thr and kpts[b, 2] > thr:
            side = names[a][0]
            col = _LEFT if side == "l" else _RIGHT if side == "r" else _MID
            cv2.line(img, tuple(int(v) for v in kpts[a, :2]), tuple(int(v) for v in kpts[b, :2]),
                     col, 2, cv2.LINE_AA)
    for j in range(len(kpts)):
        if kpts[j, 2] > thr and j in {e for pair in _edges(joint_set) for e in pair}:
            cv2.circle(img, (int(kpts[j, 0]), int(kpts[j, 1])), 3, (255, 255, 255), -1)


def save_prediction_grid(val_set: Any, pred: Dict[str, Any], path: str, num: int = 16,
                         net: str = "net1", tile: Sequence[int] = (144, 192)) -> None:
    """PNG grid of the first ``num`` val persons, each cropped around its box, with ``net``'s
    predicted skeleton (image-pixel predictions drawn, then the crop warped to ``tile`` [w, h])."""
    kpts_all = pred["preds"][net]
    order = np.argsort(pred["index"])[:num]
    tiles = []
    for k in order:
        rec = val_set.records[int(pred["index"][k])]
        img = read_image(rec["image"]).copy()
        kpts = kpts_all[k].copy()
        trans = get_affine_transform(rec["center"], rec["scale"], 0, tile)
        crop = cv2.warpAffine(img, trans, (int(tile[0]), int(tile[1])), flags=cv2.INTER_LINEAR)
        kpts[:, :2] = affine_points(kpts[:, :2], trans)
        draw_pose(crop, kpts, val_set.joint_set)
        tiles.append(crop)
    if not tiles:
        return
    cols = 4
    while len(tiles) % cols:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.concatenate(tiles[r:r + cols], axis=1) for r in range(0, len(tiles), cols)]
    _, buf = cv2.imencode(".png", np.concatenate(rows, axis=0))
    atomic_write(path, lambda f: f.write(buf.tobytes()))


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display needed), imported on demand."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig: Any, path: str, dpi: int = 90) -> None:
    """Write a matplotlib figure as PNG atomically, then free it."""
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=dpi))
    pyplot().close(fig)


def save_curves(history: Dict[str, List[List[float]]], path: str) -> None:
    """PNG with per-epoch loss terms and validation AP / metric per network."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for tag, pts in sorted(history.items()):
        if tag.startswith("train/loss"):
            arr = np.asarray(pts)
            axes[0].plot(arr[:, 0], arr[:, 1], label=tag.split("/", 1)[1], alpha=0.8)
        main = tag.split("/", 1)[-1] in ("AP", "Mean")
        if tag.startswith("val_") and main:
            arr = np.asarray(pts)
            axes[1].plot(arr[:, 0] + 1, arr[:, 1], marker="o", label=tag.split("/")[0][4:])
    axes[0].set(title="training losses", xlabel="step", yscale="log")
    axes[1].set(title="validation (AP / PCKh mean)", xlabel="epoch")
    for ax in axes:
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
