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
key and, for lists, the entry.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import yaml

from ..errors import ConfigLookupError, DataError, MissingFileError

RGB = Tuple[int, int, int]
Pair = Tuple[int, int]

METAS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "metas")
# The drawing colours of a description without a palette (RGB): left orange, right blue, centre
# green, the colours every skeleton of this project was drawn in.
DEFAULT_PALETTE: Tuple[Tuple[str, RGB], ...] = (
    ("left", (255, 120, 60)), ("right", (40, 160, 255)), ("centre", (80, 230, 80)))
KEYS = ("name", "joints", "flip_pairs", "upper_body", "lower_body", "skeleton", "palette",
        "joint_colors", "limb_colors", "sigmas", "joint_weights")


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
        with open(path, encoding="utf-8") as f:
            text = f.read()
        try:
            data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a safe loader)
        except yaml.YAMLError as err:
            raise DataError(f"{path}: not valid YAML ({_yaml_problem(err)})") from None
        default_name = os.path.splitext(os.path.basename(path))[0]
        return cls.from_dict(data, source=path, default_name=default_name)

    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>", default_name: str = "custom"
                  ) -> "DatasetMeta":
        """A meta from the parsed content of a description file (``source`` names it in errors)."""
        return _Reader(source).read(data, default_name)

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


# ---------------------------------------------------------------------------------- reading files
class _StrictLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """A safe YAML loader that refuses a key given twice in one mapping (YAML keeps the last one
    silently, e.g. a second 'sigmas:' would replace the first)."""

    def construct_mapping(self, node, deep=False):
        seen: Dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice (lines {seen[key]} and {line})",
                    key_node.start_mark)
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _yaml_problem(err: yaml.YAMLError) -> str:
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    mark = getattr(err, "problem_mark", None)
    return f"{problem}, line {mark.line + 1}" if mark is not None else str(problem)


