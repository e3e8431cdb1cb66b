"""pytest-benchmark over the declared suites: ``pytest bench/ --benchmark-enable``.

This top-level ``bench/`` directory holds the benchmark *tests* (and ``gpu_check.sh``); it is not
installed. The benchmark *code* they use (suites, the oracle gate, the timed subjects, the
``gpuconv-bench`` CLI) is the package ``gpuconv.benchmarking``.

Rows come from ``gpuconv.benchmarking.suites``: ``suite`` (bench_suite.md) when the CUDA backend is
active, its CPU-sized twin ``cpu`` otherwise; ``GPUCONV_BENCH_SUITE`` (suite | cpu | quick |
keras) and ``GPUCONV_BENCH_DTYPE`` (float32 | float16) override. Each row gives two benchmarks,
gpuconv and torch, in one pytest-benchmark group named after the row, so the table shows them
side by side. Both calls pass the CLI's correctness gate first: a wrong answer fails the test and
is never timed. (pytest-benchmark times with the host clock, synchronizing the GPU after each
call and without flushing L2; ``gpuconv-bench`` is the precise tool, with CUDA events.)
"""
import os
import zlib

import numpy as np
import pytest

import gpuconv
from gpuconv.benchmarking.oracle_gate import COMPARISON_SLACK, check_indices, compute_oracle, threshold
from gpuconv.benchmarking.cost import bytes_moved, flops
from gpuconv.benchmarking.environment import cpu_threads
from gpuconv.benchmarking.inputs import make_inputs
from gpuconv.benchmarking.subjects import GpuconvSubject, place
from gpuconv.benchmarking.suites import SUITES

BACKEND = gpuconv.get_backend()
DEVICE = "cuda" if BACKEND == "cuda" else "cpu"
SUITE_NAME = os.environ.get("GPUCONV_BENCH_SUITE", "suite" if DEVICE == "cuda" else "cpu")
DTYPE = os.environ.get("GPUCONV_BENCH_DTYPE", "float32")
DATA_FORMAT = "channels_last"
ROWS = SUITES[SUITE_NAME]


def pytest_generate_tests(metafunc):
    if "row" in metafunc.fixturenames:
        metafunc.parametrize("row", ROWS, ids=[r.id for r in ROWS])


def _sync():
    if DEVICE == "cuda":
        import cupy

        cupy.cuda.Stream.null.synchronize()


class Case:
    """One row's operands, placed once, its oracle, and the checked calls."""

    def __init__(self, row):
        self.row = row
        rng = np.random.default_rng(zlib.crc32(row.id.encode()))
        self.host = make_inputs(row, DTYPE, DATA_FORMAT, rng)
        self.arrays = place(self.host, DEVICE)
        self.oracle = compute_oracle(row, self.host, DATA_FORMAT, check_indices(row))
        self.info = {"suite": SUITE_NAME, "dtype": DTYPE, "backend": BACKEND, "gflop": flops(row).total / 1e9,
                     "bytes": bytes_moved(row, DTYPE), "shape": row.shape_text()}

    def checked(self, fn, to_host, limit):
        """``fn`` followed by a synchronization, after one checked call (pytest.fail if wrong)."""
        err = self.oracle.error_of(to_host(fn()))
        if not err <= limit:
            pytest.fail(f"{self.row.id}: relative L2 error {err:.3e} > {limit:.0e}: not timed")
        self.info["rel_err"] = err

        def call():
            fn()
            _sync()

        return call


@pytest.fixture(scope="session")
def cases():
    return {}


@pytest.fixture
def case(row, cases):
    if row.id not in cases:
        cases[row.id] = Case(row)
    return cases[row.id]


@pytest.fixture(scope="session")
def torch_subject():
    torch_compare = pytest.importorskip("gpuconv.benchmarking.torch_compare")
    pytest.importorskip("torch", reason="PyTorch is the comparison library")
    try:
        return torch_compare.TorchSubject(DEVICE, cpu_threads())
    except torch_compare.Unsupported as e:
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def gpuconv_subject():
    return GpuconvSubject(BACKEND)


@pytest.fixture(scope="session")
def limits():
    """Relative L2 error allowed: (gpuconv, comparison), as in the CLI's gate."""
    return threshold(DTYPE), threshold(DTYPE) * COMPARISON_SLACK


@pytest.fixture(scope="session")
def data_format():
    return DATA_FORMAT
