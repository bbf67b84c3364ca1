"""ONNX export of a pose net (or the mean of several, e.g. the PoseDual ensemble as one graph),
checked against PyTorch with onnxruntime. onnx / onnxruntime are optional: ``pip install -e .[export]``.
"""
from __future__ import annotations

import os
import warnings
from typing import Dict, Mapping, Optional, Sequence

import numpy as np
import torch
from torch import nn

from ..utils.io import atomic_write

INPUT, OUTPUT = "images", "heatmaps"
# metadata_props key of the heatmaps' joint space: its description file's YAML text (joint names
# in channel order, flip pairs, skeleton, ...), readable with DatasetMeta.from_dict(yaml.safe_load).
JOINT_SPACE_KEY = "semipose.joint_space"


class MeanOfNets(nn.Module):
    """Heatmaps averaged over nets (the PoseDual 'ensemble' row), exportable as one graph."""

    def __init__(self, nets: Sequence[nn.Module]):
        super().__init__()
        self.nets = nn.ModuleList(nets)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.nets[0](x)
        for net in self.nets[1:]:
            out = out + net(x)
        return out / float(len(self.nets))


def require(module: str):
    """Import an optional export dependency, or say how to install it."""
    try:
        return __import__(module)
    except ImportError as err:
        raise ImportError(f"{module} is not installed: ONNX export needs the optional extras, "
                          f"pip install -e '.[export]' (onnx, onnxruntime)") from err


def export_onnx(model: nn.Module, path: str, image_size: Sequence[int], opset: int = 17,
                metadata: Optional[Mapping[str, str]] = None) -> None:
    """Write ``model`` (eval mode, on CPU) as ONNX with a dynamic batch axis.

    ``image_size`` is (w, h). Input 'images' [N, 3, h, w] float32, output 'heatmaps' [N, J, h', w'].
    ``metadata`` goes into the model's metadata_props (onnxruntime:
    ``session.get_modelmeta().custom_metadata_map``). The file is written atomically.
    """
    require("onnx")
    model = model.eval().cpu()
    dummy = torch.zeros(1, 3, int(image_size[1]), int(image_size[0]))
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".tmp_{os.getpid()}_{os.path.basename(path)}")
    try:
        with warnings.catch_warnings():
            # The TorchScript exporter needs no onnxscript and handles these plain conv nets.
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(model, (dummy,), tmp, dynamo=False, input_names=[INPUT],
                              output_names=[OUTPUT], opset_version=int(opset),
                              dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}})
        with open(tmp, "rb") as f:
            data = f.read()
        if metadata:
            import onnx
            proto = onnx.load_from_string(data)
            for key, value in metadata.items():
                entry = proto.metadata_props.add()
                entry.key, entry.value = str(key), str(value)
            data = proto.SerializeToString()
        atomic_write(path, lambda f: f.write(data))
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    import onnx
    onnx.checker.check_model(path)


def onnx_max_abs_diff(path: str, model: nn.Module, batches: Dict[str, torch.Tensor]
                      ) -> Dict[str, float]:
    """Max |onnxruntime - PyTorch| of the heatmaps per named input batch [N, 3, h, w]."""
    ort = require("onnxruntime")
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    model = model.eval().cpu()
    out = {}
    with torch.no_grad():
        for name, x in batches.items():
            ref = model(x.float()).numpy()
            got = session.run([OUTPUT], {INPUT: x.float().numpy()})[0]
            if got.shape != ref.shape:
                raise RuntimeError(f"ONNX output {got.shape} != PyTorch {ref.shape} for {name}")
            out[name] = float(np.abs(got - ref).max())
    return out
