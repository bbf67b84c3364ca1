"""The one table of backbones: MODEL.BACKBONE -> how to build, check and name the network.

A new backbone is one file under models/ with its network module and a builder decorated by
``@register_backbone("name", ...)``, plus its import in ``backbones()`` below (or the user's own
code importing it before the config is loaded). The config loader (the MODEL.EXTRA template a
YAML merges into), the config checks, run names and ``build_net`` all read this table, so nothing
else names a backbone. This module does not import torch: the table is read while configs load.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from ..errors import ConfigError, ConfigLookupError

# Keys every MODEL.EXTRA template carries, read by the data pipeline and the loss for any backbone.
COMMON_EXTRA_KEYS = ("TARGET_TYPE", "HEATMAP_SIZE", "SIGMA")


@dataclass(frozen=True)
class Backbone:
    """What the project needs to know of one backbone.

    build(cfg) -> module mapping images [N, 3, H, W] to heatmaps [N, MODEL.NUM_JOINTS, h, w].
    template() -> the MODEL.EXTRA defaults (a yacs node with COMMON_EXTRA_KEYS).
    marker: an EXTRA key only this backbone's template has; a YAML's MODEL.EXTRA holding it is
        merged into this template (the reference replaces EXTRA wholesale, so a file's EXTRA
        says which architecture it describes).
    check(extra) -> None or the first problem of the EXTRA values, as a sentence naming the key.
    stride(extra) -> image pixels per heatmap pixel (the checks compare HEATMAP_SIZE with it).
    run_name(extra) -> (tag after MODEL.NAME, suffix of the full name), e.g. ('18', 'd256d256d256').
    title: the name in messages ('ResNet').
    """

    name: str
    title: str
    build: Callable[[Any], Any]
    template: Callable[[], Any]
    marker: str
    check: Callable[[Any], Optional[str]]
    stride: Callable[[Any], int]
    run_name: Callable[[Any], Tuple[str, str]]


BACKBONES: Dict[str, Backbone] = {}


def register_backbone(name: str, *, title: str, template: Callable[[], Any], marker: str,
                      check: Callable[[Any], Optional[str]], stride: Callable[[Any], int],
                      run_name: Callable[[Any], Tuple[str, str]]):
    """Decorator of a builder ``build(cfg) -> nn.Module``: make ``name`` a MODEL.BACKBONE value."""
    extra = template()
    missing = [k for k in COMMON_EXTRA_KEYS + (marker,) if k not in extra]
    if missing:
        raise ValueError(f"register_backbone({name!r}): its MODEL.EXTRA template lacks {missing}")

    def deco(build: Callable[[Any], Any]) -> Callable[[Any], Any]:
        if name in BACKBONES and BACKBONES[name].build is not build:
            raise ValueError(f"MODEL.BACKBONE {name!r} is already registered")
        taken = [b.name for b in BACKBONES.values() if b.marker == marker and b.name != name]
        if taken:
            raise ValueError(f"register_backbone({name!r}): marker key {marker!r} is already "
                             f"{taken[0]!r}'s; pick a key only this backbone's EXTRA has")
        BACKBONES[name] = Backbone(name, title, build, template, marker, check, stride, run_name)
        return build
    return deco


def backbones() -> Dict[str, Backbone]:
    """The table, with the built-in backbones registered (their modules import torch)."""
    from . import hrnet, resnet  # noqa: F401  (registration happens on import)
    return BACKBONES


def get_backbone(name: str) -> Backbone:
    table = backbones()
    if name not in table:
        raise ConfigError(f"MODEL.BACKBONE is {name!r}; choose one of {sorted(table)} (or "
                          f"register one with @register_backbone)")
    return table[name]


def backbone_of_extra(extra: Mapping, source: str) -> Optional[str]:
    """The backbone whose marker key a YAML's MODEL.EXTRA holds; None if it holds none."""
    found = [b for b in backbones().values() if b.marker in extra]
    if len(found) > 1:
        keys = " and ".join(f"{b.marker} ({b.title})" for b in found)
        raise ConfigError(f"MODEL.EXTRA in {source} has both {keys}; keep the keys of one "
                          "architecture")
    return found[0].name if found else None


def backbone_kind(cfg) -> str:
    """The backbone of a config: fixed by the method's registration (pose_resnet, pose_hrnet)
    or given by MODEL.BACKBONE."""
    from ..methods.registry import resolve_cfg
    name = resolve_cfg(cfg)[1]
    get_backbone(name)
    return name


def extra_value(cfg, key: str):
    """MODEL.EXTRA.<key>, or an error naming the key and the architecture that needs it."""
    extra = cfg.MODEL.EXTRA
    if key not in extra:
        raise ConfigLookupError(f"MODEL.EXTRA.{key} is missing from the config; "
                                f"MODEL.NAME={cfg.MODEL.NAME} with backbone "
                                f"{backbone_kind(cfg)!r} needs it")
    return extra[key]
