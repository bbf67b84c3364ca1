"""Synthetic SSL benchmark: the paper's Table 1 in miniature, plus the collapse study.

    python bench/ssl_benchmark.py                  # full: 100 / 300 labels, 3 seeds, 6 methods
    python bench/ssl_benchmark.py --quick          # 3 core methods, one seed: ~15 CPU minutes
    python bench/ssl_benchmark.py --size long      # 2x the steps: where the paper's ordering shows
                                                   # (3 core methods x 3 seeds: 111 CPU minutes)
    python bench/ssl_benchmark.py --device cuda    # the same on a GPU
    python bench/ssl_benchmark.py --dataset-cfg experiments/synthetic/ssl_benchmark_quadruped.yaml \
        --size quadruped                           # on a skeleton of its own (a custom dataset)

Every run trains with ``pose_estimation/train.py`` from ``experiments/synthetic/ssl_benchmark.yaml``
on the generated people dataset (preset "light"), changing only the method keys, SEED,
DATASET.TRAIN_LEN and the epoch count (with LR milestones at the same fractions of it). Fairness:
for one seed every method starts from the same random initialisation of net 1 (PoseDual's net 2
has its own), sees the same labeled samples in the same order (the paired loader draws them from
the seed and the epoch) and takes the same number of optimizer steps (epochs x unlabeled persons /
batch). The budget is counted in steps, not wall time, because the semi-supervised steps cost
1.3-2x more and because steps do not depend on machine load. The headline AP is that of each run's
final weights on a held-out test set (600 images of another generator seed, scored once by
pose_estimation/valid.py); the 150-image val set scored every epoch is too small to separate
arms that differ by 0.02 AP (bench/ssl_ap_bootstrap.py).

``--dataset-cfg`` replaces that base config: with a custom keypoint dataset there
(``DATASET.TRAIN_DATASET mix_custom``), the runs train on ``--data-root`` (a converted folder; the
synthetic quadruped is generated there when missing) and are scored on ``--test-root``'s val set
with the custom evaluator (OKS AP with the description's sigmas); the report and its file names
carry the dataset's name.

Resumable: each finished run leaves ``<work>/records/<run>.json`` and is skipped next time; an
interrupted run continues from its checkpoint (TRAIN.RESUME); runs already in the committed
``_runs.json`` of the same size are restored into the work folder and skipped too. Lanes: a run
in training holds a lock in ``<work>/claims/``, and other processes on the same work folder skip
it, so the same command started twice (``OMP_NUM_THREADS=1`` each, on 2 cores about 1.6x the
runs per hour of one process with two threads) shares the runs out; the lock goes with its
process, so a killed lane's run is taken up again by the next start. Outputs (under
--out-dir, default bench/results): ``ssl_synthetic_<device>[_<size>].md`` (mean +- std AP per
method and label count; net1 / net2 / ensemble for PoseDual; the gain of each arm over the
supervised one with the same seed), ``.png`` (AP against label count; AP per seed and method
when there is one label count), ``_collapse.png``
(collapse fraction and AP per epoch, same-difficulty against easy-to-hard consistency),
``_runs.json`` (every run's per-epoch record) and ``_logs/`` (each run's training log).
"""
from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import subprocess
import sys
import time
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import numpy as np

try:
    import fcntl
except ImportError:  # Windows: no locks, one process per work folder
    fcntl = None

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE_CFG = os.path.join("experiments", "synthetic", "ssl_benchmark.yaml")

