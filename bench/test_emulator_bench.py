"""pytest-benchmark of the cuda-emulator's scheduler: ``pytest bench/test_emulator_bench.py --benchmark-enable``.

One launch of 64 blocks of the kernel ``gct::four_barriers`` (tests/emulator_kernels/runtime_checks.cu):
256 threads per block (fibers), four __syncthreads, shared-memory traffic between them. The goal
(issue 9): under 1 ms per block in the plain build. The figure per block is in each benchmark's
``extra_info['us_per_block']`` (min over rounds / 64); the race-checker build is timed alongside
for comparison. Each launch's answer is checked against NumPy once before it is timed.
"""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, "tests", "emulator_kernels"))
import harness  # noqa: E402

from gpuconv.emulator import build  # noqa: E402

_OK, _WHY = build.available()
pytestmark = pytest.mark.skipif(not _OK, reason=f"cuda-emulator unavailable: {_WHY}")

SRC = "runtime_checks.cu"
NAMES = harness.RUNTIME_CHECK_NAMES
BLOCKS, THREADS = 64, 256
GOAL_S_PER_BLOCK = 1e-3  # plain build


@pytest.mark.parametrize("mode", ["plain", "race"])
def test_block_of_256_threads_with_four_barriers(benchmark, mode):
    k = harness.kernel(SRC, NAMES, "gct::four_barriers", mode)  # same build (and disk cache) as the tests
    x = np.random.default_rng(0).standard_normal(THREADS * BLOCKS).astype(np.float32)
    xd, out = harness.dev(x), harness.zeros(THREADS * BLOCKS, np.float32)

    def call():
        harness.launch(k, (BLOCKS, 1, 1), (THREADS, 1, 1), [xd, out])

    call()
    xb, t = x.reshape(BLOCKS, THREADS), np.arange(THREADS)
    np.testing.assert_array_equal(np.asarray(out).reshape(BLOCKS, THREADS),
                                  2 * xb[:, (t + 3) % THREADS] + xb[:, (t + 4) % THREADS])

    benchmark.group = "cuda-emulator: 256-thread block, 4 barriers"
    benchmark.extra_info.update(mode=mode, blocks=BLOCKS, threads=THREADS, barriers=4)
    benchmark(call)
    stats = getattr(benchmark, "stats", None)
    if stats is None:  # --benchmark-disable (the default): ran once, nothing timed
        return
    per_block = stats.stats.min / BLOCKS
    benchmark.extra_info["us_per_block"] = round(per_block * 1e6, 1)
    if mode == "plain":
        assert per_block < GOAL_S_PER_BLOCK, f"{per_block * 1e6:.0f} us per block; the goal is under 1 ms"
