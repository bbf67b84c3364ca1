#!/usr/bin/env bash
# Every GPU check of the project in one run, most important first, so that a short loan of a GPU
# machine yields the figures of bench/results/*_gpu.md even when it is cut off: about 12 minutes
# on one H100/H200 in all. Each part has its own time limit, and BUDGET (seconds, default: none)
# caps the whole run: a part gets at most what is left and is skipped when under 20 s is left, so
# that the run ends before an outer limit kills it. Everything goes to $OUT/suite.log.
#
#   bash bench/gpu_suite.sh --fetch-wheels   # on a machine with network: the packages that
#                                            # a bare GPU image lacks, into .whl/ (git-ignored;
#                                            # copy it along with the checkout)
#   OUT=/tmp/gpu bash bench/gpu_suite.sh     # on the GPU machine, from the repository root
#   OUT=/tmp/gpu BUDGET=540 bash bench/gpu_suite.sh  # stop starting parts after 540 s
#   OUT=/tmp/gpu SMALL=1 DEVICE=cpu bash bench/gpu_suite.sh  # a CPU dry run of the script itself
#   OUT=/tmp/gpu FROM=9 bash bench/gpu_suite.sh  # a rerun from part 9 (parts are numbered in
#                                                # the log; the log is appended to)
#
# Parts, by priority: (1) environment; (2-3) the method step (bench_train_step.py): ResNet-18
# PoseDual + Joint Cutout 5, 256x192, batch 32: fp32 eager baseline and bf16 + channels_last in
# one process, then the whole step compiled with CUDA graphs (with its own fp32 baseline);
# (4) the CUDA-only data-path tests (nvJPEG + CUDA warp against the CPU path) and the check
# that the step never waits for the device; (5-7) ResNet-50
# 256x192 b32 and HRNet-W48 384x288 b8 / b32 with peak memory; (8) host CPU per pair of the data
# path, DATASET.DEVICE_PIPELINE off and on, and the device stage's GPU time; (9-13) the whole
# trainer on a synthetic 'standard' set (320x240 to 640x480 JPEGs) with the logged pairs/s: fp32,
# with the speed switches, with the whole step compiled, and compiled with the CPU data path;
# (14) the step with only the nets compiled; (15) the CUDA tests of the compiled step; (16) a
# two-epoch CUDA smoke run of the SSL benchmark.
set -u
cd "$(dirname "$0")/.."
WHEELS="pycocotools yacs tensorboardX"

if [ "${1:-}" = "--fetch-wheels" ]; then
    grep -qx "/.whl/" .git/info/exclude 2>/dev/null || echo "/.whl/" >> .git/info/exclude
    exec python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .whl $WHEELS
fi