# method key -> (label in tables, config overrides). One place; the benchmark tunes nothing per method.
METHODS: Dict[str, tuple] = {
    "supervised": ("Supervised", ["MODEL.NAME", "pose_resnet"]),
    "posecons": ("PoseCons", ["MODEL.NAME", "pose_cons"]),
    # Joint Cutout's boxes (half sizes 10-19 px, jitter 10 px) are made for 256x192 crops, where
    # five of them erase ~6% of the crop; on the benchmark's 96x64 crops they erase ~30%.
    # CUTOUT_SCALE 0.354 (the crop size ratio, sqrt(64 * 96 / (192 * 256))) keeps the paper's
    # share (5.4%, transforms.batch.joint_cutout); the reference pixel sizes stay as extra rows.
    "posecons_jcs": ("PoseCons + Joint Cutout (CUTOUT_SCALE 0.354)",
                     ["MODEL.NAME", "pose_cons", "MASK_JOINT_NUM", "5", "CUTOUT_SCALE", "0.354"]),
    "posedual": ("PoseDual", ["MODEL.NAME", "pose_dual"]),
    "posedual_jcs": ("PoseDual + Joint Cutout (CUTOUT_SCALE 0.354)",
                     ["MODEL.NAME", "pose_dual", "MASK_JOINT_NUM", "5", "CUTOUT_SCALE", "0.354"]),
    "posedual_ra": ("PoseDual + RandAugment", ["MODEL.NAME", "pose_dual", "CONS_RAND_AUG", "True"]),
    # collapse study: the teacher sees its own hard affine draw (same difficulty as the student)
    "posecons_jc": ("PoseCons + Joint Cutout, reference pixel sizes (30% of the crop)",
                    ["MODEL.NAME", "pose_cons", "MASK_JOINT_NUM", "5"]),
    "posedual_jc": ("PoseDual + Joint Cutout, reference pixel sizes (30% of the crop)",
                    ["MODEL.NAME", "pose_dual", "MASK_JOINT_NUM", "5"]),
    "posecons_same": ("PoseCons, same-difficulty views",
                      ["MODEL.NAME", "pose_cons", "CONS_TEACHER_VIEW", "hard"]),
    # methods after the paper (extra rows; e.g. --methods mean_teacher posedual_mt multi_path)
    "mean_teacher": ("Mean Teacher", ["MODEL.NAME", "mean_teacher"]),
    "posedual_mt": ("PoseDual + Mean Teacher", ["MODEL.NAME", "pose_dual_mt"]),
    # multi-path's cutout and cut-occlusion boxes are Joint Cutout's (made for 256x192 crops): at
    # the reference pixel sizes five of them cover ~30% of a 96x64 crop and its first path draws
    # ten, so the ranked row gets the same geometric scale as Joint Cutout, MultiAugs and SSPCM
    "multi_path": ("Multi-path (occlusion+cutout, cutout+cutmix), reference pixel sizes",
                   ["MODEL.NAME", "pose_multi"]),
    "multi_path_s": ("Multi-path (occlusion+cutout, cutout+cutmix; sizes x 0.354)",
                     ["MODEL.NAME", "pose_multi", "SSL.HARD.CUTOUT_SCALE", "0.354"]),
    "posecons_conf": ("PoseCons + confidence mask 0.2",
                      ["MODEL.NAME", "pose_cons", "CONS_CONF_THRE", "0.2"]),
    # diagnostic of PoseDual < PoseCons: each PoseDual net with PoseCons' 1:1 balance of its
    # supervised and consistency terms (the reference gives the supervised term half the weight)
    "posedual_sup1": ("PoseDual, DUAL_SUP_WEIGHT 1.0",
                      ["MODEL.NAME", "pose_dual", "DUAL_SUP_WEIGHT", "1.0"]),
    # sensitivity of Mean Teacher to its EMA horizon: 1 / (1 - 0.999) = 1,000 steps spans the
    # whole full-size run (950 steps), 1 / (1 - 0.99) = 100 steps a tenth of it
    "mean_teacher_d99": ("Mean Teacher, MT_EMA_DECAY 0.99",
                         ["MODEL.NAME", "mean_teacher", "MT_EMA_DECAY", "0.99"]),
    # the methods that beat PoseDual on COCO (methods/multiaugs.py, methods/sspcm.py), as
    # released; their box and patch sizes are made for 256x192 crops like Joint Cutout's, so they
    # get the same geometric scale (SSL.HARD.CUTOUT_SCALE scales every op's pixel sizes)
    "multiaugs": ("MultiAugs (JC, JO, JOCO, JCCM; sizes x 0.354)",
                  ["MODEL.NAME", "multiaugs", "SSL.HARD.CUTOUT_SCALE", "0.354"]),
    "multiaugs_dual": ("MultiAugs dual (sizes x 0.354)",
                       ["MODEL.NAME", "multiaugs_dual", "SSL.HARD.CUTOUT_SCALE", "0.354"]),
    "sspcm": ("SSPCM (sizes x 0.354)", ["MODEL.NAME", "sspcm", "SSL.HARD.CUTOUT_SCALE", "0.354"]),
    # diagnostic of MultiAugs dual < PoseDual: the released loss sums the four paths' consistency
    # terms, so each net's consistency weighs ~4x PoseDual's against the same 0.5 x supervised
    # term; at 0.25 the sum weighs as one PoseDual term (a diagnostic row, not a tuned arm)
    "multiaugs_dual_w025": ("MultiAugs dual, SSL.CONS.WEIGHT 0.25 (the 4 paths' sum as one term)",
                            ["MODEL.NAME", "multiaugs_dual", "SSL.HARD.CUTOUT_SCALE", "0.354",
                             "SSL.CONS.WEIGHT", "0.25"]),
    # the same diagnostic for MultiAugs single: its four summed paths weigh ~4x PoseCons' one
    # consistency term against the same supervised term
    "multiaugs_w025": ("MultiAugs single, SSL.CONS.WEIGHT 0.25 (the 4 paths' sum as one term)",
                       ["MODEL.NAME", "multiaugs", "SSL.HARD.CUTOUT_SCALE", "0.354",
                        "SSL.CONS.WEIGHT", "0.25"]),
    # the same rule for multi-path, whose gain at 100 labels is gone at 300 (its consistency
    # loss ends ~4x PoseCons'): its two summed paths weighted as one term
    "multi_path_s_w05": ("Multi-path (sizes x 0.354), SSL.CONS.WEIGHT 0.5 (the 2 paths' sum as "
                         "one term)", ["MODEL.NAME", "pose_multi", "SSL.HARD.CUTOUT_SCALE", "0.354",
                                       "SSL.CONS.WEIGHT", "0.5"]),
    # diagnostic of SSPCM's teachers ending below PoseDual's nets: they are a PoseDual pair whose
    # consistency terms also pass the score filter; this row turns the filter off
    "sspcm_nofilter": ("SSPCM, SSL.SSPCM.SCORE_FILTER False (diagnostic)",
                       ["MODEL.NAME", "sspcm", "SSL.HARD.CUTOUT_SCALE", "0.354",
                        "SSL.SSPCM.SCORE_FILTER", "False"]),
}
# The held-out test set that scores every run's final weights: images of another generator seed
# than the training data (seed 0), larger than the per-epoch val set so that its AP is less noisy
# (on the 150 val images a run's AP has a bootstrap standard error of ~0.02: ssl_ap_bootstrap.py).
TEST_SEED = 1
# validation rows a method may report, in table order
NETS = ("net1", "net2", "ensemble", "mean", "teacher", "teacher1", "teacher2", "teacher_ensemble")
TABLE_METHODS = ("supervised", "posecons", "posecons_jcs", "posedual", "posedual_jcs",
                 "posedual_ra")
COLLAPSE_PAIR = ("posecons", "posecons_same")
CORE_METHODS = ("supervised", "posecons", "posedual")  # the sizes that skip the hard-aug rows
# the paper's rows and their diagnostics; every other row is a method after the paper (or one of
# its diagnostics), compared with the PoseDual ensemble of the same seed
PAPER_ROWS = TABLE_METHODS + ("posecons_jc", "posedual_jc", "posecons_same", "posedual_sup1")
AFTER_PAPER = tuple(m for m in METHODS if m not in PAPER_ROWS)

