"""The CUDA engine's memory-bound backward kernels (pooling_backward.cu, upsample_backward.cu,
locally_connected_backward.cu) against float64 loop references written here from the
definitions, and against the NumPy engine's versions: float32 <= 1e-5, float16 <= 2e-3 relative
L2. Ranks 1-3 where the op exists, both layouts, 'valid'/'same', strides below / at / above the
window, ties and NaN in max pooling, the vector and scalar channel paths, 64-bit indices
(``GPUCONV_FORCE_INDEX_WIDTH=int64``) and bitwise determinism. The pure planners are tested
without a device.
"""
import itertools

import engine_calls as calls
import numpy as np
import pytest

from conftest import CUDA_MARKS, ON_EMULATOR, assert_close, gpu_xp, random_array
from gpuconv import geometry as g
from gpuconv.cuda import indexing
from gpuconv.cuda import locally_connected_backward as lcb
from gpuconv.cuda import pooling_backward as pb
from gpuconv.cuda import upsampling_backward as ub

DTYPES = ("float32", "float16", "float64")


def gpu(test):
    """The CUDA_MARKS of conftest on one test (the planners' tests need no device)."""
    for mark in CUDA_MARKS:
        test = mark(test)
    return test


# ---------------------------------------------------------------------------------------------
# float64 references, channels_last (channels_first goes through a transpose)
# ---------------------------------------------------------------------------------------------
def _to_last(a, channels_last):
    return a if channels_last else np.moveaxis(a, 1, -1)


def _from_last(a, channels_last):
    return a if channels_last else np.moveaxis(a, -1, 1)


def _windows(problem):
    """(output index, tuple of slices of the real cells of its window)."""
    for o in np.ndindex(*problem.out_spatial):
        yield o, tuple(slice(max(0, oi * s - p), min(L, oi * s - p + k))
                       for oi, s, p, k, L in zip(o, problem.strides, problem.pad_before, problem.pool_size,
                                                 problem.in_spatial))


def ref_pool_backward(problem, x, dy):
    cl = problem.channels_last
    x, dy = _to_last(x, cl).astype(np.float64), _to_last(dy, cl).astype(np.float64)
    dx = np.zeros_like(x)
    n, c = x.shape[0], x.shape[-1]
    for o, win in _windows(problem):
        g_o = dy[(slice(None), *o)]
        cells = x[(slice(None), *win)]
        if problem.mode == "average":
            dx[(slice(None), *win)] += g_o[(slice(None),) + (None,) * problem.rank] / np.prod(cells.shape[1:-1])
            continue
        flat = cells.reshape(n, -1, c)
        first = np.argmax(flat, axis=1)  # the first maximum; np.argmax also takes the first NaN
        block = np.zeros_like(flat)
        np.put_along_axis(block, first[:, None, :], g_o[:, None, :], axis=1)
        dx[(slice(None), *win)] += block.reshape(cells.shape)
    return _from_last(dx, cl)


