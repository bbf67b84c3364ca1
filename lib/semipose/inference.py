"""Run a trained model on any image: person boxes in, keypoints in image pixels out.

The crops are made exactly as the validation pipeline makes them (box -> center/scale with the 1.25
padding, the crop affine, the ImageNet normalisation), so a model scores the same here as in
valid.py. Boxes come from a COCO detection json, from COCO annotations, from an offline torchvision
detector, or default to the whole image. Used by pose_estimation/demo.py.
"""
from __future__ import annotations

import logging
import os
import re
from collections import defaultdict
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
from yacs.config import CfgNode

from .data.keypoints import JointSet, model_space_of_cfg, to_native
from .data.video_frames import open_video
from .errors import ConfigError, DataError, MissingFileError, WeightsError
from .evaluation.predict import forward_heatmaps
from .transforms.affine import box_to_center_scale, get_affine_transform, sanitize_box
from .transforms.codec import Codec
from .transforms.sample import SampleTransform
from .utils.io import read_json

logger = logging.getLogger("semipose")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
BoxList = List[Tuple[List[float], float]]  # [(x, y, w, h), score] per person


def load_method(cfg: CfgNode, model_file: str, device: torch.device | str,
                allow_single: bool = False) -> Tuple[torch.nn.Module, str]:
    """The method of ``cfg`` with the weights of ``model_file`` on ``device`` in eval mode.

    Reads this project's checkpoints and the reference layouts (see models.weights); returns
    (method, layout name). ``allow_single`` loads a one-net file into net1 of a two-net method.
    """
    from .engine.model_setup import build_nets
    from .methods import build_method
    from .models.weights import load_checkpoint

    if not os.path.isfile(model_file):
        raise MissingFileError(f"model file {model_file!r} not found: pass --model-file PATH "
                               f"(a checkpoint of a run, or a released reference checkpoint)")
    method = build_method(cfg, build_nets(cfg, init=False, log=logger))
    layout = load_checkpoint(model_file, method.nets, allow_single=allow_single)
    method.to(device)
    method.nets.eval()
    return method, layout


