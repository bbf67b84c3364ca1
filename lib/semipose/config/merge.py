"""Merging plain values (from YAML or the command line) into a CfgNode, with typed, named errors.

Every key must already exist; values are checked against the type of the default and converted
where the intent is unambiguous (int -> float, list -> tuple, an int size -> [v, v]).
"""
from __future__ import annotations

import difflib
from ast import literal_eval
from typing import Any, Iterable, List, Mapping, Optional, Sequence

from yacs.config import CfgNode as CN

# The config errors live with the other user errors; importing them from here keeps working.
from ..errors import ConfigError, ConfigTypeError, UnknownKeyError
from .defaults import resnet_extra

# Keys holding a [w, h] size: an int v means [v, v] (as in the reference loader).
SIZE_KEYS = ("MODEL.IMAGE_SIZE", "MODEL.EXTRA.HEATMAP_SIZE")
# String keys that were booleans: True/False (YAML or command line) keep their old meaning.
FORMER_BOOL_KEYS = {"TRAIN.COMPILE": {True: "default", False: ""}}


def all_keys(node: CN, prefix: str = "") -> List[str]:
    """Dotted names of every leaf and section under ``node``."""
    out = []
    for k, v in node.items():
        out.append(prefix + k)
        if isinstance(v, CN):
            out.extend(all_keys(v, prefix + k + "."))
    return out


def _suggest(full_key: str, root: CN) -> Optional[str]:
    """Closest valid dotted key: the same name in another section first, else by spelling."""
    keys = all_keys(root)
    leaf = full_key.rsplit(".", 1)[-1].upper()
    same_leaf = [k for k in keys if k.rsplit(".", 1)[-1] == leaf]
    if same_leaf:
        return same_leaf[0]
    upper = {k.upper(): k for k in keys}
    close = difflib.get_close_matches(full_key.upper(), list(upper), n=1, cutoff=0.6)
    return upper[close[0]] if close else None


def unknown_key(full_key: str, source: str, root: CN) -> UnknownKeyError:
    hint = _suggest(full_key, root)
    msg = f"unknown config key {full_key} in {source}"
    msg += f"; did you mean {hint}?" if hint else "; see lib/semipose/config/defaults.py for the valid keys"
    return UnknownKeyError(msg)


