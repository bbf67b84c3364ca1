"""Export a trained net (or the PoseDual ensemble as one graph) to ONNX and check it.

    python pose_estimation/export.py --cfg FILE --model-file PATH [--net ensemble] [--out model.onnx]

The graph takes 'images' [N, 3, H, W] (ImageNet-normalised crops, as the training pipeline makes
them; N is dynamic) and returns 'heatmaps' [N, J, H/4, W/4]; the file's metadata
'semipose.joint_space' holds the description (YAML) of the J channels' joints. After export,
onnxruntime runs random crops and real crops of the config's validation set and the largest heatmap
difference to PyTorch is printed; above --tolerance (1e-4) the command fails. Needs
pip install -e '.[export]'.
"""
from __future__ import annotations

import sys

# The command itself lives in the package (semipose.commands.export, also run as `semipose export`);
# this script keeps the documented path working.
from semipose.commands.export import main

if __name__ == "__main__":
    sys.exit(main())
