"""Training accuracy on heatmaps: the PCK-style number the log line and TensorBoard show.

``accuracy`` is the numpy form (as the reference computes it); ``accuracy_tensor`` gives the
same numbers to the last bit on any device without a host read, so the trainer can accumulate it
on the GPU and read it every PRINT_FREQ steps.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np
import torch

from semipose.transforms.heatmap import get_max_preds
from semipose.utils.tensors import device_vector


def accuracy(output, target, thr: float = 0.5
             ) -> Tuple[np.ndarray, float, int, np.ndarray]:
    """PCK-style log metric on heatmap argmaxes.

    Args:
        output, target: [N, J, h, w] numpy heatmaps.
    Returns:
        acc [J + 1] (acc[0] = average over counted joints, -1 for joints never counted),
        avg, cnt (number of counted joints), pred [N, J, 2] argmax coordinates of ``output``.
    Distances normalise x by h/10 and y by w/10 (the reference's swapped axes); a sample counts
    for a joint only when the target argmax has x > 1 and y > 1.
    """
    output, target = np.asarray(output), np.asarray(target)
    pred, _ = get_max_preds(output)
    tgt, _ = get_max_preds(target)
    h, w = output.shape[2:]
    norm = np.array([h, w], np.float64) / 10
    diff = pred / norm - tgt / norm
    dist = np.sqrt(np.sum(diff * diff, axis=-1))  # [N, J]
    counted = (tgt[..., 0] > 1) & (tgt[..., 1] > 1)
    n_counted = counted.sum(axis=0)
    hits = ((dist < thr) & counted).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_joint = np.where(n_counted > 0, hits / n_counted, -1.0)
    valid = n_counted > 0
    cnt = int(valid.sum())
    avg = float(per_joint[valid].sum() / cnt) if cnt else 0.0
    acc = np.concatenate([[avg], per_joint])
    return acc, avg, cnt, pred


def _argmax_coords(hm: torch.Tensor) -> torch.Tensor:
    """``get_max_preds(hm)[0]`` on a tensor [N, J, h, w]: (x, y) float32 [N, J, 2], (0, 0) where
    the maximum is <= 0."""
    w = hm.shape[-1]
    flat = hm.flatten(2)
    maxvals, idx = flat.max(dim=2)  # the first maximal index, as np.argmax
    coords = torch.stack([idx % w, idx // w], dim=-1).to(torch.float32)
    return coords * (maxvals > 0).to(torch.float32)[..., None]


def _numpy_order_sum(values: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``np.sum(values[keep])`` for a 1-D float64 tensor of at most 128 entries, added in numpy's
    order so that the result is the same to the last bit, without reading ``keep`` on the host.

    numpy adds fewer than 8 values left to right; from 8 to 128 values it keeps 8 interleaved
    partial sums over the first n - n % 8 values, adds those pairwise and then the remaining
    n % 8 values left to right. Kept values are first moved to the front (stable order); the
    zeros that pad them leave every partial sum unchanged (x + 0.0 == x for x >= 0).
    """
    size = values.numel()
    if size > 128:  # numpy splits longer sums recursively; no joint set comes near this
        return values[keep].sum()
    n = keep.sum()
    order = torch.argsort((~keep).to(torch.int8), stable=True)
    blocks = -(-size // 8)
    packed = torch.zeros(blocks * 8 + 8, dtype=values.dtype, device=values.device)
    packed[:size] = torch.where(keep, values, torch.zeros_like(values))[order]
    rows = packed[:blocks * 8].view(blocks, 8)
    full_rows = n // 8
    lanes = rows[0]
    for b in range(1, blocks):
        lanes = lanes + rows[b] * (full_rows > b)
    while lanes.numel() > 1:  # ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
        lanes = lanes[0::2] + lanes[1::2]
    total = lanes[0] * (n >= 8)
    step = torch.arange(7, device=values.device)
    rest = packed[full_rows * 8 + step] * (step < n % 8)
    for k in range(7):
        total = total + rest[k]
    return total


def accuracy_tensor(output: torch.Tensor, target: torch.Tensor, thr: float = 0.5
                    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``accuracy`` on tensors of any device, without a host read: the same numbers to the last
    bit (float64 as numpy computes them), for logging the training accuracy asynchronously.

    Args:
        output, target: [N, J, h, w] heatmaps (float32, as the numpy version is fed).
    Returns:
        acc [J + 1] float64, avg [] float64, cnt [] int64, pred [N, J, 2] float32 (see
        ``accuracy``).
    """
    pred, tgt = _argmax_coords(output), _argmax_coords(target)
    h, w = output.shape[2:]
    norm = device_vector([h, w], torch.float64, output.device) / 10
    diff = pred / norm - tgt / norm  # float32 / float64 -> float64, as in numpy
    sq = diff * diff
    dist = torch.sqrt(sq[..., 0] + sq[..., 1])  # [N, J]
    counted = (tgt[..., 0] > 1) & (tgt[..., 1] > 1)
    n_counted = counted.sum(dim=0).to(torch.float64)
    hits = ((dist < thr) & counted).sum(dim=0).to(torch.float64)
    valid = n_counted > 0
    per_joint = torch.where(valid, hits / n_counted.clamp(min=1), torch.full_like(hits, -1.0))
    cnt = valid.sum()
    avg = torch.where(cnt > 0, _numpy_order_sum(per_joint, valid) / cnt.clamp(min=1),
                      torch.zeros((), dtype=torch.float64, device=output.device))
    return torch.cat([avg.view(1), per_joint]), avg, cnt, pred
