"""The fused activation's derivative in the CUDA backward kernels (``conv_backward_fused`` and
``conv_transpose_backward_fused`` in ``gpuconv/cuda/conv_backward.py``): a convolution, depthwise,
separable or transposed convolution with a fused relu or relu6 is differentiated by kernels that
read ``dy * act'(y)`` as they load ``dy`` (the depthwise input gradient, the tile engine's input
loader for the dense input gradients, both weight gradients, the bias reduction), with no
separate elementwise pass.

Checked against the NumPy engine's backward of the same problem (which masks ``dy`` first), bitwise
against the same CUDA kernels fed a pre-masked ``dy`` (the operation order is unchanged), and
through ``gpuconv.GradientTape`` on the CUDA engine against the NumPy backend. "No separate pass"
is asserted by making the host-side derivative raise while the fused backward runs.
"""
import engine_calls as calls
import numpy as np
import pytest

import gpuconv
from conftest import CUDA_MARKS, GPU_BACKEND, assert_close, gpu_xp
from gpuconv import activations
from gpuconv import geometry as g
from gpuconv import gradients, ops
from gpuconv.cpu import engine as cpu
from gpuconv.cuda import conv_backward as cb
from gpuconv.cuda import depthwise_backward as db
from gpuconv.cuda import depthwise_backward_input as dbi
from gpuconv.cuda import memory_bound as mb

pytestmark = CUDA_MARKS


@pytest.fixture
def requested(monkeypatch):
    """The name expressions fetched from module_cache since the test began."""
    from gpuconv.cuda import module_cache

    names = []
    real = module_cache.get_function
    monkeypatch.setattr(module_cache, "get_function", lambda f, n: names.append(n) or real(f, n))
    return names


def _refuse_host_derivatives(monkeypatch):
    def refuse(y, dy):
        raise AssertionError("the derivative was applied as a separate pass")

    for name in list(activations.OUTPUT_DERIVATIVES):
        monkeypatch.setitem(activations.OUTPUT_DERIVATIVES, name, refuse)


@pytest.fixture
def no_host_derivative(monkeypatch):
    """The host-side derivatives raise: a fused backward that still masks dy on the host fails."""
    _refuse_host_derivatives(monkeypatch)


def _outputs(rng, shape, activation, dtype):
    """A forward output of ``activation``: values across the derivative's kinks, with exact 0s (and
    6s for relu6), where Keras' derivative is 0."""
    y = rng.uniform(-2.0, 8.0, shape)
    y = np.maximum(y, 0.0) if activation == "relu" else np.clip(y, 0.0, 6.0)
    flat = y.reshape(-1)
    flat[::7] = 0.0
    if activation == "relu6":
        flat[3::7] = 6.0
    return y.astype(dtype)


def _mask(activation, y, dy):
    """dy * act'(y), written out here (Keras: relu'(0) = 0, relu6' = 0 at 0 and 6)."""
    keep = (y > 0) if activation == "relu" else (y > 0) & (y < 6)
    return dy * keep.astype(dy.dtype)


def _geometry(spatial, k, s, d, padding):
    return dict(strides=s, padding=g.conv_padding(spatial, k, s, d, padding), dilation=d)


def _depthwise_case(rng, spatial, k, s, d, padding, channels, dm, cl, dtype, activation):
    shape = (2, *spatial, channels) if cl else (2, channels, *spatial)
    x = rng.standard_normal(shape).astype(dtype)
    kernel = rng.standard_normal((*k, channels, dm)).astype(dtype)
    bias = np.zeros(channels * dm, dtype)
    problem = calls.depthwise_problem(x, kernel, bias, channels_last=cl, activation=activation,
                                      **_geometry(spatial, k, s, d, padding))
    return problem, x, kernel, bias


