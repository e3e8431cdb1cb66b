#!/usr/bin/env bash
# The one command for the device machine (installs nothing; uses its python3 with CuPy 14,
# PyTorch + cuDNN, NumPy and pytest):
#     bash bench/gpu_check.sh            # from the repository root
# 1. the GPU test suite (tests/test_cuda_gpu*.py; set GPUCHECK_LARGE=0 to skip the >2**31-element tests)
# 2. compute-sanitizer memcheck and racecheck over a small subset (if the tool is found)
# 3. a timing table of bench_suite.md's rows against PyTorch/cuDNN (TF32 off for float32):
#    `python3 -m gpuconv.bench --suite suite --backend cuda` when that CLI exists, else a small
#    inline timing of conv/conv_transpose rows.
# Logs go to $OUT (the device tool's folder) or /tmp/gpuconv-check. Exit status 1 if any step failed.
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
export GPUCONV_CACHE_DIR=${GPUCONV_CACHE_DIR:-/tmp/gpuconv-kernels}
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

echo "== 1. GPU tests"
GPU_TESTS=$(ls tests/test_cuda_gpu*.py)
MARK="gpu and not large"
if [ "${GPUCHECK_LARGE:-1}" != "0" ]; then MARK="gpu"; fi
$PY -m pytest -q -rs -m "$MARK" $GPU_TESTS -p no:cacheprovider 2>&1 | tee "$LOG_DIR/gpu_tests.log"
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

echo "== 3. timing against PyTorch/cuDNN"
if $PY -c "import gpuconv.bench.cli" 2>/dev/null; then
    for dt in float32 float16; do
        $PY -m gpuconv.bench --suite suite --backend cuda --dtype "$dt" 2>&1 | tee "$LOG_DIR/bench_$dt.log"
        [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
    done
else
    echo "gpuconv.bench is not available: inline timing of a few rows"
    $PY - <<'PYEOF' 2>&1 | tee "$LOG_DIR/bench_inline.log" || status=1
import cupy, numpy as np, torch
from gpuconv import geometry as g
from gpuconv.cuda import engine
torch.backends.cudnn.benchmark = True
torch.backends.cudnn.allow_tf32 = False
torch.backends.cuda.matmul.allow_tf32 = False
# id, rank, N, C, K, spatial, k, s, pad (int or 'same'/'causal'), d, groups, transposed
ROWS = [("D2", 2, 32, 64, 64, (56, 56), 3, 1, "same", 1, 1, False),
        ("D4", 2, 32, 256, 256, (14, 14), 3, 1, "same", 1, 1, False),
        ("D5", 2, 1, 256, 256, (14, 14), 3, 1, "same", 1, 1, False),
        ("D8", 2, 32, 512, 512, (14, 14), 3, 1, "same", 1, 32, False),
        ("A1", 1, 16, 64, 128, (16384,), 2, 1, "causal", 512, 1, False),
        ("T1", 2, 128, 256, 128, (8, 8), 4, 2, 1, 1, 1, True),
        ("T2", 2, 8, 256, 128, (64, 64), 2, 2, 0, 1, 1, True),
        ("T3", 1, 16, 512, 256, (32,), 16, 8, 4, 1, 1, True)]

def timed(fn, reps=20):
    fn(); torch.cuda.synchronize(); cupy.cuda.runtime.deviceSynchronize()
    times = []
    for _ in range(reps):
        a, b = cupy.cuda.Event(), cupy.cuda.Event()
        a.record(); fn(); b.record(); b.synchronize()
        times.append(cupy.cuda.get_elapsed_time(a, b))
    return float(np.median(times))

print(f"{'row':4} {'dtype':8} {'layout':6} {'gpuconv ms':>10} {'cuDNN ms':>9} {'ratio':>6}")
for rid, rank, n, c, k_out, spatial, k, s, pad, d, groups, transposed in ROWS:
    for dt in ("float32", "float16"):
        rng = np.random.default_rng(0)
        x = cupy.asarray(rng.standard_normal((n, *spatial, c)).astype(dt))
        ks = (k,) * rank
        if not transposed:
            w = cupy.asarray(rng.standard_normal((*ks, c // groups, k_out)).astype(dt) * 0.05)
            mode = pad
            padding = g.conv_padding(spatial, ks, (s,) * rank, (d,) * rank, mode)
            ours = lambda: engine.conv(x, w, None, strides=(s,) * rank, padding=padding, dilation=(d,) * rank,
                                       groups=groups, channels_last=True, activation=None)
            xt = torch.as_tensor(x, device="cuda").movedim(-1, 1)
            wt = torch.as_tensor(w, device="cuda").permute(rank + 1, rank, *range(rank)).contiguous()
            lead = [p[0] for p in padding]
            if any(p[0] != p[1] for p in padding):
                fpad = [v for p in reversed(padding) for v in p]
                ref = lambda: getattr(torch.nn.functional, f"conv{rank}d")(torch.nn.functional.pad(xt, fpad), wt, None, s, 0, d, groups)
            else:
                ref = lambda: getattr(torch.nn.functional, f"conv{rank}d")(xt, wt, None, s, lead, d, groups)
        else:
            w = cupy.asarray(rng.standard_normal((*ks, k_out, c)).astype(dt) * 0.05)
            out = tuple((L - 1) * s - 2 * pad + k for L in spatial)
            ours = lambda: engine.conv_transpose(x, w, None, strides=(s,) * rank, dilation=(1,) * rank, groups=1,
                                                 out_spatial=out, crop=(pad,) * rank, channels_last=True, activation=None)
            xt = torch.as_tensor(x, device="cuda").movedim(-1, 1)
            wt = torch.as_tensor(w, device="cuda").permute(rank + 1, rank, *range(rank)).contiguous()
            ref = lambda: getattr(torch.nn.functional, f"conv_transpose{rank}d")(xt, wt, None, s, pad)
        if rank == 2:
            xt = xt.contiguous(memory_format=torch.channels_last)
        t_ours, t_ref = timed(ours), timed(ref)
        print(f"{rid:4} {dt:8} {'NHWC':6} {t_ours:10.3f} {t_ref:9.3f} {t_ours / t_ref:6.2f}")
PYEOF
fi

echo "== done: status $status (logs in $LOG_DIR)"
exit $status
