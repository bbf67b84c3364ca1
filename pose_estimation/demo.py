"""Run a trained model on your own images, a folder or a video, and draw the skeletons.

    python pose_estimation/demo.py --cfg FILE --model-file PATH --image IMG [--boxes DETS.json]
    python pose_estimation/demo.py --cfg FILE --model-file PATH --folder DIR [--annotations COCO.json]
    python pose_estimation/demo.py --cfg FILE --model-file PATH --video CLIP.mp4

Options, outputs and exit codes: lib/semipose/commands/demo.py (``semipose demo --help``).
"""
from __future__ import annotations

import sys

# The command itself lives in the package (semipose.commands.demo, also run as `semipose demo`);
# this script keeps the documented path working.
from semipose.commands.demo import main

if __name__ == "__main__":
    sys.exit(main())
