"""How much of an SSL benchmark difference is val-set noise: a paired bootstrap over val images.

    python bench/ssl_ap_bootstrap.py [--work-dir output/ssl_benchmark_full_cpu] [--rounds 200]

For every finished run of a benchmark work folder, the final keypoint results of net 1 (and of
the PoseDual ensemble) are re-scored on ``--rounds`` resamples of the val images (drawn with
replacement, the same resamples for every run). Reported: each run's AP standard error from the
val set alone, and for each semi-supervised run the paired difference to the supervised run of
the same seed and label count, with its bootstrap standard error. A difference smaller than
about twice its standard error cannot be told apart from the choice of val images. Written to
``bench/results/ssl_ap_bootstrap_<work-dir name>.md``.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import os
import sys
from typing import Dict, List, Sequence

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# results file of each validation row (the evaluator's prefix numbering: net1, net2, ensemble)
ROW_FILES = {"net1": "person_keypoints_val2017_eval_1.json",
             "ensemble": "person_keypoints_val2017_eval_3.json"}


def coco_ap(gt: Dict, dets: List[Dict], image_ids: Sequence[int]) -> float:
    """COCO keypoint AP on the images ``image_ids`` (repeats allowed: each copy is a new image)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    anns_of, dets_of = {}, {}
    for a in gt["annotations"]:
        anns_of.setdefault(a["image_id"], []).append(a)
    for d in dets:
        dets_of.setdefault(d["image_id"], []).append(d)
    images, anns, res = [], [], []
    for new_id, old in enumerate(image_ids, start=1):
        images.append({"id": new_id})
        for a in anns_of.get(old, []):
            anns.append(dict(a, id=len(anns) + 1, image_id=new_id))
        for d in dets_of.get(old, []):
            res.append(dict(d, image_id=new_id))
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = {"images": images, "annotations": anns,
                           "categories": copy.deepcopy(gt["categories"])}
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(res) if res else COCO()
        ev = COCOeval(coco_gt, coco_dt, "keypoints")
        ev.params.useSegm = None
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0])


def find_results(run_dir: str, row: str) -> str:
    """The row's results file of the newest run folder (run_<date-time> sorts by time); the
    'latest' link is not followed by os.walk."""
    found = sorted(os.path.join(folder, ROW_FILES[row]) for folder, _, files in os.walk(run_dir)
                   if os.path.basename(folder) == "results" and ROW_FILES[row] in files)
    return found[-1] if found else ""


def main(argv: Sequence[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work-dir", default=os.path.join(ROOT, "output", "ssl_benchmark_full_cpu"))
    p.add_argument("--data-root", default=os.path.join(ROOT, "data", "synthetic_ssl"))
    p.add_argument("--rounds", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="markdown file (default bench/results/ssl_ap_bootstrap_<work>.md)")
    a = p.parse_args(argv)
    from semipose.utils.io import print_and_write

    with open(os.path.join(a.data_root, "coco", "annotations", "person_keypoints_val2017.json")) as f:
        gt = json.load(f)
    ids = [im["id"] for im in gt["images"]]
    records_dir = os.path.join(a.work_dir, "records")
    if not os.path.isdir(records_dir):
        raise SystemExit(f"{records_dir} does not exist: run bench/ssl_benchmark.py first")
    runs = []  # (method, labels, seed, row, detections)
    for name in sorted(os.listdir(records_dir)):
        rec = json.load(open(os.path.join(records_dir, name)))
        run_dir = os.path.join(a.work_dir, "runs", name[:-len(".json")])
        for row in ROW_FILES:
            path = find_results(run_dir, row) if row in rec["ap"] else ""
            if path:
                runs.append((rec["method"], rec["labels"], rec["seed"], row, json.load(open(path))))
    rng = np.random.default_rng(a.seed)
    samples = [rng.choice(ids, size=len(ids), replace=True) for _ in range(a.rounds)]
    full, boot = {}, {}
    for k, (m, n, s, row, dets) in enumerate(runs):
        key = (m, n, s, row)
        full[key] = coco_ap(gt, dets, ids)
        boot[key] = np.array([coco_ap(gt, dets, sample) for sample in samples])
        print(f"[{k + 1}/{len(runs)}] {m} L{n} s{s} {row}: AP {full[key]:.3f} "
              f"(bootstrap se {boot[key].std(ddof=1):.3f})", file=sys.stderr, flush=True)
    lines = [f"# Val-set noise of the SSL benchmark: paired bootstrap ({os.path.basename(a.work_dir)})",
             "", f"`python bench/ssl_ap_bootstrap.py --work-dir {os.path.relpath(a.work_dir, ROOT)} "
             f"--rounds {a.rounds}`: {len(ids)} val images resampled with replacement, the same "
             f"{a.rounds} resamples for every run.", "",
             "| method | labels | seed | net | AP | se (val images) | minus supervised, same seed | se of the difference |",
             "|---|---|---|---|---|---|---|---|"]
    for (m, n, s, row), ap in full.items():
        sup = ("supervised", n, s, "net1")
        diff = se = "–"
        if m != "supervised" and sup in full:
            d = boot[(m, n, s, row)] - boot[sup]
            diff, se = f"{ap - full[sup]:+.3f}", f"{d.std(ddof=1):.3f}"
        lines.append(f"| {m} | {n} | {s} | {row} | {ap:.3f} | {boot[(m, n, s, row)].std(ddof=1):.3f} "
                     f"| {diff} | {se} |")
    out = a.out or os.path.join(ROOT, "bench", "results",
                                f"ssl_ap_bootstrap_{os.path.basename(os.path.normpath(a.work_dir))}.md")
    print_and_write("\n".join(lines) + "\n", out)
    return out


if __name__ == "__main__":
    main()
