"""Multi-path consistency in one net: several hard views of each unlabeled crop per step.

After MultiAugs (Huang et al., "Boosting Semi-Supervised 2D Human Pose Estimation by Revisiting
Data Augmentation and Consistency Training", arXiv 2402.11566): instead of one harder and harder
view, each step trains the student on several differently augmented hard views of the same crop,
each with its own loss against one easy-view teacher prediction.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch

from ..transforms.batch import cutmix, joint_cut_occlusion, joint_cutout, mixup, random_partner
from .base import Batch, NetsArg, SemiMethod
from .registry import register_method

# Ops of a path, applied in the easy-view frame before the path's hard affine.
#   cutout:    Joint Cutout (zeroed boxes near the teacher's joints), target unchanged
#   occlusion: joint cut-occlusion (the boxes filled from a partner crop), target unchanged
#   cutmix:    a random box pasted from a partner crop, into the image and the target alike
#   mixup:     a blend with a partner crop (own weight in [0.5, 1]), image and target alike
#   none:      nothing (the path is the hard affine alone)
PATH_OPS = ("cutout", "occlusion", "cutmix", "mixup", "none")


def parse_paths(paths: Sequence[str]) -> Tuple[Tuple[str, ...], ...]:
    """["occlusion+cutout", "cutmix"] -> (("occlusion", "cutout"), ("cutmix",)); ValueError
    naming the entry for an unknown op or an empty list."""
    if len(paths) == 0:
        raise ValueError("MULTI.PATHS is empty; give at least one path, e.g. ['cutout']")
    out = []
    for entry in paths:
        ops = tuple(op.strip() for op in str(entry).split("+"))
        bad = [op for op in ops if op not in PATH_OPS]
        if bad:
            raise ValueError(f"MULTI.PATHS entry {entry!r}: unknown op {bad[0]!r}; ops are "
                             f"{list(PATH_OPS)}, joined by '+'")
        out.append(ops)
    return tuple(out)


@register_method("pose_multi")
class MultiPath(SemiMethod):
    """One net, one easy-view teacher pass, P hard paths.

    1. sup = f(x_L) -> loss_pose = MSE(sup, target_L, w_L).
    2. t = f(x_U) (no grad, train mode as in PoseCons).
    3. For each path p: its ops turn (base, t) into (hard_p, t_p) (see PATH_OPS; the mixing ops
       pair each crop with a random other crop of the batch, weights w_U * w_U[partner]), then
       its own hard affine theta_p: hard_p = warp(hard_p, theta_p), T_p = warp(t_p, theta_p).
    4. One student pass over the P views concatenated (one forward/backward for all paths;
       BatchNorm sees the P views together): s_p = f(hard_p);
       loss_cons_p = MSE(s_p, T_p, w_p); loss = loss_pose + sum_p loss_cons_p.

    ``last`` (first path): "sup_heatmaps", "teacher_heatmaps", "teacher_warped", "hard_images",
    "student_heatmaps", "theta". Loss keys: "loss_pose", "loss_cons" (the sum), "loss_cons_<p>"
    for p = 1..P.
    """

    net_names = ("net1",)

    def __init__(self, nets: NetsArg, paths: Sequence[str] = ("occlusion+cutout", "cutout+cutmix"),
                 path_joint_num: int = 5, **kwargs):
        super().__init__(nets, **kwargs)
        if self.teacher_view != "easy":
            raise ValueError("pose_multi needs CONS_TEACHER_VIEW 'easy' (its ops live in the "
                             "easy-view frame)")
        self.paths = parse_paths(paths)
        if path_joint_num < 0:
            raise ValueError(f"MULTI.MASK_JOINT_NUM must be >= 0, got {path_joint_num}")
        self.path_joint_num = int(path_joint_num)

    @classmethod
    def from_cfg(cls, cfg, nets: NetsArg, seed=None, joint_mask=None) -> "MultiPath":
        """SemiMethod's keys plus MULTI.PATHS and MULTI.MASK_JOINT_NUM."""
        method = super().from_cfg(cfg, nets, seed=seed, joint_mask=joint_mask)
        method.paths = parse_paths(cfg.MULTI.PATHS)
        method.path_joint_num = int(cfg.MULTI.MASK_JOINT_NUM)
        return method

    @staticmethod
    def check_cfg(cfg) -> Optional[str]:
        """The config check's hook: a message for bad MULTI keys, else None."""
        try:
            parse_paths(cfg.MULTI.PATHS)
        except ValueError as e:
            return str(e)
        return None

    def apply_path(self, ops: Tuple[str, ...], base: torch.Tensor, t: torch.Tensor,
                   weight: Optional[torch.Tensor], joint_mask: Optional[torch.Tensor]
                   ) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        """(hard view, target, joint weights) of one path, still in the easy-view frame."""
        gen = self.generator(base.device)
        img, target = base, t
        joints_px = None
        for op in ops:
            if op in ("cutout", "occlusion") and joints_px is None:
                joints_px = self.teacher_joints_px(t, base)
            if op == "cutout":
                img = joint_cutout(img, joints_px, self.path_joint_num, gen, self.cutout_mode,
                                   joint_mask, self.cutout_scale)
            elif op == "occlusion":
                img = joint_cut_occlusion(img, joints_px, self.path_joint_num, gen, joint_mask,
                                          scale=self.cutout_scale)
            elif op in ("cutmix", "mixup"):
                perm = random_partner(img.shape[0], gen, img.device)
                img, target = (cutmix if op == "cutmix" else mixup)(img, target, perm, gen)
                if weight is not None:
                    weight = weight * weight[perm]
        return img, target, weight

    def training_step(self, batch: Batch) -> Dict[str, torch.Tensor]:
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
            base, mask = self.hard_base(batch), self.cutout_mask_for(unl)
            thetas = []
            for ops in self.paths:
                img, target, weight = self.apply_path(ops, base, t, w_u, mask)
                theta = self.draw_theta(n, x_u.device)
                views.append(self.apply_theta(img, theta))
                targets.append(self.apply_theta(target, theta))
                weights.append(self.cons_target_weight(targets[-1], weight))
                thetas.append(theta)
        s_all = net(torch.cat(views))
        terms = [self.loss(s, tgt, w) for s, tgt, w in zip(s_all.split(n), targets, weights)]
        loss_cons = torch.stack(terms).sum()

        self.last = {"sup_heatmaps": sup.detach(), "teacher_heatmaps": t,
                     "teacher_warped": targets[0], "hard_images": views[0],
                     "student_heatmaps": s_all[:n].detach(), "theta": thetas[0]}
        out = {"loss": loss_pose + self.cons_weight * loss_cons, "loss_pose": loss_pose.detach(),
               "loss_cons": loss_cons.detach(), "sup_heatmaps": sup.detach()}
        out.update({f"loss_cons_{p + 1}": term.detach() for p, term in enumerate(terms)})
        return self.with_kept(out, *weights)
