"""Unlabeled person records from a folder of videos and/or images (DATASET.UNLABELED).

Layout of ``folder`` (nested folders allowed, walked in sorted order; names starting with '.'
are skipped, which also skips the frame cache and macOS ``._*`` files)::

    <folder>/clip1.mp4, sub/clip2.AVI, ...      videos: .mp4 .avi .mov (any case)
    <folder>/img1.jpg, sub/img2.png, ...        images: .jpg .jpeg .png (any case)

Video frames are sampled every ``every``-th frame (0, k, 2k, ...) or, with ``per_video`` N > 0,
N frames spread evenly (frame ``(2i + 1) * n // (2N)`` of an n-frame video, i = 0..N-1: the
middle of N equal parts). They are decoded once with OpenCV and cached as JPEG::

    <cache_dir>/<video relpath>/<frame index, 6 digits>.jpg   e.g. sub/clip2.AVI/000030.jpg
    <cache_dir>/<video relpath>/manifest.json                 video size + mtime, sampling, frames

``cache_dir`` defaults to ``<folder>/.frames_cache``. A manifest that still matches the video
(size, mtime) and the sampling, with all its frames on disk, is reused without opening the video;
otherwise the video is extracted again. Training (every epoch, every DataLoader worker) then reads
the cached JPEGs like any image.

Each frame and image has a *file name*: its path relative to ``folder`` as if the frames lay
beside their video, i.e. ``<video relpath>/<frame index, 6 digits>.jpg`` for a frame (e.g.
``sub/clip2.AVI/000030.jpg``) and ``<image relpath>`` for an image (e.g. ``sub/img2.png``). Its
``image_id`` is a stable number derived from that name (:func:`stable_image_id`): the same for
every run, machine and sampling, and unchanged when other videos are added. ``python -m
semipose.data.video extract FOLDER`` warms the cache and writes ``<cache_dir>/images.json`` (a
COCO ``images`` list: id, file_name, path, width, height) to run a detector on.

Boxes: ``boxes=''`` gives one whole-frame box per frame/image; a detection json (COCO results
format, a list of ``{"image_id" or "file_name", "bbox": [x, y, w, h], "score"}``) gives one
record per detection with ``score >= min_score``. ``file_name`` is the name above (the path of the
cached file relative to ``folder``, e.g. ``.frames_cache/clip.mp4/000030.jpg``, is accepted too).
Detections of frames that are not sampled are ignored.

Listing, sampling and the frame cache are data/video_frames.py; this module turns the frames into
person records (boxes, detections) and holds the command line.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from semipose.errors import DataError, MissingFileError, UserError
from semipose.transforms.affine import box_to_center_scale
from semipose.types import Record
from semipose.data.video_frames import (  # noqa: F401  (the frame names are re-exported)
    CACHE_NAME, IMAGE_EXTENSIONS, INDEX_NAME, VIDEO_EXTENSIONS, Frame, extract_frames, frame_file,
    list_media, sampled_indices, stable_image_id)
from semipose.utils.io import atomic_write, read_json

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- boxes
def _valid_box(box: Any) -> bool:
    """A box [x, y, w, h] of four finite numbers with w, h > 0."""
    try:
        vals = [float(v) for v in box[:4]]
    except (TypeError, ValueError, IndexError, KeyError):
        return False
    return len(vals) == 4 and all(np.isfinite(vals)) and vals[2] > 0 and vals[3] > 0


def _normalise_name(name: str) -> str:
    name = name.replace("\\", "/")
    while name.startswith("./"):
        name = name[2:]
    return name


def _detections(path: str, frames: List[Frame], ids: List[int], folder: str,
                cache_dir: str, min_score: float) -> List[Tuple[int, List[float], float]]:
    """(frame position, box [x, y, w, h], score) of each usable detection, in frame order and,
    within a frame, in file order."""
    if not os.path.isfile(path):
        raise MissingFileError(f"unlabeled detection file '{path}' (DATASET.UNLABELED_BOXES) not "
                               f"found: give a COCO results json (list of {{file_name or "
                               f"image_id, bbox, score}}) or '' for whole-frame boxes")
    dets = read_json(path, "unlabeled detection file (DATASET.UNLABELED_BOXES)")
    if not isinstance(dets, list):
        raise DataError(f"detection file {path} (DATASET.UNLABELED_BOXES) holds a "
                        f"{type(dets).__name__}; expected a list of {{file_name or image_id, "
                        f"bbox, score}} (COCO detection results)")
    by_name: Dict[str, int] = {}
    rel_cache = os.path.relpath(cache_dir, folder).replace(os.sep, "/")
    for pos, fr in enumerate(frames):
        by_name[fr.file_name] = pos
        if not rel_cache.startswith(".."):  # the cached file's own path, relative to the folder
            by_name[f"{rel_cache}/{fr.file_name}"] = pos
    by_id = {iid: pos for pos, iid in enumerate(ids)}

    kept: List[Tuple[int, int, List[float], float]] = []
    unknown, bad_box, low = 0, 0, 0
    for k, d in enumerate(dets):
        if not isinstance(d, dict) or "bbox" not in d or "score" not in d or not (
                "file_name" in d or "image_id" in d):
            raise DataError(f"detection file {path}: entry {k} needs 'bbox' [x, y, w, h], "
                            f"'score' and 'file_name' (or 'image_id'); got "
                            f"{sorted(d) if isinstance(d, dict) else type(d).__name__}")
        if "file_name" in d:
            pos = by_name.get(_normalise_name(str(d["file_name"])))
        else:
            try:
                pos = by_id.get(int(d["image_id"]))
            except (TypeError, ValueError):
                pos = None
        try:
            score = float(d["score"])
        except (TypeError, ValueError):
            raise DataError(f"detection file {path}: entry {k} has score {d['score']!r}; "
                            f"expected a number") from None
        if pos is None:
            unknown += 1  # e.g. a frame this sampling does not keep
        elif not _valid_box(d["bbox"]):
            bad_box += 1
        elif not score >= min_score:
            low += 1
        else:
            kept.append((pos, k, [float(v) for v in d["bbox"][:4]], score))
    if bad_box:
        logger.warning("%s: skipped %d detection(s) with a non-finite or empty 'bbox'", path,
                       bad_box)
    if unknown:
        logger.info("%s: %d detection(s) name frames or images that are not in the unlabeled "
                    "set (not sampled, or other files); ignored", path, unknown)
    if not kept:
        example = frames[0].file_name if frames else "clip.mp4/000000.jpg"
        raise DataError(
            f"detection file '{path}' gives no box for the unlabeled set ({len(dets)} entries: "
            f"{unknown} of unknown frames, {bad_box} with bad boxes, {low} below min_score "
            f"{min_score}); name frames by file_name relative to the folder, e.g. '{example}', "
            f"or by the image_id of images.json (python -m semipose.data.video extract)")
    kept.sort(key=lambda t: (t[0], t[1]))
    return [(pos, box, score) for pos, _, box, score in kept]


# ----------------------------------------------------------------------------- records
def unlabeled_records(folder: str, num_joints: int, every: int = 10, per_video: int = 0,
                      boxes: str = "", cache_dir: Optional[str] = None,
                      aspect_ratio: float = 0.75, min_score: float = 0.0,
                      progress: bool = True) -> List[Record]:
    """Person records of the unlabeled set in ``folder`` (see the module docstring).

    Args:
        folder: videos (.mp4/.avi/.mov) and/or images (.jpg/.jpeg/.png), nested folders allowed.
        num_joints: J, the model's joint count (joints are zeros: nothing is labeled).
        every: keep frames 0, k, 2k, ... of each video (when ``per_video`` is 0).
        per_video: > 0 keeps this many frames spread evenly over each video.
        boxes: '' = one whole-frame box per frame/image; else a detection json.
        cache_dir: where frames are cached; None = ``<folder>/.frames_cache``.
        aspect_ratio: crop width / height (MODEL.IMAGE_SIZE[0] / MODEL.IMAGE_SIZE[1]); boxes
            grow to it, as for COCO persons.
        min_score: detections with a lower score are dropped.
        progress: show a progress bar while frames are extracted.
    Returns:
        records as data/coco.py makes them: "image" (path), "image_id" (int, stable), "center"
        [2] and "scale" [2] float32 (box_to_center_scale: padding 1.25, PIXEL_STD units),
        "joints" float32 zeros [J, 2], "joints_vis" float32 zeros [J], "score" (float: 1.0 for
        whole frames, else the detection's), "raw_box" float32 [4] (x, y, w, h). A whole-frame
        box is [0, 0, width, height], so its center is (width / 2, height / 2).
    """
    cache_dir = os.path.join(folder, CACHE_NAME) if cache_dir is None else cache_dir
    frames = extract_frames(folder, every, per_video, cache_dir, progress)
    ids = [stable_image_id(fr.file_name) for fr in frames]
    if len(set(ids)) != len(ids):  # 53-bit ids: practically never; never silently merged
        raise DataError(f"unlabeled folder '{folder}': two file names share an image id; "
                        f"rename one of them")
    if boxes:
        dets = _detections(boxes, frames, ids, folder, cache_dir, min_score)
        where = [pos for pos, _, _ in dets]
        box_arr = np.asarray([b for _, b, _ in dets], np.float64).reshape(-1, 4)
        scores = [s for _, _, s in dets]
    else:
        where = list(range(len(frames)))
        box_arr = np.asarray([[0.0, 0.0, fr.width, fr.height] for fr in frames],
                             np.float64).reshape(-1, 4)
        scores = [1.0] * len(frames)
    center, scale = box_to_center_scale(box_arr, aspect_ratio)
    center, scale = center.reshape(-1, 2), scale.reshape(-1, 2)
    raw = box_arr.astype(np.float32)
    joints = np.zeros((num_joints, 2), np.float32)
    vis = np.zeros(num_joints, np.float32)
    return [{
        "image": frames[pos].path,
        "image_id": ids[pos],
        "center": center[i].copy(),
        "scale": scale[i].copy(),
        "joints": joints.copy(),
        "joints_vis": vis.copy(),
        "score": float(scores[i]),
        "raw_box": raw[i].copy(),
    } for i, pos in enumerate(where)]


def write_index(frames: List[Frame], path: str) -> None:
    """A COCO-style ``{"images": [{id, file_name, path, width, height}]}`` listing of the
    unlabeled set, for running a person/animal detector whose results feed ``boxes``."""
    images = [{"id": stable_image_id(fr.file_name), "file_name": fr.file_name,
               "path": os.path.abspath(fr.path), "width": fr.width, "height": fr.height}
              for fr in frames]
    text = json.dumps({"images": images}, indent=1)
    atomic_write(path, lambda f: f.write(text), mode="w", durable=False)


# ----------------------------------------------------------------------------- command line
def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m semipose.data.video",
        description="Warm the frame cache of an unlabeled folder of videos before training.")
    sub = ap.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("extract", help="decode and cache the sampled frames of every video; "
                                        "writes <cache>/images.json (id, file_name, path, size)")
    ex.add_argument("folder", help="folder of videos (mp4/avi/mov) and/or images")
    how = ex.add_mutually_exclusive_group()
    how.add_argument("--every", type=int, default=10,
                     help="keep every k-th frame (DATASET.UNLABELED_EVERY; default 10)")
    how.add_argument("--per-video", dest="per_video", type=int, default=0,
                     help="keep N frames spread evenly over each video "
                          "(DATASET.UNLABELED_PER_VIDEO)")
    ex.add_argument("--cache-dir", dest="cache_dir", default=None,
                    help=f"where frames go (default: <folder>/{CACHE_NAME})")
    ex.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    a = ap.parse_args(argv)
    try:
        cache_dir = a.cache_dir or os.path.join(a.folder, CACHE_NAME)
        frames = extract_frames(a.folder, a.every, a.per_video, cache_dir,
                                progress=not a.no_progress)
        index = os.path.join(cache_dir, INDEX_NAME)
        write_index(frames, index)
    except (UserError, OSError) as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    videos, images = list_media(a.folder, exclude=cache_dir)
    print(f"{len(frames) - len(images)} frames of {len(videos)} video(s) cached under "
          f"{cache_dir}, {len(images)} image file(s); index: {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
