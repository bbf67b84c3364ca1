"""Train a pose model: supervised, PoseCons or PoseDual (chosen by MODEL.NAME in the config).

    python pose_estimation/train.py --cfg experiments/synthetic/posedual.yaml
    torchrun --nproc_per_node=4 pose_estimation/train.py --cfg FILE [KEY VALUE ...]
    python -m torch.distributed.launch --nproc_per_node=4 pose_estimation/train.py --distributed --cfg FILE

Options, outputs and exit codes: lib/semipose/commands/train.py (``semipose train --help``).
"""
from __future__ import annotations

import sys

# The command itself lives in the package (semipose.commands.train, also run as `semipose train`);
# this script keeps the documented path working.
from semipose.commands.train import main

if __name__ == "__main__":
    sys.exit(main())
