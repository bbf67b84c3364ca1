"""Build pose nets from a config and initialise them from ImageNet (or dual-init) files.

``build_net(cfg)`` builds the backbone registered for MODEL.NAME / MODEL.BACKBONE from MODEL.EXTRA
(models/registry.py) and returns a plain module
(images [N, 3, H, W] -> heatmaps [N, J, H/4, W/4]). ``init_weights`` / ``init_nets`` apply the
reference's random head initialisation and then load backbone tensors with an explicit, strict key
check (only the ImageNet classifier and the checkpoint's BN step counters may be absent/extra).
"""
from __future__ import annotations

import logging
import os
from collections import OrderedDict
from typing import Dict, List, Mapping, Sequence

import torch
from torch import nn
from yacs.config import CfgNode

from ..errors import ConfigError, MissingFileError, WeightsError
from ..types import PoseNet
from .registry import backbone_kind, get_backbone
from .weights import copy_tensors, list_keys, read_state

__all__ = ["build_net", "init_weights", "init_nets", "init_nets_from_cfg", "pretrained_layers",
           "backbone_kind"]
logger = logging.getLogger(__name__)

IMAGENET_DIR = "models/pytorch/imagenet/"
DUAL_MARKER = "resnet2.conv1.weight"  # a dual init file holds per-net 'resnet.'/'resnet2.' tensors
DUAL_PREFIXES = ("resnet.", "resnet2.")


def build_net(cfg: CfgNode) -> nn.Module:
    """One pose net for ``cfg``: the registered backbone of MODEL.NAME / MODEL.BACKBONE
    (models/registry.py) built from MODEL.NUM_JOINTS and MODEL.EXTRA.*.

    Two-net methods call this once per net. The returned module maps [N, 3, H, W] images to
    [N, MODEL.NUM_JOINTS, H/4, W/4] heatmaps; no initialisation beyond PyTorch defaults.
    """
    if cfg.MODEL.get("PRM", False):
        raise ConfigError("MODEL.PRM=True (attention block before the final conv) is not "
                          "supported; set MODEL.PRM False")
    return get_backbone(backbone_kind(cfg)).build(cfg)


def pretrained_layers(cfg: CfgNode) -> List[str]:
    """MODEL.EXTRA.PRETRAINED_LAYERS for HRNet configs, ['*'] otherwise."""
    return list(cfg.MODEL.EXTRA.get("PRETRAINED_LAYERS", ["*"]))


def _read_init_file(path: str) -> Mapping[str, torch.Tensor] | None:
    if not path:
        return None
    if not os.path.isfile(path):
        raise MissingFileError(
            f"pretrained weights file {path!r} (MODEL.PRETRAINED) does not exist; put ImageNet "
            f"files under {IMAGENET_DIR} (e.g. {IMAGENET_DIR}resnet18-5c106cde.pth), or set "
            "MODEL.PRETRAINED '' to train from random initialisation")
    return read_state(path)


def _layers(layers: Sequence[str]) -> List[str]:
    layers = list(layers)
    if not layers:
        raise ConfigError("MODEL.EXTRA.PRETRAINED_LAYERS is empty; list top-level module names "
                          "(conv1, layer1, stage2, ...) or '*' for all")
    return layers


def _selected(key: str, layers: Sequence[str]) -> bool:
    return layers[0] == "*" or key.split(".", 1)[0] in layers


