"""Score a trained model on the validation set (COCO OKS AP, MPII PCKh or AIC).

    python pose_estimation/valid.py --cfg FILE --model-file PATH [KEY VALUE ...]

Options, outputs and exit codes: lib/semipose/commands/valid.py (``semipose valid --help``).
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
