"""Strict checkpoint loading for one or two pose nets, in our layout and the reference layouts.

Layouts (after an optional {'state_dict': ...} wrapper and 'module.' prefixes are removed):

* ours:        ``net1.<param>`` [, ``net2.<param>``]
* pose_resnet / pose_hrnet: ``<param>`` (one net)
* pose_cons:   ``resnet.<param>`` (one net)
* pose_dual:   ``resnet.<param>`` and ``resnet2.<param>``; the ResNet head conv is called
  ``final_layer_1`` there (``final_layer`` for HRNet)

Every checkpoint tensor must land in a model tensor and every model tensor must be filled.
A one-net checkpoint given to a two-net method is an error unless ``allow_single=True``, which
fills net1 only (net2 keeps its current weights): silently evaluating a half-loaded PoseDual
would report numbers for a model that was never trained.
"""
from __future__ import annotations

import logging
import os
from collections import OrderedDict
from typing import Dict, Mapping, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from ..errors import MissingFileError, WeightsError

logger = logging.getLogger(__name__)

StateOrPath = Union[str, os.PathLike, Mapping[str, object]]
REF_PREFIXES = {"resnet.": "net1", "resnet2.": "net2"}
DUAL_RESNET_HEAD = "final_layer_1."  # pose_dual's name for the ResNet final conv
REFERENCE_MODELS = ("pose_resnet", "pose_hrnet", "pose_cons", "pose_dual")

