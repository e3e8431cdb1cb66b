"""Every op of gpuconv.ops against the independent loop reference (tests/reference.py).

Grids in the CuPy ``product`` style: op x rank x data format x padding x stride x dilation x groups
x depth multiplier x output padding, on small random float64 inputs (tolerance 1e-12), then
float32/float16 against the float64 result on the same rounded values, and small-integer inputs
whose float64/float32 results must be bit-exact. Each test runs on every available backend.
"""
import numpy as np
import pytest

import gpuconv
from gpuconv import ops

import reference as ref
from conftest import assert_close, random_array

CL, CF = "channels_last", "channels_first"
DATA_FORMATS = (CL, CF)

# Spatial sizes per rank, and two kernels per rank (one with an even extent, so 'same' is asymmetric).
SPATIAL = {1: (10,), 2: (7, 8), 3: (5, 6, 5)}
KERNELS = {1: [(3,), (4,)], 2: [(3, 2), (1, 4)], 3: [(2, 3, 2), (3, 1, 2)]}
# (strides, dilation) pairs; (2, 2) is refused by Keras layers but valid for the ops (keras.ops too).
STRIDE_DILATION = [(1, 1), (2, 1), (1, 2), (2, 2)]
N, C, F = 2, 4, 6


# 'causal' exists for 1-D only
RANK_PADDINGS = [(1, "valid"), (1, "same"), (1, "causal"), (2, "valid"), (2, "same")]


def rank_kernel_grid():
    return [(rank, k) for rank in (1, 2, 3) for k in KERNELS[rank]]


def make_input(rng, spatial, channels, data_format, integers=False, n=N):
    shape = (n, *spatial, channels) if data_format == CL else (n, channels, *spatial)
    return random_array(rng, shape, integers=integers)


def run_case(op, reference_fn, arrays, dtype="float64", integers=False, **kwargs):
    """Cast the arrays to ``dtype``, run the op and the reference on the same values, compare.

    The reference sees the rounded values in float64, so the only error allowed is the op's
    own arithmetic. Integer-valued inputs must give bit-identical results.
    """
    cast = [None if a is None else a.astype(dtype) for a in arrays]
    expected = reference_fn(*[None if a is None else a.astype(np.float64) for a in cast], **kwargs)
    actual = gpuconv.to_numpy(op(*cast, **kwargs))
    assert actual.dtype == np.dtype(dtype)
    if integers:
        np.testing.assert_array_equal(actual.astype(np.float64), expected)
    else:
        assert_close(actual, expected, dtype)
    return actual


