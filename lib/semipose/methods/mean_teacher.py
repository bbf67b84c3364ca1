"""Mean Teacher for both families: the teachers are exponential moving averages of the students.

``MeanTeacher`` is PoseCons with an EMA teacher; ``PoseDualMeanTeacher`` is PoseDual whose two
cross teachers are EMA copies of the two students. Both share ``EMATeachers``: the copies start
equal to their students, are never touched by the optimizer, follow them after every optimizer
step and are saved in checkpoints like any net.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Tuple

import torch

from ..errors import ConfigError
from .base import NetsArg
from .posecons import PoseCons
from .posedual import PoseDual
from .registry import register_method


class EMATeachers:
    """Mixin for a SemiMethod whose ``ema_pairs`` (teacher name, student name) are EMA copies.

    After optimizer step k (k = 0, 1, ...): teacher <- d_k * teacher + (1 - d_k) * student for the
    parameters, with d_k = min(MT_EMA_DECAY, 1 - 1 / (k + 1)). The warm-up of d_k (Tarvainen &
    Valpola's schedule) makes the teacher the plain average of the students seen so far while
    k < 1 / (1 - MT_EMA_DECAY): without it the first thousand steps' teacher still carries most
    of the random initialisation (0.999^950 = 0.39 of it) and teaches near-flat heatmaps.

    Buffers (BatchNorm running statistics) are not averaged or copied: the teacher's own
    train-mode passes in the step keep them, so they match the teacher's averaged weights. With
    the student's statistics copied in, the teacher scored 0.027 AP in evaluation against its
    student's 0.099 (synthetic SSL benchmark, 100 labels, 3 seeds): the statistics of one net
    applied to the activations of another.
    """

    ema_pairs: Tuple[Tuple[str, str], ...] = ()

    def __init__(self, nets: NetsArg, ema_decay: float = 0.999, **kwargs: Any):
        super().__init__(nets, **kwargs)  # the SemiMethod this mixin is combined with
        if not 0.0 <= ema_decay < 1.0:
            raise ConfigError(f"SSL.EMA_DECAY (MT_EMA_DECAY) must be in [0, 1), got {ema_decay}")
        self.ema_decay, self.ema_steps = float(ema_decay), 0
        for teacher, student in self.ema_pairs:
            self.nets[teacher].load_state_dict(self.nets[student].state_dict())
            self.nets[teacher].requires_grad_(False)

    @classmethod
    def options_from_cfg(cls, cfg, seed: Optional[int],
                         joint_mask: Optional[torch.Tensor]) -> Dict[str, Any]:
        """The combined method's options plus SSL.EMA_DECAY."""
        return dict(super().options_from_cfg(cfg, seed, joint_mask),  # type: ignore[misc]
                    ema_decay=cfg.SSL.EMA_DECAY)

    def current_decay(self) -> float:
        return min(self.ema_decay, 1.0 - 1.0 / (self.ema_steps + 1))

    @torch.no_grad()
    def after_step(self) -> None:
        d = self.current_decay()
        for teacher_name, student_name in self.ema_pairs:
            teacher, student = self.nets[teacher_name], self.nets[student_name]
            t_params, s_params = list(teacher.parameters()), list(student.parameters())
            torch._foreach_mul_(t_params, d)
            torch._foreach_add_(t_params, [p.detach() for p in s_params], alpha=1.0 - d)
        self.ema_steps += 1

    def extra_state(self) -> Dict[str, object]:
        return {"ema_steps": self.ema_steps}

    def load_extra_state(self, state: Mapping[str, object]) -> None:
        self.ema_steps = int(state.get("ema_steps", 0))  # type: ignore[arg-type]


@register_method("mean_teacher")
class MeanTeacher(EMATeachers, PoseCons):
    """Consistency with an EMA teacher (Tarvainen & Valpola, 2017) on PoseCons' easy/hard views.

    1. sup = student(x_L) -> loss_pose = MSE(sup, target_L, w_L).
    2. t = teacher(x_U) (no grad); hard view and target as in PoseCons (cutout on the teacher's
       joints, hard affine); s = student(hard) -> loss_cons = MSE(s, warp(t), w_U).
    3. After each optimizer step the teacher's parameters follow the student's (see
       ``EMATeachers``); its BatchNorm statistics come from its own train-mode passes in 2.

    Nets: "net1" (the student, trained) and "teacher" (its parameters do not require grad).
    Both are saved in checkpoints and scored (validation rows "net1" and "teacher").
    Debug tensors as PoseCons.
    """

    net_names = ("net1", "teacher")
    teacher_name = "teacher"  # PoseCons' step, with the EMA copy giving the targets
    ema_pairs = (("teacher", "net1"),)


@register_method("pose_dual_mt")
class PoseDualMeanTeacher(EMATeachers, PoseDual):
    """PoseDual with EMA teachers: student 1 learns from teacher 2 and student 2 from teacher 1,
    where teacher i is the EMA of student i (cutouts centre on the other teacher's joints).

    Nets: "net1", "net2" (trained), "teacher1", "teacher2" (EMA copies). Validation rows:
    net1, net2, ensemble (mean of the students), teacher1, teacher2 and teacher_ensemble.
    Debug tensors and terms as PoseDual.
    """

    net_names = ("net1", "net2", "teacher1", "teacher2")
    averages = {"ensemble": ("net1", "net2"), "teacher_ensemble": ("teacher1", "teacher2")}
    teacher_names = ("teacher1", "teacher2")
    ema_pairs = (("teacher1", "net1"), ("teacher2", "net2"))
