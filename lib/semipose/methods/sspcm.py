"""SSPCM: two cross-teaching teachers and a student taught by a time-corrected ensemble.

Huang et al., "Semi-Supervised 2D Human Pose Estimation Driven by Position Inconsistency Pseudo
Label Correction Module" (CVPR 2023), from its released code (the reference's
METHODS_AFTER_POSEDUAL.md, section 3). Three nets are trained by one optimiser:

- ``teacher1`` (A) and ``teacher2`` (B): a PoseDual pair, each taught by the other on a hard
  view built around the other's joints;
- ``net1`` (S, the student, the method's final model): taught by the ensemble E of two teachers
  chosen per joint among the current pair (A, B) and the previous epoch's copies (A', B') by the
  position-inconsistency correction (PCM): the pair whose argmax positions agree best;
- A' and B' are snapshots of A and B (weights and buffers) taken when a new epoch starts, i.e.
  the teachers as they ended the previous epoch; before the first epoch they are the initial
  nets. They are not trained, not scored and live outside the module tree (no parameters of the
  method, not in ``state_dict``); ``extra_state`` saves them with the epoch they belong to, so a
  resumed run, even one stopped mid-epoch, uses the same snapshots.

The student is ``net1``, so the default checkpoint metric (TEST.BEST_METRIC net1), the training
accuracy and the saved predictions are the student's (the release selected on A's AP; set
TEST.BEST_METRIC teacher1 for that).
"""
from __future__ import annotations

import copy
import math
from typing import Any, Dict, Mapping, Optional, Tuple

import torch
from torch import nn

from ..errors import ConfigError
from ..transforms.batch import max_preds_tensor
from ..types import StepOutput
from .base import Batch, NetsArg, SemiMethod
from .parts import HardView
from .registry import register_method

# Candidate teacher pairs of the correction, in the released order (ties go to the first): the
# current pair first. Indices into (A, B, A', B').
PAIRS: Tuple[Tuple[int, int], ...] = ((0, 1), (2, 1), (0, 3), (2, 3))


def argmax_positions(heatmaps: torch.Tensor) -> torch.Tensor:
    """Flat argmax of heatmaps [N, J, h, w] as (x, y) heatmap pixels [N, J, 2] (float)."""
    return max_preds_tensor(heatmaps)[0]


