"""Joint sets and the mappings between them: native orders of COCO-17, MPII-16, AIC-14 and the
24-joint union, read from their description files (``semipose/data/metas/*.yaml``, see
:mod:`semipose.data.meta`).

Every dataset lists its native joints by name; the union slot ``k`` of a dataset is the native
joint with the same name (or absent). All mappings are derived here from the names, so no other
module hard-codes 24, 17, 16 or 14. Which joint space a model predicts in is DATASET.JOINT_SPACE
('' = the union for MODEL.NUM_JOINTS 24, else the dataset's own joints).
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import numpy as np

from semipose.data.meta import JointSet, dataset_meta
from semipose.errors import ConfigError

UNION = dataset_meta("union")
COCO = dataset_meta("coco")
MPII = dataset_meta("mpii")
AIC = dataset_meta("aic")

# The built-in joint sets by name (dataset_meta also takes registered names and YAML paths).
JOINT_SETS: Dict[str, JointSet] = {"union": UNION, "coco": COCO, "mpii": MPII, "aic": AIC,
                                   "ai_challenger": AIC}

# COCO skeleton (native indices, 0-based), as in the COCO annotation files.
COCO_SKELETON = COCO.skeleton


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


def model_joint_set(num_joints: int, native: JointSet, joint_space: str = "") -> JointSet:
    """The joint space the network predicts in (MODEL.NUM_JOINTS channels).

    ``joint_space`` (DATASET.JOINT_SPACE) names it: a joint-set name or a description file; it
    must have ``num_joints`` joints and every joint of ``native``. '' keeps the rule of the
    reference configs: the dataset's own joints when ``num_joints`` is their count, else the union
    for 24. Raises ValueError otherwise.
    """
    if joint_space:
        space = dataset_meta(joint_space, "DATASET.JOINT_SPACE")
        if space.num_joints != num_joints:
            raise ConfigError(f"DATASET.JOINT_SPACE {joint_space!r} has {space.num_joints} "
                              f"joints but MODEL.NUM_JOINTS is {num_joints}: set MODEL.NUM_JOINTS "
                              f"{space.num_joints}")
        missing = [n for n in native.names if n not in space.names]
        if missing:
            raise ConfigError(f"DATASET.JOINT_SPACE {joint_space!r} lacks the joints {missing} "
                              f"of dataset {native.describe()}: use a joint space that has them "
                              f"(e.g. '{native.name}' or 'union')")
        return native if space == native else space
    # A dataset's own joints first: a 24-joint dataset of one's own is not the union.
    if num_joints == native.num_joints:
        return native
    if num_joints == UNION.num_joints and all(n in UNION.names for n in native.names):
        return UNION
    raise ConfigError(
        f"MODEL.NUM_JOINTS={num_joints} does not match a joint space for dataset '{native.name}': "
        f"use {UNION.num_joints} (the union space of the reference configs) or "
        f"{native.num_joints} (native {native.name} order), or name one with DATASET.JOINT_SPACE."
    )


def cfg_joint_space(cfg: Any) -> str:
    """DATASET.JOINT_SPACE of a config ('' where the config predates the key)."""
    return str(getattr(cfg.DATASET, "JOINT_SPACE", ""))


def joint_space_problem(joint_space: str, num_joints: int) -> Optional[str]:
    """What is wrong with DATASET.JOINT_SPACE for MODEL.NUM_JOINTS (None if nothing): for the
    config checks, before any dataset is read."""
    if not joint_space:
        return None
    try:
        space = dataset_meta(joint_space, "DATASET.JOINT_SPACE")
    except (OSError, ValueError, KeyError) as err:
        return str(err)
    if space.num_joints != int(num_joints):
        return (f"DATASET.JOINT_SPACE {joint_space!r} has {space.num_joints} joints but "
                f"MODEL.NUM_JOINTS is {num_joints}: set MODEL.NUM_JOINTS {space.num_joints}")
    return None


def joint_space_without_dataset(cfg: Any) -> Optional[JointSet]:
    """The model space a config names when no dataset is at hand: DATASET.JOINT_SPACE, else the
    built-in joint set with MODEL.NUM_JOINTS joints (the union for 24); None if there is none."""
    space = cfg_joint_space(cfg)
    if space:
        return dataset_meta(space, "DATASET.JOINT_SPACE")
    return next((s for s in JOINT_SETS.values() if s.num_joints == int(cfg.MODEL.NUM_JOINTS)),
                None)


def model_space_of_cfg(cfg: Any) -> Tuple[JointSet, JointSet]:
    """(native, model space) of a config's DATASET.TEST_DATASET: what inference and export
    predict in and report in, without reading the dataset."""
    native = dataset_meta(cfg.DATASET.TEST_DATASET, "DATASET.TEST_DATASET")
    return native, model_joint_set(int(cfg.MODEL.NUM_JOINTS), native, cfg_joint_space(cfg))


def to_native(preds: np.ndarray, model_set: JointSet, native: JointSet) -> np.ndarray:
    """Reorder predictions [N, J_model, C] into native order [N, J_native, C] for evaluation."""
    if model_set is native:
        return preds
    idx = slots_in(model_set, native)
    if (idx < 0).any():
        missing = [native.names[i] for i in np.flatnonzero(idx < 0)]
        raise ValueError(f"joint space '{model_set.name}' lacks {missing} of '{native.name}'")
    return preds[:, idx]
