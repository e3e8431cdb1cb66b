"""GPU tests of the CUDA engine's conv and conv_transpose against the NumPy engine in float64.

Skipped with the probe's reason where CUDA is absent (marker ``gpu``; the > 2**31-element test
is also marked ``large``). The oracle is ``gpuconv.cpu`` called directly on float64 copies of the
(already rounded) inputs; tolerances are DESIGN.md's relative L2 per input dtype.
"""
import threading

import engine_calls as calls
import numpy as np
import pytest

from conftest import CUDA_MARKS, ON_EMULATOR, assert_close, gpu_xp
from gpuconv import activations as act_ref
from gpuconv import geometry as g

pytestmark = CUDA_MARKS


def _engines():
    from gpuconv.cpu import engine as cpu
    from gpuconv.cuda import engine

    return cpu, engine


# (rank, batch, C, F, spatial, kernel, strides, dilation, padding, groups)
CONV_CASES = [
    (1, 2, 3, 5, (17,), (3,), (1,), (1,), "valid", 1),
    (1, 2, 8, 16, (40,), (4,), (1,), (2,), "causal", 1),
    (1, 1, 6, 6, (33,), (5,), (2,), (1,), "same", 3),
    (2, 2, 3, 8, (9, 11), (3, 3), (1, 1), (1, 1), "same", 1),
    (2, 2, 16, 70, (12, 10), (3, 2), (2, 1), (1, 1), "valid", 1),
    (2, 1, 32, 32, (8, 8), (3, 3), (1, 1), (2, 2), "same", 4),
    (2, 2, 20, 40, (7, 9), (1, 1), (1, 1), (1, 1), "valid", 2),
    (2, 1, 4, 4, (6, 6), (6, 6), (1, 1), (1, 1), "valid", 1),   # exact fit: 1x1 output
    (2, 1, 64, 64, (14, 14), (3, 3), (1, 1), (1, 1), "same", 1),
    (3, 1, 4, 6, (5, 6, 7), (3, 3, 3), (1, 2, 1), (1, 1, 1), "same", 2),
    (3, 2, 3, 4, (6, 5, 4), (2, 2, 2), (2, 2, 2), (1, 1, 1), "valid", 1),
    (2, 2, 5, 7, (11, 10), (2, 1), (3, 4), (1, 1), "same", 1),  # strides > kernel: skipped input cells
    (1, 1, 3, 4, (20,), (1,), (5,), (1,), "valid", 1),
]

# (rank, batch, C, F, spatial, kernel, strides, dilation, padding, output_padding, groups)
TRANSPOSE_CASES = [
    (1, 2, 4, 3, (9,), (3,), (2,), (1,), "valid", None, 1),
    (1, 2, 8, 6, (8,), (16,), (8,), (1,), "same", None, 2),
    (1, 1, 5, 4, (7,), (3,), (1,), (3,), "same", None, 1),
    (1, 1, 3, 3, (6,), (4,), (3,), (1,), "valid", (2,), 1),
    (2, 2, 6, 4, (5, 6), (4, 4), (2, 2), (1, 1), "same", None, 2),
    (2, 1, 8, 16, (4, 4), (2, 2), (2, 2), (1, 1), "valid", None, 1),
    (2, 1, 3, 70, (5, 4), (3, 2), (3, 1), (1, 1), "same", None, 1),
    (2, 1, 4, 4, (5, 5), (3, 3), (1, 1), (2, 2), "valid", None, 4),
    (3, 1, 4, 2, (3, 4, 3), (2, 2, 2), (2, 2, 2), (1, 1, 1), "valid", None, 1),
    (3, 1, 2, 4, (3, 3, 2), (3, 3, 3), (2, 1, 2), (1, 1, 1), "same", (1, 0, 1), 2),
    (1, 2, 3, 5, (7,), (2,), (3,), (1,), "valid", None, 1),   # s > k: a phase no tap reaches (bias only)
    (1, 1, 4, 4, (6,), (3,), (2,), (2,), "same", None, 2),    # s = d = 2: the odd phase has no taps
    (2, 1, 3, 6, (4, 5), (2, 3), (3, 2), (1, 1), "valid", (2, 1), 1),  # output_padding past the full length
]

