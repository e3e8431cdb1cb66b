"""Proofs of the cuda-emulator's detectors: each deliberately broken kernel of
tests/emulator_kernels/detectors.cu is reported (a KernelLaunchError naming the problem, a
sanitizer report from a child process, or a NaN that the oracle check catches), and its corrected
version, run in the same mode, passes with the oracle's answer: each detector fires on the bug
and only on the bug.

| bug                                         | mode  | what fires                                   |
|---------------------------------------------|-------|----------------------------------------------|
| missing barrier in a double-buffered loop   | race  | 'shared-memory race' (write after read)      |
| shared read one past dynamic shared memory  | asan  | AddressSanitizer heap-buffer-overflow        |
| misaligned float4 load                      | asan  | UBSan 'misaligned address' (float4, 16 B)    |
| divergent __syncthreads                     | plain | 'divergent __syncthreads' with both lines    |
| barrier reached by part of the block        | plain | 'reached by 100 of 256 threads'              |
| read before cp.async wait                   | plain | NaN (destination poisoned at issue)          |
|                                             | race  | 'still pending'                              |
| stale shared value from the previous block  | plain | NaN in blocks 1.. (re-poisoned per block)    |
|                                             | race  | 'no thread of this block has written'        |
| misaligned ldmatrix row address             | plain | 'not 16-byte aligned'                        |
| ldmatrix of global memory                   | plain | 'not inside the block's shared memory'       |
"""
import os
import re
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "emulator_kernels"))
import harness  # noqa: E402

from gpuconv.cuda.launch import KernelLaunchError  # noqa: E402
from gpuconv.emulator import build  # noqa: E402

_OK, _WHY = build.available()
pytestmark = pytest.mark.skipif(not _OK, reason=f"cuda-emulator unavailable: {_WHY}")

SRC = "detectors.cu"
KERNELS = ("double_buffer_sum", "dynamic_shared_overrun", "misaligned_float4", "divergent_barrier", "early_exit_barrier",
           "cp_async_read_before_wait", "stale_shared_table", "misaligned_ldmatrix", "ldmatrix_of_global")
NAMES = tuple(f"gct::{k}<{f}>" for k in KERNELS for f in ("false", "true"))


def _k(name, fixed, mode="plain"):
    return harness.kernel(SRC, NAMES, f"gct::{name}<{'true' if fixed else 'false'}>", mode)


def _x(n, seed=0):
    return np.random.default_rng(seed).standard_normal(n).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Race checker
# ---------------------------------------------------------------------------------------------
def _double_buffer(fixed, mode, tiles=4):
    x = _x(256 * tiles)
    out = harness.zeros(256, np.float32)
    harness.launch(_k("double_buffer_sum", fixed, mode), (1, 1, 1), (256, 1, 1), [harness.dev(x), out, np.int32(tiles)])
    want = x.reshape(tiles, 256)[:, (np.arange(256) + 1) % 256].astype(np.float64).sum(0)
    return np.asarray(out), want


def test_missing_barrier_in_double_buffered_loop_is_a_race():
    with pytest.raises(KernelLaunchError, match=r"shared-memory race: (read after write|write after read) at "
                                                r".*double_buffer_sum.*::buf \+ \d+ byte\(s\) between thread"):
        _double_buffer(False, "race")
    got, want = _double_buffer(True, "race")
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_missing_barrier_gives_a_wrong_answer_in_plain_mode_too():
    # Not a detector, the symptom: the fibers run to their barriers in turn, so a fast thread
    # overwrites the buffer before a slow one has read it. The fixed loop is right.
    got, want = _double_buffer(False, "plain")
    assert not np.allclose(got, want, rtol=1e-5, atol=1e-5)
    got, want = _double_buffer(True, "plain")
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Barriers (plain mode)
# ---------------------------------------------------------------------------------------------
def test_divergent_syncthreads_is_reported_with_both_call_sites():
    x = _x(256)
    out = harness.zeros(256, np.float32)
    with pytest.raises(KernelLaunchError) as e:
        harness.launch(_k("divergent_barrier", False), (1, 1, 1), (256, 1, 1), [harness.dev(x), out])
    msg = str(e.value)
    assert "divergent __syncthreads" in msg and "gct::divergent_barrier<false>" in msg
    assert msg.count("detectors.cu:") == 2, msg  # both barrier lines
    harness.launch(_k("divergent_barrier", True), (1, 1, 1), (256, 1, 1), [harness.dev(x), out])
    s = np.where(np.arange(256) < 128, x, 2 * x)
    np.testing.assert_array_equal(np.asarray(out), s[::-1])