SIZES = {  # name -> benchmark size
    # 3,800 steps: enough for the supervised arm to flatten out on its 100 labels, the regime
    # the paper studies (at 950 steps every arm was still learning to localise at all and the
    # consistency term only slowed the fit: bench/results/ssl_archive/)
    "full": dict(labels=[100, 300], seeds=[0, 1, 2], epochs=20, num_train=2200, num_val=150,
                 num_test=600),
    # 7,600 steps: the consistency arms keep gaining after the supervised arm has flattened;
    # Supervised < PoseCons < PoseDual ensemble on each of 5 seeds (ssl_synthetic_cpu_long.md)
    "long": dict(labels=[100, 300], seeds=[0, 1, 2], epochs=40, num_train=2200, num_val=150,
                 num_test=600),
    # 4,940 steps: the quick start's budget (experiments/synthetic/posedual.yaml is this size's
    # PoseDual cell), the most that fits in 10 minutes on 2 idle CPU cores: 8.9 min measured
    "start": dict(labels=[100], seeds=[0, 1, 2, 3, 4], epochs=26, num_train=2200, num_val=150,
                  num_test=600, methods=CORE_METHODS),
    # ~15 CPU minutes: the three core methods at one seed and 3/4 of the full budget
    "quick": dict(labels=[100], seeds=[0], epochs=15, num_train=2200, num_val=150, num_test=600,
                  methods=CORE_METHODS),
    # the custom-skeleton check (--dataset-cfg ssl_benchmark_quadruped.yaml): 1,000 generated
    # animals (the unlabeled set), 100 of them labeled, 3 seeds of the core methods, 3,000 steps
    "quadruped": dict(labels=[100], seeds=[0, 1, 2], epochs=48, num_train=1000, num_val=100,
                      num_test=300, methods=CORE_METHODS),
}
DEFAULT_METHODS = list(TABLE_METHODS) + ["posecons_same"]


def lr_milestones(epochs: int) -> List[int]:
    """10x learning-rate drops at 2/3 and 5/6 of the run, the shape of the reference's COCO1K
    schedule (30 epochs, drops at 20 and 25): [13, 17] for 20 epochs."""
    return sorted({max(1, round(epochs * 2 / 3)), max(1, round(epochs * 5 / 6))})


def run_name(method: str, labels: int, seed: int) -> str:
    return f"{method}_L{labels}_s{seed}"


def train_command(method: str, labels: int, seed: int, args: argparse.Namespace) -> List[str]:
    """The train.py command line of one benchmark run."""
    over = list(METHODS[method][1]) + [
        "SEED", str(1000 + seed), "DATASET.TRAIN_LEN", str(labels),
        "DATASET.ROOT", args.data_root] + data_keys(args, args.data_root) + [
        "TRAIN.END_EPOCH", str(args.epochs),
        "TRAIN.LR_STEP", "[" + ", ".join(map(str, lr_milestones(args.epochs))) + "]",
        "OUTPUT_DIR", os.path.join(args.work_dir, "runs", run_name(method, labels, seed)),
        "LOG_DIR", os.path.join(args.work_dir, "tb", run_name(method, labels, seed)),
        "DEVICE", args.device, "WORKERS", str(args.workers),
    ] + list(args.opts)
    return [sys.executable, os.path.join(ROOT, "pose_estimation", "train.py"), "--cfg",
            args.base_cfg, "--no-progress"] + over


def data_keys(args: argparse.Namespace, root: str) -> List[str]:
    """The overrides that point a run at a data root: the people set's detection file and
    generator sizes; nothing for a custom dataset (its folder is all it needs)."""
    if args.custom:
        return []
    return ["TEST.COCO_BBOX_FILE", os.path.join(root, "coco", "person_detection_results",
                                                "synthetic_val2017_detections.json"),
            "SYNTHETIC.NUM_TRAIN", str(args.num_train), "SYNTHETIC.NUM_VAL", str(args.num_val)]


def find_history(run_dir: str) -> str:
    for folder, _, files in os.walk(run_dir):
        if "history.json" in files:
            return os.path.join(folder, "history.json")
    raise FileNotFoundError(f"no history.json under {run_dir}: the run did not finish an epoch")


def series(history: Dict, tag: str) -> List[float]:
    """Per-epoch values of a history tag (epoch order)."""
    return [v for _, v in sorted(history.get(tag, []))]


def record_from_history(history: Dict, method: str, labels: int, seed: int,
                        wall_s: float, steps: int) -> Dict:
    nets = [n for n in NETS if f"val_{n}/AP" in history]
    rec = {"method": method, "labels": labels, "seed": seed, "wall_s": round(wall_s, 1),
           "steps": steps, "ap": {n: series(history, f"val_{n}/AP")[-1] for n in nets},
           "ap_per_epoch": {n: series(history, f"val_{n}/AP") for n in nets},
           "collapse_frac": series(history, "monitor/net1/collapse_frac"),
           "max_mean": series(history, "monitor/net1/max_mean"),
           "loss_cons": series(history, "epoch/loss_cons")}
    return rec


def score_on_test(method: str, labels: int, seed: int, args: argparse.Namespace) -> Dict[str, float]:
    """Every validation row (net1, ensemble, ...) of the run's final weights on the held-out
    test images, scored by pose_estimation/valid.py with the run's own settings."""
    name = run_name(method, labels, seed)
    found = sorted(os.path.join(folder, "final_state.pth.tar")  # run_<date-time>: newest last
                   for folder, _, files in os.walk(os.path.join(args.work_dir, "runs", name))
                   if "final_state.pth.tar" in files and os.path.basename(folder) != "latest")
    weights = found[-1] if found else ""
    if not weights:
        raise FileNotFoundError(f"no final_state.pth.tar under {args.work_dir}/runs/{name}")
    test_root = args.test_root
    cmd = [sys.executable, os.path.join(ROOT, "pose_estimation", "valid.py"), "--cfg",
           args.base_cfg, "--no-progress", "--model-file", weights] + list(
        METHODS[method][1]) + [
        "DATASET.ROOT", test_root] + data_keys(args, test_root)[:2] + [
        "SYNTHETIC.GENERATE_IF_MISSING", "False",
        "OUTPUT_DIR", os.path.join(args.work_dir, "test", name),  # = out_root below
        "LOG_DIR", os.path.join(args.work_dir, "tb_test", name),
        "DEVICE", args.device, "WORKERS", str(args.workers)] + list(args.opts)
    log_path = os.path.join(args.work_dir, "logs", name + ".log")
    out_root = os.path.join(args.work_dir, "test", name)
    out = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True)
    with open(log_path, "a") as log:
        log.write(f"\n# held-out test set ({test_root})\n" + out.stdout)
    # valid.py writes its AP table as results.json into a folder named after the weights:
    # <run folder>_final_state[_flags]; only the folders of these weights count
    tag = os.path.basename(os.path.dirname(weights)) + "_final_state"
    scored = [os.path.join(folder, "results.json") for folder, _, files in os.walk(out_root)
              if "results.json" in files and os.path.basename(folder).startswith(tag)]
    if out.returncode != 0 or not scored:
        raise RuntimeError(f"scoring {name} on the test set failed (exit {out.returncode}); "
                           f"see {log_path}")
    with open(max(scored, key=os.path.getmtime)) as f:
        rows = json.load(f)["rows"]
    return {net: row["main"] for net, row in rows.items()}


