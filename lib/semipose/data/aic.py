"""AI Challenger person records.

Annotation file: ``<root>/ai_challenger/<image_set>/keypoint_<image_set>_annotation.json``, a list of
``{image_id, keypoint_annotations {humanK: 42 numbers = 14 x (x, y, v)}, human_annotations
{humanK: [x1, y1, x2, y2]}}`` with v = 1 visible, 2 occluded, 3 unlabeled.
One record per human key, in file order; each record also carries its human key, so that the AIC
evaluation (which reads the annotation file itself) can pair predictions with the GT.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Sequence

import numpy as np
from yacs.config import CfgNode

from semipose.data.keypoints import AIC, JointSet, cfg_joint_space, map_joints, model_joint_set
from semipose.errors import DataError, MissingFileError
from semipose.transforms.affine import box_to_center_scale
from semipose.utils.io import read_json

UNLABELED = 3  # AIC visibility code of a joint without annotation


def aic_annotation_path(root: str, image_set: str) -> str:
    """``<root>/ai_challenger/<image_set>/keypoint_<image_set>_annotation.json``."""
    return os.path.join(root, "ai_challenger", image_set, f"keypoint_{image_set}_annotation.json")


def aic_gt_npy_path(root: str, image_set: str) -> str:
    """Optional PCKh ground truth ``<root>/ai_challenger/<set>/gt_<set>.npy`` (reference name)."""
    return os.path.join(root, "ai_challenger", image_set, f"gt_{image_set}.npy")


def aic_image_path(root: str, image_set: str, image_id: str, data_format: str = "jpg") -> str:
    """``<root>/ai_challenger/<image_set>/images/<id>.jpg`` or the ``images.zip@/images`` member."""
    if data_format == "zip":
        return os.path.join(root, "ai_challenger", image_set, "images.zip@") + f"/images/{image_id}.jpg"
    return os.path.join(root, "ai_challenger", image_set, "images", f"{image_id}.jpg")


def read_aic_annotations(path: str) -> List[Dict[str, Any]]:
    """Raw json entries (one per image) of an AIC annotation file."""
    if not os.path.isfile(path):
        raise MissingFileError(
            f"AI Challenger annotation file not found: {path}. Put the AI Challenger keypoint "
            f"release under <DATASET.ROOT>/ai_challenger/<set>/ (keypoint_<set>_annotation.json and "
            f"images/) or fix DATASET.ROOT / DATASET.TRAIN_SET / DATASET.TEST_SET."
        )
    entries = read_json(path, "AI Challenger annotation file")
    if not isinstance(entries, list):
        raise DataError(f"{path}: expected a json list of images, got {type(entries).__name__}")
    return entries


def aic_humans(entries: Sequence[Dict[str, Any]], path: str = "<annotation>"):
    """Flatten image entries into per-human arrays, in file order.

    Returns:
        (image_ids list[str], human keys list[str], keypoints f64[P, 14, 3] (x, y, v),
        boxes f64[P, 4] as [x1, y1, x2, y2]).
    """
    image_ids, humans, kpts, boxes = [], [], [], []
    for e in entries:
        boxes_of = e.get("human_annotations", {})
        for key, values in e["keypoint_annotations"].items():
            if key not in boxes_of:
                raise DataError(f"{path}: image {e['image_id']} has keypoints for '{key}' "
                                f"but no human_annotations box")
            image_ids.append(str(e["image_id"]))
            humans.append(key)
            kpts.append(values)
            boxes.append(boxes_of[key])
    p = len(humans)
    try:
        kpts_arr = np.array(kpts, np.float64).reshape(p, AIC.num_joints, 3)
    except ValueError as err:
        raise DataError(f"{path}: every human needs {AIC.num_joints * 3} keypoint numbers ({err})")
    boxes_arr = np.array(boxes, np.float64).reshape(p, 4)
    return image_ids, humans, kpts_arr, boxes_arr


def load_aic_records(root: str, image_set: str, num_joints: int, image_size: Sequence[int],
                     data_format: str = "jpg", joint_space: str = "") -> List[Dict[str, Any]]:
    """Person records (contract format) for an AI Challenger split.

    Args:
        root: dataset root (DATASET.ROOT) holding ``ai_challenger/<image_set>/``.
        image_set: 'train', 'validation', ...
        num_joints: MODEL.NUM_JOINTS; 24 maps into the union space, 14 keeps native AIC order.
        image_size: network input (w, h); its aspect ratio shapes the box -> center/scale.
        data_format: 'zip' reads images from ``images.zip``; anything else from the folder.
        joint_space: DATASET.JOINT_SPACE ('' = chosen by ``num_joints``).

    Returns:
        list of dicts: image, image_id (str), center f32[2], scale f32[2] (x1.25 padded),
        joints f32[J, 2], joints_vis f32[J] (v < 3), score 1.0, raw_box f32[4] (x, y, w, h),
        plus human (the str key of the person in the json, e.g. 'human1').
    """
    model_set = model_joint_set(num_joints, AIC, joint_space)
    path = aic_annotation_path(root, image_set)
    image_ids, humans, kpts, boxes = aic_humans(read_aic_annotations(path), path)
    joints, vis = map_joints(kpts[..., :2], (kpts[..., 2] < UNLABELED).astype(np.float64),
                             AIC, model_set)
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    aspect = float(image_size[0]) / float(image_size[1])
    centers, scales = box_to_center_scale(xywh.reshape(-1, 4), aspect)

    records = []
    for k, (image_id, human) in enumerate(zip(image_ids, humans)):
        records.append({
            "image": aic_image_path(root, image_set, image_id, data_format),
            "image_id": image_id,
            "center": centers[k],
            "scale": scales[k],
            "joints": joints[k],
            "joints_vis": vis[k],
            "score": 1.0,
            "raw_box": xywh[k].astype(np.float32),
            "human": human,
        })
    return records


class AicDataset:
    """AI Challenger records plus what training and evaluation read (not a torch Dataset).

    Attributes: ``records``, ``image_set``, ``annotation_file`` (AP ground truth), ``gt_npy_file``
    (optional PCKh GT; may not exist), ``joint_set`` (model space), ``native_joint_set`` (AIC),
    ``flip_pairs`` (model space).
    """

    def __init__(self, root: str, image_set: str, num_joints: int, image_size: Sequence[int],
                 data_format: str = "jpg", joint_space: str = "") -> None:
        self.root = root
        self.image_set = image_set
        self.native_joint_set: JointSet = AIC
        self.joint_set: JointSet = model_joint_set(num_joints, AIC, joint_space)
        self.flip_pairs: Sequence = self.joint_set.flip_pairs
        self.annotation_file = aic_annotation_path(root, image_set)
        self.gt_npy_file = aic_gt_npy_path(root, image_set)
        self.records = load_aic_records(root, image_set, num_joints, image_size, data_format,
                                        joint_space)

    def __len__(self) -> int:
        return len(self.records)

    @classmethod
    def from_cfg(cls, cfg: CfgNode, image_set: str, is_train: bool = True) -> "AicDataset":
        """Build from DATASET.ROOT, MODEL.NUM_JOINTS, DATASET.JOINT_SPACE, MODEL.IMAGE_SIZE and
        DATASET.DATA_FORMAT; ``is_train`` is accepted for symmetry (the records do not depend on
        it)."""
        return cls(cfg.DATASET.ROOT, image_set, int(cfg.MODEL.NUM_JOINTS), cfg.MODEL.IMAGE_SIZE,
                   cfg.DATASET.DATA_FORMAT, cfg_joint_space(cfg))
