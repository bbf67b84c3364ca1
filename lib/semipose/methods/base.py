"""Common shape of a training method: the nets, the loss, the hard view, the RNG.

A method is an ``nn.Module`` whose ``forward(batch)`` is ``training_step(batch)``, so a trainer can
wrap the whole method in DistributedDataParallel: each iteration is then one forward (several net
passes inside) and one backward, which DDP supports without ``static_graph``. The nets themselves
are plain modules (images [N, 3, H, W] in, heatmaps [N, J, h, w] out) held in ``self.nets``.

``training_step`` returns one ``StepOutput`` (types.py): the loss with its graph, the named
terms the trainer logs, net 1's detached prediction on the labeled images (for the training
accuracy) and the step's debug tensors. Semi-supervised methods are assembled from the parts in
parts.py (a hard view with its random stream, a consistency term); compiling a step is the
business of compiled.py, not of the method.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from ..losses import JointsMSELoss
from ..types import StepOutput
from .compiled import CompiledStep
from .parts import Consistency, DrawStream, HardView

NetsArg = Union[nn.ModuleDict, Mapping[str, nn.Module], Sequence[nn.Module], nn.Module]
Batch = Dict[str, object]


def as_module_dict(nets: NetsArg, names: Tuple[str, ...]) -> nn.ModuleDict:
    """Normalise nets given as a ModuleDict, a mapping, a list or a single module."""
    if isinstance(nets, nn.Module) and not isinstance(nets, nn.ModuleDict):
        nets = [nets]
    if isinstance(nets, (list, tuple)):  # in the method's order (net1, net2 / teacher, ...)
        nets = ({n: m for n, m in zip(names, nets)} if len(nets) == len(names) else
                {f"net{i + 1}": m for i, m in enumerate(nets)})
    nets = nets if isinstance(nets, nn.ModuleDict) else nn.ModuleDict(dict(nets))
    if tuple(nets.keys()) != names:
        raise ValueError(f"expected nets named {names}, got {tuple(nets.keys())}")
    return nets


def labeled_part(batch: Batch) -> Dict[str, torch.Tensor]:
    """The labeled sample dict of a paired batch, or the batch itself for plain datasets."""
    return batch["labeled"] if "labeled" in batch else batch  # type: ignore[return-value]


class Method(nn.Module):
    """Base class. Subclasses set ``net_names`` and implement ``training_step``."""

    net_names: Tuple[str, ...] = ("net1",)
    # Validation rows that average the heatmaps of several nets (no extra forward pass),
    # e.g. PoseDual's {"ensemble": ("net1", "net2")}.
    averages: Dict[str, Tuple[str, ...]] = {}
    # Validation rows whose metrics are the means of other rows' metrics (scored after them, no
    # prediction of their own), e.g. MultiAugs dual's {"mean": ("net1", "net2")}: (AP1 + AP2) / 2.
    metric_means: Dict[str, Tuple[str, ...]] = {}

    def __init__(self, nets: NetsArg, loss: Optional[nn.Module] = None):
        super().__init__()
        self.nets = as_module_dict(nets, self.net_names)
        self.loss = loss if loss is not None else JointsMSELoss(use_target_weight=True)
        # Set by compile_step: forward then runs training_step through torch.compile.
        self.compiled_step: Optional[CompiledStep] = None

    @classmethod
    def from_cfg(cls, cfg, nets: NetsArg, seed: Optional[int] = None,
                 joint_mask: Optional[torch.Tensor] = None) -> "Method":
        """The method of a config around ``nets``: ``cls(nets, **cls.options_from_cfg(...))``.
        ``seed`` overrides SEED for the random stream (SEED + rank under DDP); ``joint_mask``
        [J] bool fixes the joints a corrected cutout may use."""
        return cls(nets, **cls.options_from_cfg(cfg, seed, joint_mask))

    @classmethod
    def options_from_cfg(cls, cfg, seed: Optional[int],
                         joint_mask: Optional[torch.Tensor]) -> Dict[str, Any]:
        """Constructor arguments read from the config (subclasses add their own)."""
        return {"loss": JointsMSELoss(cfg.LOSS.USE_TARGET_WEIGHT)}

    def forward(self, batch: Batch) -> StepOutput:
        if self.compiled_step is not None:
            return self.compiled_step(batch)
        return self.training_step(batch)

    def compile_step(self, mode: str = "default", backend: Optional[str] = None) -> None:
        """Run every later ``forward`` (the training step) through torch.compile as one graph,
        nets included; the random draws are replayed (see methods/compiled.py)."""
        self.compiled_step = CompiledStep(self, mode, backend)

    def training_step(self, batch: Batch) -> StepOutput:
        """One step's loss (with its graph), logged terms, supervised heatmaps and debug tensors."""
        raise NotImplementedError

    def draw_stream(self) -> Optional[DrawStream]:
        """The random stream of the step's draws (None: the step draws nothing)."""
        return None

    @classmethod
    def eval_rows(cls) -> Tuple[str, ...]:
        """Names validation reports for this method (TEST.BEST_METRIC picks one of them)."""
        return tuple(cls.net_names) + tuple(cls.averages) + tuple(cls.metric_means)

    def set_progress(self, epochs: float) -> None:
        """Called by the trainer before each step with the progress in (fractional) epochs."""

    # ---------------------------------------------------------------- life cycle (override)
    def after_step(self) -> None:
        """Called by the trainer after every optimizer step (e.g. an EMA teacher update)."""

    def eval_spec(self) -> Tuple[Dict[str, nn.Module], Dict[str, Tuple[str, ...]]]:
        """What validation (and the collapse monitor) scores: (name -> module evaluated on its
        own, name -> names of those modules whose heatmaps are averaged). Default: every net and
        the class's ``averages``."""
        return {name: self.nets[name] for name in self.net_names}, dict(self.averages)

    def extra_state(self) -> Dict[str, object]:
        """Anything beyond the nets and generators a resumed run needs (counters, queues...);
        saved in resumable checkpoints, given back to ``load_extra_state``."""
        return {}

    def load_extra_state(self, state: Mapping[str, object]) -> None:
        """Restore ``extra_state``."""

    def rng_state(self) -> Dict[str, torch.Tensor]:
        """States of the method's own random generators (saved in resumable checkpoints)."""
        stream = self.draw_stream()
        return {} if stream is None else stream.state_dict()

    def set_rng_state(self, states: Mapping[str, torch.Tensor]) -> None:
        """Restore ``rng_state``."""
        stream = self.draw_stream()
        if stream is not None:
            stream.load_state_dict(states)

    def reseed(self, seed: int) -> None:
        """Fresh random streams (a resume with another world size)."""
        stream = self.draw_stream()
        if stream is not None:
            stream.reseed(seed)

    # ---------------------------------------------------------------- derived
    def eval_models(self) -> Dict[str, Callable[[torch.Tensor], torch.Tensor]]:
        """name -> callable(images [N, 3, H, W]) -> heatmaps [N, J, h, w], averages included."""
        models, averages = self.eval_spec()
        out: Dict[str, Callable[[torch.Tensor], torch.Tensor]] = dict(models)
        for name, members in averages.items():
            out[name] = (lambda ms: lambda x: sum(models[m](x) for m in ms) / len(ms))(members)
        return out

    def predict(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Every entry of ``eval_models`` on one batch, running each module once."""
        models, averages = self.eval_spec()
        out = {name: m(images) for name, m in models.items()}
        for name, members in averages.items():
            out[name] = sum(out[m] for m in members) / len(members)
        return out


class SemiMethod(Method):
    """A method assembled from a hard view and a consistency term (parts.py).

    Args:
        nets: the nets (see ``net_names``).
        hard: the hard view (its ops, affine, teacher view and random stream); default: the
            reference's (hard affine, no Joint Cutout, seed 0).
        cons: the consistency term (weight, ramp-up, confidence mask, loss); default: the
            reference's (weight 1, no ramp-up, no mask, JointsMSE with target weights).
        loss: supervised heatmap loss (default JointsMSELoss(use_target_weight=True)).
    Subclasses add at most their own one or two options (PoseDual's supervised weight).
    """

    def __init__(self, nets: NetsArg, hard: Optional[HardView] = None,
                 cons: Optional[Consistency] = None, loss: Optional[nn.Module] = None):
        super().__init__(nets, loss)
        self.hard = hard if hard is not None else HardView()
        self.cons = cons if cons is not None else Consistency()

    @classmethod
    def options_from_cfg(cls, cfg, seed: Optional[int],
                         joint_mask: Optional[torch.Tensor]) -> Dict[str, Any]:
        """The parts from the SSL section (``seed`` overrides SEED, e.g. SEED + rank)."""
        return dict(super().options_from_cfg(cfg, seed, joint_mask),
                    hard=HardView.from_cfg(cfg, seed, joint_mask), cons=Consistency.from_cfg(cfg))

    def draw_stream(self) -> DrawStream:
        return self.hard.stream

    def set_progress(self, epochs: float) -> None:
        """Training progress in epochs (fractional): the consistency ramp-up follows it."""
        self.cons.set_progress(epochs)

    def hard_views(self, batch: Batch, teachers: Sequence[torch.Tensor],
                   theta_t: Optional[torch.Tensor]
                   ) -> Tuple[Tuple[torch.Tensor, ...], Tuple[torch.Tensor, ...],
                              Tuple[Optional[torch.Tensor], ...], torch.Tensor]:
        """The shared core of the single- and dual-net steps (call it without grad).

        One hard view per teacher heatmap [N, J, h, w] in ``teachers``: the hard view's ops
        (joint-centred ones placed by that teacher's argmax; mixing ones mix the teacher target
        and the joint weights too), then one hard affine theta [N, 2, 3] shared by all views.
        Each view's target is its teacher in the student frame (relative warp, see
        ``HardView.target_theta``). Returns (views, targets, joint weights, theta); the weights
        start from the unlabeled target_weight (the confidence mask is the consistency term's).
        """
        unl = batch["unlabeled"]
        base, mask, weight = self.hard.base(batch), self.hard.mask_for(unl), unl.get("target_weight")
        made = [self.hard.apply_ops(base, t, weight, mask) for t in teachers]
        theta = self.hard.draw_theta(base.shape[0], base.device)
        rel = self.hard.target_theta(theta, theta_t)  # one relative warp for every target
        return (tuple(self.hard.warp(img, theta) for img, _, _ in made),
                tuple(self.hard.warp(target, rel) for _, target, _ in made),
                tuple(w for _, _, w in made), theta)