class PoseEstimator:
    """One net (or the PoseDual ensemble) of a loaded method, applied to person boxes.

    Args:
        method: a training method with loaded weights (see :func:`load_method`).
        cfg: its config (joint space, batch size; the codec when ``codec`` is None).
        device: where the net runs.
        net: a name of ``method.eval_models()`` ('net1', 'net2', 'ensemble', ...).
        flip_test, post_process, post_type, shift_heatmap: replace the codec's TEST.FLIP_TEST /
            POST_PROCESS / POST_TYPE / SHIFT_HEATMAP (None = keep the codec's value).
        batch_size: person crops per forward pass (None = TEST.BATCH_SIZE).
        codec: crop size and decode settings (None = ``Codec.from_cfg(cfg)``).
        channels: the channel order of the images given to it: 'bgr' (cv2.imread,
            semipose.data.imageio.read_image) or 'rgb' (PIL, imageio, video readers); the nets
            see the order they were trained on (DATASET.COLOR_RGB) either way.
    """

    def __init__(self, method: torch.nn.Module, cfg: CfgNode, device: torch.device | str,
                 net: str = "net1", flip_test: Optional[bool] = None,
                 post_process: Optional[bool] = None, post_type: Optional[str] = None,
                 shift_heatmap: Optional[bool] = None, batch_size: Optional[int] = None,
                 codec: Optional[Codec] = None, channels: str = "bgr"):
        if channels not in ("bgr", "rgb"):
            raise ValueError(f"channels is {channels!r}; use 'bgr' (cv2.imread) or 'rgb' (PIL)")
        self.channels = channels
        models = method.eval_models()
        if net not in models:
            raise ConfigError(f"--net {net!r}: this {cfg.MODEL.NAME} model offers {list(models)}")
        self.model, self.net, self.device = models[net], net, torch.device(device)
        # The dataset's joints (what the keypoints are reported in) and the nets' joint space.
        self.native, self.model_set = model_space_of_cfg(cfg)
        self.codec = (Codec.from_cfg(cfg) if codec is None else codec).with_overrides(
            flip_test=flip_test, post_process=post_process, post_type=post_type,
            shift_heatmap=shift_heatmap)
        self.transform = SampleTransform.from_cfg(cfg, False, self.model_set.flip_pairs,
                                                  self.model_set, codec=self.codec)
        self.image_size = self.transform.image_size  # (w, h)
        # swap the channels when the given order is not the one the nets were trained on
        self.swap_channels = (channels == "rgb") != bool(self.transform.color_rgb)
        self.batch_size = int(cfg.TEST.BATCH_SIZE if batch_size is None else batch_size)
        self.in_vis_thre = float(cfg.TEST.IN_VIS_THRE)
        self.layout = ""  # the checkpoint layout read, when made by from_checkpoint

    @classmethod
    def from_checkpoint(cls, cfg: Any, model_file: str, device: torch.device | str = "cpu",
                        net: str = "net1", allow_single: bool = False,
                        **options: Any) -> "PoseEstimator":
        """An estimator from a weights file: ``cfg`` is a loaded config, a YAML path or a config
        mapping (see ``semipose.load_cfg``); ``model_file`` a checkpoint of a run or a released
        reference one (see :func:`load_method`); ``options``: the keyword arguments of the
        constructor (flip_test, post_type, batch_size, ...). ``layout`` tells which checkpoint
        layout was read."""
        if not isinstance(cfg, CfgNode):
            from .api import load_cfg
            cfg = load_cfg(cfg)
        method, layout = load_method(cfg, model_file, device, allow_single=allow_single)
        estimator = cls(method, cfg, device, net=net, **options)
        estimator.layout = layout
        return estimator

    @property
    def joint_set(self) -> JointSet:
        """The joint order of the returned keypoints (the dataset's native order)."""
        return self.native

    def crops(self, image: np.ndarray, boxes: np.ndarray
              ) -> Tuple[torch.Tensor, np.ndarray, np.ndarray]:
        """Person crops of ``image`` ([H, W, 3] uint8, ``channels`` order) for boxes [N, 4]
        (x, y, w, h): (images [N, 3, h, w] normalised, center [N, 2], scale [N, 2])."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        if self.swap_channels:
            image = np.ascontiguousarray(image[:, :, ::-1])
        aspect = self.image_size[0] / self.image_size[1]
        center, scale = box_to_center_scale(boxes, aspect)
        center, scale = center.reshape(-1, 2), scale.reshape(-1, 2)
        tensors = []
        for c, s in zip(center, scale):
            trans = get_affine_transform(c, s, 0, self.image_size)
            crop = cv2.warpAffine(image, trans, self.image_size, flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            tensors.append(self.transform.to_tensor(crop))
        empty = torch.zeros((0, 3, self.image_size[1], self.image_size[0]))
        return (torch.stack(tensors) if tensors else empty), center, scale

    @torch.no_grad()
    def heatmaps(self, images: torch.Tensor) -> np.ndarray:
        """Heatmaps [N, J_model, h, w] on the host, ``batch_size`` crops per pass."""
        out = []
        for start in range(0, images.shape[0], self.batch_size):
            x = images[start:start + self.batch_size].to(self.device)
            hm = forward_heatmaps(self.model, x, self.codec, self.model_set.flip_pairs)
            out.append(hm.cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.model_set.num_joints, 1, 1))

    def __call__(self, image: np.ndarray, boxes: Optional[np.ndarray] = None) -> np.ndarray:
        """Keypoints [N, J_native, 3] (x, y, confidence) in image pixels for boxes [N, 4]
        (x, y, w, h; None = the whole image as one box). ``image``: [H, W, 3] uint8 in the
        estimator's ``channels`` order (default BGR, as cv2.imread and
        semipose.data.imageio.read_image return it)."""
        if boxes is None:
            check_image(image)
            boxes = np.asarray([box for box, _ in whole_image_box(image)], np.float64)
        return self.predict_many([(image, boxes)])[0]

    def predict_many(self, items: Sequence[Tuple[np.ndarray, np.ndarray]]) -> List[np.ndarray]:
        """Keypoints for several (image, boxes [N_i, 4]) pairs; the crops of all images share the
        forward passes (``batch_size`` crops each), so one-person images batch as well."""
        for image, _ in items:
            check_image(image)
        parts = [self.crops(image, boxes) for image, boxes in items]
        counts = [p[0].shape[0] for p in parts]
        if sum(counts) == 0:
            return [np.zeros((0, self.native.num_joints, 3), np.float32) for _ in items]
        images = torch.cat([p[0] for p in parts])
        center = np.concatenate([p[1] for p in parts])
        scale = np.concatenate([p[2] for p in parts])
        coords, maxvals = self.codec.decode(self.heatmaps(images), center, scale)
        kpts = to_native(np.concatenate([coords, maxvals], axis=2).astype(np.float32),
                         self.model_set, self.native)
        return np.split(kpts, np.cumsum(counts)[:-1])

    def person_score(self, kpts: np.ndarray, box_score: float) -> float:
        """The reference's rescoring: box score x mean confidence of joints above IN_VIS_THRE."""
        conf = kpts[:, 2]
        good = conf[conf > self.in_vis_thre]
        return float(box_score * (good.mean() if good.size else 0.0))


