"""The whole method step under torch.compile (TRAIN.COMPILE_SCOPE 'step').

Compiling only the nets leaves the hard view (argmax, Joint Cutout boxes, the warps), the losses
and the teacher re-alignment as dozens of small eager kernels per step, each a Python dispatch
and, on a GPU, a launch. Compiling ``training_step`` as one graph fuses them with the nets and
lets a CUDA-graph mode ('reduce-overhead') replay the forward and backward of the whole step.

The hard view's random draws come from an explicit ``torch.Generator``, which torch.compile cannot
trace. So (see ``transforms.draws``) the first step of each batch shape runs eagerly and records
which draws it makes; every later step of that shape draws the same tensors eagerly from the same
generator, in the same order, and passes them to the compiled step as inputs. The generator is
consumed exactly as by the eager step, so the random stream, and checkpoints' generator states,
are the same with and without compile.

Only a steady batch shape is compiled: one that has come twice in a row. The smaller last batch of
an epoch never does, so it runs eagerly each time instead of costing a compile of its own (over
two minutes for the ResNet-18 PoseDual step on an H200, where the eager step takes 50 ms).

Float attributes that change between steps (the ``step_scalars`` a part of the method declares,
e.g. the consistency term's ramped-up factor) enter the compiled step as 0-d tensors, so a new
value is not a new graph. Recording, replaying and these scalars are this module's business
alone: a method only draws from its ``DrawStream`` and returns a ``StepOutput``.
"""
from __future__ import annotations

from typing import Dict, Iterator, List, Optional, Set, Tuple

import torch
from torch import nn

from ..transforms.draws import DrawSpec, Recorder, Tape, draw_all
from ..types import StepOutput

Batch = Dict[str, object]
# torch.compile backend of compiled steps; tests switch it to 'aot_eager' (the same graph capture
# and autograd without inductor's code generation, which takes minutes on 2 CPU cores).
DEFAULT_BACKEND = "inductor"


def batch_tensors(batch: object, path: Tuple = ()) -> Iterator[Tuple[Tuple, torch.Tensor]]:
    """(path, tensor) of every tensor in a nested batch ("meta" excluded), in a fixed order."""
    if isinstance(batch, torch.Tensor):
        yield path, batch
    elif isinstance(batch, dict):
        for k in sorted(batch):
            if k != "meta":
                yield from batch_tensors(batch[k], path + (k,))
    elif isinstance(batch, (list, tuple)):
        for i, v in enumerate(batch):
            yield from batch_tensors(v, path + (i,))


class CompiledStep:
    """Calls ``method.training_step`` through torch.compile with the draws replayed from a tape.

    Args:
        method: a Method; its random draws must come from ``method.draw_stream()`` (every
            SemiMethod's hard view does) and depend on shapes only.
        mode: torch.compile mode ('default', 'reduce-overhead', 'max-autotune').
        backend: torch.compile backend (None: ``DEFAULT_BACKEND``).
    """

    def __init__(self, method: nn.Module, mode: str = "default", backend: Optional[str] = None):
        self.method = method
        self.compiled = torch.compile(self._replay, mode=None if mode == "default" else mode,
                                      backend=backend or DEFAULT_BACKEND)
        self.specs: Dict[Tuple, List[DrawSpec]] = {}  # the draws of each batch shape seen
        self.steady: Set[Tuple] = set()  # the shapes that came twice in a row: compiled
        self.last_key: Optional[Tuple] = None  # the previous step's batch shape
        self.eager_steps = 0  # steps run eagerly (a shape's first step, and unsteady shapes)
        self.scalars: Dict[str, torch.Tensor] = {}  # the step_scalars' device tensors
        self.stream = method.draw_stream()
        # (module, attribute) of every float a part declares in ``step_scalars``
        self.scalar_attrs = [(m, name) for m in method.modules()
                             for name in getattr(type(m), "step_scalars", ())]

    def _scalar(self, name: str, device: Optional[torch.device]) -> torch.Tensor:
        """A 0-d float32 tensor of the step's own on ``device``, refilled every step: a fill is
        a kernel launch, where a new tensor from a Python float would be a host-to-device copy
        that waits for all queued work."""
        t = self.scalars.get(name)
        if t is None or t.device != torch.device(device or "cpu"):
            t = self.scalars[name] = torch.zeros((), dtype=torch.float32, device=device)
        return t

    def _replay(self, batch: Batch, draws: List[torch.Tensor],
                scalars: List[torch.Tensor]) -> Tuple[torch.Tensor, Dict[str, torch.Tensor],
                                                      torch.Tensor, Dict[str, torch.Tensor]]:
        if self.stream is not None:
            self.stream.source = Tape(draws)
        for (module, name), value in zip(self.scalar_attrs, scalars):
            setattr(module, name, value)  # 0-d tensors for the step, floats again after it
        out = self.method.training_step(batch)
        # plain containers out of the graph; the StepOutput is rebuilt outside it
        return out.loss, out.terms, out.sup_heatmaps, out.debug

    def __call__(self, batch: Batch) -> StepOutput:
        method, stream = self.method, self.stream
        tensors = list(batch_tensors(batch))
        key = tuple((path, tuple(t.shape), t.dtype, str(t.device)) for path, t in tensors)
        device = tensors[0][1].device if tensors else None
        gen = stream.generator(device) if stream is not None else None
        floats = [getattr(module, name) for module, name in self.scalar_attrs]
        if key == self.last_key and key in self.specs:
            self.steady.add(key)
        self.last_key = key
        try:
            if key not in self.steady:  # eager, noting the draws
                recorder = Recorder(gen) if gen is not None else None
                if stream is not None:
                    stream.source = recorder
                out = method.training_step(batch)
                self.specs[key] = recorder.specs if recorder is not None else []
                self.eager_steps += 1
                return out
            draws = draw_all(gen, self.specs[key])
            scalars = [self._scalar(f"{i}", device).fill_(v) for i, v in enumerate(floats)]
            loss, terms, sup, debug = self.compiled(batch, draws, scalars)
            tape = stream.source if stream is not None else None  # as the compiled code left it
            if isinstance(tape, Tape) and tape.pos != len(draws):
                raise RuntimeError(f"the compiled step used {tape.pos} of the {len(draws)} random "
                                   "draws recorded for this batch shape, so the generator ran "
                                   "ahead of the eager stream (draws must depend on shapes only)")
            return StepOutput(loss, terms, sup, debug)
        finally:
            if stream is not None:
                stream.source = None
            for (module, name), value in zip(self.scalar_attrs, floats):
                setattr(module, name, value)
