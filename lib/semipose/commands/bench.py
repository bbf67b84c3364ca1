"""Run the synthetic SSL benchmark, bench/ssl_benchmark.py of the source checkout.

    semipose bench --quick [options of bench/ssl_benchmark.py]

The benchmark is a script of the repository (its configs, committed results and data folders sit
beside it), not a part of the installed package: this command finds it next to the package's
source folder (lib/semipose/../../bench) and runs it with this Python and the given options.
"""
from __future__ import annotations

import os
import subprocess
import sys
from typing import Optional, Sequence

SCRIPT = os.path.join("bench", "ssl_benchmark.py")


def checkout_root() -> str:
    """The folder that holds lib/semipose in a source checkout (two levels above the package)."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.dirname(os.path.dirname(package))


def benchmark_script() -> str:
    """bench/ssl_benchmark.py of the checkout this package runs from ('' when there is none,
    e.g. a wheel installed into site-packages)."""
    path = os.path.join(checkout_root(), SCRIPT)
    return path if os.path.isfile(path) else ""


def main(argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> int:
    script = benchmark_script()
    if not script:
        print(f"error: the SSL benchmark ships with the source checkout, not with the installed "
              f"package ({os.path.join(checkout_root(), SCRIPT)} does not exist): clone the "
              f"repository, pip install -e it, and run {prog or 'semipose bench'} there",
              file=sys.stderr)
        return 2
    # A process of its own, as `python bench/ssl_benchmark.py` runs: its usage text, exit status
    # and module state are the script's.
    return subprocess.call([sys.executable, script, *(argv or [])])
