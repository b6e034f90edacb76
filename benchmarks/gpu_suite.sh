#!/usr/bin/env bash
# Everything that needs a GPU, in one command, each part under its own time limit:
#   tests     the CUDA tests (tests/test_cuda.py and the model's CUDA cases)
#   parity    ours against the official model code, step by step, float32 (parity_official.py)
#   step      training-step throughput, MFU and peak memory, paper preset, eager (bench_train_step.py)
#   compile   the same, both sides under torch.compile
#   adapt     adapt-and-predict pace at the paper preset on ARC-AGI-1 evaluation (bench_adapt_speed.py)
#   adapt-compile   the same under torch.compile (adapt-and-predict --compile)
#   crop      cropped canvases against the full one: paper-preset pretraining steps, adaptation
#             cost per task and per-size costs on ARC-AGI-1 (bench_crop.py), not yet run on a GPU
#   views     the defaults' views against 32, 128 and the paper's 1000 on held-out generated
#             puzzles, a short GPU pretraining first (bench_adapt.py --views-front)
#   tta       the same on real ARC: ARC-AGI-1 evaluation tasks that fit 10x10, after a short GPU
#             pretraining on the training tasks that fit (bench_tta_arc.py)
#
#   benchmarks/gpu_suite.sh OFFICIAL_DIR [PART ...]     (default: every part but views and tta,
#                                                        in the order above; each of those two
#                                                        wants most of one call)
#
# OFFICIAL_DIR holds the official sapientinc/HRM models/ package (see bench_train_step.py); only
# parity, step and compile read it. JSON results land in benchmarks/results/, each part's log in
# benchmarks/results/gpu_logs/. Exits 1 if any part failed.
set -u
official=${1:?usage: benchmarks/gpu_suite.sh OFFICIAL_DIR [tests parity step compile adapt adapt-compile crop views tta]}
shift
parts=${*:-tests parity step compile adapt adapt-compile crop}
cd "$(dirname "$0")/.."
logs=benchmarks/results/gpu_logs
mkdir -p "$logs"
export PYTHONUNBUFFERED=1
failed=0

run() {  # run PART SECONDS COMMAND...: a part's output goes to the terminal and to its log
    local part=$1 seconds=$2
    shift 2
    echo "=== $part ($(date -u +%T), limit ${seconds}s): $*"
    local start=$SECONDS
    timeout "$seconds" "$@" 2>&1 | tee "$logs/$part.log"
    local status=${PIPESTATUS[0]}
    echo "=== $part: exit $status after $((SECONDS - start))s"
    [ "$status" -eq 0 ] || failed=1
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
for part in $parts; do
    case $part in
        tests) run tests 300 python3 -m pytest -q -m gpu tests/test_cuda.py tests/hrm_core ;;
        parity) run parity 120 python3 benchmarks/parity_official.py --device cuda \
            --official "$official" --json benchmarks/results/parity_official_cuda.json ;;
        step) run step 300 python3 benchmarks/bench_train_step.py --device cuda --preset paper \
            --official "$official" ;;
        compile) run compile 480 python3 benchmarks/bench_train_step.py --device cuda \
            --preset paper --official "$official" --compile ;;
        adapt) run adapt 300 python3 benchmarks/bench_adapt_speed.py --device cuda ;;
        adapt-compile) run adapt-compile 420 python3 benchmarks/bench_adapt_speed.py --device cuda \
            --compile ;;
        crop) run crop 420 python3 benchmarks/bench_crop.py --device cuda --preset paper \
            --batch-size 96 --adapt-preset paper --tasks 24 --views 32 --epochs 4 \
            --parts pretraining,adaptation,sizes --result bench_crop_cuda.json ;;
        views) run views 540 python3 benchmarks/bench_adapt.py --device cuda --threads 8 \
            --pretrain-minutes 2 --views-front --out /tmp/bench-adapt-cuda \
            --result bench_adapt_views_cuda.json ;;
        tta) run tta 540 python3 benchmarks/bench_tta_arc.py --device cuda --threads 8 \
            --minutes 3 --views 8 --name 10x10_hrm_cuda --out /tmp/bench-tta-arc-cuda \
            --rows "no adaptation,default,default 32 views,default 1000 views" ;;
        *) echo "unknown part $part (tests parity step compile adapt adapt-compile crop views tta)" >&2
           failed=1 ;;
    esac
done
exit "$failed"
