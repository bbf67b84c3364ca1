"""The hard-view ops: named functions that change an unlabeled crop (and, for the mixing ones,
its target and joint weights) in the easy-view frame, before a HardView's random affine.

``HARD_OPS`` is the table ``HardView(ops=...)`` and SSL.MULTI.PATHS / SSL.MULTIAUGS.PATHS read; a
new op is one function ``(view, hard_view, generator) -> view`` decorated with
``@register_hard_op("name")``. Each op takes its settings (box counts, cutout mode and scale) from
the hard view it runs in and draws only from the generator it is given, so a compiled step can
replay its draws.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Dict, Optional, Sequence, Set, Tuple, Union

import torch

from ..errors import ConfigError
from ..transforms.batch import (cutmix, joint_cut_occlusion, joint_cutout, max_preds_tensor,
                                mixup, random_partner)
from ..transforms.draws import Source
from ..transforms.multiaugs import (cutmix_holes, jccm, joco, keypoint_cut_occlusion,
                                    mixup_batch, random_cutout)

if TYPE_CHECKING:  # annotations only: parts.py imports this module
    from .parts import HardView


# ------------------------------------------------------------------------------- hard-view ops
@dataclass
class View:
    """One hard view while its ops run, in the easy-view frame.

    image [N, 3, H, W]; target [N, J, h, w] (what the student must predict on ``image``);
    weight [N, J, 1] or None; teacher: the heatmaps whose argmax places joint-centred ops;
    joint_mask: joints a corrected cutout may centre on ([J] or [N, J] bool, or None).
    """

    image: torch.Tensor
    target: torch.Tensor
    weight: Optional[torch.Tensor]
    teacher: torch.Tensor
    joint_mask: Optional[torch.Tensor]
    _joints: Optional[torch.Tensor] = None

    def joints_px(self) -> torch.Tensor:
        """The teacher's argmax in pixels of the image [N, J, 2] (computed once per view)."""
        if self._joints is None:
            self._joints = teacher_joints_px(self.teacher, self.image)
        return self._joints


# An op: (view, its hard view's settings, the draw source) -> the changed view.
HardOp = Callable[[View, "HardView", Source], View]
HARD_OPS: Dict[str, HardOp] = {}
# The ops whose boxes, holes or jitter are in pixels of a 256x192 crop, scaled by the hard view's
# cutout_scale: a smaller crop needs a scale below 1 (parts.crop_scale_advice says which).
PIXEL_SIZED_OPS: Set[str] = set()


def register_hard_op(name: str, pixel_sizes: bool = False) -> Callable[[HardOp], HardOp]:
    """Function decorator: make ``name`` usable in a hard view's ops (and in SSL.MULTI.PATHS).
    ``pixel_sizes``: the op's sizes are pixels of a 256x192 crop times the view's cutout_scale."""
    def deco(fn: HardOp) -> HardOp:
        if name in HARD_OPS and HARD_OPS[name] is not fn:
            raise ValueError(f"hard-view op {name!r} is already registered")
        HARD_OPS[name] = fn
        if pixel_sizes:
            PIXEL_SIZED_OPS.add(name)
        return fn
    return deco


