"""Dataset metadata as data: a joint set (names, flip pairs, body halves, skeleton, colours, OKS
sigmas, joint weights) described by a YAML file.

The joint sets this project ships (COCO-17, MPII-16, AI Challenger-14 and the 24-joint union the
semi-supervised configs train in) are files under ``semipose/data/metas/``; a dataset of your own
brings one more. :func:`dataset_meta` turns a name or a path into a :class:`DatasetMeta`.

A description file (every key but ``joints`` is optional; joints are referred to by name, or by
0-based index)::

    name: hand5                      # default: the file name without .yaml
    joints: [wrist, lthumb, rthumb, lfinger, rfinger]
    flip_pairs: [[lthumb, rthumb], [lfinger, rfinger]]   # swapped by a horizontal flip
    upper_body: [wrist, lthumb, rthumb]                  # the two halves a half-body crop picks
    lower_body: [lfinger, rfinger]                       #   from (DATASET.PROB_HALF_BODY > 0)
    skeleton: [[wrist, lthumb], [wrist, rthumb], [wrist, lfinger], [wrist, rfinger]]
    palette: {left: [255, 120, 60], right: [40, 160, 255], centre: [80, 230, 80]}  # RGB
    joint_colors: [centre, left, right, left, right]     # a palette name or [r, g, b] per joint
    limb_colors: [left, right, left, right]              # per edge; default: its first joint's
    sigmas: [0.026, 0.025, 0.025, 0.035, 0.035]          # OKS sigmas; needed for OKS AP only
    joint_weights: [1.0, 1.0, 1.0, 1.0, 1.0]             # default 1 each

Flip pairs are never guessed from names here; :func:`guess_flip_pairs` proposes them for a
converter, which writes them into the file for the user to check. Without ``joint_colors`` the
first joint of each flip pair is drawn in the palette's ``left`` colour, the second in ``right``
and every other joint in ``centre`` (so write pairs as [left, right] for a correct legend).

A problem in a file raises :class:`~semipose.errors.DataError` with one line naming the file, the
key and, for lists, the entry (``meta_file.py`` reads and checks the file).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Sequence, Tuple, Union

import numpy as np
import yaml

from ..errors import ConfigLookupError, MissingFileError
from .meta_file import DEFAULT_PALETTE, RGB, Pair, parse_description, read_description_yaml

METAS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "metas")


@dataclass(frozen=True)
class DatasetMeta:
    """An ordered set of named joints and what the code needs to know about them.

    Indices everywhere are into ``names``. ``joint_colors`` / ``limb_colors`` are RGB, one per
    joint / skeleton edge; ``palette`` names the colours for a legend. ``sigmas`` is empty when
    the dataset gives no OKS sigmas. ``joint_weights`` are carried for the target weights of a
    dataset that needs them (the training does not read them yet; 1 each by default). ``source``
    is the file it was read from ('' if built in code).
    """

    name: str
    names: Tuple[str, ...]
    flip_pairs: Tuple[Pair, ...] = ()
    upper_body: Tuple[int, ...] = ()
    lower_body: Tuple[int, ...] = ()
    skeleton: Tuple[Pair, ...] = ()
    palette: Tuple[Tuple[str, RGB], ...] = DEFAULT_PALETTE
    joint_colors: Tuple[RGB, ...] = ()
    limb_colors: Tuple[RGB, ...] = ()
    sigmas: Tuple[float, ...] = ()
    joint_weights: Tuple[float, ...] = ()
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        # Fill the defaults that depend on other fields, so every meta can be drawn and weighted.
        if not self.joint_colors:
            object.__setattr__(self, "joint_colors",
                               default_joint_colors(len(self.names), self.flip_pairs, self.palette))
        if not self.limb_colors:
            object.__setattr__(self, "limb_colors",
                               tuple(self.joint_colors[a] for a, _ in self.skeleton))
        if not self.joint_weights:
            object.__setattr__(self, "joint_weights", (1.0,) * len(self.names))

    # ------------------------------------------------------------------ reading
    @property
    def num_joints(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        return self.names.index(name)

    @property
    def has_body_halves(self) -> bool:
        """Whether half-body crops can be drawn (both halves are listed)."""
        return bool(self.upper_body) and bool(self.lower_body)

    def body_masks(self) -> Tuple[np.ndarray, np.ndarray]:
        """(upper, lower) boolean masks [J] of the two body halves."""
        upper = np.zeros(self.num_joints, bool)
        lower = np.zeros(self.num_joints, bool)
        upper[list(self.upper_body)] = True
        lower[list(self.lower_body)] = True
        return upper, lower

    def describe(self) -> str:
        """'coco (17 joints, <file>)' for messages."""
        where = f", {self.source}" if self.source else ""
        return f"{self.name} ({self.num_joints} joints{where})"

    # ------------------------------------------------------------------ files
    @classmethod
    def from_yaml(cls, path: str) -> "DatasetMeta":
        """Read a description file; DataError (one line: file, key, entry) for bad content."""
        if not os.path.isfile(path):
            raise MissingFileError(f"dataset description '{path}' not found: give the path of a "
                                   f"YAML file with 'joints', 'flip_pairs', ... (see "
                                   f"{os.path.join(METAS_DIR, 'coco.yaml')})")
        default_name = os.path.splitext(os.path.basename(path))[0]
        return cls.from_dict(read_description_yaml(path), source=path, default_name=default_name)

    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>", default_name: str = "custom"
                  ) -> "DatasetMeta":
        """A meta from the parsed content of a description file (``source`` names it in errors)."""
        return cls(**parse_description(data, source, default_name), source=source)

    def to_dict(self) -> Dict[str, Any]:
        """The description-file content of this meta (joints by name); ``from_dict`` of it gives
        an equal meta."""
        n = self.names
        out: Dict[str, Any] = {"name": self.name, "joints": list(n)}
        if self.flip_pairs:
            out["flip_pairs"] = [[n[a], n[b]] for a, b in self.flip_pairs]
        if self.upper_body:
            out["upper_body"] = [n[j] for j in self.upper_body]
        if self.lower_body:
            out["lower_body"] = [n[j] for j in self.lower_body]
        if self.skeleton:
            out["skeleton"] = [[n[a], n[b]] for a, b in self.skeleton]
        out["palette"] = {k: list(v) for k, v in self.palette}
        by_colour = {}
        for k, v in reversed(self.palette):  # the first palette entry of a colour wins
            by_colour[v] = k
        colour = lambda c: by_colour.get(c, list(c))  # noqa: E731
        out["joint_colors"] = [colour(c) for c in self.joint_colors]
        if self.limb_colors != tuple(self.joint_colors[a] for a, _ in self.skeleton):
            out["limb_colors"] = [colour(c) for c in self.limb_colors]
        if self.sigmas:
            out["sigmas"] = [float(s) for s in self.sigmas]
        if any(w != 1.0 for w in self.joint_weights):
            out["joint_weights"] = [float(w) for w in self.joint_weights]
        return out

    def to_yaml(self) -> str:
        """``to_dict`` as YAML text (floats are written so that they read back bit-identical)."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None,
                              width=100)


