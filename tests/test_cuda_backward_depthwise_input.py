"""The CUDA engine's depthwise input gradient (``gpuconv/cuda/depthwise_backward_input.py``,
``kernels/depthwise_backward_input.cu``): the gather kernel every depthwise input gradient takes on
CUDA instead of the transposed-convolution engine's one-channel groups.

Against an independent float64 loop and the NumPy engine's route (the transposed convolution of
the adjoint problem), over strides larger than the window, dilation, causal/same/valid padding,
ranks 1-3, both layouts, vector and scalar channel counts and depth multipliers 1-3. Every GPU test
also asserts, by a spy on ``module_cache.get_function``, which instantiation ran.
"""
import itertools

import engine_calls as calls
import numpy as np
import pytest

import gpuconv
from conftest import CUDA_MARKS, GPU_BACKEND, assert_close, gpu_xp
from gpuconv import geometry as g
from gpuconv import gradients, ops
from gpuconv.cpu import engine as cpu
from gpuconv.cuda import depthwise_backward_input as dbi
from gpuconv.cuda import indexing
from gpuconv.cuda import memory_bound as mb


@pytest.fixture
def requested(monkeypatch):
    """The name expressions fetched from module_cache since the test began."""
    from gpuconv.cuda import module_cache

    names = []
    real = module_cache.get_function
    monkeypatch.setattr(module_cache, "get_function", lambda f, n: names.append(n) or real(f, n))
    return names


def _gpu(test):
    for mark in CUDA_MARKS:
        test = mark(test)
    return test


def loop_reference(problem, dy, kernel):
    """float64 dx by scattering every dy cell through every tap, with explicit loops."""
    dy = np.asarray(dy, np.float64)
    kernel = np.asarray(kernel, np.float64).reshape(*problem.kernel_size, problem.in_channels, -1)
    if not problem.channels_last:
        dy = np.moveaxis(dy, 1, -1)
    n, c, dm = problem.batch, problem.in_channels, kernel.shape[-1]
    dx = np.zeros((n, *problem.in_spatial, c))
    for o in itertools.product(*(range(e) for e in problem.out_spatial)):
        g_o = dy[(slice(None), *o)].reshape(n, c, dm)
        for t in itertools.product(*(range(k) for k in problem.kernel_size)):
            i = [oi * s + ti * d - p for oi, s, ti, d, p in zip(o, problem.strides, t, problem.dilation,
                                                                  problem.pad_before)]
            if all(0 <= v < e for v, e in zip(i, problem.in_spatial)):
                dx[(slice(None), *i)] += np.einsum("ncm,cm->nc", g_o, kernel[t])
    return dx if problem.channels_last else np.moveaxis(dx, -1, 1)


def _problem(spatial, k, s, d, padding, channels, dm, channels_last, dtype, batch=2):
    pads = g.conv_padding(spatial, k, s, d, padding)
    x = np.zeros((batch, *spatial, channels) if channels_last else (batch, channels, *spatial), dtype)
    kernel = np.zeros((*k, channels, dm), dtype)
    return calls.depthwise_problem(x, kernel, None, strides=s, padding=pads, dilation=d, channels_last=channels_last)


def _inputs(problem, rng):
    dtype = np.dtype(problem.dtype)
    kernel_shape = (*problem.kernel_size, problem.in_channels, problem.depth_multiplier)
    return (rng.standard_normal(problem.output_shape).astype(dtype), rng.standard_normal(kernel_shape).astype(dtype))


def _launch(problem, dy, kernel):
    xp = gpu_xp()
    return gpuconv.to_numpy(dbi.depthwise_backward_input(problem, xp.asarray(dy), xp.asarray(kernel)))


def _numpy_engine(problem, dy, kernel):
    dense = gradients._as_dense(problem)
    return cpu.conv_transpose(dense.adjoint(), dy.astype(np.float64),
                              kernel.astype(np.float64).reshape(dense.kernel_shape), None)


