"""Seeding and RNG-state capture (for exact resume)."""
from __future__ import annotations

import random
from typing import Any, Dict, Optional

import numpy as np
import torch


def seed_everything(seed: int, deterministic: bool = False, cudnn: Optional[Any] = None) -> None:
    """Seed python, numpy and torch (all devices); optionally force deterministic kernels.
    ``cudnn``: a config's CUDNN section (BENCHMARK, ENABLED), applied last."""
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    if cudnn is not None:
        torch.backends.cudnn.benchmark = cudnn.BENCHMARK
        torch.backends.cudnn.enabled = cudnn.ENABLED


def rng_state() -> Dict[str, Any]:
    """Every global RNG state, picklable."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
