"""Collapse monitor: detect nets drifting towards flat heatmaps during consistency training.

A known failure of self-/cross-supervised heatmap training is collapse: a teacher with weak peaks
teaches a student to predict weak peaks, and the consistency loss is smallest for all-zero maps.
The monitor measures, on a fixed batch of images:

* ``<net>/max_mean``, ``<net>/max_q10``, ``<net>/max_q50``, ``<net>/max_q90``: heatmap maxima over
  the supervised joints (mean and quantiles);
* ``<net>/collapse_frac``: fraction of (sample, supervised joint) pairs whose maximum is below
  ``threshold``;
* ``<net>/agree_px``: mean argmax distance (heatmap pixels) between the net's prediction on a
  fixed affine view of the images and its easy-view prediction warped by the same theta (the
  consistency the method trains for), over joints whose warped easy maximum reaches
  ``threshold`` (NaN when none does);
* ``net1_net2_px`` (two nets): mean argmax distance between the two nets' easy predictions.

The nets run in eval mode (the previous mode is restored afterwards): train mode would update the
BatchNorm running statistics, letting the monitor change the model it is watching, and eval mode
measures what validation sees.
"""
from __future__ import annotations

from typing import Dict, List, Optional

import torch
from torch import nn

from ..transforms.batch import max_preds_tensor, theta_from, warp


def _argmax_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per joint argmax distance [N, J] between heatmaps a, b [N, J, h, w]."""
    return (max_preds_tensor(a)[0] - max_preds_tensor(b)[0]).norm(dim=-1)


class CollapseMonitor:
    """Measure heatmap statistics and warn on a sharp rise of the collapse fraction.

    Args:
        threshold: heatmap maximum below which a supervised joint counts as collapsed
            (MONITOR.LOW_MAX_THRE).
        warn_rise: warn when a net's collapse fraction rises by more than this since the previous
            measurement (MONITOR.WARN_RISE).
        rot_deg, scale: the fixed affine view used for the agreement measure.
        align_corners: as the method's hard affine.
    """

    def __init__(self, threshold: float = 0.1, warn_rise: float = 0.2, rot_deg: float = 30.0,
                 scale: float = 1.0, align_corners: bool = False):
        self.threshold, self.warn_rise = float(threshold), float(warn_rise)
        self.collapsed = 0.9  # collapse fraction treated as a collapse whatever came before
        self.theta = theta_from(rot_deg, scale)
        self.align_corners = align_corners
        self.previous: Optional[Dict[str, float]] = None

    @classmethod
    def from_cfg(cls, cfg) -> "CollapseMonitor":
        """Reads MONITOR.LOW_MAX_THRE, MONITOR.WARN_RISE, SSL.HARD.ALIGN_CORNERS."""
        return cls(cfg.MONITOR.LOW_MAX_THRE, cfg.MONITOR.WARN_RISE,
                   align_corners=cfg.SSL.HARD.ALIGN_CORNERS)

    @torch.no_grad()
    def measure(self, method: nn.Module, images: torch.Tensor,
                joint_mask: Optional[torch.Tensor] = None) -> Dict[str, float]:
        """Statistics of every net of ``method`` on images [N, 3, H, W].

        joint_mask: [J] bool of supervised joints (None = all). Returns name -> float.
        """
        method = getattr(method, "module", method)  # unwrap DistributedDataParallel
        nets, _ = method.eval_spec()  # the modules validation scores (students, teachers)
        modes = {name: net.training for name, net in nets.items()}
        theta = self.theta.to(images.device).expand(images.shape[0], 2, 3)
        stats: Dict[str, float] = {}
        easy: Dict[str, torch.Tensor] = {}
        try:
            for net in nets.values():
                net.eval()
            hard_images = warp(images, theta, self.align_corners)
            for name, net in nets.items():
                hm = net(images).float()
                sel = self._select(joint_mask, hm.shape[1], hm.device)
                easy[name] = hm[:, sel]
                stats.update(self._peak_stats(name, easy[name]))
                teacher = warp(hm, theta, self.align_corners)[:, sel]
                student = net(hard_images).float()[:, sel]
                confident = teacher.flatten(2).amax(-1) >= self.threshold
                dist = _argmax_distance(student, teacher)
                stats[f"{name}/agree_px"] = float(dist[confident].mean()) if confident.any() \
                    else float("nan")
            if "net1" in easy and "net2" in easy:
                stats["net1_net2_px"] = float(_argmax_distance(easy["net1"], easy["net2"]).mean())
        finally:
            for name, net in nets.items():
                net.train(modes[name])
        return stats

    def _select(self, joint_mask: Optional[torch.Tensor], num_joints: int,
                device: torch.device) -> torch.Tensor:
        if joint_mask is None:
            return torch.ones(num_joints, dtype=torch.bool, device=device)
        mask = torch.as_tensor(joint_mask, dtype=torch.bool, device=device).reshape(-1)
        if mask.numel() != num_joints or not bool(mask.any()):
            raise ValueError(f"monitor joint_mask must be [J={num_joints}] bool with at least one "
                             f"supervised joint, got shape {tuple(mask.shape)}")
        return mask

    def _peak_stats(self, name: str, hm: torch.Tensor) -> Dict[str, float]:
        maxvals = hm.flatten(2).amax(-1).flatten()
        q = torch.quantile(maxvals, torch.tensor([0.1, 0.5, 0.9], device=maxvals.device))
        return {f"{name}/max_mean": float(maxvals.mean()), f"{name}/max_q10": float(q[0]),
                f"{name}/max_q50": float(q[1]), f"{name}/max_q90": float(q[2]),
                f"{name}/collapse_frac": float((maxvals < self.threshold).float().mean())}

    def update(self, stats: Dict[str, float]) -> List[str]:
        """Record a measurement; warnings for nets whose collapse fraction rose > warn_rise."""
        warnings = []
        for key, value in stats.items():
            if not key.endswith("/collapse_frac"):
                continue
            net = key.split("/")[0]
            before = None if self.previous is None else self.previous.get(key)
            if before is not None and value - before > self.warn_rise:
                warnings.append(
                    f"{net}: collapse fraction rose from {before:.3f} to {value:.3f} "
                    f"(share of supervised joints with heatmap maximum < {self.threshold}); "
                    "the consistency loss may be flattening its heatmaps")
            elif value >= self.collapsed and (before is None or value >= before):
                # Already collapsed (e.g. within the first epoch): a rise can no longer show it.
                warnings.append(
                    f"{net}: {value:.1%} of supervised joints have a heatmap maximum below "
                    f"{self.threshold}: the network predicts background almost everywhere")
        self.previous = dict(stats)
        return warnings
