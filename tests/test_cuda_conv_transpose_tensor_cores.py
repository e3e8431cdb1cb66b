"""The transposed convolution on tensor cores (gpuconv/cuda/conv_transpose_implicit_gemm.py):
its stride phases, each a stride-1 convolution on kernels/conv_implicit_gemm.cu storing its pixels
of the output in place.

Without a device: the decomposition itself (every output pixel in one phase, every tap in the
phase its residue names) and, on the NumPy engine, that the phases' convolutions scattered to
their pixels are the transposed convolution exactly; the table's routing. On the CUDA engine (the
cuda-emulator in CI, a GPU in bench/gpu_check.sh):
float16 and bfloat16 against the float64 oracle over ranks, strides, dilations, crops, output
padding, groups, channel counts that are and are not multiples of 8, phases no tap reaches, the
128 x 128 tile, forced split-K and channels_first, asserting the kernels fetched; a convolution's
input gradient on the same kernels, with and without a fused relu.
"""
import dataclasses
import itertools

import engine_calls as calls
import numpy as np
import pytest

from conftest import CUDA_MARKS, ON_EMULATOR, HostArrayDevice, assert_close, gpu_xp
from gpuconv import geometry as g
from gpuconv import problems
from gpuconv.cuda import algorithms, conv_implicit_gemm as igemm, conv_transpose_implicit_gemm as ct, device


class _Device:
    def __init__(self, cc="90", sm_count=132):
        self.compute_capability, self.sm_count = cc, sm_count


def _problem(spatial, c, f, k, s, d=None, padding="same", output_padding=None, groups=1, n=1, cl=True,
             dtype="float16", activation=None, bias=True):
    d = d or (1,) * len(spatial)
    out, crop = g.conv_transpose_geometry(spatial, k, s, d, padding, output_padding)
    return problems.ConvProblem(kind=problems.CONV_TRANSPOSE, batch=n, in_channels=c, out_channels=f,
                                in_spatial=tuple(spatial), out_spatial=tuple(out), kernel_size=tuple(k),
                                strides=tuple(s), dilation=tuple(d), pad_before=tuple(crop), groups=groups,
                                channels_last=cl, dtype=np.dtype(dtype), activation=activation, has_bias=bias)


# ---------------------------------------------------------------------------------------------
# The decomposition (no device)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("out_extent, k, s, d, crop", [
    (16, 4, 2, 1, 1), (256, 16, 8, 1, 4), (9, 3, 2, 2, 0), (12, 2, 3, 1, 0), (11, 5, 3, 2, 2), (7, 1, 4, 1, 0),
    (20, 3, 4, 6, 5), (3, 7, 5, 1, 6),
])
def test_axis_phases_cover_each_output_once_with_its_taps(out_extent, k, s, d, crop):
    phases = ct.axis_phases(out_extent, k, s, d, crop)
    assert len(phases) == s
    owner = {}
    for p in phases:
        outputs = [p.first + j * s for j in range(p.count)]
        assert all(0 <= o < out_extent for o in outputs)
        for o in outputs:
            assert o not in owner
            owner[o] = p
    assert sorted(owner) == list(range(out_extent))  # every output in exactly one phase
    for o, p in owner.items():
        # The taps that reach output o: t * d = o + crop (mod s), each from input (o + crop - t d) / s.
        reaching = [t for t in range(k) if (o + crop - t * d) % s == 0]
        taps = [p.first_tap + v * p.tap_step for v in range(p.taps)]
        assert taps == reaching
        j = (o - p.first) // s
        for v_conv, t in enumerate(reversed(taps)):  # the convolution's order: the last tap first
            assert j + v_conv * p.dilation - p.pad == (o + crop - t * d) // s
        assert list(range(k))[p.tap_index()] == list(reversed(taps))


