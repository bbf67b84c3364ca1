#!/usr/bin/env bash
# The full synthetic SSL benchmark on CPU, core methods at the lowest label count first (every
# finished run is recorded and skipped on the next start, so this can be restarted at any time).
set -e
cd "$(dirname "$0")/.."
python bench/ssl_benchmark.py --labels 100 --methods supervised posecons posedual "$@"
python bench/ssl_benchmark.py "$@"
