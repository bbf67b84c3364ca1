"""Export a trained net (or the PoseDual ensemble as one graph) to ONNX and check it.

    python pose_estimation/export.py --cfg FILE --model-file PATH [--net ensemble] [--out model.onnx]

Options, outputs and exit codes: lib/semipose/commands/export.py (``semipose export --help``).
"""
from __future__ import annotations

import sys

# The command itself lives in the package (semipose.commands.export, also run as `semipose export`);
# this script keeps the documented path working.
from semipose.commands.export import main

if __name__ == "__main__":
    sys.exit(main())
