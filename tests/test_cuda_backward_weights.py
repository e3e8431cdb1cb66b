"""The CUDA engine's convolution weight gradient (``gpuconv/cuda/conv_backward.py``,
``kernels/conv_backward_weights.cu``) against an independent float64 reference.

The reference (:func:`weight_gradient_reference`) pads x with np.pad and, per tap, correlates
the strided window of x with dy (one einsum per tap and group): nothing of gpuconv's engines is
used. Where the NumPy engine already has ``conv_backward_weights``, the CUDA result is compared
with it too. The slice plan is tested as the pure function it is (no device).
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
from gpuconv.cuda import indexing


def weight_gradient_reference(problem, x, dy):
    """float64 dW of ``problem.kernel_shape`` for a 'conv' problem (x, dy in the problem's layout)."""
    x = np.asarray(x, np.float64)
    dy = np.asarray(dy, np.float64)
    if not problem.channels_last:
        x, dy = np.moveaxis(x, 1, -1), np.moveaxis(dy, 1, -1)
    xp = np.pad(x, ((0, 0), *problem.padding, (0, 0)))
    cg, fg = problem.channels_per_group, problem.filters_per_group
    dw = np.zeros(problem.kernel_shape)
    for t in itertools.product(*(range(k) for k in problem.kernel_size)):
        window = (slice(None),) + tuple(
            slice(ti * d, ti * d + (o - 1) * s + 1, s)
            for ti, d, o, s in zip(t, problem.dilation, problem.out_spatial, problem.strides))
        xs = xp[window]
        for grp in range(problem.groups):
            lead = tuple(range(xs.ndim - 1))  # batch and output positions: the reduction
            dw[t][:, grp * fg:(grp + 1) * fg] = np.tensordot(
                xs[..., grp * cg:(grp + 1) * cg], dy[..., grp * fg:(grp + 1) * fg], axes=(lead, lead))
    return dw


def _gpu(test):
    """The CUDA_MARKS of conftest on one test (the slice-plan tests need no device)."""
    for mark in CUDA_MARKS:
        test = mark(test)
    return test


def _problem(spatial, k, s, d, padding, groups, cpg, fpg, channels_last, dtype, batch=2):
    pads = g.conv_padding(spatial, k, s, d, padding)
    c = groups * cpg
    x = np.zeros((batch, *spatial, c) if channels_last else (batch, c, *spatial), dtype)
    w = np.zeros((*k, cpg, groups * fpg), dtype)
    return calls.conv_problem(x, w, None, strides=s, padding=pads, dilation=d, groups=groups,
                              channels_last=channels_last)


def _run(problem, rng):
    """(CUDA dW, float64 reference dW, x, dy) on rounded random inputs."""
    dtype = np.dtype(problem.dtype)
    x = random_array(rng, problem.input_shape).astype(dtype)
    dy = random_array(rng, problem.output_shape).astype(dtype)
    xp = gpu_xp()
    from gpuconv.cuda import engine as eng

    got = eng.conv_backward_weights(problem, xp.asarray(x), xp.asarray(dy))
    return got, weight_gradient_reference(problem, x, dy), x, dy


def _check(problem, rng):
    got, ref, x, dy = _run(problem, rng)
    assert got.shape == problem.kernel_shape and got.dtype == np.dtype(problem.dtype)
    assert_close(gpuconv.to_numpy(got), ref, problem.dtype)
    if hasattr(cpu, "conv_backward_weights"):
        numpy_engine = cpu.conv_backward_weights(problem, x.astype(np.float64), dy.astype(np.float64))
        assert_close(gpuconv.to_numpy(got), numpy_engine, problem.dtype)
    return got


# (spatial, kernel, strides, dilation, padding, groups, channels per group, filters per group)
CASES = [
    ((11,), (3,), (1,), (1,), "causal", 1, 3, 5),
    ((12,), (4,), (2,), (2,), "same", 2, 2, 3),
    ((9,), (2,), (3,), (1,), "valid", 1, 4, 20),
    ((6, 7), (3, 3), (1, 1), (1, 1), "same", 1, 3, 4),
    ((7, 8), (3, 2), (2, 1), (1, 2), "valid", 3, 2, 2),
    ((8, 6), (2, 3), (2, 2), (2, 1), "same", 2, 5, 24),
    ((4, 5, 4), (2, 3, 2), (1, 2, 1), (1, 1, 2), "same", 2, 2, 3),
    ((5, 4, 4), (3, 1, 2), (2, 1, 1), (1, 1, 1), "valid", 1, 3, 4),
]


@_gpu
@pytest.mark.parametrize("channels_last", [True, False], ids=["cl", "cf"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"r{len(c[0])}-{c[4]}-g{c[5]}-k{c[1]}-s{c[2]}-d{c[3]}")
def test_matches_reference_float32(case, channels_last, rng):
    _check(_problem(*case, channels_last, "float32"), rng)


@_gpu
@pytest.mark.parametrize("dtype", ["float16", "float64"])
@pytest.mark.parametrize("channels_last", [True, False], ids=["cl", "cf"])
@pytest.mark.parametrize("case", [CASES[1], CASES[4], CASES[6]], ids=["r1", "r2", "r3"])
def test_matches_reference_other_dtypes(case, channels_last, dtype, rng):
    _check(_problem(*case, channels_last, dtype), rng)


@_gpu
@pytest.mark.parametrize("dtype", ["float32", "float16", "float64"])
@pytest.mark.parametrize("channels_last", [True, False], ids=["cl", "cf"])
def test_int64_indices(dtype, channels_last, rng, monkeypatch):
    monkeypatch.setenv(indexing.FORCE_ENV, "int64")
    problem = _problem(*CASES[5], channels_last, dtype)
    _check(problem, rng)


@_gpu
def test_int64_instantiation_is_the_one_launched(rng, monkeypatch):
    from gpuconv.cuda import module_cache

    requested = []
    real = module_cache.get_function
    monkeypatch.setattr(module_cache, "get_function", lambda f, n: requested.append(n) or real(f, n))
    monkeypatch.setenv(indexing.FORCE_ENV, "int64")
    _check(_problem(*CASES[3], True, "float32"), rng)
    assert requested == [cb.name_expression(np.float32, True, "int64", 0), cb.sum_name(np.float32, "int64")]


def _long_problem(channels_last, dtype="float32"):
    # N = 4, 32 x 32 output: 4096 positions, 256 chunks: several slices on any device.
    return _problem((32, 32), (3, 3), (1, 1), (1, 1), "same", 1, 3, 4, channels_last, dtype, batch=4)


@_gpu
@pytest.mark.parametrize("channels_last", [True, False], ids=["cl", "cf"])
def test_long_reduction_sums_several_slices(channels_last, rng):
    from gpuconv.cuda import launch

    problem = _long_problem(channels_last)
    _, plan = cb.plan_launch(problem, "int32", launch.device_limits().sm_count)
    assert plan.slices >= 2
    _check(problem, rng)


@_gpu
def test_repeated_runs_are_bitwise_identical(rng):
    problem = _long_problem(True, "float16")
    x = random_array(rng, problem.input_shape).astype(np.float16)
    dy = random_array(rng, problem.output_shape).astype(np.float16)
    xp = gpu_xp()
    from gpuconv.cuda import engine as eng

    first = gpuconv.to_numpy(eng.conv_backward_weights(problem, xp.asarray(x), xp.asarray(dy)))
    second = gpuconv.to_numpy(eng.conv_backward_weights(problem, xp.asarray(x), xp.asarray(dy)))
    assert first.tobytes() == second.tobytes()
    assert_close(first, weight_gradient_reference(problem, x, dy), np.float16)


@_gpu
def test_refuses_other_problem_kinds(rng):
    problem = _problem(*CASES[3], True, "float32")
    xp = gpu_xp()
    x = xp.asarray(np.zeros(problem.input_shape, np.float32))
    dy = xp.asarray(np.zeros(problem.output_shape, np.float32))
    with pytest.raises(ValueError, match="'conv' problem"):
        cb.conv_backward_weights(problem.adjoint(), dy, x)
    with pytest.raises(ValueError, match="`dy`"):
        cb.conv_backward_weights(problem, x, x)


# ---------------------------------------------------------------------------------------------
# The slice plan (pure)
# ---------------------------------------------------------------------------------------------
def _covers(plan):
    starts = [s * plan.chunks_per_slice for s in range(plan.slices)]
    ends = [min(b + plan.chunks_per_slice, plan.chunks) for b in starts]
    return all(e > b for b, e in zip(starts, ends)) and ends[-1] == plan.chunks and starts[0] == 0


def test_plan_splits_a_long_reduction_to_fill_the_device():
    plan = cb.plan_slices(positions=4 * 32 * 32, output_tiles=1, sm_count=132, plane_bytes=108 * 4)
    assert plan.chunks == 256
    assert plan.slices == 256 // cb.MIN_CHUNKS_PER_SLICE  # capped by the shortest useful slice
    assert _covers(plan)


def test_plan_keeps_one_slice_when_the_tiles_fill_the_device():
    plan = cb.plan_slices(positions=10**6, output_tiles=1000, sm_count=108, plane_bytes=4 * 10**6)
    assert (plan.slices, plan.chunks_per_slice) == (1, plan.chunks)


def test_plan_follows_the_sm_count_and_never_leaves_a_slice_empty():
    for sms in (1, 2, 7, 80, 132):
        for positions in (1, 15, 16, 17, 1000, 4097, 123457):
            plan = cb.plan_slices(positions, 3, sms, 1024)
            assert _covers(plan), (sms, positions, plan)
            assert 1 <= plan.slices <= cb.MAX_SLICES
            assert plan.slices == 1 or plan.chunks_per_slice >= cb.MIN_CHUNKS_PER_SLICE
    small, big = cb.plan_slices(10**6, 2, 2, 1024), cb.plan_slices(10**6, 2, 132, 1024)
    assert small.slices == -(-2 * cb.CTAS_PER_SM // 2) and big.slices == cb.MAX_SLICES


def test_plan_bounds_the_workspace():
    plan = cb.plan_slices(10**7, 1, 132, cb.MAX_WORKSPACE_BYTES // 3)
    assert plan.slices == 3


def test_plan_is_deterministic():
    assert cb.plan_slices(4096, 2, 80, 4096) == cb.plan_slices(4096, 2, 80, 4096)


@pytest.mark.parametrize("name,value", [("positions", 0), ("output_tiles", -1), ("sm_count", 1.5),
                                        ("plane_bytes", True)])
def test_plan_rejects_bad_arguments(name, value):
    args = dict(positions=100, output_tiles=1, sm_count=2, plane_bytes=64)
    args[name] = value
    with pytest.raises(ValueError, match=f"`{name}`.*{value!r}"):
        cb.plan_slices(**args)


def test_registered_names_cover_every_dtype_layout_and_width():
    names = cb.instantiations()
    assert len(names) == len(set(names)) == 16 + 6
    assert "gc::conv_wgrad<gc::half, 1, long long, 0>" in names and "gc::wgrad_sum<double, int>" in names
