"""The reference's names of the semi-supervised keys, accepted as aliases of the SSL section.

The reference (and every experiment file written for it) sets the hard view and the consistency
term with top-level keys; here they live in one SSL section beside the parts that read them
(methods/parts.py). A YAML file or a command line may use either name: ``canonical_yaml`` and
``canonical_key`` rewrite the old names before merging, so the rest of the code reads only the new
keys. Giving both names of one key in the same file is an error (which one would win is not
obvious).
"""
from __future__ import annotations

import copy
import logging
from typing import Any, Dict, Mapping

from .merge import ConfigError

# old dotted key -> new dotted key
ALIASES: Dict[str, str] = {
    "MASK_JOINT_NUM": "SSL.HARD.JOINT_CUTOUT",
    "CUTOUT_MODE": "SSL.HARD.CUTOUT_MODE",
    "CUTOUT_SCALE": "SSL.HARD.CUTOUT_SCALE",
    "CONS_RAND_AUG": "SSL.HARD.RAND_AUG",
    "RAND_MAGNITUDE": "SSL.HARD.RAND_MAGNITUDE",
    "UNSUP_TRANSFORM": "SSL.HARD.AFFINE",
    "HARD_AFFINE_ALIGN_CORNERS": "SSL.HARD.ALIGN_CORNERS",
    "CONS_TEACHER_VIEW": "SSL.HARD.TEACHER_VIEW",
    "CONS_RAMPUP_EPOCHS": "SSL.CONS.RAMPUP_EPOCHS",
    "CONS_CONF_THRE": "SSL.CONS.CONF_THRE",
    "DUAL_SUP_WEIGHT": "SSL.DUAL_SUP_WEIGHT",
    "MT_EMA_DECAY": "SSL.EMA_DECAY",
    "MULTI.PATHS": "SSL.MULTI.PATHS",
    "MULTI.MASK_JOINT_NUM": "SSL.MULTI.MASK_JOINT_NUM",
}


# Keys the reference declares but nothing reads (no code of the reference or of this project uses
# their values). A file or command line may still set them, so that the reference's experiment
# files load; they are dropped with a note and do not appear in the merged config or --list-keys.
LEGACY = ("MODEL.TCH_PRETRAINED", "MODEL.SEG_PRETRAINED", "DATASET.PSEUDO_ANNO", "DATASET.AI_ROOT",
          "DATASET.BOX_THRE", "DATASET.SCORE_THRE", "TRAIN.GAMMA1", "TRAIN.GAMMA2",
          "TRAIN.CHECKPOINT", "TRAIN.SHUFFLE", "TEST.BBOX_THRE", "TEST.NMS_THRE")
logger = logging.getLogger("semipose")


def note_legacy(key: str, source: str) -> None:
    logger.info("config: %s in %s is a key the reference declares but never reads; ignored",
                key, source)


def canonical_key(key: str) -> str:
    """The key a (possibly old) dotted name sets."""
    return ALIASES.get(key, key)


def canonical_yaml(data: Mapping, source: str) -> Dict[str, Any]:
    """A copy of a YAML mapping with every old key moved to its SSL place."""
    out: Dict[str, Any] = copy.deepcopy(dict(data))
    for key in LEGACY:
        section, leaf = key.split(".")
        if isinstance(out.get(section), dict) and leaf in out[section]:
            out[section].pop(leaf)
            note_legacy(key, source)
    for old, new in ALIASES.items():
        *old_parents, old_leaf = old.split(".")
        parent: Any = out
        for part in old_parents:  # e.g. MULTI for MULTI.PATHS
            parent = parent.get(part) if isinstance(parent, dict) else None
        if not isinstance(parent, dict) or old_leaf not in parent:
            continue
        value = parent.pop(old_leaf)
        if old_parents and not parent:  # an emptied MULTI section goes too
            out.pop(old_parents[0])
        *new_parents, new_leaf = new.split(".")
        node = out
        for i, part in enumerate(new_parents):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{source}: {'.'.join(new_parents[:i + 1])} must be a section "
                                  f"of keys to take {old} (its new name is {new})")
        if new_leaf in node:
            raise ConfigError(f"{source} sets both {old} and {new}, two names of one key; "
                              f"keep one ({new})")
        node[new_leaf] = value
    return out
