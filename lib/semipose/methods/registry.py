"""The one table of training methods: MODEL.NAME -> method class (and its fixed backbone).

A new method is one file with a class decorated by ``@register_method("my_name")`` (imported by
methods/__init__.py, or by the user's own code before the config is loaded); the config checks,
run names, net builder and trainer all read this table.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple, Type

METHODS: Dict[str, type] = {}
# A backbone fixed by the name (a registered MODEL.BACKBONE value, models/registry.py), or None:
# MODEL.BACKBONE decides.
FIXED_BACKBONE: Dict[str, Optional[str]] = {}


def register_method(name: str, backbone: Optional[str] = None):
    """Class decorator: make ``name`` a valid MODEL.NAME training with the decorated class
    (``backbone``: the backbone this name always uses, e.g. pose_hrnet's 'hrnet')."""
    if backbone is not None and not isinstance(backbone, str):
        raise ValueError(f"register_method({name!r}): backbone must be None or a backbone name")

    def deco(cls: type) -> type:
        if name in METHODS and METHODS[name] is not cls:
            raise ValueError(f"MODEL.NAME {name!r} is already registered to "
                             f"{METHODS[name].__name__}")
        METHODS[name], FIXED_BACKBONE[name] = cls, backbone
        return cls
    return deco


def method_names() -> Tuple[str, ...]:
    return tuple(METHODS)


def resolve(name: str, backbone: str = "resnet") -> Tuple[type, str]:
    """(method class, backbone name) of MODEL.NAME / MODEL.BACKBONE: the one place that decides
    both (a name may fix its backbone, e.g. pose_hrnet)."""
    if name not in METHODS:
        raise ValueError(f"MODEL.NAME {name!r} has no training method; use one of "
                         f"{sorted(METHODS)} (or register one with @register_method)")
    return METHODS[name], FIXED_BACKBONE[name] or backbone


def resolve_cfg(cfg) -> Tuple[type, str]:
    """``resolve`` of a config's MODEL.NAME and MODEL.BACKBONE."""
    return resolve(cfg.MODEL.NAME, cfg.MODEL.get("BACKBONE", "resnet"))


def placeholder_method(cfg):
    """The configured method built around placeholder nets (``nn.Identity``): its parts, with
    the checks they run, without building a network (config checks, inspecting the parts)."""
    from torch import nn
    method, _ = resolve_cfg(cfg)
    return method.from_cfg(cfg, [nn.Identity() for _ in method.net_names])


def method_class(name: str) -> Type:
    """Method class of a MODEL.NAME value."""
    return resolve(name)[0]
