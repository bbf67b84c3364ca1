"""RandAugment on uint8 crops, as used for the hard view when CONS_RAND_AUG is set.

The crop arrives as the decoder's BGR array and is handed to PIL as if it were RGB, as the
reference implementation does; so Color's luminance weights and the cutout fill colour act on
swapped channels. Each call draws N ops uniformly with replacement and applies them with the
magnitude M mapped to value = M / 30 * (max - min) + min.

All randomness comes from the numpy Generator passed to the call, so the same seed gives the same
output.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

from ..errors import ConfigError

MAX_LEVEL = 30.0
CUTOUT_FILL = (125, 123, 114)

# (name, min, max) in the reference's order.
OPS: Tuple[Tuple[str, float, float], ...] = (
    ("AutoContrast", 0.0, 1.0),
    ("Equalize", 0.0, 1.0),
    ("Invert", 0.0, 1.0),
    ("Posterize", 0.0, 4.0),
    ("Solarize", 0.0, 256.0),
    ("SolarizeAdd", 0.0, 110.0),
    ("Color", 0.0, 0.9),
    ("Contrast", 0.0, 0.9),
    ("Brightness", 0.0, 0.9),
    ("Sharpness", 0.0, 0.9),
    ("CutoutAbs", 0.0, 80.0),
)
_RANGES = {name: (lo, hi) for name, lo, hi in OPS}
_ENHANCERS = {"Color": ImageEnhance.Color, "Contrast": ImageEnhance.Contrast,
              "Brightness": ImageEnhance.Brightness, "Sharpness": ImageEnhance.Sharpness}


def op_value(name: str, m: float) -> float:
    """Raw op value for magnitude m: m / 30 * (max - min) + min."""
    lo, hi = _RANGES[name]
    return float(m) / MAX_LEVEL * (hi - lo) + lo


def op_parameters(m: float) -> Dict[str, object]:
    """Effective parameters of every op at magnitude m (what the op actually uses).

    Posterize -> bits, Solarize -> threshold, SolarizeAdd -> addition, the enhancers -> the two
    possible factors (1 - v, 1 + v), CutoutAbs -> square side in pixels; the others -> None.
    """
    params: Dict[str, object] = {"AutoContrast": None, "Equalize": None, "Invert": None}
    params["Posterize"] = posterize_bits(op_value("Posterize", m))
    params["Solarize"] = 256.0 - op_value("Solarize", m)
    params["SolarizeAdd"] = op_value("SolarizeAdd", m)
    for name in _ENHANCERS:
        v = op_value(name, m)
        params[name] = (1.0 - v, 1.0 + v)
    params["CutoutAbs"] = op_value("CutoutAbs", m)
    return params


def posterize_bits(v: float) -> int:
    """Bits kept by Posterize for raw value v (larger magnitude keeps fewer bits, at least 2)."""
    return max(2, 6 - int(v))


def _solarize_add(img: Image.Image, addition: float, threshold: int = 128) -> Image.Image:
    arr = np.asarray(img).astype(np.int64) + addition
    arr = np.clip(arr, 0, 255).astype(np.uint8)
    return ImageOps.solarize(Image.fromarray(arr), threshold)


def _cutout_abs(img: Image.Image, size: float, rng: np.random.Generator) -> Image.Image:
    w, h = img.size
    # The reference draws uniform(low=size, high=1): low + (high - low) * u with u in [0, 1), so
    # the centre lies in (1, size], never at 0.
    cx, cy = w + (1 - w) * rng.random(), h + (1 - h) * rng.random()
    x0, y0 = int(max(0, cx - size / 2.0)), int(max(0, cy - size / 2.0))
    x1, y1 = min(w, x0 + size), min(h, y0 + size)
    out = img.copy()
    ImageDraw.Draw(out).rectangle((x0, y0, x1, y1), CUTOUT_FILL)
    return out


def apply_op(img: Image.Image, name: str, m: float,
             rng: Optional[np.random.Generator] = None, sign: int = 1) -> Image.Image:
    """Apply op ``name`` at magnitude m to a PIL image.

    ``sign`` (+1/-1) picks the enhancer factor 1 + v or 1 - v; ``rng`` places the cutout.
    """
    v = op_value(name, m)
    if name == "AutoContrast":
        return ImageOps.autocontrast(img)
    if name == "Equalize":
        return ImageOps.equalize(img)
    if name == "Invert":
        return ImageOps.invert(img)
    if name == "Posterize":
        return ImageOps.posterize(img, posterize_bits(v))
    if name == "Solarize":
        return ImageOps.solarize(img, 256.0 - v)
    if name == "SolarizeAdd":
        return _solarize_add(img, v)
    if name in _ENHANCERS:
        return _ENHANCERS[name](img).enhance(1.0 + sign * v)
    if name == "CutoutAbs":
        if rng is None:
            raise ValueError("CutoutAbs needs a numpy Generator to place the square")
        return _cutout_abs(img, v, rng)
    raise KeyError(f"unknown RandAugment op {name!r}; known: {[o[0] for o in OPS]}")


class RandAugment:
    """RandAugment(n, m) for uint8 H x W x 3 crops (numpy in, numpy out).

    Args:
        n: ops per call (the reference hard-codes 2).
        m: magnitude in [0, 30]; an int, or a (lo, hi) pair for a per-op integer draw in [lo, hi].
    """

    def __init__(self, n: int = 2, m: Union[int, Sequence[int]] = 10):
        self.n = n
        if isinstance(m, (list, tuple)):
            if len(m) != 2:
                raise ConfigError(f"RandAugment magnitude {m!r}: give an int or a [lo, hi] pair "
                                  "(RAND_MAGNITUDE)")
            self.m_range: Optional[Tuple[int, int]] = (int(m[0]), int(m[1]))
            self.m = None
        else:
            self.m_range, self.m = None, float(m)

    def draw(self, rng: np.random.Generator) -> list:
        """The ops of one call: list of (name, magnitude, sign)."""
        names = rng.integers(len(OPS), size=self.n)
        out = []
        for i in names:  # n is 2: a per-op loop here is over ops, not samples
            m = self.m if self.m_range is None else float(rng.integers(self.m_range[0],
                                                                        self.m_range[1] + 1))
            sign = 1 if rng.integers(2) else -1
            out.append((OPS[int(i)][0], m, sign))
        return out

    def __call__(self, img: np.ndarray,
                 rng: Union[np.random.Generator, int, None] = None) -> np.ndarray:
        """img: uint8 [H, W, 3]; rng: numpy Generator or seed. Returns a new uint8 [H, W, 3]."""
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"RandAugment expects a uint8 HxWx3 crop, got {img.dtype} {img.shape}")
        if not isinstance(rng, np.random.Generator):
            rng = np.random.default_rng(rng)
        pil = Image.fromarray(np.ascontiguousarray(img))
        for name, m, sign in self.draw(rng):
            pil = apply_op(pil, name, m, rng, sign)
        return np.asarray(pil, dtype=np.uint8).copy()

    def __repr__(self) -> str:
        mag = self.m_range if self.m_range is not None else self.m
        return f"RandAugment(n={self.n}, m={mag})"
