"""PoseCons: one net is its own teacher across an easy and a hard view."""
from __future__ import annotations

import torch

from ..types import StepOutput
from .base import Batch, SemiMethod
from .registry import register_method


@register_method("pose_cons")
class PoseCons(SemiMethod):
    """Single-net consistency training.

    1. sup = f(x_L) -> loss_pose = MSE(sup, target_L, w_L).
    2. Teacher (no grad, the net stays in its current, normally train, mode so BatchNorm uses
       batch statistics as in the reference): t = f(x_U) (with teacher view 'hard':
       t = f(warp(x_U, theta_t)), re-aligned to the student's frame in step 3).
    3. Hard view = the hard view's ops on the base (Joint Cutout centred on argmax(t) * stride),
       then warp by theta; T = warp(t, theta).
    4. s = f(hard) -> loss_cons = MSE(s, T, w_U) (w_U times the confidence mask when it is on).
       loss = loss_pose + weight * loss_cons.

    Debug tensors: "teacher_heatmaps" (t), "teacher_warped" (T), "hard_images",
    "student_heatmaps" (s), "theta" [N, 2, 3].
    """

    net_names = ("net1",)
    teacher_name = "net1"  # the net giving the targets (itself; Mean Teacher: its EMA copy)

    def training_step(self, batch: Batch) -> StepOutput:
        lab, unl = batch["labeled"], batch["unlabeled"]
        net, teacher = self.nets["net1"], self.nets[self.teacher_name]
        sup = net(lab["image"])
        loss_pose = self.loss(sup, lab["target"], lab.get("target_weight"))

        with torch.no_grad():
            x_t, theta_t = self.hard.teacher_input(unl["image"])
            t = teacher(x_t)
            (hard,), (t_warped,), (w_u,), theta = self.hard_views(batch, (t,), theta_t)
        s = net(hard)
        w_cons = self.cons.joint_weight(t_warped, w_u)
        loss_cons = self.cons.term(s, t_warped, w_cons)

        return StepOutput(
            loss=loss_pose + self.cons.scale * loss_cons,
            terms={"loss_pose": loss_pose.detach(), "loss_cons": loss_cons.detach(),
                   **self.cons.kept(w_cons)},
            sup_heatmaps=sup.detach(),
            debug={"teacher_heatmaps": t, "teacher_warped": t_warped, "hard_images": hard,
                   "student_heatmaps": s.detach(), "theta": theta})
