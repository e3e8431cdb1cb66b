"""The cuda-emulator's PTX emulations (gpuconv/emulator/shim/gcemu_ptx.h) behind kernels/ptx.cuh.

- float16 / bfloat16 / tf32 conversions bit-exact with NumPy (all 65,536 binary16 patterns; float32
  values at every rounding tie and boundary), NaN as NaN;
- ldmatrix .x1/.x2/.x4 with and without .trans against the PTX ISA's fragment layout, computed
  by hand and by formula; a store right after ldmatrix cannot reach another lane's fragment;
- a multistage tensor-core GEMM tile (cp.async 3-stage pipeline, ldmatrix, mma.sync m16n8k16 with
  f16 and bf16 operands; mma m16n8k8 with tf32) against NumPy in float64, within fp32 rounding,
  in the plain build and clean under the race checker;
- warp shuffles, votes and __syncwarp with CUDA's semantics;
- every new wrapper of kernels/ptx.cuh compiles through NVRTC for sm_80 and sm_90 (the GPU branch).
Test kernels: tests/emulator_kernels/{conversions,tensor_core,ptx_wrappers}.cu.
"""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "emulator_kernels"))
import harness  # noqa: E402

from gpuconv.emulator import build  # noqa: E402

_OK, _WHY = build.available()
pytestmark = pytest.mark.skipif(not _OK, reason=f"cuda-emulator unavailable: {_WHY}")

CONV = "conversions.cu"
CONV_NAMES = tuple(f"gct::convert<{k}>" for k in range(7))
TC = "tensor_core.cu"
TC_NAMES = ("gct::gemm16<0, true>", "gct::gemm16<0, false>", "gct::gemm16<1, true>", "gct::gemm16<1, false>",
            "gct::gemm_tf32", "gct::ldmatrix_probe", "gct::ldmatrix_then_store", "gct::warp_probe",
            "gct::warp_partial_probe")


def _convert(kind, data, out_dtype, n):
    k = harness.kernel(CONV, CONV_NAMES, f"gct::convert<{kind}>")
    inp = harness.dev(data)
    out = harness.zeros(n, out_dtype)
    harness.launch(k, (4, 1, 1), (256, 1, 1), [inp, out, np.int32(n)])
    return np.asarray(out).view(np.ndarray)


# ---------------------------------------------------------------------------------------------
# Conversions
# ---------------------------------------------------------------------------------------------
def _f16_grid_floats():
    """float32 values where float -> binary16 rounding decides: every binary16 value, every tie
    between neighbours (the midpoints, exact in float32) and the float32 values one ulp either side
    of each, the overflow threshold, the subnormal and underflow boundaries, both signs."""
    h = np.arange(0x7C01, dtype=np.uint16)  # +0 .. +Inf
    vals = h.view(np.float16).astype(np.float64)
    mids = (vals[:-1] + vals[1:]) / 2  # exact in float32 (12 significant bits at most)
    mids = np.concatenate([mids, [65520.0, 2.0**-25, 2.0**-14 - 2.0**-25]])
    mids32 = mids.astype(np.float32)
    assert np.all(mids32.astype(np.float64) == mids)
    inf = np.float32(np.inf)
    around = np.concatenate([mids32, np.nextafter(mids32, inf), np.nextafter(mids32, np.float32(0))])
    special = np.array([65504.0, 65519.996, 65520.0, 65536.0, 1e5, 3.4028235e38, np.inf, 2.0**-24, 2.0**-26,
                        1e-45, 1.1754944e-38, 0.0], np.float32)
    pos = np.concatenate([vals.astype(np.float32), around, special])
    return np.concatenate([pos, -pos])


def test_half_to_float_all_65536_patterns_bit_exact():
    bits = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    got = _convert(0, bits, np.float32, bits.size)
    want = bits.view(np.float16).astype(np.float32)
    nan = np.isnan(want)
    assert np.array_equal(np.isnan(got), nan)
    assert np.array_equal(got[~nan].view(np.uint32), want[~nan].view(np.uint32))  # -0.0 and subnormals too
    assert nan.sum() == 2 * 1023


