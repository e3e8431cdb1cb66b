"""The NumPy engine's backward functions (issue 11), checked three independent ways: against
float64 loop references written here, by inner-product identities with the engine's own forward
ops (a linear map and its adjoint), and against PyTorch autograd in float32. Plus IEEE special
values (NaN in a max-pool window, 0 * Inf at taps that read only padding), determinism across
runs and thread counts, and pieces under a small memory budget.

Problems are built as ``gpuconv.ops`` builds them (Keras' 'same' / 'causal' split from
``gpuconv.geometry``) through the builders of ``engine_calls``. The loop references work in
channels_last, looping over output positions and window taps; channels_first arrays are
transposed in and out.
"""
import itertools
import math

import engine_calls as ec
import numpy as np
import pytest
import reference as ref
from conftest import assert_close, relative_l2_error
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpuconv import geometry as g
from gpuconv.cpu import engine as eng
from gpuconv.cpu import memory, pooling_backward

torch = pytest.importorskip("torch")
F = torch.nn.functional

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
DTYPES = ("float64", "float32", "float16")


def positions(shape):
    return itertools.product(*(range(n) for n in shape))


def last(a, channels_last):
    """channels_last float64 view of an array of the given layout."""
    a = np.asarray(a, np.float64)
    return a if channels_last else np.moveaxis(a, 1, -1)


def layout(a, channels_last):
    """A channels_last array in the given layout, C-contiguous."""
    return np.ascontiguousarray(a if channels_last else np.moveaxis(a, -1, 1))


def rounded(rng, shape, dtype):
    """Random normals already rounded to ``dtype`` (the reference sees the same values)."""
    return rng.standard_normal(shape).astype(dtype)


# --------------------------------------------------------------------------------------------
# Problems, built as gpuconv.ops builds them
# --------------------------------------------------------------------------------------------
def conv_setup(rng, *, rank, channels_last, dtype, spatial, ksize, strides, dilation, padding, groups, cg, fg,
               batch=2):
    c = cg * groups
    x = rounded(rng, (batch, *spatial, c), dtype)
    w = np.zeros(tuple(ksize) + (cg, fg * groups), dtype)
    pairs = g.conv_padding(spatial, ksize, strides, dilation, padding)
    xin = layout(x, channels_last)
    problem = ec.conv_problem(xin, w, None, strides=tuple(strides), padding=pairs, dilation=tuple(dilation),
                              groups=groups, channels_last=channels_last)
    dy = rounded(rng, problem.output_shape, dtype)
    return problem, xin, dy, pairs


def draw_window(draw, max_dilation):
    """``(rank, kernel size, strides, dilation)``: strides or dilation above 1, never both (Keras)."""
    rank = draw(st.integers(1, 3))
    ksize = tuple(draw(st.lists(st.integers(1, 3), min_size=rank, max_size=rank)))
    if draw(st.booleans()):
        return rank, ksize, tuple(draw(st.lists(st.integers(1, 3), min_size=rank, max_size=rank))), (1,) * rank
    return rank, ksize, (1,) * rank, tuple(draw(st.lists(st.integers(1, max_dilation), min_size=rank, max_size=rank)))


@st.composite
def conv_cases(draw, depthwise=False):
    rank, ksize, strides, dilation = draw_window(draw, 3)
    padding = draw(st.sampled_from(("valid", "same", "causal") if rank == 1 else ("valid", "same")))
    lo = [(k - 1) * d + 1 for k, d in zip(ksize, dilation)]
    spatial = tuple(draw(st.integers(m if padding == "valid" else 1, m + 4)) for m in lo)
    if depthwise:
        groups, cg, fg = draw(st.integers(1, 5)), 1, draw(st.integers(1, 3))
    else:
        groups, cg, fg = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    return dict(rank=rank, channels_last=draw(st.booleans()), dtype=draw(st.sampled_from(DTYPES)), spatial=spatial,
                ksize=ksize, strides=strides, dilation=dilation, padding=padding, groups=groups, cg=cg, fg=fg,
                batch=draw(st.integers(1, 2)))