def time_corrected_ensemble(t_a: torch.Tensor, t_b: torch.Tensor, t_a_prev: torch.Tensor,
                            t_b_prev: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """The PCM ensemble: per sample and joint channel, the pair among (A, B), (A', B),
    (A, B'), (A', B') whose two argmax positions are closest (first pair on a tie) gives
    E = (t_a + t_b) / 2. Returns (E [N, J, h, w], the chosen pair's index [N, J] in PAIRS).

    The released code loops over samples and joints on the CPU; this gathers, same result.
    """
    maps = (t_a, t_b, t_a_prev, t_b_prev)
    pos = [argmax_positions(t) for t in maps]
    # squared distances are integers in float: exact ties stay ties, argmin keeps the first
    dist = torch.stack([((pos[i] - pos[j]) ** 2).sum(-1) for i, j in PAIRS])  # [4, N, J]
    choice = dist.argmin(0)  # [N, J]
    means = torch.stack([(maps[i] + maps[j]) / 2 for i, j in PAIRS])  # [4, N, J, h, w]
    index = choice[None, :, :, None, None].expand(1, *means.shape[1:])
    return means.gather(0, index)[0], choice


class JointFilter:
    """SSPCM's joint weights, from the current teachers' heatmaps t_A, t_B (step 7 of 3.2).

    m_X = heatmap maximum of t_X, p_X = its argmax (heatmap pixels); D = the heatmap diagonal.
    score_mask = (m_A + m_B) / 2 > score_thre; u = min(|p_A - p_B|, D - 1) / D;
    dist_mask = u < dist_thre; dist_k = 1 - u; score_k = clip(1 - |m_A - m_B|, 0, 1).
    Without ``both``: w_AB = w_U [score_mask] [score_k], w_S = w_AB [dist_mask] [dist_k], each
    bracket only while its switch is on. With ``both`` (needs both filters):
    w_AB = w_S = w_U (dist_mask OR score_mask) [score_k] [dist_k] (an OR, as released).
    """

    def __init__(self, score_filter: bool = True, score_thre: float = 0.1,
                 dist_filter: bool = False, dist_thre: float = 0.6,
                 score_reweight: bool = False, dist_reweight: bool = False, both: bool = False):
        if not 0.0 <= score_thre < 1.0:
            raise ConfigError(f"SSL.SSPCM.SCORE_THRE must be in [0, 1), got {score_thre}")
        if not 0.0 < dist_thre <= 1.0:
            raise ConfigError(f"SSL.SSPCM.DIST_THRE is a fraction of the heatmap diagonal and "
                              f"must be in (0, 1], got {dist_thre}")
        if both and not (score_filter and dist_filter):
            raise ConfigError("SSL.SSPCM.BOTH_SATISFY True needs SSL.SSPCM.SCORE_FILTER and "
                              f"SSL.SSPCM.DIST_FILTER True (got {score_filter}, {dist_filter}); "
                              "turn both on or set BOTH_SATISFY False")
        self.score_filter, self.score_thre = bool(score_filter), float(score_thre)
        self.dist_filter, self.dist_thre = bool(dist_filter), float(dist_thre)
        self.score_reweight, self.dist_reweight = bool(score_reweight), bool(dist_reweight)
        self.both = bool(both)

    def __call__(self, t_a: torch.Tensor, t_b: torch.Tensor, weight: Optional[torch.Tensor]
                 ) -> Tuple[torch.Tensor, torch.Tensor]:
        """(w_AB, w_S) [N, J, 1] for the teachers' and the student's terms."""
        pos_a, m_a = max_preds_tensor(t_a)
        pos_b, m_b = max_preds_tensor(t_b)
        diag = math.sqrt(t_a.shape[2] ** 2 + t_a.shape[3] ** 2)  # 80 for 64x48 heatmaps
        u = ((pos_a - pos_b).norm(dim=-1, keepdim=True).clamp(max=diag - 1) / diag)
        score_mask = ((m_a + m_b) / 2 > self.score_thre).to(t_a.dtype)
        dist_mask = (u < self.dist_thre).to(t_a.dtype)
        score_k = (1 - (m_a - m_b).abs()).clamp(0, 1)
        dist_k = 1 - u
        w = torch.ones_like(m_a) if weight is None else weight.to(t_a.dtype)
        if self.both:
            w = w * torch.maximum(dist_mask, score_mask)
            w = w * score_k if self.score_reweight else w
            w = w * dist_k if self.dist_reweight else w
            return w, w
        w_ab = w * score_mask if self.score_filter else w
        w_ab = w_ab * score_k if self.score_reweight else w_ab
        w_s = w_ab * dist_mask if self.dist_filter else w_ab
        w_s = w_s * dist_k if self.dist_reweight else w_s
        return w_ab, w_s


@register_method("sspcm")
class SSPCM(SemiMethod):
    """SSPCM (section 3.2 of the spec); epoch e is the trainer's (0-based, via set_progress).

    1. loss_pose = w [MSE(A(x_L)) + MSE(B(x_L)) + MSE(S(x_L))], w = SSL.DUAL_SUP_WEIGHT (0.5).
    2. No grad, train mode: t_A = A(x_U), t_B = B(x_U); while the correction is active (on and
       e > SSL.SSPCM.WARMUP_EPOCH) also t_A' = A'(x_U), t_B' = B'(x_U).
    3. E = the time-corrected ensemble (``time_corrected_ensemble``) while active, else
       (t_A + t_B) / 2.
    4. Hard views from x_U with independent draws, in this order: h_A around argmax(t_B), h_B
       around argmax(t_A), h_S around argmax(E), by keypoint cut-occlusion ('jo', SSL.SSPCM.JO
       pastes), or Joint Cutout (SSL.HARD.JOINT_CUTOUT boxes, SSL.HARD.CUTOUT_MODE) when JO
       is 0, or nothing.
    5. One theta per sample for the three views: T_A = warp(t_A), T_B = warp(t_B), T_E = warp(E).
    6. loss_cons = MSE(A(h_A), T_B, w_AB) + MSE(B(h_B), T_A, w_AB) + MSE(S(h_S), T_E, w_S), the
       weights from ``JointFilter`` on the current t_A, t_B (times the confidence mask of
       SSL.CONS.CONF_THRE when that is on; off by default). loss = loss_pose + loss_cons (times
       the consistency factor, 1 as released).
    7. When a new epoch starts (set_progress), (A', B') <- copies of (A, B).

    Args: ``sup_weight`` (SSL.DUAL_SUP_WEIGHT), ``joint_filter`` (step 6; default: the released
    score filter), ``time_correction`` and ``warmup_epoch`` (steps 2-3), SemiMethod's parts
    (default hard view: ('jo',), two pastes).

    Nets: "net1" (S), "teacher1" (A), "teacher2" (B). Validation rows: net1 (the student),
    teacher1, teacher2, teacher_ensemble (mean of A's and B's heatmaps).
    Terms: loss_pose, loss_cons, loss_pose_<net>, loss_cons_<net>, cons_kept_teachers and
    cons_kept_student (share of joints the filters keep), pcm_current (share of joints whose
    chosen pair is the current (A, B)). Debug tensors: PoseCons' names for the student (its
    teacher is E), the teachers' heatmaps as "teacher_heatmaps_a" / "_b".
    """

    net_names = ("net1", "teacher1", "teacher2")
    averages = {"teacher_ensemble": ("teacher1", "teacher2")}
    snapshot_of = ("teacher1", "teacher2")  # A', B' copy these

    def __init__(self, nets: NetsArg, sup_weight: float = 0.5,
                 joint_filter: Optional[JointFilter] = None, time_correction: bool = True,
                 warmup_epoch: int = 0, **parts: Any):
        if parts.get("hard") is None:  # the released hard view: two cut-occlusion pastes
            parts["hard"] = HardView(("jo",))
        super().__init__(nets, **parts)
        if not sup_weight > 0:
            raise ConfigError(f"SSL.DUAL_SUP_WEIGHT must be > 0, got {sup_weight}")
        if self.hard.teacher_view != "easy":
            raise ConfigError("sspcm needs SSL.HARD.TEACHER_VIEW 'easy' (its ops live in the "
                              f"easy-view frame), got {self.hard.teacher_view!r}")
        if warmup_epoch < 0:
            raise ConfigError(f"SSL.SSPCM.WARMUP_EPOCH must be >= 0, got {warmup_epoch}")
        self.sup_weight = float(sup_weight)
        self.joint_filter = joint_filter if joint_filter is not None else JointFilter()
        self.time_correction, self.warmup_epoch = bool(time_correction), int(warmup_epoch)
        self.epoch = 0  # the trainer's epoch, from set_progress
        # A', B': a plain dict keeps them out of the module tree (parameters, state_dict, DDP)
        self.previous: Dict[str, nn.Module] = {}
        self.snapshot_epoch: Optional[int] = None  # the epoch whose start the snapshot is of

    @classmethod
    def options_from_cfg(cls, cfg, seed: Optional[int],
                         joint_mask: Optional[torch.Tensor]) -> Dict[str, Any]:
        """SemiMethod's parts with the hard view's op ('jo' with SSL.SSPCM.JO pastes and
        SSL.SSPCM.OP_MODE; Joint Cutout with SSL.HARD.JOINT_CUTOUT boxes when JO is 0), plus
        SSL.DUAL_SUP_WEIGHT and the SSL.SSPCM filters and correction."""
        opts = super().options_from_cfg(cfg, seed, joint_mask)
        s, h = cfg.SSL.SSPCM, opts["hard"]
        if s.JO < 0:
            raise ConfigError(f"SSL.SSPCM.JO must be >= 0, got {s.JO}")
        ops = ("jo",) if s.JO > 0 else ("cutout",) if h.joint_num > 0 else ()
        opts["hard"] = HardView(ops, h.joint_num, h.cutout_mode, h.cutout_scale, h.rand_aug,
                                h.affine, h.scale_factor, h.rot_factor, h.align_corners,
                                h.teacher_view, h.joint_mask, h.stream.seed,
                                op_counts={"jo": s.JO}, op_mode=s.OP_MODE)
        return dict(opts, sup_weight=cfg.SSL.DUAL_SUP_WEIGHT,
                    joint_filter=JointFilter(s.SCORE_FILTER, s.SCORE_THRE, s.DIST_FILTER,
                                             s.DIST_THRE, s.SCORE_REWEIGHT, s.DIST_REWEIGHT,
                                             s.BOTH_SATISFY),
                    time_correction=s.TIME_CORRECTION, warmup_epoch=s.WARMUP_EPOCH)

    # ---------------------------------------------------------------- the previous teachers
    def set_progress(self, epochs: float) -> None:
        """The consistency ramp-up, and a snapshot of the teachers when a new epoch starts (so
        A', B' are the teachers as the previous epoch left them; the first epoch's are the nets
        the run starts with). A resumed run's snapshot comes back through load_extra_state with
        its epoch, so resuming mid-epoch takes no new one."""
        super().set_progress(epochs)
        self.epoch = int(math.floor(epochs))
        if self.snapshot_epoch != self.epoch:
            self.take_snapshot(self.epoch)

    @torch.no_grad()
    def take_snapshot(self, epoch: int) -> None:
        """(A', B') <- copies of (A, B), weights and buffers; the copies are made once and then
        overwritten in place (a compiled step keeps its graph)."""
        for name in self.snapshot_of:
            if name not in self.previous:
                self.previous[name] = copy.deepcopy(self.nets[name]).requires_grad_(False)
            else:
                self.previous[name].load_state_dict(self.nets[name].state_dict())
        self.snapshot_epoch = int(epoch)

    def train(self, mode: bool = True) -> "SSPCM":
        """Train/eval mode of the nets and of the snapshot (outside the module tree), so A' and B'
        run in the mode of the teachers they copy (train mode in the step, as released)."""
        super().train(mode)
        for net in self.previous.values():
            net.train(mode)
        return self

    def correction_active(self) -> bool:
        """Step 3 uses the previous teachers from epoch WARMUP_EPOCH + 1 on."""
        return self.time_correction and self.epoch > self.warmup_epoch

    def extra_state(self) -> Dict[str, object]:
        """The snapshot's epoch and state dicts (saved in resumable checkpoints)."""
        if self.snapshot_epoch is None:
            return {}
        return {"snapshot_epoch": self.snapshot_epoch,
                "previous": {n: m.state_dict() for n, m in self.previous.items()}}

    def load_extra_state(self, state: Mapping[str, object]) -> None:
        if "previous" not in state:  # no snapshot yet: the next set_progress takes one
            return
        for name, tensors in state["previous"].items():  # type: ignore[union-attr]
            if name not in self.previous:
                self.previous[name] = copy.deepcopy(self.nets[name]).requires_grad_(False)
            self.previous[name].load_state_dict(tensors)
        self.snapshot_epoch = int(state["snapshot_epoch"])  # type: ignore[arg-type]

    # ---------------------------------------------------------------- the step
    def training_step(self, batch: Batch) -> StepOutput:
        lab, unl = batch["labeled"], batch["unlabeled"]
        s_net, a_net, b_net = (self.nets[n] for n in self.net_names)
        w_l, w_u = lab.get("target_weight"), unl.get("target_weight")
        sups = [net(lab["image"]) for net in (s_net, a_net, b_net)]
        poses = [self.loss(sup, lab["target"], w_l) for sup in sups]

        with torch.no_grad():
            x_u = unl["image"]
            t_a, t_b = a_net(x_u), b_net(x_u)
            active = self.correction_active()
            if active:
                if not self.previous:  # called without set_progress: the nets as they are
                    self.take_snapshot(self.epoch)
                t_a_prev, t_b_prev = (self.previous[n](x_u) for n in self.snapshot_of)
                ens, choice = time_corrected_ensemble(t_a, t_b, t_a_prev, t_b_prev)
            else:
                ens, choice = (t_a + t_b) / 2, None
            # A's view around B's joints and taught by B, B's around A's, S's around E's
            (h_a, h_b, h_s), (tw_b, tw_a, tw_e), _, theta = self.hard_views(
                batch, (t_b, t_a, ens), None)
            w_ab, w_s = self.joint_filter(t_a, t_b, w_u)
            w_a = self.cons.joint_weight(tw_b, w_ab)
            w_b = self.cons.joint_weight(tw_a, w_ab)
            w_s = self.cons.joint_weight(tw_e, w_s)
        c_s, c_a, c_b = s_net(h_s), a_net(h_a), b_net(h_b)
        cons_s = self.cons.term(c_s, tw_e, w_s)
        cons_a = self.cons.term(c_a, tw_b, w_a)
        cons_b = self.cons.term(c_b, tw_a, w_b)

        loss_pose = self.sup_weight * (poses[0] + poses[1] + poses[2])
        loss_cons = cons_a + cons_b + cons_s
        terms = {"loss_pose": loss_pose.detach(), "loss_cons": loss_cons.detach()}
        for name, pose, cons in zip(self.net_names, poses, (cons_s, cons_a, cons_b)):
            terms[f"loss_pose_{name}"], terms[f"loss_cons_{name}"] = pose.detach(), cons.detach()
        terms["cons_kept_teachers"] = (w_ab > 0).float().mean()
        terms["cons_kept_student"] = (w_s > 0).float().mean()
        terms["pcm_current"] = (torch.ones((), device=t_a.device) if choice is None
                                else (choice == 0).float().mean())
        return StepOutput(
            loss=loss_pose + self.cons.scale * loss_cons, terms=terms,
            sup_heatmaps=sups[0].detach(),
            debug={"teacher_heatmaps": ens, "teacher_warped": tw_e, "hard_images": h_s,
                   "student_heatmaps": c_s.detach(), "theta": theta,
                   "teacher_heatmaps_a": t_a, "teacher_heatmaps_b": t_b,
                   "hard_images_a": h_a, "hard_images_b": h_b})