def _resample_matrix(length, size, linear):
    """The forward's (length*size, length) matrix along one dimension (upsample.cu)."""
    m = np.zeros((length * size, length))
    for o in range(length * size):
        if not linear:
            m[o, o // size] = 1.0
            continue
        src = min(max((o + 0.5) / size - 0.5, 0.0), length - 1.0)
        i0 = int(np.floor(src))
        f = src - i0
        m[o, i0] += 1 - f
        m[o, min(i0 + 1, length - 1)] += f
    return m


def ref_upsample_backward(problem, dy):
    cl = problem.channels_last
    g_ = _to_last(dy, cl).astype(np.float64)
    linear = problem.interpolation != "nearest"
    for axis, (L, s) in enumerate(zip(problem.in_spatial, problem.size), start=1):
        m = _resample_matrix(L, s, linear)
        g_ = np.moveaxis(np.tensordot(m.T, np.moveaxis(g_, axis, 0), axes=1), 0, axis)
    return _from_last(g_, cl)


def _patches(problem, x):
    """(N, positions, patch) float64 patches in the kernel's flattening, and the padded input."""
    cl = problem.channels_last
    xl = _to_last(x, cl).astype(np.float64)
    pads = [(0, 0), *problem.padding, (0, 0)]
    xp = np.pad(xl, pads)
    rows = []
    for o in np.ndindex(*problem.out_spatial):
        win = tuple(slice(oi * s, oi * s + k) for oi, s, k in zip(o, problem.strides, problem.kernel_size))
        cells = xp[(slice(None), *win)]  # (N, *k, C)
        if not cl:
            cells = np.moveaxis(cells, -1, 1)  # (N, C, *k)
        rows.append(cells.reshape(cells.shape[0], -1))
    return np.stack(rows, axis=1), xp


def _dy_rows(problem, dy):
    d = _to_last(dy, problem.channels_last).astype(np.float64)
    return d.reshape(d.shape[0], -1, d.shape[-1])  # (N, positions, F)


def ref_lc_backward_weights(problem, x, dy):
    patches, _ = _patches(problem, x)
    return np.einsum("npk,npf->pkf", patches, _dy_rows(problem, dy))


def ref_lc_backward_input(problem, dy, kernel):
    cl = problem.channels_last
    n, c = problem.batch, problem.in_channels
    rows = np.einsum("npf,pkf->npk", _dy_rows(problem, dy), kernel.astype(np.float64))
    padded = [L + a + b for L, (a, b) in zip(problem.in_spatial, problem.padding)]
    dxp = np.zeros((n, *padded, c))
    for p, o in enumerate(np.ndindex(*problem.out_spatial)):
        win = tuple(slice(oi * s, oi * s + k) for oi, s, k in zip(o, problem.strides, problem.kernel_size))
        k = tuple(problem.kernel_size)
        block = rows[:, p].reshape((n, *k, c) if cl else (n, c, *k))
        dxp[(slice(None), *win)] += block if cl else np.moveaxis(block, 1, -1)
    crop = tuple(slice(a, a + L) for (a, _), L in zip(problem.padding, problem.in_spatial))
    return _from_last(dxp[(slice(None), *crop)], cl)


# ---------------------------------------------------------------------------------------------
# Running the engines
# ---------------------------------------------------------------------------------------------
def _shape(n, c, spatial, cl):
    return (n, *spatial, c) if cl else (n, c, *spatial)


def _cuda(name, problem, *arrays):
    from gpuconv.cuda import engine as eng

    xp = gpu_xp()
    return xp.asnumpy(getattr(eng, name)(problem, *[xp.asarray(a) for a in arrays]))


def _check(name, problem, rounded, ref, dtype, cuda_out=None):
    """CUDA vs the float64 loop reference, and vs the NumPy engine where it has ``name``."""
    from gpuconv.cpu import engine as cpu

    got = _cuda(name, problem, *rounded) if cuda_out is None else cuda_out
    assert got.dtype == np.dtype(dtype)
    assert_close(got, ref, dtype)
    if hasattr(cpu, name):
        import dataclasses

        p64 = dataclasses.replace(problem, dtype=np.dtype("float64"))
        assert_close(got, getattr(cpu, name)(p64, *[a.astype(np.float64) for a in rounded]), dtype)
    return got


def _pool_case(rng, dtype, rank, cl, mode, k, s, padding, channels=3, integers=False, n=2):
    spatial = {1: (9,), 2: (6, 7), 3: (4, 5, 5)}[rank]
    k, s = (k,) * rank, (s,) * rank
    x = random_array(rng, _shape(n, channels, spatial, cl), integers=integers).astype(dtype)
    problem = calls.pool_problem(x, mode=mode, pool_size=k, strides=s, padding=g.pool_padding(spatial, k, s, padding),
                                 channels_last=cl)
    dy = random_array(rng, problem.output_shape).astype(dtype)
    return problem, x, dy


# ---------------------------------------------------------------------------------------------
# Pure planning (no device)
# ---------------------------------------------------------------------------------------------
def test_plan_pool_backward_vectorises_aligned_channels_last():
    name, vec, width = pb.plan_pool_backward((2, 5, 5, 8), (2, 3, 3, 8), np.dtype("float32"), "max", True,
                                             pointers=(0, 16, 32))
    assert (vec, width) == (4, "int32") and name == "gc::pool_backward<float, int, 4, 0>"
    assert pb.plan_pool_backward((2, 5, 5, 8), (2, 3, 3, 8), np.dtype("float32"), "max", True,
                                 pointers=(0, 8, 32))[1] == 1  # a misaligned base: scalar
    assert pb.plan_pool_backward((2, 8, 5, 5), (2, 8, 3, 3), np.dtype("float16"), "average", False)[1] == 1
    assert pb.plan_pool_backward((2, 5, 6), (2, 3, 6), np.dtype("float16"), "max", True)[1] == 1  # 6 % 8


def test_plan_pool_backward_rejects_unknown_mode():
    with pytest.raises(ValueError, match="mode='min'"):
        pb.plan_pool_backward((2, 5, 5, 8), (2, 3, 3, 8), np.dtype("float32"), "min", True)


def test_plan_upsample_backward():
    name, vec, width = ub.plan_upsample_backward((1, 3, 4, 16), (2, 2), "bilinear", np.dtype("float16"), True)
    assert (vec, width) == (8, "int32") and name == "gc::upsample_backward<gc::half, int, 8, 2>"
    assert ub.plan_upsample_backward((1, 16, 3, 4), (2, 2), "nearest", np.dtype("float32"), False)[1] == 1
    with pytest.raises(ValueError, match="interpolation=trilinear"):  # not a 2-D interpolation
        ub.plan_upsample_backward((1, 3, 4, 16), (2, 2), "trilinear", np.dtype("float16"), True)


def test_locally_connected_backward_names_and_work(rng):
    assert lcb.kernel_name("weights", np.dtype("float64"), "int64") == \
        "gc::locally_connected_backward<double, long long, 1>"
    with pytest.raises(ValueError, match="gradient='bias'"):
        lcb.kernel_name("bias", np.dtype("float64"), "int64")
    x = np.zeros((2, 5, 6, 3))
    w = np.zeros((4 * 2, 2 * 3 * 3, 4))
    problem = calls.locally_connected_problem(x, w, None, kernel_size=(2, 3), strides=(1, 2),
                                              padding=((0, 0), (0, 0)), out_spatial=(4, 2), channels_last=True)
    assert lcb.plan_work(problem, "input") == 2 * 5 * 6 * 3
    assert lcb.plan_work(problem, "weights") == 8 * 18 * 4


# ---------------------------------------------------------------------------------------------
# Pooling
# ---------------------------------------------------------------------------------------------
# (window, stride): stride below, equal to and above the window
_POOL_GEOMETRY = ((3, 2), (2, 2), (2, 3))


@gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rank", (1, 2, 3))
@pytest.mark.parametrize("cl", (True, False), ids=("channels_last", "channels_first"))
@pytest.mark.parametrize("mode", ("max", "average"))
def test_pool_backward(rng, dtype, rank, cl, mode):
    for (k, s), padding in itertools.product(_POOL_GEOMETRY, ("valid", "same")):
        # channels_last with 8 channels takes the vector path (V = 16 / itemsize divides 8 for
        # every dtype), 3 channels the scalar one.
        for channels in ((3, 8) if cl else (3,)):
            problem, x, dy = _pool_case(rng, dtype, rank, cl, mode, k, s, padding, channels=channels)
            _check("pool_backward", problem, (x, dy), ref_pool_backward(problem, x, dy), dtype)


@gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cl", (True, False), ids=("channels_last", "channels_first"))
def test_max_pool_backward_ties_go_to_the_first_maximum(rng, dtype, cl):
    # Small integers tie often; overlapping windows (k 3, s 1) accumulate on shared winners.
    for rank in (1, 2, 3):
        problem, x, dy = _pool_case(rng, dtype, rank, cl, "max", 3, 1, "same", channels=8, integers=True)
        ref = ref_pool_backward(problem, x, dy)
        _check("pool_backward", problem, (x, dy), ref, dtype)
    # A constant input: every window's winner is its first real cell.
    problem, x, dy = _pool_case(rng, dtype, 2, cl, "max", 2, 2, "valid", channels=4)
    x = np.full_like(x, -np.inf)
    got = _check("pool_backward", problem, (x, dy), ref_pool_backward(problem, x, dy), dtype)
    first = got[:, ::2, ::2, :] if cl else got[:, :, ::2, ::2]
    assert np.count_nonzero(got) == np.count_nonzero(first) > 0


@gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cl", (True, False), ids=("channels_last", "channels_first"))
def test_max_pool_backward_nan_is_the_maximum(rng, dtype, cl):
    problem, x, dy = _pool_case(rng, dtype, 2, cl, "max", 3, 2, "same", channels=8)
    xl = _to_last(x, cl).copy()
    xl[0, 1, 1, 0] = np.nan  # one NaN in a window
    xl[1, 2, 2, 3] = xl[1, 2, 3, 3] = np.nan  # two in a row: the first wins
    xl[1, 0, :, 5] = 1e4  # a large number before a NaN loses to it
    xl[1, 0, 3, 5] = np.nan
    x = np.ascontiguousarray(_from_last(xl, cl))
    _check("pool_backward", problem, (x, dy), ref_pool_backward(problem, x, dy), dtype)
    # Disjoint windows, the winners spelled out: the first of two NaNs, a NaN after a large
    # number, the first of a tie.
    x = np.array([1, np.nan, np.nan, 1e4, 2, np.nan, -1, 3, 3], dtype).reshape(1, 9, 1)
    x = x if cl else x.reshape(1, 1, 9)
    problem = calls.pool_problem(x, mode="max", pool_size=(3,), strides=(3,), padding=((0, 0),), channels_last=cl)
    dy = np.array([1, 2, 3], dtype).reshape(problem.output_shape)
    got = _check("pool_backward", problem, (x, dy), ref_pool_backward(problem, x, dy), dtype)
    np.testing.assert_array_equal(got.ravel(), [0, 1, 0, 0, 0, 2, 0, 3, 0])


@gpu
def test_pool_backward_padding_never_wins(rng):
    # All real cells below zero: a padded zero would win if padding were a candidate.
    problem, x, dy = _pool_case(rng, "float32", 2, True, "max", 3, 2, "same", channels=4)
    x = -np.abs(x) - 1
    got = _check("pool_backward", problem, (x, dy), ref_pool_backward(problem, x, dy), "float32")
    np.testing.assert_allclose(got.sum(axis=(1, 2)), dy.astype(np.float64).sum(axis=(1, 2)), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Upsampling
# ---------------------------------------------------------------------------------------------
_UPSAMPLE = {1: (((3,), (4,)), ((1,), (5,))), 2: (((2, 3), (3, 4)), ((1, 4), (1, 3))),
             3: (((2, 2, 3), (2, 3, 2)), ((3, 1, 2), (1, 2, 3)))}


@gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rank, interpolation", [(1, "nearest"), (2, "nearest"), (2, "bilinear"), (3, "nearest"),
                                                 (3, "trilinear")])
