"""Export a trained net (or the PoseDual ensemble as one graph) to ONNX and check it.

    semipose export --cfg FILE --model-file PATH [--net ensemble] [--out model.onnx]
    python pose_estimation/export.py --cfg FILE --model-file PATH [--net ensemble] [--out model.onnx]

The graph takes 'images' [N, 3, H, W] (ImageNet-normalised crops, as the training pipeline makes
them; N is dynamic) and returns 'heatmaps' [N, J, H/4, W/4]; the file's metadata
'semipose.joint_space' holds the description (YAML) of the J channels' joints. After export,
onnxruntime runs random crops and real crops of the config's validation set and the largest heatmap
difference to PyTorch is printed; above --tolerance (1e-4) the command fails. Needs
pip install -e '.[export]'.
"""
from __future__ import annotations

import os
from typing import Optional, Sequence

from ..engine.cli import base_parser, parse_cli, run_job


def main(argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> int:
    p = base_parser(__doc__.strip().splitlines()[0])
    if prog:
        p.prog = prog
    p.add_argument("--model-file", dest="model_file", default="",
                   help="weights (TEST.MODEL_FILE); default <run folder>/final_state.pth.tar")
    p.add_argument("--net", default="net1", help="net1, net2 or ensemble (PoseDual models)")
    p.add_argument("--out", default="", help="ONNX file (default next to the model file)")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--tolerance", type=float, default=1e-4,
                   help="largest allowed |ONNX - PyTorch| heatmap difference")
    p.add_argument("--num-check", dest="num_check", type=int, default=8,
                   help="random and real crops checked")
    p.add_argument("--allow-single", dest="allow_single", action="store_true",
                   help="load a one-net file into net1 of a PoseDual config")
    args = parse_cli(p, argv)

    def job(cfg, info):
        from ..engine.runs import find_model_file
        from ..engine.export import export_and_check
        model_file = args.model_file or find_model_file(cfg, args.cfg)
        out = args.out or os.path.join(os.path.dirname(os.path.abspath(model_file)),
                                       f"{os.path.basename(model_file).split('.')[0]}_"
                                       f"{args.net}.onnx")
        return export_and_check(cfg, model_file, args.net, out, opset=args.opset,
                                tolerance=args.tolerance, num_check=args.num_check,
                                allow_single=args.allow_single)

    return run_job(args, [], job, exit_codes=[(ImportError, 2)])