def check_image(image: Any) -> None:
    """Raise ValueError unless ``image`` is an [H, W, 3] uint8 array (what the crops are cut
    from; a wrong array from code would otherwise give silently wrong keypoints)."""
    if (not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3
            or image.dtype != np.uint8 or 0 in image.shape):
        what = (f"an array of shape {image.shape} and dtype {image.dtype}"
                if isinstance(image, np.ndarray) else f"a {type(image).__name__}")
        raise ValueError(f"an image is an [H, W, 3] uint8 array (BGR, as cv2.imread reads it), "
                         f"got {what}")


# ------------------------------------------------------------------------------ boxes
def whole_image_box(image: np.ndarray) -> BoxList:
    """The whole image as one person box (score 1)."""
    return [([0.0, 0.0, float(image.shape[1]), float(image.shape[0])], 1.0)]


def _read_json(path: str, what: str) -> Any:
    if not os.path.isfile(path):
        raise MissingFileError(f"{what} {path!r} not found")
    return read_json(path, what)


def _check_box(box: Any, where: str) -> List[float]:
    if not isinstance(box, (list, tuple)) or len(box) != 4:
        raise DataError(f"{where}: 'bbox' must be [x, y, w, h], got {box!r}")
    vals = [float(v) for v in box]
    if not all(np.isfinite(vals)) or vals[2] <= 0 or vals[3] <= 0:
        raise DataError(f"{where}: 'bbox' {box!r} needs finite values and width, height > 0")
    return vals


def read_detections(path: str, threshold: float = 0.0) -> Dict[Any, BoxList]:
    """A COCO detection-result json (list of {image_id, category_id, bbox, score}) ->
    image_id -> [(box, score)]; persons (category_id 1) with score >= ``threshold``."""
    dets = _read_json(path, "box file (--boxes)")
    if not isinstance(dets, list):
        raise DataError(f"box file {path} must hold a list of detections "
                        f"{{image_id, category_id, bbox, score}}, not a {type(dets).__name__}")
    out: Dict[Any, BoxList] = defaultdict(list)
    for k, d in enumerate(dets):
        where = f"{path} entry {k}"
        if not isinstance(d, dict) or "image_id" not in d or "bbox" not in d:
            raise DataError(f"{where}: a detection needs 'image_id' and 'bbox'")
        if d.get("category_id", 1) != 1:
            continue
        score = float(d.get("score", 1.0))
        if score >= threshold:
            out[d["image_id"]].append((_check_box(d["bbox"], where), score))
    return dict(out)


def read_annotation_boxes(path: str) -> Tuple[Dict[Any, BoxList], Dict[str, Any]]:
    """COCO keypoint/instance annotations -> (image_id -> [(box, 1.0)] of non-crowd persons,
    file name -> image_id). Boxes are cleaned as the COCO dataset cleans them (clipped to the
    image), so the crops equal valid.py's ground-truth-box crops."""
    ann = _read_json(path, "annotation file (--annotations)")
    if not isinstance(ann, dict) or "images" not in ann or "annotations" not in ann:
        raise DataError(f"annotation file {path} must be a COCO json with 'images' and "
                        f"'annotations'")
    images = {im["id"]: im for im in ann["images"]}
    names = {os.path.basename(im["file_name"]): i for i, im in images.items()}
    out: Dict[Any, BoxList] = defaultdict(list)
    for a in ann["annotations"]:
        if a.get("iscrowd", 0) or a.get("category_id", 1) != 1 or a["image_id"] not in images:
            continue
        where = f"{path} annotation {a.get('id')}"
        im = images[a["image_id"]]
        box = sanitize_box(_check_box(a.get("bbox"), where), im["width"], im["height"])
        if box is not None:
            out[a["image_id"]].append((box, 1.0))
    return dict(out), names


