"""RandAugment's ops on a batch of crops on their device, with PIL's numbers.

The draws stay on the host: ``color_plan`` makes the same generator calls in the same order as
``RandAugment.__call__`` (the op draw, then the cutout centres while applying) and turns them
into a small table per crop. ``apply_color_plan`` then runs the ops on the device, vectorised
over the crops that share an op in a slot (a Python loop over at most 2 x 11 ops, not crops).

Each op reproduces Pillow's integer arithmetic: the RGB -> L conversion (fixed point,
19595 / 38470 / 7471), ``Image.blend`` in float32 with truncation (the enhancers), the SMOOTH
filter rounded half up with the border left as is (Sharpness), the AutoContrast and Equalize
lookup tables, and ImageDraw's inclusive rectangle (CutoutAbs). As on the CPU path, the crop is
handed over in its own channel order (BGR) as if it were RGB.
"""
from __future__ import annotations

from typing import Callable, Dict, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from semipose.transforms.randaugment import CUTOUT_FILL, OPS, RandAugment, op_value, posterize_bits
from semipose.utils.tensors import to_device

OP_INDEX = {name: i for i, (name, _, _) in enumerate(OPS)}
# One row per op slot: op index, parameter, cutout box x0, y0, x1, y1 (inclusive).
PLAN_COLUMNS = 6


def color_plan(augment: RandAugment, rng: np.random.Generator, size: Sequence[int]
               ) -> torch.Tensor:
    """The ops of one crop of ``size`` (w, h) as float64 [n, 6] rows, drawn from ``rng`` exactly
    as ``augment(crop, rng)`` draws them.

    Parameter per op: the enhancers' blend factor 1 + sign v, Posterize's bits, Solarize's
    threshold, SolarizeAdd's addition, 0 for the others.
    """
    w, h = int(size[0]), int(size[1])
    rows = np.zeros((augment.n, PLAN_COLUMNS), np.float64)
    for k, (name, m, sign) in enumerate(augment.draw(rng)):
        v = op_value(name, m)
        param = {"Posterize": float(posterize_bits(v)), "Solarize": 256.0 - v,
                 "SolarizeAdd": v, "Color": 1.0 + sign * v, "Contrast": 1.0 + sign * v,
                 "Brightness": 1.0 + sign * v, "Sharpness": 1.0 + sign * v}.get(name, 0.0)
        rows[k, :2] = OP_INDEX[name], param
        if name == "CutoutAbs":  # randaugment._cutout_abs, as PIL truncates the corners
            cx, cy = w + (1 - w) * rng.random(), h + (1 - h) * rng.random()
            x0, y0 = int(max(0, cx - v / 2.0)), int(max(0, cy - v / 2.0))
            rows[k, 2:] = x0, y0, int(min(w, x0 + v)), int(min(h, y0 + v))
    return torch.from_numpy(rows)


def _luma(x: torch.Tensor) -> torch.Tensor:
    """PIL's RGB -> L: [N, 3, H, W] integer-valued float -> [N, 1, H, W]."""
    q = x.to(torch.int64)
    return ((q[:, 0:1] * 19595 + q[:, 1:2] * 38470 + q[:, 2:3] * 7471 + 0x8000) >> 16).float()