@contextlib.contextmanager
def exclusive(path: str, wait: bool) -> Iterator[bool]:
    """Hold an advisory lock on ``path`` for the block; yields False when another process holds it
    and ``wait`` is off. The system drops the lock with its process, so a killed holder never
    leaves a stale one."""
    if fcntl is None:
        yield True
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def finished_record(method: str, labels: int, seed: int, args: argparse.Namespace
                    ) -> Optional[Dict]:
    """The record of a finished run, or None."""
    from semipose.utils.io import atomic_write_text

    name = run_name(method, labels, seed)
    rec_path = os.path.join(args.work_dir, "records", name + ".json")
    if not os.path.exists(rec_path):
        return None
    with open(rec_path) as f:
        rec = json.load(f)
    if rec.get("epochs", args.epochs) != args.epochs:
        raise SystemExit(f"{rec_path} was trained for {rec['epochs']} epochs, not "
                         f"{args.epochs}: give this budget its own --work-dir")
    if "test_ap" not in rec and os.path.isdir(os.path.join(args.work_dir, "runs", name)):
        rec["test_ap"] = score_on_test(method, labels, seed, args)  # a run of an older version
        atomic_write_text(json.dumps(rec, indent=1), rec_path)
    return rec


def run_one(method: str, labels: int, seed: int, args: argparse.Namespace) -> Optional[Dict]:
    """Train one run (or reuse its record) and return the record; None when another process
    (a lane on the same work folder) is training it."""
    name = run_name(method, labels, seed)
    with exclusive(os.path.join(args.work_dir, "claims", name + ".lock"), wait=False) as mine:
        if not mine:
            print(f"[{time.strftime('%H:%M:%S')}] {name}: in training by another process, "
                  f"skipped", flush=True)
            return None
        # looked up under the lock: another lane may have finished the run a moment ago
        rec = finished_record(method, labels, seed, args)
        return rec if rec is not None else train_one(method, labels, seed, args)


def train_one(method: str, labels: int, seed: int, args: argparse.Namespace) -> Dict:
    """Train one run, score it on the held-out test set and write its record."""
    from semipose.utils.io import atomic_write_text

    name = run_name(method, labels, seed)
    rec_path = os.path.join(args.work_dir, "records", name + ".json")
    log_path = os.path.join(args.work_dir, "logs", name + ".log")
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    cmd = train_command(method, labels, seed, args)
    t0 = time.time()
    print(f"[{time.strftime('%H:%M:%S')}] {name}: training (log {log_path})", flush=True)
    with open(log_path, "a") as log:
        code = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    if code != 0:
        raise RuntimeError(f"run {name} failed with exit status {code}; see {log_path}")
    with open(find_history(os.path.join(args.work_dir, "runs", name))) as f:
        history = json.load(f)
    steps = int(max((s for s, _ in history.get("train/loss", [[0, 0]])), default=0))
    rec = record_from_history(history, method, labels, seed, time.time() - t0, steps)
    rec["epochs"] = args.epochs
    rec["test_ap"] = score_on_test(method, labels, seed, args)
    atomic_write_text(json.dumps(rec, indent=1), rec_path)
    print(f"[{time.strftime('%H:%M:%S')}] {name}: AP {rec['ap']} ({rec['wall_s']:.0f} s)",
          flush=True)
    return rec


# ------------------------------------------------------------------------------------ report
def mean_std(values: Sequence[float], signed: bool = False) -> str:
    v = np.asarray(values, np.float64)
    return f"{v.mean():{'+' if signed else ''}.3f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.3f}"


def method_rows(records: List[Dict], labels: Sequence[int], methods: Sequence[str], key: str,
                cell: Callable[[List[Dict], str, int], str],
                cost: Optional[Dict[str, float]] = None) -> str:
    """A markdown table: one row per method and validation net, one column per label count;
    ``cell(runs, net, labels)`` renders the runs of that method and label count. With ``cost``
    (method -> step time relative to PoseDual), a last column shows it."""
    records = [r for r in records if key in r]
    lines = ["| Method | net | " + " | ".join(f"{n} labels" for n in labels) +
             (" | step cost vs PoseDual" if cost else "") + " |",
             "|---|---|" + "---|" * (len(labels) + bool(cost))]
    for m in methods:
        runs = [r for r in records if r["method"] == m]
        for net in sorted({n for r in runs for n in r[key]}, key=NETS.index):
            cells = [cell([r for r in runs if r["labels"] == n], net, n) for n in labels]
            if cost:
                cells.append(f"{cost[m]:.2f}" if m in cost else "–")
            lines.append(f"| {METHODS[m][0]} | {net} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table(records: List[Dict], labels: Sequence[int], methods: Sequence[str],
          key: str = "test_ap", cost: Optional[Dict[str, float]] = None) -> str:
    """Mean ± std of ``key`` (test_ap: held-out test set; ap: val set, last epoch)."""
    def cell(runs: List[Dict], net: str, _labels: int) -> str:
        vals = [r[key][net] for r in runs]
        return f"{mean_std(vals)} (n={len(vals)})" if vals else "–"
    return method_rows(records, labels, methods, key, cell, cost)


# Rows that only change a loss weight run the same step as another row: its cost is theirs.
SAME_STEP = {"multiaugs_dual_w025": "multiaugs_dual", "multiaugs_w025": "multiaugs",
             "multi_path_s_w05": "multi_path_s"}


