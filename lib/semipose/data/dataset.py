"""Torch dataset over person records: index -> sample dict, reproducible randomness.

Every item draws its augmentation from ``np.random.default_rng([seed, epoch, index])`` (the
``item`` stream of utils/streams.py), so a sample depends only on (seed, epoch, index): the same
with 0 or 8 workers, in any order, and after a resume. DataLoader workers must not be persistent, so that a ``set_epoch`` done in
the main process reaches the workers created for the next epoch.
"""
from __future__ import annotations

import logging
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from semipose.data.imageio import ImageReadError
from semipose.data.keypoints import JointSet
from semipose.errors import DataError
from semipose.transforms.sample import CropAugment, SampleTransform
from semipose.types import Record, RecordSource, Sample
from semipose.utils.streams import stream_rng

logger = logging.getLogger(__name__)

# Per-worker skip counters live in one shared-memory tensor (slot 0 = main process), so
# counts from DataLoader workers are visible in the main process without locking.
_COUNTER_SLOTS = 257


class PoseDataset(Dataset):
    """Person records + a SampleTransform -> sample dicts (see transforms/sample.py).

    Args:
        records: person records (project format); joints already in the model's joint space.
        transform: the per-sample pipeline (training or validation flavour).
        is_train: informational (the transform decides about augmentation).
        seed: base seed of the per-item generators (cfg.SEED).
        skip_bad_images: on an unreadable image, count it, warn once and use another record
            instead of raising (DATASET.SKIP_BAD_IMAGES).
        source: the RecordSource that built the records (e.g. CocoDataset); its joint sets,
            flip pairs, image set and annotation file are this dataset's, and its
            dataset-specific evaluation inputs (``gt_file``, ``image_ids``, ...) are read from
            ``dataset.source``.
    """

    max_skip_tries = 20

    def __init__(self, records: List[Record], transform: SampleTransform,
                 is_train: bool, seed: int = 0, skip_bad_images: bool = False,
                 source: Optional[RecordSource] = None) -> None:
        if not records:
            raise DataError("PoseDataset needs at least one person record; the dataset is empty")
        self.records = records
        self.transform = transform
        self.is_train = is_train
        self.seed = int(seed)
        self.epoch = 0
        self.skip_bad_images = skip_bad_images
        self.source = source
        self._skips = torch.zeros(_COUNTER_SLOTS, dtype=torch.int64).share_memory_()
        self._warned: set = set()

    def _source(self, name: str) -> RecordSource:
        if self.source is None:
            raise AttributeError(f"{type(self).__name__} has no attribute '{name}'")
        return self.source

    @property
    def joint_set(self) -> JointSet:
        """The model's joint space (the source's)."""
        return self._source("joint_set").joint_set

    @property
    def native_joint_set(self) -> JointSet:
        return self._source("native_joint_set").native_joint_set

    @property
    def flip_pairs(self) -> Sequence[Tuple[int, int]]:
        return self._source("flip_pairs").flip_pairs

    @property
    def image_set(self) -> str:
        return self._source("image_set").image_set

    @property
    def annotation_file(self) -> str:
        return self._source("annotation_file").annotation_file

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose augmentation draws the next iteration uses."""
        self.epoch = int(epoch)

    def rng(self, index: int, *extra: int) -> np.random.Generator:
        """Generator of item ``index`` in the current epoch (``extra`` ints split streams)."""
        return stream_rng("item", seed=self.seed, epoch=self.epoch, index=index, extra=extra)

    @property
    def skipped(self) -> int:
        """Number of unreadable images skipped so far (all workers together)."""
        return int(self._skips.sum())

    def __getitem__(self, index: int) -> Sample:
        return self.get(index, self.rng(index))

    def get(self, index: int, rng: np.random.Generator, rotation: Optional[float] = None,
            scale_factor: Optional[float] = None, flip: Optional[bool] = None,
            augment_crop: Optional[CropAugment] = None) -> Sample:
        """Sample of record ``index`` with draws from ``rng``; optional geometry overrides."""
        return self._with_skips(index, rng, lambda rec, i: self.transform(
            rec, rng, i, rotation, scale_factor, flip, augment_crop))

    def get_pair(self, index: int, rng: np.random.Generator, augment_crop: CropAugment,
                 rotation: Optional[float] = None, scale_factor: Optional[float] = None,
                 flip: Optional[bool] = None) -> Tuple[Sample, Sample]:
        """(plain, augmented twin) of record ``index``: one decode, one warp, same geometry."""
        return self._with_skips(index, rng, lambda rec, i: self.transform.pair(
            rec, rng, augment_crop, i, rotation, scale_factor, flip))

    def _with_skips(self, index: int, rng: np.random.Generator, make):
        index = int(index)
        for _ in range(self.max_skip_tries):
            try:
                return make(self.records[index], index)
            except ImageReadError as exc:
                if not self.skip_bad_images:
                    raise
                self._count_skip(exc)
                index = int(rng.integers(len(self.records)))
        # an ImageReadError (OSError): a user error, printed as one line by the command line
        raise ImageReadError(
            f"{self.max_skip_tries} unreadable images in a row (last: {self.records[index]['image']}); "
            "check DATASET.ROOT and the image files")

    def _count_skip(self, exc: ImageReadError) -> None:
        info = get_worker_info()
        slot = 0 if info is None else 1 + info.id % (_COUNTER_SLOTS - 1)
        self._skips[slot] += 1
        if exc.path not in self._warned:
            self._warned.add(exc.path)
            logger.warning("skipping unreadable image (DATASET.SKIP_BAD_IMAGES): %s", exc)