def test_barrier_reached_by_part_of_the_block_is_reported():
    x = _x(256)
    out = harness.zeros(256, np.float32)
    with pytest.raises(KernelLaunchError, match=r"__syncthreads at .*detectors.cu:\d+ reached by 100 of 256 threads"):
        harness.launch(_k("early_exit_barrier", False), (1, 1, 1), (256, 1, 1), [harness.dev(x), out, np.int32(100)])
    harness.launch(_k("early_exit_barrier", True), (1, 1, 1), (256, 1, 1), [harness.dev(x), out, np.int32(100)])
    np.testing.assert_array_equal(np.asarray(out)[:100], x[(np.arange(100) + 1) % 100])


# ---------------------------------------------------------------------------------------------
# cp.async: data lands at the wait, the destination is poisoned at issue
# ---------------------------------------------------------------------------------------------
def _cp_async(fixed, mode):
    x = _x(256)
    out = harness.zeros(256, np.float32)
    harness.launch(_k("cp_async_read_before_wait", fixed, mode), (1, 1, 1), (256, 1, 1), [harness.dev(x), out])
    return np.asarray(out), x[(np.arange(256) + 1) % 256]


def test_read_before_cp_async_wait_reads_poison_in_plain_mode():
    got, want = _cp_async(False, "plain")
    assert np.isnan(got).all()  # every element: the oracle comparison fails loudly
    got, want = _cp_async(True, "plain")
    np.testing.assert_array_equal(got, want)


def test_read_before_cp_async_wait_is_reported_by_the_race_checker():
    with pytest.raises(KernelLaunchError, match=r"read of .*cp_async_read_before_wait.*::s \+ \d+ byte\(s\) while a "
                                                r"cp\.async into it issued by thread \(\d+,0,0\) is still pending"):
        _cp_async(False, "race")
    got, want = _cp_async(True, "race")
    np.testing.assert_array_equal(got, want)


# ---------------------------------------------------------------------------------------------
# Stale shared memory from the previous block
# ---------------------------------------------------------------------------------------------
def _stale(fixed, mode, blocks=3):
    x = _x(256 * blocks)
    out = harness.zeros(256 * blocks, np.float32)
    harness.launch(_k("stale_shared_table", fixed, mode), (blocks, 1, 1), (256, 1, 1), [harness.dev(x), out])
    return np.asarray(out).reshape(blocks, 256), (x.reshape(blocks, 256) * (np.arange(256) + 1)).astype(np.float32)


def test_stale_shared_value_from_previous_block_is_nan_in_plain_mode():
    got, want = _stale(False, "plain")
    np.testing.assert_array_equal(got[0], want[0])  # block 0 built the table
    assert np.isnan(got[1:]).all()  # shared memory is re-poisoned before every block
    got, want = _stale(True, "plain")
    np.testing.assert_array_equal(got, want)


def test_stale_shared_value_is_reported_by_the_race_checker():
    with pytest.raises(KernelLaunchError, match=r"read of .*stale_shared_table.*::scale \+ \d+, which no thread of this "
                                                r"block has written .*block \(1,0,0\)"):
        _stale(False, "race")
    got, want = _stale(True, "race")
    np.testing.assert_array_equal(got, want)


