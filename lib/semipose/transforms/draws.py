"""Random draws of the hard view, from a ``torch.Generator`` or replayed from a tape.

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

from typing import List, NamedTuple, Optional, Sequence, Tuple, Union

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