def _check(problem, rng, requested, width="int32"):
    dy, kernel = _inputs(problem, rng)
    got = _launch(problem, dy, kernel)
    assert got.shape == problem.input_shape and got.dtype == np.dtype(problem.dtype)
    assert_close(got, loop_reference(problem, dy, kernel), problem.dtype)
    assert_close(got, _numpy_engine(problem, dy, kernel), problem.dtype)
    vec = mb.vector_width(problem.dtype, problem.in_channels, problem.channels_last)
    assert requested == [dbi.name_expression(problem.dtype, width, vec)]
    return got


# (spatial, kernel, strides, dilation, padding)
CASES = [
    ((11,), (3,), (1,), (1,), "causal"),
    ((12,), (2,), (3,), (1,), "valid"),         # stride > window: cells no window reads
    ((13,), (3,), (2,), (3,), "same"),
    ((7, 6), (3, 3), (2, 1), (1, 2), "same"),
    ((4, 5, 4), (2, 3, 2), (1, 2, 1), (2, 1, 1), "valid"),
]
_IDS = [f"r{len(c[0])}-{c[4]}-k{c[1]}-s{c[2]}-d{c[3]}" for c in CASES]


@_gpu
@pytest.mark.parametrize("channels,dm", [(8, 1), (8, 3), (3, 2)], ids=["vector", "vector-dm3", "scalar-dm2"])
@pytest.mark.parametrize("channels_last", [True, False], ids=["cl", "cf"])
@pytest.mark.parametrize("case", CASES, ids=_IDS)
def test_matches_references_float32(case, channels_last, channels, dm, rng, requested):
    _check(_problem(*case, channels, dm, channels_last, "float32"), rng, requested)


@_gpu
@pytest.mark.parametrize("dtype", ["float16", "float64"])
@pytest.mark.parametrize("channels_last", [True, False], ids=["cl", "cf"])
@pytest.mark.parametrize("dm", [1, 2])
def test_matches_references_other_dtypes(dm, channels_last, dtype, rng, requested):
    # 16 channels: a whole float16 vector (8) and a float64 one (2).
    _check(_problem(*CASES[3], 16, dm, channels_last, dtype), rng, requested)


@_gpu
@pytest.mark.parametrize("channels_last", [True, False], ids=["cl", "cf"])
def test_int64_indices(channels_last, rng, requested, monkeypatch):
    monkeypatch.setenv(indexing.FORCE_ENV, "int64")
    _check(_problem(*CASES[2], 8, 2, channels_last, "float32"), rng, requested, width="int64")


@_gpu
def test_repeated_runs_are_bitwise_identical(rng):
    problem = _problem(*CASES[3], 8, 2, True, "float16")
    dy, kernel = _inputs(problem, rng)
    assert _launch(problem, dy, kernel).tobytes() == _launch(problem, dy, kernel).tobytes()


@_gpu
def test_accepts_the_grouped_form_and_the_flat_kernel(rng, requested):
    problem = _problem(*CASES[3], 8, 2, True, "float32")
    dy, kernel = _inputs(problem, rng)
    dense = gradients._as_dense(problem)
    xp = gpu_xp()
    got = gpuconv.to_numpy(dbi.depthwise_backward_input(dense, xp.asarray(dy), xp.asarray(kernel.reshape(
        dense.kernel_shape))))
    assert got.tobytes() == _launch(problem, dy, kernel).tobytes()