def _scatter_of_phases(problem, x, w, b):
    """The transposed convolution as the phases compute it, on the NumPy engine: each phase's
    convolution (its kernel from ct.phase_kernel) stored to its pixels of y."""
    from gpuconv.cpu import engine as cpu

    y = np.full((problem.batch, *problem.out_spatial, problem.out_channels), np.nan)
    for phase in ct.phases(problem):
        kernel = ct.phase_kernel(w, phase, problem.groups)
        assert kernel.shape == phase.problem.kernel_shape
        if 0 in phase.problem.kernel_size:  # no tap reaches the phase: the bias alone
            part = np.broadcast_to(0.0 if b is None else b, (problem.batch, *phase.problem.out_spatial,
                                                             problem.out_channels))
        else:
            part = cpu.conv(phase.problem, x, kernel, b)
        index = (slice(None),) + tuple(slice(a.first, None, s) for a, s in zip(phase.axes, problem.strides))
        assert np.isnan(y[index]).all()  # no pixel written twice
        y[index] = part
    return y


@pytest.mark.parametrize("spatial, c, f, k, s, d, padding, output_padding, groups", [
    ((5, 6), 4, 6, (4, 4), (2, 2), None, "same", None, 1),
    ((7,), 6, 4, (16,), (8,), None, "valid", None, 1),
    ((4, 5), 4, 6, (3, 2), (2, 3), (2, 1), "valid", (1, 0), 1),
    ((3, 4), 6, 8, (2, 2), (3, 3), None, "valid", None, 2),   # k < s: phases no tap reaches
    ((3, 3, 2), 4, 6, (2, 3, 2), (2, 2, 1), None, "same", None, 1),
    ((6, 5), 4, 4, (5, 3), (3, 2), (2, 3), "same", (2, 1), 2),
])
def test_phases_compose_the_transposed_convolution_on_numpy(spatial, c, f, k, s, d, padding, output_padding,
                                                            groups, monkeypatch):
    from gpuconv.cpu import engine as cpu

    monkeypatch.setattr(device, "_active", HostArrayDevice())  # phase_kernel's copies on host arrays
    problem = dataclasses.replace(_problem(spatial, c, f, k, s, d, padding, output_padding, groups, n=2),
                                  dtype=np.dtype("float64"))
    rng = np.random.default_rng(3)
    x = rng.standard_normal(problem.input_shape)
    w = rng.standard_normal(problem.kernel_shape)
    b = rng.standard_normal((f,))
    np.testing.assert_allclose(_scatter_of_phases(problem, x, w, b), cpu.conv_transpose(problem, x, w, b),
                               rtol=1e-12, atol=1e-12)


def test_phases_refuse_a_forward_problem():
    forward = dataclasses.replace(_problem((4, 4), 8, 8, (2, 2), (2, 2)), kind=problems.CONV)
    with pytest.raises(ValueError, match="conv_transpose.*Received: kind='conv'"):
        ct.phases(forward)


def test_placement_strides_name_the_phase_pixels():
    problem = _problem((5, 6), 8, 16, (4, 4), (2, 2), n=3)  # y: 10 x 12
    for phase in ct.phases(problem):
        place = phase.placement
        assert place.strided
        yn, yd, yh, yw = place.pixel_strides
        assert (yn, yd, yh, yw) == (120, 120, 24, 2)  # 2-D runs as 3-D: a leading extent and stride of 1
        first_h, first_w = (a.first for a in phase.axes)
        assert place.first_pixel == first_h * 12 + first_w
        # The last pixel of the phase lies inside y.
        last = (3 - 1) * yn + place.first_pixel + (phase.problem.out_spatial[0] - 1) * yh + (
            phase.problem.out_spatial[1] - 1) * yw
        assert last < 3 * 120


