"""Joint sets as data: native orders of COCO-17, MPII-16, AIC-14 and the 24-joint union.

Every dataset lists its native joints by name; the union slot ``k`` of a dataset is the native
joint with the same name (or absent). All mappings, flip pairs and OKS sigmas are derived here, so no
other module hard-codes 24, 17, 16 or 14.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Sequence, Tuple

import numpy as np


@dataclass(frozen=True)
class JointSet:
    """An ordered list of named joints with their left/right pairs (indices into ``names``)."""

    name: str
    names: Tuple[str, ...]
    flip_pairs: Tuple[Tuple[int, int], ...]
    sigmas: Tuple[float, ...] = field(default=())  # OKS sigmas (COCO) or AIC deltas, native order

    @property
    def num_joints(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        return self.names.index(name)


def _pairs_by_name(names: Sequence[str]) -> Tuple[Tuple[int, int], ...]:
    """Right/left pairs: a joint 'r<x>' pairs with 'l<x>' (right one first, as in the reference)."""
    pairs = []
    for i, n in enumerate(names):
        if n.startswith("r") and ("l" + n[1:]) in names:
            pairs.append((i, names.index("l" + n[1:])))
    return tuple(pairs)


_UNION_NAMES = (
    "root", "rhip", "rkne", "rank", "lhip", "lkne", "lank", "belly", "thorax", "neck",
    "upper_neck", "nose", "head", "head_top", "lsho", "lelb", "lwri", "rsho", "relb", "rwri",
    "reye", "leye", "rear", "lear",
)
_COCO_NAMES = (
    "nose", "leye", "reye", "lear", "rear", "lsho", "rsho", "lelb", "relb", "lwri", "rwri",
    "lhip", "rhip", "lkne", "rkne", "lank", "rank",
)
_MPII_NAMES = (
    "rank", "rkne", "rhip", "lhip", "lkne", "lank", "root", "thorax", "upper_neck", "head_top",
    "rwri", "relb", "rsho", "lsho", "lelb", "lwri",
)
_AIC_NAMES = (
    "rsho", "relb", "rwri", "lsho", "lelb", "lwri", "rhip", "rkne", "rank", "lhip", "lkne",
    "lank", "head_top", "neck",
)

def _joint_set(name: str, names: Tuple[str, ...], sigmas=()) -> JointSet:
    """A JointSet whose flip pairs are derived from the names, sorted (the reference's order)."""
    pairs = tuple(sorted(tuple(sorted(p)) for p in _pairs_by_name(names)))
    return JointSet(name, names, pairs, tuple(sigmas))


# The union's flip pairs come out as (1,4) (2,5) (3,6) (14,17) ... (22,23), as in the reference.
UNION = _joint_set("union", _UNION_NAMES)
COCO = _joint_set("coco", _COCO_NAMES,
                  np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07,
                            .87, .87, .89, .89]) / 10.0)
MPII = _joint_set("mpii", _MPII_NAMES)
AIC = _joint_set("aic", _AIC_NAMES,
                 2.0 * np.array([0.01388152, 0.01515228, 0.01057665, 0.01417709, 0.01497891,
                                 0.01402144, 0.03909642, 0.03686941, 0.01981803, 0.03843971,
                                 0.03412318, 0.02415081, 0.01291456, 0.01236173]))

JOINT_SETS: Dict[str, JointSet] = {"union": UNION, "coco": COCO, "mpii": MPII, "aic": AIC,
                                   "ai_challenger": AIC}

# COCO skeleton (native indices, 0-based) used for drawing predictions.
COCO_SKELETON = ((15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6),
                 (5, 7), (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5),
                 (4, 6))


def union_slots(native: JointSet) -> np.ndarray:
    """Union slot of each native joint, shape [J_native] (the reference's 'su' list)."""
    return np.array([UNION.index(n) for n in native.names], dtype=np.int64)


def labeled_union_ids(native: JointSet) -> np.ndarray:
    """Sorted union slots that ``native`` annotates (weight mask of an unlabeled partner)."""
    return np.sort(union_slots(native))


def slots_in(target: JointSet, native: JointSet) -> np.ndarray:
    """Index into ``target`` of each native joint, shape [J_native]; -1 where ``target`` lacks it."""
    return np.array([target.names.index(n) if n in target.names else -1 for n in native.names],
                    dtype=np.int64)


def map_joints(joints: np.ndarray, vis: np.ndarray, native: JointSet, target: JointSet
               ) -> Tuple[np.ndarray, np.ndarray]:
    """Rewrite native joints [..., J_native, 2] and vis [..., J_native] into ``target`` order.

    Joints ``target`` has but ``native`` lacks are zero with visibility 0 (so their weight is 0).
    """
    if native is target:
        return joints.astype(np.float32), vis.astype(np.float32)
    idx = slots_in(target, native)
    keep = idx >= 0
    out_j = np.zeros(joints.shape[:-2] + (target.num_joints, joints.shape[-1]), np.float32)
    out_v = np.zeros(vis.shape[:-1] + (target.num_joints,), np.float32)
    out_j[..., idx[keep], :] = joints[..., keep, :]
    out_v[..., idx[keep]] = vis[..., keep]
    return out_j, out_v


def model_joint_set(num_joints: int, native: JointSet) -> JointSet:
    """The joint space the network predicts in: the union (24) or the dataset's native order.

    Raises ValueError for any other MODEL.NUM_JOINTS.
    """
    if num_joints == UNION.num_joints:
        return UNION
    if num_joints == native.num_joints:
        return native
    raise ValueError(
        f"MODEL.NUM_JOINTS={num_joints} does not match a joint space for dataset '{native.name}': "
        f"use {UNION.num_joints} (the union space of the reference configs) or "
        f"{native.num_joints} (native {native.name} order)."
    )


def to_native(preds: np.ndarray, model_set: JointSet, native: JointSet) -> np.ndarray:
    """Reorder predictions [N, J_model, C] into native order [N, J_native, C] for evaluation."""
    if model_set is native:
        return preds
    idx = slots_in(model_set, native)
    if (idx < 0).any():
        missing = [native.names[i] for i in np.flatnonzero(idx < 0)]
        raise ValueError(f"joint space '{model_set.name}' lacks {missing} of '{native.name}'")
    return preds[:, idx]