@pytest.mark.parametrize("cl", (True, False), ids=("channels_last", "channels_first"))
def test_upsample_backward(rng, dtype, rank, interpolation, cl):
    for size, spatial in _UPSAMPLE[rank]:
        for channels in ((3, 8) if cl else (3,)):
            x = np.zeros(_shape(2, channels, spatial, cl), dtype)
            problem = calls.upsample_problem(x, size=size, interpolation=interpolation, channels_last=cl)
            dy = random_array(rng, problem.output_shape).astype(dtype)
            _check("upsample_backward", problem, (dy,), ref_upsample_backward(problem, dy), dtype)


@gpu
def test_upsample_backward_is_the_adjoint_of_the_forward(rng):
    """<upsample(x), dy> == <x, upsample_backward(dy)> with the CUDA forward and backward."""
    from gpuconv.cuda import engine as eng

    xp = gpu_xp()
    for interpolation, size, spatial in (("bilinear", (3, 2), (4, 5)), ("trilinear", (2, 3, 2), (3, 2, 4))):
        x = random_array(rng, _shape(2, 4, spatial, True))
        problem = calls.upsample_problem(x, size=size, interpolation=interpolation, channels_last=True)
        dy = random_array(rng, problem.output_shape)
        y = xp.asnumpy(eng.upsample(problem, xp.asarray(x)))
        dx = xp.asnumpy(eng.upsample_backward(problem, xp.asarray(dy)))
        assert abs(np.vdot(y, dy) - np.vdot(x, dx)) <= 1e-10 * np.abs(y).sum() * np.abs(dy).max()


