"""Plain supervised training of one net (pose_resnet / pose_hrnet)."""
from __future__ import annotations

from ..types import StepOutput
from .base import Batch, Method, labeled_part
from .registry import register_method


@register_method("pose_resnet", backbone="resnet")
@register_method("pose_hrnet", backbone="hrnet")
class Supervised(Method):
    """loss = JointsMSE(net1(image), target, target_weight).

    Batch: {"image" [N, 3, H, W], "target" [N, J, h, w], "target_weight" [N, J, 1], ...} or a
    paired batch, whose "labeled" part is used.
    """

    net_names = ("net1",)

    def training_step(self, batch: Batch) -> StepOutput:
        lab = labeled_part(batch)
        out = self.nets["net1"](lab["image"])
        loss = self.loss(out, lab["target"], lab.get("target_weight"))
        return StepOutput(loss=loss, terms={"loss_pose": loss.detach()}, sup_heatmaps=out.detach())
