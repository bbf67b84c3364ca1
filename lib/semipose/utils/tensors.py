"""Small tensor helpers shared by the device-side transforms and the method step."""
from __future__ import annotations

from typing import Optional, Sequence

import torch


def to_device(t: torch.Tensor, device: torch.device,
              dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """A host tensor on ``device`` without making the host wait.

    A blocking copy to a GPU synchronises its stream: the host would first wait for every step
    already queued there, and could no longer prepare the next batch while the GPU works. A
    non-blocking copy from pageable memory is staged by the driver before the call returns, and
    one from pinned memory (the loader's batches) is tracked by PyTorch's pinned-memory cache, so
    the source may be dropped at once. Only for host-to-device copies (a non-blocking copy to the
    host could be read before it lands)."""
    return t.to(device=device, dtype=dtype, non_blocking=True)


def device_vector(values: Sequence[float], dtype: torch.dtype,
                  device: torch.device) -> torch.Tensor:
    """``torch.tensor(values, dtype=dtype, device=device)`` written by fills on the device: a
    tensor made from a host list is a blocking copy, which waits for the queued work, and a fill
    is a kernel launch (also inside a compiled step, where a host tensor would be an input)."""
    out = torch.empty(len(values), dtype=dtype, device=device)
    for i, v in enumerate(values):
        out[i] = float(v)
    return out
