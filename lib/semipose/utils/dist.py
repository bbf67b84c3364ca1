"""Distributed helpers: process-group setup from torchrun / torch.distributed.launch, gathers,
agreement on per-step flags, buffer broadcast.

Launch (one process per device; gloo on CPU, nccl on CUDA)::

    torchrun --nproc_per_node=N pose_estimation/train.py --cfg FILE
    python -m torch.distributed.launch --nproc_per_node=N pose_estimation/train.py --distributed --cfg FILE
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence

import torch
import torch.distributed as dist
from torch import nn

from ..errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def pick_device(requested: str, local_rank: int = 0, distributed: bool = False) -> torch.device:
    """'' -> CUDA (this process's local GPU) when available, else CPU; otherwise the named device.

    Under a launcher (``distributed``) every CUDA process takes GPU ``local_rank`` whatever index
    DEVICE names, so that ranks never share a GPU; choose the GPUs with CUDA_VISIBLE_DEVICES.
    """
    if requested:
        dev = torch.device(requested)
        # ValueError: a user error, printed as one line by the command-line tools
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"DEVICE='{requested}' (or --gpus) but CUDA is not available on this "
                              f"machine; use DEVICE cpu, or DEVICE '' to take a GPU when present")
        if (dev.type == "cuda" and dev.index is not None and not distributed
                and dev.index >= torch.cuda.device_count()):
            raise ConfigError(f"DEVICE='{requested}' but this machine has "
                              f"{torch.cuda.device_count()} GPU(s) (cuda:0 ...)")
        if dev.type == "cuda" and distributed:
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


_MONITOR_GROUP = None


def stuck_ranks(timeout_s: float = 10.0) -> Optional[List[int]]:
    """After a collective timed out: the ranks that do not reach a monitored barrier within
    ``timeout_s`` (known on rank 0; None elsewhere or when it cannot tell)."""
    if _MONITOR_GROUP is None or not dist.is_initialized():
        return None
    try:
        dist.monitored_barrier(group=_MONITOR_GROUP, wait_all_ranks=True,
                               timeout=datetime.timedelta(seconds=float(timeout_s)))
    except RuntimeError as exc:
        import re
        m = re.search(r"Ranks? ([\d, ]+) failed to pass monitoredBarrier", str(exc))
        return [int(r) for r in m.group(1).split(",")] if m else None
    return []


def init_distributed(requested_device: str, force: bool = False,
                     local_rank_arg: Optional[int] = None, timeout_s: float = 900.0) -> DistInfo:
    """Join the process group when launched by torchrun or torch.distributed.launch.

    The launcher sets WORLD_SIZE/RANK/MASTER_ADDR; the local rank comes from LOCAL_RANK or the legacy
    ``--local_rank`` argument. Backend: nccl on CUDA, gloo on CPU. ``timeout_s`` bounds every
    collective (DIST_TIMEOUT_S): a rank that is frozen (stopped, not killed) ends the job after it
    instead of after torch's 30-minute default.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if local_rank_arg is not None and "LOCAL_RANK" not in os.environ:
        os.environ["LOCAL_RANK"] = str(local_rank_arg)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world <= 1 and not force:
        return DistInfo(device=pick_device(requested_device))
    if world <= 1 and force:
        if "MASTER_ADDR" not in os.environ:
            # --distributed on a single process without a launcher: a group of one.
            os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
            os.environ.setdefault("MASTER_PORT", "29500")
            os.environ.setdefault("RANK", "0")
            os.environ.setdefault("WORLD_SIZE", "1")
    device = pick_device(requested_device, local_rank, distributed=True)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo",
                                timeout=datetime.timedelta(seconds=float(timeout_s)))
        global _MONITOR_GROUP
        # a small gloo side group: after a timed-out collective, its monitored barrier tells
        # rank 0 which ranks stopped responding (nccl cannot)
        _MONITOR_GROUP = dist.new_group(backend="gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, device)


def all_gather_objects(obj: Any, info: DistInfo) -> List[Any]:
    """Gather a picklable object from every rank (returns [obj] when not distributed)."""
    if not info.distributed:
        return [obj]
    out: List[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def any_rank(flags: Sequence[bool], info: DistInfo) -> List[bool]:
    """Element-wise OR of ``flags`` over all ranks (one small all-reduce; identity when not
    distributed). Ranks use it to take the same decision at the same step (stop on a signal,
    stop on a non-finite loss); deciding alone would leave the others waiting in a collective.
    """
    if not info.distributed:
        return [bool(f) for f in flags]
    t = torch.tensor([int(bool(f)) for f in flags], dtype=torch.int32, device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def broadcast_buffers(module: nn.Module, info: DistInfo, src: int = 0) -> None:
    """Copy rank ``src``'s buffers (BatchNorm running statistics) to every rank.

    DDP broadcasts buffers at the start of each forward, but each rank then updates them with its
    own batch; evaluating after training needs the statistics that rank 0 saves.
    """
    if not info.distributed:
        return
    for buf in module.buffers():
        dist.broadcast(buf.data, src=src)


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()
