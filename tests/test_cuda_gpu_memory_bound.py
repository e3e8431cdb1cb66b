"""GPU tests of the memory-bound CUDA ops (depthwise, separable, pooling, upsampling, locally
connected) against the NumPy engine on float64 copies of the same inputs. Skipped with the
probe's reason where CUDA is absent."""

import engine_calls as calls
import numpy as np
import pytest

from conftest import CUDA_AVAILABLE, CUDA_REASON, assert_close, gpu_xp, random_array

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not CUDA_AVAILABLE, reason=f"CUDA backend unavailable: {CUDA_REASON}"),
]

DTYPES = ("float32", "float16", "float64")
LAYOUTS = (True, False)  # channels_last


@pytest.fixture(scope="module")
def engines():
    cupy = gpu_xp()  # noqa: F841  (only reached with CUDA)

    from gpuconv.cpu import engine as cpu
    from gpuconv.cuda import engine

    return cpu, engine


def _run(engines, op, args, kwargs, dtype):
    """(gpu result as NumPy, float64 oracle) for ``op`` on ``args`` rounded to ``dtype``."""
    cupy = gpu_xp()

    cpu, gpu = engines
    rounded = [None if a is None else a.astype(dtype) for a in args]
    dev = [None if a is None else cupy.asarray(a) for a in rounded]
    copies = [None if a is None else a.copy() for a in dev]
    got = getattr(calls, op)(gpu, *dev, **kwargs)
    for a, c in zip(dev, copies):  # inputs are never mutated
        assert a is None or bool(((a == c) | (cupy.isnan(a) & cupy.isnan(c))).all())  # elementwise, then reduce
    assert got.dtype == np.dtype(dtype)
    ref = getattr(calls, op)(cpu, *[None if a is None else a.astype(np.float64) for a in rounded], **kwargs)
    return cupy.asnumpy(got), ref


def _x(rng, n, c, spatial, channels_last, dtype="float64"):
    shape = (n, *spatial, c) if channels_last else (n, c, *spatial)
    return random_array(rng, shape, dtype)


def _same_pads(spatial, k, s, d):
    from gpuconv import geometry as g

    return tuple(g.conv_padding_pair(L, kk, ss, dd, "same") for L, kk, ss, dd in zip(spatial, k, s, d))


# Bench shapes (scaled down) and the odd ones: (spatial, kernel, strides, dilation, padding mode, dm)
DEPTHWISE_CASES = [
    ((9, 11), (3, 3), (1, 1), (1, 1), "same", 1),
    ((9, 11), (3, 3), (2, 2), (1, 1), "same", 1),
    ((12, 10), (5, 5), (2, 2), (1, 1), "same", 2),
    ((14, 14), (7, 7), (1, 1), (1, 1), "same", 1),
    ((300,), (3,), (1,), (64,), "same", 1),
    ((33,), (4,), (1,), (1,), "causal", 1),
    ((5, 6, 7), (3, 3, 3), (1, 1, 1), (1, 1, 1), "same", 1),
    ((8, 9), (2, 3), (1, 2), (1, 1), "valid", 3),   # generic fallback
    ((10, 12), (3, 3), (1, 1), (2, 3), "same", 1),  # dilated generic
]


def _padding(mode, spatial, k, s, d):
    if mode == "valid":
        return tuple((0, 0) for _ in k)
    if mode == "causal":
        return (((k[0] - 1) * d[0], 0),)
    return _same_pads(spatial, k, s, d)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("channels_last", LAYOUTS)
