"""Errors the user fixes: a config key or value, a file, a dataset, a checkpoint.

Every class here derives from :class:`UserError`. The command-line tools print a ``UserError`` as
one ``error: ...`` line and exit with status 2 (``semipose.engine.cli.run_job``); any other
exception is a bug and keeps its traceback. ``SEMIPOSE_TRACEBACK=1`` prints the traceback of user
errors too. Messages name the file, key or value and say what to do.

Each subclass also derives from the builtin exception the code raised at its sites before this
family existed (``ConfigError`` is a ``ValueError``, ``MissingFileError`` a
``FileNotFoundError``, ...), so ``except ValueError`` and ``pytest.raises(FileNotFoundError)``
keep matching. Raise the builtin itself for a programming error (a wrong argument from code, a
broken invariant): that one must reach the user with its traceback.

This module imports nothing from the package, so any module (and a DataLoader worker) can use it.
"""
from __future__ import annotations

from typing import Optional


class UserError(Exception):
    """A problem in the user's input; the message names it and what to do."""


# ------------------------------------------------------------------------------------ config
class ConfigError(UserError, ValueError):
    """A config key or value, or a command-line option, that the user fixes in the named file or
    on the command line."""


class UnknownKeyError(ConfigError):
    """A key that does not exist in the defaults."""


class ConfigTypeError(ConfigError, TypeError):
    """A value whose type does not fit the key's default."""


class ConfigLookupError(ConfigError, KeyError):
    """A config value that names no entry of a table (e.g. a DATASET.TRAIN_DATASET that is not
    registered), or a config key that a part needs and the config lacks. Also a KeyError, as
    these lookups were before."""

    def __str__(self) -> str:
        # The message itself, not KeyError's quoted repr of it.
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


# ------------------------------------------------------------------------------------ files
class MissingFileError(UserError, FileNotFoundError):
    """A file or folder named by the config or a command-line option does not exist."""


class DataError(UserError, ValueError):
    """A dataset, annotation, detection or box file whose content cannot be used: invalid JSON,
    wrong fields or shapes, nothing left to train or score on."""


class UnsupportedImageError(DataError):
    """An image the device data path cannot decode (not a JPEG). Not an ImageReadError on
    purpose: DATASET.SKIP_BAD_IMAGES must not silently skip a whole PNG dataset."""


class ImageReadError(UserError, OSError):
    """An image (or zip member) is missing or cannot be decoded; the message names the path."""

    def __init__(self, path: str, reason: Optional[str] = None) -> None:
        # One argument: a complete message, as a DataLoader passes when it re-raises a worker's
        # error in the main process (so the type survives the worker boundary).
        super().__init__(path if reason is None else f"cannot read image '{path}': {reason}")
        self.path = path
        self.reason = reason


# ------------------------------------------------------------------------------------ weights
class WeightsError(UserError, ValueError):
    """A weights file (a checkpoint, released weights, an ImageNet initialisation) that cannot be
    read or does not fit the configured model."""


class CheckpointError(UserError, RuntimeError):
    """A resume checkpoint exists but cannot be used; the message names it and what to do."""


# ------------------------------------------------------------------------------------ runs
class RunFolderError(UserError, ValueError):
    """A run folder that cannot be used: a named run that already exists, or a folder locked by
    a live run."""


__all__ = [
    "CheckpointError", "ConfigError", "ConfigLookupError", "ConfigTypeError", "DataError",
    "ImageReadError", "MissingFileError", "RunFolderError", "UnknownKeyError",
    "UnsupportedImageError", "UserError", "WeightsError",
]