# ---------------------------------------------------------------------------------------------
# Locally connected
# ---------------------------------------------------------------------------------------------
def _lc_case(rng, dtype, rank, cl, k, s, padding, c=3, f=5, n=3):
    spatial = {1: (9,), 2: (5, 6)}[rank]
    k, s = (k,) * rank, (s,) * rank
    out = tuple(g.locally_connected_output_length(L, kk, ss, padding) for L, kk, ss in zip(spatial, k, s))
    pads = tuple(g.locally_connected_padding_pair(L, kk, ss, padding) for L, kk, ss in zip(spatial, k, s))
    x = random_array(rng, _shape(n, c, spatial, cl)).astype(dtype)
    w = random_array(rng, (int(np.prod(out)), int(np.prod(k)) * c, f)).astype(dtype)
    problem = calls.locally_connected_problem(x, w, None, kernel_size=k, strides=s, padding=pads, out_spatial=out,
                                              channels_last=cl)
    dy = random_array(rng, problem.output_shape).astype(dtype)
    return problem, x, w, dy


@gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rank", (1, 2))
@pytest.mark.parametrize("cl", (True, False), ids=("channels_last", "channels_first"))
def test_locally_connected_backward(rng, dtype, rank, cl):
    for (k, s), padding in itertools.product(((3, 1), (2, 2), (2, 3)), ("valid", "same")):
        problem, x, w, dy = _lc_case(rng, dtype, rank, cl, k, s, padding)
        _check("locally_connected_backward_input", problem, (dy, w), ref_lc_backward_input(problem, dy, w), dtype)
        _check("locally_connected_backward_weights", problem, (x, dy), ref_lc_backward_weights(problem, x, dy),
               dtype)


