"""How well each method's nets fit the labeled batch late in training, read from the training logs
of the SSL benchmark: the supervised MSE of each net, averaged over the logged iterations of the
last epochs, per run.

This is the evidence for why the multi-path methods fall behind at 100 labels: their summed path
losses outweigh the labeled term, and the nets fit the labels worse than PoseDual's do at the
same step. ``loss_pose_<net>`` fields (one per net) are averaged; a single-net log has only
``loss_pose``.

    python bench/labeled_fit.py            # the long size's logs -> <stem>_labeled_fit.md
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
from typing import Dict, List, Optional, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOGS = os.path.join(ROOT, "bench", "results", "ssl_synthetic_cpu_long_logs")
NAME = re.compile(r"^(?P<method>\w+?)_L(?P<labels>\d+)_s(?P<seed>\d+)\.log$")
ITER = re.compile(r"Epoch: \[(\d+)/(\d+)\]\[\d+/\d+\]")
FIELD = re.compile(r"\b(loss_pose(?:_\w+)?): ([0-9.eE+-]+)")


def labeled_loss(path: str, last: int) -> Optional[float]:
    """Mean over the logged iterations of the last ``last`` epochs of the per-net labeled MSE
    (the mean of the ``loss_pose_<net>`` fields, else ``loss_pose``); None if none is logged."""
    values: List[float] = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = ITER.search(line)
            if not m or int(m.group(1)) <= int(m.group(2)) - last:
                continue
            fields = dict(FIELD.findall(line))
            per_net = [float(v) for k, v in fields.items() if k != "loss_pose"]
            if per_net:
                values.append(statistics.mean(per_net))
            elif "loss_pose" in fields:
                values.append(float(fields["loss_pose"]))
    return statistics.mean(values) if values else None


def collect(logs: str, labels: int, last: int) -> Dict[str, Dict[int, float]]:
    """method -> seed -> labeled loss, for every ``<method>_L<labels>_s<seed>.log`` in ``logs``."""
    out: Dict[str, Dict[int, float]] = {}
    for name in sorted(os.listdir(logs)):
        m = NAME.match(name)
        if not m or int(m.group("labels")) != labels:
            continue
        loss = labeled_loss(os.path.join(logs, name), last)
        if loss is not None:
            out.setdefault(m.group("method"), {})[int(m.group("seed"))] = loss
    return out


def report(table: Dict[str, Dict[int, float]], labels: int, last: int,
           baseline: str = "posedual") -> str:
    seeds = sorted({s for per in table.values() for s in per})
    base = table.get(baseline, {})
    lines = [f"# Labeled fit late in training ({labels} labels)", "",
             f"`python bench/labeled_fit.py --labels {labels} --last {last}`: each net's "
             f"supervised MSE on its labeled batches, averaged over the iterations logged in the "
             f"last {last} epochs (and over the nets of a multi-net method). Lower is a closer fit "
             f"of the labels. The last column is the ratio to {baseline} at the same seed.", "",
             "| method | " + " | ".join(f"seed {s}" for s in seeds) + f" | mean | vs {baseline} |",
             "|---|" + "---|" * (len(seeds) + 2)]
    for method, per in table.items():
        cells = [f"{per[s]:.4f}" if s in per else "–" for s in seeds]
        ratios = [per[s] / base[s] for s in per if s in base and base[s] > 0]
        ratio = f"{statistics.mean(ratios):.2f}x (n={len(ratios)})" if ratios else "–"
        lines.append(f"| {method} | " + " | ".join(cells) +
                     f" | {statistics.mean(per.values()):.4f} | {ratio} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--logs", default=LOGS, help="folder of <method>_L<labels>_s<seed>.log files")
    ap.add_argument("--labels", type=int, default=100, help="labeled persons of the runs")
    ap.add_argument("--last", type=int, default=5, help="epochs at the end to average over")
    ap.add_argument("--out", default="-", help="markdown file to write (default -: print only)")
    args = ap.parse_args(argv)
    if not os.path.isdir(args.logs):
        sys.exit(f"no log folder {args.logs}: run bench/ssl_benchmark.py first, or give --logs")
    table = collect(args.logs, args.labels, args.last)
    if not table:
        sys.exit(f"no <method>_L{args.labels}_s<seed>.log with loss_pose fields in {args.logs}")
    from semipose.utils.io import print_and_write
    print_and_write(report(table, args.labels, args.last), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
