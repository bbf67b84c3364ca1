"""Video frames and images of an unlabeled folder: listing, sampling, the JPEG frame cache and
the stable image ids (the layout and naming rules are in data/video.py, which builds the person
records on top of these frames).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from semipose.data.imageio import jpeg_size, read_bytes, read_image
from semipose.errors import DataError, ImageReadError, MissingFileError
from semipose.utils.io import atomic_write

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


def open_video(path: str, unlabeled: bool = True) -> "cv2.VideoCapture":
    """An opened capture of ``path``, or a DataError saying how to mend the file (and, for a video
    of the unlabeled folder, that moving it out also works)."""
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        cap.release()
        fix = " or move it out of the unlabeled folder" if unlabeled else ""
        raise DataError(f"cannot open video '{path}' with OpenCV (corrupt file, or a codec this "
                        f"OpenCV build lacks): re-encode it (e.g. ffmpeg -i IN -c:v libx264 "
                        f"OUT.mp4){fix}")
    return cap


def _reported_frames(path: str) -> int:
    """The frame count the container states (0 when it does not); opening the video here also
    reports a broken one before any long extraction starts."""
    cap = open_video(path)
    try:
        return max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT)))
    finally:
        cap.release()


def _count_frames(path: str) -> int:
    """Frames of a video by reading through it (when the container does not state the count)."""
    cap = open_video(path)
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
    cap = open_video(path)
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
