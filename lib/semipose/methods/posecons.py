"""PoseCons: one net is its own teacher across an easy and a hard view."""
from __future__ import annotations

from typing import Dict

import torch

from .base import Batch, SemiMethod
from .registry import register_method


@register_method("pose_cons")
class PoseCons(SemiMethod):
    """Single-net consistency training.

    1. sup = f(x_L) -> loss_pose = MSE(sup, target_L, w_L).
    2. Teacher (no grad, the net stays in its current, normally train, mode so BatchNorm uses
       batch statistics as in the reference): t = f(x_U) (with teacher_view 'hard':
       t = f(warp(x_U, theta_t)), re-aligned to the student's frame in step 3).
    3. Hard view = cutout(base, argmax(t) * stride) then warp by theta; T = warp(t, theta).
    4. s = f(hard) -> loss_cons = MSE(s, T, w_U) (w_U times the confidence mask when
       CONS_CONF_THRE > 0). loss = loss_pose + loss_cons.

    ``last``: "sup_heatmaps", "teacher_heatmaps" (t), "teacher_warped" (T), "hard_images",
    "student_heatmaps" (s), "theta" [N, 2, 3] — all detached.
    """

    net_names = ("net1",)
    teacher_name = "net1"  # the net giving the targets (itself; Mean Teacher: its EMA copy)

    def training_step(self, batch: Batch) -> Dict[str, torch.Tensor]:
        lab, unl = batch["labeled"], batch["unlabeled"]
        net, teacher = self.nets["net1"], self.nets[self.teacher_name]
        sup = net(lab["image"])
        loss_pose = self.loss(sup, lab["target"], lab.get("target_weight"))

        x_u = unl["image"]
        with torch.no_grad():
            x_t, theta_t = self.teacher_input(x_u)
            t = teacher(x_t)
            hard = self.cutout(self.hard_base(batch), t, self.cutout_mask_for(unl))
            theta = self.draw_theta(x_u.shape[0], x_u.device)
            hard = self.apply_theta(hard, theta)
            t_warped = self.teacher_target(t, theta, theta_t)
        s = net(hard)
        w_cons = self.cons_target_weight(t_warped, unl.get("target_weight"))
        loss_cons = self.loss(s, t_warped, w_cons)

        self.last = {"sup_heatmaps": sup.detach(), "teacher_heatmaps": t,
                     "teacher_warped": t_warped, "hard_images": hard,
                     "student_heatmaps": s.detach(), "theta": theta}
        out = {"loss": loss_pose + self.cons_weight * loss_cons, "loss_pose": loss_pose.detach(),
               "loss_cons": loss_cons.detach(), "sup_heatmaps": sup.detach()}
        return self.with_kept(out, w_cons)
