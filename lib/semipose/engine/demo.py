"""pose_estimation/demo.py's job: a trained model over an image, a folder or a video.

Writes, under the output folder, one PNG per image (or one annotated video) with the skeletons
drawn, and one COCO keypoint-results json for all images (keypoints in image pixels, in the
dataset's native joint order, scored as the reference rescoring does).
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import cv2
import numpy as np
from tqdm import tqdm
from yacs.config import CfgNode

from ..data.imageio import read_image
from ..errors import ConfigError, DataError, MissingFileError
from ..inference import (BoxList, PoseEstimator, TorchvisionDetector, coco_results, frames,
                         image_id_of, list_images, load_method, read_annotation_boxes,
                         read_detections, video_length, whole_image_box)
from ..utils.dist import DistInfo
from ..utils.io import atomic_write
from .visualize import draw_people, encode_png

logger = logging.getLogger("semipose")


@dataclass(frozen=True)
class DemoOptions:
    """What demo.py was asked to do (one of image / folder / video is set)."""

    model_file: str
    out_dir: str
    image: str = ""
    folder: str = ""
    video: str = ""
    boxes: str = ""  # COCO detection json
    annotations: str = ""  # COCO annotation json (ground-truth boxes)
    detector: str = ""  # torchvision detection builder name
    detector_weights: str = ""
    detector_thre: float = 0.5
    box_thre: float = 0.0
    net: str = "net1"
    flip_test: Optional[bool] = None
    post_type: Optional[str] = None
    batch_size: Optional[int] = None
    kpt_thre: float = 0.2  # joints below are drawn faded
    allow_single: bool = False
    progress: bool = True


class BoxSource:
    """Person boxes per image from one of: a detection json, COCO annotations, a detector, or
    the whole image. ``describe`` says which (printed, so a whole-image run is never a surprise)."""

    def __init__(self, opts: DemoOptions, device: Any):
        self.names: Dict[str, Any] = {}
        self.table: Optional[Dict[Any, BoxList]] = None
        self.detector: Optional[TorchvisionDetector] = None
        if sum(bool(x) for x in (opts.boxes, opts.annotations, opts.detector)) > 1:
            raise ConfigError("give one box source: --boxes, --annotations or --detector")
        if opts.boxes:
            self.table = read_detections(opts.boxes, opts.box_thre)
            self.describe = f"boxes from {opts.boxes} (score >= {opts.box_thre})"
        elif opts.annotations:
            self.table, self.names = read_annotation_boxes(opts.annotations)
            self.describe = f"ground-truth boxes from {opts.annotations}"
        elif opts.detector:
            if not opts.detector_weights:
                raise ConfigError("--detector needs --detector-weights FILE (a local state dict; "
                                  "nothing is downloaded)")
            self.detector = TorchvisionDetector(opts.detector, opts.detector_weights, device,
                                                opts.detector_thre)
            self.describe = f"boxes from {opts.detector} (score >= {opts.detector_thre})"
        else:
            self.describe = "no boxes given: the whole image is one person box"
        self.missing = 0  # images the box table does not mention

    def __call__(self, image: np.ndarray, image_id: Any) -> BoxList:
        if self.detector is not None:
            return self.detector(image)
        if self.table is None:
            return whole_image_box(image)
        if image_id not in self.table:
            self.missing += 1
        return self.table.get(image_id, [])


def _legend(estimator: PoseEstimator) -> str:
    return f"{estimator.net}{' flip' if estimator.codec.flip_test else ''}"


def _annotate(image: np.ndarray, kpts: np.ndarray, boxes: BoxList, estimator: PoseEstimator,
              thr: float) -> np.ndarray:
    scores = [estimator.person_score(k, s) for k, (_, s) in zip(kpts, boxes)]
    return draw_people(image, kpts, [b for b, _ in boxes], scores, estimator.joint_set, thr,
                       legend=_legend(estimator))


def _images(opts: DemoOptions, estimator: PoseEstimator, source: BoxSource,
            results: List[Dict[str, Any]]) -> int:
    """Image or folder mode; returns the number of images."""
    if opts.image and not os.path.isfile(opts.image):
        raise MissingFileError(f"image {opts.image!r} not found (--image)")
    paths = [opts.image] if opts.image else list_images(opts.folder)
    chunk = max(1, estimator.batch_size)
    bar = tqdm(total=len(paths), desc="demo", unit="img", disable=not opts.progress)
    for start in range(0, len(paths), chunk):
        batch = []
        for path in paths[start:start + chunk]:
            image = read_image(path)
            image_id = image_id_of(path, source.names)
            batch.append((path, image, image_id, source(image, image_id)))
        kpts_all = estimator.predict_many(
            [(img, np.asarray([b for b, _ in boxes]).reshape(-1, 4)) for _, img, _, boxes in batch])
        for (path, image, image_id, boxes), kpts in zip(batch, kpts_all):
            results += coco_results(image_id, kpts, boxes, estimator, os.path.basename(path))
            stem = os.path.splitext(os.path.basename(path))[0]
            encode_png(_annotate(image, kpts, boxes, estimator, opts.kpt_thre),
                       os.path.join(opts.out_dir, stem + ".png"))
        bar.update(len(batch))
    bar.close()
    return len(paths)


def _video(opts: DemoOptions, estimator: PoseEstimator, source: BoxSource,
           results: List[Dict[str, Any]]) -> Tuple[int, str]:
    """Video mode: every frame (image_id = frame index) into <stem>_pose.mp4; (frames, path)."""
    if not os.path.isfile(opts.video):
        raise MissingFileError(f"video {opts.video!r} not found (--video)")
    stem = os.path.splitext(os.path.basename(opts.video))[0]
    path = os.path.join(opts.out_dir, stem + "_pose.mp4")
    tmp = os.path.join(opts.out_dir, f".tmp_{os.getpid()}_{stem}_pose.mp4")
    writer, n = None, 0
    try:
        for k, frame, fps in tqdm(frames(opts.video), total=video_length(opts.video),
                                  desc="demo", unit="frame", disable=not opts.progress):
            boxes = source(frame, k)
            kpts = estimator(frame, np.asarray([b for b, _ in boxes]).reshape(-1, 4))
            results += coco_results(k, kpts, boxes, estimator)
            if writer is None:
                h, w = frame.shape[:2]
                writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
                if not writer.isOpened():
                    raise OSError(f"cannot write a video to {tmp} (no mp4v encoder in OpenCV)")
            writer.write(_annotate(frame, kpts, boxes, estimator, opts.kpt_thre))
            n += 1
        if writer is not None:
            writer.release()
            writer = None
            os.replace(tmp, path)
    finally:
        if writer is not None:
            writer.release()
        if os.path.exists(tmp):
            os.remove(tmp)
    if n == 0:
        raise DataError(f"video {opts.video} has no readable frames")
    return n, path


def run_demo(cfg: CfgNode, info: DistInfo, opts: DemoOptions,
             echo: Callable[[str], None] = print) -> Dict[str, Any]:
    """Run the demo; returns {"images", "persons", "results", "outputs"} for the summary."""
    if sum(bool(x) for x in (opts.image, opts.folder, opts.video)) != 1:
        raise ConfigError("give exactly one of --image FILE, --folder DIR or --video FILE")
    t0 = time.time()
    method, layout = load_method(cfg, opts.model_file, info.device, opts.allow_single)
    estimator = PoseEstimator(method, cfg, info.device, net=opts.net, flip_test=opts.flip_test,
                              post_type=opts.post_type, batch_size=opts.batch_size)
    source = BoxSource(opts, info.device)
    echo(f"model {opts.model_file} ({layout} layout, {opts.net}) on {info.device}; "
         f"{source.describe}")
    os.makedirs(opts.out_dir, exist_ok=True)
    results: List[Dict[str, Any]] = []
    if opts.video:
        count, video = _video(opts, estimator, source, results)
        outputs = [video]
    else:
        count = _images(opts, estimator, source, results)
        outputs = [os.path.join(opts.out_dir, "*.png")]
    res_path = os.path.join(opts.out_dir, "keypoints_results.json")
    atomic_write(res_path, lambda f: json.dump(results, f), mode="w")
    outputs.append(res_path)
    what = "frames" if opts.video else "images"
    if source.missing:
        echo(f"warning: {source.missing} {what} have no boxes in the box file (image ids from "
             f"the file names; see --annotations for a name -> id table)")
    echo(f"{count} {what}, {len(results)} persons ({estimator.joint_set.name} joints) in "
         f"{time.time() - t0:.1f} s; wrote {', '.join(outputs)}")
    return {"images": count, "persons": len(results), "results": res_path, "outputs": outputs}
