"""PoseDual: two nets teach each other across an easy and a hard view."""
from __future__ import annotations

from typing import Dict, Optional

import torch

from .base import Batch, NetsArg, SemiMethod
from .registry import register_method


@register_method("pose_dual")
class PoseDual(SemiMethod):
    """Dual-network cross supervision.

    1. sup1 = f1(x_L), sup2 = f2(x_L); loss_pose = w MSE(sup1) + w MSE(sup2), w = sup_weight
       (0.5 in the reference: each net then weighs its supervised term half as much as its
       consistency term, where PoseCons weighs them 1:1; DUAL_SUP_WEIGHT 1.0 gives 1:1).
    2. Teachers (no grad, nets in their current, normally train, mode): t1 = f1(x_U), t2 = f2(x_U).
    3. h1 = cutout(base, argmax(t2) * stride), h2 = cutout(base, argmax(t1) * stride): each
       student's cutout centres on the other net's joints (independent draws); one theta per
       sample shared by both branches: h1, h2, T1 = warp(t1), T2 = warp(t2).
    4. s1 = f1(h1), s2 = f2(h2); loss_cons = MSE(s1, T2, w_U) + MSE(s2, T1, w_U) (cross;
       w_U times each target's confidence mask when CONS_CONF_THRE > 0).

    ``last``: "sup_heatmaps" (net 1), "sup_heatmaps_2", "teacher_heatmaps" / "teacher_heatmaps_2"
    (t1 / t2), "teacher_warped" / "teacher_warped_2" (T1 / T2), "hard_images" / "hard_images_2"
    (h1 / h2), "student_heatmaps" / "student_heatmaps_2" (s1 / s2), "theta" — all detached.
    Extra loss keys: "loss_pose_1", "loss_pose_2", "loss_cons_1" (f1's term), "loss_cons_2".
    """

    net_names = ("net1", "net2")
    averages = {"ensemble": ("net1", "net2")}  # mean heatmaps, as the reference's validation
    teacher_names = ("net1", "net2")  # the nets giving t1, t2 (Mean Teacher: their EMA copies)

    def __init__(self, nets: NetsArg, sup_weight: float = 0.5, **kwargs):
        super().__init__(nets, **kwargs)
        self.set_sup_weight(sup_weight)

    def set_sup_weight(self, sup_weight: float) -> None:
        if not sup_weight > 0:
            raise ValueError(f"DUAL_SUP_WEIGHT must be > 0, got {sup_weight}")
        self.sup_weight = float(sup_weight)

    @classmethod
    def from_cfg(cls, cfg, nets: NetsArg, seed: Optional[int] = None,
                 joint_mask: Optional[torch.Tensor] = None) -> "PoseDual":
        """SemiMethod's keys plus DUAL_SUP_WEIGHT."""
        method = super().from_cfg(cfg, nets, seed=seed, joint_mask=joint_mask)
        method.set_sup_weight(float(cfg.get("DUAL_SUP_WEIGHT", 0.5)))
        return method

    def training_step(self, batch: Batch) -> Dict[str, torch.Tensor]:
        lab, unl = batch["labeled"], batch["unlabeled"]
        f1, f2 = self.nets["net1"], self.nets["net2"]
        w_l, w_u = lab.get("target_weight"), unl.get("target_weight")
        sup1, sup2 = f1(lab["image"]), f2(lab["image"])
        pose1 = self.loss(sup1, lab["target"], w_l)
        pose2 = self.loss(sup2, lab["target"], w_l)

        x_u = unl["image"]
        with torch.no_grad():
            x_t, theta_t = self.teacher_input(x_u)
            t1, t2 = (self.nets[name](x_t) for name in self.teacher_names)
            base, mask = self.hard_base(batch), self.cutout_mask_for(unl)
            h1 = self.cutout(base, t2, mask)
            h2 = self.cutout(base, t1, mask)
            theta = self.draw_theta(x_u.shape[0], x_u.device)
            h1, h2 = self.apply_theta(h1, theta), self.apply_theta(h2, theta)
            theta_tw = self.target_theta(theta, theta_t)  # one relative warp for both teachers
            tw1, tw2 = self.apply_theta(t1, theta_tw), self.apply_theta(t2, theta_tw)
        s1, s2 = f1(h1), f2(h2)
        w1, w2 = self.cons_target_weight(tw2, w_u), self.cons_target_weight(tw1, w_u)
        cons1 = self.loss(s1, tw2, w1)
        cons2 = self.loss(s2, tw1, w2)

        loss_pose = self.sup_weight * (pose1 + pose2)
        loss_cons = cons1 + cons2
        self.last = {"sup_heatmaps": sup1.detach(), "sup_heatmaps_2": sup2.detach(),
                     "teacher_heatmaps": t1, "teacher_heatmaps_2": t2,
                     "teacher_warped": tw1, "teacher_warped_2": tw2,
                     "hard_images": h1, "hard_images_2": h2,
                     "student_heatmaps": s1.detach(), "student_heatmaps_2": s2.detach(),
                     "theta": theta}
        out = {"loss": loss_pose + self.cons_weight * loss_cons, "loss_pose": loss_pose.detach(),
               "loss_cons": loss_cons.detach(), "loss_pose_1": pose1.detach(),
               "loss_pose_2": pose2.detach(), "loss_cons_1": cons1.detach(),
               "loss_cons_2": cons2.detach(), "sup_heatmaps": sup1.detach()}
        return self.with_kept(out, w1, w2)
