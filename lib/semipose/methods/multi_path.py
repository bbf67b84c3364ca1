"""Multi-path consistency in one net: several hard views of each unlabeled crop per step.

After MultiAugs (Huang et al., "Boosting Semi-Supervised 2D Human Pose Estimation by Revisiting
Data Augmentation and Consistency Training", arXiv 2402.11566): instead of one harder and harder
view, each step trains the student on several differently augmented hard views of the same crop,
each with its own loss against one easy-view teacher prediction.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from ..errors import ConfigError
from ..types import StepOutput
from .base import Batch, NetsArg, SemiMethod
from .parts import parse_ops
from .registry import register_method


def parse_paths(paths: Sequence[str]) -> Tuple[Tuple[str, ...], ...]:
    """["occlusion+cutout", "cutmix"] -> (("occlusion", "cutout"), ("cutmix",)); ValueError
    naming the entry for an unknown op (parts.HARD_OPS: cutout, occlusion, cutmix, mixup, none,
    and any registered one) or an empty list."""
    if len(paths) == 0:
        raise ConfigError("MULTI.PATHS is empty; give at least one path, e.g. ['cutout']")
    return tuple(parse_ops(str(entry), "MULTI.PATHS") for entry in paths)


@register_method("pose_multi")
class MultiPath(SemiMethod):
    """One net, one easy-view teacher pass, P hard paths.

    1. sup = f(x_L) -> loss_pose = MSE(sup, target_L, w_L).
    2. t = f(x_U) (no grad, train mode as in PoseCons).
    3. For each path p: its ops turn (base, t) into (hard_p, t_p) (see parts.HARD_OPS; the
       mixing ops pair each crop with a random other crop of the batch, weights
       w_U * w_U[partner]), then its own hard affine theta_p: hard_p = warp(hard_p, theta_p),
       T_p = warp(t_p, theta_p).
    4. One student pass over the P views concatenated (one forward/backward for all paths;
       BatchNorm sees the P views together): s_p = f(hard_p);
       loss_cons_p = MSE(s_p, T_p, w_p); loss = loss_pose + sum_p loss_cons_p.

    Debug tensors (first path): "teacher_heatmaps", "teacher_warped", "hard_images",
    "student_heatmaps", "theta". Terms: "loss_pose", "loss_cons" (the sum), "loss_cons_<p>"
    for p = 1..P.
    """

    net_names = ("net1",)

    def __init__(self, nets: NetsArg, paths: Sequence[str] = ("occlusion+cutout", "cutout+cutmix"),
                 path_joint_num: int = 5, **parts: Any):
        super().__init__(nets, **parts)
        if self.hard.teacher_view != "easy":
            raise ConfigError("pose_multi needs CONS_TEACHER_VIEW 'easy' (its ops live in the "
                             "easy-view frame)")
        if path_joint_num < 0:
            raise ConfigError(f"MULTI.MASK_JOINT_NUM must be >= 0, got {path_joint_num}")
        # One hard view per path: its own ops and box count, the shared settings and stream.
        self.paths = nn.ModuleList(self.hard.with_ops(ops, path_joint_num)
                                   for ops in parse_paths(paths))

    @classmethod
    def options_from_cfg(cls, cfg, seed: Optional[int],
                         joint_mask: Optional[torch.Tensor]) -> Dict[str, Any]:
        """SemiMethod's parts plus SSL.MULTI.PATHS and SSL.MULTI.MASK_JOINT_NUM."""
        return dict(super().options_from_cfg(cfg, seed, joint_mask),
                    paths=cfg.SSL.MULTI.PATHS, path_joint_num=cfg.SSL.MULTI.MASK_JOINT_NUM)

    def training_step(self, batch: Batch) -> StepOutput:
        lab, unl = batch["labeled"], batch["unlabeled"]
        net = self.nets["net1"]
        sup = net(lab["image"])
        loss_pose = self.loss(sup, lab["target"], lab.get("target_weight"))

        x_u, w_u = unl["image"], unl.get("target_weight")
        n = x_u.shape[0]
        views: List[torch.Tensor] = []
        targets: List[torch.Tensor] = []
        weights: List[Optional[torch.Tensor]] = []
        with torch.no_grad():
            t = net(x_u)
            base, mask = self.hard.base(batch), self.hard.mask_for(unl)
            thetas = []
            for path in self.paths:
                img, target, weight = path.apply_ops(base, t, w_u, mask)
                theta = path.draw_theta(n, x_u.device)
                views.append(path.warp(img, theta))
                targets.append(path.warp(target, theta))
                weights.append(self.cons.joint_weight(targets[-1], weight))
                thetas.append(theta)
        s_all = net(torch.cat(views))
        terms = [self.cons.term(s, tgt, w) for s, tgt, w in zip(s_all.split(n), targets, weights)]
        loss_cons = torch.stack(terms).sum()

        logged = {"loss_pose": loss_pose.detach(), "loss_cons": loss_cons.detach()}
        logged.update({f"loss_cons_{p + 1}": term.detach() for p, term in enumerate(terms)})
        return StepOutput(
            loss=loss_pose + self.cons.scale * loss_cons,
            terms={**logged, **self.cons.kept(*weights)},
            sup_heatmaps=sup.detach(),
            debug={"teacher_heatmaps": t, "teacher_warped": targets[0], "hard_images": views[0],
                   "student_heatmaps": s_all[:n].detach(), "theta": thetas[0]})