def _type_error(full_key: str, value: Any, expected: str, source: str) -> ConfigTypeError:
    return ConfigTypeError(f"config key {full_key} in {source}: got {value!r} "
                           f"({type(value).__name__}), expected {expected}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _coerce_scalar(value: Any, default: Any, full_key: str, source: str) -> Any:
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise _type_error(full_key, value, "bool (True/False)", source)
    if _is_int(default):
        if _is_int(value):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise _type_error(full_key, value, "int", source)
    if isinstance(default, float):
        if _is_int(value) or isinstance(value, float):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads '1e-3' (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise _type_error(full_key, value, "float", source)
    if isinstance(default, str):
        if isinstance(value, str):
            return value
        if value is None:  # an empty YAML value means the empty string
            return ""
        if _is_int(value):  # e.g. GPUS: 0 written without quotes
            return str(value)
        raise _type_error(full_key, value, "str", source)
    raise _type_error(full_key, value, type(default).__name__, source)


def _coerce_sequence(value: Any, default: Sequence, full_key: str, source: str) -> tuple:
    if full_key in SIZE_KEYS:
        if _is_int(value):
            value = [value, value]
        if not isinstance(value, (list, tuple)) or len(value) != 2 or not all(_is_int(v) for v in value):
            raise _type_error(full_key, value, "[width, height] of ints (or one int)", source)
        return tuple(value)
    if not isinstance(value, (list, tuple)):
        raise _type_error(full_key, value, "a list", source)
    if not default:
        return tuple(value)
    elem = default[0]
    return tuple(_coerce_scalar(v, elem, f"{full_key}[{i}]", source) for i, v in enumerate(value))


def coerce(value: Any, default: Any, full_key: str, source: str) -> Any:
    """``value`` converted to the type of ``default``; raises ConfigTypeError naming key and source."""
    if isinstance(default, (list, tuple)):
        return _coerce_sequence(value, default, full_key, source)
    if full_key in FORMER_BOOL_KEYS:
        if isinstance(value, str) and value.lower() in ("true", "false"):
            value = value.lower() == "true"
        if isinstance(value, bool):
            return FORMER_BOOL_KEYS[full_key][value]
    return _coerce_scalar(value, default, full_key, source)


def model_backbone(name: str, backbone: str) -> str:
    """The backbone MODEL.NAME / MODEL.BACKBONE select (a name may fix it, e.g. pose_hrnet)."""
    from ..methods.registry import METHODS, resolve
    if name not in METHODS:  # reported by the config checks; here only the template matters
        return backbone
    return resolve(name, backbone)[1]


def extra_template(yaml_extra: Mapping, backbone: str, source: str) -> CN:
    """The EXTRA template a YAML's MODEL.EXTRA is merged into (see defaults.py docstring): that of
    the backbone whose marker key it holds (NUM_LAYERS: ResNet, STAGE2: HRNet), else that of the
    model's own backbone."""
    from ..models.registry import backbone_of_extra, backbones
    table = backbones()
    kind = backbone_of_extra(yaml_extra, source) or backbone
    if kind not in table:  # an unknown MODEL.BACKBONE: the config checks name it
        return resnet_extra()
    return table[kind].template()


def merge_dict(node: CN, data: Mapping, source: str, root: CN, prefix: str = "") -> None:
    """Merge nested plain ``data`` into ``node`` (in place); ``root`` is used for suggestions."""
    for key, value in data.items():
        full = prefix + str(key)
        if key not in node:
            raise unknown_key(full, source, root)
        if full == "MODEL.EXTRA":
            if not isinstance(value, Mapping):
                raise _type_error(full, value, "a mapping of architecture keys", source)
            model = data  # MODEL.NAME / BACKBONE of this file if it sets them, else the current ones
            backbone = model_backbone(model.get("NAME", node.NAME),
                                      model.get("BACKBONE", node.BACKBONE))
            node.EXTRA = extra_template(value, backbone, source)
            merge_dict(node.EXTRA, value, source, root, full + ".")
        elif isinstance(node[key], CN):
            if not isinstance(value, Mapping):
                raise _type_error(full, value, "a mapping (section of keys)", source)
            merge_dict(node[key], value, source, root, full + ".")
        else:
            node[key] = coerce(value, node[key], full, source)


def _decode(text: Any) -> Any:
    """A command-line value as Python literal (yacs semantics), else the raw string."""
    if not isinstance(text, str):
        return text
    try:
        return literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def merge_opts(cfg: CN, opts: Iterable[str], source: str = "command line") -> None:
    """Merge trailing ``KEY VALUE`` pairs (full dotted keys) into ``cfg`` in place."""
    opts = list(opts)
    if len(opts) % 2:
        raise ConfigError(f"{source} overrides must be KEY VALUE pairs; got an odd number: {opts}")
    from .aliases import LEGACY, canonical_key, note_legacy
    for full, text in zip(opts[0::2], opts[1::2]):
        if full in LEGACY:
            note_legacy(full, source)
            continue
        full = canonical_key(full)  # the reference's names of the SSL keys
        node, parts = cfg, full.split(".")
        for i, part in enumerate(parts):
            if not isinstance(node, CN) or part not in node:
                raise unknown_key(full, source, cfg)
            if i < len(parts) - 1:
                node = node[part]
        if isinstance(node[parts[-1]], CN):
            raise ConfigError(f"{full} in {source} is a section; set its keys one by one "
                              f"(e.g. {full}.{next(iter(node[parts[-1]]))})")
        node[parts[-1]] = coerce(_decode(text), node[parts[-1]], full, source)
