"""Issue 8, section 5 (the NumPy engine's items):

- every op returns a C-contiguous array, whatever the layout of its inputs (Fortran order,
  negative strides, zero strides), as the README promises (pooling an F-order input did not);
- ``GPUCONV_NUM_THREADS`` is validated (a clear ValueError naming the variable and the value)
  and capped at the CPUs the process may use (``5000`` started 5,000 threads);
- gpuconv's worker pool is fork-safe: a child forked while the pool exists, even while another
  thread holds the pool's lock, gets a fresh pool and computes (OpenBLAS's own threads are not:
  see the README).
"""
import logging
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import gpuconv
from gpuconv import ops
from gpuconv.cpu import _parallel

import reference as ref
from conftest import assert_close

CL, CF = "channels_last", "channels_first"


@pytest.fixture(autouse=True)
def numpy_engine(restore_backend):
    gpuconv.set_backend("numpy")


def _fortran(a):
    return np.asfortranarray(a)


def _negative(a):
    """The same values, read through negative strides on every axis."""
    return np.ascontiguousarray(a[(slice(None, None, -1),) * a.ndim])[(slice(None, None, -1),) * a.ndim]


def _zero_strides(a):
    return np.broadcast_to(a[:1], a.shape)


LAYOUTS = {"fortran": _fortran, "negative": _negative, "zero_strides": _zero_strides}


def _calls(rng, data_format):
    """(name, inputs, call(*inputs), reference(*inputs)) for every op family, rank 2."""
    shape = (2, 6, 5, 3) if data_format == CL else (2, 3, 6, 5)
    x = rng.integers(-3, 4, shape).astype(np.float64)
    k = rng.integers(-3, 4, (3, 2, 3, 4)).astype(np.float64)
    kt = rng.integers(-3, 4, (3, 2, 4, 3)).astype(np.float64)
    kd = rng.integers(-3, 4, (3, 2, 3, 2)).astype(np.float64)
    kp = rng.integers(-3, 4, (1, 1, 6, 4)).astype(np.float64)
    kl = rng.integers(-3, 4, (6 * 5, 2 * 2 * 3, 2)).astype(np.float64)
    df = dict(data_format=data_format)
    return [
        ("conv", (x, k), lambda a, b: ops.conv(a, b, padding="same", **df),
         lambda a, b: ref.conv(a, b, padding="same", **df)),
        ("conv_transpose", (x, kt), lambda a, b: ops.conv_transpose(a, b, strides=2, padding="same", **df),
         lambda a, b: ref.conv_transpose(a, b, strides=2, padding="same", **df)),
        ("depthwise", (x, kd), lambda a, b: ops.depthwise_conv(a, b, padding="same", **df),
         lambda a, b: ref.depthwise_conv(a, b, padding="same", **df)),
        ("separable", (x, kd, kp), lambda a, b, c: ops.separable_conv(a, b, c, strides=2, padding="same", **df),
         lambda a, b, c: ref.separable_conv(a, b, c, strides=2, padding="same", **df)),
        ("max_pool", (x,), lambda a: ops.max_pool(a, 2, strides=1, **df),
         lambda a: ref.max_pool(a, 2, strides=1, **df)),
        ("average_pool", (x,), lambda a: ops.average_pool(a, 3, padding="same", **df),
         lambda a: ref.average_pool(a, 3, padding="same", **df)),
        ("tiled_max_pool", (x,), lambda a: ops.max_pool(a, 2, **df), lambda a: ref.max_pool(a, 2, **df)),
        ("locally_connected", (x, kl), lambda a, b: ops.locally_connected_core(a, b, kernel_size=2, padding="same",
                                                                                **df),
         lambda a, b: ref.locally_connected(a, b, kernel_size=2, padding="same", **df)),
        ("upsampling_nearest", (x,), lambda a: ops.upsampling_core(a, (2, 3), "nearest", data_format),
         lambda a: ref.upsample(a, (2, 3), "nearest", data_format)),
        ("upsampling_bilinear", (x,), lambda a: ops.upsampling_core(a, (3, 2), "bilinear", data_format),
         lambda a: ref.upsample(a, (3, 2), "bilinear", data_format)),
    ]


OPS = [c[0] for c in _calls(np.random.default_rng(0), CL)]


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("data_format", [CL, CF])
@pytest.mark.parametrize("op", OPS)
def test_every_output_is_c_contiguous_whatever_the_input_layout(op, data_format, layout):
    rng = np.random.default_rng(1)
    _, inputs, call, reference_fn = next(c for c in _calls(rng, data_format) if c[0] == op)
    inputs = [LAYOUTS[layout](a) for a in inputs]
    y = call(*inputs)
    assert y.flags.c_contiguous, f"{op}: output strides {y.strides} for shape {y.shape}"
    want = reference_fn(*[np.ascontiguousarray(a) for a in inputs])
    if op == "upsampling_bilinear":  # weights like 1/6: rounded in a different order
        assert_close(y, want, "float64")
    else:  # small integers: exact
        np.testing.assert_array_equal(y, want)