def image_id_of(path: str, names: Optional[Mapping[str, Any]] = None) -> Any:
    """The image id of a file: from a file-name table, else the digits of a COCO-style name
    (000000397133.jpg -> 397133), else the file name itself."""
    base = os.path.basename(path)
    if names and base in names:
        return names[base]
    stem = os.path.splitext(base)[0]
    return int(stem) if re.fullmatch(r"\d+", stem) else base


class TorchvisionDetector:
    """An offline torchvision person detector (weights from a local file; never downloads).

    ``name``: a torchvision.models.detection builder, e.g. 'fasterrcnn_resnet50_fpn' or
    'fasterrcnn_mobilenet_v3_large_320_fpn'; ``weights``: a state dict saved from it.
    """

    def __init__(self, name: str, weights: str, device: torch.device | str,
                 threshold: float = 0.5):
        import torchvision.models.detection as det
        builder = getattr(det, name, None)
        if builder is None or not callable(builder) or name.startswith("_"):
            raise ConfigError(f"--detector {name!r} is not a torchvision detection model; try "
                              f"fasterrcnn_resnet50_fpn or fasterrcnn_mobilenet_v3_large_320_fpn")
        if not os.path.isfile(weights):
            raise MissingFileError(f"detector weights {weights!r} not found: download the "
                                   f"torchvision weights of {name} once and pass the file with "
                                   f"--detector-weights (nothing is downloaded at run time)")
        self.model = builder(weights=None, weights_backbone=None)
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
            self.model.load_state_dict(state.get("state_dict", state) if isinstance(state, dict)
                                       else state)
        except Exception as err:  # a wrong file is a user error: name it
            raise WeightsError(f"detector weights {weights} do not fit {name}: {err}") from err
        self.model.to(device).eval()
        self.device, self.threshold = torch.device(device), float(threshold)

    @torch.no_grad()
    def __call__(self, image_bgr: np.ndarray) -> BoxList:
        rgb = np.ascontiguousarray(image_bgr[:, :, ::-1])
        x = torch.from_numpy(rgb).permute(2, 0, 1).float().div(255.0).to(self.device)
        out = self.model([x])[0]
        keep = (out["labels"] == 1) & (out["scores"] >= self.threshold)
        xyxy = out["boxes"][keep].cpu().numpy()
        scores = out["scores"][keep].cpu().numpy()
        return [([float(a), float(b), float(c - a), float(d - b)], float(s))
                for (a, b, c, d), s in zip(xyxy, scores) if c > a and d > b]


def list_images(folder: str) -> List[str]:
    """Image files of a folder (not recursive), sorted by name."""
    if not os.path.isdir(folder):
        raise MissingFileError(f"image folder {folder!r} not found (--folder)")
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder)
                   if f.lower().endswith(IMAGE_EXTENSIONS))
    if not files:
        raise DataError(f"image folder {folder} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    return files


def coco_results(image_id: Any, kpts: np.ndarray, boxes: BoxList, estimator: PoseEstimator,
                 file_name: str = "") -> List[Dict[str, Any]]:
    """COCO keypoint-result entries (one per person) for one image."""
    out = []
    for k, (box, box_score) in enumerate(boxes):
        entry = {"image_id": image_id, "category_id": 1,
                 "keypoints": [round(float(v), 3) for v in kpts[k].reshape(-1)],
                 "score": round(estimator.person_score(kpts[k], box_score), 5),
                 "bbox": [round(float(v), 2) for v in box]}
        if file_name:
            entry["file_name"] = file_name
        out.append(entry)
    return out


def frames(path: str) -> Iterable[Tuple[int, np.ndarray, float]]:
    """(index, BGR frame, fps) of a video file."""
    cap = open_video(path, unlabeled=False)
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    try:
        k = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            yield k, frame, fps
            k += 1
    finally:
        cap.release()


def video_length(path: str) -> Optional[int]:
    cap = cv2.VideoCapture(path)
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
    cap.release()
    return n or None


__all__ = ["load_method", "PoseEstimator", "check_image", "whole_image_box", "read_detections",
           "read_annotation_boxes", "image_id_of", "TorchvisionDetector", "list_images",
           "coco_results", "frames", "video_length", "IMAGE_EXTENSIONS"]
