"""COCO person keypoints -> person records (GT boxes or detection boxes).

Folder layout under ``root``::

    coco/annotations/person_keypoints_<set>.json     (image_info_<set>.json for test/unlabeled sets)
    coco/images/<set>/<%012d>.jpg                    (or coco/images/<set>.zip with <set>/<file>)
    <TEST.COCO_BBOX_FILE>                            detection boxes (val with detections, unlabeled2017)

Records follow the project's person-record format; joints are in the model's joint space
(the 24-joint union or native COCO order: DATASET.JOINT_SPACE, or MODEL.NUM_JOINTS).
"""
from __future__ import annotations

import logging
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from yacs.config import CfgNode

from semipose.data.imageio import zip_member_path
from semipose.data.keypoints import COCO, JointSet, cfg_joint_space, map_joints, model_joint_set
from semipose.errors import ConfigError, DataError, MissingFileError
from semipose.transforms.affine import PIXEL_STD, box_to_center_scale, sanitize_box
from semipose.utils.io import read_json

logger = logging.getLogger(__name__)


def coco_image_set(name: str) -> str:
    """Config set names -> COCO folder names: 'train' -> 'train2017', 'val'/'validation' -> 'val2017'."""
    return {"train": "train2017", "val": "val2017", "validation": "val2017"}.get(name, name)


def coco_annotation_path(root: str, image_set: str) -> str:
    prefix = "image_info" if ("test" in image_set or "unlabeled" in image_set) else "person_keypoints"
    return os.path.join(root, "coco", "annotations", f"{prefix}_{image_set}.json")


def coco_image_folder(root: str, image_set: str, data_format: str = "jpg") -> str:
    """Folder (or ``<folder>.zip@/<folder>`` prefix) holding the images of ``image_set``."""
    folder = "test2017" if "test" in image_set else image_set
    base = os.path.join(root, "coco", "images", folder)
    if data_format == "zip":
        return zip_member_path(base + ".zip", folder)
    if data_format not in ("jpg", "png"):
        raise ConfigError(f"DATASET.DATA_FORMAT '{data_format}' is not supported: "
                          "use 'jpg' or 'zip'")
    return base


def coco_image_path(root: str, image_set: str, image_id: int, data_format: str = "jpg") -> str:
    name = f"{image_id:012d}.jpg"
    if "2014" in image_set:
        name = f"COCO_{image_set}_{name}"
    return coco_image_folder(root, image_set, data_format) + "/" + name


def _check_image_folder(root: str, image_set: str, data_format: str) -> None:
    folder = coco_image_folder(root, image_set, data_format)
    target = folder.split("@/")[0] if data_format == "zip" else folder
    exists = os.path.isfile(target) if data_format == "zip" else os.path.isdir(target)
    if not exists:
        raise MissingFileError(
            f"COCO image {'archive' if data_format == 'zip' else 'folder'} '{target}' not found: put "
            f"the '{image_set}' images there, or fix DATASET.ROOT / DATASET.DATA_FORMAT")


def _load_json(path: str, what: str, hint: str) -> Any:
    if not os.path.isfile(path):
        raise MissingFileError(f"{what} '{path}' not found: {hint}")
    return read_json(path, what)


def _check_annotation_file(ann: Any, path: str) -> None:
    """The top level of a COCO annotation json: a dict with 'images' and 'annotations' lists."""
    if not isinstance(ann, dict):
        raise DataError(f"COCO annotation file {path} holds a {type(ann).__name__} at top level; "
                        f"expected an object with 'images' and 'annotations' lists")
    for key in ("images", "annotations"):
        if not isinstance(ann.get(key), list):
            raise DataError(f"COCO annotation file {path} has no '{key}' list; is it a COCO "
                            f"person_keypoints file?")


def _valid_box(box: Any) -> bool:
    """A box [x, y, w, h] of four finite numbers with w, h > 0."""
    try:
        vals = [float(v) for v in box[:4]]
    except (TypeError, ValueError):
        return False
    return len(vals) == 4 and all(np.isfinite(vals)) and vals[2] > 0 and vals[3] > 0


