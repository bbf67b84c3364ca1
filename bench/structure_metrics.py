"""Structure metrics of the code base, measured on a tiny PoseDual run (CPU, seconds).

    python bench/structure_metrics.py [--out bench/results/structure_metrics.json]

Prints (and writes as JSON):
- semi_base_constructor_options: parameters of the semi-supervised base class's constructor
  (``nets`` included);
- trainer_attributes: instance attributes of a Trainer after a one-epoch fit;
- files_one_posedual_step: library files with code executed during one PoseDual training step in
  the trainer process (``Trainer._train_step``: device stage, batch move, the method step, loss,
  backward, optimizer, accuracy, pending read-out queue, hooks);
- trainer_lines: lines of engine/trainer.py.

It runs on whatever ``semipose`` is importable, so the same script measures an older checkout
(PYTHONPATH=<checkout>/lib).
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_opts(root: str, out: str) -> list:
    det = os.path.join(root, "coco", "person_detection_results",
                       "synthetic_val2017_detections.json")
    return ["MODEL.IMAGE_SIZE", "[64, 64]", "MODEL.EXTRA.HEATMAP_SIZE", "[16, 16]",
            "MODEL.EXTRA.SIGMA", "1.0", "MODEL.EXTRA.NUM_DECONV_FILTERS", "[32, 32, 32]",
            "TRAIN.BATCH_SIZE", "4", "TEST.BATCH_SIZE", "8", "WORKERS", "0", "PRINT_FREQ", "1",
            "DATASET.TRAIN_LEN", "8", "SYNTHETIC.GENERATE_IF_MISSING", "False", "DEVICE", "cpu",
            "TRAIN.END_EPOCH", "1", "TRAIN.LR_STEP", "[5]", "MASK_JOINT_NUM", "2",
            "DATASET.ROOT", root, "OUTPUT_DIR", out, "LOG_DIR", os.path.join(out, "tb"),
            "TEST.COCO_BBOX_FILE", det]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="", help="write the metrics as JSON here")
    args = p.parse_args()
    import semipose
    from semipose.config import load_cfg
    from semipose.data.synthetic import generate
    from semipose.engine.trainer import Trainer
    from semipose.methods import base
    from semipose.utils.dist import DistInfo

    lib = os.path.dirname(semipose.__file__)
    metrics = {"semipose": lib}
    semi = getattr(base, "SemiMethod")
    metrics["semi_base_constructor_options"] = len(inspect.signature(semi.__init__).parameters) - 1

    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, "data")
        generate(root, seed=3, num_train=6, num_val=3, num_unlabeled=0, show_progress=False)
        cfg_path = os.path.join(ROOT, "experiments", "synthetic", "posedual.yaml")
        cfg = load_cfg(cfg_path, tiny_opts(root, os.path.join(tmp, "out")))
        trainer = Trainer(cfg, cfg_path, DistInfo(), progress=False)

        files: set = set()
        step = trainer._train_step
        state = {"first": True}

        def tracer(frame, event, arg):
            if event == "call":
                name = frame.f_code.co_filename
                if name.startswith(lib):
                    files.add(os.path.relpath(name, lib))
            return None

        def traced_step(*a, **kw):
            if not state["first"]:
                return step(*a, **kw)
            state["first"] = False
            sys.setprofile(tracer)
            try:
                return step(*a, **kw)
            finally:
                sys.setprofile(None)

        trainer._train_step = traced_step
        trainer.fit()
        del trainer.__dict__["_train_step"]
        metrics["trainer_attributes"] = len(vars(trainer))
        metrics["trainer_attribute_names"] = sorted(vars(trainer))
        metrics["files_one_posedual_step"] = len(files)
        metrics["files_one_posedual_step_names"] = sorted(files)
    with open(os.path.join(lib, "engine", "trainer.py"), encoding="utf-8") as f:
        metrics["trainer_lines"] = sum(1 for _ in f)
    text = json.dumps(metrics, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
