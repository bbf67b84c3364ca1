"""Synthetic quadruped dataset in the converted-folder layout of a custom keypoint dataset, a
DeepLabCut project of the same labels, and unlabeled video clips (``--body quadruped``).

Layout under ``out_dir``::

    dataset.yaml                      the description (a copy of metas/quadruped.yaml)
    annotations/train.json            COCO keypoints format, one animal per image, v = 2 labeled /
    annotations/val.json              0 not labeled (outside the image, hidden or occluded)
    images/{train,val}/clipNNN/NNNNNN.jpg    ten images per clip folder (nested file names)
    unlabeled/NNNNNN.jpg              num_unlabeled images without labels
    videos/clipNN.mp4 (or .avi)       ``videos`` unlabeled clips of an animal walking across
    dlc/                              with "dlc" in formats: a DeepLabCut project of the train and
      CollectedData_synthetic.csv       val labels (one file, Lightning Pose style) and per video
      labeled-data/<split>_clipNNN/     folder the images (PNG) and CollectedData_synthetic.csv
        imgNNNN.png

A joint is labeled where it is inside the image and its own body part is on top of its pixel, so
every labeled keypoint lies on the drawn animal. Image i of a split is rendered from the
``synthetic_quadruped`` stream of (seed, split code, i) and clip k from the ``synthetic_clip``
stream of (seed, k): the same seed gives byte-identical files with any number of workers. The DLC
image ``labeled-data/<split>_clipNNN/imgNNNN.png`` is the JPEG's scene ``images/<split>/clipNNN/
NNNNNN.jpg`` saved losslessly, and its CSV row holds the json's keypoints.
"""
from __future__ import annotations

import csv
import io
import math
import os
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from semipose.data import synthetic_formats as fmt
from semipose.data import synthetic_quadruped as quad
from semipose.data.synthetic_body import Draws
from semipose.data.synthetic_render import render_bodies
from semipose.data.synthetic_scene import _background, _occluders
from semipose.errors import ConfigError, UserError
from semipose.utils.streams import stream_rng

JPEG_QUALITY = 90
FORMATS = ("custom", "dlc")
SCORER = "synthetic"
CLIP_FOLDER_SIZE = 10  # images per images/<split>/clipNNN folder
_CODES = {"train": 1, "val": 2, "unlabeled": 3}
_ID_STRIDE = 10 ** 8
# OpenCV writer codes by file extension: both ship with the pip builds of OpenCV.
VIDEO_CODECS = {".mp4": "mp4v", ".avi": "MJPG"}


class VideoWriterError(UserError, OSError):
    """OpenCV cannot write a video file of the asked kind on this machine."""


# ---------------------------------------------------------------------------------- images
def _r2(v: float) -> float:
    return round(float(v), 2)


def _compact(animal: Dict) -> Dict:
    """JSON-ready animal: joints rounded to 0.01 px, labeled = visible (v 2), box from the rounded
    hull (so every rounded labeled joint stays inside it)."""
    hull = np.round(animal["hull"], 2)
    if len(hull):
        lo, hi = hull.min(0), hull.max(0)
        bbox = [float(lo[0]), float(lo[1]), _r2(hi[0] - lo[0]), _r2(hi[1] - lo[1])]
    else:
        bbox = [0.0, 0.0, 0.0, 0.0]
    labeled = (np.asarray(animal["vis"]) == 2).tolist()
    joints = [[_r2(x), _r2(y)] if ok else None
              for (x, y), ok in zip(np.asarray(animal["joints"]).tolist(), labeled)]
    return {"joints": joints, "bbox": bbox, "area": _r2(animal["area"])}


def _encode(img: np.ndarray, ext: str, path: str) -> bytes:
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if ext == ".jpg" else []
    ok, buf = cv2.imencode(ext, img, params)
    if not ok:
        raise RuntimeError(f"{ext} encoding failed for {path}")
    return buf.tobytes()


def _render_one(task: tuple) -> Dict:
    """Render one quadruped scene, write its JPEG (and the DLC PNG); return its animals."""
    seed, code, index, path, png_path, preset = task
    rng = stream_rng("synthetic_quadruped", seed=seed, split=code, index=index)
    img, animals, _ = quad.render_scene(quad.sample_scene(rng, preset))
    fmt.atomic_write(path, _encode(img, ".jpg", path))
    if png_path:
        fmt.atomic_write(png_path, _encode(img, ".png", png_path))
    h, w = img.shape[:2]
    return {"width": w, "height": h, "animals": [_compact(a) for a in animals]}


