"""Train a pose model: supervised, PoseCons or PoseDual (chosen by MODEL.NAME in the config).

    python pose_estimation/train.py --cfg experiments/synthetic/posedual.yaml
    torchrun --nproc_per_node=4 pose_estimation/train.py --cfg FILE [KEY VALUE ...]
    python -m torch.distributed.launch --nproc_per_node=4 pose_estimation/train.py --distributed --cfg FILE

SIGINT/SIGTERM save a checkpoint after the current step and exit with status 0; continue with
TRAIN.RESUME True. Exit status 2: a user error (bad config, missing file, unreadable image, ...),
printed as one 'error: ...' line; 3: a non-finite loss.
"""
from __future__ import annotations

import sys

from semipose.engine.cli import base_parser, parse_cli, run_job
from semipose.engine.trainer import NonFiniteLossError, Trainer


def main(argv=None) -> int:
    p = base_parser(__doc__.strip().splitlines()[0])
    p.add_argument("--pretrained_model", default="", help="initialisation file (MODEL.PRETRAINED)")
    p.add_argument("--num_gpus", type=int, default=None, help="accepted for compatibility; unused")
    args = parse_cli(p, argv)
    extra = ["MODEL.PRETRAINED", args.pretrained_model] if args.pretrained_model else []
    return run_job(args, extra,
                   lambda cfg, info: Trainer(cfg, args.cfg, info,
                                             progress=not args.no_progress).fit(),
                   exit_codes=[(NonFiniteLossError, 3)])


if __name__ == "__main__":
    sys.exit(main())
