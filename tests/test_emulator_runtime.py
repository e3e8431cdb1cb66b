"""The cuda-emulator's launch checks and scheduler reports (gpuconv/emulator/runtime.py,
shim/gcemu_runtime.cpp), with the kernels of tests/emulator_kernels/runtime_checks.cu.

- Launch checks, each a KernelLaunchError before anything runs: block size past
  ``__launch_bounds__`` or 1,024 (or z past 64), grid y/z past 65,535 and x past 2**31 - 1, shared
  memory past 48 KB without the opt-in (and past the opt-in maximum with it), argument count, size
  and kind, a host ndarray or a strided view passed as a pointer; what is right still launches.
- The scheduler's reports: a warp collective mismatch, a deadlock between __syncwarp and
  __syncthreads, a lane waiting for one that has exited, an mma with lanes missing or facing an
  ldmatrix; each with the threads and lines named, and the corrected kernel running.
- The race checker re-arms after a report; cp.async copies never outlive their block.
"""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "emulator_kernels"))
import harness  # noqa: E402

from gpuconv.cuda.launch import KernelLaunchError  # noqa: E402
from gpuconv.emulator import build  # noqa: E402

_OK, _WHY = build.available()
pytestmark = pytest.mark.skipif(not _OK, reason=f"cuda-emulator unavailable: {_WHY}")

SRC = "runtime_checks.cu"
NAMES = harness.RUNTIME_CHECK_NAMES


def _k(name, mode="plain"):
    return harness.kernel(SRC, NAMES, name, mode)


def _bounded_args(n=256):
    x = harness.dev(np.arange(n, dtype=np.float32))
    out = harness.zeros(n, np.float32)
    return x, out, [x, out, np.int32(n), np.float32(2.0), np.int64(3)]


# ---------------------------------------------------------------------------------------------
# Launch configuration
# ---------------------------------------------------------------------------------------------
def test_a_correct_launch_runs():
    x, out, args = _bounded_args()
    harness.launch(_k("gct::bounded"), (2, 1, 1), (128, 1, 1), args)
    np.testing.assert_array_equal(np.asarray(out), np.arange(256, dtype=np.float32) * 2 + 3)


def test_block_past_launch_bounds_is_refused():
    _, _, args = _bounded_args()
    with pytest.raises(KernelLaunchError, match=r"gct::bounded .*256 threads per block exceed the kernel's "
                                                r"__launch_bounds__ \(128\)"):
        harness.launch(_k("gct::bounded"), (1, 1, 1), (256, 1, 1), args)
    with pytest.raises(KernelLaunchError, match=r"129 threads per block"):
        harness.launch(_k("gct::bounded"), (2, 1, 1), (129, 1, 1), args)


def test_block_past_1024_threads_is_refused_and_1024_runs():
    out = harness.zeros(4, np.int32)
    with pytest.raises(KernelLaunchError, match=r"1025 threads per block exceed"):
        harness.launch(_k("gct::unbounded"), (1, 1, 1), (1025, 1, 1), [out])
    with pytest.raises(KernelLaunchError, match=r"2048 threads per block exceed"):
        harness.launch(_k("gct::unbounded"), (1, 1, 1), (32, 32, 2), [out])
    with pytest.raises(KernelLaunchError, match=r"threads per block exceed"):  # blockDim.z <= 64
        harness.launch(_k("gct::unbounded"), (1, 1, 1), (1, 1, 65), [out])
    harness.launch(_k("gct::unbounded"), (2, 2, 1), (16, 8, 8), [out])
    np.testing.assert_array_equal(np.asarray(out), [1024] * 4)


@pytest.mark.parametrize("grid", [(1, 65536, 1), (1, 1, 65536), (2**31, 1, 1)], ids=["y", "z", "x"])
def test_grid_past_the_device_limits_is_refused(grid):
    out = harness.zeros(4, np.int32)
    with pytest.raises(KernelLaunchError, match=r"the grid exceeds the device's maximum \(2147483647, 65535, 65535\)"):
        harness.launch(_k("gct::unbounded"), grid, (32, 1, 1), [out])


def test_grid_y_at_the_limit_is_accepted():
    k = _k("gct::unbounded")
    # 65,535 blocks of 32 threads: accepted by the checks (ran here, it is the emulator's cost
    # per block times 65,535; a small 1-thread block keeps it short)
    out = harness.zeros(65535, np.int32)
    harness.launch(k, (1, 65535, 1), (1, 1, 1), [out])
    assert (np.asarray(out) == 1).all()


