"""Joint sets and the mappings between them: native orders of COCO-17, MPII-16, AIC-14 and the
24-joint union, read from their description files (``semipose/data/metas/*.yaml``, see
:mod:`semipose.data.meta`).

Every dataset lists its native joints by name; the union slot ``k`` of a dataset is the native
joint with the same name (or absent). All mappings are derived here from the names, so no other
module hard-codes 24, 17, 16 or 14. Which joint space a model predicts in is DATASET.JOINT_SPACE
('' = the union for MODEL.NUM_JOINTS 24, else the dataset's own joints; for a custom dataset, its
description file).
"""
from __future__ import annotations

import os
from typing import Any, Dict, Optional, Tuple

import numpy as np

from semipose.data.meta import JointSet, dataset_meta, is_meta_path
from semipose.errors import ConfigError, MissingFileError

UNION = dataset_meta("union")
COCO = dataset_meta("coco")
MPII = dataset_meta("mpii")
AIC = dataset_meta("aic")

# The built-in joint sets by name (dataset_meta also takes registered names and YAML paths).
JOINT_SETS: Dict[str, JointSet] = {"union": UNION, "coco": COCO, "mpii": MPII, "aic": AIC,
                                   "ai_challenger": AIC}

# COCO skeleton (native indices, 0-based), as in the COCO annotation files.
COCO_SKELETON = COCO.skeleton

# Dataset names (DATASET.TRAIN_DATASET / TEST_DATASET) whose joints are not built in but come
# from a dataset description file (data/custom.py).
CUSTOM_DATASETS = ("custom", "mix_custom")


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


def is_custom_cfg(cfg: Any) -> bool:
    """Whether a config trains or tests on a custom dataset (joints from a description file)."""
    names = (getattr(cfg.DATASET, "TRAIN_DATASET", ""), getattr(cfg.DATASET, "TEST_DATASET", ""))
    return any(n in CUSTOM_DATASETS for n in names)


def description_path(cfg: Any) -> str:
    """The dataset description file of a custom dataset: DATASET.DESCRIPTION, or
    <DATASET.ROOT>/dataset.yaml when that is ''. Always a path (never read as a joint-set
    name)."""
    path = str(getattr(cfg.DATASET, "DESCRIPTION", "")) or \
        os.path.join(str(cfg.DATASET.ROOT), "dataset.yaml")
    return path if is_meta_path(path) else os.path.join(".", path)


def description_of_cfg(cfg: Any) -> JointSet:
    """The dataset description a custom config names (:func:`description_path`).

    MissingFileError when the file is absent (saying where it was looked for), DataError (from
    the file reader: file, key, entry) when its content is wrong."""
    path = description_path(cfg)
    if not os.path.isfile(path):
        given = "DATASET.DESCRIPTION" if getattr(cfg.DATASET, "DESCRIPTION", "") else \
            f"DATASET.ROOT {str(cfg.DATASET.ROOT)!r} + dataset.yaml"
        raise MissingFileError(
            f"dataset description '{path}' ({given}) not found: set DATASET.ROOT to a converted "
            f"folder (dataset.yaml, annotations/, images/; 'python -m semipose.data.convert dlc' "
            f"writes one) or DATASET.DESCRIPTION to the description .yaml")
    return dataset_meta(path, "DATASET.DESCRIPTION")


def cfg_joint_space(cfg: Any) -> str:
    """DATASET.JOINT_SPACE of a config ('' where the config predates the key); for a custom
    dataset '' means its description file, so a custom skeleton of 24 joints is never taken for
    the union and flip pairs, body halves and drawing come from the description."""
    space = str(getattr(cfg.DATASET, "JOINT_SPACE", ""))
    if not space and is_custom_cfg(cfg):
        return description_path(cfg)
    return space


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


def cfg_joint_space_problem(cfg: Any) -> Optional[str]:
    """:func:`joint_space_problem` of a config; for a custom dataset without DATASET.JOINT_SPACE
    the description file must exist, be valid and have MODEL.NUM_JOINTS joints."""
    space = str(getattr(cfg.DATASET, "JOINT_SPACE", ""))
    if space or not is_custom_cfg(cfg):
        return joint_space_problem(space, cfg.MODEL.NUM_JOINTS)
    try:
        meta = description_of_cfg(cfg)
    except (OSError, ValueError, KeyError) as err:
        return str(err)
    if meta.num_joints != int(cfg.MODEL.NUM_JOINTS):
        return (f"dataset description {meta.source} has {meta.num_joints} joints but "
                f"MODEL.NUM_JOINTS is {cfg.MODEL.NUM_JOINTS}: set MODEL.NUM_JOINTS 0 (the "
                f"description's count) or {meta.num_joints}")
    return None


def joint_space_without_dataset(cfg: Any) -> Optional[JointSet]:
    """The model space a config names when no dataset is at hand: DATASET.JOINT_SPACE, else the
    built-in joint set with MODEL.NUM_JOINTS joints (the union for 24); None if there is none."""
    if is_custom_cfg(cfg) and not getattr(cfg.DATASET, "JOINT_SPACE", ""):
        return description_of_cfg(cfg)
    space = cfg_joint_space(cfg)
    if space:
        return dataset_meta(space, "DATASET.JOINT_SPACE")
    return next((s for s in JOINT_SETS.values() if s.num_joints == int(cfg.MODEL.NUM_JOINTS)),
                None)


def model_space_of_cfg(cfg: Any) -> Tuple[JointSet, JointSet]:
    """(native, model space) of a config's DATASET.TEST_DATASET: what inference and export
    predict in and report in, without reading the dataset (a custom dataset's native joints are
    its description file's)."""
    name = cfg.DATASET.TEST_DATASET
    if name in CUSTOM_DATASETS:
        native = description_of_cfg(cfg)
    else:
        native = dataset_meta(name, "DATASET.TEST_DATASET")
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
