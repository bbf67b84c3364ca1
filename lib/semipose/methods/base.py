"""Common shape of a training method: the nets, the loss, the hard view, the RNG.

A method is an ``nn.Module`` whose ``forward(batch)`` is ``training_step(batch)``, so a trainer can
wrap the whole method in DistributedDataParallel: each iteration is then one forward (several net
passes inside) and one backward, which DDP supports without ``static_graph``. The nets themselves
are plain modules (images [N, 3, H, W] in, heatmaps [N, J, h, w] out) held in ``self.nets``.

``training_step`` returns the loss terms (scalars; "loss" carries the graph) and
"sup_heatmaps", net 1's detached prediction on the labeled images, from which the trainer computes
the training accuracy. After each step ``self.last`` holds detached tensors of that step for the
debug pictures (keys listed per method).
"""
from __future__ import annotations

import math
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from ..losses import JointsMSELoss
from ..transforms.batch import (CUTOUT_MODES, compose_theta, hard_affine_theta, invert_theta,
                                joint_cutout, max_preds_tensor, warp)
from ..transforms.draws import Recorder, Source, Tape
from .compiled import CompiledStep

TEACHER_VIEWS = ("easy", "hard")

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
    # Float attributes that training_step reads and that change between steps: a compiled step
    # (methods/compiled.py) takes them as tensor inputs instead of recompiling for each value.
    step_scalars: Tuple[str, ...] = ()

    def __init__(self, nets: NetsArg, loss: Optional[nn.Module] = None):
        super().__init__()
        self.nets = as_module_dict(nets, self.net_names)
        self.loss = loss if loss is not None else JointsMSELoss(use_target_weight=True)
        self.last: Dict[str, torch.Tensor] = {}
        # Set by compile_step: forward then runs training_step through torch.compile.
        self.compiled_step: Optional[CompiledStep] = None
        # While a compiled step records or replays its random draws: where ``generator`` draws.
        self.draw_source: Optional[Union[Recorder, Tape]] = None

    def forward(self, batch: Batch) -> Dict[str, torch.Tensor]:
        if self.compiled_step is not None:
            return self.compiled_step(batch)
        return self.training_step(batch)

    def compile_step(self, mode: str = "default", backend: Optional[str] = None) -> None:
        """Run every later ``forward`` (the training step) through torch.compile as one graph,
        nets included; the random draws are replayed (see methods/compiled.py)."""
        self.compiled_step = CompiledStep(self, mode, backend)

    def training_step(self, batch: Batch) -> Dict[str, torch.Tensor]:
        """Returns {"loss": total (with grad), "loss_pose", "loss_cons", ... (scalars, detached),
        "sup_heatmaps": net 1 on the labeled images [N, J, h, w] (detached)}."""
        raise NotImplementedError

    @classmethod
    def eval_rows(cls) -> Tuple[str, ...]:
        """Names validation reports for this method (TEST.BEST_METRIC picks one of them)."""
        return tuple(cls.net_names) + tuple(cls.averages)

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
        return {}

    def set_rng_state(self, states: Mapping[str, torch.Tensor]) -> None:
        """Restore ``rng_state``."""

    def reseed(self, seed: int) -> None:
        """Fresh random streams (a resume with another world size)."""

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
    """Shared machinery of PoseCons and PoseDual: the hard view and its RNG.

    Args:
        nets: the nets (see ``net_names``).
        scale_factor, rot_factor: hard affine ranges (DATASET.SCALE_FACTOR / ROT_FACTOR).
        mask_joint_num: Joint Cutout draws per unlabeled sample (0 = off).
        unsup_transform: apply the hard affine to the hard view and the teacher heatmaps.
        cons_rand_aug: build the hard view from batch["unlabeled_aug"]["image"].
        cutout_mode: 'reference' or 'corrected' (see transforms.batch.joint_cutout).
        cutout_scale: multiplies Joint Cutout's pixel sizes (jitter, box half sizes), which the
            reference made for 256x192 crops (1.0 = the reference).
        align_corners: for affine_grid / grid_sample of the hard affine.
        joint_mask: optional [J] bool of supervised joints for the corrected cutout; when None the
            unlabeled target_weight > 0 gives it per sample.
        teacher_view: 'easy' (the reference: teachers see the plain unlabeled crop) or 'hard'
            (teachers see the crop under their own hard-affine draw, the student under another;
            both views are then equally hard: the same-difficulty setting of the collapse study).
        cons_rampup: epochs over which the consistency weight rises from ~0 to 1 along
            exp(-5 (1 - t)^2) (0 = full weight from the first step, the reference). The trainer
            reports progress through ``set_progress``.
        conf_thre: confidence mask of the consistency losses: joints whose target (teacher
            heatmap in the student's frame) peaks below this get weight 0 (0 = off, the
            reference).
        seed: seeds the per-device torch generator of the hard view (use a different seed per
            DDP rank).
        loss: heatmap loss (default JointsMSELoss(use_target_weight=True)).
    """

    step_scalars = ("cons_weight",)  # the ramp-up's weight

    def __init__(self, nets: NetsArg, scale_factor: float = 0.25, rot_factor: float = 30.0,
                 mask_joint_num: int = 0, unsup_transform: bool = True,
                 cons_rand_aug: bool = False, cutout_mode: str = "reference",
                 align_corners: bool = False, joint_mask: Optional[torch.Tensor] = None,
                 seed: int = 0, loss: Optional[nn.Module] = None, teacher_view: str = "easy",
                 cons_rampup: float = 0.0, conf_thre: float = 0.0, cutout_scale: float = 1.0):
        super().__init__(nets, loss)
        if cutout_mode not in CUTOUT_MODES:
            raise ValueError(f"CUTOUT_MODE {cutout_mode!r} unknown; use one of {CUTOUT_MODES}")
        if teacher_view not in TEACHER_VIEWS:
            raise ValueError(f"CONS_TEACHER_VIEW {teacher_view!r} unknown; use one of {TEACHER_VIEWS}")
        if teacher_view == "hard" and (mask_joint_num > 0 or not unsup_transform):
            raise ValueError("CONS_TEACHER_VIEW 'hard' needs UNSUP_TRANSFORM True and "
                             "MASK_JOINT_NUM 0 (cutout centres live in the easy view)")
        self.teacher_view = teacher_view
        if cons_rampup < 0:
            raise ValueError(f"CONS_RAMPUP_EPOCHS must be >= 0, got {cons_rampup}")
        self.cons_rampup, self.cons_weight = float(cons_rampup), 1.0 if cons_rampup == 0 else 0.0
        if not 0.0 <= conf_thre < 1.0:
            raise ValueError(f"CONS_CONF_THRE must be in [0, 1), got {conf_thre}")
        self.conf_thre = float(conf_thre)
        self.scale_factor, self.rot_factor = float(scale_factor), float(rot_factor)
        self.mask_joint_num = int(mask_joint_num)
        self.unsup_transform, self.cons_rand_aug = bool(unsup_transform), bool(cons_rand_aug)
        self.cutout_mode, self.align_corners = cutout_mode, bool(align_corners)
        if not cutout_scale > 0:
            raise ValueError(f"CUTOUT_SCALE must be > 0, got {cutout_scale}")
        self.cutout_scale = float(cutout_scale)
        # A non-persistent buffer follows .to(device) and stays out of checkpoints.
        self.register_buffer("joint_mask", None if joint_mask is None else
                             torch.as_tensor(joint_mask, dtype=torch.bool), persistent=False)
        self.seed = int(seed)
        self._generators: Dict[str, torch.Generator] = {}

    @classmethod
    def from_cfg(cls, cfg, nets: NetsArg, seed: Optional[int] = None,
                 joint_mask: Optional[torch.Tensor] = None) -> "SemiMethod":
        """Build from a config: UNSUP_TRANSFORM, CONS_RAND_AUG, MASK_JOINT_NUM, CUTOUT_MODE,
        HARD_AFFINE_ALIGN_CORNERS, CONS_TEACHER_VIEW, CONS_RAMPUP_EPOCHS, CONS_CONF_THRE,
        DATASET.SCALE_FACTOR / ROT_FACTOR, LOSS.USE_TARGET_WEIGHT, SEED
        (``seed`` overrides SEED, e.g. SEED + rank)."""
        return cls(nets, scale_factor=cfg.DATASET.SCALE_FACTOR, rot_factor=cfg.DATASET.ROT_FACTOR,
                   mask_joint_num=cfg.MASK_JOINT_NUM, unsup_transform=cfg.UNSUP_TRANSFORM,
                   cons_rand_aug=cfg.CONS_RAND_AUG, cutout_mode=cfg.CUTOUT_MODE,
                   align_corners=cfg.HARD_AFFINE_ALIGN_CORNERS, joint_mask=joint_mask,
                   seed=cfg.SEED if seed is None else seed,
                   loss=JointsMSELoss(cfg.LOSS.USE_TARGET_WEIGHT),
                   teacher_view=cfg.get("CONS_TEACHER_VIEW", "easy"),
                   cons_rampup=float(cfg.get("CONS_RAMPUP_EPOCHS", 0.0)),
                   conf_thre=float(cfg.get("CONS_CONF_THRE", 0.0)),
                   cutout_scale=float(cfg.get("CUTOUT_SCALE", 1.0)))

    def set_progress(self, epochs: float) -> None:
        """Training progress in epochs (fractional); sets the consistency weight of the ramp-up."""
        if self.cons_rampup > 0:
            t = min(max(epochs / self.cons_rampup, 0.0), 1.0)
            self.cons_weight = math.exp(-5.0 * (1.0 - t) ** 2)

    def cons_target_weight(self, target: torch.Tensor,
                           weight: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """Joint weights [N, J, 1] of a consistency loss against ``target`` [N, J, h, w]: the
        unlabeled target_weight, times the confidence mask when CONS_CONF_THRE > 0."""
        if self.conf_thre <= 0:
            return weight
        keep = (target.detach().flatten(2).amax(-1, keepdim=True) >= self.conf_thre).to(target.dtype)
        return keep if weight is None else weight * keep

    def with_kept(self, out: Dict[str, torch.Tensor],
                  *weights: Optional[torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Adds "cons_kept" (share of unlabeled joints the confidence mask keeps, averaged over
        the given consistency weights) to a step's output when the mask is on."""
        if self.conf_thre > 0 and weights and all(w is not None for w in weights):
            out["cons_kept"] = torch.stack([(w > 0).float().mean() for w in weights]).mean()
        return out

    def rng_state(self) -> Dict[str, torch.Tensor]:
        return {k: g.get_state() for k, g in self._generators.items()}

    def set_rng_state(self, states: Mapping[str, torch.Tensor]) -> None:
        for key, state in states.items():
            self.generator(torch.device(key)).set_state(state)

    def reseed(self, seed: int) -> None:
        for gen in self._generators.values():
            gen.manual_seed(seed)
        self.seed = int(seed)  # generators created later start from it too

    def generator(self, device: torch.device) -> Source:
        """The hard-view generator of ``device`` (created and seeded on first use), or the
        recorder / tape of a compiled step's draws while one is set."""
        if self.draw_source is not None:
            return self.draw_source
        key = str(device)
        if key not in self._generators:
            self._generators[key] = torch.Generator(device=device).manual_seed(self.seed)
        return self._generators[key]

    def hard_base(self, batch: Batch) -> torch.Tensor:
        """Images the hard view starts from: the RandAugment copy or the easy unlabeled crop."""
        if not self.cons_rand_aug:
            return batch["unlabeled"]["image"]  # type: ignore[index]
        if "unlabeled_aug" not in batch:
            raise KeyError("CONS_RAND_AUG is True but the batch has no 'unlabeled_aug' entry; "
                           "enable CONS_RAND_AUG in the dataset too or set it False")
        return batch["unlabeled_aug"]["image"]  # type: ignore[index]

    def cutout_mask_for(self, unlabeled: Dict[str, torch.Tensor]) -> Optional[torch.Tensor]:
        """Joints a corrected cutout may centre on: [J] or per sample [N, J] bool."""
        if self.joint_mask is not None:
            return self.joint_mask.to(unlabeled["image"].device)
        w = unlabeled.get("target_weight")
        return None if w is None else w.reshape(w.shape[0], -1) > 0

    def cutout(self, images: torch.Tensor, teacher: torch.Tensor,
               joint_mask: Optional[torch.Tensor]) -> torch.Tensor:
        """Joint Cutout centred on the teacher argmax [N, J, h, w] mapped to image pixels."""
        if self.mask_joint_num <= 0:
            return images  # every op of the hard view is out of place, so no copy is needed
        return joint_cutout(images, self.teacher_joints_px(teacher, images), self.mask_joint_num,
                            self.generator(images.device), self.cutout_mode, joint_mask,
                            self.cutout_scale)

    @staticmethod
    def teacher_joints_px(teacher: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """Teacher argmax [N, J, h, w] -> joint centres [N, J, 2] in pixels of ``images``."""
        coords, _ = max_preds_tensor(teacher)
        # The stride is derived from the sizes (the reference hard-codes 4); Python scalars avoid
        # a host-to-device copy.
        return torch.stack([coords[..., 0] * (images.shape[3] / teacher.shape[3]),
                            coords[..., 1] * (images.shape[2] / teacher.shape[2])], -1)

    def draw_theta(self, n: int, device: torch.device) -> torch.Tensor:
        """Per-sample hard affine [n, 2, 3] (identity when UNSUP_TRANSFORM is off)."""
        if not self.unsup_transform:
            return torch.eye(2, 3, device=device).expand(n, 2, 3).clone()
        return hard_affine_theta(n, self.scale_factor, self.rot_factor,
                                 self.generator(device), device)

    def apply_theta(self, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        return warp(x, theta, self.align_corners) if self.unsup_transform else x

    def teacher_input(self, x_u: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """What the teachers see: the easy crop, or (teacher_view 'hard') the crop warped by a
        theta of its own [N, 2, 3], which is returned so the target can be re-aligned."""
        if self.teacher_view == "easy":
            return x_u, None
        theta_t = self.draw_theta(x_u.shape[0], x_u.device)
        return self.apply_theta(x_u, theta_t), theta_t

    @staticmethod
    def target_theta(theta: torch.Tensor, theta_t: Optional[torch.Tensor]) -> torch.Tensor:
        """The warp [N, 2, 3] that takes teacher heatmaps to the student's frame.

        A warp by theta samples the source at theta @ p. The teacher saw x(theta_t p), so the
        student frame x(theta p) is reached by sampling the teacher at theta_t^-1 theta p.
        """
        return theta if theta_t is None else compose_theta(invert_theta(theta_t), theta)

    def teacher_target(self, t: torch.Tensor, theta: torch.Tensor,
                       theta_t: Optional[torch.Tensor]) -> torch.Tensor:
        """Teacher heatmaps [N, J, h, w] in the student's frame (see ``target_theta``)."""
        return self.apply_theta(t, self.target_theta(theta, theta_t))
