"""Per-sample pipeline: person record -> normalised crop, Gaussian targets and meta.

One decode and one warp per person crop. Training draws half-body (if enabled), scale,
rotation (p 0.6) and horizontal flip (p 0.5) from an explicit ``numpy.random.Generator``;
each draw can be overridden so the paired dataset can impose one geometry on an unlabeled
crop and its RandAugment twin. The flip is folded into the warp matrix instead of mirroring
the whole image first (same sampling grid, one full-image copy less).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
from yacs.config import CfgNode

from semipose.data.imageio import read_image
from semipose.data.keypoints import JointSet, joint_space_without_dataset
from semipose.errors import ConfigError
from semipose.transforms.affine import PIXEL_STD, affine_points, flip_joints, get_affine_transform
from semipose.transforms.draws import (PAIRED_ORDER, SAMPLE_ORDER, SAMPLE_ROT_PROB, NumpyDraws,
                                      draw_scale_rotation)
from semipose.transforms.codec import Codec
from semipose.types import Sample

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# augment_crop(crop uint8 [H, W, 3], rng) -> uint8 [H, W, 3], e.g. RandAugment on the warped crop.
CropAugment = Callable[[np.ndarray, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class Geometry:
    """The augmentation of one crop: rotation (degrees), scale multiplier, horizontal flip."""

    rotation: float = 0.0
    scale_factor: float = 1.0
    flip: bool = False


def draw_geometry(rng: np.random.Generator, scale_factor: float, rot_factor: float) -> Geometry:
    """Shared draw for paired crops, in the reference order: rotation, scale, flip."""
    sf, rot = draw_scale_rotation(NumpyDraws(rng), scale_factor, rot_factor, SAMPLE_ROT_PROB,
                                  PAIRED_ORDER)
    return Geometry(rot, sf, bool(rng.random() <= 0.5))


def box_of_points(pts: np.ndarray, aspect_ratio: float, padding: float
                  ) -> Tuple[np.ndarray, np.ndarray]:
    """Center/scale of the joints' bounding box [N, 2], widened to the aspect ratio."""
    center = pts.mean(0).astype(np.float32)
    w, h = pts.max(0) - pts.min(0)
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    elif w < aspect_ratio * h:
        w = h * aspect_ratio
    return center, np.array([w / PIXEL_STD, h / PIXEL_STD], np.float32) * padding