def test_table_sends_16_bit_transposed_convolutions_to_tensor_cores(monkeypatch):
    choose = algorithms.choose_conv_transpose_algorithm  # one SM: any phase fills it (see the next test)
    p = _problem((8, 8), 64, 32, (4, 4), (2, 2))
    assert choose(p, np.float16, _Device(sm_count=1)).name == "phase_implicit_gemm"
    assert choose(p, "bfloat16", _Device("80", 1)).name == "phase_implicit_gemm"
    assert choose(dataclasses.replace(p, channels_last=False), np.float16, _Device(sm_count=1)).name == "phase_implicit_gemm"
    assert choose(p, np.float32, _Device(sm_count=1)).name == "phase_tiled"  # float32 stays exact on FFMA
    assert choose(p, np.float16, None).name == "phase_tiled"       # no device: no mma.sync
    assert choose(p, np.float16, _Device("75", 1)).name == "phase_tiled"
    assert choose(p, np.float16, _Device(sm_count=1), index_width="int64").name == "phase_tiled"
    narrow = _problem((8, 8), 64, 32, (2, 2), (2, 2), groups=4)    # 8 filters per group: the narrow FFMA tile
    assert choose(narrow, np.float16, _Device(sm_count=1)).name == "phase_tiled_narrow"
    monkeypatch.setenv(algorithms.OVERRIDE_ENV, "conv_transpose=phase_implicit_gemm")
    assert choose(narrow, np.float16, _Device(sm_count=1)).name == "phase_implicit_gemm"
    # The FFMA launcher's own choice ignores an override of a row it cannot launch.
    assert choose(narrow, np.float16, _Device(sm_count=1), ffma_only=True).name == "phase_tiled_narrow"
    with pytest.raises(ValueError, match="cannot run"):
        choose(p, np.float32, _Device(sm_count=1))


def _suite_problem(rid):
    from gpuconv.benchmarking import plan, suites

    return plan.conv_problem(next(r for r in suites.SUITE if r.id == rid), "float16")


def test_phases_too_small_for_the_sms_stay_on_the_ffma_kernel():
    choose = algorithms.choose_conv_transpose_algorithm
    for rid in ("T1", "T2", "T4"):
        assert choose(_suite_problem(rid), np.float16, _Device()).name == "phase_implicit_gemm", rid
    # T3 (HiFi-GAN, 8 phases of 512 pixels x 256 filters): 32 tiles per phase, 64 CTAs split
    t3 = _suite_problem("T3")
    assert choose(t3, np.float16, _Device()).name == "phase_tiled"
    assert choose(t3, np.float16, _Device(sm_count=64)).name == "phase_implicit_gemm"
    stride_1 = dataclasses.replace(t3, strides=(1,), out_spatial=(47,), pad_before=(0,))  # one phase: a conv
    assert choose(stride_1, np.float16, _Device(sm_count=1024)).name == "phase_implicit_gemm"


def test_each_phase_takes_the_tile_of_its_own_geometry():
    t1 = _problem((8, 8), 256, 128, (4, 4), (2, 2), n=128)   # bench_suite T1: 4 phases of 8,192 x 128
    wide = _Device(sm_count=32)
    assert {algorithms.implicit_gemm_tile(ph.problem, np.float16, wide) for ph in ct.phases(t1)} == {
        algorithms.TILE_MMA_128}
    assert {algorithms.implicit_gemm_tile(ph.problem, np.float16, _Device()) for ph in ct.phases(t1)} == {
        algorithms.TILE_MMA}  # 64 tiles of 128 x 128 under a wave of 132 SMs


# ---------------------------------------------------------------------------------------------
# On the emulator
# ---------------------------------------------------------------------------------------------
def _on_gpu(test):
    for mark in reversed(CUDA_MARKS):
        test = mark(test)
    return test


@pytest.fixture
def forced(monkeypatch):
    """The tensor-core row for every problem it can run: the emulator's 2 SMs are filled by few
    phases' tiles, so most small cases would (rightly) take the FFMA kernel."""
    monkeypatch.setenv(algorithms.OVERRIDE_ENV, "conv_transpose=phase_implicit_gemm")