# Existing code and tests call a joint set a JointSet; it is the same thing.
JointSet = DatasetMeta


def default_joint_colors(num_joints: int, flip_pairs: Sequence[Pair],
                         palette: Sequence[Tuple[str, RGB]] = DEFAULT_PALETTE
                         ) -> Tuple[RGB, ...]:
    """First joint of each flip pair 'left', second 'right', the rest 'centre' (palette names,
    falling back to the default palette's colours)."""
    table = dict(DEFAULT_PALETTE)
    table.update(dict(palette))
    colours = [table["centre"]] * num_joints
    for a, b in flip_pairs:
        colours[a], colours[b] = table["left"], table["right"]
    return tuple(colours)


def guess_flip_pairs(names: Sequence[str], left_first: bool = False) -> Tuple[Pair, ...]:
    """Left/right pairs proposed from the names, for a converter to write into a description file.

    A joint 'r<x>' pairs with 'l<x>' (this is how the built-in joint sets are named); so do
    'right<x>' / 'left<x>' and '<x>right' / '<x>left' (with or without a '_', '.', '-' or ' ' in
    between: right_ear, RightEar, ear_right, earRight), '<x>_r' / '<x>_l' (any of those
    separators) and, in camel case only, '<x>R' / '<x>L' (earR / earL; 'bear' never pairs with
    'beal'). Case is ignored otherwise. A joint that the rules would pair with two twins keeps
    the pair of lowest indices only (a joint has one mirror twin). Pairs are (lower index, higher index), sorted; with
    ``left_first`` (left, right) sorted by the left joint, the order a description file wants
    for its colours.
    """
    lowered = [n.lower() for n in names]
    index = {n: i for i, n in enumerate(lowered)}
    found: List[Tuple[int, int]] = []  # (right, left)
    for i, n in enumerate(names):
        for twin in _left_twins(n):
            j = index.get(twin)
            if j is not None and j != i and (i, j) not in found:
                found.append((i, j))
    pairs, used = set(), set()
    for right, left in sorted(found, key=lambda p: (min(p), max(p))):
        if right in used or left in used:
            continue
        used.update((right, left))
        pairs.add((left, right) if left_first else (min(left, right), max(left, right)))
    return tuple(sorted(pairs))


