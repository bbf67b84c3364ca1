"""Run a trained model on your own images, a folder or a video, and draw the skeletons.

    semipose demo --cfg FILE --model-file PATH --image IMG [--boxes DETS.json]
    semipose demo --cfg FILE --model-file PATH --folder DIR [--annotations COCO.json]
    semipose demo --cfg FILE --model-file PATH --video CLIP.mp4

(or python pose_estimation/demo.py with the same options). Person boxes: a COCO detection json
(--boxes; image ids are matched to file names such as 000000397133.jpg -> 397133, or through
--annotations), COCO annotations (--annotations), an offline torchvision detector (--detector NAME
--detector-weights FILE), or else the whole image as one box. Writes <out>/<image>.png (or
<video>_pose.mp4) and <out>/keypoints_results.json (COCO results format, keypoints in image
pixels). Exit status 2: a user error, printed as one line.
"""
from __future__ import annotations

import os
from typing import Optional, Sequence

from ..engine.cli import base_parser, parse_cli, run_job


def main(argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> int:
    p = base_parser(__doc__.strip().splitlines()[0])
    if prog:
        p.prog = prog
    src = p.add_argument_group("input (one of)")
    src.add_argument("--image", default="", help="one image file")
    src.add_argument("--folder", default="", help="a folder of images (not recursive)")
    src.add_argument("--video", default="", help="a video file (every frame)")
    p.add_argument("--model-file", dest="model_file", default="",
                   help="weights (TEST.MODEL_FILE); default <run folder>/final_state.pth.tar")
    box = p.add_argument_group("person boxes (default: the whole image)")
    box.add_argument("--boxes", default="", help="COCO detection json: [{image_id, bbox, score}]")
    box.add_argument("--box-thre", dest="box_thre", type=float, default=None,
                     help="drop --boxes entries scoring below (default TEST.IMAGE_THRE)")
    box.add_argument("--annotations", default="", help="COCO annotation json (its person boxes)")
    box.add_argument("--detector", default="",
                     help="torchvision detection model, e.g. fasterrcnn_resnet50_fpn")
    box.add_argument("--detector-weights", dest="detector_weights", default="",
                     help="local state-dict file of --detector (never downloaded)")
    box.add_argument("--detector-thre", dest="detector_thre", type=float, default=0.5)
    p.add_argument("--net", default="net1", help="net1, net2 or ensemble (PoseDual models)")
    p.add_argument("--flip-test", dest="flip_test", action="store_true", default=None,
                   help="average with the flipped image (default TEST.FLIP_TEST)")
    p.add_argument("--no-flip-test", dest="flip_test", action="store_false")
    p.add_argument("--post-type", dest="post_type", choices=("shift", "dark"), default=None,
                   help="sub-pixel refinement (default TEST.POST_TYPE)")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=None,
                   help="person crops per forward pass (default TEST.BATCH_SIZE)")
    p.add_argument("--kpt-thre", dest="kpt_thre", type=float, default=0.2,
                   help="joints with lower confidence are drawn faded")
    p.add_argument("--allow-single", dest="allow_single", action="store_true",
                   help="load a one-net file into net1 of a PoseDual config")
    p.add_argument("--out", default="", help="output folder (default <OUTPUT_DIR>/demo/<model>)")
    args = parse_cli(p, argv)

    def job(cfg, info):
        from ..engine.runs import find_model_file
        from ..engine.demo import DemoOptions, run_demo
        model_file = args.model_file or find_model_file(cfg, args.cfg)
        stem = os.path.basename(model_file).split(".")[0]
        opts = DemoOptions(
            model_file=model_file, out_dir=args.out or os.path.join(cfg.OUTPUT_DIR, "demo", stem),
            image=args.image, folder=args.folder, video=args.video, boxes=args.boxes,
            annotations=args.annotations, detector=args.detector,
            detector_weights=args.detector_weights, detector_thre=args.detector_thre,
            box_thre=cfg.TEST.IMAGE_THRE if args.box_thre is None else args.box_thre,
            net=args.net, flip_test=args.flip_test, post_type=args.post_type,
            batch_size=args.batch_size, kpt_thre=args.kpt_thre, allow_single=args.allow_single,
            progress=not args.no_progress)
        return run_demo(cfg, info, opts)

    return run_job(args, [], job)
