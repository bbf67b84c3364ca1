#!/usr/bin/env bash
# The full synthetic SSL benchmark on CPU in the order that gives answers first: the three core
# methods at the lowest label count, then the collapse study's same-difficulty arm, then every
# other row. Each finished run is recorded and skipped on the next start, so this can be stopped
# and restarted at any time.
set -e
cd "$(dirname "$0")/.."
python bench/ssl_benchmark.py --labels 100 --methods supervised posecons posedual "$@"
python bench/ssl_benchmark.py --labels 100 --methods supervised posecons posecons_same "$@"
python bench/ssl_benchmark.py "$@"