@gpu
def test_locally_connected_backward_rejects_wrong_shapes(rng):
    from gpuconv.cuda import engine as eng

    problem, x, w, dy = _lc_case(rng, "float32", 2, True, 2, 1, "valid")
    with pytest.raises(ValueError, match="kernel"):
        eng.locally_connected_backward_input(problem, gpu_xp().asarray(dy), gpu_xp().asarray(w[:-1]))
    with pytest.raises(ValueError, match="dy"):
        eng.locally_connected_backward_weights(problem, gpu_xp().asarray(x), gpu_xp().asarray(dy[:1]))


# ---------------------------------------------------------------------------------------------
# 64-bit indices and determinism
# ---------------------------------------------------------------------------------------------
def _every_op(rng, dtype):
    """(name, problem, arrays, float64 reference) for one case of every backward."""
    cases = []
    for mode in ("max", "average"):
        problem, x, dy = _pool_case(rng, dtype, 2, True, mode, 3, 2, "same", channels=8)
        cases.append(("pool_backward", problem, (x, dy), ref_pool_backward(problem, x, dy)))
    for interpolation, size, spatial in (("nearest", (2, 3), (3, 2)), ("trilinear", (2, 2, 3), (2, 3, 2))):
        x = np.zeros(_shape(2, 3, spatial, False), dtype)
        problem = calls.upsample_problem(x, size=size, interpolation=interpolation, channels_last=False)
        dy = random_array(rng, problem.output_shape).astype(dtype)
        cases.append(("upsample_backward", problem, (dy,), ref_upsample_backward(problem, dy)))
    problem, x, w, dy = _lc_case(rng, dtype, 2, False, 3, 2, "same")
    cases.append(("locally_connected_backward_input", problem, (dy, w), ref_lc_backward_input(problem, dy, w)))
    cases.append(("locally_connected_backward_weights", problem, (x, dy), ref_lc_backward_weights(problem, x, dy)))
    return cases


@gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_int64_indices(rng, dtype, monkeypatch):
    monkeypatch.setenv(indexing.FORCE_ENV, "int64")
    if ON_EMULATOR:
        from gpuconv.emulator import runtime
    for name, problem, arrays, ref in _every_op(rng, dtype):
        if ON_EMULATOR:
            runtime.launched.clear()
        _check(name, problem, arrays, ref, dtype)
        if ON_EMULATOR:
            assert any("long long" in launched for launched in runtime.launched), runtime.launched


@gpu
@pytest.mark.parametrize("dtype", ("float32", "float16"))
def test_repeated_runs_are_bitwise_equal(rng, dtype):
    for name, problem, arrays, ref in _every_op(rng, dtype):
        first = _cuda(name, problem, *arrays)
        second = _cuda(name, problem, *arrays)
        assert first.tobytes() == second.tobytes(), name