def _gt_instances(ann: Dict[str, Any], path: str = "<annotations>"
                  ) -> List[Tuple[int, List[float], List[float], np.ndarray]]:
    """Kept GT persons in json image order: (image_id, clean_box, raw_box, keypoints [17, 3]).

    Keypoints of the wrong length are an error naming the file and annotation id; persons with
    a missing, non-finite or empty box are dropped with one counted warning (the reference's
    sanitising drops empty boxes too).
    """
    person_ids = {c["id"] for c in ann.get("categories", []) if c.get("name") == "person"} or {1}
    by_image: Dict[int, list] = {}
    for a in ann.get("annotations", []):
        by_image.setdefault(a.get("image_id"), []).append(a)
    out, bad_boxes = [], []
    want = 3 * COCO.num_joints
    for img in ann["images"]:
        w, h = img["width"], img["height"]
        for a in by_image.get(img["id"], ()):
            if a.get("iscrowd", 0) or a.get("category_id") not in person_ids:
                continue
            kps = a.get("keypoints") or []
            if kps and len(kps) != want:
                raise DataError(f"{path}: annotation {a.get('id')} (image {img['id']}) has "
                                f"{len(kps)} 'keypoints' values; COCO persons have {want} "
                                f"(x, y, v for {COCO.num_joints} joints)")
            if not kps or max(kps) == 0:  # no labeled keypoint: nothing to supervise
                continue
            box = a.get("bbox")
            clean = sanitize_box(box, w, h, area=a.get("area", 1.0)) if _valid_box(box) else None
            if clean is None:
                bad_boxes.append(a.get("id"))
                continue
            out.append((img["id"], clean, box, np.asarray(kps, np.float64).reshape(-1, 3)))
    if bad_boxes:
        logger.warning("%s: dropped %d person(s) with a missing, non-finite or empty 'bbox' "
                       "(annotation ids %s%s)", path, len(bad_boxes), bad_boxes[:5],
                       ", ..." if len(bad_boxes) > 5 else "")
    return out


def select_data(center: np.ndarray, scale: np.ndarray, joints: np.ndarray, vis: np.ndarray
                ) -> np.ndarray:
    """Boolean mask of records whose visible-joint centroid lies near the box centre.

    Shapes: center/scale [N, 2], joints [N, J, 2], vis [N, J]. Records without visible joints
    are dropped; the rest are kept when exp(-d^2 / (0.2^2 * 2 * area)) > 0.45 + 0.2/16 (n_vis - 1).
    """
    n_vis = (vis > 0).sum(1)
    safe = np.maximum(n_vis, 1)[:, None]
    centroid = (joints * (vis > 0)[..., None]).sum(1) / safe
    area = scale[:, 0] * scale[:, 1] * PIXEL_STD ** 2
    d2 = ((centroid - center) ** 2).sum(1)
    ks = np.exp(-d2 / (0.2 ** 2 * 2.0 * area))
    return (n_vis > 0) & (ks > 0.45 + (0.2 / 16) * (n_vis - 1))


