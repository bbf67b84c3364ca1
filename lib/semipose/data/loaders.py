"""DataLoaders: samplers (DistributedSampler + set_epoch), seeded workers, epoch propagation.

Call ``set_loader_epoch(loader, epoch)`` before iterating each epoch: it fixes the shuffle
order, the DistributedSampler partition and the datasets' augmentation/pairing draws to
functions of (seed, epoch), so a resumed run sees the same data as an uninterrupted one.
Workers are not persistent: they are re-created each epoch and so pick up the new epoch.

Shuffling always goes through a ``DistributedSampler`` (one replica when not distributed): its
order is ``randperm(n)`` from a generator seeded with ``seed + epoch``, independent of how the
loader is iterated. (A plain ``shuffle=True`` DataLoader draws its worker base seed from the same
generator *before* the permutation, so listing ``loader.batch_sampler`` directly — as a mid-epoch
resume does — would give another order than iterating the loader.)
"""
from __future__ import annotations

import inspect
import os
import random
import signal
import threading
from typing import Any, Optional

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from semipose.utils.streams import stream_seed


# Seconds a worker keeps serving after SIGTERM before it exits (with status 0, which the main
# process's worker-failure check does not treat as a crash).
WORKER_TERM_GRACE_S = 2.0


def _worker_sigterm(_signum: int, _frame: Any) -> None:
    threading.Timer(WORKER_TERM_GRACE_S, os._exit, (0,)).start()


def seed_worker(worker_id: int) -> None:
    """worker_init_fn: seed python/numpy/torch from the loader's per-worker seed; signals.

    torch already gives worker k the seed base + k (base drawn from the loader's generator);
    python and numpy are derived from it so no two workers share a stream.

    Ctrl-C in a terminal, torchrun and schedulers signal the whole process group, workers
    included, while the main process checkpoints after its current step. Workers ignore SIGINT
    (the main process shuts them down) and leave quietly a moment after SIGTERM, so that the
    batch the main process may be waiting for still arrives, and a worker's death is not reported
    as a crash in the middle of that step. (Ignoring SIGTERM outright would block interpreter
    exit, which stops leftover workers with SIGTERM.)
    """
    seed = stream_seed("worker", initial_seed=torch.initial_seed())
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _worker_sigterm)
    if hasattr(signal, "SIGHUP"):  # a closed terminal signals the whole group, like SIGTERM
        signal.signal(signal.SIGHUP, _worker_sigterm)


def build_loader(dataset: Dataset, batch_size: int, workers: int, shuffle: bool,
                 distributed: bool = False, seed: int = 0, drop_last: bool = False,
                 pin_memory: Optional[bool] = None, rank: Optional[int] = None,
                 world_size: Optional[int] = None) -> DataLoader:
    """DataLoader over ``dataset`` (default collate: sample dicts -> batched dicts).

    Args:
        batch_size: per process (per rank under DDP).
        shuffle: epoch-seeded permutation (a function of ``seed`` and the epoch set by
            ``set_loader_epoch``; the same however the loader is iterated).
        distributed: shard with a DistributedSampler (rank/world_size from the process group
            unless given). Shards are padded by repeating items so all ranks run the same
            number of steps; evaluation drops the repeats by dataset index.
        seed: shuffle / worker seed base (cfg.SEED).
        pin_memory: default True only when CUDA is available.
    """
    if distributed:
        if world_size is None:
            world_size = dist.get_world_size() if dist.is_initialized() else 1
        if rank is None:
            rank = dist.get_rank() if dist.is_initialized() else 0
    else:
        world_size, rank = 1, 0
    sampler = None
    if distributed or shuffle:
        sampler = DistributedSampler(dataset, num_replicas=int(world_size), rank=int(rank),
                                     shuffle=shuffle, seed=stream_seed("shuffle", seed=seed),
                                     drop_last=drop_last)
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=False, sampler=sampler, num_workers=workers,
        drop_last=drop_last,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        worker_init_fn=seed_worker if workers > 0 else None,
        generator=torch.Generator().manual_seed(stream_seed("loader", seed=seed)),
        persistent_workers=False)
    loader.base_seed = int(seed)
    loader.rank = int(rank)
    return loader


def set_loader_epoch(loader: DataLoader, epoch: int) -> None:
    """Make the loader's next pass epoch ``epoch``: sampler, shuffle order, dataset draws."""
    if isinstance(loader.sampler, DistributedSampler):
        loader.sampler.set_epoch(epoch)
    if loader.generator is not None:
        # Worker base seeds come from this generator; reseeding it per epoch makes them
        # independent of how many epochs this process has already run.
        base = getattr(loader, "base_seed", 0)
        loader.generator.manual_seed(stream_seed("loader_epoch", seed=base, epoch=epoch))
    set_epoch = getattr(loader.dataset, "set_epoch", None)
    if set_epoch is None:
        return
    if "rank" in inspect.signature(set_epoch).parameters:  # paired: per-rank labeled draws
        set_epoch(epoch, rank=getattr(loader, "rank", 0))
    else:
        set_epoch(epoch)
