"""The parts a semi-supervised method is assembled from: a random stream, a hard view and a
consistency term.

A method step (posecons.py, posedual.py, ...) reads as the algorithm: teacher pass, hard view,
student pass, losses. What each of those does is configured here, once:

- ``DrawStream``: the hard view's random numbers, one ``torch.Generator`` per device, seeded from
  the run's seed (and rank). Its ``source`` slot is where the compile wrapper (compiled.py) plugs
  a recorder or a tape; nothing else knows about compilation.
- ``HardView``: what the student sees. Starting from the easy unlabeled crop (or its RandAugment
  twin), named ops run in the easy-view frame (hard_ops.py: Joint Cutout, cut-occlusion, cutmix,
  mixup, and the MultiAugs / SSPCM ops), then one random affine (the hard affine) warps the view
  and the teacher heatmaps alike. It also decides what the teacher sees.
- ``Consistency``: the loss between the student on the hard view and the teacher target: its
  weight and ramp-up, the confidence mask and the heatmap loss.

Every option is read from the config's SSL section in one ``from_cfg`` per part and checked in
one ``__init__`` per part; config/checks.py builds the parts to check a config, so a bad value is
reported when the config is loaded, by the same code that would use it.
"""
from __future__ import annotations

import math
from typing import Dict, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from ..errors import ConfigError, ConfigLookupError
from ..losses import JointsMSELoss
from ..transforms.batch import CUTOUT_MODES, compose_theta, hard_affine_theta, invert_theta, warp
from ..transforms.draws import Recorder, Source, Tape
from ..transforms.multiaugs import check_mode
# The op table lives in hard_ops.py; its names are re-exported here, where a method finds its parts.
from .hard_ops import (HARD_OPS, PIXEL_SIZED_OPS, HardOp, View, parse_ops,  # noqa: F401
                       register_hard_op, teacher_joints_px)

TEACHER_VIEWS = ("easy", "hard")
# Per-op counts of the MultiAugs / SSPCM ops (HardView's op_counts): Joint Cutout boxes, JO
# pastes, CO holes, CM holes (5 inside the dual network's JCCM).
DEFAULT_OP_COUNTS: Dict[str, int] = {"jc": 5, "jo": 2, "co": 5, "cm": 2}
Batch = Dict[str, object]


# ------------------------------------------------------------------------------- random stream
class DrawStream:
    """The hard view's random generator of each device, created and seeded on first use.

    ``source``: while set (by the compile wrapper), draws come from it (a ``Recorder`` noting
    them or a ``Tape`` replaying them) instead of the generator.
    """

    def __init__(self, seed: int = 0):
        self.seed = int(seed)
        self.generators: Dict[str, torch.Generator] = {}
        self.source: Optional[Union[Recorder, Tape]] = None

    def generator(self, device: torch.device) -> torch.Generator:
        """The plain generator of ``device`` (what a recorder wraps and a replay draws from)."""
        key = str(device)
        if key not in self.generators:
            self.generators[key] = torch.Generator(device=device).manual_seed(self.seed)
        return self.generators[key]

    def __call__(self, device: torch.device) -> Source:
        """Where the draws of a step on ``device`` come from."""
        return self.source if self.source is not None else self.generator(device)

    def state_dict(self) -> Dict[str, torch.Tensor]:
        return {k: g.get_state() for k, g in self.generators.items()}

    def load_state_dict(self, states: Mapping[str, torch.Tensor]) -> None:
        for key, state in states.items():
            self.generator(torch.device(key)).set_state(state)

    def reseed(self, seed: int) -> None:
        """Fresh streams (a resume with another world size); later generators start from it."""
        for gen in self.generators.values():
            gen.manual_seed(seed)
        self.seed = int(seed)