# Reference checkpoints store numpy scalars (e.g. 'perf') next to the weights, and this project's
# resumable checkpoints numpy RNG states (arrays); these numpy types are all torch's restricted
# unpickler needs beyond tensors, so no file can run code when it is read.
_NUMPY_GLOBALS = [(np._core.multiarray.scalar, "numpy.core.multiarray.scalar"),
                  np._core.multiarray.scalar, np.dtype, np.ndarray,
                  (np._core.multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),
                  np._core.multiarray._reconstruct] + \
                 [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")]


def safe_load(path: str, what: str = "checkpoint") -> object:
    """``torch.load`` restricted to tensors, containers and numpy values (weights_only), with a
    one-line error naming the file when it is not such a checkpoint (truncated, another format,
    a pickled whole model)."""
    try:
        with torch.serialization.safe_globals(_NUMPY_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip, EOF and torch errors all mean "not readable"
        kind = type(exc).__name__
        text = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else kind
        hint = (" It stores pickled Python objects (e.g. a whole nn.Module): save "
                "model.state_dict() instead." if "Unpickl" in kind or "weights_only" in text
                else "")
        raise WeightsError(f"{path} is not a readable {what} ({kind}: {text}).{hint} Check the "
                           f"file (a complete torch.save of a state dict) or replace it") from exc


def list_keys(keys: Sequence[str], first: int = 5) -> str:
    """'<count> [first few, ...]' for error messages."""
    keys = list(keys)
    more = f", ... +{len(keys) - first} more" if len(keys) > first else ""
    return f"{len(keys)} [{', '.join(keys[:first])}{more}]"


def read_state(path_or_state: StateOrPath) -> "OrderedDict[str, torch.Tensor]":
    """Tensors of a checkpoint file or object: unwraps 'state_dict', strips 'module.' prefixes."""
    source = str(path_or_state) if isinstance(path_or_state, (str, os.PathLike)) else "<state>"
    obj = path_or_state
    if isinstance(obj, (str, os.PathLike)):
        if not os.path.isfile(obj):
            raise MissingFileError(f"checkpoint file {source!r} does not exist")
        obj = safe_load(str(obj))
    if isinstance(obj, Mapping) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{source}: expected a state dict or a dict with 'state_dict', "
                           f"got {type(obj).__name__}")
    out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    for k, v in obj.items():
        if not torch.is_tensor(v):
            raise WeightsError(f"{source}: entry {k!r} is a {type(v).__name__}, not a tensor")
        name = k[len("module."):] if k.startswith("module.") else k
        if name in out:
            raise WeightsError(f"{source}: key {k!r} duplicates {name!r} once 'module.' is removed")
        out[name] = v
    return out


def copy_tensors(net: nn.Module, tensors: Mapping[str, torch.Tensor], source: str) -> None:
    """Copy ``tensors`` (net-local names, all present in ``net``) in place, checking shapes."""
    own = net.state_dict(keep_vars=True)
    for k, v in tensors.items():
        if tuple(own[k].shape) != tuple(v.shape):
            raise WeightsError(f"{source}: tensor {k!r} has shape {tuple(v.shape)} in the file "
                               f"but {tuple(own[k].shape)} in the model; check MODEL.EXTRA / "
                               f"NUM_JOINTS")
    with torch.no_grad():
        for k, v in tensors.items():
            own[k].copy_(v)


def detect_layout(keys: Sequence[str]) -> str:
    """'semipose', 'pose_dual', 'pose_cons' or 'single' (pose_resnet / pose_hrnet, no prefix)."""
    keys = list(keys)
    if any(k.startswith("net1.") for k in keys):
        return "semipose"
    if any(k.startswith("resnet2.") for k in keys):
        return "pose_dual"
    if any(k.startswith("resnet.") for k in keys):
        return "pose_cons"
    return "single"


def _map_key(key: str, layout: str) -> Tuple[str, str] | None:
    """Checkpoint key -> (net name, net-local key), or None when it belongs to no net."""
    if layout == "single":
        return "net1", key
    if layout == "semipose":
        net, _, rest = key.partition(".")
        return (net, rest) if rest else None
    for prefix, net in REF_PREFIXES.items():
        if key.startswith(prefix):
            rest = key[len(prefix):]
            if rest.startswith(DUAL_RESNET_HEAD):
                rest = "final_layer." + rest[len(DUAL_RESNET_HEAD):]
            return net, rest
    return None


def load_checkpoint(path_or_state: StateOrPath, nets: Mapping[str, nn.Module],
                    allow_single: bool = False) -> str:
    """Load a checkpoint strictly into ``nets`` ({'net1': m[, 'net2': m]}); returns its layout.

    Raises ValueError naming the file with the missing / unexpected keys (first few and counts),
    or the tensor and both shapes on a shape mismatch.
    """
    source = str(path_or_state) if isinstance(path_or_state, (str, os.PathLike)) else "<state>"
    state = read_state(path_or_state)
    layout = detect_layout(state.keys())
    per_net: Dict[str, Dict[str, torch.Tensor]] = {name: OrderedDict() for name in nets}
    own_keys = {n: set(net.state_dict()) for n, net in nets.items()}
    unexpected = []
    for k, v in state.items():
        target = _map_key(k, layout)
        if target is None or target[0] not in nets or target[1] not in own_keys[target[0]]:
            unexpected.append(k)
        else:
            per_net[target[0]][target[1]] = v
    filled = [n for n in nets if per_net[n]]
    single = layout in ("single", "pose_cons") or filled == ["net1"]
    skip = set()
    if single and len(nets) > 1 and allow_single and not unexpected:
        skip = set(nets) - {"net1"}
        logger.warning("%s holds one net: loaded into net1 only; %s keep their weights",
                       source, sorted(skip))
    missing = [f"{n}.{k}" for n, net in nets.items() if n not in skip
               for k in net.state_dict() if k not in per_net[n]]
    if missing or unexpected:
        file_nets = {(_map_key(k, layout) or ("",))[0] for k in state}
        if single and len(nets) > 1:
            hint = (" The file holds a single net but the method has "
                    f"{len(nets)}; pass --allow-single (valid.py, demo.py, export.py) or "
                    f"allow_single=True to load it into net1 only.")
        elif "net2" in file_nets and len(nets) == 1:
            hint = " The file holds two nets but the method has one (MODEL.NAME?)."
        else:
            hint = (" The nets in the file are built differently from the config's: check "
                    "MODEL.BACKBONE, MODEL.EXTRA.NUM_LAYERS and NUM_DECONV_FILTERS (or the "
                    "HRNet STAGE widths) and MODEL.NUM_JOINTS against the file.")
        raise WeightsError(f"{source} ({layout} layout) does not match the model: "
                           f"missing {list_keys(missing)}; "
                           f"unexpected {list_keys(unexpected)}.{hint}")
    for n, tensors in per_net.items():
        copy_tensors(nets[n], tensors, f"{source} [{n}]")
    return layout


def nets_state_dict(nets: Mapping[str, nn.Module]) -> "OrderedDict[str, torch.Tensor]":
    """Our checkpoint layout: ``<net name>.<param>`` for every net, in order."""
    return OrderedDict((f"{n}.{k}", v) for n, net in nets.items()
                       for k, v in net.state_dict().items())


def to_reference_state_dict(nets: Mapping[str, nn.Module],
                            model_name: str) -> "OrderedDict[str, torch.Tensor]":
    """State dict in the reference layout of ``model_name`` (see the module docstring)."""
    if model_name not in REFERENCE_MODELS:
        raise ValueError(f"model_name must be one of {REFERENCE_MODELS}, got {model_name!r}")
    want = ["net1", "net2"] if model_name == "pose_dual" else ["net1"]
    if sorted(nets) != want:
        raise ValueError(f"{model_name} layout needs nets {want}, got {sorted(nets)}")
    out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    for n, prefix in zip(want, REF_PREFIXES):
        if model_name in ("pose_resnet", "pose_hrnet"):
            prefix = ""
        rename_head = model_name == "pose_dual" and hasattr(nets[n], "deconv_layers")
        for k, v in nets[n].state_dict().items():
            if rename_head and k.startswith("final_layer."):
                k = DUAL_RESNET_HEAD + k[len("final_layer."):]
            out[prefix + k] = v
    return out
