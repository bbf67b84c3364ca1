"""Atomic checkpoint files with the reference's names.

``checkpoint.pth.tar`` holds everything needed to continue a run; ``model_best.pth.tar`` and
``final_state.pth.tar`` hold bare weights (our 'net1.'/'net2.' layout). Every write goes to a
temporary file in the same folder, flushed to disk and renamed over the target (then the folder
entry is synced), so a crash, SIGKILL or power loss at any moment leaves either the previous or the
new file, never a truncated one. A killed write can leave a ``.tmp_*`` file behind; resuming the
run removes those.
"""
from __future__ import annotations

import errno
import glob
import logging
import os
from typing import Any, Dict, Optional

import torch

# CheckpointError lives with the other user errors; importing it from here keeps working.
from ..errors import CheckpointError, WeightsError
from ..utils.io import TMP_PREFIX, atomic_write

CHECKPOINT = "checkpoint.pth.tar"
BEST = "model_best.pth.tar"
FINAL = "final_state.pth.tar"

logger = logging.getLogger("semipose")


_DISK_FULL = ("No space left", "enforce fail", "file write failed", "unexpected pos")


def atomic_torch_save(obj: Any, path: str) -> None:
    """torch.save to ``path`` atomically and durably (see semipose.utils.io).

    A full disk (ENOSPC, or the C++ stream-writer failure torch reports for it) raises an OSError
    that says so and whether the previous file at ``path`` is intact (it always is: the rename
    never happened).
    """
    try:
        atomic_write(path, lambda f: torch.save(obj, f))
    except (OSError, RuntimeError) as exc:
        text = str(exc)
        full = getattr(exc, "errno", None) == errno.ENOSPC or any(t in text for t in _DISK_FULL)
        if not full:
            raise
        kept = (f"the previous {os.path.basename(path)} is intact" if os.path.exists(path)
                else "no earlier file was there")
        err = OSError(f"no space left on device while writing {path}; {kept}. Free space (or "
                      f"move OUTPUT_DIR) and resume with TRAIN.RESUME True")
        err.errno = errno.ENOSPC
        raise err from exc


def remove_stale_temp_files(output_dir: str) -> int:
    """Delete the ``.tmp_*`` files a killed write left in ``output_dir``; returns how many.

    Only call it when no other process writes to that folder (e.g. when a run resumes).
    """
    stale = glob.glob(os.path.join(glob.escape(output_dir), TMP_PREFIX + "*"))
    for f in stale:
        try:
            os.remove(f)
        except OSError:
            pass
    if stale:
        logger.info("removed %d temporary file(s) left by an interrupted write in %s",
                    len(stale), output_dir)
    return len(stale)


def load_resume_state(output_dir: str) -> Optional[Dict[str, Any]]:
    """The run state in ``<output_dir>/checkpoint.pth.tar``, or None when there is none."""
    path = os.path.join(output_dir, CHECKPOINT)
    if not os.path.exists(path):
        return None
    from ..models.weights import safe_load
    try:
        state = safe_load(path, "resume checkpoint")
    except WeightsError as exc:  # a truncated file from another tool, say
        raise CheckpointError(
            f"{exc}. Delete it (or move it away) or set TRAIN.RESUME False.") from exc
    if not isinstance(state, dict) or "state_dict" not in state or "epoch" not in state:
        raise CheckpointError(
            f"{path} is not a resumable checkpoint (no 'state_dict'/'epoch' entries); bare weights "
            f"go to MODEL.PRETRAINED or TEST.MODEL_FILE. Move it away or set TRAIN.RESUME False.")
    return state