def _reference(problem, x, w, b):
    from gpuconv import activations
    from gpuconv.cpu import engine as cpu

    wide = dataclasses.replace(problem, dtype=np.dtype("float64"), activation=None)
    y = cpu.conv_transpose(wide, x.astype(np.float64), w.astype(np.float64), None if b is None else b.astype(np.float64))
    return y if problem.activation is None else np.asarray(activations.get(problem.activation)(y), dtype=np.float64)


def _arrays(problem, seed):
    import gpuconv.dtypes as dt

    rng = np.random.default_rng(seed)
    dtype = dt.resolve(problem.dtype)
    x = rng.standard_normal(problem.input_shape).astype(dtype)
    fan_in = np.prod(problem.kernel_size) * problem.in_channels / problem.groups
    w = (rng.standard_normal(problem.kernel_shape) / np.sqrt(fan_in)).astype(dtype)
    b = rng.standard_normal((problem.out_channels,)).astype(dtype) if problem.has_bias else None
    return x, w, b


def _run(problem, x, w, b, requested):
    """The CUDA engine's result on host, and the kernels it fetched for launch (``requested``,
    conftest's spy: on a GPU and on the emulator alike)."""
    from gpuconv.cuda import engine as eng

    xp = gpu_xp()
    x_dev = xp.asarray(x)
    requested.clear()
    got = eng.conv_transpose(problem, x_dev, xp.asarray(w), None if b is None else xp.asarray(b))
    np.testing.assert_array_equal(xp.asnumpy(x_dev).view(np.uint16), np.asarray(x).view(np.uint16))  # not mutated
    return xp.asnumpy(got), set(requested)


# (spatial, C, F, kernel, strides, dilation, padding, output_padding, groups, activation, bias)
CASES = [
    ((5, 6), 16, 24, (4, 4), (2, 2), None, "same", None, 1, "relu", True),           # DCGAN-like, vector loads
    ((7,), 16, 32, (16,), (8,), None, "same", None, 1, None, True),                    # HiFi-GAN-like 1-D
    ((4, 5), 8, 24, (3, 2), (2, 3), (2, 1), "valid", (1, 0), 1, None, False),          # dilation, output padding
    ((3, 4), 32, 64, (2, 2), (3, 3), None, "valid", None, 2, "sigmoid", True),         # k < s, groups
    ((3, 3, 3), 16, 24, (2, 2, 2), (2, 2, 2), None, "valid", None, 1, "tanh", True),   # 3-D U-Net-like
    ((5, 4), 11, 20, (3, 3), (2, 2), None, "same", None, 1, "relu6", True),            # element loads (C, F % 8)
    ((6, 5), 6, 60, (3, 2), (1, 2), None, "same", (None, 1), 3, None, True),           # stride 1 along h, groups
]


def _case_id(case):
    spatial, c, f, k, s, d, pad, op, groups, act, bias = case
    return f"{len(spatial)}d-c{c}-f{f}-k{'x'.join(map(str, k))}-s{'x'.join(map(str, s))}-{pad}-g{groups}-{act}"


def _expected_kernels(problem, dtype="float16"):
    return {igemm.name_expression(dtype, *igemm.vector_flags(ph.problem)) for ph in ct.phases(problem)}


@_on_gpu
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_phases_on_tensor_cores_match_the_oracle(case, dtype, forced, requested):
    spatial, c, f, k, s, d, pad, op, groups, act, bias = case
    problem = _problem(spatial, c, f, k, s, d, pad, op, groups, n=2, dtype=dtype, activation=act, bias=bias)
    x, w, b = _arrays(problem, sum(map(ord, _case_id(case))))
    got, ran = _run(problem, x, w, b, requested)
    assert ran == _expected_kernels(problem, igemm.BFLOAT16_CTYPE if dtype == "bfloat16" else dtype), sorted(ran)
    assert got.dtype == problem.dtype and got.shape == problem.output_shape
    assert_close(got, _reference(problem, x, w, b), dtype)


