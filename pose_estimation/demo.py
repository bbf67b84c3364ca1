"""Run a trained model on your own images, a folder or a video, and draw the skeletons.

    python pose_estimation/demo.py --cfg FILE --model-file PATH --image IMG [--boxes DETS.json]
    python pose_estimation/demo.py --cfg FILE --model-file PATH --folder DIR [--annotations COCO.json]
    python pose_estimation/demo.py --cfg FILE --model-file PATH --video CLIP.mp4

Person boxes: a COCO detection json (--boxes; image ids are matched to file names such as
000000397133.jpg -> 397133, or through --annotations), COCO annotations (--annotations), an offline
torchvision detector (--detector NAME --detector-weights FILE), or else the whole image as one box.
Writes <out>/<image>.png (or <video>_pose.mp4) and <out>/keypoints_results.json (COCO results
format, keypoints in image pixels). Exit status 2: a user error, printed as one line.
"""
from __future__ import annotations

import sys

# The command itself lives in the package (semipose.commands.demo, also run as `semipose demo`);
# this script keeps the documented path working.
from semipose.commands.demo import main

if __name__ == "__main__":
    sys.exit(main())
