#!/usr/bin/env bash
# The long size (7,600 steps a run) of the synthetic SSL benchmark on CPU, answers first: the
# three core methods at 100 and 300 labels, then the Joint Cutout rows (boxes scaled to the crop)
# and the RandAugment row at 100 labels, then the same three rows at 300 labels (seed 0 first),
# then the collapse study at 100 labels, seeds 3-4 of the core methods at 100 labels, then
# everything else (results: bench/results/ssl_synthetic_cpu_long.md). Every finished run is
# recorded and skipped on the next start, so this can be stopped and restarted at any time (on 2
# cores, without loader processes, about 6 min per Supervised run, 8 per PoseCons run and 13-15
# per PoseDual run).
set -e
cd "$(dirname "$0")/.."
python bench/ssl_benchmark.py --size long --labels 100 --methods supervised posecons posedual "$@"
python bench/ssl_benchmark.py --size long --labels 300 --methods supervised posecons posedual "$@"
python bench/ssl_benchmark.py --size long --labels 100 --methods posedual_ra --seeds 0 "$@"
python bench/ssl_benchmark.py --size long --labels 100 --methods posecons_jcs posedual_jcs "$@"
python bench/ssl_benchmark.py --size long --labels 100 --methods supervised posecons \
    posecons_jcs posedual posedual_jcs posedual_ra "$@"
python bench/ssl_benchmark.py --size long --labels 300 --methods posecons_jcs posedual_jcs \
    posedual_ra --seeds 0 "$@"
python bench/ssl_benchmark.py --size long --labels 300 --methods posecons_jcs posedual_jcs \
    posedual_ra "$@"
# the collapse study at 100 labels: same-difficulty PoseCons against the easy-to-hard runs above
python bench/ssl_benchmark.py --size long --labels 100 --methods posecons_same "$@"
# two more seeds of the three core methods at 100 labels: the PoseCons / PoseDual gap is about
# the size of PoseCons' seed spread over 3 seeds
python bench/ssl_benchmark.py --size long --labels 100 --methods supervised posecons posedual \
    --seeds 3 4 "$@"
python bench/ssl_benchmark.py --size long "$@"