# ------------------------------------------------------------------------------- hard view
class HardView(nn.Module):
    """The hard view of an unlabeled crop and the re-alignment of teacher heatmaps to it.

    Args:
        ops: hard-view ops run in the easy-view frame, in order (``HARD_OPS`` names). The
            reference's PoseCons / PoseDual use ('cutout',) with Joint Cutout on, else ().
        joint_num: boxes per joint-centred op (SSL.HARD.JOINT_CUTOUT, the reference's
            MASK_JOINT_NUM; SSL.MULTI.MASK_JOINT_NUM for MultiAugs-style paths).
        cutout_mode: 'reference' or 'corrected' (see transforms.batch.joint_cutout).
        cutout_scale: multiplies the cutout's pixel sizes, made for 256x192 crops.
        rand_aug: start from the RandAugment twin batch["unlabeled_aug"] instead of the crop.
        affine: warp the hard view and the teacher heatmaps by a random affine.
        scale_factor, rot_factor: its ranges (DATASET.SCALE_FACTOR / ROT_FACTOR).
        align_corners: of affine_grid / grid_sample in that warp.
        teacher_view: 'easy' (the reference: teachers see the plain crop) or 'hard' (teachers see
            the crop under a hard affine of their own; the collapse study's same-difficulty
            setting).
        joint_mask: [J] bool of the joints a corrected cutout may centre on (None: per sample,
            from the unlabeled target_weight).
        seed: seed of the ``DrawStream`` (the run's seed plus the rank).
        op_counts: counts of the ops 'jc', 'jo', 'co', 'cm' and the composites (keys 'jc', 'jo',
            'co', 'cm'; missing keys keep DEFAULT_OP_COUNTS: 5, 2, 5, 2).
        op_mode: 'reference' (the released code's geometry) or 'corrected', for those ops
            (see transforms.multiaugs); 'cutout' and 'occlusion' keep cutout_mode.
    """

    def __init__(self, ops: Sequence[str] = (), joint_num: int = 0,
                 cutout_mode: str = "reference", cutout_scale: float = 1.0,
                 rand_aug: bool = False, affine: bool = True, scale_factor: float = 0.25,
                 rot_factor: float = 30.0, align_corners: bool = False,
                 teacher_view: str = "easy", joint_mask: Optional[torch.Tensor] = None,
                 seed: int = 0, op_counts: Optional[Mapping[str, int]] = None,
                 op_mode: str = "reference"):
        super().__init__()
        self.ops = parse_ops(tuple(ops), "hard view")
        if cutout_mode not in CUTOUT_MODES:
            raise ConfigError(f"SSL.HARD.CUTOUT_MODE (CUTOUT_MODE) {cutout_mode!r} unknown; use "
                             f"one of {CUTOUT_MODES}")
        if teacher_view not in TEACHER_VIEWS:
            raise ConfigError(f"SSL.HARD.TEACHER_VIEW (CONS_TEACHER_VIEW) {teacher_view!r} "
                             f"unknown; use one of {TEACHER_VIEWS}")
        if teacher_view == "hard" and (joint_num > 0 or not affine):
            raise ConfigError("CONS_TEACHER_VIEW 'hard' (SSL.HARD.TEACHER_VIEW) gives the teacher "
                             "its own hard affine (cutout centres live in the easy view): it needs "
                             "UNSUP_TRANSFORM True and MASK_JOINT_NUM 0 (SSL.HARD.AFFINE, "
                             f"SSL.HARD.JOINT_CUTOUT; got {affine}, {joint_num})")
        if joint_num < 0:
            raise ConfigError(f"SSL.HARD.JOINT_CUTOUT (MASK_JOINT_NUM) must be >= 0, got {joint_num}")
        if not cutout_scale > 0:
            raise ConfigError(f"SSL.HARD.CUTOUT_SCALE (CUTOUT_SCALE) must be > 0, got {cutout_scale}")
        self.joint_num, self.cutout_mode = int(joint_num), cutout_mode
        self.cutout_scale, self.rand_aug = float(cutout_scale), bool(rand_aug)
        self.affine, self.align_corners = bool(affine), bool(align_corners)
        self.scale_factor, self.rot_factor = float(scale_factor), float(rot_factor)
        self.teacher_view = teacher_view
        unknown = sorted(set(op_counts or {}) - set(DEFAULT_OP_COUNTS))
        if unknown:
            raise ConfigError(f"hard-view op_counts key {unknown[0]!r} unknown; keys are "
                             f"{sorted(DEFAULT_OP_COUNTS)}")
        self.op_counts: Dict[str, int] = {**DEFAULT_OP_COUNTS,
                                          **{k: int(v) for k, v in (op_counts or {}).items()}}
        bad = [k for k, v in self.op_counts.items() if v < 0]
        if bad:
            raise ConfigError(f"hard-view op_counts[{bad[0]!r}] must be >= 0, got "
                             f"{self.op_counts[bad[0]]}")
        check_mode(op_mode)
        self.op_mode = op_mode
        # A non-persistent buffer follows .to(device) and stays out of checkpoints.
        self.register_buffer("joint_mask", None if joint_mask is None else
                             torch.as_tensor(joint_mask, dtype=torch.bool), persistent=False)
        self.stream = DrawStream(seed)

    @classmethod
    def from_cfg(cls, cfg, seed: Optional[int] = None,
                 joint_mask: Optional[torch.Tensor] = None) -> "HardView":
        """SSL.HARD.* and DATASET.SCALE_FACTOR / ROT_FACTOR; ``seed`` overrides SEED."""
        h = cfg.SSL.HARD
        return cls(ops=("cutout",) if h.JOINT_CUTOUT > 0 else (), joint_num=h.JOINT_CUTOUT,
                   cutout_mode=h.CUTOUT_MODE, cutout_scale=h.CUTOUT_SCALE, rand_aug=h.RAND_AUG,
                   affine=h.AFFINE, scale_factor=cfg.DATASET.SCALE_FACTOR,
                   rot_factor=cfg.DATASET.ROT_FACTOR, align_corners=h.ALIGN_CORNERS,
                   teacher_view=h.TEACHER_VIEW, joint_mask=joint_mask,
                   seed=cfg.SEED if seed is None else seed)

    def pixel_ops(self) -> Tuple[str, ...]:
        """This view's ops whose sizes are pixels of a 256x192 crop (boxes actually drawn)."""
        no_boxes = ("cutout", "occlusion") if self.joint_num == 0 else ()
        return tuple(op for op in self.ops if op in PIXEL_SIZED_OPS and op not in no_boxes)

    def with_ops(self, ops: Sequence[str], joint_num: int) -> "HardView":
        """A view with other ops and box count that shares this one's settings (op counts and
        op mode included), joint mask and random stream (MultiAugs-style paths: one stream for
        all paths of a step)."""
        other = HardView(ops, joint_num, self.cutout_mode, self.cutout_scale, self.rand_aug,
                         self.affine, self.scale_factor, self.rot_factor, self.align_corners,
                         self.teacher_view, self.joint_mask, self.stream.seed,
                         self.op_counts, self.op_mode)
        other.stream = self.stream
        return other

    # ---------------------------------------------------------------- inputs
    def base(self, batch: Batch) -> torch.Tensor:
        """Images the hard view starts from: the RandAugment twin or the easy unlabeled crop."""
        if not self.rand_aug:
            return batch["unlabeled"]["image"]  # type: ignore[index]
        if "unlabeled_aug" not in batch:
            raise ConfigLookupError("CONS_RAND_AUG (SSL.HARD.RAND_AUG) is True but the batch has no "
                           "'unlabeled_aug' entry; enable it in the dataset too or set it False")
        return batch["unlabeled_aug"]["image"]  # type: ignore[index]

    def mask_for(self, unlabeled: Mapping[str, torch.Tensor]) -> Optional[torch.Tensor]:
        """Joints a corrected cutout may centre on: [J] or per sample [N, J] bool."""
        if self.joint_mask is not None:
            return self.joint_mask.to(unlabeled["image"].device)
        w = unlabeled.get("target_weight")
        return None if w is None else w.reshape(w.shape[0], -1) > 0

    # ---------------------------------------------------------------- ops and warps
    def apply_ops(self, base: torch.Tensor, teacher: torch.Tensor,
                  weight: Optional[torch.Tensor], joint_mask: Optional[torch.Tensor]
                  ) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        """(image, target, weight) after this view's ops, still in the easy-view frame; the ops
        centred on joints use the argmax of ``teacher``. Every op works out of place, so no op
        (and no empty op list) needs a copy of ``base``."""
        view = View(base, teacher, weight, teacher, joint_mask)
        gen = self.stream(base.device) if self.ops else None
        for op in self.ops:
            view = HARD_OPS[op](view, self, gen)
        return view.image, view.target, view.weight

    def draw_theta(self, n: int, device: torch.device) -> torch.Tensor:
        """Per-sample hard affine [n, 2, 3] (identity when the affine is off)."""
        if not self.affine:
            return torch.eye(2, 3, device=device).expand(n, 2, 3).clone()
        return hard_affine_theta(n, self.scale_factor, self.rot_factor, self.stream(device),
                                 device)

    def warp(self, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        return warp(x, theta, self.align_corners) if self.affine else x

    def teacher_input(self, x_u: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """What the teachers see: the easy crop, or (teacher view 'hard') the crop warped by a
        theta of its own [N, 2, 3], returned so that the target can be re-aligned."""
        if self.teacher_view == "easy":
            return x_u, None
        theta_t = self.draw_theta(x_u.shape[0], x_u.device)
        return self.warp(x_u, theta_t), theta_t

    @staticmethod
    def target_theta(theta: torch.Tensor, theta_t: Optional[torch.Tensor]) -> torch.Tensor:
        """The warp [N, 2, 3] that takes teacher heatmaps to the student's frame.

        A warp by theta samples the source at theta @ p. The teacher saw x(theta_t p), so the
        student frame x(theta p) is reached by sampling the teacher at theta_t^-1 theta p.
        """
        return theta if theta_t is None else compose_theta(invert_theta(theta_t), theta)


# The crop the ops' pixel sizes were made for (the reference's 256x192, as [w, h]), and how much
# larger than their share of that crop the boxes may be before a run is warned.
REFERENCE_CROP = (192, 256)
CROP_SCALE_TOLERANCE = 1.5


def crop_scale_advice(method: nn.Module, image_size: Sequence[int]) -> Optional[str]:
    """A warning when ``method``'s hard views draw boxes sized for 256x192 crops on a much
    smaller crop (MODEL.IMAGE_SIZE [w, h]) without SSL.HARD.CUTOUT_SCALE bringing them down, or
    None. The scale that keeps the boxes' share of the crop is sqrt(w h / (192 * 256)); above
    1.5 times that, boxes cover over 2.25x their reference share (five Joint Cutout boxes at
    scale 1 cover about 30% of a 96x64 crop, and the student cannot match its target)."""
    w, h = (int(v) for v in image_size)
    fit = math.sqrt(w * h / (REFERENCE_CROP[0] * REFERENCE_CROP[1]))
    views = [m for m in method.modules() if isinstance(m, HardView) and m.pixel_ops()]
    big = [v for v in views if v.cutout_scale > CROP_SCALE_TOLERANCE * fit]
    if not big:
        return None
    ops = sorted({op for v in big for op in v.pixel_ops()})
    scale = max(v.cutout_scale for v in big)
    return (f"SSL.HARD.CUTOUT_SCALE (CUTOUT_SCALE) is {scale:g} on a {h}x{w} crop "
            f"(MODEL.IMAGE_SIZE [{w}, {h}]): the hard-view ops {ops} draw boxes sized for "
            f"256x192 crops, which here cover {(scale / fit) ** 2:.1f}x their share of the crop. "
            f"Set SSL.HARD.CUTOUT_SCALE {fit:.3f} to keep the reference share.")


# ------------------------------------------------------------------------------- consistency
class Consistency(nn.Module):
    """The consistency term: weight x ramp-up x loss(student, target, joint weights x mask).

    Args:
        weight: constant factor of the term (1.0 = the reference).
        rampup_epochs: epochs over which the factor rises from ~0 along exp(-5 (1 - t)^2)
            (0 = the full factor from the first step, the reference). The trainer reports the
            progress through ``set_progress``.
        conf_thre: confidence mask: joints whose target peaks below it get weight 0 (0 = off).
        loss: heatmap loss (default JointsMSELoss(use_target_weight=True)).
    """

    # Floats that change between steps: a compiled step takes them as tensor inputs.
    step_scalars = ("scale",)

    def __init__(self, weight: float = 1.0, rampup_epochs: float = 0.0, conf_thre: float = 0.0,
                 loss: Optional[nn.Module] = None):
        super().__init__()
        if not weight > 0:
            raise ConfigError(f"SSL.CONS.WEIGHT must be > 0, got {weight}")
        if rampup_epochs < 0:
            raise ConfigError(f"SSL.CONS.RAMPUP_EPOCHS (CONS_RAMPUP_EPOCHS) must be >= 0, got "
                             f"{rampup_epochs}")
        if not 0.0 <= conf_thre < 1.0:
            raise ConfigError(f"SSL.CONS.CONF_THRE (CONS_CONF_THRE) must be in [0, 1), got "
                             f"{conf_thre}")
        self.weight, self.rampup_epochs = float(weight), float(rampup_epochs)
        self.conf_thre = float(conf_thre)
        self.loss = loss if loss is not None else JointsMSELoss(use_target_weight=True)
        self.scale = self.weight if rampup_epochs == 0 else 0.0  # the factor of this step

    @classmethod
    def from_cfg(cls, cfg) -> "Consistency":
        """SSL.CONS.* and LOSS.USE_TARGET_WEIGHT."""
        c = cfg.SSL.CONS
        return cls(c.WEIGHT, c.RAMPUP_EPOCHS, c.CONF_THRE,
                   JointsMSELoss(cfg.LOSS.USE_TARGET_WEIGHT))

    def set_progress(self, epochs: float) -> None:
        """Training progress in (fractional) epochs: sets the ramp-up's factor."""
        if self.rampup_epochs > 0:
            t = min(max(epochs / self.rampup_epochs, 0.0), 1.0)
            ramp = math.exp(-5.0 * (1.0 - t) ** 2)
            self.scale = ramp if self.weight == 1.0 else self.weight * ramp

    def joint_weight(self, target: torch.Tensor,
                     weight: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """Joint weights [N, J, 1] of a term against ``target`` [N, J, h, w]: the unlabeled
        target_weight, times the confidence mask when it is on."""
        if self.conf_thre <= 0:
            return weight
        keep = (target.detach().flatten(2).amax(-1, keepdim=True) >= self.conf_thre)
        keep = keep.to(target.dtype)
        return keep if weight is None else weight * keep

    def term(self, student: torch.Tensor, target: torch.Tensor,
             weight: Optional[torch.Tensor]) -> torch.Tensor:
        """The unscaled loss of ``student`` against ``target`` with the joint weights."""
        return self.loss(student, target, weight)

    def kept(self, *weights: Optional[torch.Tensor]) -> Dict[str, torch.Tensor]:
        """{"cons_kept": share of joints the mask keeps, averaged over the terms' weights} while
        the mask is on, else {} (a logged term of the step)."""
        if self.conf_thre > 0 and weights and all(w is not None for w in weights):
            return {"cons_kept": torch.stack([(w > 0).float().mean() for w in weights]).mean()}
        return {}

