"""Internals of the NumPy engine (gpuconv.cpu): chunking under the memory budget, scratch reuse,
float16 accumulation, the transposed-conv scatter, IEEE special values at padded taps, input
strides and immutability, depthwise routing, fused activations.

The full oracle suite (every op against tests/reference.py) lives elsewhere; the tests here call
the engine functions directly, with explicit resolved geometry, and check properties of *how*
the engine computes.
"""
import itertools
import math
import os
import threading
import tracemalloc
import warnings

import engine_calls
import numpy as np
import pytest

from gpuconv.cpu import engine as eng
from gpuconv.cpu import memory

import reference as ref


# --------------------------------------------------------------------------------------------
# The loop reference (tests/reference.py) called with explicit resolved geometry
# --------------------------------------------------------------------------------------------
def loop_conv(x, w, strides, padding, dilation):
    """Grouped cross-correlation of channels-last ``x`` zero-padded by the ``(before, after)``
    pairs ``padding``; groups = C // w.shape[-2]. float64."""
    return ref.conv(np.pad(x, [(0, 0), *padding, (0, 0)]), w, strides=strides, dilation_rate=dilation)


def loop_conv_transpose(x, w, strides, dilation, out_sp, crop, groups):
    """Scatter ``full[i*s + t*d] += W[t] @ x[i]`` then ``y[o] = full[o + crop]`` (0 past its end)."""
    return ref.transpose_scatter(x, w, strides, dilation, groups, out_sp, crop)


def to_first(a):
    return np.ascontiguousarray(np.moveaxis(a, -1, 1))


def to_last(a):
    return np.moveaxis(a, 1, -1)


def conv_call(x, w, strides, padding, dilation, channels_last=True, bias=None, activation=None):
    groups = (x.shape[-1] if channels_last else x.shape[1]) // w.shape[-2]
    return engine_calls.conv(eng, x, w, bias, strides=strides, padding=padding, dilation=dilation, groups=groups,
                    channels_last=channels_last, activation=activation)


def force_threads(monkeypatch, threads):
    """Split work into ``threads`` pieces however small it is (the real threshold would keep the
    tiny test arrays on one thread)."""
    from gpuconv.cpu import _parallel

    monkeypatch.setattr(_parallel, "NUM_THREADS", threads)
    monkeypatch.setattr(_parallel, "MIN_PARALLEL_BYTES", 0)
    monkeypatch.setattr(memory, "GATHER_PARALLEL_BYTES", 0)  # small gathers and scatters too


@pytest.fixture
def tiny_budget(monkeypatch):
    """A budget small enough that every op below runs in several pieces."""
    monkeypatch.setattr(memory, "MEMORY_BUDGET_BYTES", 2048)
    return 2048


# --------------------------------------------------------------------------------------------
# Chunk planning
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("budget", [1, 100, 1000, 5000, 10**9])
@pytest.mark.parametrize("batch,rows,row_bytes", [(1, 1, 64), (3, 7, 100), (5, 1, 3000), (2, 40, 8)])
def test_chunks_cover_everything_once_within_the_limit(monkeypatch, budget, batch, rows, row_bytes):
    monkeypatch.setattr(memory, "MEMORY_BUDGET_BYTES", budget)
    limit = memory.chunk_limit()
    assert limit <= budget
    seen = np.zeros((batch, rows), int)
    for bs, rs in memory.chunks(batch, rows, row_bytes):
        seen[bs, rs] += 1
        nb, nr = bs.stop - bs.start, rs.stop - rs.start
        assert nb >= 1 and nr >= 1
        # within the limit, unless a single row of a single item is already larger
        assert nb * nr * row_bytes <= limit or (nb == 1 and nr == 1)
        # a piece spans all rows or one item: its output slice stays a strided view
        assert nr == rows or nb == 1
    assert (seen == 1).all()


def test_scratch_is_a_view_when_possible_and_reused_otherwise():
    scratch = memory.Scratch(np.float64)
    a = np.arange(24.0).reshape(2, 3, 4)
    v = scratch.gather(a, (6, 4))
    assert np.shares_memory(v, a) and scratch.buffer is None
    t = a.transpose(1, 0, 2)  # (3, 2, 4): the first two axes cannot merge without a copy
    first = scratch.gather(t, (6, 4))
    np.testing.assert_array_equal(first, t.reshape(6, 4))
    assert not np.shares_memory(first, a)
    buffer = scratch.buffer
    second = scratch.gather(t[:2], (4, 4))
    assert scratch.buffer is buffer and np.shares_memory(second, buffer)
    np.testing.assert_array_equal(second, t[:2].reshape(4, 4))


@pytest.mark.parametrize("limit,threaded", [(10**9, False), (0, True)])
def test_small_gathers_stay_on_the_calling_thread(monkeypatch, limit, threaded):
    """Below GATHER_PARALLEL_BYTES the im2col copy is not handed to the pool (whose threads would
    wait for cores still held by spinning BLAS workers); either way the copy is the same."""
    from gpuconv.cpu import _parallel

    force_threads(monkeypatch, 2)
    monkeypatch.setattr(memory, "GATHER_PARALLEL_BYTES", limit)
    calls = []
    real = _parallel.run
    monkeypatch.setattr(_parallel, "run", lambda fn, pieces: calls.append(len(pieces)) or real(fn, pieces))
    t = np.arange(240.0).reshape(4, 6, 10).transpose(1, 0, 2)
    got = memory.Scratch(np.float64).gather(t, (24, 10))
    np.testing.assert_array_equal(got, t.reshape(24, 10))
    assert (max(calls) > 1) == threaded  # split into pieces for the threads, or one piece here


