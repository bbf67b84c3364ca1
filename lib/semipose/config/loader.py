"""load_cfg / dump_cfg: YAML file + command-line overrides -> validated, frozen CfgNode, and back."""
from __future__ import annotations

import os
from typing import Any, Sequence

import yaml
from yacs.config import CfgNode as CN

from .defaults import get_defaults, hrnet_extra
from .merge import ConfigError, is_hrnet_model, merge_dict, merge_opts
from .validate import validate
from ..utils.io import atomic_write


def _read_yaml(path: str) -> dict:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file not found: {path!r} (cwd {os.getcwd()!r})")
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
    return data


def load_cfg(path: str, opts: Sequence[str] = ()) -> CN:
    """Defaults <- YAML file ``path`` <- ``opts`` (flat [KEY, VALUE, ...]); validated and frozen.

    Unknown keys raise UnknownKeyError naming the key, the file (or 'command line') and the closest
    valid key; values of the wrong type raise ConfigTypeError; a missing file FileNotFoundError.
    """
    data = _read_yaml(path)
    cfg = get_defaults()
    merge_dict(cfg, data, path, cfg)
    model = data.get("MODEL") if isinstance(data.get("MODEL"), dict) else {}
    if "EXTRA" not in model and is_hrnet_model(cfg.MODEL.NAME, cfg.MODEL.BACKBONE):
        cfg.MODEL.EXTRA = hrnet_extra()  # an HRNet file without EXTRA gets the W32 defaults
    opts = list(opts)
    merge_opts(cfg, opts)
    validate(cfg, f"{path} + command line" if opts else path)
    cfg.freeze()
    return cfg


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