def coco_annotation(animal: Dict, image_id: int, ann_id: int) -> Optional[Dict]:
    """COCO keypoint annotation of a compact animal, or None when no joint is labeled."""
    kps: List[float] = []
    for j in animal["joints"]:
        kps += [j[0], j[1], 2] if j is not None else [0, 0, 0]
    n = sum(j is not None for j in animal["joints"])
    if n == 0:
        return None
    return {"id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": 0,
            "keypoints": kps, "num_keypoints": n, "bbox": animal["bbox"], "area": animal["area"]}


def coco_categories() -> List[Dict]:
    meta = quad.META
    return [{"id": 1, "name": meta.name, "supercategory": "animal", "keypoints": list(meta.names),
             "skeleton": [[a + 1, b + 1] for a, b in meta.skeleton]}]


def _file_name(split: str, index: int) -> str:
    return f"{split}/clip{index // CLIP_FOLDER_SIZE:03d}/{index:06d}.jpg"


def dlc_image_path(split: str, index: int) -> str:
    """The DLC project path (relative to the project folder) of image ``index`` of a split."""
    return f"labeled-data/{split}_clip{index // CLIP_FOLDER_SIZE:03d}/img{index:04d}.png"


# ---------------------------------------------------------------------------------- DLC CSV
def write_dlc_csv(path: str, bodyparts: Sequence[str],
                  rows: Sequence[Tuple[str, Sequence[Optional[Sequence[float]]]]],
                  scorer: str = SCORER) -> None:
    """Write a DeepLabCut label file (single animal, the CSV DeepLabCut and Lightning Pose read).

    Header rows ``scorer`` / ``bodyparts`` / ``coords`` (two columns, x and y, per body part),
    then one row per image: its path relative to the project folder (e.g.
    ``labeled-data/<video>/img0001.png``), then x, y per body part, empty cells for a joint that
    is not labeled (None). Numbers are written as Python writes floats, so they read back exact.
    """
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(["scorer"] + [scorer] * (2 * len(bodyparts)))
    out.writerow(["bodyparts"] + [b for b in bodyparts for _ in (0, 1)])
    out.writerow(["coords"] + ["x", "y"] * len(bodyparts))
    for image, joints in rows:
        if len(joints) != len(bodyparts):
            raise ValueError(f"{path}: row {image!r} has {len(joints)} joints for "
                             f"{len(bodyparts)} body parts")
        cells = [image]
        for j in joints:
            cells += ["", ""] if j is None else [repr(float(j[0])), repr(float(j[1]))]
        out.writerow(cells)
    fmt.atomic_write(path, buf.getvalue().encode())


def _write_dlc(project: str, rows: List[Tuple[str, list]]) -> str:
    """The project's label files: one for all images at the project folder, one per video folder
    (each with paths relative to the project folder, as DeepLabCut writes them)."""
    names = list(quad.META.names)
    csv_name = f"CollectedData_{SCORER}.csv"
    by_video: Dict[str, List[Tuple[str, list]]] = {}
    for image, joints in rows:
        by_video.setdefault(image.split("/")[1], []).append((image, joints))
    for video, video_rows in by_video.items():
        write_dlc_csv(os.path.join(project, "labeled-data", video, csv_name), names, video_rows)
    path = os.path.join(project, csv_name)
    write_dlc_csv(path, names, rows)
    return path


# ---------------------------------------------------------------------------------- generate
def check_formats(formats: Optional[Sequence[str]]) -> List[str]:
    if formats is None:
        return ["custom"]
    if isinstance(formats, str):
        formats = (formats,)
    out = ["custom"]  # the images and labels the DLC project copies are always written
    for f in formats:
        if f not in FORMATS:
            raise ConfigError(f"unknown synthetic dataset format '{f}' for body 'quadruped': use "
                              f"any of {FORMATS}")
        if f not in out:
            out.append(f)
    return out


