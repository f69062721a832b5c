#!/usr/bin/env bash
# GPU measurement of diffusion-gym: the CUDA tests, then env and sampler throughput.
#
# Run from the repository root on the GPU machine:   bash benchmarks/gpu.sh
# Everything goes under $OUT (default ./gpu_out):
#   machine.txt              nvidia-smi, python / torch / CUDA / package versions
#   test_cuda.log, .xml      python -m pytest tests/test_cuda.py -q -x
#   throughput_env.{log,json}      benchmarks/throughput.py --device cuda, every env id
#   throughput_sampler.{log,json}  the sampler mode (raw steps.step), four presets
#   throughput_compile.{log,json}  the sampler mode with --compile (COMPILE=1, a subset)
#   summary.txt              exit status and wall time of every phase
# A failing phase is logged and the next one still runs; the script exits non-zero if any
# phase failed. The JSON files are rewritten after every row, so a phase cut short by its
# time limit keeps the rows measured so far.
#
# Wheels: if ./.whl holds *.whl files (gymnasium, farama-notifications, stable-baselines3,
# sb3-contrib: the GPU machine lacks them), they are installed into /tmp/site, offline.
# The repository root is always on PYTHONPATH (no `pip install -e` needed).
#
# Settings (environment variables, defaults in brackets):
#   OUT [./gpu_out]  DEVICE [cuda]  BATCH_SIZES ["1 256 4096 65536"]  IDS [all env ids]
#   PRESETS ["gmm-ring8 gmm-64d gmm-ring8-mlp digits"]  REPEATS [3]  MIN_TIME [0.25]
#   COMPILE [1]  COMPILE_PRESETS ["gmm-ring8 digits"]  COMPILE_BATCH_SIZES ["4096 65536"]
#   TESTS [1]  T_TESTS [150]  T_ENV [240]  T_SAMPLER [150]  T_COMPILE [150] (seconds)
# e.g. a dry run on a CPU machine:
#   DEVICE=cpu TESTS=0 COMPILE=0 BATCH_SIZES="1 4" MIN_TIME=0.02 REPEATS=1 \
#     IDS="Guidance-v0 Clock-v0" OUT=/tmp/gpu_dry bash benchmarks/gpu.sh

set -u -o pipefail
export PYTHONUNBUFFERED=1

OUT=${OUT:-./gpu_out}
DEVICE=${DEVICE:-cuda}
BATCH_SIZES=${BATCH_SIZES:-"1 256 4096 65536"}
IDS=${IDS:-}
PRESETS=${PRESETS:-"gmm-ring8 gmm-64d gmm-ring8-mlp digits"}
REPEATS=${REPEATS:-3}
MIN_TIME=${MIN_TIME:-0.25}
COMPILE=${COMPILE:-1}
COMPILE_PRESETS=${COMPILE_PRESETS:-"gmm-ring8 digits"}
COMPILE_BATCH_SIZES=${COMPILE_BATCH_SIZES:-"4096 65536"}
TESTS=${TESTS:-1}
T_TESTS=${T_TESTS:-150}
T_ENV=${T_ENV:-240}
T_SAMPLER=${T_SAMPLER:-150}
T_COMPILE=${T_COMPILE:-150}

if [ ! -f benchmarks/throughput.py ] || [ ! -d diffusion_gym ]; then
    echo "run from the repository root (benchmarks/throughput.py not found in $PWD)" >&2
    exit 2
fi
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
: >"$SUMMARY"
FAILED=0
T_START=$SECONDS

