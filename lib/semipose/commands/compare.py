"""Compare training runs: final and best validation metrics, the config keys that differ, and the
validation curves in one picture.

    semipose compare RUN [RUN ...] [--metric NAME] [--out compare.png]

Each RUN is a run folder (OUTPUT_DIR/<dataset>/<model>/<config name>/run_<time>) or an experiment
folder, which stands for its latest run. Prints two markdown tables (one line per run: method,
epochs, final and best metric per validation row; then the config keys whose values differ) and
writes the curves (metric against epoch, one line per run and row) to --out. Exit status 2: a
folder that is not a run, or a metric no run reports (one 'error: ...' line).
"""
from __future__ import annotations

import argparse
from typing import Optional, Sequence


def main(argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> int:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.strip().split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.strip().split("\n\n")[1:]))
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders or experiment folders")
    p.add_argument("--metric", default=None,
                   help="metric to compare, as in results.md (AP, 'AP (M)', Mean, PCK@0.1, ...); "
                        "default the selection metric (AP; PCKh Mean for MPII / AI Challenger)")
    p.add_argument("--out", default="compare.png",
                   help="the picture of the validation curves (PNG; default compare.png)")
    args = p.parse_args(argv)
    from ..engine.cli import USER_ERRORS, error_line, report
    from ..engine.compare import compare_runs, plot_comparison
    try:
        comparison = compare_runs(args.runs, args.metric)
        print(comparison.markdown())
        plot_comparison(comparison, args.out)
    except USER_ERRORS as exc:
        report(f"error: {error_line(exc)}", exc)
        return 2
    print(f"\nwrote {args.out}")
    return 0
