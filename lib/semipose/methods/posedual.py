"""PoseDual: two nets teach each other across an easy and a hard view."""
from __future__ import annotations

from typing import Any, Dict, Optional

import torch

from ..errors import ConfigError
from ..types import StepOutput
from .base import Batch, NetsArg, SemiMethod
from .registry import register_method


@register_method("pose_dual")
class PoseDual(SemiMethod):
    """Dual-network cross supervision.

    1. sup1 = f1(x_L), sup2 = f2(x_L); loss_pose = w MSE(sup1) + w MSE(sup2), w = sup_weight
       (0.5 in the reference: each net then weighs its supervised term half as much as its
       consistency term, where PoseCons weighs them 1:1; SSL.DUAL_SUP_WEIGHT 1.0 gives 1:1).
    2. Teachers (no grad, nets in their current, normally train, mode): t1 = f1(x_U), t2 = f2(x_U).
    3. h1 = ops(base, argmax(t2) * stride), h2 = ops(base, argmax(t1) * stride): each student's
       cutout centres on the other net's joints (independent draws); one theta per sample shared
       by both branches: h1, h2, T1 = warp(t1), T2 = warp(t2).
    4. s1 = f1(h1), s2 = f2(h2); loss_cons = MSE(s1, T2, w_U) + MSE(s2, T1, w_U) (cross;
       w_U times each target's confidence mask when it is on).

    Debug tensors: PoseCons' for net 1 and the same names ending in "_2" for net 2. Extra terms:
    "loss_pose_1", "loss_pose_2", "loss_cons_1" (f1's term), "loss_cons_2".
    """

    net_names = ("net1", "net2")
    averages = {"ensemble": ("net1", "net2")}  # mean heatmaps, as the reference's validation
    teacher_names = ("net1", "net2")  # the nets giving t1, t2 (Mean Teacher: their EMA copies)

    def __init__(self, nets: NetsArg, sup_weight: float = 0.5, **parts: Any):
        super().__init__(nets, **parts)
        if not sup_weight > 0:
            raise ConfigError(f"SSL.DUAL_SUP_WEIGHT (DUAL_SUP_WEIGHT) must be > 0, got {sup_weight}")
        self.sup_weight = float(sup_weight)

    @classmethod
    def options_from_cfg(cls, cfg, seed: Optional[int],
                         joint_mask: Optional[torch.Tensor]) -> Dict[str, Any]:
        """SemiMethod's parts plus SSL.DUAL_SUP_WEIGHT."""
        return dict(super().options_from_cfg(cfg, seed, joint_mask),
                    sup_weight=cfg.SSL.DUAL_SUP_WEIGHT)

    def training_step(self, batch: Batch) -> StepOutput:
        lab, unl = batch["labeled"], batch["unlabeled"]
        f1, f2 = self.nets["net1"], self.nets["net2"]
        w_l = lab.get("target_weight")
        sup1, sup2 = f1(lab["image"]), f2(lab["image"])
        pose1 = self.loss(sup1, lab["target"], w_l)
        pose2 = self.loss(sup2, lab["target"], w_l)

        with torch.no_grad():
            x_t, theta_t = self.hard.teacher_input(unl["image"])
            t1, t2 = (self.nets[name](x_t) for name in self.teacher_names)
            # student 1's view is built around net 2's joints and taught by net 2: its target
            (h1, h2), (tw2, tw1), (wu1, wu2), theta = self.hard_views(batch, (t2, t1), theta_t)
        s1, s2 = f1(h1), f2(h2)
        w1, w2 = self.cons.joint_weight(tw2, wu1), self.cons.joint_weight(tw1, wu2)
        cons1 = self.cons.term(s1, tw2, w1)
        cons2 = self.cons.term(s2, tw1, w2)

        loss_pose = self.sup_weight * (pose1 + pose2)
        loss_cons = cons1 + cons2
        return StepOutput(
            loss=loss_pose + self.cons.scale * loss_cons,
            terms={"loss_pose": loss_pose.detach(), "loss_cons": loss_cons.detach(),
                   "loss_pose_1": pose1.detach(), "loss_pose_2": pose2.detach(),
                   "loss_cons_1": cons1.detach(), "loss_cons_2": cons2.detach(),
                   **self.cons.kept(w1, w2)},
            sup_heatmaps=sup1.detach(),
            debug={"sup_heatmaps_2": sup2.detach(), "teacher_heatmaps": t1,
                   "teacher_heatmaps_2": t2, "teacher_warped": tw1, "teacher_warped_2": tw2,
                   "hard_images": h1, "hard_images_2": h2, "student_heatmaps": s1.detach(),
                   "student_heatmaps_2": s2.detach(), "theta": theta})