def step_costs(device: str) -> Dict[str, float]:
    """Each method's training-step time relative to PoseDual's, measured in one process by
    bench/bench_method_cost.py on this kind of device (empty when not measured): from
    ``method_cost_<device>.json``, and for a method it lacks from a later, smaller measurement
    ``method_cost_<device>_<what>.json`` (each ratio is against PoseDual in its own run); the
    ``SAME_STEP`` rows take the cost of the row whose step they run."""
    stem = os.path.join(ROOT, "bench", "results", f"method_cost_{device.split(':')[0]}")
    out: Dict[str, float] = {}
    for path in [stem + ".json"] + sorted(glob.glob(stem + "_*.json")):
        if os.path.exists(path):
            with open(path) as f:
                for m, v in json.load(f)["methods"].items():
                    out.setdefault(m, v["cost"])
    for row, same in SAME_STEP.items():
        if same in out:
            out.setdefault(row, out[same])
    return out


def gain_table(records: List[Dict], labels: Sequence[int], methods: Sequence[str],
               key: str = "test_ap", base: str = "supervised", base_net: str = "net1") -> str:
    """AP of each other row minus the ``base`` arm's ``base_net`` AP at the same seed and label
    count (a paired difference: the seed's data order and initialisation cancel out)."""
    ref = {(r["labels"], r["seed"]): r[key][base_net] for r in records
           if r["method"] == base and key in r and base_net in r[key]}

    def cell(runs: List[Dict], net: str, n: int) -> str:
        d = [r[key][net] - ref[(n, r["seed"])] for r in runs if (n, r["seed"]) in ref]
        return f"{mean_std(d, signed=True)} ({sum(x > 0 for x in d)}/{len(d)} seeds > 0)" if d else "–"
    return method_rows(records, labels, [m for m in methods if m != base], key, cell)


def plot_ap(records: List[Dict], labels: Sequence[int], methods: Sequence[str], path: str,
            key: str = "test_ap", metric: str = "COCO AP", units: str = "persons") -> None:
    """Test AP against label count per method (PoseDual: its ensemble; SSPCM: its student); with a
    single label count, every seed's AP per method instead, a seed's runs joined by a line (the
    paired comparison)."""
    from semipose.engine.visualize import pyplot, save_figure
    plt = pyplot()

    records = [r for r in records if key in r]
    where = "held-out test set" if key == "test_ap" else "val set, last epoch"
    tab10 = plt.get_cmap("tab10")

    # tab10 without its grey, which would pass for the grey PoseDual reference; past nine methods
    # the colours repeat, with another marker and line
    palette = [tab10(c) for c in range(10) if c != 7]

    def colors(i: int):
        return palette[i % len(palette)]

    def style(i: int) -> Dict[str, str]:
        n = len(palette)
        return dict(marker="os^D"[i // n % 4], linestyle="-" if i < n else "--")

    def row(rs):
        return "ensemble" if rs and "ensemble" in rs[0][key] else "net1"

    def finish(fig, axes, legend: Dict) -> None:
        axes[0].set_ylabel(f"{metric}, synthetic {where}")
        for ax in axes:
            ax.grid(alpha=0.3)
            ax.legend(**legend)
        fig.tight_layout()
        save_figure(fig, path, dpi=110)

    shown = [m for m in methods if any(r["method"] == m for r in records)]
    if len(labels) == 1:
        fig, ax = plt.subplots(figsize=(max(7, 1.3 * len(shown)), 4.5))
        seeds = sorted({r["seed"] for r in records})
        for j, seed in enumerate(seeds):
            ys = []
            for m in shown:
                rs = [r for r in records if r["method"] == m and r["seed"] == seed]
                ys.append(rs[0][key][row(rs)] if rs else np.nan)
            # an arm this seed lacks is a gap in its line (NaN), not a line across other arms
            ax.plot(range(len(ys)), ys, marker="o", color=colors(j), alpha=0.8,
                    label=f"seed {seed}")
        for i, m in enumerate(shown):
            rs = [r for r in records if r["method"] == m]
            ax.plot([i - 0.2, i + 0.2], [np.mean([r[key][row(rs)] for r in rs])] * 2, color="k", lw=2)
        ax.set_xticks(range(len(shown)))
        ax.set_xticklabels([METHODS[m][0] + (" (ens.)" if row([r for r in records if r["method"] == m])
                                             == "ensemble" else "") for m in shown],
                           rotation=20, ha="right", fontsize=8)
        ax.set_title(f"{labels[0]} labeled {units}: AP per seed (black: mean)", fontsize=10)
        finish(fig, [ax], dict(fontsize=8))
        return

    # Several label counts: the paper's rows in one panel and the methods after it in another,
    # beside the Supervised and PoseDual references drawn in black and grey, so that no panel
    # needs more than ten colours and each legend sits under its own panel.
    refs = [m for m in ("supervised", "posedual") if m in shown]
    panels = [("the paper's methods and their diagnostics", [m for m in shown if m in PAPER_ROWS]),
              ("the methods after the paper, against Supervised and PoseDual",
               [m for m in shown if m not in PAPER_ROWS])]
    panels = [(t, ms) for t, ms in panels if ms]
    if len(panels) == 2:
        panels[1] = (panels[1][0], refs + panels[1][1])
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 6.2), sharey=True,
                             squeeze=False)
    for j, (ax, (title, ms)) in enumerate(zip(axes[0], panels)):
        # the references keep one look in the panel of the later methods
        ref_look = {"supervised": "k", "posedual": "0.55"} if j == 1 else {}
        k = 0
        for i, m in enumerate(ms):
            rs = [r for r in records if r["method"] == m]
            net = row(rs)
            xs, ys, es = [], [], []
            # methods side by side around each count, so that equal means stay apart
            dodge = 1.02 ** (i - (len(ms) - 1) / 2)
            counts = []
            for n in labels:
                vals = [r[key][net] for r in rs if r["labels"] == n]
                if vals:
                    xs.append(n * dodge), ys.append(np.mean(vals)), counts.append(len(vals))
                    es.append(np.std(vals, ddof=1) if len(vals) > 1 else 0)
            if not xs:
                continue
            if m in ref_look:
                color, look = ref_look[m], dict(marker="o", linestyle=":")
            else:
                color, look = colors(k), style(k)
                k += 1
            label = METHODS[m][0] + (" (ensemble)" if net == "ensemble" else
                                     " (student)" if "teacher_ensemble" in rs[0][key] else "")
            if len(set(counts)) == 1:  # one seed count: say it once, in the legend
                label += f", n={counts[0]}"
            else:
                for x, y, c in zip(xs, ys, counts):
                    ax.annotate(f"n={c}", (x, y), textcoords="offset points", xytext=(5, -3),
                                fontsize=7, color=color)
            ax.errorbar(xs, ys, yerr=es, capsize=3, color=color, label=label, **look)
        ax.set_xscale("log")
        ax.set_xticks(list(labels))
        ax.set_xticklabels([str(n) for n in labels])
        ax.xaxis.set_minor_locator(plt.NullLocator())  # no 2x10^2 ticks between the counts
        ax.set_title(title + "\nmean ± std over seeds (n = seeds)", fontsize=9)
        ax.set_xlabel(f"labeled {units}")
    # the legend under its panel, where it hides no point
    finish(fig, list(axes[0]), dict(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14),
                                    borderaxespad=0))