@_on_gpu
def test_channels_first_goes_through_channels_last_bitwise(forced, requested):
    last = _problem((5, 6), 16, 24, (4, 4), (2, 2), n=2, activation="relu")
    x, w, b = _arrays(last, 11)
    y_last, _ = _run(last, x, w, b, requested)
    first = dataclasses.replace(last, channels_last=False)
    y_first, ran = _run(first, np.ascontiguousarray(x.transpose(0, 3, 1, 2)), w, b, requested)
    assert ran == _expected_kernels(last)
    np.testing.assert_array_equal(y_first, y_last.transpose(0, 3, 1, 2))


@_on_gpu
def test_forced_split_k_phases_match_the_oracle_and_repeat_bitwise(monkeypatch, forced, requested):
    monkeypatch.setenv(algorithms.SPLIT_ENV, "2")
    problem = _problem((4, 5), 64, 24, (4, 4), (2, 2), n=1, activation="relu")  # K = 4 taps x 64: 8 k tiles
    x, w, b = _arrays(problem, 5)
    got, ran = _run(problem, x, w, b, requested)
    assert ran == {igemm.partial_name(np.float16, True, True), igemm.sum_name(np.float16)}, sorted(ran)
    assert_close(got, _reference(problem, x, w, b), "float16")
    again, _ = _run(problem, x, w, b, requested)
    np.testing.assert_array_equal(again.view(np.uint16), got.view(np.uint16))


@_on_gpu
def test_phases_that_fill_the_emulator_take_the_tensor_cores_and_the_128_tile(requested):
    if not ON_EMULATOR:
        pytest.skip("sized for the cuda-emulator's 2 SMs (a GPU's 132 want more phase tiles)")
    problem = _problem((16, 16), 16, 128, (2, 2), (2, 2), n=1, padding="valid")  # 4 phases of 256 x 128
    assert algorithms.choose_conv_transpose_algorithm(
        problem, np.float16, device.active(), "int32").name == "phase_implicit_gemm"  # no override
    x, w, b = _arrays(problem, 9)
    got, ran = _run(problem, x, w, b, requested)
    assert ran == {igemm.name_expression(np.float16, True, True, algorithms.TILE_MMA_128)}, sorted(ran)
    assert_close(got, _reference(problem, x, w, b), "float16")


@_on_gpu
def test_input_gradient_of_a_float16_convolution_runs_on_the_phases(forced, requested):
    """A convolution's dx is the transposed convolution of its dy (conv_backward.py): with no
    fused activation it now takes the tensor-core phases."""
    from gpuconv.cpu import engine as cpu
    from gpuconv.cuda import engine as eng
    xp = gpu_xp()
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 9, 8, 32)).astype(np.float16)  # dx: 32 filters per group, past the narrow tile's 16
    w = (rng.standard_normal((3, 3, 32, 24)) / 12).astype(np.float16)
    geometry = dict(strides=(2, 2), padding=g.conv_padding((9, 8), (3, 3), (2, 2), (1, 1), "same"), dilation=(1, 1),
                    groups=1, channels_last=True)
    problem = calls.conv_problem(x, w, None, **geometry)
    dy = rng.standard_normal(problem.output_shape).astype(np.float16)
    requested.clear()
    dx, _, _ = eng.conv_backward_fused(problem, xp.asarray(x), xp.asarray(w), xp.asarray(dy), None,
                                       need_x=True, need_kernel=False)
    assert any(name.startswith("gc::conv_implicit_gemm<gc::half") for name in requested), requested
    wide = dataclasses.replace(problem, dtype=np.dtype("float64"))
    x64, w64, dy64 = (a.astype(np.float64) for a in (x, w, dy))
    ref = cpu.conv_transpose(wide.adjoint(), dy64, w64, None)
    # The oracle is the adjoint: <conv(x), dy> = <x, dx>.
    np.testing.assert_allclose(np.vdot(cpu.conv(wide, x64, w64, None), dy64), np.vdot(x64, ref), rtol=1e-10)
    assert_close(xp.asnumpy(dx), ref, "float16")