class SampleTransform:
    """Record -> sample dict ``{"image" [3, H, W], "target" [J, h, w], "target_weight" [J, 1], "meta"}``.

    Targets come from a ``Codec``: pass ``codec=`` (the config's, ``Codec.from_cfg``) or its
    three encoding settings ``image_size``, ``heatmap_size`` (both (width, height)) and ``sigma``.
    ``flip_pairs`` are the model space's left/right pairs; ``joint_set`` (the model space) is
    needed only for half-body crops.
    """

    def __init__(self, image_size: Optional[Sequence[int]] = None,
                 heatmap_size: Optional[Sequence[int]] = None, sigma: Optional[float] = None,
                 flip_pairs: Optional[Sequence[Tuple[int, int]]] = None, is_train: bool = False,
                 *, codec: Optional[Codec] = None,
                 scale_factor: float = 0.25, rot_factor: float = 30.0, flip: bool = True,
                 prob_half_body: float = 0.0, num_joints_half_body: int = 8,
                 joint_set: Optional[JointSet] = None, color_rgb: bool = False,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
                 ) -> None:
        sizes = (image_size, heatmap_size, sigma)
        if codec is None:
            if any(v is None for v in sizes):
                raise TypeError("SampleTransform needs codec= or image_size, heatmap_size, sigma")
            codec = Codec(image_size=image_size, heatmap_size=heatmap_size, sigma=sigma)
        elif any(v is not None for v in sizes):
            raise TypeError("SampleTransform takes codec= or image_size, heatmap_size, sigma, "
                            "not both")
        if flip_pairs is None:
            raise TypeError("SampleTransform needs flip_pairs (the model space's left/right "
                            "joint pairs)")
        codec.encoding_settings()  # a decode-only codec cannot make targets: fail here
        self.codec = codec
        self.flip_pairs = tuple(tuple(p) for p in flip_pairs)
        self.is_train = is_train
        self.scale_factor, self.rot_factor = float(scale_factor), float(rot_factor)
        self.flip = flip
        self.prob_half_body = float(prob_half_body) if joint_set is not None else 0.0
        self.num_joints_half_body = num_joints_half_body
        # The body halves come from the joint set's description (upper_body / lower_body).
        self.upper_body, self.lower_body = (None, None) if joint_set is None else \
            joint_set.body_masks()
        if is_train and self.prob_half_body > 0 and not joint_set.has_body_halves:
            raise ConfigError(f"DATASET.PROB_HALF_BODY {self.prob_half_body:g} needs the body "
                              f"halves of joint set {joint_set.describe()}: add 'upper_body' and "
                              f"'lower_body' to its description, or set DATASET.PROB_HALF_BODY 0")
        self.color_rgb = color_rgb
        # (x/255 - mean)/std folded into one multiply-add on the uint8 crop.
        self._offset = np.asarray(mean, np.float32) * 255.0
        self._gain = 1.0 / (np.asarray(std, np.float32) * 255.0)

    # The encoding settings are the codec's; these read them (crop size for the warp, ...).
    @property
    def image_size(self) -> Tuple[int, int]:
        """Crop (width, height)."""
        return self.codec.encoding_settings()[0]

    @property
    def heatmap_size(self) -> Tuple[int, int]:
        """Target heatmap (width, height)."""
        return self.codec.encoding_settings()[1]

    @property
    def sigma(self) -> float:
        """Gaussian std of the targets, in heatmap pixels."""
        return self.codec.encoding_settings()[2]

    @classmethod
    def from_cfg(cls, cfg: CfgNode, is_train: bool, flip_pairs: Sequence[Tuple[int, int]],
                 joint_set: Optional[JointSet] = None, allow_half_body: bool = True,
                 codec: Optional[Codec] = None) -> "SampleTransform":
        """``allow_half_body=False`` for unlabeled sets (the reference skips half-body there).
        ``codec``: the config's codec when the caller has built it (else built here)."""
        if joint_set is None:
            joint_set = joint_space_without_dataset(cfg)
        return cls(
            flip_pairs=flip_pairs, is_train=is_train,
            codec=Codec.from_cfg(cfg) if codec is None else codec,
            scale_factor=cfg.DATASET.SCALE_FACTOR, rot_factor=cfg.DATASET.ROT_FACTOR,
            flip=bool(cfg.DATASET.FLIP),
            prob_half_body=cfg.DATASET.PROB_HALF_BODY if allow_half_body else 0.0,
            num_joints_half_body=cfg.DATASET.NUM_JOINTS_HALF_BODY, joint_set=joint_set,
            color_rgb=bool(cfg.DATASET.COLOR_RGB))

    # ------------------------------------------------------------------------------ public
    def __call__(self, record: Dict[str, Any], rng: np.random.Generator, index: int = 0,
                 rotation: Optional[float] = None, scale_factor: Optional[float] = None,
                 flip: Optional[bool] = None, augment_crop: Optional[CropAugment] = None
                 ) -> Sample:
        """One sample; the optional arguments replace the corresponding random draws."""
        crop, joints, vis, meta = self.warp(record, rng, index, rotation, scale_factor, flip)
        if augment_crop is not None:
            crop = augment_crop(crop, rng)
        return self.finish(crop, joints, vis, meta)

    def pair(self, record: Dict[str, Any], rng: np.random.Generator, augment_crop: CropAugment,
             index: int = 0, rotation: Optional[float] = None,
             scale_factor: Optional[float] = None, flip: Optional[bool] = None
             ) -> Tuple[Sample, Sample]:
        """A plain crop and its photometric twin from one decode and one warp (same geometry)."""
        crop, joints, vis, meta = self.warp(record, rng, index, rotation, scale_factor, flip)
        plain = self.finish(crop, joints, vis, meta)
        twin = dict(plain, image=self.to_tensor(augment_crop(crop.copy(), rng)),
                    meta=dict(plain["meta"]))
        return plain, twin

    # ------------------------------------------------------------------------------ stages
    def geometry(self, record: Dict[str, Any], rng: np.random.Generator,
                 rotation: Optional[float], scale_factor: Optional[float], flip: Optional[bool]
                 ) -> Tuple[np.ndarray, np.ndarray, Geometry]:
        """Center, scale (before the scale factor) and the augmentation of a training crop."""
        c = np.asarray(record["center"], np.float32).copy()
        s = np.asarray(record["scale"], np.float32).copy()
        vis = record["joints_vis"]
        if (self.prob_half_body > 0 and vis.sum() > self.num_joints_half_body
                and rng.random() < self.prob_half_body):
            hb = self._half_body(record["joints"], vis, rng)
            if hb is not None:
                c, s = hb
        scale_factor, rotation = draw_scale_rotation(
            NumpyDraws(rng), self.scale_factor, self.rot_factor, SAMPLE_ROT_PROB, SAMPLE_ORDER,
            scale=scale_factor, rotation=rotation)
        if flip is None:
            flip = bool(rng.random() <= 0.5) if self.flip else False
        return c, s, Geometry(float(rotation), float(scale_factor), bool(flip and self.flip))

    def warp(self, record: Dict[str, Any], rng: np.random.Generator, index: int = 0,
             rotation: Optional[float] = None, scale_factor: Optional[float] = None,
             flip: Optional[bool] = None
             ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, Dict[str, Any]]:
        """Decode + augment + warp -> (crop uint8 [H, W, 3], joints [J, 2] crop px, vis [J], meta)."""
        img = read_image(record["image"], self.color_rgb)
        matrix, joints, vis, meta = self.place(record, rng, img.shape[1], index, rotation,
                                               scale_factor, flip)
        crop = cv2.warpAffine(img, matrix, self.image_size, flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        return crop, joints, vis, meta

    def place(self, record: Dict[str, Any], rng: np.random.Generator, width: int,
              index: int = 0, rotation: Optional[float] = None,
              scale_factor: Optional[float] = None, flip: Optional[bool] = None
              ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, Dict[str, Any]]:
        """The crop's geometry, no pixels: (matrix [2, 3] float64 mapping image pixels to crop
        pixels as cv2.warpAffine takes it, joints [J, 2] crop px, vis [J], meta).

        ``width`` is the source image's width (the flip mirrors about it).
        """
        joints = np.asarray(record["joints"], np.float32)
        vis = np.asarray(record["joints_vis"], np.float32)
        if self.is_train:
            c, s, geo = self.geometry(record, rng, rotation, scale_factor, flip)
        else:
            c = np.asarray(record["center"], np.float32).copy()
            s = np.asarray(record["scale"], np.float32).copy()
            geo = Geometry()
        s = s * np.float32(geo.scale_factor)
        flip_m = np.eye(3)
        if geo.flip:
            joints, vis = flip_joints(joints, vis, width, self.flip_pairs)
            c[0] = width - 1 - c[0]
            # Sampling the mirrored image at p equals sampling the original at (W-1-x, y).
            flip_m = np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        trans = get_affine_transform(c, s, geo.rotation, self.image_size)
        # Only visible joints move; absent ones stay at their (zero) coordinates.
        joints = np.where(vis[:, None] > 0, affine_points(joints, trans), joints).astype(np.float32)
        meta = {
            "image_id": record["image_id"], "center": c, "scale": s.astype(np.float32),
            "rotation": geo.rotation, "scale_factor": geo.scale_factor, "flip": geo.flip,
            "score": float(record.get("score", 1.0)),
            "raw_box": np.asarray(record.get("raw_box", (1, 1, 2, 2)), np.float32),
            "index": int(index),
        }
        return trans @ flip_m, joints, vis.astype(np.float32), meta

    def finish(self, crop: np.ndarray, joints: np.ndarray, vis: np.ndarray,
               meta: Dict[str, Any]) -> Sample:
        target, weight = self.codec.encode(joints, vis)
        meta = dict(meta, joints=joints, joints_vis=vis)
        return {"image": self.to_tensor(crop), "target": torch.from_numpy(target),
                "target_weight": torch.from_numpy(weight), "meta": meta}

    def to_tensor(self, crop: np.ndarray) -> torch.Tensor:
        """uint8 [H, W, 3] -> normalised float32 [3, H, W] (channel order as decoded)."""
        x = np.empty((3,) + crop.shape[:2], np.float32)
        # Per-channel planes straight from the strided uint8 view: ~7x faster than converting
        # the HWC array and transposing it afterwards.
        for k in range(3):
            np.multiply(np.subtract(crop[:, :, k], self._offset[k], dtype=np.float32),
                        self._gain[k], out=x[k])
        return torch.from_numpy(x)

    def _half_body(self, joints: np.ndarray, vis: np.ndarray, rng: np.random.Generator
                   ) -> Optional[Tuple[np.ndarray, np.ndarray]]:
        visible = vis > 0
        upper, lower = visible & self.upper_body, visible & self.lower_body
        # The reference compares a *normal* draw with 0.5 here (upper body ~69% of the time).
        if rng.standard_normal() < 0.5 and upper.sum() > 2:
            sel = upper
        else:
            sel = lower if lower.sum() > 2 else upper
        if sel.sum() < 2:
            return None
        aspect = self.image_size[0] / self.image_size[1]
        return box_of_points(np.asarray(joints, np.float32)[sel], aspect, padding=1.5)