def _dense_case(rng, spatial, k, s, d, padding, channels, filters, groups, cl, dtype, activation):
    shape = (2, *spatial, channels) if cl else (2, channels, *spatial)
    x = rng.standard_normal(shape).astype(dtype)
    kernel = rng.standard_normal((*k, channels // groups, filters)).astype(dtype)
    bias = np.zeros(filters, dtype)
    problem = calls.conv_problem(x, kernel, bias, groups=groups, channels_last=cl, activation=activation,
                                 **_geometry(spatial, k, s, d, padding))
    return problem, x, kernel, bias


def _gradients(problem, x, kernel, bias, rng, need=(True, True, True)):
    """(CUDA fused gradients, NumPy engine's gradients in float64, dy, y)."""
    dtype = np.dtype(problem.dtype)
    dy = rng.standard_normal(problem.output_shape).astype(dtype)
    y = _outputs(rng, problem.output_shape, problem.activation, dtype)
    xp = gpu_xp()
    from gpuconv.cuda import engine

    got = engine.conv_backward_fused(problem, xp.asarray(x), xp.asarray(kernel), xp.asarray(dy), xp.asarray(y), *need)
    f64 = [a.astype(np.float64) for a in (x, kernel, bias, _mask(problem.activation, y, dy))]
    ref = gradients.conv_with_bias(cpu, problem, *f64)  # the NumPy engine on the masked dy
    return [None if a is None else gpuconv.to_numpy(a) for a in got], ref, dy, y


def _assert_matches(got, ref, dtype, need=(True, True, True)):
    for which, (a, b, needed) in enumerate(zip(got, ref, need)):
        if not needed:
            assert a is None, which
            continue
        assert a.shape == b.shape and a.dtype == np.dtype(dtype), which
        assert_close(a, b, dtype)


DEPTHWISE_CASES = [  # (spatial, kernel, strides, dilation, padding)
    ((11,), (3,), (2,), (1,), "causal"),
    ((7, 6), (3, 3), (2, 1), (1, 2), "same"),
    ((4, 5, 4), (2, 3, 2), (1, 2, 1), (2, 1, 1), "valid"),
]


@pytest.mark.parametrize("activation", ["relu", "relu6"])
@pytest.mark.parametrize("channels,dm", [(8, 1), (3, 2)], ids=["vector-dm1", "scalar-dm2"])
@pytest.mark.parametrize("channels_last", [True, False], ids=["cl", "cf"])
@pytest.mark.parametrize("case", DEPTHWISE_CASES, ids=["r1", "r2", "r3"])
def test_depthwise_fused_backward_matches_numpy_float32(case, channels_last, channels, dm, activation, rng,
                                                        requested, no_host_derivative):
    problem, x, kernel, bias = _depthwise_case(rng, *case, channels, dm, channels_last, np.float32, activation)
    got, ref, _, _ = _gradients(problem, x, kernel, bias, rng)
    _assert_matches(got, ref, np.float32)
    # Only the fused kernels ran: depthwise input gradient, depthwise weight gradient, bias reduction.
    dense = gradients._as_dense(problem)
    vec_in = mb.vector_width(np.float32, channels, channels_last)
    vec_out = mb.vector_width(np.float32, channels * dm, channels_last)
    assert requested == [dbi.name_expression(np.float32, "int32", vec_in),
                         db.name_expression(np.float32, "int32", vec_out), cb.sum_name(np.float32, "int32"),
                         db.bias_name_expression(np.float32, "int32", vec_out), cb.sum_name(np.float32, "int32")]
    assert dense.kind == "conv"


@pytest.mark.parametrize("activation", ["relu", "relu6"])
@pytest.mark.parametrize("channels_last", [True, False], ids=["cl", "cf"])
def test_depthwise_fused_backward_matches_numpy_float16(channels_last, activation, rng, no_host_derivative):
    problem, x, kernel, bias = _depthwise_case(rng, *DEPTHWISE_CASES[1], 8, 2, channels_last, np.float16, activation)
    got, ref, _, _ = _gradients(problem, x, kernel, bias, rng)
    _assert_matches(got, ref, np.float16)


@pytest.mark.parametrize("activation", ["relu", "relu6"])
@pytest.mark.parametrize("channels_last", [True, False], ids=["cl", "cf"])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_dense_fused_weight_and_bias_gradients_match_numpy(dtype, channels_last, activation, rng, requested,
                                                           no_host_derivative):
    # A first layer: no input gradient, so every kernel that reads dy applies the derivative.
    problem, x, kernel, bias = _dense_case(rng, (6, 5), (3, 2), (1, 2), (2, 1), "same", 4, 6, 2, channels_last,
                                           dtype, activation)
    need = (False, True, True)
    got, ref, _, _ = _gradients(problem, x, kernel, bias, rng, need)
    _assert_matches(got, ref, dtype, need)
    assert requested[0].startswith("gc::conv_wgrad<") and requested[2].startswith("gc::bias_grad<")


DENSE_CASES = [  # (spatial, kernel, strides, dilation, padding, channels, filters, groups)
    ((7,), (3,), (2,), (1,), "valid", 4, 5, 1),
    ((6, 5), (3, 2), (1, 2), (2, 1), "same", 4, 6, 2),
    ((4, 5, 3), (2, 3, 1), (1, 1, 2), (1, 1, 1), "same", 3, 4, 1),
]


@pytest.mark.parametrize("activation", ["relu", "relu6"])
@pytest.mark.parametrize("channels_last", [True, False], ids=["cl", "cf"])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("case", DENSE_CASES, ids=["r1", "r2-grouped", "r3"])
def test_dense_input_gradient_applies_the_derivative_in_the_transposed_conv_loader(case, dtype, channels_last,
                                                                                   activation, rng, requested,
                                                                                   no_host_derivative):
    problem, x, kernel, bias = _dense_case(rng, *case, channels_last, dtype, activation)
    got, ref, _, _ = _gradients(problem, x, kernel, bias, rng)
    _assert_matches(got, ref, dtype)
    assert requested[0].startswith("gc::conv_transpose<") and requested[1].startswith("gc::conv_wgrad<")


def _transpose_case(rng, spatial, k, s, d, channels, filters, groups, cl, dtype, activation):
    shape = (2, *spatial, channels) if cl else (2, channels, *spatial)
    x = rng.standard_normal(shape).astype(dtype)
    kernel = rng.standard_normal((*k, filters // groups, channels)).astype(dtype)
    bias = np.zeros(filters, dtype)
    out = tuple((i - 1) * st + (kk - 1) * dd + 1 - 1 for i, kk, st, dd in zip(spatial, k, s, d))  # crop 1 in front
    problem = calls.conv_transpose_problem(x, kernel, bias, strides=s, dilation=d, groups=groups, out_spatial=out,
                                           crop=(1,) * len(spatial), channels_last=cl, activation=activation)
    return problem, x, kernel, bias


TRANSPOSE_CASES = [  # (spatial, kernel, strides, dilation, channels, filters, groups)
    ((5,), (3,), (2,), (1,), 4, 6, 1),
    ((4, 3), (3, 2), (2, 1), (1, 2), 4, 6, 2),
    ((3, 3, 2), (2, 2, 3), (1, 2, 1), (1, 1, 1), 3, 2, 1),
]


@pytest.mark.parametrize("activation", ["relu", "relu6"])
@pytest.mark.parametrize("channels_last", [True, False], ids=["cl", "cf"])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("case", TRANSPOSE_CASES, ids=["r1", "r2-grouped", "r3"])
def test_transposed_conv_fused_backward_matches_numpy(case, dtype, channels_last, activation, rng, requested,
                                                      no_host_derivative):
    """Its input gradient is the conv engine's convolution of dy (the FFMA loader applies the
    derivative; float16 channels_last would otherwise take the tensor-core row), its kernel
    gradient conv_wgrad with the derivative on the x operand, its bias the reduction."""
    from gpuconv.cuda import engine

    problem, x, kernel, bias = _transpose_case(rng, *case, channels_last, dtype, activation)
    dy = rng.standard_normal(problem.output_shape).astype(dtype)
    y = _outputs(rng, problem.output_shape, activation, dtype)
    xp = gpu_xp()
    got = engine.conv_transpose_backward_fused(problem, *(xp.asarray(a) for a in (x, kernel, dy, y)), True, True, True)
    f64 = [a.astype(np.float64) for a in (x, kernel, bias, _mask(activation, y, dy))]
    ref = gradients.conv_transpose_with_bias(cpu, problem, *f64)
    _assert_matches([_host(a) for a in got], ref, dtype)
    assert [n.split("<")[0] for n in requested] == ["gc::conv_direct", "gc::conv_wgrad", "gc::wgrad_sum",
                                                     "gc::bias_grad", "gc::wgrad_sum"]


def _host(a):
    return gpuconv.to_numpy(a)


@pytest.mark.parametrize("activation", ["relu", "relu6"])
@pytest.mark.parametrize("channels_last", [True, False], ids=["cl", "cf"])
def test_fused_kernels_are_bitwise_the_kernels_on_a_premasked_dy(channels_last, activation, rng):
    """dy * act'(y) in the loaders rounds as np.multiply(dy, mask) does and sums in the same order."""
    xp = gpu_xp()
    problem, x, kernel, _ = _depthwise_case(rng, *DEPTHWISE_CASES[1], 8, 1, channels_last, np.float32, activation)
    dense = gradients._as_dense(problem)
    dy = rng.standard_normal(problem.output_shape).astype(np.float32)
    y = _outputs(rng, problem.output_shape, activation, np.float32)
    masked = _mask(activation, y, dy)
    X, K, DY, Y, M = (xp.asarray(a) for a in (x, kernel, dy, y, masked))
    pairs = [
        (dbi.depthwise_backward_input(dense, DY, K, activation, Y), dbi.depthwise_backward_input(dense, M, K)),
        (db.depthwise_backward_weights(dense, X, DY, activation, Y), db.depthwise_backward_weights(dense, X, M)),
        (db.bias_backward(dense, DY, activation, Y), db.bias_backward(dense, M)),
    ]
    dproblem, dx_, dk, _ = _dense_case(rng, (6, 5), (3, 3), (1, 1), (1, 1), "same", 4, 6, 1, channels_last,
                                       np.float32, activation)
    ddy = rng.standard_normal(dproblem.output_shape).astype(np.float32)
    dyv = _outputs(rng, dproblem.output_shape, activation, np.float32)
    dmasked = _mask(activation, dyv, ddy)
    DX = xp.asarray(dx_)
    pairs.append((cb.weights_gradient(dproblem, DX, xp.asarray(ddy), activation, xp.asarray(dyv)),
                  cb.conv_backward_weights(dproblem, DX, xp.asarray(dmasked))))
    # The dense input gradient: the transposed-conv loader's derivative against a premasked dy.
    from gpuconv.cuda.conv_transpose import conv_transpose, conv_transpose_with_input_derivative

    adjoint, dk_ = dproblem.adjoint(), xp.asarray(dk)
    code = cb.derivative_arguments(activation, xp.asarray(dyv), xp.asarray(ddy))
    pairs.append((conv_transpose_with_input_derivative(adjoint, xp.asarray(ddy), dk_, None, code),
                  conv_transpose(adjoint, xp.asarray(dmasked), dk_, None)))
    # A transposed convolution's kernel gradient: conv_wgrad with the derivative on its x operand.
    tproblem, tx, _, _ = _transpose_case(rng, (4, 3), (3, 2), (2, 1), (1, 2), 4, 6, 2, channels_last, np.float32,
                                         activation)
    tdy = rng.standard_normal(tproblem.output_shape).astype(np.float32)
    ty = _outputs(rng, tproblem.output_shape, activation, np.float32)
    forward = tproblem.adjoint()
    pairs.append((cb.weights_gradient(forward, xp.asarray(tdy), xp.asarray(tx), x_activation=activation,
                                      x_output=xp.asarray(ty)),
                  cb.conv_backward_weights(forward, xp.asarray(_mask(activation, ty, tdy)), xp.asarray(tx))))
    for which, (fused, premasked) in enumerate(pairs):
        assert _host(fused).tobytes() == _host(premasked).tobytes(), which


def test_repeated_fused_runs_are_bitwise_identical(rng):
    problem, x, kernel, bias = _depthwise_case(rng, *DEPTHWISE_CASES[1], 8, 2, True, np.float16, "relu")
    first, _, dy, y = _gradients(problem, x, kernel, bias, rng)
    xp = gpu_xp()
    from gpuconv.cuda import engine

    second = engine.conv_backward_fused(problem, xp.asarray(x), xp.asarray(kernel), xp.asarray(dy), xp.asarray(y))
    second = [_host(a) for a in second[:2]] + [first[2]]
    for a, b in zip(first, second):
        assert a.tobytes() == b.tobytes()


def _tape_gradients(fn, arrays):
    with gpuconv.GradientTape() as tape:
        for a in arrays:
            tape.watch(a)
        y = fn(*arrays)
    dy = np.random.default_rng(7).standard_normal(y.shape).astype(np.float32)
    xp = gpuconv.arrays.array_module(y)
    return [_host(a) for a in tape.gradient(y, list(arrays), output_gradients=xp.asarray(dy))]


def _layer_case(kind, rng):
    """(op function of (x, *weights), host arrays, kernel name prefixes that must have run)."""
    x = (rng.standard_normal((2, 6, 5, 4)) * 2).astype(np.float32)
    if kind == "depthwise":
        weights = (rng.standard_normal((3, 3, 4, 2)), rng.standard_normal(8))
        return ops.depthwise_conv_core, dict(strides=(1, 2), padding="same"), x, weights, ["gc::depthwise_dgrad<"]
    if kind == "conv":
        weights = (rng.standard_normal((3, 3, 4, 3)), rng.standard_normal(3))
        return ops.conv_core, dict(strides=(1, 2), padding="same"), x, weights, ["gc::conv_transpose<"]
    if kind == "separable":
        weights = (rng.standard_normal((3, 3, 4, 2)), rng.standard_normal((1, 1, 8, 5)), rng.standard_normal(5))
        return ops.separable_conv_core, dict(strides=1, padding="same"), x, weights, ["gc::conv_transpose<"]
    weights = (rng.standard_normal((3, 3, 3, 4)), rng.standard_normal(3))
    return ops.conv_transpose_core, dict(strides=2, padding="same"), x, weights, ["gc::conv_direct<", "gc::conv_wgrad<"]


@pytest.mark.parametrize("activation", ["relu", "relu6"])
@pytest.mark.parametrize("kind", ["depthwise", "conv", "separable", "transpose"])
def test_tape_on_the_cuda_engine_matches_the_numpy_backend(kind, activation, rng, restore_backend, requested):
    """Every layer kind with a fused relu / relu6, through GradientTape: on CUDA no host pass runs
    (the host derivatives raise), and the gradients of the input and every weight match the NumPy
    backend's (which masks dy on the host)."""
    core, geometry, x, weights, must_run = _layer_case(kind, rng)
    sources = (x, *(w.astype(np.float32) for w in weights))

    def fn(*arrays):
        return core(*arrays, activation=activation, **geometry)

    gpuconv.set_backend(GPU_BACKEND)
    xp = gpu_xp()
    with pytest.MonkeyPatch.context() as mp:
        _refuse_host_derivatives(mp)
        got = _tape_gradients(fn, [xp.asarray(a) for a in sources])
    assert any(n.startswith("gc::bias_grad<") for n in requested)
    for prefix in must_run:
        assert any(n.startswith(prefix) for n in requested), (prefix, requested)
    gpuconv.set_backend("numpy")
    ref = _tape_gradients(fn, list(sources))
    for a, b in zip(got, ref):
        assert_close(a, b, np.float32)


def test_refuses_an_activation_without_an_output_derivative():
    dy = np.zeros((1, 3, 2), np.float32)
    with pytest.raises(ValueError, match="activation='tanh'"):
        cb.derivative_arguments("tanh", dy, dy)
    with pytest.raises(ValueError, match="argument `output`"):
        cb.derivative_arguments("relu", np.zeros((1, 3, 3), np.float32), dy)
    assert cb.derivative_arguments(None, None, dy) == (0, dy)
