"""Image decoding from folders or zip archives.

Zip members are addressed as ``"<archive>.zip@/<member>"`` (e.g.
``data/coco/images/val2017.zip@/val2017/000000000785.jpg``). Each process keeps one open
``ZipFile`` per archive: opening a large archive re-reads its central directory, far too slow
per sample, and a handle inherited through ``fork`` shares its file offset with the parent,
so handles are keyed by process id and reopened in every DataLoader worker.
"""
from __future__ import annotations

import os
import zipfile
from typing import Dict, Optional, Tuple

import cv2
import numpy as np

# The image errors live with the other user errors; importing them from here keeps working.
from ..errors import ImageReadError, UnsupportedImageError

ZIP_SEPARATOR = ".zip@/"

# OpenCV's default honours EXIF orientation; the reference ignores it, and boxes/keypoints in
# the annotation files refer to the stored (unrotated) pixel grid.
_IMREAD_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION

_ZIP_HANDLES: Dict[Tuple[int, str], zipfile.ZipFile] = {}


def split_zip_path(path: str) -> Optional[Tuple[str, str]]:
    """``"a/b.zip@/dir/x.jpg"`` -> ``("a/b.zip", "dir/x.jpg")``; None for a plain file path."""
    pos = path.find(ZIP_SEPARATOR)
    if pos < 0:
        return None
    return path[: pos + len(".zip")], path[pos + len(ZIP_SEPARATOR):]


def zip_member_path(archive: str, member: str) -> str:
    """Inverse of :func:`split_zip_path`."""
    if not archive.endswith(".zip"):
        raise ValueError(f"zip archive path must end in '.zip', got '{archive}'")
    return f"{archive}@/{member}"


def _zip_handle(archive: str) -> zipfile.ZipFile:
    key = (os.getpid(), archive)
    handle = _ZIP_HANDLES.get(key)
    if handle is None:
        if not os.path.isfile(archive):
            raise ImageReadError(archive, "zip archive not found; check DATASET.ROOT and "
                                          "DATASET.DATA_FORMAT (use 'jpg' for image folders)")
        try:
            handle = zipfile.ZipFile(archive, "r")
        except zipfile.BadZipFile as exc:
            raise ImageReadError(archive, f"not a valid zip archive ({exc}); re-create it") from exc
        # Handles of other processes (inherited through fork) must not be used or closed here.
        for stale in [k for k in _ZIP_HANDLES if k[0] != key[0]]:
            del _ZIP_HANDLES[stale]
        _ZIP_HANDLES[key] = handle
    return handle


def read_bytes(path: str) -> bytes:
    """Raw bytes of a file or of a zip member (``"<archive>.zip@/<member>"``)."""
    parts = split_zip_path(path)
    if parts is None:
        try:
            with open(path, "rb") as f:
                return f.read()
        except FileNotFoundError as exc:
            raise ImageReadError(path, "file not found; check DATASET.ROOT and the image "
                                       "folder layout") from exc
    archive, member = parts
    try:
        return _zip_handle(archive).read(member)
    except KeyError as exc:
        raise ImageReadError(path, f"member '{member}' not in archive '{archive}'; the archive "
                                   "must contain '<folder>/<file>' entries") from exc
    except (zipfile.BadZipFile, OSError) as exc:
        if isinstance(exc, ImageReadError):
            raise
        raise ImageReadError(path, f"zip read failed ({exc}); re-create the archive") from exc


_JPEG_SOI, _JPEG_EOI = b"\xff\xd8", b"\xff\xd9"


def check_complete(data: bytes, path: str) -> None:
    """Reject empty files and JPEGs cut short (no end-of-image marker near the end): libjpeg
    decodes a truncated file as a grey-filled image with only a warning on stderr, so a cut
    download would otherwise be trained on."""
    if not data:
        raise ImageReadError(path, "empty file (0 bytes); replace it, or set "
                                   "DATASET.SKIP_BAD_IMAGES True to skip such images")
    # In JPEG entropy data 0xFF is always byte-stuffed, so FF D9 only occurs as the EOI marker
    # (of the image, or of an EXIF thumbnail near the start); a few trailing bytes are allowed.
    if data[:2] == _JPEG_SOI and _JPEG_EOI not in data[-1024:]:
        raise ImageReadError(path, f"truncated JPEG ({len(data)} bytes, no end-of-image marker); "
                                   "replace it, or set DATASET.SKIP_BAD_IMAGES True to skip such "
                                   "images")


# Start-of-frame markers carry the image size; C4 (DHT), C8 (JPG) and CC (DAC) share the range.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def jpeg_size(data: bytes, path: str = "<bytes>") -> Tuple[int, int]:
    """(width, height) from a JPEG's frame header, without decoding (a few microseconds).

    The stored pixel grid, as decoded with EXIF orientation ignored. Raises
    UnsupportedImageError for other formats and ImageReadError for a JPEG without a readable
    frame header.
    """
    if data[:2] != _JPEG_SOI:
        raise UnsupportedImageError(
            f"image '{path}' is not a JPEG: DATASET.DEVICE_PIPELINE decodes JPEG files only; "
            "convert the images to JPEG or set DATASET.DEVICE_PIPELINE False")
    pos, end = 2, len(data)
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            break
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length field
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        if marker in _SOF_MARKERS and pos + 9 <= end:
            height = int.from_bytes(data[pos + 5:pos + 7], "big")
            width = int.from_bytes(data[pos + 7:pos + 9], "big")
            if width > 0 and height > 0:
                return width, height
            break
        pos += 2 + length
    raise ImageReadError(path, "JPEG without a readable frame header (corrupt file); replace it, "
                               "or set DATASET.SKIP_BAD_IMAGES True to skip such images")


def decode_bytes(data: bytes, path: str = "<bytes>", color_rgb: bool = False) -> np.ndarray:
    """Decode encoded image bytes -> uint8 [H, W, 3], BGR unless ``color_rgb``."""
    check_complete(data, path)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), _IMREAD_FLAGS)
    if img is None:
        raise ImageReadError(path, "not a decodable image (corrupt or truncated file); replace "
                                   "it, or set DATASET.SKIP_BAD_IMAGES True to skip such images")
    if color_rgb:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return img


def read_image(path: str, color_rgb: bool = False) -> np.ndarray:
    """Read an image file or zip member -> uint8 [H, W, 3] (BGR unless ``color_rgb``).

    Raises ImageReadError (an OSError) naming the path when it is missing, empty, truncated or
    undecodable. Files are read as bytes and decoded (as fast as cv2.imread) so that the
    completeness check sees them.
    """
    return decode_bytes(read_bytes(path), path, color_rgb)


def close_zip_handles() -> None:
    """Close this process's open archives (tests, or before forking many workers)."""
    pid = os.getpid()
    for key in [k for k in _ZIP_HANDLES if k[0] == pid]:
        _ZIP_HANDLES.pop(key).close()