@pytest.mark.parametrize("case", DEPTHWISE_CASES, ids=lambda c: f"{c[1]}s{c[2]}d{c[3]}{c[4]}dm{c[5]}")
@pytest.mark.parametrize("channels", [16, 6])
def test_depthwise_matches_oracle(engines, rng, dtype, channels_last, case, channels):
    spatial, k, s, d, mode, dm = case
    x = _x(rng, 2, channels, spatial, channels_last)
    w = random_array(rng, (*k, channels, dm))
    b = random_array(rng, (channels * dm,))
    kwargs = dict(strides=s, padding=_padding(mode, spatial, k, s, d), dilation=d, channels_last=channels_last,
                  activation="relu")
    got, ref = _run(engines, "depthwise_conv", (x, w, b), kwargs, dtype)
    assert_close(got, ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("channels_last", LAYOUTS)
@pytest.mark.parametrize("channels, dm, filters", [(8, 1, 16), (6, 2, 5), (40, 1, 300)])
def test_separable_fused_matches_oracle(engines, rng, dtype, channels_last, channels, dm, filters):
    spatial, k = (9, 10), (3, 3)
    x = _x(rng, 3, channels, spatial, channels_last)
    dwk = random_array(rng, (*k, channels, dm))
    pwk = random_array(rng, (1, 1, channels * dm, filters))
    b = random_array(rng, (filters,))
    kwargs = dict(strides=(2, 1), padding=_same_pads(spatial, k, (2, 1), (1, 1)), dilation=(1, 1),
                  channels_last=channels_last, activation="tanh")
    got, ref = _run(engines, "separable_conv", (x, dwk, pwk, b), kwargs, dtype)
    assert_close(got, ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("channels_last", LAYOUTS)
def test_separable_two_kernel_path_matches_oracle(engines, rng, dtype, channels_last):
    from gpuconv.cuda import separable

    channels = 2048 if dtype != "float64" else 1024
    assert separable.plan_separable(channels, 1, 8, np.dtype(dtype)).kind == "two_kernel"
    x = _x(rng, 1, channels, (5,), channels_last) * 0.1
    dwk = random_array(rng, (3, channels, 1))
    pwk = random_array(rng, (1, channels, 8)) * 0.05
    kwargs = dict(strides=(1,), padding=((1, 1),), dilation=(1,), channels_last=channels_last, activation=None)
    got, ref = _run(engines, "separable_conv", (x, dwk, pwk, None), kwargs, dtype)
    assert_close(got, ref, dtype)


@pytest.mark.parametrize("channels_last", LAYOUTS)
@pytest.mark.parametrize("kernel", [(3,), (2,)], ids=["tile", "direct"])  # k3 is a depthwise specialisation
def test_separable_two_kernel_float16_intermediate_does_not_overflow(engines, rng, channels_last, kernel):
    # Depthwise sums near 3 * 128 * 256 = 98304 > 65504 (float16's max) in every mid channel; the
    # pointwise weights bring the outputs back to ~1e3. The oracle and the fused path stay finite,
    # so must the two-kernel path (its intermediate in float32, not float16).
    from gpuconv.cuda import depthwise, separable

    channels, filters = 2048, 8
    assert separable.plan_separable(channels, 1, filters, np.dtype("float16")).kind == "two_kernel"
    x = 128 * (1 + 0.1 * rng.random((1, 6, channels) if channels_last else (1, channels, 6)))
    dwk = 256 * (1 + 0.1 * rng.random((*kernel, channels, 1)))
    pwk = random_array(rng, (1, channels, filters)) * 2.0**-12
    kwargs = dict(strides=(1,), padding=((0, 0),), dilation=(1,), channels_last=channels_last, activation=None)
    mid = calls.depthwise_conv(engines[0], x.astype("float16").astype(np.float64), dwk.astype("float16").astype(np.float64),
                                    None, strides=(1,), padding=((0, 0),), dilation=(1,), channels_last=channels_last,
                                    activation=None)
    assert mid.min() > np.finfo(np.float16).max  # every mid value overflows float16
    plan = depthwise.plan_depthwise(x.shape, dwk.shape, np.dtype("float16"), (1,), ((0, 0),), (1,), channels_last,
                                    mid.shape, out_dtype=depthwise.mid_dtype("float16"))
    assert plan.kernel == ("tile" if kernel == (3,) else "direct") and plan.name.endswith(", float>")
    got, ref = _run(engines, "separable_conv", (x, dwk, pwk, None), kwargs, "float16")
    assert np.isfinite(ref).all() and np.abs(ref).max() < 2**14
    assert_close(got, ref, "float16")


POOL_CASES = [
    ((9,), (2,), (2,), "valid"), ((9,), (3,), (1,), "same"),
    ((7, 8), (2, 2), (2, 2), "same"), ((7, 8), (3, 3), (2, 1), "same"),
    ((5, 6, 7), (2, 2, 2), (2, 2, 2), "same"),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("channels_last", LAYOUTS)
@pytest.mark.parametrize("mode", ["max", "average"])
@pytest.mark.parametrize("case", POOL_CASES, ids=str)
def test_pool_matches_oracle(engines, rng, dtype, channels_last, mode, case):
    from gpuconv import geometry as g

    spatial, p, s, pad = case
    x = _x(rng, 2, 16, spatial, channels_last)
    kwargs = dict(mode=mode, pool_size=p, strides=s, padding=g.pool_padding(spatial, p, s, pad),
                  channels_last=channels_last)
    got, ref = _run(engines, "pool", (x,), kwargs, dtype)
    assert_close(got, ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("channels_last", LAYOUTS)
@pytest.mark.parametrize("size, interp", [((3,), "nearest"), ((2, 3), "nearest"), ((2, 3), "bilinear"),
                                          ((2, 1, 3), "nearest"), ((2, 2, 3), "trilinear")])
def test_upsample_matches_oracle(engines, rng, dtype, channels_last, size, interp):
    spatial = (4, 5, 3)[: len(size)]
    x = _x(rng, 2, 8, spatial, channels_last)
    got, ref = _run(engines, "upsample", (x,), dict(size=size, interpolation=interp, channels_last=channels_last),
                    dtype)
    assert_close(got, ref, dtype)


def test_bilinear_half_pixel_example(engines):
    cupy = gpu_xp()

    _, gpu = engines
    x = cupy.asarray(np.array([1.0, 2.0], dtype=np.float32).reshape(1, 1, 2, 1))
    y = calls.upsample(gpu, x, size=(1, 2), interpolation="bilinear", channels_last=True)
    np.testing.assert_allclose(cupy.asnumpy(y).ravel(), [1.0, 1.25, 1.75, 2.0], rtol=0, atol=1e-7)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("channels_last", LAYOUTS)
@pytest.mark.parametrize("spatial, k, s, pad", [((11,), (3,), (2,), "valid"), ((11,), (4,), (1,), "same"),
                                                ((7, 8), (3, 2), (1, 2), "valid"), ((7, 8), (2, 3), (2, 1), "same")])
def test_locally_connected_matches_oracle(engines, rng, dtype, channels_last, spatial, k, s, pad):
    from gpuconv import geometry as g

    c, f = 5, 7
    out = tuple(g.locally_connected_output_length(L, kk, ss, pad) for L, kk, ss in zip(spatial, k, s))
    pads = tuple(g.locally_connected_padding_pair(L, kk, ss, pad) for L, kk, ss in zip(spatial, k, s))
    x = _x(rng, 3, c, spatial, channels_last)
    w = random_array(rng, (int(np.prod(out)), int(np.prod(k)) * c, f))
    b = random_array(rng, (*out, f))
    kwargs = dict(kernel_size=k, strides=s, padding=pads, out_spatial=out, channels_last=channels_last,
                  activation="sigmoid")
    got, ref = _run(engines, "locally_connected", (x, w, b), kwargs, dtype)
    assert_close(got, ref, dtype)


# ---------------------------------------------------------------------------------------------
# NaN placement, determinism, grid limits
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("op", ["depthwise", "max", "average", "bilinear"])
@pytest.mark.parametrize("channels_last", LAYOUTS)
def test_nan_poisons_exactly_the_oracle_outputs(engines, rng, op, channels_last):
    x = _x(rng, 1, 8, (9, 9), channels_last)
    idx = (0, 4, 4, 3) if channels_last else (0, 3, 4, 4)
    x[idx] = np.nan
    if op == "depthwise":
        args = (x, random_array(rng, (3, 3, 8, 1)), None)
        kwargs = dict(strides=(1, 1), padding=((1, 1), (1, 1)), dilation=(1, 1), channels_last=channels_last,
                      activation=None)
        name = "depthwise_conv"
    elif op == "bilinear":
        args, name = (x,), "upsample"
        kwargs = dict(size=(2, 3), interpolation="bilinear", channels_last=channels_last)
    else:
        args, name = (x,), "pool"
        kwargs = dict(mode=op, pool_size=(3, 3), strides=(2, 2), padding=((1, 1), (1, 1)),
                      channels_last=channels_last)
    got, ref = _run(engines, name, args, kwargs, "float32")
    assert np.isnan(ref).any()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))


def test_input_mutation_check_holds_with_nan_inputs(engines, rng):
    # _run's check compares elementwise (equal, or NaN in both) and then reduces: an input holding
    # a NaN passes when untouched and still fails when any other element changed.
    cpu, gpu = engines

    class Mutating:
        @staticmethod
        def pool(problem, x):
            y = gpu.pool(problem, x)
            x[0, 0, 0, 1] += 1
            return y

    x = _x(rng, 1, 8, (4, 4), True)
    x[0, 1, 1, 0] = np.nan
    kwargs = dict(mode="max", pool_size=(2, 2), strides=(2, 2), padding=((0, 0), (0, 0)), channels_last=True)
    _run(engines, "pool", (x,), kwargs, "float32")
    with pytest.raises(AssertionError):
        _run((cpu, Mutating), "pool", (x,), kwargs, "float32")


def test_repeated_runs_are_bitwise_identical(engines, rng):
    cupy = gpu_xp()

    _, gpu = engines
    x = cupy.asarray(_x(rng, 2, 32, (15, 17), True, "float32"))
    dwk = cupy.asarray(random_array(rng, (3, 3, 32, 1), "float32"))
    pwk = cupy.asarray(random_array(rng, (1, 1, 32, 24), "float32"))
    runs = [
        lambda: calls.depthwise_conv(gpu, x, dwk, None, strides=(1, 1), padding=((1, 1), (1, 1)), dilation=(1, 1),
                                   channels_last=True, activation=None),
        lambda: calls.separable_conv(gpu, x, dwk, pwk, None, strides=(1, 1), padding=((1, 1), (1, 1)), dilation=(1, 1),
                                   channels_last=True, activation="relu"),
        lambda: calls.pool(gpu, x, mode="average", pool_size=(3, 3), strides=(2, 2), padding=((1, 1), (1, 1)),
                         channels_last=True),
    ]
    for run in runs:
        a, b = cupy.asnumpy(run()), cupy.asnumpy(run())
        assert a.tobytes() == b.tobytes()


def test_batch_times_channels_beyond_65535(engines, rng):
    # 70000 (n, c) planes: a grid that put batch x channels on gridDim.y would be rejected.
    x = _x(rng, 7000, 10, (3, 3), False)
    got, ref = _run(engines, "pool", (x,), dict(mode="max", pool_size=(2, 2), strides=(1, 1),
                                                 padding=((0, 0), (0, 0)), channels_last=False), "float32")
    assert_close(got, ref, "float32")
    w = random_array(rng, (3, 3, 10, 1))
    got, ref = _run(engines, "depthwise_conv", (x, w, None),
                    dict(strides=(1, 1), padding=((1, 1), (1, 1)), dilation=(1, 1), channels_last=False,
                         activation=None), "float32")
    assert_close(got, ref, "float32")


def test_runs_on_a_non_default_stream(engines, rng):
    cupy = gpu_xp()

    with cupy.cuda.Stream():
        x = _x(rng, 2, 8, (6, 6), True)
        got, ref = _run(engines, "upsample", (x,), dict(size=(2, 2), interpolation="bilinear",
                                                       channels_last=True), "float32")
    assert_close(got, ref, "float32")


# ---------------------------------------------------------------------------------------------
# Linear upsampling at the leading edge
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size, interp", [((2, 3), "bilinear"), ((3, 2, 2), "trilinear")])
@pytest.mark.parametrize("channels_last", LAYOUTS)
def test_linear_upsampling_edge_reads_the_second_cell(engines, rng, size, interp, channels_last):
    # Output 0 of an axis samples source -0.25 (x2) or -1/3 (x3), clamped to 0: cells (0, 1) with
    # weights (1, 0), so a NaN in cell 1 poisons it in the oracle (0 * NaN). Clamping the cells
    # instead of the coordinate reads cell 0 twice and returns a finite value there.
    spatial = (4, 5, 3)[: len(size)]
    x = _x(rng, 1, 8, spatial, channels_last)
    cell = (1,) * len(size)
    x[(0, *cell, 2) if channels_last else (0, 2, *cell)] = np.nan
    got, ref = _run(engines, "upsample", (x,), dict(size=size, interpolation=interp, channels_last=channels_last),
                    "float32")
    first = (0, *(0,) * len(size), 2) if channels_last else (0, 2, *(0,) * len(size))
    assert np.isnan(ref[first])
    assert_close(got, ref, "float32")


# ---------------------------------------------------------------------------------------------
# Every fused activation in every memory-bound kernel's epilogue (gc::activate_inline)
# ---------------------------------------------------------------------------------------------
def _activation_case(rng, path, dtype):
    """(op, args, kwargs) that runs ``path``'s kernel; inputs in float64."""
    from gpuconv.cuda import depthwise, separable

    if path == "depthwise_tile":  # 3x3 s1 is a specialisation
        x, w, b = _x(rng, 2, 16, (9, 11), True), random_array(rng, (3, 3, 16, 1)), random_array(rng, (16,))
        kwargs = dict(strides=(1, 1), padding=((1, 1), (1, 1)), dilation=(1, 1), channels_last=True)
        plan = depthwise.plan_depthwise(x.shape, w.shape, np.dtype(dtype), (1, 1), kwargs["padding"], (1, 1), True,
                                        (2, 9, 11, 16))
        assert plan.kernel == "tile"
        return "depthwise_conv", (x, w, b), kwargs
    if path == "depthwise_direct":  # 2x3, dm 3: the run-time fallback
        x, w, b = _x(rng, 2, 6, (8, 9), False), random_array(rng, (2, 3, 6, 3)), random_array(rng, (18,))
        return "depthwise_conv", (x, w, b), dict(strides=(1, 2), padding=((0, 0), (0, 0)), dilation=(1, 1),
                                                 channels_last=False)
    if path == "separable_fused":
        x, dwk = _x(rng, 2, 8, (9, 10), True), random_array(rng, (3, 3, 8, 1))
        pwk, b = random_array(rng, (1, 1, 8, 16)) * 0.5, random_array(rng, (16,))
        assert separable.plan_separable(8, 1, 16, np.dtype(dtype)).kind == "fused"
        return "separable_conv", (x, dwk, pwk, b), dict(strides=(1, 1), padding=((1, 1), (1, 1)), dilation=(1, 1),
                                                        channels_last=True)
    if path == "separable_two_kernel":
        channels = 2048 if dtype != "float64" else 1024
        assert separable.plan_separable(channels, 1, 8, np.dtype(dtype)).kind == "two_kernel"
        x, dwk = _x(rng, 1, channels, (5,), False) * 0.1, random_array(rng, (3, channels, 1))
        pwk, b = random_array(rng, (1, channels, 8)) * 0.05, random_array(rng, (8,))
        return "separable_conv", (x, dwk, pwk, b), dict(strides=(1,), padding=((1, 1),), dilation=(1,),
                                                        channels_last=False)
    assert path == "locally_connected"
    x, w, b = _x(rng, 3, 5, (7, 8), True), random_array(rng, (5 * 7, 3 * 2 * 5, 7)) * 0.5, random_array(rng, (5, 7, 7))
    return "locally_connected", (x, w, b), dict(kernel_size=(3, 2), strides=(1, 1), padding=((0, 0), (0, 0)),
                                                out_spatial=(5, 7), channels_last=True)


ALL_ACTIVATIONS = ["relu", "relu6", "leaky_relu", "elu", "selu", "gelu", "silu", "sigmoid", "tanh", "softplus",
                   "softsign", "hard_sigmoid", "hard_silu", "exponential", "mish", "celu", "squareplus",
                   "sparse_plus", "soft_shrink", "hard_shrink", "tanh_shrink", "hard_tanh", "log_sigmoid",
                   "sparse_sigmoid", "swish", "hard_swish"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("path", ["depthwise_tile", "depthwise_direct", "separable_fused", "separable_two_kernel",
                                  "locally_connected"])
@pytest.mark.parametrize("activation", ALL_ACTIVATIONS)
def test_fused_activation_matches_reference(engines, rng, dtype, path, activation):
    cupy = gpu_xp()

    from gpuconv import activations as act_ref

    cpu, gpu = engines
    op, args, kwargs = _activation_case(rng, path, dtype)
    rounded = [a.astype(dtype) for a in args]
    got = getattr(calls, op)(gpu, *[cupy.asarray(a) for a in rounded], activation=activation, **kwargs)
    ref = getattr(calls, op)(cpu, *[a.astype(np.float64) for a in rounded], activation=None, **kwargs)
    assert got.dtype == np.dtype(dtype)
    # The reference rounded to dtype: an exponential past float16's range is +Inf in both.
    assert_close(cupy.asnumpy(got), act_ref.get(activation)(ref).astype(dtype), dtype)