# --------------------------------------------------------------------------------------------
# GPUCONV_NUM_THREADS
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("raw", ["abc", "0", "-2", "2.5", "1e2", "four", "٣"])
def test_an_invalid_thread_count_is_a_clear_value_error(raw):
    with pytest.raises(ValueError, match=f"GPUCONV_NUM_THREADS must be a positive integer.*{raw!r}"):
        _parallel.threads_from_environment(raw, 4)


@pytest.mark.parametrize("raw,cpus,threads", [(None, 3, 3), ("", 3, 3), ("1", 3, 1), (" 2 ", 3, 2), ("3", 3, 3),
                                              ("5000", 3, 3), ("5000", 1, 1)])
def test_the_thread_count_is_capped_at_the_cpus_the_process_may_use(raw, cpus, threads):
    assert _parallel.threads_from_environment(raw, cpus) == threads


def test_a_capped_thread_count_is_logged_once(caplog):
    with caplog.at_level(logging.WARNING, logger="gpuconv"):
        _parallel.threads_from_environment("4999", 2)
        _parallel.threads_from_environment("4999", 2)
    hits = [r for r in caplog.records if "GPUCONV_NUM_THREADS=4999" in r.getMessage()]
    assert len(hits) == 1 and "using 2 threads" in hits[0].getMessage()


def test_the_first_op_raises_the_clear_error_and_keeps_raising(monkeypatch):
    monkeypatch.setattr(_parallel, "NUM_THREADS", None)
    monkeypatch.setattr(_parallel, "_environment_threads", None)
    monkeypatch.setenv("GPUCONV_NUM_THREADS", "abc")
    for _ in range(2):
        with pytest.raises(ValueError, match="GPUCONV_NUM_THREADS=.abc."):
            ops.depthwise_conv(np.ones((1, 64, 64, 64)), np.ones((3, 3, 64, 1)), padding="same")


_CHILD = r"""
import threading, numpy as np
from gpuconv import ops
from gpuconv.cpu import _parallel
y = ops.depthwise_conv(np.ones((2, 96, 96, 64), np.float32), np.ones((3, 3, 64, 1), np.float32), padding="same")
workers = [t for t in threading.enumerate() if t.name.startswith("gpuconv-cpu")]
print(_parallel.num_threads(), len(workers), float(y[0, 1, 1, 0]))
"""


def _run_child(env_value):
    env = dict(os.environ, GPUCONV_BACKEND="numpy", GPUCONV_NUM_THREADS=env_value)
    return subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, timeout=120)


def test_five_thousand_threads_are_capped_in_a_fresh_process():
    done = _run_child("5000")
    assert done.returncode == 0, done.stderr
    threads, workers, value = done.stdout.split()
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert int(threads) == cpus and int(workers) <= cpus and float(value) == 9.0
    assert "more than the" in done.stderr


def test_an_invalid_thread_count_fails_a_fresh_process_with_the_clear_error():
    done = _run_child("abc")
    assert done.returncode != 0
    assert "ValueError: The environment variable GPUCONV_NUM_THREADS must be a positive integer" in done.stderr
    assert "invalid literal for int()" not in done.stderr


# --------------------------------------------------------------------------------------------
# Fork safety of gpuconv's own workers
# --------------------------------------------------------------------------------------------
def _in_forked_child(body, timeout=60):
    """Run ``body()`` in a forked child; True if it returned within ``timeout`` seconds.
    The child touches no BLAS (see the README on OpenBLAS and fork)."""
    if not hasattr(os, "fork"):
        pytest.skip("needs os.fork")
    pid = os.fork()
    if pid == 0:  # the child
        code = 1
        try:
            body()
            code = 0
        finally:
            os._exit(code)
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status) == 0
        time.sleep(0.02)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return False


def _threaded_pieces():
    """A run on the pool's threads (the child has none of the parent's workers)."""
    seen = []
    _parallel.run(lambda i: seen.append((i, threading.current_thread().name)), range(4))
    assert sorted(i for i, _ in seen) == [0, 1, 2, 3]
    y = ops.max_pool(np.arange(2 * 64 * 64 * 8.0).reshape(2, 64, 64, 8), 3, strides=1, padding="same")
    assert y[0, 0, 0, 0] == 8 * 64 + 8


def test_a_forked_child_gets_a_fresh_pool(monkeypatch):
    monkeypatch.setattr(_parallel, "NUM_THREADS", 2)
    _parallel.run(lambda i: None, range(4))  # the parent's pool exists
    assert _in_forked_child(_threaded_pieces)


def test_a_child_forked_while_the_pool_lock_is_held_does_not_hang(monkeypatch):
    """Before: the child inherited the held lock and hung at its first threaded call."""
    monkeypatch.setattr(_parallel, "NUM_THREADS", 2)
    monkeypatch.setattr(_parallel, "_pool", None)  # the next run creates the pool, under the lock
    held, release = threading.Event(), threading.Event()

    def hold():
        with _parallel._pool_lock:
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)
    try:
        assert _in_forked_child(_threaded_pieces, timeout=30)
    finally:
        release.set()
        holder.join()
