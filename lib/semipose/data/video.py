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
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from semipose.data.imageio import jpeg_size, read_bytes, read_image
from semipose.errors import DataError, ImageReadError, MissingFileError, UserError
from semipose.transforms.affine import box_to_center_scale
from semipose.types import Record
from semipose.utils.io import atomic_write, read_json

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
CACHE_NAME = ".frames_cache"
MANIFEST_NAME = "manifest.json"
INDEX_NAME = "images.json"
# Bumped when the cache layout or the frame selection changes, so old caches are re-extracted.
MANIFEST_VERSION = 1
JPEG_QUALITY = 95


# ----------------------------------------------------------------------------- names and ids
def frame_file(index: int) -> str:
    """Cached file name of frame ``index`` of a video: '000030.jpg'."""
    return f"{index:06d}.jpg"


def stable_image_id(file_name: str) -> int:
    """A positive int from a frame's/image's file name (53 bits of its SHA-1: exact in float64
    and JSON, so evaluation code and detectors that pass ids through floats keep it)."""
    digest = hashlib.sha1(file_name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") >> 11 or 1


def _has_ext(name: str, exts: Sequence[str]) -> bool:
    return name.lower().endswith(tuple(exts))


def list_media(folder: str, exclude: Optional[str] = None) -> Tuple[List[str], List[str]]:
    """(video relpaths, image relpaths) under ``folder``, '/'-separated, sorted by relpath.

    Names starting with '.' (files and folders) are skipped: the default frame cache, ``._*``
    macOS metadata files, notebook checkpoints. ``exclude`` (a frame cache placed inside the
    folder under another name) is skipped too, so cached frames never count as images.
    """
    skip = os.path.realpath(exclude) if exclude else None
    videos, images = [], []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")
                   and os.path.realpath(os.path.join(root, d)) != skip]
        rel_root = os.path.relpath(root, folder)
        for name in files:
            if name.startswith("."):
                continue
            rel = name if rel_root == "." else f"{rel_root.replace(os.sep, '/')}/{name}"
            if _has_ext(name, VIDEO_EXTENSIONS):
                videos.append(rel)
            elif _has_ext(name, IMAGE_EXTENSIONS):
                images.append(rel)
    return sorted(videos), sorted(images)


