"""What one JO (keypoint cut-occlusion) draw does on a 256x192 crop: paste, zero-fill or nothing.

    python bench/jo_outcomes.py                  # writes bench/results/jo_outcomes.md

The description of the released op (METHODS_AFTER_POSEDUAL.md, JO) clamps each box "to [0, W-1]
(columns) and [0, H-1] (rows)" and indexes the rows with a joint's x. That can be read two ways:

- reading A (semipose 'reference'): the bounds follow the coordinates, x clamped to W-1 and y to
  H-1, so the column slice (indexed by y) can run past the crop's W columns and be cut there;
- reading B: the bounds follow the axes, the row (x) clamped to H-1 and the column (y) to W-1,
  so no slice is ever cut.

The description also says that for joints spread over the crop about two thirds of draws paste,
one fifth zero-fill and the rest do nothing. This script counts the three outcomes per draw for
both readings, straight from the description's steps (numpy, one draw per row), and for
semipose's vectorised op in both modes, over three spreads of the joints. Only reading A can
zero-fill at all (B keeps every slice inside the crop, so a reconciled source always matches its
destination), which is why semipose implements A. With the 7 never-supervised channels'
predictions at (0, 0), reading A gives the description's figures (about 0.6-0.7 / 0.2 / 0.1).
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Dict, Tuple

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEIGHT, WIDTH = 256, 192
# name -> (low, high fraction of the crop the joints spread over, channels at the origin). With
# 7 of the 24 channels at (0, 0): the 7 channels no label ever supervises, whose near-flat
# heatmaps put the teacher's argmax at the first pixel.
SPREADS = {"uniform over the crop": (0.0, 1.0, 0), "central 80%": (0.1, 0.9, 0),
           "central 60%": (0.2, 0.8, 0), "central 80%, 7 of 24 at (0, 0)": (0.1, 0.9, 7),
           "central 60%, 7 of 24 at (0, 0)": (0.2, 0.8, 7)}
CHANNELS = 24


def joints(rng: np.random.Generator, n: int, spread: Tuple[float, float, int]) -> np.ndarray:
    """[n, 2] (x, y) pixel positions of uniformly chosen channels: uniform over the central
    part of the crop, or (0, 0) for the spread's channels at the origin."""
    lo, hi, at_origin = spread
    points = (lo + (hi - lo) * rng.random((n, 2))) * np.array([WIDTH, HEIGHT])
    points[rng.integers(0, CHANNELS, n) < at_origin] = 0
    return points


def described_outcomes(own: np.ndarray, partner: np.ndarray, rng: np.random.Generator,
                       reading: str) -> Dict[str, float]:
    """Fractions of draws that paste / zero-fill / do nothing, following the description's steps
    1-6 with x as the row, the bounds of ``reading`` and Python's slice cut at the crop's size."""
    n = len(own)
    row_max, col_max = (WIDTH - 1, HEIGHT - 1) if reading == "A" else (HEIGHT - 1, WIDTH - 1)
    bound = np.array([row_max, col_max])
    size = np.array([HEIGHT, WIDTH])  # a slice stops at the image's own rows / columns
    c_own = np.trunc(own + 10 * rng.standard_normal((n, 2))).astype(int)  # (row, col) = (x, y)
    c_p = np.trunc(partner + 10 * rng.standard_normal((n, 2))).astype(int)
    half = rng.integers(10, 20, (n, 2))
    lo_p, hi_p = np.clip(c_p - half, 0, bound), np.clip(c_p + half, 0, bound)
    start, end = c_own - (c_p - lo_p), c_own + (hi_p - c_p)
    dst_lo, dst_hi = np.clip(start, 0, bound), np.clip(end, 0, bound)
    delta = np.abs((hi_p - lo_p) - (dst_hi - dst_lo))
    src_lo = lo_p + np.where(start < dst_lo, delta, 0)
    src_hi = hi_p - np.where(end > dst_hi, delta, 0)
    dst_len = np.clip(np.minimum(dst_hi, size) - np.minimum(dst_lo, size), 0, None)
    src_len = np.clip(np.minimum(src_hi, size) - np.minimum(src_lo, size), 0, None)
    empty = (dst_len == 0).any(1)
    copy = ~empty & (src_len == dst_len).all(1) & (src_len > 0).all(1)
    return {"paste": copy.mean(), "zero-fill": (~empty & ~copy).mean(), "nothing": empty.mean()}


def op_outcomes(rng: np.random.Generator, n: int, spread: Tuple[float, float, int], mode: str,
                seed: int) -> Dict[str, float]:
    """The same fractions for semipose's ``keypoint_cut_occlusion`` (one paste per crop, crops
    that are never 0, so a 0 pixel is a zero-fill and an unchanged crop a draw that did nothing)."""
    import torch

    from semipose.transforms.multiaugs import keypoint_cut_occlusion

    counts = {"paste": 0, "zero-fill": 0, "nothing": 0}
    batch = 256
    for first in range(0, n, batch):
        m = min(batch, n - first)
        images = torch.from_numpy(rng.random((m, 1, HEIGHT, WIDTH), dtype=np.float32) + 0.5)
        lo, hi, at_origin = spread
        points = (lo + (hi - lo) * rng.random((m, CHANNELS, 2))) * np.array([WIDTH, HEIGHT])
        points[:, :at_origin] = 0  # the op draws its channels uniformly
        points = torch.from_numpy(points)
        out = keypoint_cut_occlusion(images, points, torch.Generator().manual_seed(seed + first),
                                     mode=mode, k=1)
        changed = (out != images).flatten(1).any(1)
        zero = (out == 0).flatten(1).any(1)
        counts["zero-fill"] += int(zero.sum())
        counts["paste"] += int((changed & ~zero).sum())
        counts["nothing"] += int((~changed).sum())
    return {k: v / n for k, v in counts.items()}


def main(argv=None) -> str:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--draws", type=int, default=10000, help="draws per row (default 10000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "jo_outcomes.md"))
    args = p.parse_args(argv)
    sys.path.insert(0, os.path.join(ROOT, "lib"))
    from semipose.utils.io import atomic_write_text

    lines = [
        "# JO draw outcomes on a 256x192 crop", "",
        f"`python bench/jo_outcomes.py --draws {args.draws} --seed {args.seed}`: fraction of "
        "single JO draws that paste a patch, zero-fill the destination, or change nothing. "
        "Description A/B: the description's steps with the two readings of its clamp bounds "
        "(A: x clamped to W-1, y to H-1; B: the row to H-1, the column to W-1). semipose: the "
        "library op. Expected from the description: about 0.67 / 0.20 / the rest.", "",
        "| joints | rows | paste | zero-fill | nothing |", "|---|---|---|---|---|"]
    for name, spread in SPREADS.items():
        rows = []
        for reading in ("A", "B"):
            rng = np.random.default_rng(args.seed)
            own, partner = joints(rng, args.draws, spread), joints(rng, args.draws, spread)
            rows.append((f"description, reading {reading}",
                         described_outcomes(own, partner, rng, reading)))
        for mode in ("reference", "corrected"):
            rows.append((f"semipose '{mode}'",
                         op_outcomes(np.random.default_rng(args.seed), args.draws, spread, mode,
                                     args.seed)))
        for label, frac in rows:
            lines.append(f"| {name} | {label} | {frac['paste']:.3f} | {frac['zero-fill']:.3f} | "
                         f"{frac['nothing']:.3f} |")
    text = "\n".join(lines) + "\n"
    atomic_write_text(text, args.out)
    print(text)
    return args.out


if __name__ == "__main__":
    main()
