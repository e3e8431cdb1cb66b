"""The CUDA engine's depthwise kernel gradient (``gpuconv/cuda/depthwise_backward.py``,
``kernels/depthwise_backward_weights.cu``), reached through ``conv_backward_weights`` on the
grouped form of a depthwise problem (groups = C, one input channel per group), against the
NumPy engine on the same problem and an independent float64 loop.

Every GPU test also asserts that the depthwise kernel (not the tile engine's conv_wgrad) ran, by
a spy on ``module_cache.get_function``. The slice plan is tested as the pure function it is.
"""
import itertools

import engine_calls as calls
import numpy as np
import pytest

import gpuconv
from conftest import CUDA_MARKS, assert_close, gpu_xp, random_array
from gpuconv import geometry as g
from gpuconv.cpu import engine as cpu
from gpuconv.cuda import conv_backward as cb
from gpuconv.cuda import depthwise_backward as db
from gpuconv.cuda import indexing
from gpuconv.cuda import memory_bound as mb


def loop_reference(problem, x, dy):
    """float64 dW (*k, 1, C*dm) by explicit loops over taps, output channels and positions."""
    x = np.asarray(x, np.float64)
    dy = np.asarray(dy, np.float64)
    if not problem.channels_last:
        x, dy = np.moveaxis(x, 1, -1), np.moveaxis(dy, 1, -1)
    dm = problem.filters_per_group
    dw = np.zeros(problem.kernel_shape)
    for t in itertools.product(*(range(k) for k in problem.kernel_size)):
        for o in itertools.product(*(range(e) for e in problem.out_spatial)):
            i = [oi * s + ti * d - p for oi, s, ti, d, p in zip(o, problem.strides, t, problem.dilation,
                                                                  problem.pad_before)]
            if not all(0 <= v < e for v, e in zip(i, problem.in_spatial)):
                continue
            xs = x[(slice(None), *i)]          # (N, C)
            ys = dy[(slice(None), *o)]         # (N, C*dm)
            dw[t][0] += np.einsum("nc,ncm->cm", xs, ys.reshape(ys.shape[0], -1, dm)).reshape(-1)
    return dw


def _gpu(test):
    for mark in CUDA_MARKS:
        test = mark(test)
    return test


def _problem(spatial, k, s, d, padding, channels, dm, channels_last, dtype, batch=2):
    pads = g.conv_padding(spatial, k, s, d, padding)
    x = np.zeros((batch, *spatial, channels) if channels_last else (batch, channels, *spatial), dtype)
    w = np.zeros((*k, 1, channels * dm), dtype)
    problem = calls.conv_problem(x, w, None, strides=s, padding=pads, dilation=d, groups=channels,
                                 channels_last=channels_last)
    assert db.is_depthwise(problem)
    return problem


@pytest.fixture
def requested(monkeypatch):
    """The name expressions fetched from module_cache since the test began."""
    from gpuconv.cuda import module_cache

    names = []
    real = module_cache.get_function
    monkeypatch.setattr(module_cache, "get_function", lambda f, n: names.append(n) or real(f, n))
    return names


def _inputs(problem, rng):
    dtype = np.dtype(problem.dtype)
    return (random_array(rng, problem.input_shape).astype(dtype),
            random_array(rng, problem.output_shape).astype(dtype))


def _launch(problem, x, dy):
    """The CUDA engine's conv_backward_weights of host arrays x, dy, back on the host."""
    xp = gpu_xp()
    from gpuconv.cuda import engine as eng

    return gpuconv.to_numpy(eng.conv_backward_weights(problem, xp.asarray(x), xp.asarray(dy)))


def _run(problem, rng):
    x, dy = _inputs(problem, rng)
    return _launch(problem, x, dy), x, dy


def _check(problem, rng, requested, width="int32"):
    got, x, dy = _run(problem, rng)
    assert got.shape == problem.kernel_shape and got.dtype == np.dtype(problem.dtype)
    assert_close(got, loop_reference(problem, x, dy), problem.dtype)
    assert_close(got, cpu.conv_backward_weights(problem, x.astype(np.float64), dy.astype(np.float64)),
                 problem.dtype)
    vec = mb.vector_width(problem.dtype, problem.out_channels, problem.channels_last)
    assert requested == [db.name_expression(problem.dtype, width, vec), cb.sum_name(problem.dtype, width)]
    return got


# (spatial, kernel, strides, dilation, padding); channels 8 (a multiple of every V) or 3 (scalar)
CASES = [
    ((11,), (3,), (1,), (1,), "causal"),
    ((12,), (4,), (2,), (2,), "same"),
    ((9,), (2,), (3,), (1,), "valid"),
    ((6, 7), (3, 3), (1, 1), (1, 1), "same"),
    ((7, 8), (3, 2), (2, 1), (1, 2), "valid"),
    ((4, 5, 4), (2, 3, 2), (1, 2, 1), (1, 1, 2), "same"),
]
_IDS = [f"r{len(c[0])}-{c[4]}-k{c[1]}-s{c[2]}-d{c[3]}" for c in CASES]


@_gpu
@pytest.mark.parametrize("dm", [1, 2])
@pytest.mark.parametrize("channels", [8, 3], ids=["vector", "scalar"])
@pytest.mark.parametrize("channels_last", [True, False], ids=["cl", "cf"])
@pytest.mark.parametrize("case", CASES, ids=_IDS)
def test_matches_references_float32(case, channels_last, channels, dm, rng, requested):
    _check(_problem(*case, channels, dm, channels_last, "float32"), rng, requested)