# ---------------------------------------------------------------------------------------------
# ldmatrix address checks
# ---------------------------------------------------------------------------------------------
def test_misaligned_ldmatrix_address_is_reported():
    values = np.arange(8 * 16, dtype=np.uint16)
    out = harness.zeros(32, np.uint32)
    with pytest.raises(KernelLaunchError, match=r"detectors.cu:\d+: ldmatrix.sync.aligned.m8n8.x1.shared.b16: lane 0 "
                                                r"gives row address 0x[0-9a-f]+, which is not 16-byte aligned"):
        harness.launch(_k("misaligned_ldmatrix", False), (1, 1, 1), (32, 1, 1), [harness.dev(values), out])
    harness.launch(_k("misaligned_ldmatrix", True), (1, 1, 1), (32, 1, 1), [harness.dev(values), out])
    lane = np.arange(32)
    tile = values.reshape(8, 16)[:, 8:]
    want = tile[lane // 4, 2 * (lane % 4)].astype(np.uint32) | (tile[lane // 4, 2 * (lane % 4) + 1].astype(np.uint32) << 16)
    np.testing.assert_array_equal(np.asarray(out), want)


def test_ldmatrix_of_global_memory_is_reported():
    values = np.arange(64, dtype=np.uint16)
    out = harness.zeros(32, np.uint32)
    with pytest.raises(KernelLaunchError, match=r"lane 0 gives row address .* not inside the block's shared memory"):
        harness.launch(_k("ldmatrix_of_global", False), (1, 1, 1), (32, 1, 1), [harness.dev(values), out])
    harness.launch(_k("ldmatrix_of_global", True), (1, 1, 1), (32, 1, 1), [harness.dev(values), out])
    lane = np.arange(32)
    tile = values.reshape(8, 8)
    want = tile[lane // 4, 2 * (lane % 4)].astype(np.uint32) | (tile[lane // 4, 2 * (lane % 4) + 1].astype(np.uint32) << 16)
    np.testing.assert_array_equal(np.asarray(out), want)


# ---------------------------------------------------------------------------------------------
# AddressSanitizer + UBSan (child processes with the sanitizer runtimes preloaded)
# ---------------------------------------------------------------------------------------------
_CHILD = """
import numpy as np
import harness
NAMES = {names!r}
k = harness.kernel("detectors.cu", NAMES, {name!r}, "asan")
rng = np.random.default_rng(0)
x = harness.dev(rng.standard_normal({nx}).astype(np.float32))
out = harness.zeros(256, np.float32)
harness.launch(k, (1, 1, 1), (256, 1, 1), [x, out] + {extra}, shared_mem={shared})
xs = np.asarray(x)
want = {want}
assert np.array_equal(np.asarray(out), want.astype(np.float32)), "wrong answer"
print("CHILD-OK")
"""


@pytest.fixture(scope="module")
def asan_build():
    why = harness.sanitized_unavailable()
    if why is not None:
        pytest.skip(f"sanitized child processes unavailable: {why}")
    harness.built(SRC, NAMES, "asan")  # compiled here, without the preload; the children hit the disk cache


def _child(name, fixed, nx, extra, shared, want):
    code = _CHILD.format(names=NAMES, name=f"gct::{name}<{'true' if fixed else 'false'}>", nx=nx, extra=extra,
                         shared=shared, want=want)
    return harness.run_sanitized(code)


def test_shared_read_one_past_dynamic_shared_memory_is_caught_by_asan(asan_build):
    args = dict(nx=256, extra="[np.int32(256)]", shared=256 * 4, want="xs + xs[(np.arange(256) + 1) % 256]")
    broken = _child("dynamic_shared_overrun", False, **args)
    assert broken.returncode != 0, broken.stdout + broken.stderr
    assert "ERROR: AddressSanitizer: heap-buffer-overflow" in broken.stderr, broken.stderr[-3000:]
    assert "READ of size 4" in broken.stderr and "0 bytes to the right of 1024-byte region" in broken.stderr, broken.stderr[-3000:]
    fixed = _child("dynamic_shared_overrun", True, **args)
    assert fixed.returncode == 0 and "CHILD-OK" in fixed.stdout, fixed.stderr[-3000:]


def test_misaligned_float4_load_is_caught_by_ubsan(asan_build):
    args = dict(nx=256 * 4 + 4, extra="[]", shared=0, want="xs[:1024].reshape(256, 4).astype(np.float32).sum(1)")
    broken = _child("misaligned_float4", False, **args)
    assert broken.returncode != 0, broken.stdout + broken.stderr
    # g++ 12 words it "reference binding to" (the struct copy), others "load of misaligned address"
    assert re.search(r"runtime error: (load of|reference binding to) misaligned address 0x[0-9a-f]+ for type "
                     r"'const (struct )?float4', which requires 16 byte alignment", broken.stderr), broken.stderr[-3000:]
    assert "detectors.cu:" in broken.stderr
    # the fixed load sums in the kernel's own order (x + y + z + w, float32)
    fixed = _child("misaligned_float4", True, **dict(args, want="((xs[0:1024:4] + xs[1:1024:4]) + xs[2:1024:4]) + xs[3:1024:4]"))
    assert fixed.returncode == 0 and "CHILD-OK" in fixed.stdout, fixed.stderr[-3000:]