# Wheels for the packages the GPU machine lacks (offline, no dependencies resolved).
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
shopt -s nullglob
WHEELS=(.whl/*.whl)
shopt -u nullglob
if [ ${#WHEELS[@]} -gt 0 ]; then
    echo "installing ${#WHEELS[@]} wheels from .whl into /tmp/site"
    if python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site "${WHEELS[@]}"; then
        export PYTHONPATH="/tmp/site:$PYTHONPATH"
    else
        echo "wheel install failed" | tee -a "$SUMMARY"
        FAILED=1
    fi
fi

# phase NAME LIMIT_S CMD...: run CMD under `timeout`, log its status and wall time.
phase() {
    local name=$1 limit=$2
    shift 2
    local t0=$SECONDS rc
    echo "=== $name (limit ${limit}s): $*"
    timeout -k 10 "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
    rc=$?
    printf '%-20s rc=%-3s %4ss  %s\n' "$name" "$rc" "$((SECONDS - t0))" "$*" | tee -a "$SUMMARY"
    [ "$rc" -eq 0 ] || FAILED=1
}

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "host: $(uname -a)"
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi
        nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
    else
        echo "nvidia-smi: not found"
    fi
    python3 - <<'EOF'
import importlib, importlib.metadata, platform, sys
import torch
print("python", platform.python_version(), sys.executable)
print("torch", torch.__version__, "cuda", torch.version.cuda,
      "cudnn", torch.backends.cudnn.version(), "cuda available", torch.cuda.is_available())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("device", p.name, f"{p.total_memory / 2**30:.1f} GiB", f"sm {p.major}.{p.minor}",
          "tf32 matmul", torch.backends.cuda.matmul.allow_tf32,
          "tf32 cudnn", torch.backends.cudnn.allow_tf32)
for m, dist in (("numpy", "numpy"), ("gymnasium", "gymnasium"),
                ("stable_baselines3", "stable_baselines3"), ("sb3_contrib", "sb3_contrib"),
                ("typing_extensions", "typing_extensions"), ("cloudpickle", "cloudpickle"),
                ("sklearn", "scikit-learn"), ("safetensors", "safetensors"),
                ("triton", "triton")):
    try:
        mod = importlib.import_module(m)
        print(m, importlib.metadata.version(dist), getattr(mod, "__file__", ""))
    except Exception as e:  # report, do not stop
        print(m, "NOT importable:", type(e).__name__, e)
import diffusion_gym
print("diffusion_gym", diffusion_gym.__version__, diffusion_gym.__file__)
EOF
    echo "PYTHONPATH=$PYTHONPATH"
} 2>&1 | tee "$OUT/machine.txt"

if [ "$TESTS" = 1 ]; then
    phase test_cuda "$T_TESTS" python3 -m pytest tests/test_cuda.py -q -x -rs \
        -p no:cacheprovider --durations=5 --junitxml="$OUT/test_cuda.xml"
fi

# shellcheck disable=SC2086  # word splitting of the lists is intended
phase throughput_env "$T_ENV" python3 benchmarks/throughput.py --device "$DEVICE" \
    --batch-sizes $BATCH_SIZES ${IDS:+--ids $IDS} --repeats "$REPEATS" --min-time "$MIN_TIME" \
    --keep-going --json "$OUT/throughput_env.json"

# shellcheck disable=SC2086
phase throughput_sampler "$T_SAMPLER" python3 benchmarks/throughput.py --device "$DEVICE" \
    --sampler $PRESETS --batch-sizes $BATCH_SIZES --repeats "$REPEATS" --min-time "$MIN_TIME" \
    --keep-going --json "$OUT/throughput_sampler.json"

if [ "$COMPILE" = 1 ]; then
    # shellcheck disable=SC2086
    phase throughput_compile "$T_COMPILE" python3 benchmarks/throughput.py --device "$DEVICE" \
        --sampler $COMPILE_PRESETS --batch-sizes $COMPILE_BATCH_SIZES --repeats "$REPEATS" \
        --min-time "$MIN_TIME" --compile --keep-going --json "$OUT/throughput_compile.json"
fi

printf 'total %ss, failed=%s\n' "$((SECONDS - T_START))" "$FAILED" | tee -a "$SUMMARY"
ls -l "$OUT"
exit "$FAILED"