def generate_quadruped(out_dir: str, seed: int = 0, num_train: int = 200, num_val: int = 50,
                       num_unlabeled: int = 0, show_progress: bool = True,
                       formats: Optional[Sequence[str]] = None, workers: int = 1,
                       preset: str = "standard", videos: int = 0, clip_frames: int = 48,
                       video_ext: str = ".mp4") -> Dict[str, str]:
    """Write the quadruped dataset under ``out_dir`` (layout in the module docstring); return
    {name: path}: "root", "description", "train", "val", "images", and "unlabeled" (with
    num_unlabeled > 0), "videos" (with videos > 0), "dlc_project" and "dlc_csv" (with "dlc" in
    formats)."""
    from semipose.data.synthetic import _run  # the people generator's process pool

    quad.scene_preset(preset)  # fail before any folder is written
    fmts = check_formats(formats)
    for name, n in (("num_train", num_train), ("num_val", num_val), ("num_unlabeled", num_unlabeled)):
        if not 0 <= n < _ID_STRIDE:
            raise ConfigError(f"{name}={n} is out of range: use 0 <= {name} < {_ID_STRIDE}")
    _check_video(videos, clip_frames, video_ext)
    dlc = os.path.join(out_dir, "dlc") if "dlc" in fmts else ""
    image_dir = os.path.join(out_dir, "images")
    tasks, owners = [], []
    for split, n in (("train", num_train), ("val", num_val), ("unlabeled", num_unlabeled)):
        for i in range(n):
            if split == "unlabeled":
                path, png = os.path.join(out_dir, "unlabeled", f"{i:06d}.jpg"), ""
            else:
                path = os.path.join(image_dir, *_file_name(split, i).split("/"))
                png = os.path.join(dlc, *dlc_image_path(split, i).split("/")) if dlc else ""
            for p in (path, png):
                if p:
                    os.makedirs(os.path.dirname(p), exist_ok=True)
            tasks.append((seed, _CODES[split], i, path, png, preset))
            owners.append((split, i))
    results = _run(tasks, max(1, int(workers)), show_progress, _render_one)
    paths = {"root": out_dir, "images": image_dir,
             "description": os.path.join(out_dir, "dataset.yaml")}
    with open(quad.DESCRIPTION, "rb") as f:
        fmt.atomic_write(paths["description"], f.read())
    by_split: Dict[str, List[Tuple[int, Dict]]] = {"train": [], "val": []}
    for (split, i), r in zip(owners, results):
        if split in by_split:
            by_split[split].append((i, r))
    ann_id, dlc_rows = 1, []
    os.makedirs(os.path.join(out_dir, "annotations"), exist_ok=True)
    for split in ("train", "val"):
        images, anns = [], []
        for i, r in by_split[split]:
            image_id = _CODES[split] * _ID_STRIDE + i + 1
            images.append({"id": image_id, "file_name": _file_name(split, i),
                           "width": r["width"], "height": r["height"]})
            for animal in r["animals"]:
                a = coco_annotation(animal, image_id, ann_id)
                if a is not None:
                    anns.append(a)
                    ann_id += 1
            dlc_rows.append((dlc_image_path(split, i), r["animals"][0]["joints"]))
        paths[split] = os.path.join(out_dir, "annotations", f"{split}.json")
        fmt.write_json(paths[split], {
            "info": {"description": "semipose synthetic quadrupeds", "version": "1.0",
                     "seed": seed, "contributor": "semipose.data.synthetic"},
            "images": images, "annotations": anns, "categories": coco_categories()})
    if num_unlabeled:
        paths["unlabeled"] = os.path.join(out_dir, "unlabeled")
    if dlc:
        paths["dlc_project"] = dlc
        paths["dlc_csv"] = _write_dlc(dlc, dlc_rows)
    if videos:
        paths["videos"] = os.path.join(out_dir, "videos")
        os.makedirs(paths["videos"], exist_ok=True)
        for k in range(videos):
            render_clip(os.path.join(paths["videos"], f"clip{k:02d}{video_ext}"), seed=seed,
                        index=k, num_frames=clip_frames, preset=preset)
    return paths


