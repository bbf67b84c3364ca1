#!/usr/bin/env bash
# The long size (7,600 steps a run) of the synthetic SSL benchmark on CPU, answers first: the
# three core methods at 100 labels, the 300-label column, then the Joint Cutout and RandAugment
# rows at 100 labels, then everything else (results: bench/results/ssl_synthetic_cpu_long.md). Every finished run is recorded and skipped
# on the next start, so this can be stopped and restarted at any time (about 37 min per seed and
# label count for the core methods on 2 cores, about 17 min per PoseDual variant run).
set -e
cd "$(dirname "$0")/.."
python bench/ssl_benchmark.py --size long --labels 100 --methods supervised posecons posedual "$@"
python bench/ssl_benchmark.py --size long --labels 300 --methods supervised posecons posedual "$@"
python bench/ssl_benchmark.py --size long --labels 100 --methods supervised posecons posecons_jc \
    posedual posedual_jc posedual_ra "$@"
python bench/ssl_benchmark.py --size long "$@"
