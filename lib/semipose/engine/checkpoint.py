"""Atomic checkpoint files with the reference's names.

``checkpoint.pth.tar`` holds everything needed to continue a run; ``model_best.pth.tar`` and
``final_state.pth.tar`` hold bare weights (our 'net1.'/'net2.' layout). Every write goes to a
temporary file in the same folder and is renamed over the target, so a crash or SIGKILL at any moment
leaves the previous file intact.
"""
from __future__ import annotations

import os
import tempfile
from typing import Any, Dict, Optional

import torch

CHECKPOINT = "checkpoint.pth.tar"
BEST = "model_best.pth.tar"
FINAL = "final_state.pth.tar"


def atomic_torch_save(obj: Any, path: str) -> None:
    """torch.save to ``path`` via a temporary sibling file and os.replace."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=os.path.basename(path), dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_text(text: str, path: str) -> None:
    """Write a text file atomically (temp file + rename)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load_resume_state(output_dir: str) -> Optional[Dict[str, Any]]:
    """The run state in ``<output_dir>/checkpoint.pth.tar``, or None when there is none."""
    path = os.path.join(output_dir, CHECKPOINT)
    if not os.path.exists(path):
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # a truncated file from another tool, say
        raise RuntimeError(
            f"cannot read resume checkpoint {path}: {exc}. Delete it or set TRAIN.RESUME False."
        ) from exc
