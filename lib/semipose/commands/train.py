"""Train a pose model: supervised, PoseCons or PoseDual (chosen by MODEL.NAME in the config).

    semipose train --cfg experiments/synthetic/posedual.yaml [KEY VALUE ...]
    python pose_estimation/train.py --cfg FILE [KEY VALUE ...]
    torchrun --nproc_per_node=4 pose_estimation/train.py --cfg FILE [KEY VALUE ...]

SIGINT/SIGTERM save a checkpoint after the current step and exit with status 0; continue with
TRAIN.RESUME True. Exit status 2: a user error (bad config, missing file, unreadable image, ...),
printed as one 'error: ...' line; 3: a non-finite loss.
"""
from __future__ import annotations

from typing import Optional, Sequence

from ..engine.cli import base_parser, parse_cli, run_job
from ..engine.trainer import NonFiniteLossError, Trainer


def main(argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> int:
    p = base_parser(__doc__.strip().splitlines()[0])
    if prog:
        p.prog = prog
    p.add_argument("--pretrained_model", default="", help="initialisation file (MODEL.PRETRAINED)")
    p.add_argument("--num_gpus", type=int, default=None, help="accepted for compatibility; unused")
    args = parse_cli(p, argv)
    extra = ["MODEL.PRETRAINED", args.pretrained_model] if args.pretrained_model else []
    return run_job(args, extra,
                   lambda cfg, info: Trainer(cfg, args.cfg, info,
                                             progress=not args.no_progress).fit(),
                   exit_codes=[(NonFiniteLossError, 3)])
