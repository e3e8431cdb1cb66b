#!/usr/bin/env bash
# The one command for the device machine (installs nothing; uses its python3 with CuPy 14,
# PyTorch + cuDNN, NumPy and pytest):
#     bash bench/gpu_check.sh            # from the repository root
# 0. the NVRTC audit; first-call compile cost (python -m gpuconv.cuda.warmup, cold then warm)
# 1. the GPU test suite (every `gpu`-marked test of the CUDA, optimizer, device-weights and
#    training-loop files; set GPUCHECK_LARGE=0 to skip the >2**31-element tests)
# 2. compute-sanitizer memcheck and racecheck over a small subset (if the tool is found)
# 3. a timing table of bench_suite.md's rows against PyTorch/cuDNN (TF32 off for float32):
#    `python3 -m gpuconv.benchmarking --suite suite --backend cuda`, fp32 then fp16, forward and
#    backward passes
# 4. one training epoch of the seed CNN against Keras 3 on torch CUDA (if keras is installed)
# Logs go to $OUT (the device tool's folder) or /tmp/gpuconv-check. Exit status 1 if any step failed.
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
export GPUCONV_CACHE_DIR=${GPUCONV_CACHE_DIR:-/tmp/gpuconv-kernels}
# The GPU suite on the GPU itself (CI runs the same test bodies on the cuda-emulator; the junit
# files of both say whether they agree on every test).
export GPUCONV_GPU_TESTS=cuda
LOG_DIR=${OUT:-/tmp/gpuconv-check}
mkdir -p "$LOG_DIR"
status=0

echo "== environment"
$PY - <<'PYEOF' || status=1
import cupy, numpy
props = cupy.cuda.runtime.getDeviceProperties(0)
name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
print(f"CuPy {cupy.__version__}, NumPy {numpy.__version__}, device {name}, cc {cupy.cuda.Device().compute_capability}, "
      f"driver {cupy.cuda.runtime.driverGetVersion()}, runtime {cupy.cuda.runtime.runtimeGetVersion()}")
try:
    import torch
    print(f"PyTorch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}")
except Exception as e:
    print(f"PyTorch unavailable: {e}")
PYEOF

echo "== 0. NVRTC compile check (sm_80, sm_90, spills)"
$PY -m gpuconv.cuda.check 2>&1 | tail -15 | tee "$LOG_DIR/nvrtc_check.log" || status=1

echo "== 0b. first-call compiles on this GPU: the quick suite's layers into an empty kernel cache, then again from disk"
COLD_DIR=$(mktemp -d)
for run in cold warm; do
    echo "-- $run"
    GPUCONV_CACHE_DIR="$COLD_DIR" $PY -m gpuconv.cuda.warmup --suite quick --training 2>&1 | tail -14 | tee "$LOG_DIR/warmup_$run.log"
    [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
done

echo "== 1. GPU tests"
GPU_TESTS="$(ls tests/test_cuda_*.py) tests/test_variables_device_authority.py tests/test_training_loop.py"
MARK="gpu and not large"
if [ "${GPUCHECK_LARGE:-1}" != "0" ]; then MARK="gpu"; fi
# bfloat16 needs ml_dtypes (a core dependency; this machine installs nothing): without it the
# bfloat16 tests are deselected, and the summary says so.
if $PY -c "import ml_dtypes" 2>/dev/null; then
    GPU_TESTS="$GPU_TESTS tests/test_bfloat16.py"
else
    echo "ml_dtypes is not installed here: bfloat16 tests deselected (not run on this GPU)" | tee "$LOG_DIR/bfloat16_skipped.txt"
    SKIP_BF16=1
fi
$PY -m pytest -q -rs -m "$MARK" ${SKIP_BF16:+-k "not bfloat16"} $GPU_TESTS -p no:cacheprovider --junitxml "$LOG_DIR/gpu_tests.xml" 2>&1 | tee "$LOG_DIR/gpu_tests.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

echo "== 2. compute-sanitizer"
SAN=$(command -v compute-sanitizer || true)
if [ -z "$SAN" ] && [ -x /usr/local/cuda/bin/compute-sanitizer ]; then SAN=/usr/local/cuda/bin/compute-sanitizer; fi
if [ -z "$SAN" ]; then
    echo "compute-sanitizer is neither on PATH nor in /usr/local/cuda/bin: sanitizer step NOT run"
else
    SUBSET="conv3-cl-float32 or conv5-cf-float16 or conv9-cl-float64 or convT1-cl-float32 or convT4-cf-float16 or convT9-cl-float32"
    for tool in memcheck racecheck; do
        echo "-- $tool"
        "$SAN" --tool "$tool" --error-exitcode 9 --print-limit 20 \
            $PY -m pytest -q -x -p no:cacheprovider tests/test_cuda_gpu.py -k "$SUBSET" 2>&1 | tail -25 | tee "$LOG_DIR/sanitizer_$tool.log"
        [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
    done
fi

echo "== 3. timing against PyTorch/cuDNN (gpuconv-bench, every row checked against the oracle first)"
for dt in float32 float16; do
    for pass in forward backward; do
        $PY -m gpuconv.benchmarking --suite suite --backend cuda --dtype "$dt" --pass "$pass" \
            --json "$LOG_DIR/bench_${dt}_$pass.json" 2>&1 | tee "$LOG_DIR/bench_${dt}_$pass.log"
        [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
    done
done

echo "== 4. one training epoch (seed CNN, batch 32) against Keras on torch"
KERAS_FLAG=""
$PY -c "import keras" 2>/dev/null || KERAS_FLAG="--no-keras"
$PY -m gpuconv.benchmarking.training --backend cuda --samples 4096 $KERAS_FLAG \
    --json "$LOG_DIR/training_epoch.json" 2>&1 | tee "$LOG_DIR/training_epoch.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

[ -n "${SKIP_BF16:-}" ] && echo "bfloat16: not run on this GPU (ml_dtypes missing; see bfloat16_skipped.txt)"
echo "== done: status $status (logs in $LOG_DIR)"
exit $status
