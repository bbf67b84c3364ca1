"""Labeled + unlabeled pairs for semi-supervised training (mix_coco_coco, mix_mpii_ai).

An epoch walks the larger set (in practice the unlabeled one) once; each item is paired with a
labeled record drawn uniformly *with replacement*, re-drawn every epoch. The unlabeled crop and
its RandAugment twin share one decode, one warp and one geometry, so they differ only
photometrically; the labeled crop has its own augmentation.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from semipose.data.dataset import PoseDataset
from semipose.transforms.sample import CropAugment, draw_geometry
from semipose.types import PairedBatch, Sample
from semipose.utils.streams import stream_rng


class PairedDataset(Dataset):
    """Items ``{"labeled": sample, "unlabeled": sample[, "unlabeled_aug": sample]}``.

    Args:
        labeled, unlabeled: PoseDatasets (the unlabeled one usually built without TRAIN_LEN).
        labeled_joint_ids: model-space joint ids the labeled set annotates; the unlabeled
            samples get target_weight 1 there and 0 elsewhere ([J, 1]).
        rand_aug: optional crop augmentation ``(uint8 [H, W, 3], rng) -> uint8`` giving the
            ``unlabeled_aug`` twin (CONS_RAND_AUG).
        seed: base seed of the pairing and of the per-item draws.
    """

    def __init__(self, labeled: PoseDataset, unlabeled: PoseDataset,
                 labeled_joint_ids: Sequence[int], rand_aug: Optional[CropAugment] = None,
                 seed: int = 1314) -> None:
        self.labeled = labeled
        self.unlabeled = unlabeled
        self.rand_aug = rand_aug
        self.seed = int(seed)
        num_joints = len(unlabeled.records[0]["joints_vis"])
        ids = np.asarray(labeled_joint_ids, np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= num_joints):
            raise ValueError(f"labeled_joint_ids {ids.tolist()} outside the {num_joints}-joint model space")
        self.unlabeled_mask = np.zeros(num_joints, np.float32)
        self.unlabeled_mask[ids] = 1.0
        self.epoch, self.rank = 0, 0
        self.labeled_index = np.zeros(0, np.int64)
        self.set_epoch(0)

    def __len__(self) -> int:
        return max(len(self.labeled), len(self.unlabeled))

    def set_epoch(self, epoch: int, rank: int = 0) -> None:
        """Re-draw the labeled partner of every item for ``epoch`` (distinct per DDP rank)."""
        self.epoch, self.rank = int(epoch), int(rank)
        rng = stream_rng("pairing", seed=self.seed, epoch=self.epoch, rank=self.rank)
        self.labeled_index = rng.integers(0, len(self.labeled), size=len(self), dtype=np.int64)
        self.labeled.set_epoch(epoch)
        self.unlabeled.set_epoch(epoch)

    def __getitem__(self, index: int) -> PairedBatch:
        index = int(index)
        rng_l = stream_rng("paired_labeled", seed=self.seed, epoch=self.epoch, index=index)
        rng_u = stream_rng("paired_unlabeled", seed=self.seed, epoch=self.epoch, index=index)
        t = self.unlabeled.transform
        geo = draw_geometry(rng_u, t.scale_factor, t.rot_factor)
        shared = dict(rotation=geo.rotation, scale_factor=geo.scale_factor, flip=geo.flip)
        item: PairedBatch = {"labeled": self.labeled.get(int(self.labeled_index[index]), rng_l)}
        u_index = index % len(self.unlabeled)
        if self.rand_aug is None:
            item["unlabeled"] = self._as_unlabeled(self.unlabeled.get(u_index, rng_u, **shared))
        else:
            plain, twin = self.unlabeled.get_pair(u_index, rng_u, self.rand_aug, **shared)
            item["unlabeled"] = self._as_unlabeled(plain)
            item["unlabeled_aug"] = self._as_unlabeled(twin)
        return item

    def _as_unlabeled(self, sample: Sample) -> Sample:
        """Weight 1 on the labeled set's joints: the consistency loss is taken over those."""
        mask = self.unlabeled_mask
        meta = dict(sample["meta"], joints_vis=mask.copy())
        return dict(sample, target_weight=torch.from_numpy(mask[:, None].copy()), meta=meta)
