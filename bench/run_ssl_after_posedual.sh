#!/usr/bin/env bash
# The methods after PoseDual at the long size (7,600 steps a run) of the synthetic SSL benchmark on
# CPU, answers first: MultiAugs dual, SSPCM and MultiAugs single at 100 labels, seed 0, then seeds
# 1-2 (each with the diagnostic MultiAugs dual whose four-path consistency sum is weighted as one
# term, multiaugs_dual_w025: the evidence for why the released weighting falls behind), then Mean
# Teacher and PoseDual + Mean Teacher, then 300 labels, then seeds 3-4 at 100 labels for SSPCM,
# the row level with PoseDual after three seeds (the MultiAugs rows end below it on every seed, so
# three seeds settle them), then the 300-label Mean Teacher rows, then multi-path with its boxes
# scaled to the crop (multi_path_s) at both label counts (and seeds 3-4 at 100 labels, where its
# first seeds came level with PoseDual), and last the diagnostics: seeds 3-4 of
# multiaugs_dual_w025, multi-path's two paths weighted as one term at 300 labels
# (multi_path_s_w05), MultiAugs single weighted the same way (multiaugs_w025), SSPCM without its
# score filter and multi-path at the reference pixel sizes. Supervised, PoseCons and PoseDual come
# from the committed long-size runs (bench/results/ssl_synthetic_cpu_long_runs.json), which are
# restored and skipped. Every finished run is recorded and skipped on the next start, so this can
# be stopped and restarted at any time.
# On 2 cores one MultiAugs dual step costs 2.25 PoseDual steps and one SSPCM step 1.74
# (bench/results/method_cost_cpu.md); measured alone on 2 cores, a MultiAugs dual run takes about 48
# minutes, SSPCM 42 and MultiAugs single 25.
#
# LANES=2 bash bench/run_ssl_after_posedual.sh runs two copies side by side, one thread each: a run
# in training is locked, so each copy takes the next free run (on 2 cores about 1.6x the runs per
# hour of one copy with two threads). Each copy's output goes to output/ssl_lane_<i>.log.
set -e
cd "$(dirname "$0")/.."
if [ "${LANES:-1}" -gt 1 ] && [ -z "${SSL_LANE:-}" ]; then
    mkdir -p output
    pids=()
    for i in $(seq 1 "$LANES"); do
        SSL_LANE=$i OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 bash "$0" "$@" > "output/ssl_lane_$i.log" 2>&1 &
        pids+=($!)
        sleep 2  # the first copy takes the first run
    done
    echo "$LANES lanes started: output/ssl_lane_<i>.log"
    status=0
    for pid in "${pids[@]}"; do wait "$pid" || status=1; done
    exit $status
fi
NEW="multiaugs_dual sspcm multiaugs"
python bench/ssl_benchmark.py --size long --labels 100 --seeds 0 --methods $NEW "$@"
python bench/ssl_benchmark.py --size long --labels 100 --seeds 1 --methods $NEW multiaugs_dual_w025 "$@"
python bench/ssl_benchmark.py --size long --labels 100 --seeds 2 --methods $NEW multiaugs_dual_w025 "$@"
python bench/ssl_benchmark.py --size long --labels 100 --seeds 0 1 2 \
    --methods mean_teacher posedual_mt "$@"
python bench/ssl_benchmark.py --size long --labels 300 --seeds 0 1 2 --methods $NEW "$@"
python bench/ssl_benchmark.py --size long --labels 100 --seeds 3 4 --methods sspcm "$@"  # level with PoseDual
python bench/ssl_benchmark.py --size long --labels 300 --seeds 0 1 2 \
    --methods mean_teacher posedual_mt "$@"
# multi-path with its boxes scaled to the crop as the other methods' (multi_path_s); the rows at
# the reference pixel sizes (multi_path) stay as a diagnostic below
python bench/ssl_benchmark.py --size long --labels 100 --seeds 0 1 2 --methods multi_path_s "$@"
python bench/ssl_benchmark.py --size long --labels 300 --seeds 0 1 2 --methods multi_path_s "$@"
python bench/ssl_benchmark.py --size long --labels 100 --seeds 3 4 --methods multi_path_s "$@"
# The diagnostics come after every ranked row. The MultiAugs dual diagnostic is the one row above
# PoseDual's ensemble after three seeds: seeds 3-4, as for the ranked rows above it
python bench/ssl_benchmark.py --size long --labels 100 --seeds 3 4 \
    --methods multiaugs_dual_w025 "$@"
# multi-path with scaled boxes is level with Supervised at 300 labels: its two summed paths
# weighted as one term, by the rule of the MultiAugs diagnostics
python bench/ssl_benchmark.py --size long --labels 300 --seeds 0 1 2 --methods multi_path_s_w05 "$@"
# MultiAugs single ends below PoseCons: its four summed paths weighted as one term, as the dual
# diagnostic
python bench/ssl_benchmark.py --size long --labels 100 --seeds 0 1 2 --methods multiaugs_w025 "$@"
# SSPCM's teachers end below PoseDual's nets: the same runs without the score filter
python bench/ssl_benchmark.py --size long --labels 100 --seeds 0 1 2 --methods sspcm_nofilter "$@"
# multi-path at the reference pixel sizes (its first runs, kept for the size comparison)
python bench/ssl_benchmark.py --size long --labels 100 300 --seeds 0 1 2 --methods multi_path "$@"