def test_shared_memory_past_48k_needs_the_opt_in():
    k = _k("gct::dynamic_reverse")
    n = 48 * 1024 // 4 + 1  # one float past 48 KB
    x = harness.dev(np.arange(n, dtype=np.float32))
    out = harness.zeros(n, np.float32)
    with pytest.raises(KernelLaunchError, match=r"0 static \+ 49156 dynamic bytes of shared memory exceed 49152 "
                                                r"\(more than 48 KB needs max_dynamic_shared_size_bytes set first\)"):
        harness.launch(k, (1, 1, 1), (256, 1, 1), [x, out, np.int32(n)], shared_mem=4 * n)
    try:
        k.max_dynamic_shared_size_bytes = 64 * 1024  # the opt-in (cudaFuncAttributeMaxDynamicSharedMemorySize)
        harness.launch(k, (1, 1, 1), (256, 1, 1), [x, out, np.int32(n)], shared_mem=4 * n)
        np.testing.assert_array_equal(np.asarray(out), np.arange(n, dtype=np.float32)[::-1])
        with pytest.raises(KernelLaunchError, match=r"exceed 65536"):
            harness.launch(k, (1, 1, 1), (256, 1, 1), [x, out, np.int32(n)], shared_mem=64 * 1024 + 4)
        k.max_dynamic_shared_size_bytes = 300 * 1024  # past the device's opt-in maximum (227 KB)
        with pytest.raises(KernelLaunchError, match=r"shared memory exceed"):
            harness.launch(k, (1, 1, 1), (256, 1, 1), [x, out, np.int32(n)], shared_mem=228 * 1024)
    finally:
        k.max_dynamic_shared_size_bytes = 0


# ---------------------------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------------------------
def test_wrong_argument_count_is_refused():
    _, _, args = _bounded_args()
    with pytest.raises(KernelLaunchError, match=r"4 arguments for 5 parameters"):
        harness.launch(_k("gct::bounded"), (2, 1, 1), (128, 1, 1), args[:4])
    with pytest.raises(KernelLaunchError, match=r"6 arguments for 5 parameters"):
        harness.launch(_k("gct::bounded"), (2, 1, 1), (128, 1, 1), args + [np.int32(0)])


@pytest.mark.parametrize("index, value, why", [
    (2, np.int64(256), r"argument 2 is (np\.int64\()?256\)? \(int64\); the parameter is a 4-byte integer"),
    (2, 256, r"argument 2 is 256 \(int\); the parameter is a 4-byte integer"),
    (2, np.float32(256), r"argument 2 .*float32.*the parameter is a 4-byte integer"),
    (3, np.float64(2.0), r"argument 3 .*float64.*the parameter is a 4-byte float"),
    (3, np.int32(2), r"argument 3 .*int32.*the parameter is a 4-byte float"),
    (4, np.int32(3), r"argument 4 .*int32.*the parameter is a 8-byte integer"),
], ids=["int64-for-int", "python-int", "float-for-int", "double-for-float", "int-for-float", "int-for-long-long"])
def test_wrong_argument_size_or_kind_is_refused(index, value, why):
    _, _, args = _bounded_args()
    args[index] = value
    with pytest.raises(KernelLaunchError, match=why):
        harness.launch(_k("gct::bounded"), (2, 1, 1), (128, 1, 1), args)


def test_host_array_passed_as_pointer_is_refused():
    _, _, args = _bounded_args()
    args[0] = np.arange(256, dtype=np.float32)  # a plain ndarray: host memory
    with pytest.raises(KernelLaunchError, match=r"argument 0 is a ndarray, not an emulator device array"):
        harness.launch(_k("gct::bounded"), (2, 1, 1), (128, 1, 1), args)
    args[0] = np.float32(1.0)  # a scalar for a pointer
    with pytest.raises(KernelLaunchError, match=r"argument 0 is a float32, not an emulator device array"):
        harness.launch(_k("gct::bounded"), (2, 1, 1), (128, 1, 1), args)


def test_strided_view_passed_as_pointer_is_refused():
    x, out, args = _bounded_args()
    wide = harness.zeros(512, np.float32)
    args[1] = wide[::2]  # a DeviceArray, but a strided view
    with pytest.raises(KernelLaunchError, match=r"argument 1 is a strided view \(strides \(8,\)\)"):
        harness.launch(_k("gct::bounded"), (2, 1, 1), (128, 1, 1), args)


def test_null_pointer_is_accepted():
    _, out, args = _bounded_args()
    args[0] = np.uintp(0)
    harness.launch(_k("gct::bounded"), (2, 1, 1), (128, 1, 1), args)
    np.testing.assert_array_equal(np.asarray(out), np.full(256, 5.0, np.float32))


