"""SIGKILL a training run at random moments, then check that nothing written is damaged.

    python bench/kill_trials.py [--trials 20] [--seed 0]

Each trial starts (or resumes, TRAIN.RESUME True) a tiny PoseDual run of pose_estimation/train.py on
a generated dataset, kills its whole process group with SIGKILL after a random delay (so kills land
in data loading, steps, validation, checkpoint writes and start-up alike), and then loads every
checkpoint file of the run folder with the project's restricted loader. After the last trial the run
is resumed to its end. Writes bench/results/kill_trials_<device>.md.
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CFG = os.path.join(ROOT, "experiments", "synthetic", "posedual.yaml")


def run_command(root: str, out: str, epochs: int) -> list:
    det = os.path.join(root, "coco", "person_detection_results", "synthetic_val2017_detections.json")
    return [sys.executable, os.path.join(ROOT, "pose_estimation", "train.py"), "--cfg", CFG,
            "--no-progress", "MODEL.IMAGE_SIZE", "[64, 64]", "MODEL.EXTRA.HEATMAP_SIZE", "[16, 16]",
            "MODEL.EXTRA.SIGMA", "1.0", "TRAIN.BATCH_SIZE", "4", "TEST.BATCH_SIZE", "8",
            "WORKERS", "1", "PRINT_FREQ", "1", "DATASET.TRAIN_LEN", "8", "DEVICE", "cpu",
            "SYNTHETIC.GENERATE_IF_MISSING", "False", "DATASET.ROOT", root, "OUTPUT_DIR", out,
            "LOG_DIR", os.path.join(out, "tb"), "TEST.COCO_BBOX_FILE", det, "TRAIN.RESUME", "True",
            "TRAIN.END_EPOCH", str(epochs), "TRAIN.LR_STEP", f"[{epochs + 1}]", "SAVE_INTER", "1",
            "RUN_NAME", "trials"]


def check_folder(folder: str) -> tuple:
    """(files loaded, list of failures) for every .pth.tar in ``folder``."""
    from semipose.models.weights import safe_load
    loaded, bad = 0, []
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        if name.endswith(".pth.tar"):
            try:
                safe_load(os.path.join(folder, name))
                loaded += 1
            except ValueError as exc:
                bad.append(f"{name}: {exc}")
    return loaded, bad


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=40, help="run length (never reached by kills)")
    p.add_argument("--max-delay", type=float, default=6.0, help="kill within this many seconds")
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "kill_trials_cpu.md"))
    args = p.parse_args()
    from semipose.data.synthetic import generate
    from semipose.engine.checkpoint import load_resume_state
    from semipose.utils.io import atomic_write_text

    rng = random.Random(args.seed)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    rows, failures = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        root, out = os.path.join(tmp, "data"), os.path.join(tmp, "out")
        generate(root, seed=3, num_train=6, num_val=3, num_unlabeled=0, show_progress=False)
        folder = os.path.join(out, "mix_coco_coco", "pose_dual_18", "posedual", "trials")
        for t in range(args.trials):
            delay = rng.uniform(0.5, args.max_delay)
            proc = subprocess.Popen(run_command(root, out, args.epochs), cwd=ROOT, env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True)
            time.sleep(delay)
            alive = proc.poll() is None
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            loaded, bad = check_folder(folder)
            state = load_resume_state(folder) if os.path.exists(
                os.path.join(folder, "checkpoint.pth.tar")) else None
            where = "-" if state is None else f"{state['epoch']}/{state['iteration']}"
            failures += len(bad)
            rows.append(f"| {t + 1} | {delay:.2f} | {'yes' if alive else 'no (ended)'} | {loaded} "
                        f"| {where} | {'; '.join(bad) or 'none'} |")
            print(rows[-1], flush=True)
        state = load_resume_state(folder)
        finish = subprocess.run(run_command(root, out, state["epoch"] + 1), cwd=ROOT, env=env,
                                capture_output=True, text=True)
        final_ok = finish.returncode == 0 and os.path.exists(os.path.join(folder,
                                                                          "final_state.pth.tar"))
    text = "\n".join([
        "# SIGKILL at random moments (bench/kill_trials.py)",
        "",
        f"{args.trials} trials, seed {args.seed}: a tiny PoseDual run (TRAIN.RESUME True, one run "
        f"folder) killed with SIGKILL after a uniform 0.5-{args.max_delay:g} s; after each kill "
        f"every `.pth.tar` of the run folder is loaded with the restricted loader. Damaged files: "
        f"**{failures}**. Resuming to the end after the last kill: "
        f"**{'finished' if final_ok else 'FAILED'}**.",
        "",
        "| trial | kill after (s) | running | checkpoint files loaded | resume point (epoch/iter) "
        "| damaged |",
        "|---|---|---|---|---|---|",
        *rows, ""])
    atomic_write_text(text, args.out)
    print(f"wrote {args.out}: {failures} damaged files; final resume "
          f"{'ok' if final_ok else 'failed'}")
    return 0 if failures == 0 and final_ok else 1


if __name__ == "__main__":
    sys.exit(main())