# --------------------------------------------------------------------------------------------
# Case builders: (op, reference, arrays, kwargs); shared by the grids and the dtype tests
# --------------------------------------------------------------------------------------------
def conv_case(rng, rank, data_format, kernel_size=None, strides=1, dilation=1, padding="valid", groups=1,
              bias=False, integers=False):
    kernel_size = kernel_size or KERNELS[rank][0]
    x = make_input(rng, SPATIAL[rank], C, data_format, integers)
    w = random_array(rng, (*kernel_size, C // groups, F), integers=integers)
    kwargs = dict(strides=strides, padding=padding, data_format=data_format, dilation_rate=dilation)
    if bias:
        return ops.conv_core, ref.conv, [x, w, random_array(rng, (F,), integers=integers)], kwargs
    return ops.conv, ref.conv, [x, w], kwargs


TRANSPOSE_SPATIAL = {1: (5,), 2: (3, 4), 3: (2, 3, 2)}
TRANSPOSE_KERNELS = {1: [(3,), (2,)], 2: [(3, 2)], 3: [(2, 3, 2)]}


def conv_transpose_case(rng, rank, data_format, kernel_size=None, strides=1, dilation=1, padding="valid",
                        output_padding=None, groups=1, bias=False, integers=False):
    kernel_size = kernel_size or TRANSPOSE_KERNELS[rank][0]
    x = make_input(rng, TRANSPOSE_SPATIAL[rank], C, data_format, integers)
    w = random_array(rng, (*kernel_size, F // groups, C), integers=integers)
    kwargs = dict(strides=strides, padding=padding, output_padding=output_padding, data_format=data_format,
                  dilation_rate=dilation)
    if groups != 1 or bias:
        b = random_array(rng, (F,), integers=integers) if bias else None
        return ops.conv_transpose_core, ref.conv_transpose, [x, w, b], dict(kwargs, groups=groups)
    return ops.conv_transpose, ref.conv_transpose, [x, w], kwargs


def depthwise_case(rng, rank, data_format, kernel_size=None, strides=1, dilation=1, padding="valid", dm=2,
                   bias=False, integers=False):
    kernel_size = kernel_size or KERNELS[rank][0]
    x = make_input(rng, SPATIAL[rank], C, data_format, integers)
    w = random_array(rng, (*kernel_size, C, dm), integers=integers)
    kwargs = dict(strides=strides, padding=padding, data_format=data_format, dilation_rate=dilation)
    if bias:
        return ops.depthwise_conv_core, ref.depthwise_conv, [x, w, random_array(rng, (C * dm,), integers=integers)], kwargs
    return ops.depthwise_conv, ref.depthwise_conv, [x, w], kwargs


def separable_case(rng, rank, data_format, kernel_size=None, strides=1, dilation=1, padding="valid", dm=2,
                   bias=False, integers=False):
    kernel_size = kernel_size or KERNELS[rank][0]
    x = make_input(rng, SPATIAL[rank], C, data_format, integers)
    dk = random_array(rng, (*kernel_size, C, dm), integers=integers)
    pk = random_array(rng, (1,) * rank + (C * dm, F), integers=integers)
    kwargs = dict(strides=strides, padding=padding, data_format=data_format, dilation_rate=dilation)
    if bias:
        return ops.separable_conv_core, ref.separable_conv, [x, dk, pk, random_array(rng, (F,), integers=integers)], kwargs
    return ops.separable_conv, ref.separable_conv, [x, dk, pk], kwargs


def pool_case(rng, rank, data_format, mode="max", pool_size=2, strides=None, padding="valid", integers=False):
    x = make_input(rng, SPATIAL[rank], C, data_format, integers)
    op, reference_fn = (ops.max_pool, ref.max_pool) if mode == "max" else (ops.average_pool, ref.average_pool)
    return op, reference_fn, [x], dict(pool_size=pool_size, strides=strides, padding=padding, data_format=data_format)


LC_SPATIAL = {1: (7,), 2: (5, 6), 3: (4, 3, 4)}


def locally_connected_case(rng, rank, data_format, kernel_size=2, strides=1, padding="valid", bias=True,
                           integers=False):
    kernel_size = ref.as_tuple(kernel_size, rank)
    strides_t = ref.as_tuple(strides, rank)
    spatial = LC_SPATIAL[rank]
    out = [ref.locally_connected_geometry(L, k, s, padding)[0] for L, k, s in zip(spatial, kernel_size, strides_t)]
    x = make_input(rng, spatial, C, data_format, integers)
    w = random_array(rng, (int(np.prod(out)), int(np.prod(kernel_size)) * C, F), integers=integers)
    b = random_array(rng, (*out, F), integers=integers) if bias else None
    return ops.locally_connected_core, ref.locally_connected, [x, w, b], dict(
        kernel_size=kernel_size, strides=strides, padding=padding, data_format=data_format)


UPSAMPLE_SPATIAL = {1: (5,), 2: (3, 4), 3: (2, 3, 2)}


def upsample_case(rng, rank, data_format, size=2, interpolation="nearest", integers=False):
    x = make_input(rng, UPSAMPLE_SPATIAL[rank], 3, data_format, integers)
    return ops.upsampling_core, ref.upsample, [x], dict(size=ref.as_tuple(size, rank), interpolation=interpolation,
                                                        data_format=data_format)


# --------------------------------------------------------------------------------------------
# float64 grids
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("strides, dilation", STRIDE_DILATION)
@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("data_format", DATA_FORMATS)
@pytest.mark.parametrize("rank, kernel_size", rank_kernel_grid())
def test_conv(backend_name, rng, rank, kernel_size, data_format, padding, strides, dilation, groups):
    op, reference_fn, arrays, kwargs = conv_case(rng, rank, data_format, kernel_size, strides, dilation, padding,
                                                 groups)
    run_case(op, reference_fn, arrays, **kwargs)


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("strides, dilation", STRIDE_DILATION)
@pytest.mark.parametrize("padding", ["valid", "same", "causal"])
@pytest.mark.parametrize("data_format", DATA_FORMATS)
@pytest.mark.parametrize("kernel_size", [(3,), (4,), (1,)])
def test_conv_core_1d_with_bias_and_causal(backend_name, rng, kernel_size, data_format, padding, strides, dilation,
                                           groups):
    op, reference_fn, arrays, kwargs = conv_case(rng, 1, data_format, kernel_size, strides, dilation, padding, groups,
                                                 bias=True)
    run_case(op, reference_fn, arrays, **kwargs)


@pytest.mark.parametrize("rank", [2, 3])
@pytest.mark.parametrize("data_format", DATA_FORMATS)
def test_conv_core_bias(backend_name, rng, rank, data_format):
    op, reference_fn, arrays, kwargs = conv_case(rng, rank, data_format, strides=2, padding="same", groups=2,
                                                 bias=True)
    run_case(op, reference_fn, arrays, **kwargs)


def transpose_grid():
    cases = []
    for rank in (1, 2, 3):
        for kernel_size in TRANSPOSE_KERNELS[rank]:
            for strides, dilation in [(1, 1), (2, 1), (3, 1), (1, 2), (2, 2)]:
                for output_padding in sorted({None, 0, strides - 1}, key=str):
                    cases.append((rank, kernel_size, strides, dilation, output_padding))
    return cases


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("data_format", DATA_FORMATS)
@pytest.mark.parametrize("rank, kernel_size, strides, dilation, output_padding", transpose_grid())
def test_conv_transpose(backend_name, rng, rank, kernel_size, data_format, padding, strides, dilation,
                        output_padding):
    op, reference_fn, arrays, kwargs = conv_transpose_case(rng, rank, data_format, kernel_size, strides, dilation,
                                                           padding, output_padding)
    run_case(op, reference_fn, arrays, **kwargs)


@pytest.mark.parametrize("output_padding", [None, 1])
@pytest.mark.parametrize("strides, dilation", [(1, 1), (2, 1), (1, 2)])
@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("data_format", DATA_FORMATS)
@pytest.mark.parametrize("rank", [1, 2])
def test_conv_transpose_core_groups_and_bias(backend_name, rng, rank, data_format, padding, strides, dilation,
                                             output_padding):
    if output_padding is not None and output_padding >= strides:
        output_padding = 0
    op, reference_fn, arrays, kwargs = conv_transpose_case(rng, rank, data_format, None, strides, dilation, padding,
                                                           output_padding, groups=2, bias=True)
    run_case(op, reference_fn, arrays, **kwargs)


@pytest.mark.parametrize("data_format", DATA_FORMATS)
def test_conv_transpose_zero_length_output(backend_name, rng, data_format):
    # 'same', k_eff even, output_padding 0, I = 1: O = (1-1)*1 + 0 + 0 = 0 (spec 1.5). Since
    # issue 8 one rule for every windowed op: an empty output is refused, as conv and pooling do.
    x = make_input(rng, (1,), C, data_format)
    w = random_array(rng, (2, F, C))
    assert ref.conv_transpose(x, w, strides=1, padding="same", output_padding=0, data_format=data_format).size == 0
    with pytest.raises(ValueError, match="Computed output size would be zero or negative"):
        ops.conv_transpose(x, w, 1, "same", 0, data_format)


@pytest.mark.parametrize("dm", [1, 2])
@pytest.mark.parametrize("strides, dilation", STRIDE_DILATION)
@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("data_format", DATA_FORMATS)
@pytest.mark.parametrize("rank, kernel_size", rank_kernel_grid())
def test_depthwise_conv(backend_name, rng, rank, kernel_size, data_format, padding, strides, dilation, dm):
    op, reference_fn, arrays, kwargs = depthwise_case(rng, rank, data_format, kernel_size, strides, dilation,
                                                      padding, dm)
    run_case(op, reference_fn, arrays, **kwargs)


@pytest.mark.parametrize("data_format", DATA_FORMATS)
@pytest.mark.parametrize("rank, padding", RANK_PADDINGS)
def test_depthwise_conv_core_bias(backend_name, rng, rank, data_format, padding):
    op, reference_fn, arrays, kwargs = depthwise_case(rng, rank, data_format, strides=2, padding=padding, dm=3,
                                                      bias=True)
    run_case(op, reference_fn, arrays, **kwargs)


@pytest.mark.parametrize("dm", [1, 2])
@pytest.mark.parametrize("strides, dilation", STRIDE_DILATION)
@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("data_format", DATA_FORMATS)
@pytest.mark.parametrize("rank, kernel_size", [(r, k) for r, k in rank_kernel_grid() if r < 3] + [(3, (2, 3, 2))])
def test_separable_conv(backend_name, rng, rank, kernel_size, data_format, padding, strides, dilation, dm):
    op, reference_fn, arrays, kwargs = separable_case(rng, rank, data_format, kernel_size, strides, dilation,
                                                      padding, dm)
    run_case(op, reference_fn, arrays, **kwargs)


@pytest.mark.parametrize("data_format", DATA_FORMATS)
@pytest.mark.parametrize("rank, padding", RANK_PADDINGS)
def test_separable_conv_core_bias(backend_name, rng, rank, data_format, padding):
    op, reference_fn, arrays, kwargs = separable_case(rng, rank, data_format, strides=2, dilation=1, padding=padding,
                                                      bias=True)
    run_case(op, reference_fn, arrays, **kwargs)


@pytest.mark.parametrize("pool_size, strides", [(2, None), (3, 1), (3, 2), (2, 3), (1, 1)])
@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("mode", ["max", "average"])
@pytest.mark.parametrize("data_format", DATA_FORMATS)
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_pool(backend_name, rng, rank, data_format, mode, padding, pool_size, strides):
    op, reference_fn, arrays, kwargs = pool_case(rng, rank, data_format, mode, pool_size, strides, padding)
    run_case(op, reference_fn, arrays, **kwargs)


@pytest.mark.parametrize("data_format", DATA_FORMATS)
def test_pool_anisotropic(backend_name, rng, data_format):
    for mode in ("max", "average"):
        op, reference_fn, arrays, kwargs = pool_case(rng, 2, data_format, mode, (3, 2), (1, 3), "same")
        run_case(op, reference_fn, arrays, **kwargs)


@pytest.mark.parametrize("strides", [1, 2])
@pytest.mark.parametrize("kernel_size", [2, 3])
@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("data_format", DATA_FORMATS)
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_locally_connected(backend_name, rng, rank, data_format, padding, kernel_size, strides):
    op, reference_fn, arrays, kwargs = locally_connected_case(rng, rank, data_format, kernel_size, strides, padding,
                                                              bias=(strides == 1))
    run_case(op, reference_fn, arrays, **kwargs)


def upsample_grid():
    cases = []
    for rank, interpolations in ((1, ["nearest"]), (2, ["nearest", "bilinear"]), (3, ["nearest", "trilinear"])):
        for interpolation in interpolations:
            for size in [2, 3, (1, 2, 3)[:rank] if rank > 1 else 1, (3, 1, 2)[:rank] if rank > 1 else 4]:
                cases.append((rank, interpolation, size))
    return cases


@pytest.mark.parametrize("data_format", DATA_FORMATS)
@pytest.mark.parametrize("rank, interpolation, size", upsample_grid())
def test_upsampling(backend_name, rng, rank, interpolation, size, data_format):
    op, reference_fn, arrays, kwargs = upsample_case(rng, rank, data_format, size, interpolation)
    run_case(op, reference_fn, arrays, **kwargs)


def test_bilinear_matches_the_spec_values(backend_name):
    # keras_spec 2.8, run on Keras: [1, 2] x2 -> [1, 1.25, 1.75, 2]; [1, 2, 3] x2 -> [1, 1.25, ..., 3]
    y = ops.upsampling_core(np.array([1.0, 2.0]).reshape(1, 1, 2, 1), (1, 2), "bilinear", "channels_last")
    np.testing.assert_allclose(gpuconv.to_numpy(y).ravel(), [1, 1.25, 1.75, 2], rtol=0, atol=1e-15)
    y = ops.upsampling_core(np.array([1.0, 2.0, 3.0]).reshape(1, 1, 3, 1), (2, 2), "bilinear", "channels_first")
    np.testing.assert_allclose(gpuconv.to_numpy(y)[0, 0, :, 0], [1, 1.25, 1.75, 2.25, 2.75, 3], rtol=0, atol=1e-15)


def test_average_pool_excludes_padding_spec_example(backend_name):
    # keras_spec 2.5: x = [1..5], pool 2, stride 1, same -> [1.5, 2.5, 3.5, 4.5, 5.0]
    y = ops.average_pool(np.arange(1.0, 6.0).reshape(1, 5, 1), 2, 1, "same", "channels_last")
    np.testing.assert_array_equal(gpuconv.to_numpy(y).ravel(), [1.5, 2.5, 3.5, 4.5, 5.0])


def test_defaults_follow_image_data_format(backend_name, rng):
    """data_format=None is the global image_data_format; padding strings are case-insensitive."""
    x = make_input(rng, (6, 5), C, CF)
    w = random_array(rng, (3, 3, C, F))
    previous = gpuconv.image_data_format()
    gpuconv.set_image_data_format(CF)
    try:
        y = ops.conv(x, w, padding="SAME")
    finally:
        gpuconv.set_image_data_format(previous)
    assert_close(y, ref.conv(x, w, padding="same", data_format=CF), "float64")


# --------------------------------------------------------------------------------------------
# Lower precisions against the float64 result, and exact small-integer checks
# --------------------------------------------------------------------------------------------
def standard_case(op_name, rng, rank, data_format, integers=False):
    """One representative geometry per op: 'same', stride 2 where the op has strides, bias on."""
    if op_name == "conv":
        return conv_case(rng, rank, data_format, KERNELS[rank][1], 2, 1, "same", 2, bias=True, integers=integers)
    if op_name == "conv_dilated":
        return conv_case(rng, rank, data_format, KERNELS[rank][0], 1, 2, "same", 1, integers=integers)
    if op_name == "conv_transpose":
        return conv_transpose_case(rng, rank, data_format, None, 2, 1, "same", None, groups=2, bias=True,
                                   integers=integers)
    if op_name == "depthwise_conv":
        return depthwise_case(rng, rank, data_format, None, 2, 1, "same", 2, bias=True, integers=integers)
    if op_name == "separable_conv":
        return separable_case(rng, rank, data_format, None, 1, 2, "same", 2, bias=True, integers=integers)
    if op_name == "max_pool":
        return pool_case(rng, rank, data_format, "max", 3, 2, "same", integers=integers)
    if op_name == "average_pool":
        return pool_case(rng, rank, data_format, "average", 3, 2, "same", integers=integers)
    if op_name == "locally_connected":
        return locally_connected_case(rng, rank, data_format, 2, 1, "same", integers=integers)
    if op_name == "upsampling":
        return upsample_case(rng, rank, data_format, 2, {1: "nearest", 2: "bilinear", 3: "trilinear"}[rank],
                             integers=integers)
    raise AssertionError(op_name)


OP_NAMES = ["conv", "conv_dilated", "conv_transpose", "depthwise_conv", "separable_conv", "max_pool",
            "average_pool", "locally_connected", "upsampling"]
# Ops whose results on small integers are integers (so exact in float64 and float32).
EXACT_OPS = ["conv", "conv_dilated", "conv_transpose", "depthwise_conv", "separable_conv", "max_pool",
             "locally_connected"]


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("data_format", DATA_FORMATS)
@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("op_name", OP_NAMES)
def test_lower_precision(backend_name, rng, op_name, rank, data_format, dtype):
    op, reference_fn, arrays, kwargs = standard_case(op_name, rng, rank, data_format)
    run_case(op, reference_fn, arrays, dtype=dtype, **kwargs)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("data_format", DATA_FORMATS)
@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("op_name", EXACT_OPS)
def test_small_integers_exact(backend_name, rng, op_name, rank, data_format, dtype):
    op, reference_fn, arrays, kwargs = standard_case(op_name, rng, rank, data_format, integers=True)
    run_case(op, reference_fn, arrays, dtype=dtype, integers=True, **kwargs)


@pytest.mark.parametrize("op_name", ["conv", "conv_transpose", "depthwise_conv", "max_pool"])
def test_float16_small_integers_exact(backend_name, rng, op_name):
    """|sums| stay far below 2048, so float16 (with float32 accumulation) is exact too."""
    op, reference_fn, arrays, kwargs = standard_case(op_name, rng, 1, CL, integers=True)
    run_case(op, reference_fn, arrays, dtype="float16", integers=True, **kwargs)


def test_grid_sizes_are_what_we_think():
    """Guards against a grid silently shrinking (e.g. a refactor dropping a rank)."""
    assert len(rank_kernel_grid()) == 6
    assert len(transpose_grid()) == 4 * (2 + 3 + 3 + 2 + 3)
    assert len(upsample_grid()) == 4 * 5


# --------------------------------------------------------------------------------------------
# The NumPy engine cuts its scratch buffers into batch/row chunks (gpuconv/cpu/memory.py);
# a tiny budget forces one row of one item per chunk, a middling one mixes both cuts.
# --------------------------------------------------------------------------------------------
@pytest.fixture
def numpy_backend(restore_backend):
    gpuconv.set_backend("numpy")


@pytest.mark.parametrize("budget", [1, 300, 5000])
@pytest.mark.parametrize("data_format", DATA_FORMATS)
@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("op_name", OP_NAMES)
def test_numpy_engine_chunked_scratch(numpy_backend, monkeypatch, rng, op_name, rank, data_format, budget):
    from gpuconv.cpu import memory

    monkeypatch.setattr(memory, "MEMORY_BUDGET_BYTES", budget)
    op, reference_fn, arrays, kwargs = standard_case(op_name, rng, rank, data_format)
    run_case(op, reference_fn, arrays, **kwargs)
    if op_name in EXACT_OPS:
        op, reference_fn, arrays, kwargs = standard_case(op_name, rng, rank, data_format, integers=True)
        run_case(op, reference_fn, arrays, dtype="float32", integers=True, **kwargs)


# --------------------------------------------------------------------------------------------
# Activations after the bias: fused by the engine (relu, sigmoid, tanh) or applied after (elu)
# --------------------------------------------------------------------------------------------
CORE_OPS = ["conv", "conv_transpose", "depthwise_conv", "separable_conv", "locally_connected"]


def with_activation(reference_fn):
    def run(*arrays, activation=None, **kwargs):
        return ref.activate(reference_fn(*arrays, **kwargs), activation)
    return run


@pytest.mark.parametrize("activation", [None, "linear", "relu", "sigmoid", "tanh", "elu"])
@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
@pytest.mark.parametrize("op_name", CORE_OPS)
def test_core_activation(backend_name, rng, op_name, dtype, activation):
    op, reference_fn, arrays, kwargs = standard_case(op_name, rng, 2, CF)
    run_case(op, with_activation(reference_fn), arrays, dtype=dtype, activation=activation, **kwargs)


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh", "elu"])
@pytest.mark.parametrize("op_name", CORE_OPS)
def test_activation_keeps_nan_and_inf_where_the_maths_puts_them(backend_name, rng, op_name, activation):
    op, reference_fn, arrays, kwargs = standard_case(op_name, rng, 2, CL)
    x = arrays[0].copy()
    x[0, 1, 2, 0] = np.nan
    x[1, 0, 1, 1] = np.inf
    arrays = [x] + arrays[1:]
    run_case(op, with_activation(reference_fn), arrays, activation=activation, **kwargs)
