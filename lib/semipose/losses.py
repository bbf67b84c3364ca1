"""Heatmap losses.

The supervised term and the consistency terms of PoseCons / PoseDual are the same target-weighted
MSE; only the targets (ground truth vs. warped teacher heatmaps) and weights differ.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn


class JointsMSELoss(nn.Module):
    """0.5 * mean over all B*J*H*W elements of (w * (pred - gt))^2.

    The mean runs over every channel, including joints with weight 0 (on COCO 17 of the 24 union
    channels carry weight, so the loss is diluted by 17/24 as in the reference). The loss is
    computed in float32 so that reduced-precision heatmaps do not lose small differences.
    """

    def __init__(self, use_target_weight: bool = True):
        super().__init__()
        self.use_target_weight = use_target_weight

    def forward(self, output: torch.Tensor, target: torch.Tensor,
                target_weight: Optional[torch.Tensor] = None) -> torch.Tensor:
        """output, target: [B, J, H, W]; target_weight: [B, J, 1] or [B, J]. Returns a scalar."""
        diff = output.float() - target.float()
        if self.use_target_weight:
            if target_weight is None:
                raise ValueError("JointsMSELoss(use_target_weight=True) needs target_weight [B, J, 1]; "
                                 "pass it or set LOSS.USE_TARGET_WEIGHT False")
            w = target_weight.float().reshape(diff.shape[0], diff.shape[1], 1, 1)
            diff = diff * w
        return 0.5 * diff.pow(2).mean()
