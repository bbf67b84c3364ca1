"""The nets and the method of a run, built from the config and placed on the run's device."""
from __future__ import annotations

import logging
from typing import Tuple

from torch import nn
from yacs.config import CfgNode

from ..utils.dist import DistInfo
from ..utils.streams import stream_seed
from .device import place_method


def build_nets(cfg: CfgNode, init: bool, log: logging.Logger) -> list:
    """The method's nets, initialised from MODEL.PRETRAINED when ``init``."""
    from ..methods import num_nets
    from ..models.build import build_net, init_nets_from_cfg
    nets = [build_net(cfg) for _ in range(num_nets(cfg))]
    if init:
        loaded = init_nets_from_cfg(nets, cfg)
        if cfg.MODEL.PRETRAINED:
            log.info("initialised %d net(s) from %s (%s tensors)", len(nets), cfg.MODEL.PRETRAINED,
                     "/".join(str(len(x)) for x in loaded))
        else:
            log.info("MODEL.PRETRAINED is empty: nets start from random weights")
    return nets


def build_method_for(cfg: CfgNode, info: DistInfo, log: logging.Logger
                     ) -> Tuple[nn.Module, nn.Module]:
    """(method, model to call): the model is the method, or its DDP wrapper."""
    from ..methods import build_method
    from ..methods.parts import crop_scale_advice
    nets = build_nets(cfg, bool(cfg.MODEL.INIT_WEIGHTS), log)
    method = build_method(cfg, nets, seed=stream_seed("hard_view", seed=cfg.SEED, rank=info.rank))
    advice = crop_scale_advice(method, cfg.MODEL.IMAGE_SIZE)
    if advice:
        log.warning(advice)
    return place_method(method, cfg, info, log)