def plot_collapse(records: List[Dict], labels: int, path: str) -> None:
    from semipose.engine.visualize import pyplot, save_figure
    plt = pyplot()

    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(13, 4))
    for m, color in zip(COLLAPSE_PAIR + ("supervised",), ("tab:blue", "tab:red", "tab:gray")):
        for k, r in enumerate(x for x in records if x["method"] == m and x["labels"] == labels):
            kw = dict(color=color, alpha=0.8, label=METHODS[m][0] if k == 0 else None)
            ep = np.arange(1, len(r["ap_per_epoch"]["net1"]) + 1)
            a1.plot(ep[:len(r["collapse_frac"])], r["collapse_frac"], marker="o", **kw)
            a2.plot(ep[:len(r["max_mean"])], r["max_mean"], marker="o", **kw)
            a3.plot(ep, r["ap_per_epoch"]["net1"], marker="o", **kw)
    a1.set_ylabel("collapse fraction (max < LOW_MAX_THRE)")
    a2.set_ylabel("mean heatmap maximum on unlabeled crops")
    a3.set_ylabel("val AP (net1)")
    for a in (a1, a2, a3):
        a.set_xlabel("epoch")
        a.grid(alpha=0.3)
    a1.set_ylim(-0.02, 1.02)
    a3.legend(fontsize=8)
    fig.suptitle(f"Collapse study, {labels} labels: easy-to-hard vs same-difficulty consistency")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def all_records(work_dir: str) -> List[Dict]:
    """Every finished run of a work folder (earlier invocations included), in a stable order."""
    folder = os.path.join(work_dir, "records")
    recs = []
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        if name.endswith(".json"):
            with open(os.path.join(folder, name)) as f:
                recs.append(json.load(f))
    order = list(METHODS)
    return sorted(recs, key=lambda r: (r["labels"], order.index(r["method"]), r["seed"]))


def write_report(args: argparse.Namespace, wall_s: float) -> Dict[str, str]:
    """Table, plots and run records of everything finished in ``args.work_dir``."""
    from semipose.utils.io import atomic_write_text

    records = all_records(args.work_dir)
    stem = report_stem(args)
    # the paper's rows, then any later method that has records (collapse-study arms aside)
    extra = [m for m in METHODS if m not in TABLE_METHODS and m not in COLLAPSE_PAIR]
    methods = [m for m in list(TABLE_METHODS) + extra if any(r["method"] == m for r in records)]
    labels = sorted({r["labels"] for r in records})
    seeds = sorted({r["seed"] for r in records})
    run_wall = sum(r["wall_s"] for r in records)
    steps = sorted({r["steps"] for r in records})
    custom = getattr(args, "custom", False)
    cfg_flag = (f" --dataset-cfg {os.path.relpath(args.base_cfg, ROOT)}"
                if os.path.abspath(args.base_cfg) != os.path.join(ROOT, BASE_CFG) else "")
    md = [f"# Synthetic SSL benchmark ({args.size}, device {args.device}"
          f"{', dataset ' + args.dataset_name if custom else ''})", "",
          f"`python bench/ssl_benchmark.py{cfg_flag}"
          f"{'' if args.size == 'full' else ' --size ' + args.size} "
          f"--device {args.device}"
          f"{'' if args.epochs == SIZES[args.size]['epochs'] else f' --epochs {args.epochs}'}`: "
          f"preset light, {args.num_train} train images "
          f"(unlabeled = all their {getattr(args, 'num_persons', '?')} "
          f"{'instances' if custom else 'persons'}), "
          f"{args.num_val} val images (scored every epoch), {args.num_test} held-out test images "
          f"of another generator seed ({getattr(args, 'test_persons', '?')} "
          f"{'instances' if custom else 'persons'}, scored once "
          f"with the final weights), {args.epochs} epochs "
          f"= {', '.join(map(str, steps))} optimizer steps per run, seeds {seeds}, "
          f"{len(records)} runs. Sum of run wall times {run_wall / 60:.1f} min "
          f"(last invocation {wall_s / 60:.1f} min).",
          "", f"{'OKS AP with the description' + chr(39) + 's sigmas' if custom else 'COCO AP'} "
          "(GT boxes) of the final weights on the held-out test set, mean ± std "
          "(sample std over seeds); the last column is the step time relative to PoseDual's "
          f"(bench/results/method_cost_{args.device.split(':')[0]}.md):", "",
          table(records, labels, methods, "test_ap", step_costs(args.device)), ""]
    if any(r["method"] == "supervised" for r in records) and len(methods) > 1:
        md += ["Gain over the supervised arm with the same seed and labels (test AP difference, "
               "mean ± std over seeds, and how many seeds gained):", "",
               gain_table(records, labels, methods, "test_ap"), ""]
    duals = [m for m in methods if m.startswith("posedual")]
    if "posecons" in methods and duals:  # the paper's second claim: PoseDual > PoseCons
        md += ["PoseDual rows minus PoseCons with the same seed and labels (test AP difference):",
               "", gain_table(records, labels, duals + ["posecons"], "test_ap", base="posecons"),
               ""]
    later = [m for m in methods if m in AFTER_PAPER]
    if "posedual" in methods and later:  # do the methods after PoseDual beat it?
        md += ["Methods after the paper minus the PoseDual ensemble with the same seed and labels "
               "(test AP difference):", "",
               gain_table(records, labels, ["posedual"] + later, "test_ap", base="posedual",
                          base_net="ensemble"), ""]
    md += [f"The same runs on the per-epoch val set after the last epoch ({args.num_val} images; "
           "with 150 a run's AP there has a bootstrap standard error of about 0.02, "
           "bench/ssl_ap_bootstrap.py):", "",
           table(records, labels, methods, "ap"), ""]
    # the study needs both arms (the quick size runs no same-difficulty arm, so no study)
    same = all(any(r["method"] == m for r in records) for m in COLLAPSE_PAIR)
    if same:
        md += ["## Collapse study", "", "Per epoch, net1, mean over seeds: collapse fraction / "
               "mean heatmap max / val AP.", ""]
        for m in COLLAPSE_PAIR + ("supervised",):
            rs = [r for r in records if r["method"] == m and r["labels"] == min(labels)]
            if not rs:
                continue
            cf = np.mean([r["collapse_frac"] for r in rs], 0)
            mx = np.mean([r["max_mean"] for r in rs], 0)
            ap = np.mean([r["ap_per_epoch"]["net1"] for r in rs], 0)
            md.append(f"- {METHODS[m][0]} (n={len(rs)}): " + "; ".join(
                f"e{i + 1} {c:.2f}/{x:.2f}/{a:.3f}" for i, (c, x, a) in enumerate(zip(cf, mx, ap))))
        md.append("")
    atomic_write_text("\n".join(md), stem + ".md")
    atomic_write_text(json.dumps(records, indent=1), stem + "_runs.json")
    for r in records:  # the training log of every recorded run beside the table
        name = run_name(r["method"], r["labels"], r["seed"])
        src = os.path.join(args.work_dir, "logs", name + ".log")
        if os.path.exists(src):
            with open(src, encoding="utf-8", errors="replace") as f:
                atomic_write_text(f.read(), os.path.join(stem + "_logs", name + ".log"))
    axis = ("OKS AP", "instances") if custom else ("COCO AP", "persons")
    plot_ap(records, labels, methods, stem + ".png", "test_ap", *axis)
    if len(labels) > 1:  # and per label count, each seed's arms joined (the paired comparison)
        for n in labels:
            at = [r for r in records if r["labels"] == n]
            paired = [m for m in methods if len({r["seed"] for r in at if r["method"] == m}) >= 3]
            if paired:
                plot_ap(at, [n], paired, f"{stem}_{n}labels_per_seed.png", "test_ap", *axis)
    if same:
        plot_collapse(records, min(labels), stem + "_collapse.png")
    return {"md": stem + ".md", "png": stem + ".png"}