@_gpu
@pytest.mark.parametrize("separable", [False, True], ids=["depthwise", "separable"])
def test_the_tape_routes_depthwise_input_gradients_here(separable, rng, restore_backend, requested):
    """Depthwise and separable input gradients through GradientTape on the CUDA engine take this
    kernel, not the transposed-convolution engine, and match the NumPy backend."""
    x = rng.standard_normal((2, 7, 6, 4)).astype(np.float32)
    dk = rng.standard_normal((3, 3, 4, 2)).astype(np.float32)
    pk = rng.standard_normal((1, 1, 8, 5)).astype(np.float32)

    def fn(x, dk, *pk):
        if separable:
            return ops.separable_conv_core(x, dk, *pk, strides=2, padding="same", dilation_rate=1)
        return ops.depthwise_conv_core(x, dk, strides=(1, 2), padding="same", dilation_rate=(2, 1))

    def grads(arrays):
        with gpuconv.GradientTape() as tape:
            for a in arrays:
                tape.watch(a)
            y = fn(*arrays)
        dy = np.random.default_rng(3).standard_normal(y.shape).astype(np.float32)
        xp = gpuconv.arrays.array_module(y)
        return [gpuconv.to_numpy(a) for a in tape.gradient(y, list(arrays), output_gradients=xp.asarray(dy))]

    sources = (x, dk, pk) if separable else (x, dk)
    gpuconv.set_backend(GPU_BACKEND)
    xp = gpu_xp()
    got = grads([xp.asarray(a) for a in sources])
    assert any(n.startswith("gc::depthwise_dgrad<float, int, 4>") for n in requested)
    # The transposed convolution runs only as the separable pointwise step's input gradient.
    assert sum(n.startswith("gc::conv_transpose<") for n in requested) == int(separable)
    gpuconv.set_backend("numpy")
    ref = grads(list(sources))
    assert len(got) == len(ref) == len(sources)
    for a, b in zip(got, ref):
        assert_close(a, b, np.float32)


@_gpu
def test_refuses_a_dense_problem_and_wrong_arrays():
    xp = gpu_xp()
    dense = calls.conv_problem(np.zeros((1, 5, 4), np.float32), np.zeros((3, 2, 4), np.float32), None,
                               strides=(1,), padding=((1, 1),), dilation=(1,), groups=2, channels_last=True)
    with pytest.raises(ValueError, match="depthwise problem"):
        dbi.depthwise_backward_input(dense, xp.asarray(np.zeros(dense.output_shape, np.float32)),
                                     xp.asarray(np.zeros((3, 2, 4), np.float32)))
    problem = _problem(*CASES[0], 4, 2, True, "float32")
    dy = xp.asarray(np.zeros(problem.output_shape, np.float32))
    with pytest.raises(ValueError, match="argument `kernel`"):
        dbi.depthwise_backward_input(problem, dy, xp.asarray(np.zeros((3, 4, 3), np.float32)))
    with pytest.raises(ValueError, match="argument `dy`"):
        dbi.depthwise_backward_input(problem, xp.asarray(np.zeros((2, 3, 8), np.float32)),
                                     xp.asarray(np.zeros((3, 4, 2), np.float32)))
    with pytest.raises(TypeError, match="argument `kernel`"):
        dbi.depthwise_backward_input(problem, dy, xp.asarray(np.zeros((3, 4, 2), np.float64)))


# ---------------------------------------------------------------------------------------------
# Host-side choices (no CUDA)
# ---------------------------------------------------------------------------------------------
def test_vector_width_needs_channels_last_whole_vectors_and_aligned_pointers():
    assert dbi.plan_vector(_problem(*CASES[3], 8, 2, True, "float32"), (0, 16, 32, 48)) == 4
    assert dbi.plan_vector(_problem(*CASES[3], 16, 1, True, "float16"), (0, 16)) == 8
    assert dbi.plan_vector(_problem(*CASES[3], 8, 2, True, "float32"), (0, 8)) == 1    # misaligned base
    assert dbi.plan_vector(_problem(*CASES[3], 6, 1, True, "float32"), (0,)) == 1       # 6 % 4 != 0
    assert dbi.plan_vector(_problem(*CASES[3], 8, 1, False, "float32"), (0,)) == 1      # channels_first


def test_registered_names_cover_every_dtype_width_and_vector():
    from gpuconv.cuda import registry

    names = set(registry.registered(dbi.KERNEL_FILE))
    for dtype, vec in (("float32", 4), ("float16", 8), ("float64", 2)):
        for width in ("int32", "int64"):
            assert {dbi.name_expression(dtype, width, 1), dbi.name_expression(dtype, width, vec)} <= names
    assert len(names) == 12
