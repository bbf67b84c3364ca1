"""Custom keypoint datasets: any skeleton in the COCO keypoint format, described by a dataset
description file (:mod:`semipose.data.meta`).

Folder layout under ``root`` (what ``python -m semipose.data.convert dlc`` writes)::

    dataset.yaml                 the description (joints, flip pairs, body halves, skeleton,
                                 optional sigmas): DATASET.DESCRIPTION, '' = this file
    annotations/<set>.json       COCO keypoints: images [{id, file_name, width, height}],
                                 annotations [{id, image_id, bbox [x, y, w, h], keypoints
                                 [x1, y1, v1, ...] (v 2 labeled, 0 not), iscrowd, area}]
    images/<file_name>           ``file_name`` is relative to images/; nested folders allowed

One annotation is one animal / person / object: a record with its joints in the model space, which
for a custom run is the description itself (DATASET.JOINT_SPACE '' -> the description file, see
``keypoints.cfg_joint_space``). Image sizes come from the json. Boxes become center/scale exactly as
data/coco.py makes them (the COCO box cleaning, then the 1.25 padding to the crop aspect ratio).

The unlabeled side of ``mix_custom`` is either DATASET.UNLABELED (frames of videos or images,
``data/video.py``) or, when that is '', every labeled train person with its labels hidden.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from yacs.config import CfgNode

from semipose.data.coco import _valid_box, select_data
from semipose.data.keypoints import (JointSet, cfg_joint_space, description_of_cfg, map_joints,
                                     model_joint_set)
from semipose.errors import ConfigError, DataError, MissingFileError
from semipose.transforms.affine import box_to_center_scale, sanitize_box
from semipose.types import Record
from semipose.utils.io import read_json

logger = logging.getLogger(__name__)


def custom_annotation_path(root: str, image_set: str) -> str:
    """<root>/annotations/<image_set>.json (DATASET.TRAIN_SET 'train', TEST_SET 'val')."""
    return os.path.join(root, "annotations", f"{image_set}.json")


def custom_image_folder(root: str) -> str:
    """The folder that every ``file_name`` is relative to."""
    return os.path.join(root, "images")


class CustomDataset:
    """The labeled persons of one annotation file of a custom folder, as records (wrap
    ``records`` in a PoseDataset; not a torch Dataset itself).

    Args:
        root: the converted folder (DATASET.ROOT).
        image_set: the annotation file's name without .json (DATASET.TRAIN_SET / TEST_SET).
        meta: the dataset description (its joints are the json's keypoint order).
        image_size: crop (width, height): the aspect ratio of center/scale.
        is_train: training set (TRAIN_LEN and SELECT_DATA apply).
        num_joints: MODEL.NUM_JOINTS (None = the description's count).
        train_len: >0 keeps the first N persons in json image order (training only).
        select: drop persons whose labeled joints stray from the box centre (SELECT_DATA).
        joint_space: DATASET.JOINT_SPACE as ``cfg_joint_space`` gives it ('' or the description
            file: the description itself; else a larger joint set holding its joints).
        skip_missing_images: drop persons whose image file is missing, with a warning
            (DATASET.SKIP_BAD_IMAGES), instead of failing.

    Attributes: ``records``, ``image_set``, ``annotation_file`` (the ground truth),
    ``image_ids`` (json order), ``image_folder``, ``joint_set`` (model space),
    ``native_joint_set`` (the description), ``flip_pairs`` (model space), ``use_gt_boxes``.
    """

    def __init__(self, root: str, image_set: str, meta: JointSet, image_size: Sequence[int],
                 is_train: bool, num_joints: Optional[int] = None, train_len: int = -1,
                 select: bool = False, joint_space: str = "",
                 skip_missing_images: bool = False) -> None:
        self.root = root
        self.image_set = image_set
        self.native_joint_set: JointSet = meta
        count = meta.num_joints if num_joints is None else int(num_joints)
        self.joint_set: JointSet = model_joint_set(count, meta, joint_space)
        self.flip_pairs = self.joint_set.flip_pairs
        self.aspect_ratio = float(image_size[0]) / float(image_size[1])
        self.annotation_file = custom_annotation_path(root, image_set)
        self.image_folder = custom_image_folder(root)
        self.use_gt_boxes = True  # a custom set is scored on its annotated boxes
        self.skip_missing_images = skip_missing_images
        self.image_ids: List[int] = []

        persons = self._read()
        if select and persons:
            arrays = _arrays(persons, self.aspect_ratio)
            keep = select_data(arrays["center"], arrays["scale"], arrays["joints"], arrays["vis"])
            persons = [p for p, k in zip(persons, keep) if k]
        if is_train and train_len > 0:
            # The first N persons in json image order are the labeled subset of a run.
            persons = persons[:train_len]
        if not persons:
            raise DataError(
                f"{self.annotation_file}: no labeled instances in set '{image_set}' (an annotation "
                f"needs a valid 'bbox' and at least one keypoint with v > 0 in 'keypoints')"
                + ("; DATASET.SELECT_DATA dropped some" if select else "")
                + ("; check DATASET.TRAIN_LEN" if is_train and train_len > 0 else ""))
        self.records = self._to_records(persons)

    # ----------------------------------------------------------------------------- reading
    def _read(self) -> List[Dict[str, Any]]:
        """Kept persons in json image order: {image_id, image, box (clean), raw_box, kps [J, 3]}."""
        path = self.annotation_file
        if not os.path.isfile(path):
            raise MissingFileError(
                f"custom annotation file '{path}' not found: DATASET.ROOT must be a converted "
                f"folder with annotations/<set>.json ('python -m semipose.data.convert dlc' "
                f"writes one), and DATASET.TRAIN_SET / TEST_SET name the file ('{self.image_set}')")
        ann = read_json(path, "custom annotation file")
        if not isinstance(ann, dict):
            raise DataError(f"{path}: holds a {type(ann).__name__} at top level; expected an "
                            f"object with 'images' and 'annotations' lists (COCO keypoints format)")
        for key in ("images", "annotations"):
            if not isinstance(ann.get(key), list):
                raise DataError(f"{path}: key '{key}' is missing or not a list (COCO keypoints "
                                f"format: 'images', 'annotations', 'categories')")
        self._check_categories(ann.get("categories") or [])
        images = self._images(ann["images"])
        self.image_ids = list(images)
        meta = self.native_joint_set
        want = 3 * meta.num_joints
        by_image: Dict[int, List[Dict[str, Any]]] = {i: [] for i in images}
        for k, a in enumerate(ann["annotations"]):
            if not isinstance(a, dict):
                raise DataError(f"{path}: 'annotations' entry {k} is not an object")
            iid = a.get("image_id")
            if iid not in by_image:
                raise DataError(f"{path}: annotation {a.get('id', k)} has image_id {iid!r}, which "
                                f"is not in 'images'")
            by_image[iid].append(a)
        persons, bad_boxes, missing = [], [], []
        for iid, img in images.items():
            for a in by_image[iid]:
                if a.get("iscrowd", 0):
                    continue
                kps = a.get("keypoints") or []
                where = f"annotation {a.get('id')} (image {iid}, '{img['file_name']}')"
                if not isinstance(kps, list) or len(kps) != want:
                    size = len(kps) if isinstance(kps, list) else repr(kps)
                    raise DataError(
                        f"{path}: {where} key 'keypoints' has {size} values; the description "
                        f"{meta.describe()} has {meta.num_joints} joints, so {want} are expected "
                        f"(x, y, v per joint in the order of its 'joints')")
                try:
                    arr = np.asarray(kps, np.float64).reshape(-1, 3)
                except (TypeError, ValueError):
                    raise DataError(f"{path}: {where} key 'keypoints' holds a value that is not "
                                    f"a number") from None
                labeled = arr[:, 2] > 0
                if not labeled.any():  # nothing to supervise or score
                    continue
                if not np.isfinite(arr[labeled, :2]).all():
                    raise DataError(f"{path}: {where} key 'keypoints' has a non-finite x or y for "
                                    f"a labeled joint (v > 0); write v 0 for unlabeled joints")
                arr[~labeled] = 0.0
                box = a.get("bbox")
                clean = (sanitize_box(box, img["width"], img["height"], area=a.get("area", 1.0))
                         if _valid_box(box) else None)
                if clean is None:
                    bad_boxes.append(a.get("id"))
                    continue
                if not self._image_exists(img):
                    missing.append(img["path"])
                    continue
                persons.append({"image_id": iid, "image": img["path"], "box": clean,
                                "raw_box": box, "kps": arr})
        if bad_boxes:
            logger.warning("%s: dropped %d annotation(s) with a missing, non-finite or empty "
                           "'bbox' (ids %s%s)", path, len(bad_boxes), bad_boxes[:5],
                           ", ..." if len(bad_boxes) > 5 else "")
        if missing:
            logger.warning("%s: skipped %d person(s) whose image is missing (DATASET."
                           "SKIP_BAD_IMAGES), e.g. %s", path, len(missing), missing[0])
        return persons

    def _images(self, entries: List[Any]) -> Dict[int, Dict[str, Any]]:
        """image id -> {file_name, width, height, path, exists}, checked, in json order."""
        path = self.annotation_file
        out: Dict[int, Dict[str, Any]] = {}
        for k, img in enumerate(entries):
            if not isinstance(img, dict):
                raise DataError(f"{path}: 'images' entry {k} is not an object")
            for key in ("id", "file_name", "width", "height"):
                if key not in img:
                    raise DataError(f"{path}: 'images' entry {k} (id {img.get('id')!r}) has no "
                                    f"'{key}'; each image needs id, file_name, width and height")
            iid, name = img["id"], img["file_name"]
            if not isinstance(iid, int) or isinstance(iid, bool):
                raise DataError(f"{path}: 'images' entry {k} has id {iid!r}; image ids are "
                                f"integers")
            if not isinstance(name, str) or not name:
                raise DataError(f"{path}: image {iid} key 'file_name' is {name!r}; give the path "
                                f"relative to {self.image_folder}")
            try:
                width, height = float(img["width"]), float(img["height"])
            except (TypeError, ValueError):
                width = height = float("nan")
            if not (width > 0 and height > 0):
                raise DataError(f"{path}: image {iid} ('{name}') has width {img['width']!r}, "
                                f"height {img['height']!r}; both must be numbers > 0 (pixels)")
            if iid in out:
                raise DataError(f"{path}: image id {iid} appears twice in 'images'")
            full = os.path.join(self.image_folder, *name.split("/"))
            out[iid] = {"file_name": name, "width": width, "height": height, "path": full}
        return out

    def _image_exists(self, img: Dict[str, Any]) -> bool:
        """Whether an image file with persons exists (checked once per image); a missing one is
        a MissingFileError naming the annotation file, file_name and the path looked for, or
        False under DATASET.SKIP_BAD_IMAGES."""
        if "exists" not in img:
            img["exists"] = os.path.isfile(img["path"])
            if not img["exists"] and not self.skip_missing_images:
                raise MissingFileError(
                    f"{self.annotation_file}: image file_name '{img['file_name']}' not found "
                    f"(looked for '{img['path']}'; file_name is relative to {self.image_folder}, "
                    f"nested folders allowed): put the image there, fix DATASET.ROOT, or set "
                    f"DATASET.SKIP_BAD_IMAGES True to skip it")
        return img["exists"]

    def _check_categories(self, categories: List[Any]) -> None:
        """The json's keypoint names must have the description's length; a different name (same
        count) is only a warning: the description is the truth for names and order."""
        meta, path = self.native_joint_set, self.annotation_file
        for k, cat in enumerate(categories):
            names = cat.get("keypoints") if isinstance(cat, dict) else None
            if not isinstance(names, list):
                continue
            if len(names) != meta.num_joints:
                raise DataError(f"{path}: 'categories' entry {k} ({cat.get('name')!r}) key "
                                f"'keypoints' lists {len(names)} joints; the description "
                                f"{meta.describe()} has {meta.num_joints}: use the description "
                                f"written with this annotation file (DATASET.DESCRIPTION)")
            differ = [(a, b) for a, b in zip(names, meta.names) if a != b]
            if differ:
                logger.warning("%s: category %r names joint %r where the description %s has %r; "
                               "the description's names and order are used", path,
                               cat.get("name"), differ[0][0], meta.describe(), differ[0][1])

    def _to_records(self, persons: List[Dict[str, Any]]) -> List[Record]:
        arrays = _arrays(persons, self.aspect_ratio)
        joints, vis = map_joints(arrays["joints"].astype(np.float32),
                                 arrays["vis"].astype(np.float32), self.native_joint_set,
                                 self.joint_set)
        return [{
            "image": p["image"],
            "image_id": int(p["image_id"]),
            "center": arrays["center"][i].copy(),
            "scale": arrays["scale"][i].copy(),
            "joints": joints[i],
            "joints_vis": vis[i],
            "score": 1.0,
            "raw_box": np.asarray(p["raw_box"][:4], np.float32),
        } for i, p in enumerate(persons)]

    def __len__(self) -> int:
        return len(self.records)

    @classmethod
    def from_cfg(cls, cfg: CfgNode, image_set: str, is_train: bool,
                 train_len: Optional[int] = None) -> "CustomDataset":
        """Build from a config; ``train_len`` overrides DATASET.TRAIN_LEN (0/-1 = all)."""
        if cfg.DATASET.DATA_FORMAT != "jpg":
            raise ConfigError(f"DATASET.DATA_FORMAT {cfg.DATASET.DATA_FORMAT!r}: a custom dataset "
                              f"reads image files under <DATASET.ROOT>/images (any format "
                              f"OpenCV reads); set DATASET.DATA_FORMAT jpg")
        return cls(root=cfg.DATASET.ROOT, image_set=image_set, meta=description_of_cfg(cfg),
                   image_size=cfg.MODEL.IMAGE_SIZE, is_train=is_train,
                   num_joints=int(cfg.MODEL.NUM_JOINTS),
                   train_len=int(cfg.DATASET.TRAIN_LEN if train_len is None else train_len),
                   select=bool(cfg.DATASET.SELECT_DATA) and is_train,
                   joint_space=cfg_joint_space(cfg),
                   skip_missing_images=bool(cfg.DATASET.SKIP_BAD_IMAGES))


def _arrays(persons: List[Dict[str, Any]], aspect_ratio: float) -> Dict[str, np.ndarray]:
    """joints [N, J, 2], vis [N, J], center / scale [N, 2] of kept persons (as data/coco.py)."""
    kps = np.stack([p["kps"] for p in persons])
    boxes = np.asarray([p["box"] for p in persons], np.float64).reshape(-1, 4)
    center, scale = box_to_center_scale(boxes, aspect_ratio)
    return {"joints": kps[..., :2], "vis": np.minimum(kps[..., 2], 1.0),
            "center": center.reshape(-1, 2), "scale": scale.reshape(-1, 2)}


# ---------------------------------------------------------------------------------- unlabeled
@dataclass
class UnlabeledSet:
    """Records without labels (joints and visibility zero) for the unlabeled side of a pair, with
    the model space they share with the labeled side (a RecordSource for ``wrap_records``)."""

    records: List[Record]
    joint_set: JointSet
    native_joint_set: JointSet
    flip_pairs: Tuple[Tuple[int, int], ...]
    image_set: str
    annotation_file: str = ""


def hidden_labels(records: Sequence[Record]) -> List[Record]:
    """Copies of labeled records with their joints and visibility set to zero: the labeled
    images serve as unlabeled ones, and nothing of their labels reaches the unlabeled crops
    (no half-body crop from them either)."""
    return [dict(r, joints=np.zeros_like(r["joints"]), joints_vis=np.zeros_like(r["joints_vis"]))
            for r in records]


def resolve_under_root(root: str, path: str) -> str:
    """A path given relative to DATASET.ROOT (absolute paths stay)."""
    return path if not path or os.path.isabs(path) else os.path.join(root, path)


def unlabeled_set(cfg: CfgNode, labeled: CustomDataset) -> UnlabeledSet:
    """The unlabeled side of ``mix_custom``.

    DATASET.UNLABELED set (relative to DATASET.ROOT or absolute): frames of its videos or its
    images (``data.video.unlabeled_records``, every DATASET.UNLABELED_EVERY-th frame or
    UNLABELED_PER_VIDEO per video, boxes from DATASET.UNLABELED_BOXES (relative to DATASET.ROOT
    or absolute) or the whole frame, grown to the crop aspect ratio as the labeled boxes).
    '' : every labeled train person (DATASET.TRAIN_LEN not applied, as mix_coco_coco's
    unlabeled side) with its labels hidden.
    """
    root, space = cfg.DATASET.ROOT, labeled.joint_set
    folder = resolve_under_root(root, cfg.DATASET.UNLABELED)
    if not folder:
        every_person = CustomDataset.from_cfg(cfg, cfg.DATASET.TRAIN_SET,
                                              is_train=not cfg.RAW_INPUT, train_len=0)
        return UnlabeledSet(hidden_labels(every_person.records), space, labeled.native_joint_set,
                            space.flip_pairs, every_person.image_set,
                            every_person.annotation_file)
    # Imported here: a run without an unlabeled folder never needs the video reader.
    from semipose.data.video import unlabeled_records
    records = unlabeled_records(folder, space.num_joints, every=int(cfg.DATASET.UNLABELED_EVERY),
                                per_video=int(cfg.DATASET.UNLABELED_PER_VIDEO),
                                boxes=resolve_under_root(root, cfg.DATASET.UNLABELED_BOXES),
                                cache_dir=resolve_under_root(root, cfg.DATASET.UNLABELED_CACHE)
                                or None,
                                aspect_ratio=labeled.aspect_ratio)
    if not records:
        raise DataError(f"DATASET.UNLABELED {folder}: no video frames or images found; give a "
                        f"folder of videos (mp4/avi/mov) or images, or '' to use the labeled "
                        f"train images")
    return UnlabeledSet(hidden_labels(records), space, labeled.native_joint_set,
                        space.flip_pairs, "unlabeled:" + os.path.normpath(folder))


__all__ = ["CustomDataset", "UnlabeledSet", "custom_annotation_path", "custom_image_folder",
           "hidden_labels", "unlabeled_set"]