# --------------------------------------------------------------------------------------------
# Chunked results equal whole results
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("batch", [1, 3])
def test_conv_in_pieces_equals_the_loop_reference(rng, tiny_budget, monkeypatch, threads, channels_last, groups,
                                                  batch):
    force_threads(monkeypatch, threads)  # the im2col gathers are copied in slabs on threads
    x = rng.standard_normal((batch, 9, 7, 4))
    w = rng.standard_normal((3, 2, 4 // groups, 6))
    want = loop_conv(x, w, (2, 1), ((1, 1), (0, 1)), (1, 1))
    xin = x if channels_last else to_first(x)
    got = conv_call(xin, w, (2, 1), ((1, 1), (0, 1)), (1, 1), channels_last)
    got = got if channels_last else to_last(got)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("channels,threaded", [(64, False), (16, True)])
def test_small_padding_copies_of_long_runs_stay_on_the_calling_thread(rng, monkeypatch, channels, threaded):
    """A small padding copy of long contiguous runs is memory-bound and stays on the calling
    thread; short runs (loop-bound) use the threads. Either way the padded array is the same."""
    from gpuconv.cpu import _parallel, _windows

    force_threads(monkeypatch, 2)
    monkeypatch.setattr(memory, "GATHER_PARALLEL_BYTES", 10**9)
    calls = []
    real = _parallel.run
    monkeypatch.setattr(_parallel, "run", lambda fn, p: calls.append(len(p)) or real(fn, p))
    x = rng.standard_normal((2, 5, 4, channels)).astype(np.float32)
    got = _windows.padded(x, ((1, 2), (0, 1)), (1, 2), np.float64)
    np.testing.assert_array_equal(got, np.pad(x.astype(np.float64), ((0, 0), (1, 2), (0, 1), (0, 0))))
    assert (max(calls) > 1) == threaded  # split into pieces for the threads, or one piece here


@pytest.mark.parametrize("channels_last", [True, False])
def test_small_channels_last_scatters_stay_on_the_calling_thread(rng, monkeypatch, channels_last):
    """Below GATHER_PARALLEL_BYTES the channels_last scatter after the GEMM runs on the calling
    thread (OpenBLAS's workers still spin on the other cores); channels_first uses the threads."""
    from gpuconv.cpu import _parallel, conv_transpose as transposed

    force_threads(monkeypatch, 2)
    monkeypatch.setattr(memory, "GATHER_PARALLEL_BYTES", 10**9)
    pieces = []
    real = _parallel.run
    monkeypatch.setattr(transposed._parallel, "run", lambda fn, p: pieces.append(len(list(p))) or real(fn, p))
    x = rng.standard_normal((2, 5, 4, 3))
    w = rng.standard_normal((3, 3, 4, 3))
    want = loop_conv_transpose(x, w, (2, 2), (1, 1), (10, 8), (1, 1), 1)
    got = engine_calls.conv_transpose(eng, x if channels_last else to_first(x), w, None, strides=(2, 2), dilation=(1, 1), groups=1,
                             out_spatial=(10, 8), crop=(1, 1), channels_last=channels_last, activation=None)
    np.testing.assert_allclose(got if channels_last else to_last(got), want, rtol=1e-12, atol=1e-12)
    assert pieces[0] == (1 if channels_last else 2)


@pytest.mark.parametrize("budget,threads", [(2048, 1), (2048, 3), (10**9, 2), (10**9, 3)])
@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("groups", [1, 2])
def test_conv_transpose_in_pieces_equals_the_loop_reference(rng, monkeypatch, budget, threads, channels_last, groups):
    """Row pieces under a tiny budget; whole batches scattered by several threads otherwise."""
    monkeypatch.setattr(memory, "MEMORY_BUDGET_BYTES", budget)
    force_threads(monkeypatch, threads)
    x = rng.standard_normal((3, 6, 5, 4))
    w = rng.standard_normal((3, 2, 3, 4))  # (k, k, F // groups, C_in)
    out_sp, crop = (13, 9), (1, 0)
    want = loop_conv_transpose(x, w, (2, 2), (1, 1), out_sp, crop, groups)
    xin = x if channels_last else to_first(x)
    got = engine_calls.conv_transpose(eng, xin, w, None, strides=(2, 2), dilation=(1, 1), groups=groups, out_spatial=out_sp,
                             crop=crop, channels_last=channels_last, activation=None)
    got = got if channels_last else to_last(got)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("channels_last", [True, False])
def test_locally_connected_in_pieces_equals_whole(rng, monkeypatch, channels_last):
    x = rng.standard_normal((3, 6, 5, 2) if channels_last else (3, 2, 6, 5))
    kernel = rng.standard_normal((5 * 4, 2 * 2 * 2, 3))
    bias = rng.standard_normal((5, 4, 3))
    kw = dict(kernel_size=(2, 2), strides=(1, 1), padding=((0, 0), (0, 0)), out_spatial=(5, 4),
              channels_last=channels_last, activation=None)
    whole = engine_calls.locally_connected(eng, x, kernel, bias, **kw)
    monkeypatch.setattr(memory, "MEMORY_BUDGET_BYTES", 100)
    pieces = engine_calls.locally_connected(eng, x, kernel, bias, **kw)
    np.testing.assert_allclose(pieces, whole, rtol=1e-13, atol=1e-13)


def test_im2col_scratch_stays_under_the_budget(rng, monkeypatch):
    """Peak allocation of a conv whose whole im2col buffer would be ~9 MiB, under a 256 KiB
    budget: padded input + output + one piece of columns (+ slack), far below the whole buffer."""
    x = rng.standard_normal((2, 48, 48, 32))
    w = rng.standard_normal((3, 3, 32, 8))
    whole_cols = 2 * 48 * 48 * 9 * 32 * 8
    budget = 256 * 1024
    monkeypatch.setattr(memory, "MEMORY_BUDGET_BYTES", budget)
    tracemalloc.start()
    try:
        y = conv_call(x, w, (1, 1), ((1, 1), (1, 1)), (1, 1))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    padded_input = 2 * 50 * 50 * 32 * 8
    allowed = padded_input + y.nbytes + budget + 64 * 1024
    assert peak <= allowed < whole_cols / 2, (peak, allowed, whole_cols)


def test_conv_transpose_gemm_results_stay_under_the_budget(rng, monkeypatch):
    """The per-chunk GEMM result (all taps of every input position) is the transposed conv's
    scratch; under a 128 KiB budget the peak stays near output + budget, far below the ~4 MiB
    the whole result would take."""
    x = rng.standard_normal((2, 32, 32, 16))
    w = rng.standard_normal((4, 4, 16, 16))
    whole_cols = 2 * 32 * 32 * 16 * 16 * 8
    budget = 128 * 1024
    monkeypatch.setattr(memory, "MEMORY_BUDGET_BYTES", budget)
    tracemalloc.start()
    try:
        y = engine_calls.conv_transpose(eng, x, w, None, strides=(2, 2), dilation=(1, 1), groups=1, out_spatial=(64, 64),
                               crop=(1, 1), channels_last=True, activation=None)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    allowed = y.nbytes + 2 * budget + 64 * 1024
    assert peak <= allowed < whole_cols / 2, (peak, allowed, whole_cols)


# --------------------------------------------------------------------------------------------
# float16 accumulates in float32; output dtype follows the input
# --------------------------------------------------------------------------------------------
# 3000 = 2048 + 952: a float16 running sum of ones stalls at 2048, a float32 one reaches 3000,
# which float16 represents exactly.
def test_float16_conv_accumulates_in_float32():
    x = np.ones((1, 2, 3000), np.float16)
    w = np.ones((1, 3000, 1), np.float16)
    y = conv_call(x, w, (1,), ((0, 0),), (1,))
    assert y.dtype == np.float16
    np.testing.assert_array_equal(y, 3000)


def test_float16_depthwise_accumulates_in_float32():
    x = np.ones((1, 3000, 2), np.float16)
    w = np.ones((3000, 2, 1), np.float16)
    y = engine_calls.depthwise_conv(eng, x, w, None, strides=(1,), padding=((0, 0),), dilation=(1,), channels_last=True,
                           activation=None)
    assert y.dtype == np.float16
    np.testing.assert_array_equal(y, 3000)


def test_float16_conv_transpose_accumulates_in_float32():
    x = np.ones((1, 1, 3000), np.float16)
    w = np.ones((1, 2, 3000), np.float16)
    y = engine_calls.conv_transpose(eng, x, w, None, strides=(1,), dilation=(1,), groups=1, out_spatial=(1,), crop=(0,),
                           channels_last=True, activation=None)
    assert y.dtype == np.float16
    np.testing.assert_array_equal(y, 3000)


def test_float16_average_pool_accumulates_in_float32():
    x = np.ones((1, 4096, 1), np.float16)
    y = engine_calls.pool(eng, x, mode="average", pool_size=(4096,), strides=(1,), padding=((0, 0),), channels_last=True)
    assert y.dtype == np.float16
    np.testing.assert_array_equal(y, 1)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_every_op_returns_the_input_dtype(rng, dtype):
    x = rng.standard_normal((1, 5, 5, 2)).astype(dtype)
    k = rng.standard_normal((3, 3, 2, 2)).astype(dtype)
    b = rng.standard_normal(2).astype(dtype)
    one = ((1, 1), (1, 1))
    results = [
        conv_call(x, k, (1, 1), one, (1, 1), bias=b, activation="sigmoid"),
        engine_calls.conv_transpose(eng, x, k, b, strides=(2, 2), dilation=(1, 1), groups=1, out_spatial=(10, 10),
                           crop=(0, 0), channels_last=True, activation="relu"),
        engine_calls.depthwise_conv(eng, x, k, None, strides=(1, 1), padding=one, dilation=(1, 1), channels_last=True,
                           activation="tanh"),
        engine_calls.separable_conv(eng, x, k, rng.standard_normal((1, 1, 4, 3)).astype(dtype), None, strides=(1, 1), padding=one,
                           dilation=(1, 1), channels_last=True, activation=None),
        engine_calls.pool(eng, x, mode="max", pool_size=(2, 2), strides=(2, 2), padding=((0, 0), (0, 0)), channels_last=True),
        engine_calls.pool(eng, x, mode="average", pool_size=(2, 2), strides=(1, 1), padding=one, channels_last=True),
        engine_calls.upsample(eng, x, size=(2, 2), interpolation="bilinear", channels_last=True),
        engine_calls.upsample(eng, x, size=(2, 2), interpolation="nearest", channels_last=True),
    ]
    for y in results:
        assert y.dtype == np.dtype(dtype)


# --------------------------------------------------------------------------------------------
# IEEE special values: padding is literal zeros for convs, ignored for max pooling
# --------------------------------------------------------------------------------------------
def test_infinite_weight_on_a_padded_tap_gives_nan():
    x = np.array([1.0, 2.0, 3.0]).reshape(1, 3, 1)
    w = np.array([np.inf, 1.0, 0.0]).reshape(3, 1, 1)
    y = conv_call(x, w, (1,), ((1, 1),), (1,)).ravel()
    # y[0] = 0*Inf + 1*1 + 2*0 (padded tap: NaN); y[1] = 1*Inf + 2 + 0; y[2] = 2*Inf + 3 + 0*0
    assert np.isnan(y[0]) and y[1] == np.inf and y[2] == np.inf


def test_infinite_weight_on_a_padded_depthwise_tap_gives_nan():
    x = np.array([1.0, 2.0, 3.0]).reshape(1, 3, 1)
    w = np.array([np.inf, 1.0, 0.0]).reshape(3, 1, 1)
    y = engine_calls.depthwise_conv(eng, x, w, None, strides=(1,), padding=((1, 1),), dilation=(1,), channels_last=True,
                           activation=None).ravel()
    assert np.isnan(y[0]) and y[1] == np.inf and y[2] == np.inf


def test_nan_input_poisons_only_the_outputs_that_read_it():
    x = np.zeros((1, 7, 1))
    x[0, 3, 0] = np.nan
    w = np.ones((3, 1, 1))
    y = conv_call(x, w, (1,), ((0, 0),), (1,)).ravel()  # valid: outputs 0..4 read 3 when 1 <= o <= 3
    np.testing.assert_array_equal(np.isnan(y), [False, True, True, True, False])
    yt = engine_calls.conv_transpose(eng, x, w, None, strides=(2,), dilation=(1,), groups=1, out_spatial=(15,), crop=(0,),
                            channels_last=True, activation=None).ravel()
    np.testing.assert_array_equal(np.flatnonzero(np.isnan(yt)), [6, 7, 8])  # i*s + t = 6 + {0, 1, 2}


def test_max_pool_ignores_padded_cells_and_average_counts_real_ones():
    x = np.array([-5.0, -3.0, -4.0]).reshape(1, 3, 1)
    ymax = engine_calls.pool(eng, x, mode="max", pool_size=(2,), strides=(1,), padding=((0, 1),), channels_last=True)
    np.testing.assert_array_equal(ymax.ravel(), [-3.0, -3.0, -4.0])  # a zero pad would give 0 last
    yavg = engine_calls.pool(eng, x, mode="average", pool_size=(3,), strides=(1,), padding=((1, 1),), channels_last=True)
    np.testing.assert_allclose(yavg.ravel(), [-4.0, -4.0, -3.5])


@pytest.mark.parametrize("mode", ["max", "average"])
@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("dtype", ["float16", "float64"])
def test_non_overlapping_pooling_shortcut_equals_the_window_loop(rng, mode, channels_last, dtype):
    """strides == pool_size without padding takes a reshape-and-reduce shortcut (tail cells that
    fit no window dropped); it must agree with the general tap loop, which a 'same' padding of
    zero width cannot trigger, so compare against stride == pool_size written as two steps."""
    x = rng.standard_normal((2, 7, 9, 3) if channels_last else (2, 3, 7, 9)).astype(dtype)
    kw = dict(mode=mode, pool_size=(2, 3), padding=((0, 0), (0, 0)), channels_last=channels_last)
    fast = engine_calls.pool(eng, x, strides=(2, 3), **kw)
    # the same windows taken with stride 1 (tap loop), then every 2nd / 3rd output
    dense = engine_calls.pool(eng, x, strides=(1, 1), **kw)
    sub = dense[:, ::2, ::3] if channels_last else dense[:, :, ::2, ::3]
    assert fast.dtype == np.dtype(dtype) and fast.shape == sub.shape
    rtol = 1e-3 if dtype == "float16" else 1e-14
    np.testing.assert_allclose(fast.astype(np.float64), sub.astype(np.float64), rtol=rtol)


@pytest.mark.parametrize("mode", ["max", "average"])
@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("strides,padding", [((2, 2), ((0, 0), (0, 0))), ((1, 2), ((1, 0), (0, 1)))])
def test_pooling_in_threaded_batch_slices_is_bitwise_one_slice(rng, monkeypatch, mode, channels_last, strides, padding):
    from gpuconv.cpu import _parallel, pooling

    x = rng.standard_normal((5, 6, 7, 3) if channels_last else (5, 3, 6, 7)).astype(np.float32)
    kw = dict(mode=mode, pool_size=(2, 2), strides=strides, padding=padding, channels_last=channels_last)
    whole = engine_calls.pool(eng, x, **kw)
    monkeypatch.setattr(pooling, "_THREADED_READS", 0)
    monkeypatch.setattr(_parallel, "NUM_THREADS", 3)
    calls = []
    real_run = _parallel.run
    monkeypatch.setattr(_parallel, "run", lambda fn, pieces: (calls.append(len(list(pieces))), real_run(fn, pieces))[1])
    sliced = engine_calls.pool(eng, x, **kw)
    assert calls and calls[0] == 3
    assert sliced.tobytes() == whole.tobytes()


@pytest.mark.parametrize("strides", [(2,), (1,)])  # the tiled shortcut and the tap loop
def test_max_pool_propagates_nan(strides):
    x = np.array([1.0, np.nan, 3.0, 4.0]).reshape(1, 4, 1)
    y = engine_calls.pool(eng, x, mode="max", pool_size=(2,), strides=strides, padding=((0, 0),), channels_last=True).ravel()
    assert np.isnan(y[0]) and y[-1] == 4.0


# --------------------------------------------------------------------------------------------
# The transposed conv scatter: crop rule, untouched cells, groups, both layouts, ranks
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("rank,strides,dilation,ksize,in_sp,out_sp,crop,groups", [
    (1, (3,), (1,), (2,), (4,), (12,), (0,), 1),        # s > k: gaps no tap reaches stay 0
    (1, (2,), (1,), (2,), (3,), (7,), (0,), 1),         # k == s, but one cell past the full length
    (2, (2, 2), (1, 1), (2, 2), (3, 4), (6, 8), (0, 0), 2),  # k == s: every cell written once
    (2, (2, 3), (1, 1), (2, 3), (3, 2), (5, 5), (1, 0), 1),  # k == s with a crop
    (1, (2,), (1,), (3,), (5,), (10,), (0,), 2),        # output_padding past the full length
    (1, (1,), (2,), (3,), (4,), (4,), (2,), 1),         # dilated 'same': crop on both sides
    (2, (2, 3), (1, 1), (4, 2), (3, 2), (6, 6), (1, 0), 1),
    (3, (2, 1, 1), (1, 1, 2), (2, 1, 2), (2, 3, 2), (4, 3, 4), (0, 0, 1), 2),
])
@pytest.mark.parametrize("channels_last", [True, False])
def test_conv_transpose_matches_the_scatter_definition(rng, rank, strides, dilation, ksize, in_sp, out_sp, crop,
                                                      groups, channels_last):
    x = rng.standard_normal((2, *in_sp, 2 * groups))
    w = rng.standard_normal((*ksize, 3, 2 * groups))
    b = rng.standard_normal(3 * groups)
    want = loop_conv_transpose(x, w, strides, dilation, out_sp, crop, groups) + b
    xin = x if channels_last else to_first(x)
    got = engine_calls.conv_transpose(eng, xin, w, b, strides=strides, dilation=dilation, groups=groups, out_spatial=out_sp,
                             crop=crop, channels_last=channels_last, activation=None)
    got = got if channels_last else to_last(got)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_conv_transpose_gap_cells_hold_exactly_the_bias():
    x = np.ones((1, 3, 1))
    w = np.ones((1, 1, 1))
    y = engine_calls.conv_transpose(eng, x, w, np.array([0.5]), strides=(3,), dilation=(1,), groups=1, out_spatial=(9,),
                           crop=(0,), channels_last=True, activation=None).ravel()
    np.testing.assert_array_equal(y, [1.5, 0.5, 0.5] * 3)


# --------------------------------------------------------------------------------------------
# Forward conv paths: im2col, 1x1 without im2col, groups, depthwise routing
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("rank,ksize,strides,dilation,padding,groups", [
    (1, (3,), (2,), (1,), ((2, 1),), 1),
    (1, (1,), (1,), (1,), ((0, 0),), 2),          # 1x1 without im2col
    (2, (2, 3), (1, 1), (2, 1), ((1, 0), (1, 1)), 3),
    (2, (1, 1), (2, 2), (1, 1), ((0, 0), (0, 0)), 1),
    (3, (2, 2, 1), (1, 2, 1), (1, 1, 1), ((0, 1), (1, 1), (0, 0)), 1),
])
def test_conv_matches_the_loop_reference(rng, channels_last, rank, ksize, strides, dilation, padding, groups):
    x = rng.standard_normal((2, *(5,) * rank, 2 * groups))
    w = rng.standard_normal((*ksize, 2, 2 * groups))
    want = loop_conv(x, w, strides, padding, dilation)
    xin = x if channels_last else to_first(x)
    got = conv_call(xin, w, strides, padding, dilation, channels_last)
    got = got if channels_last else to_last(got)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("c_group", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("rank,groups,strides", [(1, 1, (2,)), (2, 2, (1, 1)), (2, 1, (2, 1)), (3, 3, (1, 2, 1))])
def test_channels_last_columns_are_the_patch_order_im2col_whichever_way_gathered(rng, c_group, rank, groups, strides):
    """Few channels per group are gathered tap-major (a transposed view); the matrix must be
    the same, element for element, as the patch-order reshape of the window view."""
    from gpuconv.cpu import conv as cpu_conv
    from gpuconv.cpu._windows import windows

    xs = rng.standard_normal((groups, 2) + (7,) * rank + (c_group,))
    ksize = (3, 2, 2)[:rank]
    view = np.moveaxis(windows(xs, tuple(range(2, rank + 2)), ksize, strides, (1,) * rank), rank + 2, -1)
    m = 2 * math.prod(view.shape[2:rank + 2])
    want = view.reshape(groups, m, -1)
    got = cpu_conv.channels_last_columns(memory.Scratch(xs.dtype), view, rank, m)
    assert got.shape == want.shape and np.array_equal(got, want)
    assert got.flags.c_contiguous == (c_group >= cpu_conv._TAP_MAJOR_BELOW_CHANNELS)


@pytest.mark.parametrize("threads", [1, 2, 3, 8])
@pytest.mark.parametrize("rank,strides", [(1, (1,)), (1, (2,)), (2, (1, 1)), (2, (2, 1)), (2, (1, 2)), (3, (1, 1, 1))])
def test_depthwise_threaded_pieces_cover_the_whole_output(rng, monkeypatch, threads, rank, strides):
    """Batch and row pieces (more threads than batch items, rows split between them) compute every
    output exactly once, for the flat-row path (last stride 1) and the window path."""
    force_threads(monkeypatch, threads)
    x = rng.standard_normal((2,) + (7, 5, 4)[:rank] + (3,))
    w = rng.standard_normal((3, 2, 2)[:rank] + (3, 2))
    padding = ((1, 1), (0, 1), (1, 0))[:rank]
    dilation = (1,) * rank
    want = loop_conv(x, w.reshape(w.shape[:rank] + (1, 6)), strides, padding, dilation)
    for channels_last in (True, False):
        for xin in (x[:1], x):
            xin = xin if channels_last else to_first(xin)
            got = engine_calls.depthwise_conv(eng, xin, w, None, strides=strides, padding=padding, dilation=dilation,
                                     channels_last=channels_last, activation=None)
            got = got if channels_last else to_last(got)
            np.testing.assert_allclose(got, want[:got.shape[0]], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("block_bytes,tiled_row", [(1, 8192), (600, 7), (1 << 30, 1)])
@pytest.mark.parametrize("rank,strides,dilation,padding", [
    (1, (1,), (1,), ((2, 1),)),
    (1, (2,), (1,), ((0, 2),)),
    (1, (1,), (3,), ((4, 2),)),
    (2, (1, 1), (1, 1), ((1, 1), (0, 2))),
    (2, (2, 2), (1, 1), ((2, 1), (1, 1))),   # phases on the last axis
    (2, (3, 1), (2, 1), ((0, 0), (0, 0))),   # no padding: blocks are views of the input
    (3, (1, 2, 1), (1, 1, 2), ((1, 0), (1, 1), (2, 2))),
])
def test_depthwise_row_blocks_equal_the_loop_reference(rng, monkeypatch, block_bytes, tiled_row, rank, strides,
                                                       dilation, padding):
    """The einsum path cuts the output into blocks of rows of the first spatial axis (one row per
    block with a 1-byte budget), each built from the padded input rows it reads (the halo is read
    twice); channels_first is transposed per block. Within a block the flat rows are folded into
    rows of q positions (q = 1; q = 3 with a remainder) or not at all; channels_first blocks are
    transposed whole or in groups of channels. Every output, with depth multiplier 2, in both
    layouts, from float16 (cast in the block), equals the float64 loop."""
    from gpuconv.cpu import depthwise

    force_threads(monkeypatch, 2)
    monkeypatch.setattr(depthwise, "_ROWS_BLOCK_BYTES", block_bytes)
    monkeypatch.setattr(depthwise, "_TILED_ROW_ELEMENTS", tiled_row)
    # channels_first blocks transposed in groups of 2 channels (3 = a group and a remainder)
    monkeypatch.setattr(depthwise, "_FAR_CHANNEL_BYTES", 0 if tiled_row == 7 else 1 << 40)
    monkeypatch.setattr(depthwise, "_CHANNEL_GROUP", 2)
    x = rng.standard_normal((2,) + (9, 6, 5)[:rank] + (3,))
    w = rng.standard_normal((3, 2, 3)[:rank] + (3, 2))
    for dtype, tol in (("float64", 1e-12), ("float16", 2e-3)):
        xd, wd = x.astype(dtype), w.astype(dtype)
        want = loop_conv(xd.astype(np.float64), wd.astype(np.float64).reshape(w.shape[:rank] + (1, 6)), strides,
                         padding, dilation)
        for channels_last in (True, False):
            got = engine_calls.depthwise_conv(eng, xd if channels_last else to_first(xd), wd, None, strides=strides,
                                     padding=padding, dilation=dilation, channels_last=channels_last,
                                     activation=None)
            got = got if channels_last else to_last(got)
            assert got.dtype == dtype
            np.testing.assert_allclose(got.astype(np.float64), want, rtol=tol, atol=tol)


@pytest.mark.parametrize("block_bytes", [1, 1 << 30])
@pytest.mark.parametrize("rank,strides,dilation,padding", [
    (1, (1,), (1,), ((3, 0),)),                         # causal
    (1, (2,), (2,), ((2, 3),)),                         # stride and dilation on the last axis
    (2, (1, 1), (1, 1), ((1, 1), (0, 2))),              # rows merge into one flat run
    (2, (2, 1), (1, 2), ((2, 1), (2, 2))),              # strided rows: no merge
    (2, (1, 3), (2, 1), ((0, 0), (0, 0))),
    (3, (1, 1, 2), (1, 2, 1), ((1, 0), (2, 2), (1, 1))),
])
def test_depthwise_shifted_planes_equal_the_loop_reference(rng, monkeypatch, block_bytes, rank, strides, dilation,
                                                           padding):
    """channels_first depthwise over per-tap shifted copies of the planes (forced on for these
    small maps), one channel per block or all at once: with depth multiplier 2, from float16
    and float64, from a contiguous input and from one with a negative stride, every output
    equals the float64 loop, and the path actually ran."""
    from gpuconv.cpu import depthwise_planes

    force_threads(monkeypatch, 2)
    monkeypatch.setattr(depthwise_planes, "MIN_RUN", 0)
    monkeypatch.setattr(depthwise_planes, "BLOCK_BYTES", block_bytes)
    calls = []
    real = depthwise_planes._contract
    monkeypatch.setattr(depthwise_planes, "_contract", lambda *a: calls.append(1) or real(*a))
    x = rng.standard_normal((2,) + (6, 7, 9)[-rank:] + (3,))
    w = rng.standard_normal((2, 3, 4)[-rank:] + (3, 2))
    for dtype, tol in (("float64", 1e-12), ("float16", 2e-3)):
        xd, wd = x.astype(dtype), w.astype(dtype)
        want = loop_conv(xd.astype(np.float64), wd.astype(np.float64).reshape(w.shape[:rank] + (1, 6)), strides,
                         padding, dilation)
        reversed_copy = np.ascontiguousarray(to_first(xd)[..., ::-1])
        for xin in (to_first(xd), reversed_copy[..., ::-1]):  # the second has a negative last stride
            got = engine_calls.depthwise_conv(eng, xin, wd, None, strides=strides, padding=padding, dilation=dilation,
                                     channels_last=False, activation=None)
            assert got.dtype == dtype and got.flags.c_contiguous
            np.testing.assert_allclose(to_last(got).astype(np.float64), want, rtol=tol, atol=tol)
    assert calls


def test_shifted_planes_only_where_the_flat_run_is_long():
    from gpuconv.cpu.depthwise_planes import MIN_RUN, planes_pay

    same = ((1, 1), (1, 1))
    assert planes_pay((56, 56), (3, 3), (1, 1), same, (1, 1))          # 3136 outputs per run
    assert not planes_pay((14, 14), (3, 3), (1, 1), same, (1, 1))      # 196
    assert not planes_pay((56, 56), (3, 3), (2, 2), same, (1, 1))      # strided rows: runs of 28
    assert planes_pay((MIN_RUN,), (3,), (1,), ((1, 1),), (1,))


@pytest.mark.parametrize("threshold", ["always", "never"])
@pytest.mark.parametrize("rank,ksize,strides,dilation,padding,groups", [
    (2, (3, 3), (1, 1), (1, 1), ((1, 1), (1, 1)), 1),
    (2, (2, 3), (1, 1), (2, 1), ((0, 1), (1, 1)), 2),
    (2, (3, 2), (1, 1), (1, 2), ((0, 0), (0, 0)), 1),     # unpadded: the input itself is read
    (3, (2, 3, 3), (2, 1, 1), (1, 1, 1), ((0, 0), (1, 1), (1, 1)), 2),
])
def test_channels_first_flat_planes_equal_the_loop_reference(rng, monkeypatch, threshold, rank, ksize, strides,
                                                             dilation, padding, groups):
    """channels_first with stride 1 on the last two axes may compute each output row over the
    padded width (flat planes, taps as constant shifts) and drop the extra columns; with it
    forced on or off the result equals the loop, for batch 1 and 3 (the batch-folded GEMM)."""
    from gpuconv.cpu import conv as convolution

    calls = []
    real = convolution._conv_channels_first_flat
    monkeypatch.setattr(convolution, "_conv_channels_first_flat", lambda *a: calls.append(1) or real(*a))
    monkeypatch.setattr(convolution, "_FLAT_PLANE_MAX_ROW", 10**9 if threshold == "always" else 0)
    monkeypatch.setattr(convolution, "_FLAT_PLANE_MAX_WASTE", 10.0)
    for batch in (1, 3):
        x = rng.standard_normal((batch,) + (5, 7, 6)[-rank:] + (4,))
        w = rng.standard_normal(ksize + (4 // groups, 6))
        want = loop_conv(x, w, strides, padding, dilation)
        got = conv_call(to_first(x), w, strides, padding, dilation, channels_last=False)
        np.testing.assert_allclose(to_last(got), want, rtol=1e-12, atol=1e-12)
        assert got.flags.c_contiguous
    assert bool(calls) == (threshold == "always")


def test_flat_planes_are_not_used_on_a_sliced_region():
    """The padding-free regions slice the padded input; their rows are not one flat run, so the
    flat-plane view must not be built on them (it would read the wrong elements)."""
    from gpuconv.cpu import conv as convolution

    xp = np.zeros((1, 2, 12, 12))
    assert convolution._flat_plane_pays(xp, (3, 3), 8, (1, 1), (1, 1))
    assert not convolution._flat_plane_pays(xp[:, :, 2:9, 1:8], (3, 3), 8, (1, 1), (1, 1))
    assert not convolution._flat_plane_pays(xp, (3, 3), 8, (1, 2), (1, 1))


# --------------------------------------------------------------------------------------------
# Skipping taps that read only padding (large dilation, 'same'), and the grouped gather
# --------------------------------------------------------------------------------------------
def _reads_input(o, t, length, s, d, before):
    return 0 <= o * s + t * d - before < length


@pytest.mark.parametrize("lengths,ksize,strides,padding,dilation", [
    ((32, 32), (3, 3), (1, 1), ((12, 12), (12, 12)), (12, 12)),   # DeepLab ASPP (bench row D9)
    ((9,), (3,), (1,), ((4, 4),), (4,)),
    ((9, 7), (3, 2), (2, 1), ((4, 4), (3, 0)), (4, 3)),
])
def test_padding_free_regions_tile_the_output_with_exactly_the_taps_that_read_input(
        lengths, ksize, strides, padding, dilation):
    from gpuconv.cpu.conv import padding_free_regions
    from gpuconv.cpu._windows import output_length

    regions = padding_free_regions(lengths, ksize, strides, padding, dilation)
    assert regions is not None
    out_sp = [output_length(n + b + a, k, s, d) for n, k, s, (b, a), d in zip(lengths, ksize, strides, padding, dilation)]
    seen = np.zeros(out_sp, int)
    for out_slices, tap_slices in regions:
        seen[out_slices] += 1
        for i, (o_sl, t_sl) in enumerate(zip(out_slices, tap_slices)):
            args = (lengths[i], strides[i], dilation[i], padding[i][0])
            for o in range(o_sl.start, o_sl.stop):
                kept = [t for t in range(ksize[i]) if _reads_input(o, t, *args)]
                assert kept == list(range(t_sl.start, t_sl.stop))
    np.testing.assert_array_equal(seen, 1)


@pytest.mark.parametrize("lengths,ksize,strides,padding,dilation", [
    ((14, 14), (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)),          # 3x3 'same': border rows only
    ((7, 7), (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)),
    ((224, 224), (7, 7), (2, 2), ((2, 3), (2, 3)), (1, 1)),         # ResNet stem
    ((5,), (3,), (1,), ((0, 0),), (1,)),                            # 'valid': nothing to skip
])
def test_padding_free_regions_are_not_used_where_they_save_little(lengths, ksize, strides, padding, dilation):
    from gpuconv.cpu.conv import padding_free_regions

    assert padding_free_regions(lengths, ksize, strides, padding, dilation) is None


def _count_region_calls(monkeypatch):
    from gpuconv.cpu import conv as convolution

    calls = []
    real = convolution._conv_by_regions
    monkeypatch.setattr(convolution, "_conv_by_regions", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("rank,groups", [(1, 1), (2, 1), (2, 2)])
def test_conv_skipping_padding_only_taps_equals_the_loop_reference(rng, monkeypatch, tiny_budget, channels_last,
                                                                   rank, groups):
    calls = _count_region_calls(monkeypatch)
    x = rng.standard_normal((2,) + (9, 8)[:rank] + (2 * groups,))
    w = rng.standard_normal((3, 3)[:rank] + (2, 3 * groups))
    strides, padding, dilation = (1, 1)[:rank], ((4, 4), (4, 4))[:rank], (4, 4)[:rank]
    want = loop_conv(x, w, strides, padding, dilation)
    got = conv_call(x if channels_last else to_first(x), w, strides, padding, dilation, channels_last)
    got = got if channels_last else to_last(got)
    assert calls, "a 3-tap kernel with dilation 4 on 9 cells should skip its padding-only taps"
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("channels_last", [True, False])
def test_infinite_weight_on_a_skippable_tap_still_gives_nan(monkeypatch, channels_last):
    """0 * Inf = NaN at padded taps: an infinite kernel value turns the skipping off."""
    calls = _count_region_calls(monkeypatch)
    x = np.arange(1.0, 10.0).reshape(1, 9, 1)
    w = np.ones((3, 1, 1))
    w[0, 0, 0] = np.inf  # tap 0 reads padding for outputs 0..3 (o - 4 < 0), real input after
    with np.errstate(invalid="ignore"):
        want = loop_conv(x, w, (1,), ((4, 4),), (4,))
    assert np.isnan(want).sum() == 4
    got = conv_call(x if channels_last else to_first(x), w, (1,), ((4, 4),), (4,), channels_last)
    got = got if channels_last else to_last(got)
    assert not calls
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("padding", [((0, 0), (0, 0)), ((1, 1), (0, 1))])
def test_grouped_channels_last_gather_from_a_strided_input(rng, padding):
    """The group-major copy of the input also serves an unpadded, non-contiguous input (which the
    engine reads in place)."""
    x = rng.standard_normal((2, 6, 10, 12))[:, :, ::2]
    w = rng.standard_normal((2, 3, 3, 8))  # groups = 4
    want = loop_conv(x, w, (1, 2), padding, (1, 1))
    got = conv_call(x, w, (1, 2), padding, (1, 1))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------------------------
# Input strides and immutability
# --------------------------------------------------------------------------------------------
def _odd_layouts(a):
    """Views of the same values with non-contiguous, negative and zero strides."""
    wide = np.repeat(a[..., None], 2, axis=-1)[..., 0]               # non-contiguous
    flipped = np.flip(np.flip(a, axis=-1).copy(), axis=-1)            # negative strides
    fortran = np.asfortranarray(a)
    yield "noncontiguous", wide
    yield "negative", flipped
    yield "fortran", fortran


def _run_all_ops(x, k, kt, dk, pk):
    one = ((1, 1), (1, 1))
    return [
        conv_call(x, k, (1, 1), one, (1, 1)),
        engine_calls.conv_transpose(eng, x, kt, None, strides=(2, 1), dilation=(1, 1), groups=1, out_spatial=(9, 5), crop=(1, 0),
                           channels_last=True, activation=None),
        engine_calls.depthwise_conv(eng, x, dk, None, strides=(1, 1), padding=one, dilation=(1, 1), channels_last=True,
                           activation=None),
        engine_calls.separable_conv(eng, x, dk, pk, None, strides=(1, 1), padding=one, dilation=(1, 1), channels_last=True,
                           activation=None),
        engine_calls.pool(eng, x, mode="max", pool_size=(3, 3), strides=(1, 1), padding=one, channels_last=True),
        engine_calls.pool(eng, x, mode="average", pool_size=(3, 3), strides=(1, 1), padding=one, channels_last=True),
        engine_calls.locally_connected(eng, x, np.ones((12, 2 * 2 * 4, 2)), None, kernel_size=(2, 2), strides=(1, 1),
                              padding=((0, 0), (0, 0)), out_spatial=(3, 4), channels_last=True, activation=None),
        engine_calls.upsample(eng, x, size=(2, 3), interpolation="bilinear", channels_last=True),
        engine_calls.upsample(eng, x, size=(2, 3), interpolation="nearest", channels_last=True),
    ]


def test_any_input_strides_give_the_contiguous_result_and_inputs_stay_unchanged(rng):
    x = rng.standard_normal((2, 4, 5, 4))
    k = rng.standard_normal((3, 3, 4, 3))
    kt = rng.standard_normal((3, 2, 3, 4))
    dk = rng.standard_normal((3, 3, 4, 2))
    pk = rng.standard_normal((1, 1, 8, 3))
    want = _run_all_ops(x, k, kt, dk, pk)
    for label, xv in itertools.chain(_odd_layouts(x), [("broadcast", np.broadcast_to(x[:1], x.shape))]):
        target = x if label != "broadcast" else np.broadcast_to(x[:1], x.shape)
        expected = want if label != "broadcast" else _run_all_ops(np.ascontiguousarray(target), k, kt, dk, pk)
        before = np.array(xv, copy=True)
        got = _run_all_ops(xv, k, kt, dk, pk)
        np.testing.assert_array_equal(xv, before, err_msg=f"{label}: input mutated")
        for g, e in zip(got, expected):
            np.testing.assert_allclose(g, e, rtol=1e-13, atol=1e-13, err_msg=label)
    for label, kv in _odd_layouts(k):
        np.testing.assert_allclose(conv_call(x, kv, (1, 1), ((1, 1), (1, 1)), (1, 1)), want[0], rtol=1e-13,
                                   atol=1e-13, err_msg=label)


def test_results_never_alias_the_input(rng):
    x = rng.standard_normal((1, 4, 4, 3))
    y = conv_call(x, np.eye(3).reshape(1, 1, 3, 3), (1, 1), ((0, 0), (0, 0)), (1, 1))  # 1x1: no im2col copy
    np.testing.assert_allclose(y, x)
    assert not np.shares_memory(y, x)
    up = engine_calls.upsample(eng, x, size=(1, 1), interpolation="nearest", channels_last=True)
    assert not np.shares_memory(up, x)


# --------------------------------------------------------------------------------------------
# Upsampling and locally connected layouts
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("values,want", [
    ([1.0, 2.0], [1.0, 1.25, 1.75, 2.0]),
    ([1.0, 2.0, 3.0], [1.0, 1.25, 1.75, 2.25, 2.75, 3.0]),
])
def test_bilinear_uses_half_pixel_centres_and_clamps_edges(values, want):
    x = np.array(values).reshape(1, 1, -1, 1)
    y = engine_calls.upsample(eng, x, size=(1, 2), interpolation="bilinear", channels_last=True)
    np.testing.assert_allclose(y.ravel(), want)
    z = engine_calls.upsample(eng, x.reshape(1, 1, 1, -1, 1), size=(1, 1, 2), interpolation="trilinear", channels_last=True)
    np.testing.assert_allclose(z.ravel(), want)


def test_locally_connected_channels_first_flattens_patches_channel_major(rng):
    x = rng.standard_normal((2, 3, 4))  # (N, L, C) channels_last
    kernel = rng.standard_normal((2, 2 * 4, 5))  # 2 positions, k=2, C=4
    y_last = engine_calls.locally_connected(eng, x, kernel, None, kernel_size=(2,), strides=(2,), padding=((0, 1),),
                                   out_spatial=(2,), channels_last=True, activation=None)
    # the same weights in channels_first order: rows (C, k) instead of (k, C)
    kernel_first = kernel.reshape(2, 2, 4, 5).transpose(0, 2, 1, 3).reshape(2, 8, 5)
    y_first = engine_calls.locally_connected(eng, to_first(x), kernel_first, None, kernel_size=(2,), strides=(2,),
                                    padding=((0, 1),), out_spatial=(2,), channels_last=False, activation=None)
    np.testing.assert_allclose(to_last(y_first), y_last, rtol=1e-13)
    xp = np.pad(x, [(0, 0), (0, 1), (0, 0)])
    want = np.stack([xp[:, 2 * p:2 * p + 2].reshape(2, 8) @ kernel[p] for p in range(2)], axis=1)
    np.testing.assert_allclose(y_last, want, rtol=1e-13)


# --------------------------------------------------------------------------------------------
# Fused activations
# --------------------------------------------------------------------------------------------
def test_fused_activations_are_exact_and_quiet():
    x = np.array([-1000.0, -20.0, 0.0, 3.0, 1000.0, np.nan]).reshape(1, 6, 1)
    w = np.ones((1, 1, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warnings from exp
        relu = conv_call(x, w, (1,), ((0, 0),), (1,), activation="relu").ravel()
        sig = conv_call(x, w, (1,), ((0, 0),), (1,), activation="sigmoid").ravel()
        tanh = conv_call(x, w, (1,), ((0, 0),), (1,), activation="tanh").ravel()
    v = x.ravel()
    np.testing.assert_array_equal(relu, np.maximum(v, 0))
    np.testing.assert_allclose(sig[:5], [0.0, 1 / (1 + np.exp(20.0)), 0.5, 1 / (1 + np.exp(-3.0)), 1.0], rtol=1e-15)
    assert sig[1] > 0  # no cancellation to 0 for large negative inputs
    np.testing.assert_allclose(tanh, np.tanh(v))
    assert np.isnan(relu[5]) and np.isnan(sig[5]) and np.isnan(tanh[5])
    assert set(eng.FUSED_ACTIVATIONS) == {"relu", "sigmoid", "tanh"}


def test_thread_pool_is_recreated_in_a_forked_child(monkeypatch):
    """A pool inherited through fork has no threads behind it; the engine must not reuse it."""
    from gpuconv.cpu import _parallel

    first = _parallel._workers()
    monkeypatch.setattr(first, "pid", -1)  # as seen from a forked child
    second = _parallel._workers()
    assert second is not first
    assert _parallel._workers() is second


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="pinning needs Linux thread affinity and at least 2 CPUs")
@pytest.mark.parametrize("pin", [True, False])
def test_workers_are_pinned_to_distinct_cpus_of_the_affinity_mask(monkeypatch, pin):
    """Worker i runs on the i-th allowed CPU (GPUCONV_PIN_THREADS=0: anywhere the process may);
    the caller's own affinity is never changed."""
    from gpuconv.cpu import _parallel

    allowed = sorted(os.sched_getaffinity(0))
    monkeypatch.setattr(_parallel, "NUM_THREADS", 2)
    monkeypatch.setattr(_parallel, "PIN_THREADS", pin)
    seen = {}

    def piece(i):
        seen[i] = (threading.current_thread().name, sorted(os.sched_getaffinity(0)))

    _parallel.run(piece, range(4))
    assert sorted(os.sched_getaffinity(0)) == allowed
    names = {seen[i][0] for i in range(4)}
    assert names == {"gpuconv-cpu-0", "gpuconv-cpu-1"}
    for i in range(4):
        worker = int(seen[i][0].rsplit("-", 1)[1])
        assert worker == i % 2  # worker w runs pieces w, w + T, ..
        assert seen[i][1] == ([allowed[worker]] if pin else allowed)


@pytest.mark.parametrize("failing", [0, 3])
def test_parallel_run_finishes_every_piece_and_reraises(monkeypatch, failing):
    from gpuconv.cpu import _parallel

    monkeypatch.setattr(_parallel, "NUM_THREADS", 3)
    done = []

    def piece(i):
        if i == failing:
            raise ValueError(f"piece {i}")
        done.append(i)

    with pytest.raises(ValueError, match=f"piece {failing}"):
        _parallel.run(piece, range(5))
    assert sorted(done) == [i for i in range(5) if i != failing]


@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("dtype", ["float16", "float64"])
def test_epilogue_in_threaded_slabs_equals_one_slab(rng, monkeypatch, batch, channels_last, dtype):
    """Bias (per channel, or per position for locally connected), activation and the cast run on
    slabs cut along whichever axis is long enough (batch, channels or rows); the bias must line
    up with each slab exactly as with the whole array."""
    x = rng.standard_normal((batch, 6, 5, 3) if channels_last else (batch, 3, 6, 5)).astype(dtype)
    k = rng.standard_normal((3, 3, 3, 4)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)
    lk = rng.standard_normal((4 * 3, 2 * 2 * 3, 4)).astype(dtype)
    lb = rng.standard_normal((4, 3, 4)).astype(dtype)

    def run_ops():
        return [
            conv_call(x, k, (1, 1), ((1, 1), (1, 1)), (1, 1), channels_last, bias=b, activation="relu"),
            engine_calls.locally_connected(eng, x, lk, lb, kernel_size=(2, 2), strides=(2, 2), padding=((1, 1), (0, 1)),
                                  out_spatial=(4, 3), channels_last=channels_last, activation="tanh"),
        ]

    force_threads(monkeypatch, 1)
    want = run_ops()
    for threads in (2, 3, 5):
        force_threads(monkeypatch, threads)
        for got, expected in zip(run_ops(), want):
            assert got.dtype == expected.dtype
            np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("preset", [None, "9"])
def test_importing_gpuconv_first_sets_openblas_idle_threads_to_sleep_unless_the_user_chose(preset):
    """OpenBLAS reads OPENBLAS_THREAD_TIMEOUT once, when NumPy loads it: gpuconv sets 4 (idle
    BLAS threads sleep at once instead of spinning ~0.1 s beside the engine's own passes) before
    importing NumPy, and keeps a value the user set."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    if preset is not None:
        env["OPENBLAS_THREAD_TIMEOUT"] = preset
    # An import hook prints the variable at the moment NumPy starts loading.
    code = ("import os, sys\n"
            "class Spy:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'numpy':\n"
            "            print('at-numpy-import', os.environ.get('OPENBLAS_THREAD_TIMEOUT'))\n"
            "        return None\n"
            "sys.meta_path.insert(0, Spy())\n"
            "import gpuconv\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["at-numpy-import", preset or "4"]
