"""MPII person records from the Simple-Baseline MPII json format.

Annotation file: ``<root>/mpii/annot/<image_set>.json``, a list of
``{image, center [2], scale, joints [16, 2] (1-based, MATLAB convention), joints_vis [16]}``.
Each entry is one person; the records follow the file order, which is also the order of the
persons in the PCKh ground truth ``gt_<image_set>.mat`` (see ``semipose.evaluation.mpii_eval``).
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from yacs.config import CfgNode

from semipose.data.keypoints import MPII, JointSet, cfg_joint_space, map_joints, model_joint_set
from semipose.errors import DataError, MissingFileError
from semipose.utils.io import atomic_write_mat, read_json

# The reference moves the MPII person centre down by 15 * scale pixels (the json centre sits
# high, around the chest) before padding the scale like the other datasets.
CENTER_SHIFT = 15.0
SCALE_PADDING = 1.25
# Placeholder box: MPII has no person boxes (the contract's "[1,1,2,2]-style" placeholder).
PLACEHOLDER_BOX = np.array([1.0, 1.0, 2.0, 2.0], np.float32)
# Names written to a PCKh ground truth's ``dataset_joints`` (the MPII toolkit's spelling, native
# order).
MPII_MAT_NAMES = ("rank", "rkne", "rhip", "lhip", "lkne", "lank", "pelv", "thor", "neck", "head",
                  "rwri", "relb", "rsho", "lsho", "lelb", "lwri")


def mpii_annotation_path(root: str, image_set: str) -> str:
    """``<root>/mpii/annot/<image_set>.json`` (e.g. 'train', 'valid', 'validation', 'test')."""
    return os.path.join(root, "mpii", "annot", f"{image_set}.json")


def mpii_gt_path(root: str, test_set: str) -> str:
    """PCKh ground truth ``<root>/mpii/annot/gt_<test_set>.mat`` (gt_validation.mat, gt_valid.mat)."""
    return os.path.join(root, "mpii", "annot", f"gt_{test_set}.mat")


def write_gt_mat(path: str, joints: np.ndarray, joints_vis: np.ndarray, headboxes: np.ndarray,
                 header: Optional[str] = None, durable: bool = True) -> None:
    """Write a PCKh ground truth .mat in the layout of MPII's gt_valid.mat.

    Args:
        joints: [N, 16, 2] 1-based pixels, native MPII order; joints_vis: [N, 16] (1 labeled);
        headboxes: [N, 2, 2] (corner, xy) 1-based pixels.
        header, durable: see ``semipose.utils.io.atomic_write_mat``.
    """
    atomic_write_mat(path, {
        "dataset_joints": np.array(MPII_MAT_NAMES, dtype=object).reshape(1, -1),
        "jnt_missing": (1.0 - joints_vis).T,                # [16, N]
        "pos_gt_src": joints.transpose(1, 2, 0),            # [16, 2, N]
        "headboxes_src": headboxes.transpose(1, 2, 0),      # [2, 2, N]
    }, header=header, durable=durable)


def mpii_image_path(root: str, image: str, data_format: str = "jpg") -> str:
    """Image path; with ``data_format='zip'`` a zip member ``<root>/mpii/images.zip@/images/<image>``."""
    if data_format == "zip":
        return os.path.join(root, "mpii", "images.zip@") + f"/images/{image}"
    return os.path.join(root, "mpii", "images", image)


def mpii_center_scale(center: Any, scale: float) -> tuple:
    """MPII json centre/scale -> (center f32[2], scale f32[2]) in 0-based pixels.

    If ``center[0] != -1``: ``c_y += 15 * s`` and ``s *= 1.25``; then ``c -= 1`` for both coordinates
    (unconditionally, as the reference does). The arithmetic is done in float64, stored as float32.
    """
    c = np.array(center, dtype=np.float64).reshape(2)
    s = np.array([scale, scale], dtype=np.float64)
    if c[0] != -1:
        c[1] = c[1] + CENTER_SHIFT * s[1]
        s = s * SCALE_PADDING
    c = c - 1
    return c.astype(np.float32), s.astype(np.float32)


def read_mpii_annotations(path: str) -> List[Dict[str, Any]]:
    """Raw json entries of an MPII annotation file; a missing file is a FileNotFoundError."""
    if not os.path.isfile(path):
        raise MissingFileError(
            f"MPII annotation file not found: {path}. Put the Simple-Baseline MPII json files "
            f"(train.json, valid.json / validation.json, test.json) under <DATASET.ROOT>/mpii/annot/ "
            f"or fix DATASET.ROOT / DATASET.TRAIN_SET / DATASET.TEST_SET."
        )
    entries = read_json(path, "MPII annotation file")
    if not isinstance(entries, list):
        raise DataError(f"{path}: expected a json list of person entries, "
                        f"got {type(entries).__name__}")
    return entries


def load_mpii_records(root: str, image_set: str, num_joints: int, data_format: str = "jpg",
                      is_train: bool = True, joint_space: str = "") -> List[Dict[str, Any]]:
    """Person records (contract format) for ``<root>/mpii/annot/<image_set>.json``.

    Args:
        root: dataset root (DATASET.ROOT) holding ``mpii/annot`` and ``mpii/images[.zip]``.
        image_set: json file stem; for 'test' the joints are left at zero (no labels).
        num_joints: MODEL.NUM_JOINTS; 24 maps into the union space, 16 keeps native MPII order.
        data_format: 'zip' reads images from ``images.zip``; anything else from the folder.
        is_train: accepted for a uniform builder signature; MPII records do not depend on it.
        joint_space: DATASET.JOINT_SPACE ('' = chosen by ``num_joints``).

    Returns:
        list of dicts with image, image_id (file name), center f32[2], scale f32[2],
        joints f32[J, 2] (0-based pixels), joints_vis f32[J], score 1.0, raw_box f32[4].
    """
    del is_train  # same records for training and validation (augmentation lives in the transform)
    model_set = model_joint_set(num_joints, MPII, joint_space)
    entries = read_mpii_annotations(mpii_annotation_path(root, image_set))
    n = len(entries)
    native_j = np.zeros((n, MPII.num_joints, 2), np.float64)
    native_v = np.zeros((n, MPII.num_joints), np.float64)
    if image_set != "test":
        try:
            native_j = np.array([e["joints"] for e in entries], np.float64).reshape(n, -1, 2) - 1
            native_v = np.array([e["joints_vis"] for e in entries], np.float64).reshape(n, -1)
        except (KeyError, ValueError) as err:
            raise DataError(f"{mpii_annotation_path(root, image_set)}: every entry needs 'joints' "
                            f"[{MPII.num_joints}, 2] and 'joints_vis' [{MPII.num_joints}] ({err})")
        if native_j.shape[1] != MPII.num_joints or native_v.shape[1] != MPII.num_joints:
            raise DataError(f"{mpii_annotation_path(root, image_set)}: expected "
                            f"{MPII.num_joints} joints per person, got {native_j.shape[1]}")
    joints, vis = map_joints(native_j, native_v, MPII, model_set)

    records = []
    for k, e in enumerate(entries):
        center, scale = mpii_center_scale(e["center"], e["scale"])
        records.append({
            "image": mpii_image_path(root, e["image"], data_format),
            "image_id": e["image"],
            "center": center,
            "scale": scale,
            "joints": joints[k],
            "joints_vis": vis[k],
            "score": 1.0,
            "raw_box": PLACEHOLDER_BOX.copy(),
        })
    return records


class MpiiDataset:
    """MPII records plus what training and evaluation read (not a torch Dataset).

    Attributes: ``records``, ``image_set``, ``annotation_file``, ``gt_file`` (PCKh .mat of this
    set), ``joint_set`` (model space), ``native_joint_set`` (MPII), ``flip_pairs`` (model space).
    """

    def __init__(self, root: str, image_set: str, num_joints: int, data_format: str = "jpg",
                 is_train: bool = True, joint_space: str = "") -> None:
        self.root = root
        self.image_set = image_set
        self.native_joint_set: JointSet = MPII
        self.joint_set: JointSet = model_joint_set(num_joints, MPII, joint_space)
        self.flip_pairs: Sequence = self.joint_set.flip_pairs
        self.annotation_file = mpii_annotation_path(root, image_set)
        self.gt_file = mpii_gt_path(root, image_set)
        self.records = load_mpii_records(root, image_set, num_joints, data_format, is_train,
                                         joint_space)

    def __len__(self) -> int:
        return len(self.records)

    @classmethod
    def from_cfg(cls, cfg: CfgNode, image_set: str, is_train: bool) -> "MpiiDataset":
        """Build from DATASET.ROOT, MODEL.NUM_JOINTS, DATASET.JOINT_SPACE and DATA_FORMAT."""
        return cls(cfg.DATASET.ROOT, image_set, int(cfg.MODEL.NUM_JOINTS),
                   cfg.DATASET.DATA_FORMAT, is_train, cfg_joint_space(cfg))
