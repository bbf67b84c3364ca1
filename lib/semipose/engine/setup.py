"""Builders the trainer calls once: synthetic data on demand, datasets and loaders, the method on
its device (SyncBatchNorm, channels_last, torch.compile, DDP), batch transfer."""
from __future__ import annotations

import logging
import os
from typing import Any, Callable, Iterable, Iterator, Optional, Tuple

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from yacs.config import CfgNode

from ..data.build import build_train_dataset, build_val_dataset
from ..data.loaders import build_loader
from ..utils.dist import DistInfo

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
        raise ValueError(
            f"the synthetic dataset under {root} has no unlabeled2017 images (it was generated "
            f"with SYNTHETIC.NUM_UNLABELED 0, e.g. by another config), but this config trains on "
            f"DATASET.TRAIN_UNSUP_SET {cfg.DATASET.TRAIN_UNSUP_SET}: delete {root} so that it is "
            f"generated again with NUM_UNLABELED {cfg.SYNTHETIC.NUM_UNLABELED}, or set "
            f"DATASET.ROOT to a new folder")


def build_data(cfg: CfgNode, info: DistInfo) -> Tuple[Any, Any, DataLoader, DataLoader]:
    """(train set, val set, train loader, val loader); both loaders shard under DDP."""
    train_set = build_train_dataset(cfg)
    val_set = build_val_dataset(cfg)
    kw = dict(distributed=info.distributed, seed=cfg.SEED, rank=info.rank,
              world_size=info.world_size, pin_memory=info.device.type == "cuda")
    train_loader = build_loader(train_set, cfg.TRAIN.BATCH_SIZE, cfg.WORKERS, shuffle=True, **kw)
    val_loader = build_loader(val_set, cfg.TEST.BATCH_SIZE, cfg.WORKERS, shuffle=False, **kw)
    return train_set, val_set, train_loader, val_loader


def build_nets(cfg: CfgNode, init: bool, log: logging.Logger) -> list:
    """The method's nets, initialised from MODEL.PRETRAINED when ``init``."""
    from ..methods import num_nets
    from ..models.build import build_net, init_nets_from_cfg
    nets = [build_net(cfg) for _ in range(num_nets(cfg))]
    if init:
        loaded = init_nets_from_cfg(nets, cfg)
        if cfg.MODEL.PRETRAINED:
            log.info("initialised %d net(s) from %s (%s tensors)", len(nets), cfg.MODEL.PRETRAINED,
                     "/".join(str(len(x)) for x in loaded))
        else:
            log.info("MODEL.PRETRAINED is empty: nets start from random weights")
    return nets


def build_method_for(cfg: CfgNode, info: DistInfo, log: logging.Logger
                     ) -> Tuple[nn.Module, nn.Module]:
    """(method, model to call): the model is the method, or its DDP wrapper."""
    from ..methods import build_method
    nets = build_nets(cfg, bool(cfg.MODEL.INIT_WEIGHTS), log)
    method = build_method(cfg, nets, seed=cfg.SEED + info.rank)
    if cfg.TRAIN.SYNC_BN and info.distributed:
        if info.device.type == "cpu":  # torch's SyncBatchNorm runs on accelerators only
            log.warning("TRAIN.SYNC_BN is ignored on CPU: each rank keeps its own BatchNorm "
                        "statistics")
        else:
            method = nn.SyncBatchNorm.convert_sync_batchnorm(method)
    method.to(info.device)
    if cfg.TRAIN.CHANNELS_LAST:
        method.to(memory_format=torch.channels_last)
    if cfg.TRAIN.COMPILE:
        for net in method.nets.values():
            net.compile()  # in place: state-dict keys stay unchanged
    model: nn.Module = method
    if info.distributed:
        ids = [info.device.index] if info.device.type == "cuda" else None
        model = DistributedDataParallel(method, device_ids=ids)
    return method, model


def amp_settings(cfg: CfgNode, device: torch.device, log: logging.Logger
                 ) -> Tuple[Optional[torch.dtype], torch.amp.GradScaler]:
    """(autocast dtype or None, GradScaler) for TRAIN.AMP ('', 'bf16', 'fp16').

    fp16 uses a GradScaler (enabled only then). Both work on CPU, but a CPU without native
    bf16/fp16 kernels (e.g. AVX2 only) emulates them and runs slower than fp32: warn.
    """
    amp = cfg.TRAIN.AMP
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    if dtype is not None and device.type == "cpu":
        native = (torch.ops.mkldnn._is_mkldnn_bf16_supported() if amp == "bf16"
                  else torch.ops.mkldnn._is_mkldnn_fp16_supported())
        if not native:
            log.warning("TRAIN.AMP %s on this CPU (%s) has no native %s kernels: it is emulated, "
                        "tens of times slower than fp32 (bench/results/train_step_cpu.md); use "
                        "TRAIN.AMP '' here (AMP pays off on GPUs and AMX/AVX512-BF16 CPUs)", amp,
                        torch.backends.cpu.get_cpu_capability(), amp)
    return dtype, torch.amp.GradScaler(device.type, enabled=amp == "fp16")


def move_batch(batch: Any, device: torch.device, channels_last: bool = False) -> Any:
    """Tensors of a (nested) batch to ``device``; 4-D images optionally channels_last."""
    if isinstance(batch, torch.Tensor):
        batch = batch.to(device, non_blocking=True)
        if channels_last and batch.dim() == 4:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch
    if isinstance(batch, dict):
        return {k: (v if k == "meta" else move_batch(v, device, channels_last))
                for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_batch(v, device, channels_last) for v in batch)
    return batch


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
