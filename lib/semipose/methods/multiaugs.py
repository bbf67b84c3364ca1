"""MultiAugs as published: several hard views of each unlabeled crop against one shared target.

Zhou et al., "Boosting Semi-Supervised 2D Human Pose Estimation by Revisiting Data Augmentation
and Consistency Training" (arXiv 2402.11566), from its released code (the reference's
METHODS_AFTER_POSEDUAL.md, section 2):

- ``multiaugs`` (one net): the paths JC, JO, JOCO, JCCM (SSL.MULTIAUGS.PATHS) each turn the easy
  unlabeled crop into a hard view with draws of their own, joint-centred ops placed by the
  teacher's argmax; ONE hard affine theta per sample warps every path's view and, once, the
  teacher heatmaps; the student predicts each path's view in a pass of its own and every path
  regresses the same target, its loss weighted 1 and summed.
- ``multiaugs_dual`` (two nets): the same paths per net, net 1's views centred on net 2's joints
  and taught by net 2 (and the other way round), as PoseDual; validation adds the row "mean"
  (the mean of the two nets' metrics), the published figure and checkpoint metric.

Unlike ``pose_multi`` (multi_path.py): one theta for all paths (not one per path), one student
pass per path (not one over the concatenated paths, unless ``concat``), MultiAugs' own ops and
per-op counts (HardView's ``op_counts`` / ``op_mode``), and no target mixing.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from ..errors import ConfigError
from ..types import StepOutput
from .base import Batch, NetsArg, SemiMethod
from .parts import HardView, parse_ops
from .posedual import PoseDual
from .registry import register_method

# The reported COCO runs' paths, in the released code's fixed order (JC, JO, CO, MU, CM, JOCO,
# JCCM).
DEFAULT_PATHS: Tuple[str, ...] = ("jc", "jo", "joco", "jccm")
# semipose's own mixing ops change the target and the joint weights; MultiAugs' paths all regress
# one target, so they are refused (MultiAugs' CutMix and MixUp are 'cm' and 'mu').
TARGET_MIXING_OPS = {"cutmix": "cm", "mixup": "mu"}
KEY = "SSL.MULTIAUGS.PATHS"


def path_names(paths: Sequence[Tuple[str, ...]]) -> Tuple[str, ...]:
    """Names of the paths in the logged terms: the ops joined by '_' ('jc', 'jo_co'), a repeated
    path numbered from its second occurrence ('jc', 'jc_2')."""
    seen: Dict[str, int] = {}
    out: List[str] = []
    for ops in paths:
        name = "_".join(ops)
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return tuple(out)


class MultiAugsPaths:
    """Mixin for a SemiMethod: the MultiAugs paths and the one shared hard affine.

    Args (besides the combined method's):
        paths: one hard view per entry, '+'-joined registered ops (default JC, JO, JOCO, JCCM).
            Their counts and geometry are the hard view's ``op_counts`` and ``op_mode``.
        jccm_cm: CutMix holes inside JCCM (None: the model's default, ``jccm_cm_from``: the
            'cm' count in the single-network code, the 'co' count in the dual-network code).
        concat: one student pass over the paths concatenated (BatchNorm then sees them together)
            instead of one pass per path (the released code, the default).
    """

    # which op count JCCM's CutMix takes by default: the released single-network code reads the
    # CM count (2), the dual-network code the CO count (5)
    jccm_cm_from = "cm"

    def __init__(self, nets: NetsArg, paths: Sequence[str] = DEFAULT_PATHS,
                 jccm_cm: Optional[int] = None, concat: bool = False, **kwargs: Any):
        super().__init__(nets, **kwargs)  # the SemiMethod this mixin is combined with
        hard: HardView = self.hard  # type: ignore[attr-defined]
        if hard.teacher_view != "easy":
            raise ConfigError(f"{type(self).__name__} needs SSL.HARD.TEACHER_VIEW 'easy' (its ops "
                              f"live in the easy-view frame), got {hard.teacher_view!r}")
        if len(paths) == 0:
            raise ConfigError(f"{KEY} is empty; give at least one path, e.g. {list(DEFAULT_PATHS)}")
        parsed = tuple(parse_ops(str(entry), KEY) for entry in paths)
        for entry, ops in zip(paths, parsed):
            mixing = [op for op in ops if op in TARGET_MIXING_OPS]
            if mixing:
                raise ConfigError(f"{KEY} entry {entry!r}: {mixing[0]!r} mixes the target, but "
                                  "every MultiAugs path regresses the same teacher target; use "
                                  f"{TARGET_MIXING_OPS[mixing[0]]!r} (MultiAugs' own op)")
        if jccm_cm is not None and jccm_cm < 0:
            raise ConfigError(f"SSL.MULTIAUGS.JCCM_CM must be >= 0 (or -1: the model's default), "
                              f"got {jccm_cm}")
        self.jccm_cm = int(hard.op_counts[self.jccm_cm_from] if jccm_cm is None else jccm_cm)
        self.concat = bool(concat)
        self.path_names = path_names(parsed)
        views = []
        for ops in parsed:
            # the hard view's settings, op counts and random stream; JCCM's own CutMix count
            view = hard.with_ops(ops, hard.joint_num)
            if "jccm" in ops:
                view.op_counts = {**view.op_counts, "cm": self.jccm_cm}
            views.append(view)
        self.paths = nn.ModuleList(views)

    @classmethod
    def options_from_cfg(cls, cfg, seed: Optional[int],
                         joint_mask: Optional[torch.Tensor]) -> Dict[str, Any]:
        """The combined method's options, the hard view given SSL.MULTIAUGS' op counts and op
        mode, plus SSL.MULTIAUGS.PATHS, JCCM_CM (-1: the model's default) and CONCAT."""
        opts = super().options_from_cfg(cfg, seed, joint_mask)  # type: ignore[misc]
        m, h = cfg.SSL.MULTIAUGS, opts["hard"]
        opts["hard"] = HardView(h.ops, h.joint_num, h.cutout_mode, h.cutout_scale, h.rand_aug,
                                h.affine, h.scale_factor, h.rot_factor, h.align_corners,
                                h.teacher_view, h.joint_mask, h.stream.seed,
                                op_counts={"jc": m.JC, "jo": m.JO, "co": m.CO, "cm": m.CM},
                                op_mode=m.OP_MODE)
        return dict(opts, paths=tuple(m.PATHS), jccm_cm=None if m.JCCM_CM == -1 else m.JCCM_CM,
                    concat=m.CONCAT)

    def path_views(self, batch: Batch, teachers: Sequence[torch.Tensor]
                   ) -> Tuple[Tuple[Tuple[torch.Tensor, ...], ...], torch.Tensor]:
        """Every path's hard view around each of ``teachers`` (call it without grad).

        For each teacher heatmap in ``teachers`` (in order), each path's ops in order, with their
        own draws from the shared stream, on the easy crop (joint-centred ops placed by that
        teacher's argmax); then ONE theta [N, 2, 3] per sample, drawn after all of them, warps
        every view. Returns (views per teacher, each a tuple over the paths; theta). The targets
        are the teachers warped by the same theta (``warp_target``): the ops leave them alone.
        """
        hard: HardView = self.hard  # type: ignore[attr-defined]
        unl = batch["unlabeled"]
        base, mask, weight = hard.base(batch), hard.mask_for(unl), unl.get("target_weight")
        made = [tuple(path.apply_ops(base, t, weight, mask)[0] for path in self.paths)
                for t in teachers]
        theta = hard.draw_theta(base.shape[0], base.device)
        return tuple(tuple(hard.warp(img, theta) for img in imgs) for imgs in made), theta

    def students(self, net: nn.Module, views: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        """The student's heatmaps on each path's view: one pass per path (the released code), or
        one pass over them concatenated (``concat``)."""
        if self.concat:
            return list(net(torch.cat(list(views))).split(views[0].shape[0]))
        return [net(v) for v in views]


@register_method("multiaugs")
class MultiAugs(MultiAugsPaths, SemiMethod):
    """MultiAugs, one network (section 2.1 of the spec).

    1. sup = f(x_L) -> loss_pose = MSE(sup, target_L, w_L).
    2. Teacher (no grad, train mode as in PoseCons): t = f(x_U).
    3. Per path p (default JC, JO, JOCO, JCCM): h_p = the path's ops on x_U (its own draws; JC
       and JO centred on argmax(t) * stride); one theta per sample for all paths:
       hard_p = warp(h_p, theta), T = warp(t, theta) once.
    4. s_p = f(hard_p), one pass per path; loss_cons_<p> = MSE(s_p, T, w_U) (w_U times the
       confidence mask when it is on); loss = loss_pose + sum_p loss_cons_<p> (weight 1 each,
       times the consistency factor, 1 in the released code).

    SSL.HARD.JOINT_CUTOUT is not used (the paths' ops are the hard view); SSL.HARD.CUTOUT_SCALE
    scales the ops' pixel sizes. Debug tensors: PoseCons' names for the first path. Terms:
    "loss_pose", "loss_cons" (the sum over the paths), "loss_cons_<path>" (e.g. loss_cons_joco).
    """

    net_names = ("net1",)

    def training_step(self, batch: Batch) -> StepOutput:
        lab, unl = batch["labeled"], batch["unlabeled"]
        net = self.nets["net1"]
        sup = net(lab["image"])
        loss_pose = self.loss(sup, lab["target"], lab.get("target_weight"))

        with torch.no_grad():
            t = net(unl["image"])
            (views,), theta = self.path_views(batch, (t,))
            target = self.hard.warp(t, theta)  # one target for every path
            w_cons = self.cons.joint_weight(target, unl.get("target_weight"))
        s = self.students(net, views)
        terms = [self.cons.term(s_p, target, w_cons) for s_p in s]
        loss_cons = torch.stack(terms).sum()

        logged = {"loss_pose": loss_pose.detach(), "loss_cons": loss_cons.detach()}
        logged.update({f"loss_cons_{name}": term.detach()
                       for name, term in zip(self.path_names, terms)})
        return StepOutput(
            loss=loss_pose + self.cons.scale * loss_cons,
            terms={**logged, **self.cons.kept(w_cons)},
            sup_heatmaps=sup.detach(),
            debug={"teacher_heatmaps": t, "teacher_warped": target, "hard_images": views[0],
                   "student_heatmaps": s[0].detach(), "theta": theta})


@register_method("multiaugs_dual")
class MultiAugsDual(MultiAugsPaths, PoseDual):
    """MultiAugs, two networks cross-supervised as PoseDual (section 2.2 of the spec).

    1. loss_pose = w MSE(f1(x_L)) + w MSE(f2(x_L)), w = SSL.DUAL_SUP_WEIGHT (0.5 as released).
    2. Teachers (no grad, train mode): t1 = f1(x_U), t2 = f2(x_U).
    3. Net 1's P views h1_p centred on argmax(t2), then net 2's P views h2_p on argmax(t1), all
       2P with their own draws; one theta per sample for all of them: T1 = warp(t1, theta),
       T2 = warp(t2, theta).
    4. loss_cons = sum_p [MSE(f1(h1_p), T2, w_U) + MSE(f2(h2_p), T1, w_U)], one pass per view.

    JCCM's CutMix takes the CO count by default (5), as the released dual code does.
    Validation rows: net1, net2, ensemble (mean heatmaps, only logged in the release) and mean
    (the mean of the two nets' metrics: the published figure and checkpoint metric, so set
    TEST.BEST_METRIC mean to select as released).
    Debug tensors: PoseDual's names for the first path. Terms: PoseDual's ("loss_cons_1" is net
    1's sum over its paths) and "loss_cons_<path>" (both nets' terms of the path).
    """

    net_names = ("net1", "net2")
    averages = {"ensemble": ("net1", "net2")}
    metric_means = {"mean": ("net1", "net2")}  # (AP1 + AP2) / 2, the released code's figure
    jccm_cm_from = "co"

    def training_step(self, batch: Batch) -> StepOutput:
        lab, unl = batch["labeled"], batch["unlabeled"]
        f1, f2 = self.nets["net1"], self.nets["net2"]
        w_l, w_u = lab.get("target_weight"), unl.get("target_weight")
        sup1, sup2 = f1(lab["image"]), f2(lab["image"])
        pose1 = self.loss(sup1, lab["target"], w_l)
        pose2 = self.loss(sup2, lab["target"], w_l)

        with torch.no_grad():
            t1, t2 = (self.nets[name](unl["image"]) for name in self.teacher_names)
            # student 1's views are built around net 2's joints and taught by net 2
            (h1, h2), theta = self.path_views(batch, (t2, t1))
            tw1, tw2 = self.hard.warp(t1, theta), self.hard.warp(t2, theta)
            w1, w2 = self.cons.joint_weight(tw2, w_u), self.cons.joint_weight(tw1, w_u)
        s1, s2 = self.students(f1, h1), self.students(f2, h2)
        terms1 = [self.cons.term(s, tw2, w1) for s in s1]
        terms2 = [self.cons.term(s, tw1, w2) for s in s2]
        cons1, cons2 = torch.stack(terms1).sum(), torch.stack(terms2).sum()

        loss_pose = self.sup_weight * (pose1 + pose2)
        loss_cons = cons1 + cons2
        logged = {"loss_pose": loss_pose.detach(), "loss_cons": loss_cons.detach(),
                  "loss_pose_1": pose1.detach(), "loss_pose_2": pose2.detach(),
                  "loss_cons_1": cons1.detach(), "loss_cons_2": cons2.detach()}
        logged.update({f"loss_cons_{name}": (a + b).detach()
                       for name, a, b in zip(self.path_names, terms1, terms2)})
        return StepOutput(
            loss=loss_pose + self.cons.scale * loss_cons,
            terms={**logged, **self.cons.kept(w1, w2)},
            sup_heatmaps=sup1.detach(),
            debug={"sup_heatmaps_2": sup2.detach(), "teacher_heatmaps": t1,
                   "teacher_heatmaps_2": t2, "teacher_warped": tw1, "teacher_warped_2": tw2,
                   "hard_images": h1[0], "hard_images_2": h2[0],
                   "student_heatmaps": s1[0].detach(), "student_heatmaps_2": s2[0].detach(),
                   "theta": theta})
