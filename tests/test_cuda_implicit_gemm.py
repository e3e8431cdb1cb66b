"""The tensor-core convolution (kernels/conv_implicit_gemm.cu) against the float64 NumPy engine,
and the algorithm table's routing to it.

Emulated cases (marker ``gpu``; run on the cuda-emulator without a GPU) cover ranks 1-3,
strides, dilation, 'valid' / 'same' of both parities / 'causal', groups, channels and filters
per group that are and are not multiples of 8 (the 16-byte cp.async path and the element path
of each operand), tails in M (pixels), N (filters) and K (taps x channels), odd filter counts
(the scalar store path), bias or none and fused activations; each asserts which instantiation
ran. The same for the 128 x 128 tile (forced by GPUCONV_ALGORITHM) and for deterministic
split-K (forced by GPUCONV_SPLIT_K: against the oracle, bitwise across two runs, against the
one-pass result). The bfloat16 instantiations are also launched directly on the emulator. The
table tests (the tile and split choices for the suite's shapes) need no device.
"""
import os
import re
from dataclasses import replace as dataclasses_replace

import engine_calls as calls
import numpy as np
import pytest

from conftest import CUDA_AVAILABLE, CUDA_MARKS, ON_EMULATOR, assert_close, gpu_xp
from gpuconv import activations as act_ref
from gpuconv import geometry as g
from gpuconv import problems
from gpuconv.cuda import algorithms, conv_implicit_gemm as igemm, registry

_gpu = pytest.mark.gpu
_needs_cuda = pytest.mark.skipif(not CUDA_AVAILABLE, reason="CUDA backend unavailable (no GPU, no cuda-emulator)")


class _Device:
    def __init__(self, cc):
        self.compute_capability = cc