def test_float_to_half_ties_boundaries_and_random_bit_exact():
    rng = np.random.default_rng(9)
    grid = _f16_grid_floats()
    random_bits = rng.integers(0, 2**32, size=1_500_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    # Dense sweep of the binary16 range (every 61st float32 bit pattern from 2**-26 to 2**17).
    sweep = np.arange(0x32800000, 0x48000000, 61, dtype=np.uint32).view(np.float32)
    x = np.concatenate([grid, random_bits, sweep, -sweep])
    assert x.size > 3_000_000
    got = _convert(1, x, np.uint16, x.size)
    with np.errstate(over="ignore", invalid="ignore"):
        want = x.astype(np.float16)
    nan = np.isnan(x)
    assert nan.any() and np.isnan(got[nan].view(np.float16)).all()
    mismatch = np.flatnonzero(got[~nan] != want[~nan].view(np.uint16))
    assert mismatch.size == 0, [(float(x[~nan][i]), hex(got[~nan][i]), hex(want[~nan].view(np.uint16)[i])) for i in mismatch[:5]]
    # the grid holds every tie: ties went to even, both ways
    assert (want.view(np.uint16) & 1).sum() > 0


def test_bfloat16_conversions_bit_exact():
    ml_dtypes = pytest.importorskip("ml_dtypes", reason="ml_dtypes gives NumPy a bfloat16 to compare with")
    bits = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    got = _convert(2, bits, np.float32, bits.size)
    want = bits.view(ml_dtypes.bfloat16).astype(np.float32)
    nan = np.isnan(want)
    assert np.array_equal(np.isnan(got), nan)
    assert np.array_equal(got[~nan].view(np.uint32), want[~nan].view(np.uint32))

    rng = np.random.default_rng(10)
    b = np.arange(0, 0x7F81, dtype=np.uint32)  # every non-negative bfloat16 up to Inf
    lo, hi = (b[:-1] << 16), (b[1:] << 16)
    ties = (lo + 0x8000).view(np.float32)  # exact midpoints
    x = np.concatenate([ties, (lo + 0x7FFF).view(np.float32), (lo + 0x8001).view(np.float32), hi.view(np.float32),
                        rng.integers(0, 2**32, size=1_000_000, dtype=np.uint64).astype(np.uint32).view(np.float32)])
    x = np.concatenate([x, -x])
    got = _convert(3, x, np.uint16, x.size)
    with np.errstate(invalid="ignore"):
        want = x.astype(ml_dtypes.bfloat16).view(np.uint16)
    nan = np.isnan(x)
    assert np.isnan(got[nan].view(ml_dtypes.bfloat16).astype(np.float32)).all()
    assert np.array_equal(got[~nan], want[~nan])


def _tf32_rna(x):
    """Reference cvt.rna.tf32.f32 in float64 arithmetic: 11 significant bits, ties away from 0."""
    x64 = x.astype(np.float64)
    out = np.zeros_like(x64)
    finite = np.isfinite(x64) & (x64 != 0)
    a = np.abs(x64[finite])
    e = np.maximum(np.floor(np.log2(a)), -126)
    # log2 may be off by one next to a power of two: fix the exponent exactly
    e = np.where(2.0**e > a, e - 1, e)
    e = np.where(2.0 ** (e + 1) <= a, e + 1, e)
    e = np.maximum(e, -126)
    ulp = 2.0 ** (e - 10)
    r = np.floor(a / ulp + 0.5) * ulp
    out[finite] = np.sign(x64[finite]) * r
    out[~finite] = x64[~finite]
    with np.errstate(over="ignore"):
        return out.astype(np.float32)


def test_tf32_rounding_ties_away():
    rng = np.random.default_rng(11)
    base = rng.integers(0, 2**31, size=400_000, dtype=np.uint64).astype(np.uint32)
    ties = (base & ~np.uint32(0x1FFF)) | np.uint32(0x1000)
    x = np.concatenate([base.view(np.float32), ties.view(np.float32), np.array([3.4028235e38, 1e-45, 0.0], np.float32)])
    x = x[np.isfinite(x)]
    x = np.concatenate([x, -x])
    got = _convert(4, x, np.uint32, x.size)
    want = _tf32_rna(x)
    assert np.array_equal(got.view(np.float32), want) or np.array_equal(got, want.view(np.uint32))
    assert not (got & 0x1FFF).any()
    nan = _convert(4, np.array([np.nan, -np.nan], np.float32), np.uint32, 2)
    assert np.isnan(nan.view(np.float32)).all()


@pytest.mark.parametrize("kind", [5, 6], ids=["f16x2", "bf16x2"])
def test_packed_conversions_put_the_first_operand_in_the_upper_half(kind):
    pairs = np.array([[1.0, 2.0], [-0.5, 65504.0], [3.0e-5, -7.25], [np.inf, 0.0]], np.float32)
    got = _convert(kind, pairs.ravel(), np.uint32, len(pairs))
    if kind == 5:
        h = pairs.astype(np.float16).view(np.uint16).astype(np.uint32)
    else:
        ml_dtypes = pytest.importorskip("ml_dtypes")
        h = pairs.astype(ml_dtypes.bfloat16).view(np.uint16).astype(np.uint32)
    assert np.array_equal(got, (h[:, 0] << 16) | h[:, 1])


# ---------------------------------------------------------------------------------------------
# ldmatrix
# ---------------------------------------------------------------------------------------------
def _ldmatrix(rows, mode="plain"):
    values = np.array([(r << 8) | c for r in range(32) for c in range(8)], np.uint16)  # tile[r][c] = 0xRRCC
    out = harness.zeros(6 * 32 * 4, np.uint32)
    k = harness.kernel(TC, TC_NAMES, "gct::ldmatrix_probe", mode)
    harness.launch(k, (1, 1, 1), (32, 1, 1), [harness.dev(values), harness.dev(np.asarray(rows, np.int32)), out])
    return np.asarray(out).view(np.ndarray).reshape(6, 32, 4), values.reshape(32, 8)


def _pack(lo, hi):
    return np.uint32(lo) | (np.uint32(hi) << 16)


def test_ldmatrix_hand_computed_fragments():
    got, _ = _ldmatrix(np.arange(32))
    x1, x2, x4, t1, t2, t4 = got
    # Without .trans lane L holds row L/4, columns 2(L%4), 2(L%4)+1 (lower column in the low half).
    assert x1[0, 0] == 0x00010000  # lane 0: (0,0) | (0,1) << 16
    assert x1[5, 0] == 0x01030102  # lane 5: row 1, columns 2 and 3
    assert x1[31, 0] == 0x07070706  # lane 31: row 7, columns 6 and 7
    assert x2[5, 1] == 0x09030902  # matrix 1 = tile rows 8..15 (addresses of lanes 8..15)
    assert x4[9, 2] == 0x12031202  # matrix 2 = rows 16..23: lane 9 -> row 2, columns 2, 3
    assert x4[30, 3] == 0x1F051F04  # matrix 3 = rows 24..31: lane 30 -> row 7, columns 4, 5
    # With .trans lane L holds rows 2(L%4), 2(L%4)+1 of column L/4.
    assert t1[0, 0] == 0x01000000  # (0,0) | (1,0) << 16
    assert t1[1, 0] == 0x03000200  # rows 2, 3 of column 0
    assert t1[5, 0] == 0x03010201  # lane 5: rows 2, 3 of column 1
    assert t4[31, 3] == 0x1F071E07  # matrix 3: rows 6, 7 (tile rows 30, 31) of column 7
    assert t2[4, 1] == 0x09010801  # matrix 1: rows 0, 1 (tile rows 8, 9) of column 1
    # Registers past .num stay untouched (0).
    assert not x1[:, 1:].any() and not x2[:, 2:].any() and not t1[:, 1:].any()


@pytest.mark.parametrize("mode", ["plain", "race"])
def test_ldmatrix_fragments_follow_each_lanes_row_address(mode):
    rows = np.random.default_rng(12).permutation(32)
    got, tile = _ldmatrix(rows, mode)
    for v, (num, trans) in enumerate([(1, False), (2, False), (4, False), (1, True), (2, True), (4, True)]):
        for lane in range(32):
            for m in range(num):
                mat = tile[rows[8 * m:8 * m + 8]]  # row r of matrix m: the address of lane 8m + r
                if not trans:
                    r, c = lane // 4, 2 * (lane % 4)
                    want = _pack(mat[r, c], mat[r, c + 1])
                else:
                    r, c = 2 * (lane % 4), lane // 4
                    want = _pack(mat[r, c], mat[r + 1, c])
                assert got[v, lane, m] == want, (v, lane, m)


def test_store_after_ldmatrix_does_not_reach_other_lanes_fragments():
    for mode in ("plain", "race"):
        out = harness.zeros(32, np.uint32)
        harness.launch(harness.kernel(TC, TC_NAMES, "gct::ldmatrix_then_store", mode), (1, 1, 1), (32, 1, 1), [out])
        lane = np.arange(32)
        want = (8 * (lane // 4) + 2 * (lane % 4)) | ((8 * (lane // 4) + 2 * (lane % 4) + 1) << 16)
        assert np.array_equal(np.asarray(out), want.astype(np.uint32)), mode


# ---------------------------------------------------------------------------------------------
# Tensor-core GEMM tiles
# ---------------------------------------------------------------------------------------------
def _bf16_bits(x):
    return (np.asarray(x, np.float32).view(np.uint32) >> 16).astype(np.uint16)  # truncation: exact bf16 values


def _bf16_values(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


def _gemm16_case(kind, b_kn, M=64, N=64, K=104, seed=0):
    rng = np.random.default_rng(seed)
    a32 = rng.standard_normal((M, K)).astype(np.float32)
    b32 = rng.standard_normal((K, N)).astype(np.float32)
    if kind == 0:
        a_bits, b_bits = a32.astype(np.float16).view(np.uint16), b32.astype(np.float16).view(np.uint16)
        a, b = a_bits.view(np.float16).astype(np.float64), b_bits.view(np.float16).astype(np.float64)
    else:
        a_bits, b_bits = _bf16_bits(a32), _bf16_bits(b32)
        a, b = _bf16_values(a_bits).astype(np.float64), _bf16_values(b_bits).astype(np.float64)
    b_stored = b_bits if b_kn else np.ascontiguousarray(b_bits.T)
    return a_bits, b_stored, a, b


def _run_gemm16(kind, b_kn, mode="plain", M=64, N=64, K=104):
    a_bits, b_stored, a, b = _gemm16_case(kind, b_kn, M, N, K)
    c = harness.zeros((M, N), np.float32)
    name = f"gct::gemm16<{kind}, {'true' if b_kn else 'false'}>"
    harness.launch(harness.kernel(TC, TC_NAMES, name, mode), (N // 32, M // 32, 1), (128, 1, 1),
                   [harness.dev(a_bits), harness.dev(b_stored), c, np.int32(M), np.int32(N), np.int32(K)])
    return np.asarray(c).view(np.ndarray), a @ b, np.abs(a) @ np.abs(b), K


@pytest.mark.parametrize("kind", [0, 1], ids=["f16", "bf16"])
@pytest.mark.parametrize("b_kn", [True, False], ids=["B_kn_ldmatrix_trans", "B_nk_ldmatrix_x2"])
def test_multistage_tensor_core_gemm_matches_float64(kind, b_kn):
    c, ref, scale, K = _run_gemm16(kind, b_kn)
    assert np.isfinite(c).all()
    # Exact products; each mma rounds its sum once to fp32: K / 16 roundings of a partial sum.
    err = np.abs(c - ref) / scale
    assert err.max() <= (K // 16 + 1) * 2.0**-24, err.max()


def test_multistage_gemm_is_clean_under_the_race_checker():
    c, ref, scale, K = _run_gemm16(0, True, mode="race", M=32, N=64, K=72)
    assert (np.abs(c - ref) / scale).max() <= (K // 16 + 1) * 2.0**-24


def test_tensor_core_kernels_are_clean_under_asan_and_ubsan():
    """The cp.async, ldmatrix and mma emulations themselves read and write only what they should."""
    why = harness.sanitized_unavailable()
    if why is not None:
        pytest.skip(f"sanitized child processes unavailable: {why}")
    harness.built(TC, TC_NAMES, "asan")  # compiled here; the child hits the disk cache
    code = f"""
import numpy as np
import harness
import test_emulator_ptx as t
for kind, b_kn in ((0, True), (1, False)):
    c, ref, scale, K = t._run_gemm16(kind, b_kn, mode="asan", M=32, N=32, K=40)
    assert (np.abs(c - ref) / scale).max() <= (K // 16 + 1) * 2.0**-24
got, tile = t._ldmatrix(np.arange(32), mode="asan")
assert got[2, 9, 2] == 0x12031202
print("CHILD-OK")
"""
    done = harness.run_sanitized(code)
    assert done.returncode == 0 and "CHILD-OK" in done.stdout, done.stderr[-4000:]


def test_tf32_gemm_matches_float64_of_rounded_operands():
    M, N, K = 32, 16, 40
    rng = np.random.default_rng(3)
    a32 = rng.standard_normal((M, K)).astype(np.float32)
    b32 = rng.standard_normal((K, N)).astype(np.float32)
    c0 = rng.standard_normal((M, N)).astype(np.float32)
    c = harness.zeros((M, N), np.float32)
    harness.launch(harness.kernel(TC, TC_NAMES, "gct::gemm_tf32"), (N // 8, M // 16, 1), (32, 1, 1),
                   [harness.dev(a32), harness.dev(b32), harness.dev(c0), c, np.int32(M), np.int32(N), np.int32(K)])
    a, b = _tf32_rna(a32).astype(np.float64), _tf32_rna(b32).astype(np.float64)
    ref = a @ b + c0
    scale = np.abs(a) @ np.abs(b) + np.abs(c0)
    err = np.abs(np.asarray(c) - ref) / scale
    assert err.max() <= (K // 8 + 1) * 2.0**-24, err.max()
    # and tf32 rounding mattered: the unrounded float32 product differs by far more
    assert np.abs(a32.astype(np.float64) @ b32 + c0 - ref).max() > 1e-4


# ---------------------------------------------------------------------------------------------
# Warp intrinsics
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["plain", "race"])
def test_warp_shuffles_votes_and_syncwarp(mode):
    rng = np.random.default_rng(13)
    src = rng.integers(0, 40, size=64).astype(np.int32)  # past 31: taken modulo the width
    out = harness.zeros((64, 18), np.int32)
    outd = harness.zeros(64, np.float64)
    harness.launch(harness.kernel(TC, TC_NAMES, "gct::warp_probe", mode), (1, 1, 1), (64, 1, 1), [harness.dev(src), out, outd])
    out = np.asarray(out)
    for tid in range(64):
        lane, warp = tid % 32, tid // 32

        def v(l):
            return l * 10 + warp * 1000

        want = {
            0: v(src[tid] % 32),
            1: v((lane & ~7) + 3),
            2: v(lane - 3 if lane >= 3 else lane),
            3: v(lane - 2 if lane % 16 >= 2 else lane),
            4: v(lane + 5 if lane + 5 < 32 else lane),
            5: v(lane + 3 if lane % 8 + 3 < 8 else lane),
            6: v(lane ^ 1),
            7: v(lane ^ 6),
            # xor past the width: an earlier group may be read, a later one gives the lane's own value
            8: v(lane ^ 16 if (lane ^ 16) < (lane & ~15) + 16 else lane),
            9: sum(1 << l for l in range(32) if l % 3 == 0),
            10: 1,
            11: 1,
            12: v((lane & ~15) + (31 - lane) % 16),
            13: sum(1 << l for l in range(16, 32)),
            14: v(31 - lane),
            15: lane ^ 31,
            16: 0,
            17: 0,
        }
        for slot, w in want.items():
            got = int(out[tid, slot]) & 0xFFFFFFFF  # ballots are unsigned
            assert got == int(w) & 0xFFFFFFFF, (tid, slot, hex(got), hex(int(w)))
        assert outd[tid] == 0.5 + v(lane + 1 if lane < 31 else lane)


@pytest.mark.xfail(strict=True, reason=(
    "runtime limitation (gcemu_runtime.cpp release_warps / warp_exchange): collectives of disjoint "
    "partial masks in flight at once are reported as a 'warp collective mismatch', and lanes whose "
    "collective counts differ use different slot parities; legal CUDA since Volta"))
def test_partial_mask_collectives():
    out = harness.zeros((32, 4), np.int32)
    harness.launch(harness.kernel(TC, TC_NAMES, "gct::warp_partial_probe"), (1, 1, 1), (32, 1, 1), [out])
    out = np.asarray(out)
    lane = np.arange(32)
    assert np.array_equal(out[:, 0], np.where(lane < 16, (15 - lane) * 10, -1))
    assert np.array_equal(out[:, 1], np.where(lane & 1, 0x22222222, -1))
    assert np.array_equal(out[:, 2], np.zeros(32))
    assert np.array_equal(out[:, 3], np.full(32, sum(1 << l for l in range(16) if (15 - l) * 10 > 70)))


# ---------------------------------------------------------------------------------------------
# Both targets compile the wrappers
# ---------------------------------------------------------------------------------------------
def test_every_wrapper_runs_on_the_emulator_in_each_mode():
    x = (np.arange(256, dtype=np.float32) / 256).astype(np.float32)
    results = []
    for mode in ("plain", "race"):
        out = harness.zeros(32, np.float32)
        harness.launch(harness.kernel("ptx_wrappers.cu", ("gct::every_wrapper",), "gct::every_wrapper", mode),
                       (1, 1, 1), (32, 1, 1), [harness.dev(x), out])
        results.append(np.asarray(out).copy())
    assert np.isfinite(results[0]).all()
    assert np.array_equal(results[0], results[1])


def test_ptx_wrappers_compile_under_nvrtc_for_sm80_and_sm90():
    try:
        from cupy.cuda import nvrtc

        nvrtc.getVersion()
    except Exception as e:  # noqa: BLE001 - CuPy or libnvrtc missing
        if os.environ.get("GPUCONV_REQUIRE_NVRTC", "") not in ("", "0"):
            pytest.fail(f"GPUCONV_REQUIRE_NVRTC=1 but NVRTC is unavailable: {e}")
        pytest.skip(f"NVRTC unavailable: {type(e).__name__}: {e}")
    from gpuconv.cuda import options, sources

    headers = sources.read_headers()
    for filename, names in (("ptx_wrappers.cu", ["gct::every_wrapper"]), (TC, list(TC_NAMES)), (CONV, list(CONV_NAMES))):
        for arch in ("sm_80", "sm_90"):
            prog = nvrtc.createProgram(harness.source(filename), filename, [t.encode() for t in headers.values()],
                                       [n.encode() for n in headers])
            try:
                for n in names:
                    nvrtc.addNameExpression(prog, n)
                try:
                    nvrtc.compileProgram(prog, list(options.compile_options(arch)))
                except Exception as e:  # noqa: BLE001
                    pytest.fail(f"{filename} for {arch}: {e}\n{nvrtc.getProgramLog(prog)}")
                assert len(nvrtc.getCUBIN(prog)) > 0
            finally:
                nvrtc.destroyProgram(prog)