def prepare_custom_data(args: argparse.Namespace) -> int:
    """A custom dataset's train/val folder and held-out test folder (the synthetic quadruped is
    generated where they are missing); returns the number of train instances (the unlabeled
    set of mix_custom)."""
    from semipose.data.synthetic import generate
    for root, seed, n_train, n_val in ((args.data_root, 0, args.num_train, args.num_val),
                                       (args.test_root, TEST_SEED, 0, args.num_test)):
        if not os.path.exists(os.path.join(root, "annotations", "val.json")):
            print(f"generating the synthetic quadruped under {root}", flush=True)
            generate(root, seed=seed, num_train=n_train, num_val=n_val, num_unlabeled=0,
                     show_progress=False, workers=os.cpu_count() or 1, preset="light",
                     body="quadruped", formats=("custom",))
    with open(os.path.join(args.data_root, "annotations", "train.json")) as f:
        train = json.load(f)
    with open(os.path.join(args.test_root, "annotations", "val.json")) as f:
        test = json.load(f)
    if len(train["images"]) != args.num_train or len(test["images"]) != args.num_test:
        raise SystemExit(f"{args.data_root} / {args.test_root} hold {len(train['images'])} train "
                         f"/ {len(test['images'])} test images, this size asks for "
                         f"{args.num_train} / {args.num_test}: pass the sizes of your folders "
                         f"(--num-train, --num-test) or new --data-root / --test-root folders")
    args.test_persons = sum(a.get("num_keypoints", 0) > 0 for a in test["annotations"])
    return sum(a.get("num_keypoints", 0) > 0 for a in train["annotations"])