def _blend(degenerate: torch.Tensor, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Image.blend(degenerate, x, factor): float32 arithmetic, clipped, truncated."""
    a = factor.to(torch.float32).view(-1, 1, 1, 1)
    return (degenerate + a * (x - degenerate)).clamp_(0, 255).trunc_()


def _lookup(x: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """Per-crop, per-channel tables lut [N, 3, 256] applied to x [N, 3, H, W]."""
    n = x.shape[0]
    flat = x.reshape(n, 3, -1).long()
    return lut.to(x.dtype).gather(2, flat).reshape(x.shape)


def _histogram(x: torch.Tensor) -> torch.Tensor:
    n = x.shape[0]
    flat = x.reshape(n * 3, -1).long()
    hist = torch.zeros(n * 3, 256, dtype=torch.int64, device=x.device)
    return hist.scatter_add_(1, flat, torch.ones_like(flat)).view(n, 3, 256)


def _autocontrast(x: torch.Tensor, _p: torch.Tensor) -> torch.Tensor:
    levels = torch.arange(256, device=x.device)
    present = _histogram(x) > 0
    lo = torch.where(present, levels, 256).amin(-1, keepdim=True)
    hi = torch.where(present, levels, -1).amax(-1, keepdim=True)
    # a tensor numerator: ``255.0 / t`` is computed as 255 * (1 / t), not as Python divides
    scale = torch.full_like(lo, 255, dtype=torch.float64) / (hi - lo).clamp(min=1)
    lut = (levels.double() * scale - lo.double() * scale).trunc().clamp(0, 255)
    return _lookup(x, torch.where(hi > lo, lut, levels.double()))


def _equalize(x: torch.Tensor, _p: torch.Tensor) -> torch.Tensor:
    hist = _histogram(x)
    levels = torch.arange(256, device=x.device)
    last = torch.where(hist > 0, levels, -1).amax(-1, keepdim=True)
    step = (hist.sum(-1, keepdim=True) - hist.gather(-1, last.clamp(min=0))) // 255
    before = hist.cumsum(-1) - hist  # pixels below each level
    lut = ((step // 2 + before) // step.clamp(min=1)).clamp(0, 255)
    keep = ((hist > 0).sum(-1, keepdim=True) <= 1) | (step == 0)
    return _lookup(x, torch.where(keep, levels, lut))


def _sharpness(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    kernel = to_device(torch.tensor([[1.0, 1, 1], [1, 5, 1], [1, 1, 1]]), x.device) / 13
    smooth = F.conv2d(x.reshape(n * c, 1, h, w), kernel.view(1, 1, 3, 3)).view(n, c, h - 2, w - 2)
    degenerate = x.clone()
    degenerate[:, :, 1:-1, 1:-1] = smooth.add(0.5).floor_().clamp_(0, 255)
    return _blend(degenerate, x, p)


def _cutout(x: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    h, w = x.shape[2:]
    box = to_device(box, x.device)
    cols, rows = torch.arange(w, device=x.device), torch.arange(h, device=x.device)
    in_x = (cols >= box[:, 0:1]) & (cols <= box[:, 2:3])  # [n, W]
    in_y = (rows >= box[:, 1:2]) & (rows <= box[:, 3:4])  # [n, H]
    mask = (in_y.unsqueeze(-1) & in_x.unsqueeze(-2)).unsqueeze(1)
    fill = to_device(torch.tensor(CUTOUT_FILL, dtype=x.dtype), x.device).view(1, 3, 1, 1)
    return torch.where(mask, fill, x)


def _solarize(x: torch.Tensor, threshold) -> torch.Tensor:
    """Levels at or above ``threshold`` (a float, compared in float64 as PIL's table) inverted."""
    return torch.where(x.double() < threshold, x, 255 - x)


Op = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
_OPS: Dict[str, Op] = {
    "AutoContrast": _autocontrast,
    "Equalize": _equalize,
    "Invert": lambda x, p: 255 - x,
    "Posterize": lambda x, p: (x.long() & ~(2 ** (8 - p.long().view(-1, 1, 1, 1)) - 1)
                               ).to(x.dtype),
    "Solarize": lambda x, p: _solarize(x, p.double().view(-1, 1, 1, 1)),
    # numpy: int + float addition, clipped, cast to uint8 (truncation), then threshold 128
    "SolarizeAdd": lambda x, p: _solarize((x.double() + p.view(-1, 1, 1, 1)).clamp(0, 255)
                                          .trunc().to(x.dtype), 128),
    "Color": lambda x, p: _blend(_luma(x).expand_as(x), x, p),
    "Contrast": lambda x, p: _blend(
        (_luma(x).sum((1, 2, 3)).double() / (x.shape[2] * x.shape[3]) + 0.5).floor()
        .to(x.dtype).view(-1, 1, 1, 1).expand_as(x), x, p),
    "Brightness": lambda x, p: _blend(torch.zeros_like(x), x, p),
    "Sharpness": _sharpness,
}


def apply_color_plan(crops: torch.Tensor, plan: torch.Tensor) -> torch.Tensor:
    """RandAugment on crops [N, 3, H, W] (float32 holding uint8 levels) per ``plan`` [N, n, 6]
    (host tensor from ``color_plan``); returns a new tensor of uint8 levels."""
    x = crops.clone()
    plan = plan.cpu()
    for slot in range(plan.shape[1]):
        ops = plan[:, slot, 0].long()
        for op in ops.unique().tolist():
            idx = torch.nonzero(ops == op).view(-1)
            params = plan[idx, slot]
            name = OPS[op][0]
            sel = to_device(idx, x.device)
            if name == "CutoutAbs":
                x[sel] = _cutout(x[sel], params[:, 2:])
            else:
                x[sel] = _OPS[name](x[sel], to_device(params[:, 1], x.device))
    return x
