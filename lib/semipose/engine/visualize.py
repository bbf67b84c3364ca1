"""Figures of a finished run: a grid of val crops with predicted skeletons, and training curves."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from ..data.imageio import read_image
from ..data.meta import DEFAULT_PALETTE, DatasetMeta
from ..transforms.affine import affine_points, get_affine_transform
from ..utils.io import atomic_write

# The skeleton, the colours and the legend come from the joint set's description (palette RGB,
# drawn by OpenCV in BGR).


def _bgr(rgb: Sequence[int]) -> Tuple[int, int, int]:
    return (int(rgb[2]), int(rgb[1]), int(rgb[0]))


_LEFT = _bgr(dict(DEFAULT_PALETTE)["left"])  # the built-in sets' left side, BGR


def legend_colours(meta: DatasetMeta, sides_only: bool = False) -> List[Tuple[str, tuple]]:
    """(palette name, BGR) of the colours the joints are drawn in; ``sides_only`` keeps those of
    flip-paired joints (the colours that tell a joint from its mirror twin)."""
    used = {meta.joint_colors[j] for pair in meta.flip_pairs for j in pair} if sides_only \
        else set(meta.joint_colors) | set(meta.limb_colors)
    return [(name, _bgr(c)) for name, c in meta.palette if c in used]


def draw_pose(img: np.ndarray, kpts: np.ndarray, joint_set: DatasetMeta, thr: float = 0.2,
              fade: bool = False, scale: float = 1.0) -> None:
    """Draw kpts [J, 3] (x, y, score) on a BGR image in place.

    The joint set's skeleton is drawn in its limb colours and the joints it connects (all joints
    when it has no skeleton) in their joint colours (built-in sets: left orange, right blue,
    centre green); a joint's dot grows with its confidence. Joints below ``thr`` are skipped, or
    with ``fade`` drawn at 35% opacity (with their limbs) so that uncertain parts stay visible but
    read as uncertain. ``scale`` multiplies line widths and dot sizes (for large images).
    """
    edges = joint_set.skeleton
    limb_bgr = [_bgr(c) for c in joint_set.limb_colors]
    joint_bgr = [_bgr(c) for c in joint_set.joint_colors]
    used = sorted({j for e in edges for j in e}) or list(range(len(kpts)))
    conf = np.nan_to_num(kpts[:, 2].astype(np.float64), nan=0.0)
    pt = lambda j: (int(round(kpts[j, 0])), int(round(kpts[j, 1])))  # noqa: E731
    width = max(1, int(round(2 * scale)))

    def paint(canvas: np.ndarray, strong: bool) -> None:
        for (a, b), colour in zip(edges, limb_bgr):
            if (min(conf[a], conf[b]) > thr) == strong:
                cv2.line(canvas, pt(a), pt(b), colour, width, cv2.LINE_AA)
        for j in used:
            if (conf[j] > thr) == strong:
                r = max(2, int(round(scale * (2 + 3 * min(max(conf[j], 0.0), 1.0)))))
                cv2.circle(canvas, pt(j), r, joint_bgr[j], -1, cv2.LINE_AA)
                cv2.circle(canvas, pt(j), r, (255, 255, 255), 1, cv2.LINE_AA)

    if fade and (conf <= thr).any():
        overlay = img.copy()
        paint(overlay, strong=False)
        cv2.addWeighted(overlay, 0.35, img, 0.65, 0, dst=img)
    paint(img, strong=True)


def draw_people(img: np.ndarray, kpts: np.ndarray, boxes: Sequence[Sequence[float]],
                scores: Sequence[float], joint_set: DatasetMeta, thr: float = 0.2,
                legend: str = "") -> np.ndarray:
    """A copy of a BGR image with every person's box, skeleton (low-confidence joints faded) and
    score, plus a legend of the side colours and the ``legend`` text in the top-left corner."""
    out = img.copy()
    scale = max(1.0, min(out.shape[:2]) / 400.0)
    font, fs, th = cv2.FONT_HERSHEY_SIMPLEX, 0.4 * scale, max(1, int(scale))
    for person, box, score in zip(kpts, boxes, scores):
        x, y, w, h = (int(round(v)) for v in box)
        cv2.rectangle(out, (x, y), (x + w, y + h), (200, 200, 200), 1)
        draw_pose(out, person, joint_set, thr, fade=True, scale=scale)
        ty = y - 3 if y >= int(14 * scale) else y + int(12 * scale)  # above the box if it fits
        cv2.putText(out, f"{score:.2f}", (x + 2, ty), font, fs, (0, 0, 0), th + 2, cv2.LINE_AA)
        cv2.putText(out, f"{score:.2f}", (x + 2, ty), font, fs, (255, 255, 255), th, cv2.LINE_AA)
    lines = legend_colours(joint_set, sides_only=True) + \
        ([(legend, (255, 255, 255))] if legend else [])
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


def _crop(rec: Dict[str, Any], kpts: np.ndarray, tile: Sequence[int]
          ) -> Tuple[np.ndarray, np.ndarray]:
    """The person crop of a val record warped to ``tile`` (w, h) and kpts [J, 3] moved into it."""
    img = read_image(rec["image"])
    trans = get_affine_transform(rec["center"], rec["scale"], 0, tile)
    crop = cv2.warpAffine(img, trans, (int(tile[0]), int(tile[1])), flags=cv2.INTER_LINEAR)
    kpts = kpts.copy()
    kpts[:, :2] = affine_points(kpts[:, :2], trans)
    return crop, kpts


def _header(width: int, lines: Sequence[Tuple[str, tuple]], height: int = 22) -> np.ndarray:
    """A black strip with coloured text runs, left to right."""
    bar = np.zeros((height, width, 3), np.uint8)
    x = 6
    for text, col in lines:
        cv2.putText(bar, text, (x, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, col, 1, cv2.LINE_AA)
        x += cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)[0][0] + 10
    return bar


def save_prediction_grid(val_set: Any, pred: Dict[str, Any], path: str, num: int = 16,
                         net: str = "net1", tile: Sequence[int] = (144, 192),
                         epoch: Optional[int] = None) -> None:
    """:func:`prediction_grid` as a PNG file (nothing is written when there is no person)."""
    grid = prediction_grid(val_set, pred, num, net, tile, epoch)
    if grid is not None:
        encode_png(grid, path)


def prediction_grid(val_set: Any, pred: Dict[str, Any], num: int = 16, net: str = "net1",
                    tile: Sequence[int] = (144, 192), epoch: Optional[int] = None
                    ) -> Optional[np.ndarray]:
    """BGR grid of the first ``num`` val persons: for each, the crop around its box with ``net``'s
    predicted skeleton and, to its right, the ground truth; a header names the net and epoch and
    gives the colour legend."""
    kpts_all = pred["preds"][net]
    order = np.argsort(pred["index"])[:num]
    pairs = []
    for k in order:
        rec = val_set.records[int(pred["index"][k])]
        crop, kpts = _crop(rec, kpts_all[k], tile)
        draw_pose(crop, kpts, val_set.joint_set)
        gt = np.concatenate([np.asarray(rec["joints"], np.float32)[:, :2],
                             np.asarray(rec["joints_vis"], np.float32).reshape(-1, 1)], axis=1)
        gt_crop, gt = _crop(rec, gt, tile)
        draw_pose(gt_crop, gt, val_set.joint_set, thr=0.5)
        gt_crop[:, :2] = (255, 255, 255)  # a thin divider before the GT half
        pairs.append(np.concatenate([crop, gt_crop], axis=1))
    if not pairs:
        return None
    cols = 4
    while len(pairs) % cols:
        pairs.append(np.zeros_like(pairs[0]))
    rows = [np.concatenate(pairs[r:r + cols], axis=1) for r in range(0, len(pairs), cols)]
    grid = np.concatenate(rows, axis=0)
    title = f"{net}" + (f", epoch {epoch}" if epoch is not None else "")
    head = _header(grid.shape[1], [(title + ": prediction | ground truth", (255, 255, 255))] +
                   legend_colours(val_set.joint_set))
    return np.concatenate([head, grid], axis=0)


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
    """PNG with the loss terms per step and the validation AP / PCKh per network and epoch."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    colours = plt.get_cmap("tab10").colors
    losses = [t for t in sorted(history) if t.startswith("train/loss")]
    for c, tag in enumerate(losses):
        arr = np.asarray(history[tag])
        axes[0].plot(arr[:, 0], arr[:, 1], label=tag.split("/", 1)[1], alpha=0.8,
                     color=colours[c % len(colours)], lw=1)
    vals = [t for t in sorted(history) if t.startswith("val_") and
            t.split("/", 1)[-1] in ("AP", "Mean")]
    for c, tag in enumerate(vals):
        arr = np.asarray(history[tag])  # step = epochs done (1 after the first epoch)
        axes[1].plot(arr[:, 0], arr[:, 1], marker="o", label=tag.split("/")[0][4:],
                     color=colours[c % len(colours)])
    axes[0].set(title="training losses", xlabel="step", ylabel="loss (log scale)", yscale="log")
    metric = "PCKh mean" if any(t.endswith("/Mean") for t in vals) else "AP"
    axes[1].set(title=f"validation {metric}", xlabel="epoch", ylabel=metric)
    if vals:
        last = max(int(np.asarray(history[t])[:, 0].max()) for t in vals)
        axes[1].set_xlim(0.5, last + 0.5)
        axes[1].xaxis.get_major_locator().set_params(integer=True)
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