def _load_backbone(net: PoseNet, state: Mapping[str, torch.Tensor], layers: Sequence[str],
                   source: str) -> List[str]:
    """Copy backbone tensors of ``state`` (ImageNet layout, no prefix) into ``net``; strict.

    Ignored on purpose: tensors outside ``layers``, the classifier / head tensors of the file
    (``net.imagenet_only_key``), and missing ``num_batches_tracked`` counters (old files lack them).
    """
    head = tuple(getattr(net, "head_modules", ()))
    targets = {k: v for k, v in net.state_dict().items()
               if _selected(k, layers) and k.split(".", 1)[0] not in head}
    used: Dict[str, torch.Tensor] = OrderedDict()
    unexpected, head_keys = [], []
    for k, v in state.items():
        if not _selected(k, layers) or net.imagenet_only_key(k):
            continue
        if k.split(".", 1)[0] in head + ("final_layer_1",):
            head_keys.append(k)  # heads always start random (reference init), never from a file
        elif k in targets:
            used[k] = v
        else:
            unexpected.append(k)
    missing = [k for k in targets if k not in used and not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise WeightsError(
            f"{source}: does not match the {type(net).__name__} backbone; "
            f"missing {list_keys(missing)}; unexpected {list_keys(unexpected)}. "
            "Is it an ImageNet file for the configured depth/width (torchvision key layout)?")
    if head_keys:
        logger.warning("%s: ignored %d head tensors (%s); heads start from random init",
                       source, len(head_keys), list_keys(head_keys))
    copy_tensors(net, used, source)
    return list(used)


def _init_one(net: PoseNet, state: Mapping[str, torch.Tensor] | None, layers: Sequence[str],
              source: str) -> List[str]:
    net.reference_init()
    if state is None:
        # the caller says it once for all nets (engine.model_setup.build_nets)
        logger.debug("no pretrained file given: %s starts from random initialisation",
                     type(net).__name__)
        return []
    loaded = _load_backbone(net, state, layers, source)
    logger.info("loaded %d backbone tensors into %s from %s", len(loaded), type(net).__name__,
                source)
    return loaded


def init_weights(net: PoseNet, pretrained_path: str,
                 pretrained_layers: Sequence[str] = ("*",)) -> List[str]:
    """Reference initialisation of one net, then its backbone from an ImageNet file.

    ResNet: head deconvs and final conv N(0, 0.001), head BN (1, 0), backbone from the file.
    HRNet: every conv N(0, 0.001), every BN (1, 0), then the file's tensors whose first key
    component is in ``pretrained_layers`` ('*' = all). ``pretrained_path`` '' = random init.
    Returns the names of the loaded tensors.
    """
    layers = _layers(pretrained_layers)
    return _init_one(net, _read_init_file(pretrained_path), layers, pretrained_path)


def init_nets(nets: Sequence[PoseNet], pretrained_path: str,
              pretrained_layers: Sequence[str] = ("*",)) -> List[List[str]]:
    """``init_weights`` for every net of a method, reading the file once.

    A dual init file (holding ``resnet2.conv1.weight``) gives net i the tensors under its own
    prefix ('resnet.', 'resnet2.'); any other file initialises every net's backbone identically
    (heads stay independently random).
    """
    layers = _layers(pretrained_layers)
    state = _read_init_file(pretrained_path)
    if state is None or DUAL_MARKER not in state:
        return [_init_one(net, state, layers, pretrained_path) for net in nets]
    if len(nets) > len(DUAL_PREFIXES):
        raise WeightsError(f"{pretrained_path}: a dual init file serves at most 2 nets, "
                           f"got {len(nets)}")
    out = []
    for net, prefix in zip(nets, DUAL_PREFIXES):
        part = OrderedDict((k[len(prefix):], v) for k, v in state.items() if k.startswith(prefix))
        out.append(_init_one(net, part, layers, f"{pretrained_path} [{prefix}*]"))
    return out


def init_nets_from_cfg(nets: Sequence[PoseNet], cfg: CfgNode) -> List[List[str]]:
    """``init_nets`` with MODEL.PRETRAINED and PRETRAINED_LAYERS (no-op if MODEL.INIT_WEIGHTS is
    False)."""
    if not cfg.MODEL.get("INIT_WEIGHTS", True):
        return [[] for _ in nets]
    return init_nets(nets, cfg.MODEL.PRETRAINED, pretrained_layers(cfg))