def _left_twins(name: str) -> List[str]:
    """Candidate 'left' names (lower case) of a joint name if it is a 'right' one."""
    low = name.lower()
    out = []
    if low.startswith("r") and len(low) > 1:
        out.append("l" + low[1:])
    if low.startswith("right") and len(low) > 5:
        out.append("left" + low[5:])
    if low.endswith("right") and len(low) > 5:
        out.append(low[:-5] + "left")
    for sep in ("_", ".", "-", " "):
        if low.endswith(sep + "r"):
            out.append(low[:-1] + "l")
    # earR / earL: an upper-case R after a lower-case letter or a digit ends a camel-case name.
    if len(name) > 1 and name.endswith("R") and (name[-2].islower() or name[-2].isdigit()):
        out.append(low[:-1] + "l")
    return out


# ---------------------------------------------------------------------------------- lookup
BUILTIN_FILES: Dict[str, str] = {"union": "union.yaml", "coco": "coco.yaml", "mpii": "mpii.yaml",
                                 "aic": "aic.yaml"}
# Dataset names (DATASET.TEST_DATASET) that are another name of a joint set.
ALIASES: Dict[str, str] = {"ai_challenger": "aic"}
_NAMED: Dict[str, DatasetMeta] = {}
_BY_FILE: Dict[Tuple[str, int], DatasetMeta] = {}


def register_dataset_meta(name: str, meta: Union[DatasetMeta, str]) -> DatasetMeta:
    """Make ``name`` a known joint set: a DatasetMeta, or the path of its description file.
    A built-in name keeps its built-in joint set (the module-level COCO, UNION, ... are it)."""
    if isinstance(meta, str):
        meta = DatasetMeta.from_yaml(meta)
    key = ALIASES.get(name, name)
    if key in BUILTIN_FILES and key in _NAMED and _NAMED[key] != meta:
        raise ValueError(f"joint set name {name!r} is built in ({_NAMED[key].describe()}); "
                         f"register {meta.describe()} under another name")
    _NAMED[key] = meta
    return meta


def known_meta_names() -> List[str]:
    return sorted(set(BUILTIN_FILES) | set(ALIASES) | set(_NAMED))


def is_meta_path(value: str) -> bool:
    """Whether a joint-set value is a file path rather than a name."""
    return value.endswith((".yaml", ".yml")) or "/" in value or os.sep in value


def dataset_meta(name_or_path: str, what: str = "joint set") -> DatasetMeta:
    """The joint set named ``name_or_path`` (union, coco, mpii, aic / ai_challenger, or one
    registered) or read from a description file (a path ending in .yaml or containing '/').

    The same name, or the same unchanged file, gives the same object. ``what`` names the setting
    in the error (e.g. 'DATASET.JOINT_SPACE').
    """
    value = str(name_or_path)
    if is_meta_path(value):
        path = os.path.realpath(value)
        key = (path, os.stat(path).st_mtime_ns if os.path.isfile(path) else -1)
        if key not in _BY_FILE:
            _BY_FILE[key] = DatasetMeta.from_yaml(value)
        return _BY_FILE[key]
    name = ALIASES.get(value, value)
    if name in _NAMED:
        return _NAMED[name]
    if name in BUILTIN_FILES:
        return register_dataset_meta(name, os.path.join(METAS_DIR, BUILTIN_FILES[name]))
    raise ConfigLookupError(f"{what} {value!r} is unknown: use one of {known_meta_names()} or "
                            f"the path of a dataset description .yaml (see {METAS_DIR})")


__all__ = ["DatasetMeta", "JointSet", "DEFAULT_PALETTE", "dataset_meta", "register_dataset_meta",
           "known_meta_names", "guess_flip_pairs", "default_joint_colors", "is_meta_path",
           "METAS_DIR"]
