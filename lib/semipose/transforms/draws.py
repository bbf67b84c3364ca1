"""Random draws of the hard view, from a ``torch.Generator`` or replayed from a tape; and the one
scale/rotation augmentation draw of the sample (numpy) and hard-view (torch) paths.

torch.compile cannot trace a call that takes a ``torch.Generator`` (it breaks the graph there),
so a compiled method step gets its random numbers as inputs instead. The eager step of a new batch
shape runs with a ``Recorder``, which draws from the generator and notes each draw's kind and
shape (the hard view's draws depend on shapes only, never on values). Every later step of that
shape draws the same list eagerly, in the same order, from the same generator (``draw_all``), and
the compiled step reads them off a ``Tape``. The generator is thus consumed exactly as by the
eager step: a seed gives the same hard views with or without compile, and its saved state stays
valid for a resume either way.

All functions of ``transforms.batch`` that take a ``generator`` accept any of the three.
"""
from __future__ import annotations

from typing import Any, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch

Device = Union[str, torch.device, None]


class DrawSpec(NamedTuple):
    """One draw: kind ('randn', 'rand', 'randint', 'randperm'), size, and randint's bounds."""
    kind: str
    size: Tuple[int, ...]
    low: int = 0
    high: int = 0


def torch_draw(generator: Optional[torch.Generator], spec: DrawSpec,
               device: Device) -> torch.Tensor:
    """The draw ``spec`` from a torch generator (None: torch's default one)."""
    kw = dict(generator=generator, device=device)
    if spec.kind == "randn":
        return torch.randn(spec.size, dtype=torch.float32, **kw)
    if spec.kind == "rand":
        return torch.rand(spec.size, dtype=torch.float32, **kw)
    if spec.kind == "randint":
        return torch.randint(spec.low, spec.high, spec.size, **kw)
    if spec.kind == "randperm":
        return torch.randperm(spec.size[0], **kw)
    raise ValueError(f"unknown draw kind {spec.kind!r}")


class Recorder:
    """Draws from ``generator`` like the generator itself, and keeps the list of specs."""

    def __init__(self, generator: torch.Generator):
        self.generator = generator
        self.specs: List[DrawSpec] = []

    @property
    def device(self) -> torch.device:
        return self.generator.device

    def draw(self, spec: DrawSpec, device: Device) -> torch.Tensor:
        self.specs.append(spec)
        return torch_draw(self.generator, spec, device)


class Tape:
    """Hands out pre-drawn tensors in order (traceable by torch.compile: no generator inside)."""

    def __init__(self, draws: Sequence[torch.Tensor]):
        self.draws = list(draws)
        self.pos = 0

    @property
    def device(self) -> torch.device:
        return self.draws[0].device

    def draw(self, spec: DrawSpec, device: Device) -> torch.Tensor:
        if self.pos >= len(self.draws):
            raise RuntimeError(f"the step asked for more random draws than the {len(self.draws)} "
                               "recorded for this batch shape (draws must depend on shapes only)")
        out = self.draws[self.pos]
        if tuple(out.shape) != tuple(spec.size):
            raise RuntimeError(f"recorded draw {self.pos} has shape {tuple(out.shape)}, the step "
                               f"asked for {spec.size} (draws must depend on shapes only)")
        self.pos += 1
        return out


Source = Union[torch.Generator, Recorder, Tape, None]


def draw(source: Source, kind: str, size: Sequence[int], device: Device,
         low: int = 0, high: int = 0) -> torch.Tensor:
    """One draw of ``kind`` and ``size`` from a generator, a recorder or a tape."""
    spec = DrawSpec(kind, tuple(int(s) for s in size), int(low), int(high))
    if isinstance(source, (Recorder, Tape)):
        return source.draw(spec, device)
    return torch_draw(source, spec, device)


def draw_all(generator: torch.Generator, specs: Sequence[DrawSpec]) -> List[torch.Tensor]:
    """The recorded draws again, from ``generator`` on its own device, in order."""
    return [torch_draw(generator, spec, generator.device) for spec in specs]


