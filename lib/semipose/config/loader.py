"""load_cfg / dump_cfg: YAML file + command-line overrides -> validated, frozen CfgNode, and back."""
from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import yaml
from yacs.config import CfgNode as CN

from .defaults import get_defaults
from .aliases import canonical_yaml
from .merge import ConfigError, extra_template, merge_dict, merge_opts, model_backbone
from .checks import validate
from ..errors import MissingFileError
from ..utils.io import atomic_write


def _read_yaml(path: str) -> dict:
    if not os.path.isfile(path):
        raise MissingFileError(f"config file not found: {path!r} (cwd {os.getcwd()!r})")
    with open(path, "r", encoding="utf-8") as f:
        try:
            data = yaml.safe_load(f)
        except yaml.YAMLError as err:
            raise ConfigError(f"config file {path} is not valid YAML: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys at top level, "
                          f"not a {type(data).__name__}")
    return canonical_yaml(data, path)  # the reference's key names -> the SSL section


BASE_KEY = "_BASE_"


def deep_merge(base: dict, top: dict) -> dict:
    """``top`` over ``base``: sections merge key by key, any other value of ``top`` replaces."""
    out = dict(base)
    for k, v in top.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_with_bases(path: str, chain: Sequence[str] = ()) -> dict:
    """The keys of ``path`` merged over those of its ``_BASE_`` file(s), recursively.

    ``_BASE_: other.yaml`` (or a list, merged in order) is resolved relative to the file's folder.
    Each file's own keys are checked against the defaults with that file named in the error; a
    cycle or a missing base raises ConfigError / FileNotFoundError naming the chain.
    """
    real = os.path.realpath(path)
    if real in chain:
        names = " -> ".join(os.path.relpath(p) for p in list(chain) + [real])
        raise ConfigError(f"{BASE_KEY} cycle: {names}; remove one of the {BASE_KEY} entries")
    data = _read_yaml(path)
    bases = data.pop(BASE_KEY, None)
    if bases is None:
        bases = []
    elif isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) and b for b in bases):
        raise ConfigError(f"{path}: {BASE_KEY} must be a file name or a list of file names, "
                          f"got {bases!r}")
    merged: dict = {}
    for b in bases:
        base_path = b if os.path.isabs(b) else os.path.join(os.path.dirname(path), b)
        if not os.path.isfile(base_path):
            raise MissingFileError(f"{path}: {BASE_KEY} file {b!r} not found (looked for "
                                   f"{base_path!r}; paths are relative to the file's folder)")
        merged = deep_merge(merged, read_with_bases(base_path, list(chain) + [real]))
    # This file's own keys checked over its bases, so an error names the file that has the key.
    probe = get_defaults()
    merge_dict(probe, merged, "the _BASE_ files of " + path, probe)
    merge_dict(probe, data, path, probe)
    return deep_merge(merged, data)


def load_cfg(path: str, opts: Sequence[str] = ()) -> CN:
    """Defaults <- YAML file ``path`` (over its ``_BASE_`` files) <- ``opts`` (flat
    [KEY, VALUE, ...]); validated and frozen.

    Unknown keys raise UnknownKeyError naming the key, the file (or 'command line') and the closest
    valid key; values of the wrong type raise ConfigTypeError; a missing file FileNotFoundError.
    """
    return build_cfg(read_with_bases(path), path, opts)


DICT_SOURCE = "the config dict"


