"""The contracts between the parts, written as types: what a sample and a paired batch hold, what
a training step returns to the trainer, what a record source gives the datasets, and what a pose
net offers the weight loaders.

Only types here (no behaviour beyond a container), so every layer may import it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Protocol, Sequence, Tuple, TypedDict

import torch

if TYPE_CHECKING:  # annotations only: keeps this module free of imports from the layers
    from .data.keypoints import JointSet

# A person record (data/coco.py, mpii.py, aic.py): "image" path, "image_id", "center" [2],
# "scale" [2] (box size / PIXEL_STD), "joints" [J, 2] and "joints_vis" [J] in the model's joint
# space, "score", "raw_box" [4].
Record = Dict[str, Any]


class Sample(TypedDict):
    """One person crop (transforms/sample.py), J joints, crop W x H, heatmaps w x h.

    A DataLoader batch of samples has the same keys with a leading batch dimension N (and the
    meta entries collated to tensors / lists).
    """

    image: torch.Tensor          # [3, H, W] float32, normalised with the ImageNet mean/std
    target: torch.Tensor         # [J, h, w] float32 Gaussian heatmaps
    target_weight: torch.Tensor  # [J, 1] float32, 1 for joints that count in the loss
    # image_id, center [2], scale [2], rotation, scale_factor, flip, score, raw_box [4], index
    # (the dataset index), joints [J, 2] (crop pixels), joints_vis [J]
    meta: Dict[str, Any]


class _LabeledUnlabeled(TypedDict):
    labeled: Sample
    unlabeled: Sample


class PairedBatch(_LabeledUnlabeled, total=False):
    """What data/paired.py yields per item (and, batched, what a semi-supervised training step
    receives). The unlabeled sample's target_weight is 1 on the joints the labeled set annotates.
    "labeled" and "unlabeled" are always there (total=False covers only the optional twin; a
    base class instead of NotRequired keeps Python 3.9 and 3.10 supported)."""

    unlabeled_aug: Sample  # CONS_RAND_AUG: the photometric twin of "unlabeled"


@dataclass
class StepOutput:
    """What ``Method.training_step`` returns to the trainer.

    loss: the total loss, with its graph (the trainer calls backward on it).
    terms: named scalars logged beside it (detached): "loss_pose", "loss_cons", ... in the order
        of the log line.
    sup_heatmaps: net 1 on the labeled images [N, J, h, w] (detached), for the training accuracy.
    debug: detached tensors of the step for the debug pictures (DEBUG.*): "teacher_heatmaps",
        "teacher_warped", "hard_images", "student_heatmaps", "theta"; second-net entries end
        in "_2". Methods without a hard view give none.
    """

    loss: torch.Tensor
    terms: Dict[str, torch.Tensor]
    sup_heatmaps: torch.Tensor
    debug: Dict[str, torch.Tensor] = field(default_factory=dict)

    def logged(self) -> Dict[str, torch.Tensor]:
        """{"loss": the total (detached), then every term}: the step's logged scalars."""
        return {"loss": self.loss.detach(), **self.terms}


class RecordSource(Protocol):
    """A dataset module's records with what training and evaluation read about them
    (CocoDataset, MpiiDataset, AicDataset); PoseDataset serves samples from one."""

    records: List[Record]
    joint_set: "JointSet"          # the model's joint space (the records' joints are in it)
    native_joint_set: "JointSet"   # the dataset's own joints (COCO-17, MPII-16, AIC-14)
    flip_pairs: Sequence[Tuple[int, int]]  # left/right joint ids in the model space
    image_set: str
    annotation_file: str


class PoseNet(Protocol):
    """A pose net (models/resnet.py, models/hrnet.py): a plain module, images in, heatmaps out."""

    head_modules: Tuple[str, ...]  # top-level modules that always start random (never ImageNet)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] -> heatmaps [N, J, H/4, W/4]."""

    def forward(self, images: torch.Tensor) -> torch.Tensor: ...

    def reference_init(self, std: float = 0.001) -> None:
        """The reference's random initialisation, before any ImageNet tensors are loaded."""

    def imagenet_only_key(self, key: str) -> bool:
        """True for ImageNet-file tensors that have no counterpart in this net."""

    def state_dict(self, *args: Any, **kwargs: Any) -> Mapping[str, torch.Tensor]: ...