# ---------------------------------------------------------------------------------- clips
def _check_video(videos: int, num_frames: int, ext: str) -> None:
    if videos < 0:
        raise ConfigError(f"videos={videos}: give the number of clips to render (0 = none)")
    if num_frames < 1:
        raise ConfigError(f"clip_frames={num_frames}: a clip needs at least 1 frame")
    if ext not in VIDEO_CODECS:
        raise ConfigError(f"video file extension {ext!r} is not supported: use one of "
                          f"{sorted(VIDEO_CODECS)}")


def render_clip(path: str, seed: int = 0, index: int = 0, num_frames: int = 48,
                size: Tuple[int, int] = (320, 240), fps: float = 15.0,
                preset: str = "standard") -> Dict:
    """Write a short unlabeled clip of one quadruped walking across the frame to ``path``
    (.mp4 with the mp4v codec, or .avi with MJPG) and return what was drawn.

    The background, occluders, the animal and its path come from the ``synthetic_clip`` stream of
    (seed, index); each frame has its own sensor noise. The walk moves the body by about two
    strides' length per gait cycle, so the paws do not slide much. ``size`` is (width, height),
    both even (the MPEG-4 codec needs it); ``preset`` picks the clutter ("standard" or "light").
    Returns {"path", "num_frames", "width", "height", "fps", "joints" [T, 16, 2] (pixels),
    "vis" [T, 16] (2 visible, 1 hidden, 0 outside)}.
    """
    ext = os.path.splitext(path)[1].lower()
    _check_video(1, num_frames, ext)
    w, h = int(size[0]), int(size[1])
    if w < 32 or h < 32 or w % 2 or h % 2:
        raise ConfigError(f"clip size {w}x{h}: use even sizes of at least 32 pixels")
    p = quad.scene_preset(preset)
    d = Draws(stream_rng("synthetic_clip", seed=seed, index=index))
    bg = _background(d, w, h, p)
    animal = quad.sample_quadruped(d, w, h)
    heading = animal["facing"]
    size_px = animal["height"] = min(animal["height"], 0.35 * w)  # room to walk across
    x0, x1 = d.u(0.12, 0.3) * w, d.u(0.7, 0.88) * w
    if heading < 0:
        x0, x1 = w - x0, w - x1
    animal["rotation"] = d.n(0, 0.03)
    stride, lift, phase0 = d.u(0.25, 0.45), d.u(0.4, 0.9), d.u()
    occluders = _occluders(d, w, h, [], p)
    light = d.u(0, 2 * math.pi)
    cameras = [quad.sample_camera(d, w, h) for _ in range(num_frames)]
    for cam in cameras[1:]:  # exposure and focus stay; the sensor noise changes every frame
        cam.update(gain=cameras[0]["gain"], bias=cameras[0]["bias"], blur=cameras[0]["blur"],
                   noise=cameras[0]["noise"])
    y = animal["anchor"][1]
    cycle = 2 * 2 * stride * quad.LEG_LENGTH * size_px  # pixels the body moves per gait cycle

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)), "." + os.path.basename(path) + ".tmp"
                       + ext)
    writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*VIDEO_CODECS[ext]), float(fps), (w, h))
    if not writer.isOpened():
        raise VideoWriterError(f"OpenCV cannot write {path} with the {VIDEO_CODECS[ext]} codec on "
                               f"this machine (see the 'Video I/O' lines of "
                               f"cv2.getBuildInformation()); try the other of "
                               f"{sorted(VIDEO_CODECS)}")
    joints, vis = [], []
    try:
        for t in range(num_frames):
            x = x0 + (x1 - x0) * (t / max(1, num_frames - 1))
            spec = dict(animal, anchor=(x, y), pose=dict(animal["pose"]))
            spec["pose"].update(quad.walk_legs(phase0 + abs(x - x0) / cycle, stride, lift))
            scene = {"width": w, "height": h, "light": light, "background": bg,
                     "occluders": occluders, "camera": cameras[t]}
            img, animals, _ = render_bodies(scene, [quad.build_quadruped(spec)], quad.PARTS,
                                            quad.JOINT_PART_OK)
            writer.write(img)
            joints.append(animals[0]["joints"])
            vis.append(animals[0]["vis"])
    except BaseException:
        writer.release()
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    writer.release()
    os.replace(tmp, path)
    return {"path": path, "num_frames": num_frames, "width": w, "height": h, "fps": float(fps),
            "joints": np.stack(joints), "vis": np.stack(vis)}