# --------------------------------------------------------------------------------------------
# Loop references (float64, channels_last)
# --------------------------------------------------------------------------------------------
@np.errstate(all="ignore")
def loop_conv_weights(x, dy, ksize, strides, dilation, pairs, groups):
    """``dW[t, c, f] = sum_n,o xpad[n, o*s + t*d, c] dy[n, o, f]`` within each group."""
    xp = np.pad(x, [(0, 0), *pairs, (0, 0)])
    c, f = x.shape[-1], dy.shape[-1]
    cg, fg = c // groups, f // groups
    dw = np.zeros(tuple(ksize) + (cg, f))
    for t in positions(ksize):
        for o in positions(dy.shape[1:-1]):
            cell = xp[(slice(None),) + tuple(oi * s + ti * d for oi, ti, s, d in zip(o, t, strides, dilation))]
            d_o = dy[(slice(None),) + o]
            for gi in range(groups):
                xc, dc = cell[:, gi * cg:(gi + 1) * cg], d_o[:, gi * fg:(gi + 1) * fg]
                dw[t + (slice(None), slice(gi * fg, (gi + 1) * fg))] += (xc[:, :, None] * dc[:, None, :]).sum(0)
    return dw


@np.errstate(all="ignore")
def loop_conv_transpose_weights(x, dy, ksize, strides, dilation, crop, groups):
    """Transposed conv ``y[i*s + t*d - crop] += W[t] x[i]`` (kernel ``(*k, Fg, C)``):
    ``dW[t, f, c] = sum_n,i dy[n, i*s + t*d - crop, f] x[n, i, c]`` where that cell exists."""
    c, f = x.shape[-1], dy.shape[-1]
    cg, fg = c // groups, f // groups
    dw = np.zeros(tuple(ksize) + (fg, c))
    for t in positions(ksize):
        for i in positions(x.shape[1:-1]):
            o = tuple(ii * s + ti * d - cr for ii, ti, s, d, cr in zip(i, t, strides, dilation, crop))
            if not all(0 <= oi < L for oi, L in zip(o, dy.shape[1:-1])):
                continue
            xi, do = x[(slice(None),) + i], dy[(slice(None),) + o]
            for gi in range(groups):
                xc, dc = xi[:, gi * cg:(gi + 1) * cg], do[:, gi * fg:(gi + 1) * fg]
                dw[t + (slice(None), slice(gi * cg, (gi + 1) * cg))] += (dc[:, :, None] * xc[:, None, :]).sum(0)
    return dw


def loop_pool_backward(x, dy, mode, pool_size, strides, before):
    """Per output window (real cells only): the gradient to the first maximum in row-major
    order (a NaN beats numbers, the first NaN wins), or dy / cells to every cell."""
    dx = np.zeros(x.shape)
    spatial = x.shape[1:-1]
    for o in positions(dy.shape[1:-1]):
        cells = []
        for t in positions(pool_size):
            i = tuple(oi * s + ti - b for oi, ti, s, b in zip(o, t, strides, before))
            if all(0 <= ii < L for ii, L in zip(i, spatial)):
                cells.append(i)
        for n in range(x.shape[0]):
            for ch in range(x.shape[-1]):
                grad = dy[(n,) + o + (ch,)]
                if mode == "average":
                    for i in cells:
                        dx[(n,) + i + (ch,)] += grad / len(cells)
                    continue
                best = None
                for i in cells:
                    v = x[(n,) + i + (ch,)]
                    if best is None or (not np.isnan(best[1]) and (np.isnan(v) or v > best[1])):
                        best = (i, v)
                dx[(n,) + best[0] + (ch,)] += grad
    return dx


def linear_matrix(length, scale):
    """The forward linear pass of one axis as an (out, in) matrix, from tests/reference.py's taps."""
    m = np.zeros((length * scale, length))
    for j in range(length * scale):
        for i, w in ref.linear_taps(j, scale, length):
            m[j, i] += w
    return m


