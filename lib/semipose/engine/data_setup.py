"""The data of a run: synthetic data on demand, the train and val sets and their loaders (one
loader builder for training and validation), mid-epoch resume and stop-aware iteration."""
from __future__ import annotations

import logging
import os
from typing import Any, Callable, Iterable, Iterator, Optional, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from yacs.config import CfgNode

from ..data.build import build_train_dataset, build_val_dataset
from ..data.loaders import build_loader
from ..errors import DataError
from ..transforms.device_pipeline import DeviceStage, finished_images
from ..utils.dist import DistInfo
from ..utils.streams import stream_rng

# Which synthetic formats a dataset name needs, and a file proving each one is present.
_SYNTH_FORMATS = {"coco": ("coco",), "mix_coco_coco": ("coco",), "mpii": ("mpii",),
                  "mix_mpii_ai": ("mpii", "aic"), "ai_challenger": ("aic",)}
_SYNTH_PROBE = {"coco": ("coco", "annotations", "person_keypoints_val2017.json"),
                "mpii": ("mpii", "annot", "train.json"),
                "aic": ("ai_challenger", "train", "keypoint_train_annotation.json")}


def prepare_synthetic(cfg: CfgNode, log: logging.Logger) -> None:
    """Generate the synthetic dataset under DATASET.ROOT when SYNTHETIC.GENERATE_IF_MISSING is set
    and its files are absent. Real datasets are never generated: only configs that opt in do this."""
    if not cfg.SYNTHETIC.GENERATE_IF_MISSING:
        return
    names = {cfg.DATASET.TRAIN_DATASET, cfg.DATASET.TEST_DATASET}
    formats = sorted({f for n in names for f in _SYNTH_FORMATS.get(n, ())})
    root = cfg.DATASET.ROOT
    missing = [f for f in formats if not os.path.exists(os.path.join(root, *_SYNTH_PROBE[f]))]
    if not missing:
        _check_synthetic_unlabeled(cfg)
        return
    from ..data.synthetic import generate
    s = cfg.SYNTHETIC
    log.info("synthetic dataset missing under %s: generating %s (seed %d, preset %s, %d train / "
             "%d val / %d unlabeled images)", root, missing, s.SEED, s.PRESET, s.NUM_TRAIN,
             s.NUM_VAL, s.NUM_UNLABELED)
    generate(root, seed=s.SEED, num_train=s.NUM_TRAIN, num_val=s.NUM_VAL,
             num_unlabeled=s.NUM_UNLABELED, show_progress=True, formats=tuple(missing),
             preset=s.PRESET, workers=os.cpu_count() or 1)


def _check_synthetic_unlabeled(cfg: CfgNode) -> None:
    """A generated root that another config made without unlabeled2017 images cannot serve a
    config that trains on them: say so (instead of a later 'no person boxes')."""
    if "unlabeled" not in cfg.DATASET.TRAIN_UNSUP_SET or cfg.DATASET.TRAIN_DATASET != "mix_coco_coco":
        return
    root = cfg.DATASET.ROOT
    info = os.path.join(root, "coco", "annotations", "image_info_unlabeled2017.json")
    count = 0
    if os.path.isfile(info):
        import json
        with open(info) as f:
            count = len(json.load(f).get("images", []))
    if count == 0:
        raise DataError(
            f"the synthetic dataset under {root} has no unlabeled2017 images (it was generated "
            f"with SYNTHETIC.NUM_UNLABELED 0, e.g. by another config), but this config trains on "
            f"DATASET.TRAIN_UNSUP_SET {cfg.DATASET.TRAIN_UNSUP_SET}: delete {root} so that it is "
            f"generated again with NUM_UNLABELED {cfg.SYNTHETIC.NUM_UNLABELED}, or set "
            f"DATASET.ROOT to a new folder")


def run_loader(cfg: CfgNode, dataset: Dataset, info: DistInfo, train: bool) -> DataLoader:
    """The loader of a run's train set (shuffled, TRAIN.BATCH_SIZE) or val set (in order,
    TEST.BATCH_SIZE); both shard under DDP. train.py and valid.py load through here."""
    batch_size = cfg.TRAIN.BATCH_SIZE if train else cfg.TEST.BATCH_SIZE
    return build_loader(dataset, batch_size, cfg.WORKERS, shuffle=train,
                        distributed=info.distributed, seed=cfg.SEED, rank=info.rank,
                        world_size=info.world_size, pin_memory=info.device.type == "cuda")


def monitor_crops(dataset: Any, n: int, seed: int, stage: Optional[DeviceStage] = None
                  ) -> torch.Tensor:
    """A fixed set of ``n`` crops [n, 3, H, W] (epoch-0 draws) spread over ``dataset``; plans
    (DATASET.DEVICE_PIPELINE) are finished by ``stage`` on the CPU."""
    idx = np.linspace(0, len(dataset) - 1, min(int(n), len(dataset))).astype(int)
    return finished_images([dataset.get(int(i), stream_rng("monitor", seed=seed, index=i))
                            for i in idx], stage)


def build_data(cfg: CfgNode, info: DistInfo) -> Tuple[Any, Any, DataLoader, DataLoader]:
    """(train set, val set, train loader, val loader); both loaders shard under DDP."""
    train_set = build_train_dataset(cfg)
    val_set = build_val_dataset(cfg)
    return (train_set, val_set, run_loader(cfg, train_set, info, train=True),
            run_loader(cfg, val_set, info, train=False))


class _IndexBatches(torch.utils.data.Sampler):
    def __init__(self, batches: list):
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def resume_loader(loader: DataLoader, start: int) -> DataLoader:
    """The epoch's remaining batches after ``start`` of them, with the same order and collate.

    Call after ``set_loader_epoch``. The sampler must be deterministic per epoch (see
    data.loaders), so listing it reproduces the batches the interrupted run would have seen.
    """
    if start <= 0:
        return loader
    batches = list(loader.batch_sampler)[start:]
    # The same generator: worker seeds are drawn from it rather than from the global torch RNG,
    # whose state must stay as in the uninterrupted run.
    return DataLoader(loader.dataset, batch_sampler=_IndexBatches(batches),
                      num_workers=loader.num_workers, collate_fn=loader.collate_fn,
                      pin_memory=loader.pin_memory, worker_init_fn=loader.worker_init_fn,
                      generator=loader.generator)


def until_stopped(loader: Iterable, stopping: Callable[[], bool]) -> Iterator:
    """Iterate ``loader``; when fetching fails while ``stopping()`` (a SIGTERM sent to the whole
    process group also ends the DataLoader workers), end early instead of raising."""
    it = iter(loader)
    while True:
        try:
            batch = next(it)
        except StopIteration:
            return
        except Exception:
            if not stopping():
                raise
            return
        yield batch


def skipped_images(dataset: Any) -> int:
    """Unreadable images skipped so far (DATASET.SKIP_BAD_IMAGES) by a PoseDataset or by both
    sides of a PairedDataset."""
    parts = [dataset] + [getattr(dataset, k) for k in ("labeled", "unlabeled")
                         if hasattr(dataset, k)]
    return sum(int(getattr(p, "skipped", 0)) for p in parts)
