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


def _side_colour(name: str) -> tuple:
    return _LEFT if name[0] == "l" else _RIGHT if name[0] == "r" else _MID


def draw_pose(img: np.ndarray, kpts: np.ndarray, joint_set: JointSet, thr: float = 0.2,
              fade: bool = False, scale: float = 1.0) -> None:
    """Draw kpts [J, 3] (x, y, score) on a BGR image in place.

    Limbs and joints are coloured by side (left blue, right orange, centre green); a joint's dot
    grows with its confidence. Joints below ``thr`` are skipped, or with ``fade`` drawn at 35%
    opacity (with their limbs) so that uncertain parts stay visible but read as uncertain.
    ``scale`` multiplies line widths and dot sizes (for large images).
    """
    names, edges = joint_set.names, _edges(joint_set)
    used = sorted({j for e in edges for j in e}) or list(range(len(kpts)))
    conf = np.nan_to_num(kpts[:, 2].astype(np.float64), nan=0.0)
    pt = lambda j: (int(round(kpts[j, 0])), int(round(kpts[j, 1])))  # noqa: E731
    width = max(1, int(round(2 * scale)))

    def paint(canvas: np.ndarray, strong: bool) -> None:
        for a, b in edges:
            if (min(conf[a], conf[b]) > thr) == strong:
                cv2.line(canvas, pt(a), pt(b), _side_colour(names[a]), width, cv2.LINE_AA)
        for j in used:
            if (conf[j] > thr) == strong:
                r = max(2, int(round(scale * (2 + 3 * min(max(conf[j], 0.0), 1.0)))))
                cv2.circle(canvas, pt(j), r, _side_colour(names[j]), -1, cv2.LINE_AA)
                cv2.circle(canvas, pt(j), r, (255, 255, 255), 1, cv2.LINE_AA)

    if fade and (conf <= thr).any():
        overlay = img.copy()
        paint(overlay, strong=False)
        cv2.addWeighted(overlay, 0.35, img, 0.65, 0, dst=img)
    paint(img, strong=True)


def draw_people(img: np.ndarray, kpts: np.ndarray, boxes: Sequence[Sequence[float]],
                scores: Sequence[float], joint_set: JointSet, thr: float = 0.2,
                legend: str = "") -> np.ndarray:
    """A copy of a BGR image with every person's box, skeleton (low-confidence joints faded) and
    score, plus a colour legend and the ``legend`` text in the top-left corner."""
    out = img.copy()
    scale = max(1.0, min(out.shape[:2]) / 400.0)
    font, fs, th = cv2.FONT_HERSHEY_SIMPLEX, 0.4 * scale, max(1, int(scale))
    for person, box, score in zip(kpts, boxes, scores):
        x, y, w, h = (int(round(v)) for v in box)
        cv2.rectangle(out, (x, y), (x + w, y + h), (200, 200, 200), 1)
        draw_pose(out, person, joint_set, thr, fade=True, scale=scale)
        cv2.putText(out, f"{score:.2f}", (x + 2, y + int(12 * scale)), font, fs,
                    (255, 255, 255), th, cv2.LINE_AA)
    lines = [("left", _LEFT), ("right", _RIGHT)] + ([(legend, (255, 255, 255))] if legend else [])
    for k, (text, col) in enumerate(lines):
        org = (4, int((14 + 14 * k) * scale))
        cv2.putText(out, text, org, font, fs, (0, 0, 0), th + 2, cv2.LINE_AA)
        cv2.putText(out, text, org, font, fs, col, th, cv2.LINE_AA)
    return out


def encode_png(img: np.ndarray, path: str) -> None:
    """Write a BGR image as PNG atomically."""
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise ValueError(f"could not encode an image of shape {img.shape} for {path}")
    atomic_write(path, lambda f: f.write(buf.tobytes()))


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
    encode_png(np.concatenate(rows, axis=0), path)


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