def loop_upsample_backward(dy, size, interpolation):
    """Nearest: each input cell sums its block. Linear: the transposed per-axis matrices."""
    in_spatial = tuple(L // s for L, s in zip(dy.shape[1:-1], size))
    dx = np.zeros((dy.shape[0],) + in_spatial + (dy.shape[-1],))
    if interpolation == "nearest":
        for o in positions(dy.shape[1:-1]):
            dx[(slice(None),) + tuple(oi // s for oi, s in zip(o, size))] += dy[(slice(None),) + o]
        return dx
    g_ = dy
    for ax, (L, s) in enumerate(zip(in_spatial, size)):
        g_ = np.moveaxis(np.tensordot(linear_matrix(L, s).T, np.moveaxis(g_, ax + 1, 0), axes=1), 0, ax + 1)
    return g_


def loop_locally_connected(x, dy, kernel, ksize, strides, before, channels_last):
    """(dx, dW) of ``y[p] = patch[p] @ W[p]``; rows of W in (*k, C) or (C, *k) order."""
    c = x.shape[-1]
    spatial = x.shape[1:-1]
    dx, dw = np.zeros(x.shape), np.zeros(kernel.shape)
    for index, p in enumerate(positions(dy.shape[1:-1])):
        for ti, t in enumerate(positions(ksize)):
            i = tuple(pi * s + tt - b for pi, tt, s, b in zip(p, t, strides, before))
            if not all(0 <= ii < L for ii, L in zip(i, spatial)):
                continue
            for ch in range(c):
                row = ti * c + ch if channels_last else ch * math.prod(ksize) + ti
                xv, dv = x[(slice(None),) + i + (ch,)], dy[(slice(None),) + p]
                dw[index, row] += (xv[:, None] * dv).sum(0)
                dx[(slice(None),) + i + (ch,)] += (dv * kernel[index, row][None]).sum(1)
    return dx, dw


def inner(a, b):
    return float(np.sum(np.asarray(a, np.float64) * np.asarray(b, np.float64)))


# --------------------------------------------------------------------------------------------
# Convolution kernel gradient
# --------------------------------------------------------------------------------------------
def checked_conv_weights(rng, case):
    """The engine's kernel gradient of a drawn case, checked against the loop reference."""
    problem, x, dy, pairs = conv_setup(rng, **case)
    got = eng.conv_backward_weights(problem, x, dy)
    cl = case["channels_last"]
    want = loop_conv_weights(last(x, cl), last(dy, cl), case["ksize"], case["strides"], case["dilation"], pairs,
                             case["groups"])
    assert got.dtype == np.dtype(case["dtype"]) and got.flags.c_contiguous and got.shape == problem.kernel_shape
    assert_close(got, want, case["dtype"])
    return problem, x, dy, got


@SETTINGS
@given(conv_cases())
def test_conv_weights_match_the_loop_reference(case):
    checked_conv_weights(np.random.default_rng(1), case)


@SETTINGS
@given(conv_cases(depthwise=True))
def test_depthwise_weights_match_the_loop_reference_and_the_depthwise_forward(case):
    """A depthwise problem routed as the grouped conv with one channel per group, kernel
    ``(*k, 1, C*dm)``: the per-channel reduction path."""
    rng = np.random.default_rng(2)
    problem, x, dy, got = checked_conv_weights(rng, case)
    if case["dtype"] == "float64":  # <depthwise(x; W), dy> == <W, dW> with dW read as (*k, C, dm)
        depthwise = problem.as_depthwise()
        w = rng.standard_normal(depthwise.kernel_shape)
        y = eng.depthwise_conv(depthwise, x, w, None)
        assert inner(y, dy) == pytest.approx(inner(w, got.reshape(w.shape)), rel=1e-12, abs=1e-12)


@SETTINGS
@given(conv_cases(), st.integers(0, 2**32 - 1))
def test_conv_weights_are_the_adjoint_of_conv_in_the_kernel(case, seed):
    case = dict(case, dtype="float64")
    rng = np.random.default_rng(seed)
    problem, x, dy, _ = conv_setup(rng, **case)
    w = rng.standard_normal(problem.kernel_shape)
    y = eng.conv(problem, x, w, None)
    assert inner(y, dy) == pytest.approx(inner(w, eng.conv_backward_weights(problem, x, dy)), rel=1e-12, abs=1e-12)


@st.composite
def transpose_cases(draw):
    rank, ksize, strides, dilation = draw_window(draw, 2)
    output_padding = None
    if draw(st.booleans()):
        output_padding = tuple(draw(st.integers(0, s - 1)) for s in strides)
    return dict(rank=rank, ksize=ksize, strides=strides, dilation=dilation, output_padding=output_padding,
                padding=draw(st.sampled_from(("valid", "same"))), channels_last=draw(st.booleans()),
                spatial=tuple(draw(st.lists(st.integers(1, 4), min_size=rank, max_size=rank))),
                groups=draw(st.integers(1, 2)), dtype=draw(st.sampled_from(DTYPES)))


@SETTINGS
@given(transpose_cases())
def test_conv_transpose_weights_through_the_adjoint_problem(case):
    """The transposed conv's kernel gradient is ``conv_backward_weights(problem.adjoint(), dy, x)``."""
    rng = np.random.default_rng(3)
    groups, dtype, cl = case["groups"], case["dtype"], case["channels_last"]
    c, fg = 2 * groups, 2
    out_sp, crop = g.conv_transpose_geometry(case["spatial"], case["ksize"], case["strides"], case["dilation"],
                                             case["padding"], case["output_padding"])
    if any(o <= 0 for o in out_sp):
        return
    x = layout(rounded(rng, (2, *case["spatial"], c), dtype), cl)
    w = np.zeros(case["ksize"] + (fg, c), dtype)
    problem = ec.conv_transpose_problem(x, w, None, strides=case["strides"], dilation=case["dilation"], groups=groups,
                                        out_spatial=out_sp, crop=crop, channels_last=cl)
    dy = rounded(rng, problem.output_shape, dtype)
    got = eng.conv_backward_weights(problem.adjoint(), dy, x)
    assert got.shape == problem.kernel_shape and got.dtype == np.dtype(dtype)
    want = loop_conv_transpose_weights(last(x, cl), last(dy, cl), case["ksize"], case["strides"], case["dilation"],
                                       crop, groups)
    assert_close(got, want, dtype)
    if dtype == "float64":
        wr = rng.standard_normal(problem.kernel_shape)
        assert inner(eng.conv_transpose(problem, x, wr, None), dy) == pytest.approx(inner(wr, got), rel=1e-12,
                                                                                    abs=1e-12)


def torch_weight_grad(x, dy, problem, pairs):
    """PyTorch's kernel gradient, on the explicitly (asymmetrically) padded input, as ``(*k, Cg, F)``."""
    rank, cl = problem.rank, problem.channels_last
    xt = torch.from_numpy(layout(last(x, cl), False).astype(np.float32))
    dyt = torch.from_numpy(layout(last(dy, cl), False).astype(np.float32))
    xt = F.pad(xt, [p for pair in reversed(pairs) for p in pair])
    fn = getattr(torch.nn.grad, f"conv{rank}d_weight")
    shape = (problem.out_channels, problem.channels_per_group) + tuple(problem.kernel_size)
    dw = fn(xt, shape, dyt, stride=problem.strides, padding=0, dilation=problem.dilation, groups=problem.groups)
    return np.moveaxis(dw.numpy(), (0, 1), (-1, -2))


@SETTINGS
@given(conv_cases(), st.booleans())
def test_conv_weights_match_torch(case, depthwise):
    case = dict(case, dtype="float32")
    if depthwise:
        case.update(cg=1, groups=4)
    rng = np.random.default_rng(4)
    problem, x, dy, pairs = conv_setup(rng, **case)
    got = eng.conv_backward_weights(problem, x, dy)
    assert relative_l2_error(got, torch_weight_grad(x, dy, problem, pairs)) <= 1e-5


def test_dead_taps_hold_zero_or_the_nan_of_a_non_finite_dy(rng):
    """Dilation 4 with 'same' on 3 cells: the outer taps read only padding. Their gradient is a
    sum of 0 * dy: 0 for finite dy, NaN for each filter whose dy holds an Inf."""
    for cg, groups in ((2, 1), (1, 3)):
        problem, x, dy, pairs = conv_setup(rng, rank=2, channels_last=True, dtype="float64", spatial=(3, 3),
                                           ksize=(3, 3), strides=(1, 1), dilation=(4, 4), padding="same",
                                           groups=groups, cg=cg, fg=2)
        got = eng.conv_backward_weights(problem, x, dy)
        assert np.all(got[0] == 0) and np.all(got[:, 2] == 0) and np.isfinite(got).all()
        dy = dy.copy()
        dy[1, 2, 0, 1] = np.inf  # filter 1
        got = eng.conv_backward_weights(problem, x, dy)
        want = loop_conv_weights(x, dy, (3, 3), (1, 1), (4, 4), pairs, groups)
        assert_close(got, want, "float64")
        assert np.isnan(got[0, 0, :, 1]).all() and not np.isnan(got[..., 0]).any()


# --------------------------------------------------------------------------------------------
# Pooling
# --------------------------------------------------------------------------------------------
@st.composite
def pool_cases(draw):
    rank = draw(st.integers(1, 3))
    pool_size = tuple(draw(st.lists(st.integers(1, 3), min_size=rank, max_size=rank)))
    strides = tuple(draw(st.lists(st.integers(1, 3), min_size=rank, max_size=rank)))
    padding = draw(st.sampled_from(("valid", "same")))
    spatial = tuple(draw(st.integers(p if padding == "valid" else 1, p + 4)) for p in pool_size)
    return dict(rank=rank, pool_size=pool_size, strides=strides, padding=padding, spatial=spatial,
                mode=draw(st.sampled_from(("max", "average"))), channels_last=draw(st.booleans()),
                dtype=draw(st.sampled_from(DTYPES)), ties=draw(st.booleans()))


def pool_setup(rng, *, rank, pool_size, strides, padding, spatial, mode, channels_last, dtype, ties, channels=3):
    shape = (2, *spatial, channels)
    x = rng.integers(-2, 3, shape).astype(dtype) if ties else rounded(rng, shape, dtype)
    x = layout(x, channels_last)
    pairs = g.pool_padding(spatial, pool_size, strides, padding)
    problem = ec.pool_problem(x, mode=mode, pool_size=pool_size, strides=strides, padding=pairs,
                              channels_last=channels_last)
    return problem, x, rounded(rng, problem.output_shape, dtype), pairs


@SETTINGS
@given(pool_cases())
def test_pool_backward_matches_the_loop_reference(case):
    rng = np.random.default_rng(5)
    problem, x, dy, _ = pool_setup(rng, **case)
    got = eng.pool_backward(problem, x, dy)
    cl = case["channels_last"]
    want = loop_pool_backward(last(x, cl), last(dy, cl), case["mode"], case["pool_size"], case["strides"],
                              problem.pad_before)
    assert got.shape == problem.input_shape and got.dtype == np.dtype(case["dtype"]) and got.flags.c_contiguous
    assert_close(last(got, cl), want, case["dtype"])


@SETTINGS
@given(pool_cases(), st.booleans())
def test_max_pool_backward_of_tiling_windows_matches_the_loop_reference(case, nans):
    """Stride = pool size, 'valid' (the seed CNN's pooling): the one-argmax path, with ties
    and NaNs, including inputs the windows do not cover to the end."""
    case = dict(case, mode="max", strides=case["pool_size"], padding="valid")
    rng = np.random.default_rng(7)
    problem, x, dy, _ = pool_setup(rng, **case)
    if nans:
        x = np.where(rng.random(x.shape) < 0.2, np.nan, x).astype(x.dtype)
    assert pooling_backward.tiles_the_input(problem)
    got = eng.pool_backward(problem, x, dy)
    cl = case["channels_last"]
    want = loop_pool_backward(last(x, cl), last(dy, cl), "max", case["pool_size"], case["strides"], problem.pad_before)
    assert got.shape == problem.input_shape and got.dtype == np.dtype(case["dtype"]) and got.flags.c_contiguous
    assert_close(last(got, cl), want, case["dtype"])


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("channels_last", [True, False])
def test_tiled_max_pool_backward_in_threaded_batch_slices_is_bitwise_the_whole(monkeypatch, threads, channels_last):
    """Large inputs are cut into one batch slice per thread; a NaN in one item only (whose slice
    then takes the NaN rule) and ties must give bitwise the one-slice result and the loop's."""
    from gpuconv.cpu import _parallel

    rng = np.random.default_rng(11)
    x = rng.integers(-2, 3, (5, 6, 7, 4)).astype(np.float32)  # ties everywhere; W = 7 leaves a column uncovered
    x[3, 1, 2, 0] = np.nan
    x = layout(x, channels_last)
    problem = ec.pool_problem(x, mode="max", pool_size=(2, 2), strides=(2, 2), padding=((0, 0), (0, 0)),
                              channels_last=channels_last)
    dy = rounded(rng, problem.output_shape, np.float32)
    monkeypatch.setattr(_parallel, "NUM_THREADS", 1)
    whole = eng.pool_backward(problem, x, dy)
    monkeypatch.setattr(_parallel, "NUM_THREADS", threads)
    monkeypatch.setattr(_parallel, "MIN_PARALLEL_BYTES", 0)
    assert len(_parallel.split(problem.batch, _parallel.threads_for(x.nbytes))) == threads
    sliced = eng.pool_backward(problem, x, dy)
    assert sliced.tobytes() == whole.tobytes()
    want = loop_pool_backward(last(x, channels_last), last(dy, channels_last), "max", (2, 2), (2, 2), (0, 0))
    assert_close(last(sliced, channels_last), want, np.float32)


@SETTINGS
@given(pool_cases(), st.integers(0, 2**32 - 1))
def test_average_pool_backward_is_the_adjoint_of_average_pool(case, seed):
    case = dict(case, mode="average", dtype="float64", ties=False)
    rng = np.random.default_rng(seed)
    problem, x, dy, _ = pool_setup(rng, **case)
    v = rng.standard_normal(problem.input_shape)
    assert inner(eng.pool_backward(problem, x, dy), v) == pytest.approx(inner(dy, eng.pool(problem, v)), rel=1e-12)


def torch_pool_grad(x, dy, problem, pairs):
    """PyTorch autograd through the explicitly padded input: max over -inf padding; average
    over zero padding scaled by the window size over the real cells (count_include_pad=False
    with Keras' asymmetric split)."""
    rank, cl = problem.rank, problem.channels_last
    xt = torch.from_numpy(layout(last(x, cl), False).astype(np.float32)).requires_grad_(True)
    dyt = torch.from_numpy(layout(last(dy, cl), False).astype(np.float32))
    pad = [p for pair in reversed(pairs) for p in pair]
    k, s = problem.pool_size, problem.strides
    if problem.mode == "max":
        y = getattr(F, f"max_pool{rank}d")(F.pad(xt, pad, value=-math.inf), k, s)
    else:
        avg = getattr(F, f"avg_pool{rank}d")
        real = avg(F.pad(torch.ones_like(xt), pad), k, s, count_include_pad=True)
        y = avg(F.pad(xt, pad), k, s, count_include_pad=True) / real
    y.backward(dyt)
    return layout(np.moveaxis(xt.grad.numpy(), 1, -1), cl)


@SETTINGS
@given(pool_cases())
def test_pool_backward_matches_torch(case):
    """Including ties (small integers): the first maximum takes the gradient in both."""
    case = dict(case, dtype="float32")
    rng = np.random.default_rng(6)
    problem, x, dy, pairs = pool_setup(rng, **case)
    got = eng.pool_backward(problem, x, dy)
    assert relative_l2_error(got, torch_pool_grad(x, dy, problem, pairs)) <= 1e-5


@pytest.mark.parametrize("channels_last", [True, False])
def test_the_first_nan_of_a_max_window_takes_its_whole_gradient(channels_last):
    x = np.array([1.0, np.nan, 5.0, np.nan, 2.0, 7.0]).reshape(1, 6, 1)
    x = layout(x, channels_last)
    problem = ec.pool_problem(x, mode="max", pool_size=(3,), strides=(3,), padding=((0, 0),),
                              channels_last=channels_last)
    got = eng.pool_backward(problem, x, np.array([10.0, 20.0]).reshape(problem.output_shape))
    np.testing.assert_array_equal(got.reshape(-1), [0, 10, 0, 20, 0, 0])


def test_padding_never_takes_a_max_gradient():
    """A window whose real cells are all -inf: the first real cell wins, not the padding."""
    x = np.full((1, 3, 3, 1), -np.inf)
    problem = ec.pool_problem(x, mode="max", pool_size=(3, 3), strides=(1, 1), padding=((1, 1), (1, 1)),
                              channels_last=True)
    got = eng.pool_backward(problem, x, np.ones(problem.output_shape))
    want = loop_pool_backward(x, np.ones(problem.output_shape), "max", (3, 3), (1, 1), (1, 1))
    np.testing.assert_array_equal(got, want)
    assert got.sum() == 9 and got[0, 0, 0, 0] == 4  # the four corner-side windows start at (0, 0)


# --------------------------------------------------------------------------------------------
# Upsampling
# --------------------------------------------------------------------------------------------
@st.composite
def upsample_cases(draw):
    rank = draw(st.integers(1, 3))
    interpolation = draw(st.sampled_from(("nearest",) if rank == 1 else ("nearest", "bilinear" if rank == 2
                                                                         else "trilinear")))
    return dict(rank=rank, interpolation=interpolation, channels_last=draw(st.booleans()),
                dtype=draw(st.sampled_from(DTYPES)),
                spatial=tuple(draw(st.lists(st.integers(1, 5), min_size=rank, max_size=rank))),
                size=tuple(draw(st.lists(st.integers(1, 3), min_size=rank, max_size=rank))))


def upsample_setup(rng, *, rank, interpolation, channels_last, dtype, spatial, size):
    x = layout(rounded(rng, (2, *spatial, 3), dtype), channels_last)
    problem = ec.upsample_problem(x, size=size, interpolation=interpolation, channels_last=channels_last)
    return problem, x, rounded(rng, problem.output_shape, dtype)


@SETTINGS
@given(upsample_cases())
def test_upsample_backward_matches_the_loop_reference(case):
    rng = np.random.default_rng(7)
    problem, _, dy = upsample_setup(rng, **case)
    got = eng.upsample_backward(problem, dy)
    cl = case["channels_last"]
    assert got.shape == problem.input_shape and got.dtype == np.dtype(case["dtype"]) and got.flags.c_contiguous
    assert_close(last(got, cl), loop_upsample_backward(last(dy, cl), case["size"], case["interpolation"]),
                 case["dtype"])


@SETTINGS
@given(upsample_cases(), st.integers(0, 2**32 - 1))
def test_upsample_backward_is_the_adjoint_of_upsample(case, seed):
    case = dict(case, dtype="float64")
    rng = np.random.default_rng(seed)
    problem, v, dy = upsample_setup(rng, **case)
    assert inner(eng.upsample_backward(problem, dy), v) == pytest.approx(inner(dy, eng.upsample(problem, v)),
                                                                         rel=1e-12)


@SETTINGS
@given(upsample_cases())
def test_upsample_backward_matches_torch(case):
    if case["rank"] == 1 and case["interpolation"] != "nearest":
        return
    case = dict(case, dtype="float32")
    rng = np.random.default_rng(8)
    problem, x, dy = upsample_setup(rng, **case)
    cl = case["channels_last"]
    xt = torch.from_numpy(layout(last(x, cl), False)).requires_grad_(True)
    mode = case["interpolation"]
    kwargs = {} if mode == "nearest" else {"align_corners": False}
    y = F.interpolate(xt, scale_factor=tuple(float(s) for s in case["size"]), mode=mode, **kwargs)
    y.backward(torch.from_numpy(layout(last(dy, cl), False)))
    want = layout(np.moveaxis(xt.grad.numpy(), 1, -1), cl)
    assert relative_l2_error(eng.upsample_backward(problem, dy), want) <= 1e-5


# --------------------------------------------------------------------------------------------
# Locally connected
# --------------------------------------------------------------------------------------------
@st.composite
def local_cases(draw):
    rank = draw(st.integers(1, 3))
    ksize = tuple(draw(st.lists(st.integers(1, 3), min_size=rank, max_size=rank)))
    padding = draw(st.sampled_from(("valid", "same")))
    return dict(rank=rank, ksize=ksize, padding=padding,
                strides=tuple(draw(st.lists(st.integers(1, 3), min_size=rank, max_size=rank))),
                spatial=tuple(draw(st.integers(k if padding == "valid" else 1, k + 3)) for k in ksize),
                channels_last=draw(st.booleans()), dtype=draw(st.sampled_from(DTYPES)))


def local_setup(rng, *, rank, ksize, padding, strides, spatial, channels_last, dtype, channels=2, filters=3):
    out = tuple(g.locally_connected_output_length(L, k, s, padding) for L, k, s in zip(spatial, ksize, strides))
    pairs = tuple(g.locally_connected_padding_pair(L, k, s, padding) for L, k, s in zip(spatial, ksize, strides))
    x = layout(rounded(rng, (2, *spatial, channels), dtype), channels_last)
    w = rounded(rng, (math.prod(out), math.prod(ksize) * channels, filters), dtype)
    problem = ec.locally_connected_problem(x, w, None, kernel_size=ksize, strides=strides, padding=pairs,
                                           out_spatial=out, channels_last=channels_last)
    return problem, x, w, rounded(rng, problem.output_shape, dtype)


@SETTINGS
@given(local_cases())
def test_locally_connected_gradients_match_the_loop_reference(case):
    rng = np.random.default_rng(9)
    problem, x, w, dy = local_setup(rng, **case)
    cl, dtype = case["channels_last"], case["dtype"]
    dx = eng.locally_connected_backward_input(problem, dy, w)
    dw = eng.locally_connected_backward_weights(problem, x, dy)
    assert dx.shape == problem.input_shape and dw.shape == problem.kernel_shape
    assert dx.dtype == dw.dtype == np.dtype(dtype) and dx.flags.c_contiguous and dw.flags.c_contiguous
    want_dx, want_dw = loop_locally_connected(last(x, cl), last(dy, cl), w.astype(np.float64), case["ksize"],
                                              case["strides"], problem.pad_before, cl)
    assert_close(last(dx, cl), want_dx, dtype)
    assert_close(dw, want_dw, dtype)


@SETTINGS
@given(local_cases(), st.integers(0, 2**32 - 1))
def test_locally_connected_gradients_are_adjoints(case, seed):
    """The op is linear in x and in W: <y, dy> = <x, dx> = <W, dW>."""
    case = dict(case, dtype="float64")
    rng = np.random.default_rng(seed)
    problem, x, w, dy = local_setup(rng, **case)
    y = inner(eng.locally_connected(problem, x, w, None), dy)
    assert inner(x, eng.locally_connected_backward_input(problem, dy, w)) == pytest.approx(y, rel=1e-12, abs=1e-12)
    assert inner(w, eng.locally_connected_backward_weights(problem, x, dy)) == pytest.approx(y, rel=1e-12, abs=1e-12)


# --------------------------------------------------------------------------------------------
# Contract: inputs untouched, pieces, determinism
# --------------------------------------------------------------------------------------------
def all_backward_calls(rng, dtype="float32", channels_last=True):
    """One moderately sized call of every backward function: ``[(name, fn, args)]``."""
    calls = []
    for cg, groups in ((3, 2), (1, 6)):
        p, x, dy, _ = conv_setup(rng, rank=2, channels_last=channels_last, dtype=dtype, spatial=(13, 11),
                                 ksize=(3, 3), strides=(1, 2), dilation=(1, 1), padding="same", groups=groups, cg=cg,
                                 fg=2, batch=3)
        calls.append((f"conv cg={cg}", eng.conv_backward_weights, (p, x, dy)))
    for mode in ("max", "average"):
        p, x, dy, _ = pool_setup(rng, rank=2, pool_size=(3, 3), strides=(2, 1), padding="same", spatial=(13, 11),
                                 mode=mode, channels_last=channels_last, dtype=dtype, ties=True)
        calls.append((mode, eng.pool_backward, (p, x, dy)))
    p, _, dy = upsample_setup(rng, rank=2, interpolation="bilinear", channels_last=channels_last, dtype=dtype,
                              spatial=(9, 7), size=(2, 3))
    calls.append(("bilinear", eng.upsample_backward, (p, dy)))
    p, x, w, dy = local_setup(rng, rank=2, ksize=(3, 2), padding="same", strides=(1, 2), spatial=(9, 8),
                              channels_last=channels_last, dtype=dtype)
    calls.append(("local input", eng.locally_connected_backward_input, (p, dy, w)))
    calls.append(("local weights", eng.locally_connected_backward_weights, (p, x, dy)))
    return calls


def force_threads(monkeypatch, threads):
    from gpuconv.cpu import _parallel

    monkeypatch.setattr(_parallel, "NUM_THREADS", threads)
    monkeypatch.setattr(_parallel, "MIN_PARALLEL_BYTES", 0)
    monkeypatch.setattr(memory, "GATHER_PARALLEL_BYTES", 0)


@pytest.mark.parametrize("channels_last", [True, False])
def test_bitwise_identical_over_runs_and_thread_counts(rng, monkeypatch, channels_last):
    calls = all_backward_calls(rng, "float32", channels_last)
    results = {}
    for threads in (1, 2, 2):
        force_threads(monkeypatch, threads)
        for name, fn, args in calls:
            got = fn(*args)
            if name in results:
                assert got.tobytes() == results[name].tobytes(), (name, threads)
            results[name] = got


@pytest.mark.parametrize("channels_last", [True, False])
def test_small_budget_pieces_give_the_same_gradients(rng, monkeypatch, channels_last):
    """A budget of a few KiB cuts every call into many pieces (runs of rows of one item)."""
    calls = all_backward_calls(rng, "float64", channels_last)
    whole = [fn(*args) for _, fn, args in calls]
    monkeypatch.setattr(memory, "MEMORY_BUDGET_BYTES", 4096)
    for (name, fn, args), want in zip(calls, whole):
        np.testing.assert_allclose(fn(*args), want, rtol=1e-12, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_inputs_are_not_mutated_and_float16_accumulates_in_float32(rng, dtype):
    for name, fn, args in all_backward_calls(rng, dtype):
        before = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
        got = fn(*args)
        for a, b in zip(args, before):
            if isinstance(a, np.ndarray):
                np.testing.assert_array_equal(a, b, err_msg=name)
        assert got.dtype == np.dtype(dtype), name
        wide = fn(*(a.astype(np.float64) if isinstance(a, np.ndarray) else _as64(a) for a in args))
        # float16 results rounded once from a float32 accumulation: within a few float16 ulps
        assert relative_l2_error(got, wide) <= (2e-3 if dtype == "float16" else 1e-5), name


def _as64(problem):
    import dataclasses

    return dataclasses.replace(problem, dtype=np.dtype(np.float64))


def test_bad_arguments_name_themselves(rng):
    problem, x, dy, _ = conv_setup(rng, rank=1, channels_last=True, dtype="float64", spatial=(5,), ksize=(3,),
                                   strides=(1,), dilation=(1,), padding="valid", groups=1, cg=2, fg=2)
    with pytest.raises(ValueError, match="problem.kind='conv_transpose'"):
        eng.conv_backward_weights(problem.adjoint(), dy, x)
    with pytest.raises(ValueError, match="`dy`"):
        eng.conv_backward_weights(problem, x, dy[:, 1:])
