"""Mean Teacher for pose: PoseCons whose teacher is an exponential moving average of the student."""
from __future__ import annotations

import torch

from .base import NetsArg
from .posecons import PoseCons
from .registry import register_method


@register_method("mean_teacher")
class MeanTeacher(PoseCons):
    """Consistency with an EMA teacher (Tarvainen & Valpola, 2017) on PoseCons' easy/hard views.

    1. sup = student(x_L) -> loss_pose = MSE(sup, target_L, w_L).
    2. t = teacher(x_U) (no grad); hard view and target as in PoseCons (cutout on the teacher's
       joints, hard affine); s = student(hard) -> loss_cons = MSE(s, warp(t), w_U).
    3. After each optimizer step: teacher <- decay * teacher + (1 - decay) * student (parameters;
       BatchNorm statistics are copied from the student).

    Nets: "net1" (the student, trained) and "teacher" (never trained by the optimizer: its
    parameters do not require grad). Both are saved in checkpoints and both are scored
    (validation rows "net1" and "teacher"). The teacher starts as a copy of the student.
    ``last`` as PoseCons.
    """

    net_names = ("net1", "teacher")
    teacher_name = "teacher"  # PoseCons' step, with the EMA copy giving the targets

    def __init__(self, nets: NetsArg, ema_decay: float = 0.999, **kwargs):
        super().__init__(nets, **kwargs)
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"MT_EMA_DECAY must be in [0, 1), got {ema_decay}")
        self.ema_decay = float(ema_decay)
        teacher = self.nets["teacher"]
        teacher.load_state_dict(self.nets["net1"].state_dict())
        teacher.requires_grad_(False)

    @classmethod
    def from_cfg(cls, cfg, nets: NetsArg, seed=None, joint_mask=None) -> "MeanTeacher":
        """SemiMethod's keys plus MT_EMA_DECAY."""
        method = super().from_cfg(cfg, nets, seed=seed, joint_mask=joint_mask)
        if not 0.0 <= cfg.MT_EMA_DECAY < 1.0:
            raise ValueError(f"MT_EMA_DECAY must be in [0, 1), got {cfg.MT_EMA_DECAY}")
        method.ema_decay = float(cfg.MT_EMA_DECAY)
        return method

    @torch.no_grad()
    def after_step(self) -> None:
        """teacher <- d * teacher + (1 - d) * student; buffers (BatchNorm statistics) copied."""
        d = self.ema_decay
        student, teacher = self.nets["net1"], self.nets["teacher"]
        for pt, ps in zip(teacher.parameters(), student.parameters()):
            pt.mul_(d).add_(ps.detach(), alpha=1.0 - d)
        for bt, bs in zip(teacher.buffers(), student.buffers()):
            bt.copy_(bs)