def teacher_joints_px(teacher: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Teacher argmax [N, J, h, w] -> joint centres [N, J, 2] in pixels of ``images``."""
    coords, _ = max_preds_tensor(teacher)
    # The stride is derived from the sizes (the reference hard-codes 4); Python scalars avoid
    # a host-to-device copy.
    return torch.stack([coords[..., 0] * (images.shape[3] / teacher.shape[3]),
                        coords[..., 1] * (images.shape[2] / teacher.shape[2])], -1)


@register_hard_op("cutout", pixel_sizes=True)
def _cutout(view: View, hv: "HardView", gen: Source) -> View:
    """Joint Cutout: zeroed boxes around the teacher's joints; the target is unchanged."""
    view.image = joint_cutout(view.image, view.joints_px(), hv.joint_num, gen, hv.cutout_mode,
                              view.joint_mask, hv.cutout_scale)
    return view


@register_hard_op("occlusion", pixel_sizes=True)
def _occlusion(view: View, hv: "HardView", gen: Source) -> View:
    """Joint cut-occlusion: the boxes filled from a partner crop; the target is unchanged."""
    view.image = joint_cut_occlusion(view.image, view.joints_px(), hv.joint_num, gen,
                                     view.joint_mask, scale=hv.cutout_scale)
    return view


def _mixing(op: Callable) -> HardOp:
    def apply(view: View, hv: "HardView", gen: Source) -> View:
        perm = random_partner(view.image.shape[0], gen, view.image.device)
        view.image, view.target = op(view.image, view.target, perm, gen)
        if view.weight is not None:  # a mixed joint counts only where both crops' joints do
            view.weight = view.weight * view.weight[perm]
        return view
    apply.__doc__ = f"{op.__name__} with a random partner crop, into the image and the target."
    return apply


register_hard_op("cutmix")(_mixing(cutmix))
register_hard_op("mixup")(_mixing(mixup))
register_hard_op("none")(lambda view, hv, gen: view)


# The ops of MultiAugs / SSPCM as released (transforms/multiaugs.py): counts from the hard
# view's ``op_counts``, mode from its ``op_mode``, pixel sizes times its ``cutout_scale``. None
# of them changes the target or the joint weights (they occlude; no joint moves).
@register_hard_op("jc", pixel_sizes=True)
def _jc(view: View, hv: "HardView", gen: Source) -> View:
    """Joint Cutout with the 'jc' count and the op mode (MultiAugs' JC path)."""
    view.image = joint_cutout(view.image, view.joints_px(), hv.op_counts["jc"], gen, hv.op_mode,
                              view.joint_mask, hv.cutout_scale)
    return view


@register_hard_op("jo", pixel_sizes=True)
def _jo(view: View, hv: "HardView", gen: Source) -> View:
    """Keypoint cut-occlusion (JO / SSCO), 'jo' pastes."""
    view.image = keypoint_cut_occlusion(view.image, view.joints_px(), gen, hv.op_mode,
                                        hv.op_counts["jo"], hv.cutout_scale)
    return view


@register_hard_op("co", pixel_sizes=True)
def _co(view: View, hv: "HardView", gen: Source) -> View:
    """Cutout (CO): 'co' random holes set to zero."""
    view.image = random_cutout(view.image, gen, hv.op_mode, hv.op_counts["co"], hv.cutout_scale)
    return view


@register_hard_op("cm", pixel_sizes=True)
def _cm(view: View, hv: "HardView", gen: Source) -> View:
    """Hole CutMix (CM): 'cm' holes filled from a partner crop; targets not mixed."""
    view.image = cutmix_holes(view.image, gen, hv.op_mode, hv.op_counts["cm"], hv.cutout_scale)
    return view


@register_hard_op("mu")
def _mu(view: View, hv: "HardView", gen: Source) -> View:
    """MixUp (MU): one lambda in (0.75, 1] per batch; targets not mixed."""
    view.image = mixup_batch(view.image, gen)
    return view


@register_hard_op("joco", pixel_sizes=True)
def _joco(view: View, hv: "HardView", gen: Source) -> View:
    """JOCO: JO ('jo' pastes), then CO ('co' holes)."""
    view.image = joco(view.image, view.joints_px(), gen, hv.op_mode, hv.op_counts["jo"],
                      hv.op_counts["co"], hv.cutout_scale)
    return view


@register_hard_op("jccm", pixel_sizes=True)
def _jccm(view: View, hv: "HardView", gen: Source) -> View:
    """JCCM: Joint Cutout ('jc' boxes), then CM ('cm' holes: 5 for MultiAugs dual)."""
    view.image = jccm(view.image, view.joints_px(), gen, hv.op_mode, hv.op_counts["jc"],
                      hv.op_counts["cm"], view.joint_mask, hv.cutout_scale)
    return view


def parse_ops(entry: Union[str, Sequence[str]], key: str = "SSL.MULTI.PATHS") -> Tuple[str, ...]:
    """'occlusion+cutout' (or a sequence of names) -> ('occlusion', 'cutout'); ValueError naming
    the entry for an op that is not registered."""
    ops = (tuple(op.strip() for op in entry.split("+")) if isinstance(entry, str)
           else tuple(entry))
    bad = [op for op in ops if op not in HARD_OPS]
    if bad:
        raise ConfigError(f"{key} entry {entry!r}: unknown op {bad[0]!r}; ops are "
                         f"{sorted(HARD_OPS)}, joined by '+'")
    return ops