def load_cfg_dict(data: Mapping[str, Any], opts: Sequence[Any] = (), base_dir: str = "",
                  source: str = DICT_SOURCE, opts_source: str = "overrides") -> CN:
    """:func:`load_cfg` of a nested mapping with the keys a YAML file would hold.

    ``_BASE_`` names YAML files relative to ``base_dir`` (default the current folder); their
    keys are merged first, as for a file. ``opts``: flat [KEY, VALUE, ...] whose values may be
    Python values or strings (read as on the command line). Errors name ``source`` for the
    mapping's keys and ``opts_source`` for the overrides. Validated and frozen.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"a config is a mapping of keys (as a YAML file holds), not a "
                          f"{type(data).__name__}")
    data = canonical_yaml(to_plain(dict(data)), source)  # the reference's key names, as in files
    bases = data.pop(BASE_KEY, None)
    bases = [] if bases is None else [bases] if isinstance(bases, str) else bases
    if not isinstance(bases, list) or not all(isinstance(b, str) and b for b in bases):
        raise ConfigError(f"{source}: {BASE_KEY} must be a file name or a list of file names, "
                          f"got {bases!r}")
    folder = base_dir or os.getcwd()
    merged: dict = {}
    for b in bases:
        base_path = b if os.path.isabs(b) else os.path.join(folder, b)
        if not os.path.isfile(base_path):
            raise MissingFileError(f"{source}: {BASE_KEY} file {b!r} not found (looked for "
                                   f"{base_path!r}; paths are relative to base_dir, default the "
                                   f"current folder)")
        merged = deep_merge(merged, read_with_bases(base_path))
    probe = get_defaults()  # the mapping's own keys checked over its bases, as for a file
    merge_dict(probe, merged, f"the {BASE_KEY} files of {source}", probe)
    merge_dict(probe, data, source, probe)
    return build_cfg(deep_merge(merged, data), source, opts, opts_source)


def build_cfg(data: dict, path: str, opts: Sequence[Any],
              opts_source: str = "command line") -> CN:
    """Defaults <- ``data`` (the merged keys of a file and its bases, named ``path`` in errors)
    <- ``opts`` (named ``opts_source``); validated and frozen. What load_cfg does after reading."""
    cfg = get_defaults()
    merge_dict(cfg, data, path, cfg)
    model = data.get("MODEL") if isinstance(data.get("MODEL"), dict) else {}
    if "EXTRA" not in model:  # e.g. an HRNet file without EXTRA gets the W32 defaults
        cfg.MODEL.EXTRA = extra_template({}, model_backbone(cfg.MODEL.NAME, cfg.MODEL.BACKBONE),
                                         path)
    opts = list(opts)
    merge_opts(cfg, opts, opts_source)
    source = f"{path} + {opts_source}" if opts else path
    resolve_num_joints(cfg, source)
    validate(cfg, source)
    cfg.freeze()
    return cfg


def resolve_num_joints(cfg: CN, source: str) -> None:
    """MODEL.NUM_JOINTS 0 -> the joint count of a custom dataset's joint space (its description
    file, or DATASET.JOINT_SPACE when set), so a template needs only DATASET.ROOT. Other values
    stay; the checks then require NUM_JOINTS > 0 and that it matches the joint space."""
    if cfg.MODEL.NUM_JOINTS != 0:
        return
    from ..data.keypoints import (CUSTOM_DATASETS, cfg_joint_space, description_of_cfg,
                                  is_custom_cfg)
    from ..data.meta import dataset_meta
    if not is_custom_cfg(cfg):
        raise ConfigError(
            f"MODEL.NUM_JOINTS 0 means 'the joint count of the dataset description', which only a "
            f"custom dataset has (DATASET.TRAIN_DATASET or TEST_DATASET one of "
            f"{list(CUSTOM_DATASETS)}; here {cfg.DATASET.TRAIN_DATASET!r} / "
            f"{cfg.DATASET.TEST_DATASET!r}): set MODEL.NUM_JOINTS to the joint count (config "
            f"{source})")
    try:
        if cfg.DATASET.JOINT_SPACE:
            space = dataset_meta(cfg_joint_space(cfg), "DATASET.JOINT_SPACE")
        else:
            space = description_of_cfg(cfg)
    except MissingFileError as err:
        raise ConfigError(f"MODEL.NUM_JOINTS 0 takes the joint count of the dataset description: "
                          f"{err} (config {source})") from None
    cfg.MODEL.NUM_JOINTS = space.num_joints


def to_plain(node: Any) -> Any:
    """CfgNode -> nested dict with lists (what yaml.safe_dump and json can write)."""
    if isinstance(node, dict):
        return {k: to_plain(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [to_plain(v) for v in node]
    return node


def dump_cfg(cfg: CN, path: str) -> None:
    """Write the full config as YAML to ``path`` atomically."""
    atomic_write(path, lambda f: yaml.safe_dump(to_plain(cfg), f, default_flow_style=None,
                                                sort_keys=False), mode="w")