class CocoDataset:
    """COCO person instances as records (not a torch Dataset: wrap ``records`` in PoseDataset).

    Attributes: ``records`` (list of person records), ``image_set`` (e.g. 'val2017'),
    ``annotation_file`` (path; the ground truth for COCO evaluation), ``image_ids`` (json order),
    ``joint_set`` (model space), ``native_joint_set`` (COCO), ``flip_pairs`` (model space),
    ``use_gt_boxes``.
    """

    def __init__(self, root: str, image_set: str, num_joints: int, image_size: Sequence[int],
                 is_train: bool, use_gt_bbox: bool = True, bbox_file: str = "",
                 image_thre: float = 0.0, train_len: int = -1, select: bool = False,
                 data_format: str = "jpg", joint_space: str = "") -> None:
        self.root = root
        self.image_set = coco_image_set(image_set)
        self.native_joint_set: JointSet = COCO
        self.joint_set: JointSet = model_joint_set(num_joints, COCO, joint_space)
        self.flip_pairs = self.joint_set.flip_pairs
        self.aspect_ratio = float(image_size[0]) / float(image_size[1])
        self.annotation_file = coco_annotation_path(root, self.image_set)
        self.bbox_file = bbox_file
        self.data_format = data_format
        self.use_gt_boxes = (is_train or use_gt_bbox) and "unlabeled" not in self.image_set
        self._coco = None
        _check_image_folder(root, self.image_set, data_format)

        if self.use_gt_boxes:
            arrays = self._load_gt()
        else:
            arrays = self._load_detections(image_thre)
        if select:
            keep = select_data(arrays["center"], arrays["scale"], arrays["joints"], arrays["vis"])
            arrays = {k: v[keep] for k, v in arrays.items()}
        if is_train and train_len > 0:
            # The first N person *instances* in json image order decide which labeled subset a
            # 1K/5K/10K run trains on.
            arrays = {k: v[:train_len] for k, v in arrays.items()}
        self.records = self._to_records(arrays)
        if not self.records:
            raise DataError(
                f"COCO set '{self.image_set}' produced no person records "
                f"({'GT boxes from ' + self.annotation_file if self.use_gt_boxes else 'boxes from ' + bbox_file}); "
                "check the annotation/detection file, TEST.IMAGE_THRE and DATASET.TRAIN_LEN")
        if is_train and train_len > 0:
            logger.info("COCO %s: kept the first %d instances (%s ... %s)", self.image_set,
                        len(self.records), self.records[0]["image"], self.records[-1]["image"])

    # ----------------------------------------------------------------------------- loading
    def _load_gt(self) -> Dict[str, Any]:
        ann = _load_json(self.annotation_file, "COCO annotation file",
                         f"put person_keypoints_{self.image_set}.json (from the COCO 2017 "
                         "annotations download) there, or fix DATASET.ROOT")
        _check_annotation_file(ann, self.annotation_file)
        self.image_ids = [img["id"] for img in ann["images"]]
        inst = _gt_instances(ann, self.annotation_file)
        kps = np.stack([k for *_, k in inst]) if inst else np.zeros((0, COCO.num_joints, 3))
        boxes = np.asarray([b for _, b, _, _ in inst], np.float64).reshape(-1, 4)
        return {
            "image_id": np.asarray([i for i, *_ in inst], np.int64),
            "box": boxes,
            "raw_box": np.asarray([r for _, _, r, _ in inst], np.float32).reshape(-1, 4),
            "score": np.ones(len(inst), np.float32),
            "joints": kps[..., :2],
            "vis": np.minimum(kps[..., 2], 1.0),
            **self._center_scale(boxes),
        }

    def _load_detections(self, image_thre: float) -> Dict[str, Any]:
        hint = ("set TEST.COCO_BBOX_FILE to a COCO-format detection json (list of {image_id, "
                "category_id, bbox, score})")
        if "unlabeled" not in self.image_set:
            hint += ", or set TEST.USE_GT_BBOX True to use the ground-truth boxes"
        dets = _load_json(self.bbox_file, "person detection file (TEST.COCO_BBOX_FILE)", hint)
        if os.path.isfile(self.annotation_file):
            # Only the image list is used here; the file stays the evaluation ground truth.
            ann = read_json(self.annotation_file, "COCO annotation file")
            _check_annotation_file(ann, self.annotation_file)
            self.image_ids = [img["id"] for img in ann["images"]]
        elif "unlabeled" not in self.image_set:
            raise MissingFileError(
                f"COCO annotation file '{self.annotation_file}' not found: evaluation of "
                f"'{self.image_set}' needs it; put the COCO 2017 annotation json there")
        else:
            self.image_ids = []
        if not isinstance(dets, list):
            raise DataError(f"detection file {self.bbox_file} (TEST.COCO_BBOX_FILE) holds a "
                            f"{type(dets).__name__}; expected a list of {{image_id, category_id, "
                            f"bbox, score}} (COCO detection results)")
        for k, d in enumerate(dets):
            missing = [f for f in ("image_id", "bbox", "score")
                       if not isinstance(d, dict) or f not in d]
            if missing:
                raise DataError(f"detection file {self.bbox_file}: entry {k} lacks {missing}; "
                                f"each detection needs image_id, category_id, bbox and score")
        kept = [d for d in dets if d.get("category_id") == 1 and d["score"] >= image_thre
                and _valid_box(d["bbox"])]
        if not kept:
            raise DataError(
                f"detection file '{self.bbox_file}' has no person boxes (category_id 1) with "
                f"score >= TEST.IMAGE_THRE={image_thre}; check the file or lower the threshold")
        if self.image_ids and "unlabeled" not in self.image_set:
            known = set(self.image_ids)
            if not any(d["image_id"] in known for d in kept):
                raise DataError(
                    f"detection file {self.bbox_file} holds no boxes of {self.image_set} images "
                    f"(its image ids are not in {self.annotation_file}; e.g. the WILD configs' "
                    f"TEST.COCO_BBOX_FILE is the unlabeled2017 detector file): pass the "
                    f"{self.image_set} detections with --coco-bbox-file (TEST.COCO_BBOX_FILE)")
        boxes = np.asarray([d["bbox"] for d in kept], np.float64).reshape(-1, 4)
        n = len(kept)
        if not self.image_ids:
            self.image_ids = list(dict.fromkeys(d["image_id"] for d in kept))
        return {
            "image_id": np.asarray([d["image_id"] for d in kept], np.int64),
            "box": boxes,
            "raw_box": boxes.astype(np.float32),
            "score": np.asarray([d["score"] for d in kept], np.float32),
            # Detections carry no keypoints; all-ones visibility as in the reference.
            "joints": np.zeros((n, COCO.num_joints, 2)),
            "vis": np.ones((n, COCO.num_joints)),
            **self._center_scale(boxes),
        }

    def _center_scale(self, boxes: np.ndarray) -> Dict[str, np.ndarray]:
        center, scale = box_to_center_scale(boxes.reshape(-1, 4), self.aspect_ratio)
        return {"center": center.reshape(-1, 2), "scale": scale.reshape(-1, 2)}

    def _to_records(self, a: Dict[str, np.ndarray]) -> List[Dict[str, Any]]:
        joints, vis = map_joints(a["joints"].astype(np.float32), a["vis"].astype(np.float32),
                                 COCO, self.joint_set)
        folder = coco_image_folder(self.root, self.image_set, self.data_format)
        prefix = "COCO_" + self.image_set + "_" if "2014" in self.image_set else ""
        return [{
            "image": f"{folder}/{prefix}{int(iid):012d}.jpg",
            "image_id": int(iid),
            "center": a["center"][i].copy(),
            "scale": a["scale"][i].copy(),
            "joints": joints[i],
            "joints_vis": vis[i],
            "score": float(a["score"][i]),
            "raw_box": a["raw_box"][i].copy(),
        } for i, iid in enumerate(a["image_id"])]

    # ----------------------------------------------------------------------------- evaluation
    def coco_api(self):
        """pycocotools COCO object of ``annotation_file`` (loaded on first use, then cached)."""
        if self._coco is None:
            from pycocotools.coco import COCO as CocoApi
            if not os.path.isfile(self.annotation_file):
                raise MissingFileError(f"COCO annotation file '{self.annotation_file}' not found")
            self._coco = CocoApi(self.annotation_file)
        return self._coco

    def __len__(self) -> int:
        return len(self.records)

    @classmethod
    def from_cfg(cls, cfg: CfgNode, image_set: str, is_train: bool, train_len: Optional[int] = None
                 ) -> "CocoDataset":
        """Build from a config; ``train_len`` overrides DATASET.TRAIN_LEN (0/-1 = all)."""
        return cls(
            root=cfg.DATASET.ROOT, image_set=image_set, num_joints=int(cfg.MODEL.NUM_JOINTS),
            image_size=cfg.MODEL.IMAGE_SIZE, is_train=is_train,
            use_gt_bbox=bool(cfg.TEST.USE_GT_BBOX), bbox_file=cfg.TEST.COCO_BBOX_FILE,
            image_thre=float(cfg.TEST.IMAGE_THRE),
            train_len=int(cfg.DATASET.TRAIN_LEN if train_len is None else train_len),
            select=bool(cfg.DATASET.SELECT_DATA) and is_train,
            data_format=cfg.DATASET.DATA_FORMAT, joint_space=cfg_joint_space(cfg))