@_gpu
@pytest.mark.parametrize("dtype", ["float16", "float64"])
@pytest.mark.parametrize("channels_last", [True, False], ids=["cl", "cf"])
@pytest.mark.parametrize("case", [CASES[1], CASES[3], CASES[5]], ids=["r1", "r2", "r3"])
def test_matches_references_other_dtypes(case, channels_last, dtype, rng, requested):
    _check(_problem(*case, 8, 2, channels_last, dtype), rng, requested)


@_gpu
@pytest.mark.parametrize("dtype", ["float32", "float16", "float64"])
@pytest.mark.parametrize("channels_last", [True, False], ids=["cl", "cf"])
def test_int64_indices(dtype, channels_last, rng, requested, monkeypatch):
    monkeypatch.setenv(indexing.FORCE_ENV, "int64")
    _check(_problem(*CASES[4], 8, 1, channels_last, dtype), rng, requested, width="int64")


def _long_problem(channels_last, dtype="float32"):
    # 4 x 16 x 16 = 1024 positions: several slices on any device.
    return _problem((16, 16), (3, 3), (1, 1), (1, 1), "same", 8, 1, channels_last, dtype, batch=4)


@_gpu
@pytest.mark.parametrize("channels_last", [True, False], ids=["cl", "cf"])
def test_long_reduction_sums_several_slices(channels_last, rng, requested):
    from gpuconv.cuda import launch

    problem = _long_problem(channels_last)
    plan = db.plan_launch(problem, launch.device_limits().sm_count)
    assert plan.slices >= 2
    _check(problem, rng, requested)


@_gpu
@pytest.mark.parametrize("cap", [1, 3, 33, 64])
@pytest.mark.parametrize("channels_last", [True, False], ids=["cl", "cf"])
def test_every_slice_count_sums_the_same_gradient(channels_last, cap, rng, requested, monkeypatch):
    from gpuconv.cuda import launch

    # Two channels (scalar path, 18 work items per slice): 1024 positions allow 64 slices.
    problem = _problem((16, 16), (3, 3), (1, 1), (1, 1), "same", 2, 1, channels_last, "float32", batch=4)
    sms = launch.device_limits().sm_count
    assert db.plan_launch(problem, sms).slices == 64
    monkeypatch.setattr(db, "MAX_SLICES", cap)
    slices = db.plan_launch(problem, sms).slices
    assert slices == (32 if cap == 33 and not channels_last else cap)  # channels_first: whole warps
    _check(problem, rng, requested)


@_gpu
@pytest.mark.parametrize("channels_last", [True, False], ids=["cl", "cf"])
def test_repeated_runs_are_bitwise_identical(channels_last, rng):
    problem = _long_problem(channels_last, "float16")
    x, dy = _inputs(problem, rng)
    first, second = _launch(problem, x, dy), _launch(problem, x, dy)
    assert first.tobytes() == second.tobytes()
    assert_close(first, loop_reference(problem, x, dy), np.float16)


@_gpu
def test_refuses_a_dense_problem():
    problem = calls.conv_problem(np.zeros((1, 5, 4), np.float32), np.zeros((3, 2, 4), np.float32), None,
                                 strides=(1,), padding=((1, 1),), dilation=(1,), groups=2, channels_last=True)
    xp = gpu_xp()
    x = xp.asarray(np.zeros(problem.input_shape, np.float32))
    dy = xp.asarray(np.zeros(problem.output_shape, np.float32))
    with pytest.raises(ValueError, match="channels_per_group=2"):
        db.depthwise_backward_weights(problem, x, dy)


# ---------------------------------------------------------------------------------------------
# The slice plan (pure)
# ---------------------------------------------------------------------------------------------
def test_plan_splits_a_long_reduction_to_fill_the_device():
    slices = db.plan_slices(positions=4096, work_items=9 * 2, sm_count=132, plane_bytes=9 * 8 * 4,
                            channels_last=True)
    assert slices == 4096 // db.MIN_POSITIONS_PER_SLICE


def test_plan_keeps_one_slice_when_the_work_items_fill_the_device():
    assert db.plan_slices(10**6, 10**6, 108, 4 * 10**6, True) == 1


def test_plan_channels_first_takes_whole_warps():
    for sms in (1, 7, 80, 132):
        for positions in (1, 31, 512, 4097, 123457):
            cf = db.plan_slices(positions, 9, sms, 1024, False)
            assert 1 <= cf <= min(positions, db.MAX_SLICES)
            assert cf < db.WARP or cf % db.WARP == 0, (sms, positions, cf)
            assert db.plan_slices(positions, 9, sms, 1024, True) >= cf


def test_plan_respects_the_workspace_budget():
    plane = db.MAX_WORKSPACE_BYTES // 3
    assert db.plan_slices(10**6, 1, 132, plane, True) == 3


def test_plan_rejects_bad_arguments():
    with pytest.raises(ValueError, match="sm_count=0"):
        db.plan_slices(10, 1, 0, 4, True)


def test_plan_vectorises_only_channels_last_multiples():
    cl = _problem((6, 7), (3, 3), (1, 1), (1, 1), "same", 8, 1, True, "float32")
    assert db.plan_launch(cl, 80).vec == 4
    assert db.plan_launch(cl, 80, pointers=(8,)).vec == 1
    cf = _problem((6, 7), (3, 3), (1, 1), (1, 1), "same", 8, 1, False, "float32")
    assert db.plan_launch(cf, 80).vec == 1