# ------------------------------------------------------------------ scale / rotation draw
# The order of the three draws of each path. They differ because each path keeps the stream
# of the code it reproduces; changing an order would change every augmentation of a seed.
PAIRED_ORDER = ("gate", "rotation", "scale")  # the paired crops' shared geometry (reference)
SAMPLE_ORDER = ("scale", "gate", "rotation")  # one crop of transforms/sample.py
HARD_VIEW_ORDER = ("scale", "rotation", "gate")  # the hard view of transforms/batch.py
_STEPS = frozenset(HARD_VIEW_ORDER)

# Probability of a rotation in the dataset augmentation (the hard view takes its own, 0.8).
SAMPLE_ROT_PROB = 0.6


class NumpyDraws:
    """Draws of one crop from a ``numpy.random.Generator`` (Python floats).

    Lazy: a rotation whose gate was drawn before it and is closed draws no normal at all.
    """

    lazy = True

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def normal(self) -> float:
        return self.rng.standard_normal()

    def uniform(self) -> float:
        return self.rng.random()

    @staticmethod
    def clip(x: float, lo: float, hi: float) -> float:
        return float(np.clip(x, lo, hi))

    @staticmethod
    def gated(keep: Optional[bool], rotation: Optional[float]) -> float:
        return rotation if keep and rotation is not None else 0.0


class TorchDraws:
    """Draws of ``n`` samples at once, float32 [n], from a torch generator, recorder or tape.

    Not lazy: every draw is made for the whole batch and closed gates zero the rotation after.
    """

    lazy = False

    def __init__(self, source: Source, n: int, device: Device):
        self.source, self.n, self.device = source, int(n), device

    def normal(self) -> torch.Tensor:
        return draw(self.source, "randn", (self.n,), self.device)

    def uniform(self) -> torch.Tensor:
        return draw(self.source, "rand", (self.n,), self.device)

    @staticmethod
    def clip(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
        return x.clamp(lo, hi)

    @staticmethod
    def gated(keep: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
        return torch.where(keep, rotation, torch.zeros_like(rotation))


Draws = Union[NumpyDraws, TorchDraws]


def draw_scale_rotation(draws: Draws, scale_factor: float, rot_factor: float, rot_prob: float,
                        order: Sequence[str], scale: Any = None, rotation: Any = None
                        ) -> Tuple[Any, Any]:
    """(scale multiplier, rotation in degrees) of the scale/rotation augmentation.

    scale = clip(N * sf + 1, 1 - sf, 1 + sf); rotation = clip(N * rf, -2 rf, 2 rf) with
    probability ``rot_prob``, else 0 (N a standard normal draw).

    Args:
        draws: ``NumpyDraws`` (one crop, floats) or ``TorchDraws`` (a batch, float32 [n]).
        order: the order of the three draws, a permutation of 'scale' (one normal), 'gate'
            (one uniform: rotate when it is <= ``rot_prob``) and 'rotation' (one normal); see
            PAIRED_ORDER, SAMPLE_ORDER, HARD_VIEW_ORDER. With lazy ``NumpyDraws`` a rotation
            after a closed gate is not drawn.
        scale, rotation: given values replace their draws (a given rotation draws neither its
            gate nor its normal).
    """
    if len(order) != len(_STEPS) or set(order) != _STEPS:
        raise ValueError(f"draw order {tuple(order)} must be a permutation of {HARD_VIEW_ORDER}")
    sf, rf = scale_factor, rot_factor
    draw_rotation = rotation is None
    keep: Any = None
    drawn: Any = None
    for step in order:
        if step == "scale":
            if scale is None:
                scale = draws.clip(draws.normal() * sf + 1, 1 - sf, 1 + sf)
        elif not draw_rotation:
            continue
        elif step == "gate":
            keep = draws.uniform() <= rot_prob
        elif not (draws.lazy and keep is not None and not keep):  # step == "rotation"
            drawn = draws.clip(draws.normal() * rf, -2 * rf, 2 * rf)
    if draw_rotation:
        rotation = draws.gated(keep, drawn)
    return scale, rotation