class _Reader:
    """Checks and converts the content of one description file."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.names: Tuple[str, ...] = ()

    def fail(self, key: str, msg: str, entry: Optional[int] = None) -> DataError:
        at = f" entry {entry}" if entry is not None else ""
        return DataError(f"{self.source}: key '{key}'{at}: {msg}")

    def read(self, data: Any, default_name: str) -> DatasetMeta:
        if not isinstance(data, Mapping):
            raise DataError(f"{self.source}: expected a mapping with the keys {list(KEYS)}, got "
                            f"{type(data).__name__}")
        unknown = [k for k in data if k not in KEYS]
        if unknown:
            raise DataError(f"{self.source}: unknown key '{unknown[0]}'; the keys are {list(KEYS)}")
        name = data.get("name", default_name)
        if not isinstance(name, str) or not name:
            raise self.fail("name", f"must be a non-empty string, got {name!r}")
        self.names = self.joint_names(data.get("joints"))
        flip_pairs = self.pairs(data, "flip_pairs")
        self.check_flip_pairs(flip_pairs)
        upper, lower = self.joint_list(data, "upper_body"), self.joint_list(data, "lower_body")
        both = sorted(set(upper) & set(lower))
        if both:
            raise self.fail("lower_body", f"joint '{self.names[both[0]]}' is in upper_body too; "
                            f"a joint belongs to one half")
        skeleton = self.pairs(data, "skeleton")
        palette = self.palette(data.get("palette"))
        joint_colors = self.colours(data, "joint_colors", palette, self.num)
        limb_colors = self.colours(data, "limb_colors", palette, len(skeleton))
        sigmas = self.numbers(data, "sigmas", minimum=0.0, strict=True)
        weights = self.numbers(data, "joint_weights", minimum=0.0, strict=False)
        return DatasetMeta(name, self.names, flip_pairs, upper, lower, skeleton, palette,
                           joint_colors, limb_colors, sigmas, weights, source=self.source)

    @property
    def num(self) -> int:
        return len(self.names)

    def joint_names(self, value: Any) -> Tuple[str, ...]:
        if value is None:
            raise self.fail("joints", "is missing; list the joint names in the network's order")
        if not _is_list(value) or not value:
            raise self.fail("joints", f"must be a non-empty list of joint names, got {value!r}")
        seen: Dict[str, int] = {}
        for i, n in enumerate(value):
            if not isinstance(n, str) or not n:
                raise self.fail("joints", f"{n!r} is not a joint name (a non-empty string)", i)
            if n in seen:
                raise self.fail("joints", f"names '{n}' again (entry {seen[n]} too); joint names "
                                f"must be unique", i)
            seen[n] = i
        return tuple(value)

    def joint(self, value: Any, key: str, entry: int) -> int:
        """A joint given by name or 0-based index -> its index."""
        if isinstance(value, str):
            if value not in self.names:
                raise self.fail(key, f"unknown joint '{value}'; the joints are "
                                f"{', '.join(self.names)}", entry)
            return self.names.index(value)
        if isinstance(value, int) and not isinstance(value, bool):
            if not 0 <= value < self.num:
                raise self.fail(key, f"joint index {value} is out of range 0..{self.num - 1}",
                                entry)
            return value
        raise self.fail(key, f"{value!r} is neither a joint name nor a joint index", entry)

    def joint_list(self, data: Mapping, key: str) -> Tuple[int, ...]:
        value = data.get(key) or []
        if not _is_list(value):
            raise self.fail(key, f"must be a list of joints, got {value!r}")
        ids = [self.joint(v, key, i) for i, v in enumerate(value)]
        for i, j in enumerate(ids):
            if j in ids[:i]:
                raise self.fail(key, f"lists joint '{self.names[j]}' twice", i)
        return tuple(ids)

    def pairs(self, data: Mapping, key: str) -> Tuple[Pair, ...]:
        value = data.get(key) or []
        if not _is_list(value):
            raise self.fail(key, f"must be a list of joint pairs [a, b], got {value!r}")
        out = []
        for i, p in enumerate(value):
            if not _is_list(p) or len(p) != 2:
                raise self.fail(key, f"must be a pair of joints [a, b], got {p!r}", i)
            a, b = self.joint(p[0], key, i), self.joint(p[1], key, i)
            if a == b:
                raise self.fail(key, f"pairs joint '{self.names[a]}' with itself", i)
            out.append((a, b))
        return tuple(out)

    def check_flip_pairs(self, pairs: Sequence[Pair]) -> None:
        first: Dict[int, int] = {}
        for i, (a, b) in enumerate(pairs):
            for j in (a, b):
                if j in first:
                    raise self.fail("flip_pairs", f"joint '{self.names[j]}' is already in "
                                    f"entry {first[j]}; a joint has one mirror twin", i)
                first[j] = i

    def palette(self, value: Any) -> Tuple[Tuple[str, RGB], ...]:
        if value is None:
            return DEFAULT_PALETTE
        if not isinstance(value, Mapping) or not value:
            raise self.fail("palette", f"must map colour names to [r, g, b], got {value!r}")
        return tuple((str(k), self.rgb(v, "palette", None, f"colour '{k}'"))
                     for k, v in value.items())

    def rgb(self, value: Any, key: str, entry: Optional[int], what: str = "colour") -> RGB:
        ok = (_is_list(value) and len(value) == 3 and
              all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in value))
        if not ok:
            raise self.fail(key, f"{what} {value!r} must be [r, g, b] with integers 0..255", entry)
        return (value[0], value[1], value[2])

    def colours(self, data: Mapping, key: str, palette: Sequence[Tuple[str, RGB]], count: int
                ) -> Tuple[RGB, ...]:
        value = data.get(key)
        if value is None:
            return ()  # DatasetMeta fills the default
        if not _is_list(value) or len(value) != count:
            size = len(value) if _is_list(value) else repr(value)
            what = "joints" if key == "joint_colors" else "skeleton edges"
            raise self.fail(key, f"has {size} colours for {count} {what}; give one each")
        table = dict(palette)
        out = []
        for i, c in enumerate(value):
            if isinstance(c, str):
                if c not in table:
                    raise self.fail(key, f"colour '{c}' is not in the palette "
                                    f"({', '.join(table)})", i)
                out.append(table[c])
            else:
                out.append(self.rgb(c, key, i))
        return tuple(out)

    def numbers(self, data: Mapping, key: str, minimum: float, strict: bool) -> Tuple[float, ...]:
        """One finite number per joint, > minimum (strict) or >= minimum."""
        value = data.get(key)
        if value is None:
            return ()
        if not _is_list(value) or len(value) != self.num:
            size = len(value) if _is_list(value) else repr(value)
            raise self.fail(key, f"has {size} values for {self.num} joints; give one per joint "
                            f"in the order of 'joints'")
        out = []
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        for i, v in enumerate(value):
            x = _number(v)
            if x is None or not np.isfinite(x) or (x <= minimum if strict else x < minimum):
                raise self.fail(key, f"{v!r} ({self.names[i]}) must be a number {bound}", i)
            out.append(x)
        return tuple(out)


def _is_list(value: Any) -> bool:
    return isinstance(value, (list, tuple))


def _number(value: Any) -> Optional[float]:
    """A float from a YAML number; also from a string such as '1e-3', which YAML 1.1 reads as
    text (its floats need a dot). None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


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
