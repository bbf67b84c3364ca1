"""Score a trained model on the validation set (COCO OKS AP, MPII PCKh or AIC).

    python pose_estimation/valid.py --cfg FILE --model-file PATH [KEY VALUE ...]

Reads this project's checkpoints and the reference implementation's released ones
(pose_resnet, pose_hrnet, pose_cons, pose_dual layouts). Runs sharded under torchrun as train.py
does. Exit status 2: a user error (missing file, checkpoint of another model, ...), one line.
"""
from __future__ import annotations

import sys

from semipose.commands import valid as command
# The scorer is passed at each call (not bound once), so that replacing this module's name
# replaces what main() scores with.
from semipose.engine.validate import evaluate_checkpoint


def main(argv=None) -> int:
    return command.main(argv, scorer=evaluate_checkpoint)


if __name__ == "__main__":
    sys.exit(main())