OUT=${OUT:?set OUT to the folder for the log}
DEVICE=${DEVICE:-cuda}
SMALL=${SMALL:-0}
mkdir -p "$OUT"
LOG="$OUT/suite.log"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/lib${PYTHONPATH:+:$PYTHONPATH}"
if [ -d .whl ] && ls .whl/*.whl > /dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi

N=0
part() {  # part <seconds> <title> <command...>: run one part with a limit, log it, go on
    local limit=$1 title=$2
    shift 2
    N=$((N + 1))
    if [ "$N" -lt "${FROM:-1}" ]; then return; fi  # FROM=k: a rerun starts at part k
    if [ -n "${BUDGET:-}" ]; then
        local left=$((BUDGET - SECONDS))
        if [ "$left" -lt 20 ]; then
            echo -e "\n## $N. $title\n[skipped: ${left} s of BUDGET left]" | tee -a "$LOG"
            return
        fi
        if [ "$left" -lt "$limit" ]; then limit=$left; fi
    fi
    echo -e "\n## $N. $title\n\$ $*" | tee -a "$LOG"
    local t0=$SECONDS
    timeout "$limit" "$@" 2>&1 | tee -a "$LOG"
    echo "[exit ${PIPESTATUS[0]} after $((SECONDS - t0)) s]" | tee -a "$LOG"
}

if [ "$SMALL" = 1 ]; then  # the dry run: tiny sizes, to check that every command still parses
    B32=2; B8=1; STEPS="--steps 1 --warmup 1"; NTRAIN=12; EPOCHS=1; AMP=${AMP:-}
else
    B32=32; B8=8; STEPS="--steps 20 --warmup 5"; NTRAIN=1500; EPOCHS=2; AMP=${AMP:-bf16}
fi
# the speed switches (a CPU without native bf16 emulates it, tens of times slower: AMP='' there)
FAST=(--channels-last ${AMP:+--amp $AMP})
FAST_CFG=(TRAIN.CHANNELS_LAST True ${AMP:+TRAIN.AMP $AMP})
R18=experiments/mix_coco_coco/res18/256x192_COCO1K_PoseDual_JointCutout.yaml
R50=experiments/mix_coco_coco/res50/256x192_COCO_COCOunlabel_PoseDual_JointCut.yaml
W48=experiments/mix_coco_coco/hrnet/w48_384x288_COCO_COCOunlabel_PoseDual_JointCut5.yaml
STEP="python3 bench/bench_train_step.py --device $DEVICE --method posedual $STEPS"

echo "# gpu_suite $(date -u +%F' '%T) UTC, commit $(git rev-parse --short HEAD 2>/dev/null)" \
    >> "$LOG"
part 60 "environment" bash -c "nvidia-smi --query-gpu=name,driver_version,memory.total \
    --format=csv 2>/dev/null; python3 -c 'import torch, torchvision, cv2, numpy; \
    print(\"torch\", torch.__version__, \"torchvision\", torchvision.__version__, \"cv2\", \
    cv2.__version__, \"numpy\", numpy.__version__, \"cuda\", torch.cuda.is_available() and \
    torch.cuda.get_device_name())'; nproc"
part 90 "step: R18 PoseDual+JC5 256x192 b$B32, fp32 eager baseline and ${AMP:-fp32} + channels_last" \
    $STEP --cfg $R18 --batch $B32 "${FAST[@]}"
part 240 "step: R18 as above, the whole method step compiled with CUDA graphs (COMPILE_SCOPE step)" \
    $STEP --cfg $R18 --batch $B32 "${FAST[@]}" --compile reduce-overhead --compile-scope step
part 120 "CUDA-only tests: the data path (nvJPEG + CUDA warp against the CPU path), no sync in the step" \
    python3 -m pytest -q -s tests/test_device_pipeline.py tests/test_compiled_step.py \
    -k "cuda and not inductor"
part 60 "step: R50 PoseDual+JC 256x192 b$B32, ${AMP:-fp32} + channels_last (goal: <= 8 GiB)" \
    $STEP --cfg $R50 --batch $B32 "${FAST[@]}" --no-baseline
part 60 "step: HRNet-W48 PoseDual+JC5 384x288 b$B8, ${AMP:-fp32} + channels_last" \
    $STEP --cfg $W48 --batch $B8 "${FAST[@]}" --no-baseline
part 90 "step: HRNet-W48 PoseDual+JC5 384x288 b$B32, ${AMP:-fp32} + channels_last" \
    $STEP --cfg $W48 --batch $B32 "${FAST[@]}" --no-baseline
part 90 "data path: host CPU per pair, DATASET.DEVICE_PIPELINE off / on; the stage on CUDA" \
    python3 bench/bench_data.py --device-path --synthetic 20 --repeats 3 --batch $B32

DATA=/tmp/semipose_gpu_suite_data
part 120 "data for the whole trainer: a synthetic 'standard' set ($NTRAIN train images)" \
    python3 -m semipose.data.synthetic --out $DATA --preset standard --num-train $NTRAIN \
    --num-val 50 --num-unlabeled 0 --workers "$(nproc)" --no-progress
TRAIN=(python3 pose_estimation/train.py --cfg experiments/synthetic/posedual.yaml --no-progress
       DATASET.ROOT $DATA SYNTHETIC.GENERATE_IF_MISSING False SYNTHETIC.PRESET standard
       TEST.COCO_BBOX_FILE $DATA/coco/person_detection_results/synthetic_val2017_detections.json
       DEVICE $DEVICE WORKERS "$(nproc)" OUTPUT_DIR /tmp/semipose_gpu_suite_out LOG_DIR ''
       MODEL.IMAGE_SIZE "[192, 256]" MODEL.EXTRA.HEATMAP_SIZE "[48, 64]"
       MODEL.EXTRA.BASE_WIDTH 64 MODEL.EXTRA.NUM_DECONV_FILTERS "[256, 256, 256]"
       MODEL.NUM_JOINTS 24 TRAIN.BATCH_SIZE $B32 MASK_JOINT_NUM 5 TRAIN.END_EPOCH $EPOCHS
       TRAIN.LR_STEP "[100]" PRINT_FREQ 20)
part 120 "whole trainer: fp32" "${TRAIN[@]}"
part 120 "whole trainer: ${AMP:-fp32} + channels_last + DEVICE_PIPELINE" "${TRAIN[@]}" \
    "${FAST_CFG[@]}" DATASET.DEVICE_PIPELINE True
part 240 "whole trainer: as above + the whole step compiled with CUDA graphs" "${TRAIN[@]}" \
    "${FAST_CFG[@]}" DATASET.DEVICE_PIPELINE True TRAIN.COMPILE reduce-overhead \
    TRAIN.COMPILE_SCOPE step
part 240 "whole trainer: ${AMP:-fp32} + channels_last + the whole step compiled, CPU data path" \
    "${TRAIN[@]}" "${FAST_CFG[@]}" TRAIN.COMPILE reduce-overhead TRAIN.COMPILE_SCOPE step
part 240 "step: R18 as in part 2, only the nets compiled with CUDA graphs (COMPILE_SCOPE nets)" \
    $STEP --cfg $R18 --batch $B32 "${FAST[@]}" --compile reduce-overhead --no-baseline
part 240 "CUDA-only tests of the compiled step (inductor, default and reduce-overhead)" \
    python3 -m pytest -q -s tests/test_compiled_step.py -k "cuda and inductor"
part 200 "SSL benchmark on $DEVICE: 2-epoch smoke run (not a result)" \
    python3 bench/ssl_benchmark.py --device $DEVICE --size quick --epochs 2 --seeds 0 \
    --methods supervised posedual --work-dir /tmp/semipose_gpu_suite_ssl --out-dir "$OUT"
echo -e "\n# done $(date -u +%T) UTC" | tee -a "$LOG"