DTYPES = ("float32", "float16", "float64")


def _make(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def _conv_args(case, channels_last):
    rank, n, c, f, spatial, k, s, d, pad, groups = case
    x_shape = g.make_shape(n, c, spatial, "channels_last" if channels_last else "channels_first")
    w_shape = (*k, c // groups, f)
    kwargs = dict(strides=s, padding=g.conv_padding(spatial, k, s, d, pad), dilation=d, groups=groups,
                  channels_last=channels_last)
    return x_shape, w_shape, kwargs


def _transpose_args(case, channels_last):
    rank, n, c, f, spatial, k, s, d, pad, op, groups = case
    x_shape = g.make_shape(n, c, spatial, "channels_last" if channels_last else "channels_first")
    w_shape = (*k, f // groups, c)
    out_spatial, crop = g.conv_transpose_geometry(spatial, k, s, d, pad, op)
    kwargs = dict(strides=s, dilation=d, groups=groups, out_spatial=out_spatial, crop=crop,
                  channels_last=channels_last)
    return x_shape, w_shape, kwargs


def _run_both(op, x, w, b, kwargs, activation=None):
    cupy = gpu_xp()

    cpu, eng = _engines()
    expect = getattr(calls, op)(cpu, x.astype(np.float64), w.astype(np.float64),
                              None if b is None else b.astype(np.float64), activation=None, **kwargs)
    if activation is not None:
        expect = act_ref.get(activation)(expect)
    got = getattr(calls, op)(eng, cupy.asarray(x), cupy.asarray(w), None if b is None else cupy.asarray(b),
                           activation=activation, **kwargs)
    assert got.dtype == x.dtype
    return cupy.asnumpy(got), expect


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("channels_last", [True, False], ids=["cl", "cf"])
@pytest.mark.parametrize("case", CONV_CASES, ids=[f"conv{i}" for i in range(len(CONV_CASES))])
def test_conv_matches_oracle(case, channels_last, dtype):
    rng = np.random.default_rng(0)
    x_shape, w_shape, kwargs = _conv_args(case, channels_last)
    x, w, b = _make(rng, x_shape, dtype), _make(rng, w_shape, dtype), _make(rng, (w_shape[-1],), dtype)
    got, expect = _run_both("conv", x, w, b, kwargs)
    assert_close(got, expect, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("channels_last", [True, False], ids=["cl", "cf"])
@pytest.mark.parametrize("case", TRANSPOSE_CASES, ids=[f"convT{i}" for i in range(len(TRANSPOSE_CASES))])
def test_conv_transpose_matches_oracle(case, channels_last, dtype):
    rng = np.random.default_rng(1)
    x_shape, w_shape, kwargs = _transpose_args(case, channels_last)
    f = w_shape[-2] * kwargs["groups"]
    x, w, b = _make(rng, x_shape, dtype), _make(rng, w_shape, dtype), _make(rng, (f,), dtype)
    got, expect = _run_both("conv_transpose", x, w, b, kwargs)
    assert_close(got, expect, dtype)


@pytest.mark.parametrize("activation", ["relu", "relu6", "leaky_relu", "elu", "selu", "gelu", "silu", "sigmoid",
                                        "tanh", "softplus", "softsign", "hard_sigmoid", "hard_silu", "exponential",
                                        "mish", "celu", "squareplus", "sparse_plus", "soft_shrink", "hard_shrink",
                                        "tanh_shrink", "hard_tanh", "log_sigmoid", "sparse_sigmoid", "swish"])
def test_fused_activation_matches_keras_formula(activation):
    rng = np.random.default_rng(2)
    x_shape, w_shape, kwargs = _conv_args(CONV_CASES[3], True)
    x, w, b = _make(rng, x_shape, "float32"), _make(rng, w_shape, "float32") * 0.5, _make(rng, (8,), "float32")
    got, expect = _run_both("conv", x, w, b, kwargs, activation=activation)
    assert_close(got, expect, "float32")
    x_shape, w_shape, kwargs = _transpose_args(TRANSPOSE_CASES[4], False)
    x, w, b = _make(rng, x_shape, "float32"), _make(rng, w_shape, "float32") * 0.5, _make(rng, (4,), "float32")
    got, expect = _run_both("conv_transpose", x, w, b, kwargs, activation=activation)
    assert_close(got, expect, "float32")


def test_non_contiguous_negative_and_zero_stride_inputs_equal_contiguous():
    cupy = gpu_xp()

    _, eng = _engines()
    rng = np.random.default_rng(3)
    x_shape, w_shape, kwargs = _conv_args(CONV_CASES[3], True)
    x = cupy.asarray(rng.integers(-3, 4, size=x_shape).astype(np.float32))
    w = cupy.asarray(rng.integers(-3, 4, size=w_shape).astype(np.float32))
    ref = calls.conv(eng, x, w, None, activation=None, **kwargs)
    x_rev = cupy.ascontiguousarray(x[:, ::-1])[:, ::-1]          # negative stride view, same values
    x_t = cupy.asfortranarray(x)                                  # non-C-contiguous layout
    w_gap = cupy.zeros((*w_shape[:-1], 2 * w_shape[-1]), np.float32)
    w_gap[..., ::2] = w
    w_strided = w_gap[..., ::2]                                   # gaps between elements
    x_before = x.copy()
    for xi, wi in ((x_rev, w), (x_t, w_strided), (x, w_strided)):
        assert cupy.array_equal(calls.conv(eng, eng.asarray(xi), eng.asarray(wi), None, activation=None, **kwargs), ref)
        assert cupy.array_equal(calls.conv(eng, xi, wi, None, activation=None, **kwargs), ref)
    assert cupy.array_equal(x, x_before)  # inputs never modified
    w_bcast = cupy.broadcast_to(cupy.ones((1,) * (len(w_shape) - 1) + (w_shape[-1],), np.float32), w_shape)
    got = calls.conv(eng, x, w_bcast, None, activation=None, **kwargs)
    assert cupy.array_equal(got, calls.conv(eng, x, cupy.ascontiguousarray(w_bcast), None, activation=None, **kwargs))


def test_non_default_stream():
    cupy = gpu_xp()

    rng = np.random.default_rng(4)
    x_shape, w_shape, kwargs = _transpose_args(TRANSPOSE_CASES[4], True)
    x, w = _make(rng, x_shape, "float32"), _make(rng, w_shape, "float32")
    cpu, eng = _engines()
    expect = calls.conv_transpose(cpu, x.astype(np.float64), w.astype(np.float64), None, activation=None, **kwargs)
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        xd, wd = cupy.asarray(x), cupy.asarray(w)
        got = calls.conv_transpose(eng, xd, wd, None, activation=None, **kwargs)
        stream.synchronize()
    assert_close(cupy.asnumpy(got), expect, "float32")


def test_threads_on_a_cold_cache_compile_each_file_once(tmp_path, monkeypatch):
    cupy = gpu_xp()

    from gpuconv.cuda import module_cache
    from gpuconv.emulator import build

    # The compiler of GPU_BACKEND: NVRTC (cubins) on a GPU, the host C++ compiler (shared objects) on
    # the cuda-emulator; both behind the same exactly-once module cache.
    if ON_EMULATOR:
        cache_env, compiles = build.CACHE_ENV, lambda: build.stats["builds"]
    else:
        cache_env, compiles = module_cache.CACHE_ENV, lambda: module_cache.stats.get("nvrtc_compiles:conv_direct.cu", 0)
    monkeypatch.setenv(cache_env, str(tmp_path))
    module_cache.clear_cache()
    before = compiles()
    rng = np.random.default_rng(5)
    x_shape, w_shape, kwargs = _conv_args(CONV_CASES[8], True)
    x, w = _make(rng, x_shape, "float32"), _make(rng, w_shape, "float32")
    cpu, eng = _engines()
    expect = calls.conv(cpu, x.astype(np.float64), w.astype(np.float64), None, activation=None, **kwargs)
    results, errors = [], []

    def worker():
        try:
            y = calls.conv(eng, cupy.asarray(x), cupy.asarray(w), None, activation=None, **kwargs)
            results.append(cupy.asnumpy(y))
        except Exception as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert compiles() == before + 1
    for r in results:
        assert_close(r, expect, "float32")


def test_out_of_memory_raises_memory_error_and_process_stays_usable():
    cupy = gpu_xp()

    _, eng = _engines()
    pool = cupy.get_default_memory_pool()
    x = cupy.ones((4, 64, 64, 8), np.float32)
    w = cupy.ones((3, 3, 8, 512), np.float32)  # output 4*64*64*512*4 B = 32 MiB
    kwargs = dict(strides=(1, 1), padding=((1, 1), (1, 1)), dilation=(1, 1), groups=1, channels_last=True)
    pool.free_all_blocks()
    try:
        pool.set_limit(size=pool.used_bytes() + 4 * 1024 * 1024)
        with pytest.raises(MemoryError):
            calls.conv(eng, x, w, None, activation=None, **kwargs)
    finally:
        pool.set_limit(size=0)
    y = calls.conv(eng, x, w, None, activation=None, **kwargs)
    assert float(y[0, 10, 10, 0]) == 72.0


def test_repeated_runs_are_bitwise_identical():
    cupy = gpu_xp()

    _, eng = _engines()
    rng = np.random.default_rng(6)
    for case, op, args in ((CONV_CASES[5], "conv", _conv_args), (TRANSPOSE_CASES[1], "conv_transpose", _transpose_args)):
        x_shape, w_shape, kwargs = args(case, True)
        x, w = cupy.asarray(_make(rng, x_shape, "float32")), cupy.asarray(_make(rng, w_shape, "float32"))
        first = getattr(calls, op)(eng, x, w, None, activation="gelu", **kwargs)
        for _ in range(3):
            assert cupy.array_equal(getattr(calls, op)(eng, x, w, None, activation="gelu", **kwargs), first)


@pytest.mark.parametrize("where", ["input", "weight"])
def test_nan_placement_matches_oracle(where):
    rng = np.random.default_rng(7)
    for case, op, args in ((CONV_CASES[3], "conv", _conv_args), (TRANSPOSE_CASES[4], "conv_transpose", _transpose_args)):
        x_shape, w_shape, kwargs = args(case, True)
        x, w = _make(rng, x_shape, "float32"), _make(rng, w_shape, "float32")
        if where == "input":
            x[0, 2, 3, 1] = np.nan
            x[1, 0, 0, 0] = np.inf
        else:
            w[0, 0, 0, 0] = np.nan  # with 'same' padding the padded border is poisoned too (0 * NaN)
        got, expect = _run_both(op, x, w, None, kwargs)
        assert np.isnan(expect).any()
        assert_close(got, expect, "float32")


@pytest.mark.parametrize("channels_last", [True, False], ids=["cl", "cf"])
@pytest.mark.parametrize("value", [np.nan, np.inf], ids=["nan", "inf"])
@pytest.mark.parametrize("tap", ["first", "last"])
@pytest.mark.parametrize("case", [0, 2, 3, 4, 6, 8, 9, 10, 12], ids=lambda i: f"convT{i}")
def test_conv_transpose_non_finite_weight_reaches_only_scattered_outputs(case, tap, value, channels_last):
    # Scatter semantics: a tap contributes to an output only from an input pixel that exists, so a
    # NaN/Inf weight poisons exactly the outputs its input pixels reach. A kernel that multiplies
    # the taps falling outside the input by a loaded zero makes 0 * Inf = NaN everywhere else
    # (both tile shapes: 4 filters per group is the narrow tile, 70 the wide one).
    rng = np.random.default_rng(10)
    x_shape, w_shape, kwargs = _transpose_args(TRANSPOSE_CASES[case], channels_last)
    x, w = _make(rng, x_shape, "float32"), _make(rng, w_shape, "float32")
    k = w_shape[:-2]
    w[(tuple(0 for _ in k) if tap == "first" else tuple(t - 1 for t in k)) + (0, 0)] = value
    got, expect = _run_both("conv_transpose", x, w, None, kwargs)
    assert not np.isfinite(expect).all() and np.isfinite(expect).any()
    assert_close(got, expect, "float32")


def test_grid_y_past_65535_grid_strides():  # ~1 minute on the cuda-emulator (70,000 column tiles): the size is the point
    rng = np.random.default_rng(8)
    groups = 70000  # one column tile per group: 70000 > MaxGridDimY
    case = (1, 1, groups, groups, (9,), (3,), (1,), (1,), "same", groups)
    x_shape, w_shape, kwargs = _conv_args(case, True)
    x, w = _make(rng, x_shape, "float32"), _make(rng, w_shape, "float32")
    got, expect = _run_both("conv", x, w, None, kwargs)
    assert_close(got, expect, "float32")


def test_empty_output_launches_nothing():
    cupy = gpu_xp()

    _, eng = _engines()
    x = cupy.zeros((0, 5, 5, 3), np.float32)
    w = cupy.zeros((3, 3, 3, 4), np.float32)
    y = calls.conv(eng, x, w, None, strides=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1), groups=1,
                 channels_last=True, activation=None)
    assert y.shape == (0, 3, 3, 4)


def test_device_mismatch_is_refused():
    cupy = gpu_xp()

    from gpuconv.errors import DeviceMismatchError

    if cupy.cuda.runtime.getDeviceCount() < 2:
        pytest.skip("needs two GPUs")
    _, eng = _engines()
    with cupy.cuda.Device(1):
        a = cupy.zeros(3)
    with cupy.cuda.Device(0):
        with pytest.raises(DeviceMismatchError, match="GPU 1"):
            eng.asarray(a)


def test_debug_sync_mode_and_no_pool_growth(monkeypatch):
    cupy = gpu_xp()

    _, eng = _engines()
    monkeypatch.setenv("GPUCONV_DEBUG_SYNC", "1")
    rng = np.random.default_rng(9)
    x_shape, w_shape, kwargs = _conv_args(CONV_CASES[4], False)
    x, w = cupy.asarray(_make(rng, x_shape, "float32")), cupy.asarray(_make(rng, w_shape, "float32"))
    pool = cupy.get_default_memory_pool()
    del_y = calls.conv(eng, x, w, None, activation="relu", **kwargs)
    del del_y
    baseline = pool.used_bytes()
    for _ in range(20):
        y = calls.conv(eng, x, w, None, activation="relu", **kwargs)
        del y
    assert pool.used_bytes() == baseline


@pytest.mark.large
def test_conv_over_2_pow_31_elements_uses_64_bit_indices():
    cupy = gpu_xp()

    from gpuconv.cuda import indexing

    _, eng = _engines()
    length = 2**31 + 64
    x = (cupy.arange(length, dtype=cupy.int32) % 7 - 3).astype(cupy.float16).reshape(1, length, 1)
    w = cupy.asarray(np.array([1, -2, 3], np.float16).reshape(3, 1, 1))
    kwargs = dict(strides=(1,), padding=((1, 1),), dilation=(1,), groups=1, channels_last=True)
    y = calls.conv(eng, x, w, None, activation=None, **kwargs)
    assert indexing.index_type(x, w, y) == "int64"
    cpu, _ = _engines()
    for start in (0, 2**31 - 1000, length - 1000):
        stop = min(start + 1000, length)
        lo, hi = max(start - 1, 0), min(stop + 1, length)
        xs = cupy.asnumpy(x[:, lo:hi]).astype(np.float64)
        pad = ((1 if lo == start else 0, 1 if hi == stop else 0),)
        expect = calls.conv(cpu, xs, cupy.asnumpy(w).astype(np.float64), None, strides=(1,), padding=pad, dilation=(1,),
                          groups=1, channels_last=True, activation=None)
        np.testing.assert_array_equal(cupy.asnumpy(y[:, start:stop]).astype(np.float64), expect)
    del x, y
    cupy.get_default_memory_pool().free_all_blocks()


# Special inputs of every activation: NaN, +-Inf, the branch points (+-0.5 shrinks, +-1 sparse,
# +-3 hard sigmoid, +-6 relu6) and the saturated tails. 1x1 windows with weight 1 make every
# op's pre-activation output exactly x, so any difference is the activation's.
SPECIAL_VALUES = [np.nan, np.inf, -np.inf, 0.0, -0.0, 0.5, -0.5, 1.0, -1.0, 2.5, -2.5, 3.0, -3.0, 6.0, -6.0,
                  20.0, -20.0, 100.0, -100.0, 1e4, -1e4]


def _identity_runs(eng, x, dtype):
    """{op: output} of conv, conv_transpose, depthwise, separable and locally connected, each an
    identity on ``x`` of shape (1, n, 1) before its activation."""
    cupy = gpu_xp()

    def one(*shape):
        return cupy.ones(shape, dtype)

    n = x.shape[1]
    window = dict(strides=(1,), padding=((0, 0),), channels_last=True)
    return {
        "conv": lambda act: calls.conv(eng, x, one(1, 1, 1), None, dilation=(1,), groups=1, activation=act, **window),
        "conv_transpose": lambda act: calls.conv_transpose(eng, x, one(1, 1, 1), None, strides=(1,), dilation=(1,), groups=1,
                                                         out_spatial=(n,), crop=(0,), channels_last=True,
                                                         activation=act),
        "depthwise_conv": lambda act: calls.depthwise_conv(eng, x, one(1, 1, 1), None, dilation=(1,), activation=act,
                                                         **window),
        "separable_conv": lambda act: calls.separable_conv(eng, x, one(1, 1, 1), one(1, 1, 1), None, dilation=(1,),
                                                         activation=act, **window),
        "locally_connected": lambda act: calls.locally_connected(eng, x, one(n, 1, 1), None, kernel_size=(1,),
                                                               out_spatial=(n,), activation=act, **window),
    }


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ["relu", "relu6", "leaky_relu", "elu", "selu", "gelu", "silu", "sigmoid",
                                        "tanh", "softplus", "softsign", "hard_sigmoid", "hard_silu", "exponential",
                                        "mish", "celu", "squareplus", "sparse_plus", "soft_shrink", "hard_shrink",
                                        "tanh_shrink", "hard_tanh", "log_sigmoid", "sparse_sigmoid"])
def test_fused_activation_special_values_match_reference(activation, dtype):
    cupy = gpu_xp()

    _, eng = _engines()
    v = np.array(SPECIAL_VALUES, dtype=dtype)
    expect = act_ref.get(activation)(v.astype(np.float64)).astype(dtype).astype(np.float64)
    # Per element: float64 allows 1e-11 because the reference's own erfc (gelu) is good to 1e-12.
    rtol = {"float32": 1e-5, "float16": 2e-3, "float64": 1e-11}[dtype]
    atol = float(np.finfo(dtype).tiny)  # tails that underflow to subnormals keep fewer bits
    for op, run in _identity_runs(eng, cupy.asarray(v.reshape(1, -1, 1)), dtype).items():
        got = cupy.asnumpy(run(activation)).astype(np.float64).ravel()
        for where in (np.isnan, np.isposinf, np.isneginf):
            np.testing.assert_array_equal(where(got), where(expect), err_msg=f"{op} {where.__name__}")
        finite = np.isfinite(expect)
        np.testing.assert_allclose(got[finite], expect[finite], rtol=rtol, atol=atol, err_msg=op)