@_on_gpu
def test_empty_batch_launches_nothing(forced, requested):
    problem = _problem((4, 4), 16, 24, (2, 2), (2, 2), n=0)
    x, w, b = _arrays(problem, 1)
    got, ran = _run(problem, x, w, b, requested)
    assert got.shape == problem.output_shape and ran == set()


@_on_gpu
@pytest.mark.parametrize("activation", ["relu", "relu6"])
def test_input_gradients_with_a_fused_activation_take_the_tensor_cores(activation, forced, requested):
    """dx of a convolution (and of a transposed one) that fused relu / relu6: on the tensor cores
    a masked copy of dy feeds the kernels (the FFMA loader would apply the derivative itself)."""
    from gpuconv import activations
    from gpuconv.cpu import engine as cpu
    from gpuconv.cuda import engine as eng

    xp = gpu_xp()
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 7, 6, 32)).astype(np.float16)
    w = (rng.standard_normal((3, 3, 32, 24)) / 12).astype(np.float16)
    b = rng.standard_normal((24,)).astype(np.float16)
    geometry = dict(strides=(2, 2), padding=g.conv_padding((7, 6), (3, 3), (2, 2), (1, 1), "same"), dilation=(1, 1),
                    groups=1, channels_last=True)
    problem = calls.conv_problem(x, w, b, **geometry, activation=activation)
    y = xp.asnumpy(eng.conv(problem, xp.asarray(x), xp.asarray(w), xp.asarray(b)))
    y[0, 0, 0, :4] = (0.0, 6.0, 3.0, -1.0)  # the kinks are in the mask as the derivative defines them
    dy = rng.standard_normal(y.shape).astype(np.float16)
    dy_dev = xp.asarray(dy)
    requested.clear()
    dx, _, _ = eng.conv_backward_fused(problem, xp.asarray(x), xp.asarray(w), dy_dev, xp.asarray(y), need_x=True,
                                       need_kernel=False)
    assert any(n.startswith("gc::conv_implicit_gemm<gc::half") for n in requested), requested
    np.testing.assert_array_equal(xp.asnumpy(dy_dev), dy)  # the masked copy is a copy
    masked = activations.OUTPUT_DERIVATIVES[activation](y.astype(np.float64), dy.astype(np.float64))
    wide = dataclasses.replace(problem, dtype=np.dtype("float64"), activation=None, has_bias=False)
    assert_close(xp.asnumpy(dx), cpu.conv_transpose(wide.adjoint(), masked, w.astype(np.float64), None), "float16")

    # The transposed convolution's dx: the convolution of its masked dy.
    t = _problem((5, 4), 24, 32, (3, 3), (2, 2), n=2, activation=activation)
    xt, wt, bt = _arrays(t, 6)
    yt = xp.asnumpy(eng.conv_transpose(t, xp.asarray(xt), xp.asarray(wt), xp.asarray(bt)))
    dyt = rng.standard_normal(yt.shape).astype(np.float16)
    requested.clear()
    dxt, _, _ = eng.conv_transpose_backward_fused(t, xp.asarray(xt), xp.asarray(wt), xp.asarray(dyt), xp.asarray(yt),
                                                  need_x=True, need_kernel=False)
    assert any(n.startswith("gc::conv_implicit_gemm<gc::half") for n in requested), requested
    masked_t = activations.OUTPUT_DERIVATIVES[activation](yt.astype(np.float64), dyt.astype(np.float64))
    forward = dataclasses.replace(t, dtype=np.dtype("float64"), activation=None, has_bias=False).adjoint()
    assert_close(xp.asnumpy(dxt), cpu.conv(forward, masked_t, wt.astype(np.float64), None), "float16")