# ---------------------------------------------------------------------------------------------
# Scheduler reports
# ---------------------------------------------------------------------------------------------
def test_warp_collective_mismatch_names_both_threads_ops_and_lines():
    out = harness.zeros(32, np.int32)
    with pytest.raises(KernelLaunchError) as e:
        harness.launch(_k("gct::warp_op_mismatch<false>"), (1, 1, 1), (32, 1, 1), [out])
    msg = str(e.value)
    assert "gct::warp_op_mismatch<false>" in msg
    assert "warp collective mismatch: thread (0,0,0) of block (0,0,0) waits in __shfl_sync (mask 0xffffffff) at " in msg
    assert "thread (16,0,0) of block (0,0,0) in __ballot_sync (mask 0xffffffff) at " in msg
    assert msg.count("runtime_checks.cu:") == 2
    harness.launch(_k("gct::warp_op_mismatch<true>"), (1, 1, 1), (32, 1, 1), [out])
    assert not np.asarray(out).any()


def test_deadlock_between_syncwarp_and_syncthreads_is_reported():
    out = harness.zeros(64, np.int32)
    with pytest.raises(KernelLaunchError, match=r"deadlock: thread \(0,0,0\) of block \(0,0,0\) waits in __syncwarp at "
                                                r".*runtime_checks.cu:\d+ while other threads of its warp wait at "
                                                r"__syncthreads or have exited"):
        harness.launch(_k("gct::warp_barrier_deadlock<false>"), (1, 1, 1), (64, 1, 1), [out])
    harness.launch(_k("gct::warp_barrier_deadlock<true>"), (1, 1, 1), (64, 1, 1), [out])
    np.testing.assert_array_equal(np.asarray(out), np.arange(64))


def test_collective_waiting_for_an_exited_lane_is_reported():
    out = harness.zeros(32, np.int32)
    with pytest.raises(KernelLaunchError, match=r"thread \(0,0,0\) of block \(0,0,0\) waits in __shfl_down_sync at "
                                                r".*runtime_checks.cu:\d+ for thread \(16,0,0\) of block \(0,0,0\), "
                                                r"which has exited"):
        harness.launch(_k("gct::warp_lane_exited<false>"), (1, 1, 1), (32, 1, 1), [out])
    harness.launch(_k("gct::warp_lane_exited<true>"), (1, 1, 1), (32, 1, 1), [out])
    np.testing.assert_array_equal(np.asarray(out)[:16], np.arange(1, 17))


def test_mma_in_a_partial_warp_is_reported():
    out = harness.zeros(48, np.float32)
    with pytest.raises(KernelLaunchError, match=r"runtime_checks.cu:\d+: mma.sync.m16n8k16.row.col.f32.f16.f16.f32 needs "
                                                r"all 32 lanes of a warp, but this warp of the block has only 16 threads "
                                                r"\(thread \(32,0,0\)"):
        harness.launch(_k("gct::mma_partial_warp"), (1, 1, 1), (48, 1, 1), [out])


def test_mma_facing_ldmatrix_is_a_mismatch():
    out = harness.zeros(32, np.float32)
    with pytest.raises(KernelLaunchError, match=r"warp collective mismatch: .* waits in "
                                                r"mma.sync.m16n8k16.row.col.f32.f16.f16.f32 .* in "
                                                r"ldmatrix.sync.aligned.m8n8.x4.shared.b16"):
        harness.launch(_k("gct::mma_vs_ldmatrix"), (1, 1, 1), (32, 1, 1), [out])


def test_race_checker_rearms_after_a_report():
    # A report ends the reporting fiber inside the checker's hook; the next launch must still check.
    out = harness.zeros(32, np.int32)
    for _ in range(2):
        with pytest.raises(KernelLaunchError, match="warp collective mismatch"):
            harness.launch(_k("gct::warp_op_mismatch<false>", "race"), (1, 1, 1), (32, 1, 1), [out])
    x = harness.dev(np.arange(64, dtype=np.float32))
    res = harness.zeros(128, np.float32)
    for _ in range(2):  # a race report, twice in a row
        with pytest.raises(KernelLaunchError, match=r"which no thread of this block has written"):
            harness.launch(_k("gct::cp_async_left_pending", "race"), (2, 1, 1), (64, 1, 1), [x, res])


def test_cp_async_copies_never_land_in_the_next_block():
    x = harness.dev(np.arange(64, dtype=np.float32))
    out = harness.zeros(128, np.float32)
    harness.launch(_k("gct::cp_async_left_pending"), (2, 1, 1), (64, 1, 1), [x, out])
    assert np.isnan(np.asarray(out)[64:]).all()  # block 1 waited, but the copies were block 0's


def test_four_barrier_block_computes_its_answer():
    blocks = 3
    x = np.random.default_rng(1).standard_normal(256 * blocks).astype(np.float32)
    out = harness.zeros(256 * blocks, np.float32)
    harness.launch(_k("gct::four_barriers"), (blocks, 1, 1), (256, 1, 1), [harness.dev(x), out])
    xb = x.reshape(blocks, 256)
    t = np.arange(256)
    np.testing.assert_array_equal(np.asarray(out).reshape(blocks, 256), 2 * xb[:, (t + 3) % 256] + xb[:, (t + 4) % 256])
