"""Reading and checking a dataset description file (the format is in ``semipose.data.meta``):
the YAML text to a mapping (a key given twice is an error), and the mapping to the fields of a
:class:`~semipose.data.meta.DatasetMeta`, with one DataError line naming the file, the key and,
for lists, the entry at the first problem."""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import yaml

from ..errors import DataError

RGB = Tuple[int, int, int]
Pair = Tuple[int, int]

# The drawing colours of a description without a palette (RGB): left orange, right blue, centre
# green, the colours every skeleton of this project was drawn in.
DEFAULT_PALETTE: Tuple[Tuple[str, RGB], ...] = (
    ("left", (255, 120, 60)), ("right", (40, 160, 255)), ("centre", (80, 230, 80)))
KEYS = ("name", "joints", "flip_pairs", "upper_body", "lower_body", "skeleton", "palette",
        "joint_colors", "limb_colors", "sigmas", "joint_weights")


def read_description_yaml(path: str) -> Any:
    """The parsed content of the description file ``path`` (which exists)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a safe loader)
    except yaml.YAMLError as err:
        raise DataError(f"{path}: not valid YAML ({_yaml_problem(err)})") from None


def parse_description(data: Any, source: str, default_name: str) -> Dict[str, Any]:
    """The DatasetMeta fields (all but ``source``) of a description's parsed content."""
    return _Reader(source).read(data, default_name)


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

    def read(self, data: Any, default_name: str) -> Dict[str, Any]:
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
        return dict(name=name, names=self.names, flip_pairs=flip_pairs, upper_body=upper,
                    lower_body=lower, skeleton=skeleton, palette=palette,
                    joint_colors=joint_colors, limb_colors=limb_colors, sigmas=sigmas,
                    joint_weights=weights)

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
