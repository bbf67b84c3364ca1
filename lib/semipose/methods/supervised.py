"""Plain supervised training of one net (pose_resnet / pose_hrnet)."""
from __future__ import annotations

from typing import Dict, Optional

import torch
from torch import nn

from ..losses import JointsMSELoss
from .base import Batch, Method, NetsArg, labeled_part
from .registry import register_method


@register_method("pose_resnet", backbone="resnet")
@register_method("pose_hrnet", backbone="hrnet")
class Supervised(Method):
    """loss = JointsMSE(net1(image), target, target_weight).

    Batch: {"image" [N, 3, H, W], "target" [N, J, h, w], "target_weight" [N, J, 1], ...} or a
    paired batch, whose "labeled" part is used. ``last``: "sup_heatmaps" [N, J, h, w].
    """

    net_names = ("net1",)

    def __init__(self, nets: NetsArg, loss: Optional[nn.Module] = None):
        super().__init__(nets, loss)

    @classmethod
    def from_cfg(cls, cfg, nets: NetsArg, **_ignored) -> "Supervised":
        """Reads LOSS.USE_TARGET_WEIGHT."""
        return cls(nets, loss=JointsMSELoss(cfg.LOSS.USE_TARGET_WEIGHT))

    def training_step(self, batch: Batch) -> Dict[str, torch.Tensor]:
        lab = labeled_part(batch)
        out = self.nets["net1"](lab["image"])
        loss = self.loss(out, lab["target"], lab.get("target_weight"))
        self.last = {"sup_heatmaps": out.detach()}
        return {"loss": loss, "loss_pose": loss.detach(), "sup_heatmaps": out.detach()}
