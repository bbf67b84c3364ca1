"""Score a trained model on the validation set (COCO OKS AP, MPII PCKh or AIC).

    semipose valid --cfg FILE --model-file PATH [KEY VALUE ...]
    python pose_estimation/valid.py --cfg FILE --model-file PATH [KEY VALUE ...]

Reads this project's checkpoints and the reference implementation's released ones
(pose_resnet, pose_hrnet, pose_cons, pose_dual layouts). Runs sharded under torchrun as training
does. Exit status 2: a user error (missing file, checkpoint of another model, ...), one line.
"""
from __future__ import annotations

import argparse
from typing import Callable, Optional, Sequence

from ..engine.cli import base_parser, parse_cli, run_job
from ..engine.validate import evaluate_checkpoint


def main(argv: Optional[Sequence[str]] = None, prog: Optional[str] = None,
         scorer: Optional[Callable] = None) -> int:
    """``scorer``: what scores the checkpoint, called as ``evaluate_checkpoint`` is (the
    default); pose_estimation/valid.py passes the name it imports, so that it stays replaceable
    there."""
    score = evaluate_checkpoint if scorer is None else scorer
    p = base_parser(__doc__.strip().splitlines()[0])
    if prog:
        p.prog = prog
    p.add_argument("--model-file", dest="model_file", default="",
                   help="weights to score (TEST.MODEL_FILE); default <run folder>/final_state.pth.tar")
    p.add_argument("--use-detect-bbox", dest="use_detect_bbox", action="store_true",
                   help="use the detection boxes of TEST.COCO_BBOX_FILE (TEST.USE_GT_BBOX False)")
    onoff = argparse.BooleanOptionalAction
    p.add_argument("--flip-test", dest="flip_test", action=onoff, default=None,
                   help="average with the horizontally flipped input (TEST.FLIP_TEST; default off)")
    p.add_argument("--post-process", dest="post_process", action=onoff, default=None,
                   help="quarter-pixel refinement of the argmax (TEST.POST_PROCESS; default on)")
    p.add_argument("--shift-heatmap", dest="shift_heatmap", action=onoff, default=None,
                   help="flip test: shift flipped heatmaps by 1 px (TEST.SHIFT_HEATMAP; default on)")
    p.add_argument("--allow-single", dest="allow_single", action="store_true",
                   help="load a one-net checkpoint into net1 of a PoseDual config (net2 untrained)")
    p.add_argument("--coco-bbox-file", dest="coco_bbox_file", default="",
                   help="detection result json (TEST.COCO_BBOX_FILE)")
    args = parse_cli(p, argv)
    extra = []
    if args.model_file:
        extra += ["TEST.MODEL_FILE", args.model_file]
    if args.use_detect_bbox:
        extra += ["TEST.USE_GT_BBOX", "False"]
    for flag, key in (("flip_test", "FLIP_TEST"), ("post_process", "POST_PROCESS"),
                      ("shift_heatmap", "SHIFT_HEATMAP")):
        if getattr(args, flag) is not None:
            extra += [f"TEST.{key}", str(getattr(args, flag))]
    if args.coco_bbox_file:
        extra += ["TEST.COCO_BBOX_FILE", args.coco_bbox_file]
    return run_job(args, extra, lambda cfg, info: score(
        cfg, args.cfg, info, progress=not args.no_progress, allow_single=args.allow_single))