# ----------------------------------------------------------------------------- sampling
def sampled_indices(num_frames: int, every: int = 10, per_video: int = 0) -> List[int]:
    """Frame indices kept from a ``num_frames``-frame video.

    ``per_video`` N > 0: the middle frame of each of N equal parts, ``(2i + 1) * n // (2N)``
    (all frames when N >= n); otherwise every ``every``-th frame from frame 0.
    """
    if num_frames <= 0:
        return []
    if per_video > 0:
        if per_video >= num_frames:
            return list(range(num_frames))
        return [(2 * i + 1) * num_frames // (2 * per_video) for i in range(per_video)]
    return list(range(0, num_frames, every))


def _check_sampling(every: int, per_video: int) -> None:
    if per_video < 0:
        raise DataError(f"frames per video (DATASET.UNLABELED_PER_VIDEO / --per-video) is "
                        f"{per_video}; use a positive count, or 0 to keep every k-th frame")
    if per_video == 0 and every < 1:
        raise DataError(f"frame step (DATASET.UNLABELED_EVERY / --every) is {every}; use 1 (every "
                        f"frame) or more")


def _sampling(every: int, per_video: int) -> Dict[str, int]:
    return {"per_video": int(per_video)} if per_video > 0 else {"every": int(every)}


# ----------------------------------------------------------------------------- the cache
@dataclass
class Frame:
    """One unlabeled image: a cached video frame or an image file of the folder."""

    path: str          # the file training reads
    file_name: str     # name relative to the folder (see the module docstring)
    width: int
    height: int


def _video_stat(path: str) -> Dict[str, int]:
    st = os.stat(path)
    return {"size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


def _read_manifest(path: str) -> Optional[Dict[str, Any]]:
    """The manifest at ``path``, or None when it is missing or unreadable (then re-extract)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _manifest_valid(manifest: Optional[Dict[str, Any]], stat: Dict[str, int],
                    sampling: Dict[str, int], out_dir: str) -> bool:
    if manifest is None:
        return False
    if (manifest.get("version") != MANIFEST_VERSION or manifest.get("size") != stat["size"]
            or manifest.get("mtime_ns") != stat["mtime_ns"]
            or manifest.get("sampling") != sampling):
        return False
    frames = manifest.get("frames")
    if not isinstance(frames, list) or not frames:
        return False
    try:
        return all(os.path.isfile(os.path.join(out_dir, frame_file(int(i)))) for i in frames)
    except (TypeError, ValueError):  # a hand-edited or foreign manifest: extract again
        return False


def _open_video(path: str) -> "cv2.VideoCapture":
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        cap.release()
        raise DataError(f"cannot open video '{path}' with OpenCV (corrupt file, or a codec this "
                        f"OpenCV build lacks): re-encode it (e.g. ffmpeg -i IN -c:v libx264 "
                        f"OUT.mp4) or move it out of the unlabeled folder")
    return cap


def _reported_frames(path: str) -> int:
    """The frame count the container states (0 when it does not); opening the video here also
    reports a broken one before any long extraction starts."""
    cap = _open_video(path)
    try:
        return max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT)))
    finally:
        cap.release()


def _count_frames(path: str) -> int:
    """Frames of a video by reading through it (when the container does not state the count)."""
    cap = _open_video(path)
    n = 0
    try:
        while cap.grab():
            n += 1
    finally:
        cap.release()
    return n


def _write_jpeg(path: str, image: np.ndarray) -> None:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise DataError(f"cannot encode frame '{path}' as JPEG")
    data = buf.tobytes()
    # Atomic: a DataLoader worker or a later run never sees half a frame; no fsync (bulk data).
    atomic_write(path, lambda f: f.write(data), durable=False)


def _decode(path: str, keep: Callable[[int], bool], last: Optional[int], out_dir: str,
            bar: Any) -> Tuple[int, List[int], Tuple[int, int]]:
    """Read the video in order and cache the frames ``keep`` accepts, stopping after frame
    ``last`` (None: read to the end). Sequential reading keeps frame indices exact (seeking is
    not frame-exact for every codec). Returns (frames read, indices written, (width, height))."""
    cap = _open_video(path)
    written: List[int] = []
    size = (0, 0)
    index = 0
    try:
        while (last is None or index <= last) and cap.grab():
            if keep(index):
                ok, frame = cap.retrieve()
                if not ok or frame is None:
                    raise DataError(f"video '{path}': frame {index} cannot be decoded (corrupt "
                                    f"file); re-encode the video or move it out of the folder")
                _write_jpeg(os.path.join(out_dir, frame_file(index)), frame)
                written.append(index)
                size = (int(frame.shape[1]), int(frame.shape[0]))
                bar.update(1)
            index += 1
    finally:
        cap.release()
    return index, written, size


def _remove_stale(out_dir: str, keep: Sequence[int]) -> None:
    """Delete cached frames of an earlier sampling (only '<digits>.jpg' files)."""
    names = {frame_file(i) for i in keep}
    for name in os.listdir(out_dir):
        stem, ext = os.path.splitext(name)
        if ext == ".jpg" and stem.isdigit() and name not in names:
            try:
                os.remove(os.path.join(out_dir, name))
            except FileNotFoundError:  # another process removed it already
                pass


def _extract_video(path: str, rel: str, out_dir: str, reported: int, every: int,
                   per_video: int, bar: Any) -> Dict[str, Any]:
    """Decode and cache the sampled frames of one video; returns its new manifest."""
    stat = _video_stat(path)
    manifest_path = os.path.join(out_dir, MANIFEST_NAME)
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the frame cache folder '{out_dir}' ({exc}); give a "
                        f"writable cache folder (DATASET.UNLABELED_CACHE, or --cache-dir of "
                        f"the extract command)") from exc
    # The old manifest goes first: a run stopped half way re-extracts instead of trusting it.
    try:
        os.remove(manifest_path)
    except FileNotFoundError:
        pass

    if per_video > 0:
        count = reported if reported > 0 else _count_frames(path)
        wanted = sampled_indices(count, every, per_video)
        read, written, size = _decode(path, set(wanted).__contains__, max(wanted, default=-1),
                                      out_dir, bar)
        if wanted and read <= max(wanted):
            # The video ended early (the container stated more frames than it holds): spread
            # the frames over the real ones.
            count = read
            wanted = sampled_indices(count, every, per_video)
            missing = set(wanted) - set(written)
            if missing:
                _, more, more_size = _decode(path, missing.__contains__, max(missing), out_dir,
                                             bar)
                written += more
                size = more_size if more else size
    else:
        count, written, size = _decode(path, lambda i: i % every == 0, None, out_dir, bar)
        wanted = sampled_indices(count, every, per_video)

    frames = sorted(set(written) & set(wanted))
    if not frames:
        raise DataError(f"video '{path}' has no decodable frames; re-encode it or move it out "
                        f"of the unlabeled folder")
    _remove_stale(out_dir, frames)
    manifest = {"version": MANIFEST_VERSION, "video": rel, **stat,
                "sampling": _sampling(every, per_video), "frame_count": int(count),
                "width": size[0], "height": size[1], "frames": frames}
    text = json.dumps(manifest, indent=1)
    # Written last: its presence says every listed frame is complete.
    atomic_write(manifest_path, lambda f: f.write(text), mode="w", durable=False)
    return manifest


def _image_size(path: str) -> Tuple[int, int]:
    """(width, height) of an image file from its header (PNG IHDR, JPEG frame header); other
    content is decoded. Raises ImageReadError naming the file when it cannot be read."""
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
    except OSError as exc:
        raise ImageReadError(path, f"cannot read the file ({exc})") from exc
    if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) >= 24:
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if head[:2] == b"\xff\xd8":
        try:
            return jpeg_size(head, path)
        except ImageReadError:  # frame header beyond the first 64 KiB (large EXIF block)
            return jpeg_size(read_bytes(path), path)
    img = read_image(path)
    return int(img.shape[1]), int(img.shape[0])


def extract_frames(folder: str, every: int = 10, per_video: int = 0,
                   cache_dir: Optional[str] = None, progress: bool = True) -> List[Frame]:
    """Every unlabeled image of ``folder``: the sampled frames of each video (cached as JPEG,
    extracted only where the cache is missing or stale), then the image files.

    Order: videos in sorted relpath order with their frames in index order, then images in
    sorted relpath order. Raises MissingFileError for a missing folder, DataError for a folder
    without videos or images, a video OpenCV cannot open, or an unusable sampling.
    """
    if not os.path.isdir(folder):
        raise MissingFileError(f"unlabeled folder '{folder}' (DATASET.UNLABELED) not found: "
                               f"give a folder of videos (mp4/avi/mov) or images (jpg/png)")
    _check_sampling(every, per_video)
    cache_dir = os.path.join(folder, CACHE_NAME) if cache_dir is None else cache_dir
    videos, images = list_media(folder, exclude=cache_dir)
    if not videos and not images:
        raise DataError(f"unlabeled folder '{folder}' holds no videos "
                        f"({', '.join(VIDEO_EXTENSIONS)}) or images ({', '.join(IMAGE_EXTENSIONS)})"
                        f"; put them there (sub-folders are fine) or fix DATASET.UNLABELED")
    sampling = _sampling(every, per_video)

    # Plan first: which caches are stale, and how many frames they will give (the bar's total).
    manifests: Dict[str, Dict[str, Any]] = {}
    stale: List[Tuple[str, int]] = []
    for rel in videos:
        path, out_dir = os.path.join(folder, rel), os.path.join(cache_dir, rel)
        manifest = _read_manifest(os.path.join(out_dir, MANIFEST_NAME))
        if _manifest_valid(manifest, _video_stat(path), sampling, out_dir):
            manifests[rel] = manifest
        else:
            stale.append((rel, _reported_frames(path)))
    if stale:
        from tqdm import tqdm

        total = sum(len(sampled_indices(n, every, per_video)) for _, n in stale)
        logger.info("extracting frames of %d of %d video(s) into %s", len(stale), len(videos),
                    cache_dir)
        with tqdm(total=total or None, desc="extract frames", unit="frame",
                  disable=not progress, dynamic_ncols=True) as bar:
            for rel, reported in stale:
                bar.set_postfix_str(rel if len(rel) <= 40 else "..." + rel[-37:])
                manifests[rel] = _extract_video(os.path.join(folder, rel), rel,
                                                os.path.join(cache_dir, rel), reported, every,
                                                per_video, bar)

    frames: List[Frame] = []
    for rel in videos:
        m = manifests[rel]
        out_dir = os.path.join(cache_dir, rel)
        frames += [Frame(os.path.join(out_dir, frame_file(i)), f"{rel}/{frame_file(i)}",
                         int(m["width"]), int(m["height"])) for i in m["frames"]]
    for rel in images:
        path = os.path.join(folder, rel)
        frames.append(Frame(path, rel, *_image_size(path)))
    return frames


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