def prepare_data(args: argparse.Namespace) -> int:
    """Generate the benchmark dataset if missing; returns the number of train persons."""
    from semipose.data.synthetic import generate
    if args.custom:
        return prepare_custom_data(args)
    ann = os.path.join(args.data_root, "coco", "annotations", "person_keypoints_{}2017.json")
    if not os.path.exists(ann.format("val")):
        print(f"generating the benchmark dataset under {args.data_root}", flush=True)
        generate(args.data_root, seed=0, num_train=args.num_train, num_val=args.num_val,
                 num_unlabeled=0, show_progress=False, workers=os.cpu_count() or 1,
                 preset="light")
    with open(ann.format("train")) as f:
        train = json.load(f)
    if len(train["images"]) != args.num_train:
        raise SystemExit(f"{ann.format('train')} has {len(train['images'])} images, this size "
                         f"asks for {args.num_train}: delete {args.data_root} to regenerate it "
                         f"or pass --data-root for a new folder")
    persons = sum(a.get("num_keypoints", 0) > 0 for a in train["annotations"])
    test_ann = os.path.join(args.test_root, "coco", "annotations", "person_keypoints_val2017.json")
    if not os.path.exists(test_ann):
        print(f"generating the held-out test set under {args.test_root}", flush=True)
        generate(args.test_root, seed=TEST_SEED, num_train=0, num_val=args.num_test,
                 num_unlabeled=0, show_progress=False, workers=1, preset="light")
    with open(test_ann) as f:
        test = json.load(f)
    if len(test["images"]) != args.num_test:
        raise SystemExit(f"{test_ann} has {len(test['images'])} images, this size asks for "
                         f"{args.num_test}: delete {args.test_root} to regenerate it or pass "
                         f"--test-root for a new folder")
    args.test_persons = sum(a.get("num_keypoints", 0) > 0 for a in test["annotations"])
    if persons < 10 * max(args.labels):
        print(f"warning: {persons} unlabeled persons is less than 10x the largest labeled set "
              f"({max(args.labels)}); raise --num-train", flush=True)
    return persons


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", choices=list(SIZES), default="full",
                   help="full (default), long (2x the steps), start (the 10-minute quick "
                        "start's budget) or quick (~15 CPU minutes)")
    p.add_argument("--quick", action="store_true", help="same as --size quick")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:<i>")
    p.add_argument("--labels", type=int, nargs="+", help="labeled person counts")
    p.add_argument("--seeds", type=int, nargs="+", help="seeds (>= 3 for a table)")
    p.add_argument("--epochs", type=int, help="epochs over the unlabeled set (the step budget)")
    p.add_argument("--methods", nargs="+", choices=list(METHODS),
                   help="methods to run (default: the size's list, else the 6 table methods "
                        "+ posecons_same)")
    p.add_argument("--num-train", type=int, help="synthetic train images")
    p.add_argument("--num-val", type=int, help="synthetic val images")
    p.add_argument("--num-test", type=int, help="held-out test images (generator seed 1)")
    p.add_argument("--test-root", help="held-out test set (generated if missing)")
    p.add_argument("--workers", type=int,
                   help="data-loader workers per run (default: 0 on a CPU, where worker "
                        "processes take the cores the step's threads need and make every arm "
                        "16-30%% slower; 4 on a GPU). The data are the same either way.")
    p.add_argument("--dataset-cfg", default=os.path.join(ROOT, BASE_CFG),
                   help="the base config of every run (default the people set's "
                        "ssl_benchmark.yaml; e.g. experiments/synthetic/ssl_benchmark_quadruped.yaml "
                        "for a custom keypoint dataset)")
    p.add_argument("--data-root", help="benchmark dataset (generated if missing)")
    p.add_argument("--work-dir", help="run folders, logs and records (default output/ssl_benchmark_<size>)")
    p.add_argument("--out-dir", default=os.path.join(ROOT, "bench", "results"))
    p.add_argument("opts", nargs=argparse.REMAINDER,
                   help="extra KEY VALUE overrides for every run (the same for all methods)")
    a = p.parse_args(argv)
    a.size = "quick" if a.quick else a.size
    for k, v in SIZES[a.size].items():
        if getattr(a, k) is None:  # a copy: the size's own lists stay as they are
            setattr(a, k, list(v) if isinstance(v, (list, tuple)) else v)
    a.methods = a.methods or list(DEFAULT_METHODS)
    if a.workers is None:
        a.workers = 0 if a.device == "cpu" else 4
    a.base_cfg = os.path.abspath(a.dataset_cfg)
    # What the base config trains on, read from its files alone (not load_cfg: a custom set's
    # description is checked on load, and the data are generated only later)
    from semipose.config.loader import read_with_bases
    dataset = read_with_bases(a.base_cfg).get("DATASET", {})
    train_dataset = dataset.get("TRAIN_DATASET", "")
    a.custom = train_dataset == "mix_custom"
    if not a.custom and train_dataset != "mix_coco_coco":
        p.error(f"--dataset-cfg {a.dataset_cfg}: DATASET.TRAIN_DATASET must be mix_coco_coco "
                f"(the people set) or mix_custom (a custom keypoint dataset)")
    # every size trains on the same generated data (the base config's root for a custom set)
    default_root = (os.path.join(ROOT, dataset.get("ROOT", "data/custom")) if a.custom
                    else os.path.join(ROOT, "data", "synthetic_ssl"))
    a.data_root = a.data_root or default_root
    a.test_root = a.test_root or default_root.rstrip("/") + "_test"
    name = os.path.basename(a.data_root.rstrip("/"))
    a.dataset_name = (name[len("synthetic_"):] if name.startswith("synthetic_") else name
                      ) if a.custom else ""
    a.work_dir = a.work_dir or os.path.join(
        ROOT, "output", f"ssl_benchmark{'_' + a.dataset_name if a.custom else ''}_{a.size}_"
                        f"{a.device.split(':')[0]}")
    if len(a.opts) % 2:
        p.error(f"overrides must be KEY VALUE pairs, got {a.opts}")
    return a


def report_stem(args: argparse.Namespace) -> str:
    dataset = f"{args.dataset_name}_" if getattr(args, "custom", False) else ""
    size = "" if args.size in ("full", getattr(args, "dataset_name", "")) else f"_{args.size}"
    return os.path.join(args.out_dir, f"ssl_synthetic_{dataset}{args.device.split(':')[0]}{size}")


def restore_records(args: argparse.Namespace) -> int:
    """Records of the committed ``<stem>_runs.json`` missing from the work folder are written
    back, so a fresh checkout (or a new work folder) skips runs already in the results and its
    report keeps them. Returns how many were restored."""
    from semipose.utils.io import atomic_write_text

    path = report_stem(args) + "_runs.json"
    if not os.path.exists(path):
        return 0
    with open(path) as f:
        records = json.load(f)
    restored = 0
    for rec in records:
        if rec.get("epochs", args.epochs) != args.epochs or rec["method"] not in METHODS:
            continue
        dst = os.path.join(args.work_dir, "records",
                           run_name(rec["method"], rec["labels"], rec["seed"]) + ".json")
        if not os.path.exists(dst):
            atomic_write_text(json.dumps(dict(rec, epochs=args.epochs), indent=1), dst)
            restored += 1
    if restored:
        print(f"{restored} finished run(s) taken from {path}", flush=True)
    return restored


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, str]:
    args = parse_args(argv)
    t0 = time.time()
    # one lane generates the data, the others wait for it
    with exclusive(os.path.abspath(args.data_root).rstrip(os.sep) + ".lock", wait=True):
        args.num_persons = prepare_data(args)
    restore_records(args)
    # Lowest label count first (the ordering the paper is about), seeds interleaved so that a
    # partial run already has every method at one seed.
    for labels in sorted(args.labels):
        for seed in args.seeds:
            for m in args.methods:
                if m == "posecons_same" and labels != min(args.labels):
                    continue
                run_one(m, labels, seed, args)
                write_report(args, time.time() - t0)
    out = write_report(args, time.time() - t0)
    print(open(out["md"]).read())
    return out


if __name__ == "__main__":
    main()