def _problem(c=64, f=64, groups=1, cl=True, spatial=(8, 8), k=(3, 3)):
    rank = len(spatial)
    return problems.ConvProblem(kind=problems.CONV, batch=2, in_channels=c, out_channels=f, groups=groups,
                                in_spatial=spatial, out_spatial=spatial, kernel_size=k, strides=(1,) * rank,
                                dilation=(1,) * rank, pad_before=tuple(kk // 2 for kk in k), channels_last=cl,
                                dtype=np.dtype("float16"))


# ---------------------------------------------------------------------------------------------
# The algorithm table (no device)
# ---------------------------------------------------------------------------------------------
def test_table_picks_tensor_cores_for_float16_channels_last_on_sm80_and_newer():
    for cc in ("80", "86", "90"):
        algo = algorithms.choose_conv_algorithm(_problem(), np.float16, _Device(cc))
        assert algo.name == "implicit_gemm" and algo.kernel_file == igemm.KERNEL_FILE
    # the C = 3 stem and 1-D / 3-D layers too
    assert algorithms.choose_conv_algorithm(_problem(3, 32), np.float16, _Device("90")).name == "implicit_gemm"
    assert algorithms.choose_conv_algorithm(_problem(spatial=(9,), k=(3,)), np.float16, _Device("90")).name == "implicit_gemm"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_table_keeps_float32_and_float64_on_the_ffma_kernels(dtype):
    assert algorithms.choose_conv_algorithm(_problem(), dtype, _Device("90")).name == "direct_tiled"


def test_table_keeps_the_ffma_kernels_where_tensor_cores_do_not_apply():
    choose = algorithms.choose_conv_algorithm
    assert choose(_problem(), np.float16, _Device("75")).name == "direct_tiled"  # no mma.sync m16n8k16 f32
    assert choose(_problem(), np.float16, None).name == "direct_tiled"  # unknown device
    assert choose(_problem(), np.float16, _Device("90"), index_width="int64").name == "direct_tiled"
    # <= 16 filters per group: the narrow FFMA tile (ResNeXt)
    assert choose(_problem(512, 512, groups=32), np.float16, _Device("90")).name == "direct_tiled_narrow"


def test_every_tensor_core_choice_is_a_registered_instantiation():
    registered = set(registry.registered(igemm.KERNEL_FILE))
    assert registered == set(igemm.instantiations()) | set(igemm.bfloat16_instantiations())
    for c, f, groups in ((3, 64, 1), (64, 64, 1), (16, 48, 1), (24, 72, 3), (40, 36, 2)):
        p = _problem(c, f, groups)
        assert algorithms.choose_conv_algorithm(p, np.float16, _Device("90")).name == "implicit_gemm"
        assert igemm.name_expression(np.float16, *igemm.vector_flags(p)) in registered


def test_name_expressions():
    assert igemm.name_expression(np.float16, True, False) == "gc::conv_implicit_gemm<gc::half, 1, 0>"
    assert (igemm.name_expression(np.float16, False, True, algorithms.TILE_MMA_128)
            == "gc::conv_implicit_gemm_128<gc::half, 0, 1>")
    assert igemm.partial_name(np.float16, False, True) == "gc::conv_implicit_gemm_partial<gc::half, 0, 1>"
    assert igemm.sum_name(np.float16) == "gc::conv_implicit_gemm_sum<gc::half>"
    assert len(igemm.instantiations()) == len(igemm.bfloat16_instantiations()) == 2 * 4 + 4 + 1
    assert "gc::conv_implicit_gemm_128<gc::bfloat16, 0, 1>" in igemm.bfloat16_instantiations()
    assert set(igemm.bfloat16_instantiations()) <= set(registry.registered(igemm.KERNEL_FILE))


class _SizedDevice:
    def __init__(self, sm_count):
        self.compute_capability = "90"
        self.sm_count = sm_count


def test_table_picks_the_128_tile_where_its_tiles_fill_a_wave():
    choose = algorithms.choose_conv_algorithm
    for rid in ("D3", "D9", "S1b", "A1", "V1"):  # >= 132 tiles of 128 x 128, >= 128 filters
        assert choose(_suite_problem(rid), np.float16, _Device("90")).name == "implicit_gemm_128", rid
    for rid in ("D1", "D2", "V2"):  # 64 or 32 filters: a 128-wide filter tile would be half empty or worse
        assert choose(_suite_problem(rid), np.float16, _Device("90")).name == "implicit_gemm", rid
    for rid in ("D4", "D5", "D6", "D7"):  # 98, 4, 98 and 52 tiles of 128 x 128: under a wave
        assert choose(_suite_problem(rid), np.float16, _Device("90")).name == "implicit_gemm", rid
    # the wave is the device's: D3's 196 tiles fill 132 SMs, not 1024
    assert choose(_suite_problem("D3"), np.float16, _SizedDevice(132)).name == "implicit_gemm_128"
    assert choose(_suite_problem("D3"), np.float16, _SizedDevice(1024)).name == "implicit_gemm"
    assert choose(_suite_problem("D3"), np.float32, _Device("90")).name == "direct_tiled"
    assert choose(_suite_problem("D3"), np.float16, _Device("75")).name == "direct_tiled"


def test_device_sm_count_reads_what_the_device_says():
    import types

    assert algorithms.device_sm_count(_SizedDevice(7)) == 7
    limits = types.SimpleNamespace(sm_count=5)
    assert algorithms.device_sm_count(types.SimpleNamespace(limits=lambda: limits)) == 5
    assert algorithms.device_sm_count(types.SimpleNamespace(attributes={"MultiProcessorCount": 108})) == 108
    assert algorithms.device_sm_count(None) == algorithms.device_sm_count(_Device("90")) == algorithms.DEFAULT_SM_COUNT


def test_split_k_slices_rule():
    split = algorithms.split_k_slices
    # bench_suite D7 at N = 32: 25 x 8 tiles, 144 k tiles, against a wave of 132 x 4 CTAs
    assert split(200, 132, 144) == 528 // 200 == 2
    assert split(528, 132, 10_000) == 1                 # a full wave of tiles: one pass
    assert split(16, 132, 72) == 72 // algorithms.MIN_K_TILES_PER_SLICE == 4  # D5: slices of >= 16 k tiles
    assert split(16, 132, 31) == 1                      # too short to cut
    assert split(1, 132, 10_000) == algorithms.MAX_SLICES
    assert split(3, 2, 1000) == 2                       # the emulator's 2 SMs: 8 CTAs a wave
    for kwargs in (dict(output_tiles=0), dict(sm_count=True), dict(k_tiles=2.0)):
        args = {**dict(output_tiles=10, sm_count=132, k_tiles=100), **kwargs}
        name, value = next(iter(kwargs.items()))
        with pytest.raises(ValueError, match=f"{name}={value!r}"):
            split(**args)


def _suite_problem(row_id, **changes):
    import dataclasses

    from gpuconv.benchmarking import plan, suites

    row = next(r for r in suites.SUITE if r.id == row_id)
    return plan.conv_problem(dataclasses.replace(row, **changes), "float16")


def test_split_plan_of_the_suite_shapes():
    d7 = igemm.split_plan(_suite_problem("D7"), 132)
    assert (d7.slices, d7.k_tiles_per_slice, d7.k_tiles) == (2, 72, 144)
    assert d7.workspace_bytes(_suite_problem("D7")) == 2 * 1568 * 512 * 4
    for large_dense in ("D2", "D9", "V2"):  # >= a wave of 64 x 64 tiles
        plan = igemm.split_plan(_suite_problem(large_dense), 132)
        assert plan.slices == 1 and plan.workspace_bytes(_suite_problem(large_dense)) == 0
    assert igemm.split_plan(_suite_problem("D7", N=256), 132).slices == 1  # 1,600 tiles
    assert igemm.split_plan(_suite_problem("D7"), 1024).slices == 144 // 16  # more SMs: slices down to 16 k tiles


@pytest.mark.parametrize("forced, k_tiles, slices, per", [("3", 10, 3, 4), ("4", 10, 4, 3), ("6", 10, 5, 2),
                                                          ("20", 10, 10, 1), ("1", 10, 1, 10)])
def test_forced_split_is_evened_out_so_that_no_slice_is_empty(monkeypatch, forced, k_tiles, slices, per):
    monkeypatch.setenv(algorithms.SPLIT_ENV, forced)
    p = _problem(c=k_tiles * 32 // 9, spatial=(4, 4))  # 3x3 taps: 9 * c in (32 * (k_tiles - 1), 32 * k_tiles]
    assert igemm.k_tiles(p) == k_tiles
    plan = igemm.split_plan(p, 132)
    assert (plan.slices, plan.k_tiles_per_slice) == (slices, per)
    assert (plan.slices - 1) * plan.k_tiles_per_slice < k_tiles <= plan.slices * plan.k_tiles_per_slice


@pytest.mark.parametrize("text", ["0", "-2", "two", "1.5"])
def test_forced_split_rejects_bad_values(monkeypatch, text):
    monkeypatch.setenv(algorithms.SPLIT_ENV, text)
    with pytest.raises(ValueError, match=f"{algorithms.SPLIT_ENV}={text!r}"):
        igemm.split_plan(_problem(), 132)
    monkeypatch.setenv(algorithms.SPLIT_ENV, "")
    assert igemm.split_plan(_problem(), 132).slices == 1


def test_forced_split_refuses_a_workspace_past_its_limit(monkeypatch):
    big = dataclasses_replace(_problem(c=64, f=64, spatial=(1024, 1024)), batch=8)  # M * F * 4 = 2 GiB a plane
    monkeypatch.setenv(algorithms.SPLIT_ENV, "2")
    with pytest.raises(ValueError, match="GPUCONV_SPLIT_K=2"):
        igemm.split_plan(big, 132)


def test_override_forces_a_row(monkeypatch):
    monkeypatch.setenv(algorithms.OVERRIDE_ENV, "conv=direct_tiled")
    assert algorithms.choose_conv_algorithm(_problem(), np.float16, _Device("90")).name == "direct_tiled"
    monkeypatch.setenv(algorithms.OVERRIDE_ENV, " conv = implicit_gemm , conv_transpose=phase_tiled")
    # forced past its 'wins' predicate (16 filters per group), inside what it can run
    assert algorithms.choose_conv_algorithm(_problem(512, 512, groups=32), np.float16, _Device("90")).name == "implicit_gemm"
    assert algorithms.choose_conv_transpose_algorithm(_problem(8, 3), np.float32).name == "phase_tiled"


def test_override_refuses_what_the_row_cannot_run(monkeypatch):
    monkeypatch.setenv(algorithms.OVERRIDE_ENV, "conv=implicit_gemm")
    with pytest.raises(ValueError, match="cannot run"):
        algorithms.choose_conv_algorithm(_problem(), np.float32, _Device("90"))
    with pytest.raises(ValueError, match="cannot run"):
        algorithms.choose_conv_algorithm(_problem(), np.float16, _Device("75"))
    # (channels_first runs: cuda/conv.py re-lays it to channels_last around the kernel)
    assert algorithms.choose_conv_algorithm(_problem(cl=False), np.float16, _Device("90")).name == "implicit_gemm"
    monkeypatch.setenv(algorithms.OVERRIDE_ENV, "conv=direct_tiled_narrow")
    with pytest.raises(ValueError, match="cannot run"):
        algorithms.choose_conv_algorithm(_problem(), np.float64, None)


@pytest.mark.parametrize("text", ["conv=wgmma", "conv", "conv=", "=implicit_gemm", "conv:implicit_gemm"])
def test_override_rejects_bad_values(monkeypatch, text):
    monkeypatch.setenv(algorithms.OVERRIDE_ENV, text)
    with pytest.raises(ValueError, match=algorithms.OVERRIDE_ENV):
        algorithms.choose_conv_algorithm(_problem(), np.float16, _Device("90"))


# ---------------------------------------------------------------------------------------------
# Emulated launches against the float64 oracle
# ---------------------------------------------------------------------------------------------
# (batch, C, F, spatial, kernel, strides, dilation, padding, groups, activation, bias)
CASES = [
    (2, 16, 64, (6, 7), (3, 3), (1, 1), (1, 1), "same", 1, "relu", True),        # vec A, vec B
    (1, 3, 40, (9, 8), (3, 3), (2, 2), (1, 1), "same", 1, "relu", True),         # the stem: element A
    (2, 24, 72, (11,), (3,), (1,), (2,), "causal", 1, "tanh", True),             # 1-D, N tail (72 = 64 + 8)
    (1, 8, 20, (3, 4, 5), (2, 2, 3), (1, 1, 2), (1, 1, 1), "same", 1, None, False),  # 3-D, even kernel
    (2, 24, 36, (5, 6), (3, 3), (1, 1), (1, 1), "same", 2, "sigmoid", True),     # groups, Cg 12 Fg 18: element both
    (2, 32, 48, (5, 5), (3, 3), (1, 1), (1, 1), "valid", 2, "relu", True),       # groups, Cg 16 Fg 24: vec both
    (3, 40, 37, (9, 11), (3, 3), (1, 1), (1, 1), "same", 1, "gelu", True),       # K = 360 tail, M = 297, odd F
    (2, 16, 24, (10, 9), (4, 2), (2, 2), (1, 1), "same", 1, "silu", True),       # asymmetric 'same' (even k, s 2)
    (1, 8, 32, (12, 13), (3, 3), (1, 2), (2, 3), "same", 1, "relu6", False),     # dilation 2 x 3, strides
    (2, 5, 17, (7, 6), (1, 1), (1, 1), (1, 1), "valid", 1, "hard_silu", True),   # 1x1, K = 5, element B
    (1, 64, 128, (4, 4), (3, 3), (1, 1), (1, 1), "same", 1, "leaky_relu", True),  # 2 column tiles, K = 576
]


def _case_id(case):
    n, c, f, spatial, k, s, d, pad, groups, act, bias = case
    return f"{len(spatial)}d-c{c}-f{f}-k{'x'.join(map(str, k))}-s{'x'.join(map(str, s))}-d{'x'.join(map(str, d))}-{pad}-g{groups}-{act}"


def _expected_name(c, f, groups, tile=algorithms.TILE_MMA):
    return igemm.name_expression(np.float16, (c // groups) % 8 == 0, (f // groups) % 8 == 0, tile)


def _reference(x, w, b, act, kwargs):
    """float64 oracle: the NumPy engine without the activation, then gpuconv's activation."""
    from gpuconv.cpu import engine as cpu

    y = calls.conv(cpu, x.astype(np.float64), w.astype(np.float64), None if b is None else b.astype(np.float64),
                   **kwargs, activation=None)
    return y if act is None else np.asarray(act_ref.get(act)(y), dtype=np.float64)


def _launched():
    if ON_EMULATOR:
        from gpuconv.emulator import runtime

        return runtime.launched
    return None


@_gpu
@_needs_cuda
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_float16_conv_matches_float64_oracle(case):
    from gpuconv.cuda import engine as eng

    n, c, f, spatial, k, s, d, pad, groups, act, has_bias = case
    xp = gpu_xp()
    rng = np.random.default_rng(sum(map(ord, _case_id(case))))
    x = rng.standard_normal((n, *spatial, c)).astype(np.float16)
    w = (rng.standard_normal((*k, c // groups, f)) / np.sqrt(np.prod(k) * c / groups)).astype(np.float16)
    b = rng.standard_normal((f,)).astype(np.float16) if has_bias else None
    kwargs = dict(strides=s, padding=g.conv_padding(spatial, k, s, d, pad), dilation=d, groups=groups,
                  channels_last=True)
    launched = _launched()
    if launched is not None:
        launched.clear()
    got = calls.conv(eng, xp.asarray(x), xp.asarray(w), None if b is None else xp.asarray(b), **kwargs, activation=act)
    assert got.dtype == np.float16
    assert_close(xp.asnumpy(got), _reference(x, w, b, act, kwargs), "float16")
    if launched is not None:
        assert launched == {_expected_name(c, f, groups)}, sorted(launched)


# The 128 x 128 tile, forced (GPUCONV_ALGORITHM=conv=implicit_gemm_128) on small problems: both
# load paths of each operand, tails in M (297 = 2 x 128 + 41), N (136 = 128 + 8, 37) and K.
TILE_128_CASES = [
    (2, 16, 136, (6, 7), (3, 3), (1, 1), (1, 1), "same", 1, "relu", True),       # vec A, vec B, N tail
    (1, 11, 40, (9, 8), (3, 3), (2, 2), (1, 1), "same", 1, "relu", True),        # element A
    (2, 24, 36, (5, 6), (3, 3), (1, 1), (1, 1), "same", 2, "sigmoid", True),     # groups, element both
    (1, 8, 20, (3, 4, 5), (2, 2, 3), (1, 1, 2), (1, 1, 1), "same", 1, None, False),  # 3-D, element B
    (3, 40, 37, (9, 11), (3, 3), (1, 1), (1, 1), "same", 1, "gelu", True),       # 3 pixel tiles, K = 360, odd F
    (1, 32, 256, (4, 4), (3, 3), (1, 1), (1, 1), "same", 1, "leaky_relu", True),  # 2 column tiles
]


@_gpu
@_needs_cuda
@pytest.mark.parametrize("case", TILE_128_CASES, ids=_case_id)
def test_tile_128_matches_float64_oracle(monkeypatch, case):
    monkeypatch.setenv(algorithms.OVERRIDE_ENV, "conv=implicit_gemm_128")
    launched = _launched()
    if launched is not None:
        launched.clear()
    got, ref = _run_case(case, sum(map(ord, _case_id(case))))
    assert_close(got, ref, "float16")
    if launched is not None:
        n, c, f, *_, groups, act, has_bias = case
        assert launched == {_expected_name(c, f, groups, algorithms.TILE_MMA_128)}, sorted(launched)


# Split-K, forced on small problems (GPUCONV_SPLIT_K): (case as CASES, forced slices, the slices
# split_plan makes of them). The k tiles: 5, 4, 4, 3, 3, 12, 18; none a multiple of its slices
# where that can be, a forced count evened out where no slice could be empty otherwise.
SPLIT_CASES = [
    ((2, 16, 64, (6, 7), (3, 3), (1, 1), (1, 1), "same", 1, "relu", True), 2, 2),        # vec A, vec B: 3 + 2
    ((1, 11, 40, (9, 8), (3, 3), (2, 2), (1, 1), "same", 1, "relu", True), 3, 2),        # element A: 2 + 2
    ((2, 24, 36, (5, 6), (3, 3), (1, 1), (1, 1), "same", 2, "sigmoid", True), 4, 4),     # groups, element both
    ((2, 24, 72, (11,), (3,), (1,), (2,), "causal", 1, "tanh", True), 2, 2),             # 1-D, N tail
    ((1, 8, 20, (3, 4, 5), (2, 2, 3), (1, 1, 2), (1, 1, 1), "same", 1, None, False), 2, 2),  # 3-D, element B, no bias
    ((3, 40, 37, (9, 11), (3, 3), (1, 1), (1, 1), "same", 1, "gelu", True), 5, 4),       # M and K tails, odd F: 3 x 4
    ((1, 64, 128, (4, 4), (3, 3), (1, 1), (1, 1), "same", 1, "leaky_relu", True), 4, 4),  # 2 column tiles: 5 5 5 3
]


def _split_id(split_case):
    case, forced, _ = split_case
    return f"{_case_id(case)}-split{forced}"


def _run_case(case, seed):
    """(got as NumPy, the float64 oracle) of one CASES-style case on the CUDA engine."""
    from gpuconv.cuda import engine as eng

    n, c, f, spatial, k, s, d, pad, groups, act, has_bias = case
    xp = gpu_xp()
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, *spatial, c)).astype(np.float16)
    w = (rng.standard_normal((*k, c // groups, f)) / np.sqrt(np.prod(k) * c / groups)).astype(np.float16)
    b = rng.standard_normal((f,)).astype(np.float16) if has_bias else None
    kwargs = dict(strides=s, padding=g.conv_padding(spatial, k, s, d, pad), dilation=d, groups=groups,
                  channels_last=True)
    got = calls.conv(eng, xp.asarray(x), xp.asarray(w), None if b is None else xp.asarray(b), **kwargs, activation=act)
    assert got.dtype == np.float16
    return xp.asnumpy(got), _reference(x, w, b, act, kwargs)


@_gpu
@_needs_cuda
@pytest.mark.parametrize("split_case", SPLIT_CASES, ids=_split_id)
def test_split_k_matches_float64_oracle_and_is_bitwise_repeatable(monkeypatch, split_case):
    case, forced, slices = split_case
    n, c, f, spatial, k, s, d, pad, groups, act, has_bias = case
    seed = sum(map(ord, _case_id(case)))
    launched = _launched()
    monkeypatch.setenv(algorithms.SPLIT_ENV, str(forced))
    problem = calls.conv_problem(np.zeros((n, *spatial, c), np.float16), np.zeros((*k, c // groups, f), np.float16),
                                 None, strides=s, padding=g.conv_padding(spatial, k, s, d, pad), dilation=d,
                                 groups=groups, channels_last=True)
    assert igemm.split_plan(problem, 132).slices == slices
    runs = []
    for _ in range(2):
        if launched is not None:
            launched.clear()
        got, ref = _run_case(case, seed)
        assert_close(got, ref, "float16")
        runs.append(got)
        if launched is not None:
            vec = igemm.vector_flags(problem)
            assert launched == {igemm.partial_name(np.float16, *vec), igemm.sum_name(np.float16)}, sorted(launched)
    assert runs[0].tobytes() == runs[1].tobytes()  # bitwise: the slices are summed in a fixed order
    monkeypatch.setenv(algorithms.SPLIT_ENV, "1")  # the one-pass kernel: the same value up to rounding
    one_pass, _ = _run_case(case, seed)
    assert_close(runs[0], one_pass.astype(np.float64), "float16")


@_gpu
@_needs_cuda
def test_padding_multiplies_literal_zeros_so_nan_weights_poison_the_border():
    """A NaN weight reaches every output whose window uses that tap, padded or not (0 * NaN), as
    in the padded float64 oracle and the FFMA kernel."""
    from gpuconv.cuda import engine as eng

    xp = gpu_xp()
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 5, 5, 8)).astype(np.float16)
    w = rng.standard_normal((3, 3, 8, 16)).astype(np.float16)
    w[0, 0, 2, 5] = np.nan
    kwargs = dict(strides=(1, 1), padding=g.conv_padding((5, 5), (3, 3), (1, 1), (1, 1), "same"), dilation=(1, 1),
                  groups=1, channels_last=True)
    got = xp.asnumpy(calls.conv(eng, xp.asarray(x), xp.asarray(w), None, **kwargs))
    assert_close(got, _reference(x, w, None, None, kwargs), "float16")
    assert np.isnan(got[..., 5]).all() and not np.isnan(np.delete(got, 5, axis=-1)).any()


@_gpu
@_needs_cuda
def test_float32_still_runs_the_ffma_kernel_and_the_override_moves_float16_there(monkeypatch):
    from gpuconv.cuda import engine as eng

    if not ON_EMULATOR:
        pytest.skip("the launch record is the emulator's")
    xp = gpu_xp()
    rng = np.random.default_rng(4)
    kwargs = dict(strides=(1, 1), padding=((1, 1), (1, 1)), dilation=(1, 1), groups=1, channels_last=True)
    launched = _launched()
    for dtype, env, expected in ((np.float32, "", "gc::conv_direct<float, 0, int, 0>"),
                                 (np.float16, "conv=direct_tiled", "gc::conv_direct<gc::half, 0, int, 0>"),
                                 (np.float16, "", "gc::conv_implicit_gemm<gc::half, 1, 1>")):
        monkeypatch.setenv(algorithms.OVERRIDE_ENV, env)
        x = rng.standard_normal((1, 4, 4, 8)).astype(dtype)
        w = rng.standard_normal((3, 3, 8, 32)).astype(dtype)
        launched.clear()
        got = calls.conv(eng, xp.asarray(x), xp.asarray(w), None, **kwargs)
        assert_close(xp.asnumpy(got), _reference(x, w, None, None, kwargs), np.dtype(dtype).name)
        assert launched == {expected}


# ---------------------------------------------------------------------------------------------
# bfloat16: launched directly
# ---------------------------------------------------------------------------------------------
def _to_bfloat16_bits(a):
    """float64 -> bfloat16 bits, round to nearest even (via float32, exact for these values)."""
    bits = np.asarray(a, np.float32).view(np.uint32).astype(np.uint64)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


def _from_bfloat16_bits(b):
    return (b.astype(np.uint32) << 16).view(np.float32).astype(np.float64)


@_gpu
@pytest.mark.skipif(not ON_EMULATOR, reason="launches the bfloat16 build directly on the cuda-emulator")
@pytest.mark.parametrize("c, f, groups, slices, tile", [
    (16, 40, 1, 1, algorithms.TILE_MMA), (6, 24, 2, 1, algorithms.TILE_MMA), (16, 40, 1, 2, algorithms.TILE_MMA),
    (22, 24, 2, 2, algorithms.TILE_MMA), (16, 136, 1, 1, algorithms.TILE_MMA_128), (6, 24, 2, 1, algorithms.TILE_MMA_128)])
def test_bfloat16_instantiations_match_float64_oracle(c, f, groups, slices, tile):
    """The one-pass kernel of either tile (slices 1) and split-K's two passes (2 slices of 5 / 4
    k tiles)."""
    from gpuconv.emulator import build, device, runtime

    names = tuple(igemm.bfloat16_instantiations())
    lib = runtime.Library(build.build(igemm.KERNEL_FILE, names, device.EmulatorDevice().check))
    rng = np.random.default_rng(c + f)
    spatial, k, s, d = (6, 5), (3, 3), (2, 1), (1, 1)
    xb = _to_bfloat16_bits(rng.standard_normal((2, *spatial, c)))
    wb = _to_bfloat16_bits(rng.standard_normal((*k, c // groups, f)) / np.sqrt(9 * c / groups))
    bb = _to_bfloat16_bits(rng.standard_normal(f))
    kwargs = dict(strides=s, padding=g.conv_padding(spatial, k, s, d, "same"), dilation=d, groups=groups,
                  channels_last=True)
    x, w, b = (_from_bfloat16_bits(v) for v in (xb, wb, bb))
    problem = calls.conv_problem(x, w, b, **kwargs, activation="relu")
    ref = _reference(x, w, b, "relu", kwargs)
    y = np.zeros(ref.shape, np.uint16).view(runtime.DeviceArray)

    def dev(a):
        out = np.empty(a.shape, a.dtype).view(runtime.DeviceArray)
        np.copyto(out, a)
        return out

    from gpuconv.cuda import epilogue, launch, tensors, tile_engine

    sizes = tuple(np.int32(v) for v in tile_engine.window_sizes(problem))
    act = np.int32(epilogue.activation_code("relu"))
    limits = device.EmulatorDevice().limits()
    vec = ((c // groups) % 8 == 0, (f // groups) % 8 == 0)
    if slices == 1:
        lib.kernels[igemm.name_expression(igemm.BFLOAT16_CTYPE, *vec, tile)].launch(
            launch.grid_nd(igemm.grid(problem, tile), limits), (igemm.TILES[tile].threads, 1, 1),
            (dev(xb), dev(wb), dev(bb), y, *sizes, act, *igemm.DENSE.arguments()), 0, limits)
    else:
        per = -(-igemm.k_tiles(problem) // slices)
        assert -(-igemm.k_tiles(problem) // per) == slices
        elements = y.size
        ws = np.full((slices, elements), np.nan, np.float32).view(runtime.DeviceArray)  # every element written
        lib.kernels[igemm.partial_name(igemm.BFLOAT16_CTYPE, *vec)].launch(
            launch.grid_nd((*igemm.grid(problem), slices), limits), (igemm.THREADS, 1, 1),
            (dev(xb), dev(wb), ws, *sizes, np.int32(per)), 0, limits)
        lib.kernels[igemm.sum_name(igemm.BFLOAT16_CTYPE)].launch(
            launch.grid_1d(elements, igemm.SUM_THREADS, limits), (igemm.SUM_THREADS, 1, 1),
            (ws, dev(bb), y, np.int32(elements), np.int32(f), np.int32(slices), act,
             *(np.int32(v) for v in tensors.as3d(problem.out_spatial, 1)), *igemm.DENSE.arguments()), 0, limits)
    got = _from_bfloat16_bits(np.asarray(y).view(np.uint16))
    # issue 14's bound for bfloat16 (its 8-bit mantissa: the output's rounding alone is ~1e-3)
    err = np.linalg.norm(got - ref) / np.linalg.norm(ref)
    assert err <= 2e-3, err


# ---------------------------------------------------------------------------------------------
# Under the race checker and AddressSanitizer + UBSan (children, as test_emulator_check_modes.py)
# ---------------------------------------------------------------------------------------------
# The float16 cases (the bfloat16 build differs only in the mma and the conversions; a second
# library per check mode would double the children's build time).
_CHILD_SELECTION = "float16_conv_matches or nan_weights or split_k_matches or tile_128_matches"


def _run_child(prefix, extra_env):
    import subprocess
    import sys

    env = dict(os.environ, GPUCONV_GPU_TESTS="emulator", **extra_env)
    cmd = [sys.executable, *prefix, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", __file__, "-k", _CHILD_SELECTION]
    done = subprocess.run(cmd, cwd=os.path.dirname(os.path.dirname(__file__)), env=env, capture_output=True, text=True,
                          timeout=900)
    tail = (done.stdout + done.stderr)[-6000:]
    assert done.returncode == 0, f"{' '.join(cmd)} failed (rc {done.returncode}):\n{tail}"
    assert re.search(rf"\b{len(CASES) + 1 + len(SPLIT_CASES) + len(TILE_128_CASES)} passed\b", done.stdout) and " failed" not in done.stdout, tail
    return done.stdout


@_gpu
@pytest.mark.slow
@pytest.mark.skipif(not ON_EMULATOR, reason="the race checker is the cuda-emulator's")
def test_cases_under_the_race_checker():
    _run_child([], {"GPUCONV_EMULATOR_CHECK": "race"})


@_gpu
@pytest.mark.slow
@pytest.mark.skipif(not ON_EMULATOR, reason="the sanitizer build is the cuda-emulator's")
def test_cases_under_address_and_undefined_behaviour_sanitizers():
    out = _run_child(["-m", "gpuconv.emulator.sanitized"], {})
    assert "ERROR: AddressSanitizer" not in out and "runtime error:" not in out


# ---------------------------------------------------------------------------------------------
# NVRTC audit of the unregistered bfloat16 instantiations (the registered ones are in
# tests/test_cuda_compile.py's full run)
# ---------------------------------------------------------------------------------------------
@pytest.mark.nvrtc
@pytest.mark.parametrize("arch", [80, 90])
def test_bfloat16_instantiations_compile_without_spills(arch):
    try:
        from cupy.cuda import nvrtc

        nvrtc.getVersion()
    except Exception as e:  # ImportError, or a missing libnvrtc
        if os.environ.get("GPUCONV_REQUIRE_NVRTC", "") not in ("", "0"):
            pytest.fail(f"GPUCONV_REQUIRE_NVRTC=1 but NVRTC is unavailable: {e}")
        pytest.skip(f"CuPy/NVRTC is not importable: {e}")
    from gpuconv.cuda import check

    result = check.compile_task(igemm.KERNEL_FILE, tuple(igemm.bfloat16_instantiations()), arch)
    assert not result.errors, "\n".join(result.errors)
    entries = {r.kernel: r for r in result.entries}
    assert set(entries) == set(igemm.bfloat16_instantiations())
    assert not [r.kernel for r in result.rows if r.spill], result.rows
    assert all(r.smem <= 48 * 1024 for r in entries.values())
