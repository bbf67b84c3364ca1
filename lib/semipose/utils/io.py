"""Atomic file writes: every file the project writes (checkpoints, results, tables, configs,
figures, generated data) goes through here, so a crash or kill never leaves half a file."""
from __future__ import annotations

import io
import json
import os
import tempfile
from typing import IO, Any, Callable, Mapping, Optional

from ..errors import DataError

TMP_PREFIX = ".tmp_"


def sync_dir(folder: str) -> None:
    """Make a rename durable (POSIX: fsync the directory); a no-op where unsupported."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str, write: Callable[[IO], None], mode: str = "wb",
                 durable: bool = True) -> None:
    """Call ``write(f)`` on a temporary sibling of ``path``, then rename it over ``path``.

    ``durable`` also fsyncs the file and its folder (checkpoints, results); bulk writers such as
    the synthetic image generator switch it off for speed (the rename alone keeps them whole).
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=os.path.basename(path), dir=folder)
    try:
        # mkstemp creates 0600 files; give the result the mode of any file the user creates.
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            write(f)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if durable:
            sync_dir(folder)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_text(text: str, path: str) -> None:
    """Write a text file atomically and durably."""
    atomic_write(path, lambda f: f.write(text), mode="w")


def print_and_write(text: str, out: str) -> None:
    """Print a report (e.g. a benchmark's markdown) and write it atomically to ``out``
    ('-' = print only)."""
    print(text)
    if out != "-":
        atomic_write_text(text, out)
        print(f"wrote {out}")


_MAT_HEADER_BYTES = 116  # the MAT 5 text header, which savemat stamps with the creation time


def atomic_write_mat(path: str, arrays: Mapping[str, Any], header: Optional[str] = None,
                     durable: bool = True) -> None:
    """``scipy.io.savemat(arrays)`` written atomically, so readers never see half a file.

    ``header`` replaces the text header (padded with spaces): generated data stays byte-for-byte
    reproducible, without the time stamp. ``durable`` as in ``atomic_write``.
    """
    from scipy.io import savemat  # only the MPII/AIC writers need scipy

    buf = io.BytesIO()
    savemat(buf, arrays)
    data = bytearray(buf.getvalue())
    if header is not None:
        text = header.encode()
        if len(text) > _MAT_HEADER_BYTES:
            raise ValueError(f"a .mat text header holds {_MAT_HEADER_BYTES} bytes, got "
                             f"{len(text)}: {header!r}")
        data[:_MAT_HEADER_BYTES] = text.ljust(_MAT_HEADER_BYTES)
    atomic_write(path, lambda f: f.write(data), durable=durable)


def read_json(path: str, what: str = "json file") -> Any:
    """``json.load`` of ``path``; invalid JSON is a ValueError naming the file (and the position)."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{what} {path} is not valid JSON ({err}); re-download, regenerate or "
                        f"replace it") from err
