"""Importing gpuconv keeps freed host blocks for reuse (glibc's mmap and trim thresholds), unless
the user tuned malloc or set GPUCONV_MALLOC_TUNING=0: observed through the page faults a second
allocation of a freed 24 MB block takes, in a fresh process."""
import os
import platform
import subprocess
import sys

import pytest

from gpuconv import _host_malloc

glibc_only = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
    reason="the thresholds are glibc's mallopt; other C libraries are left alone (tested below)")

# Writes and frees a 24 MB block, then writes a new one of the same size: prints how much of the
# freed block stayed resident, and the minor faults of the second block (reused heap memory takes
# none; memory the C library handed back to the kernel takes one per page, 4 KiB or huge).
_SECOND_BLOCK = """
import resource, numpy as np
import gpuconv
from gpuconv import _host_malloc
def resident():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()
start = resident()
a = np.ones(6 << 20, np.float32); del a
kept = resident() - start
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
b = np.ones(6 << 20, np.float32)
print(_host_malloc.applied(), kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
_BLOCK = 24 << 20


def _second_block(**env_changes):
    # Without a preloaded allocator or sanitizer (ASan's malloc refuses mallopt and keeps a
    # quarantine of freed blocks): the child measures glibc's own.
    env = {k: v for k, v in os.environ.items() if k not in (_host_malloc.TUNING_VAR, "GLIBC_TUNABLES", "LD_PRELOAD")
           and not k.startswith("MALLOC_")}
    env.update(env_changes)
    out = subprocess.run([sys.executable, "-c", _SECOND_BLOCK], env=env, capture_output=True, text=True,
                         check=True).stdout.rsplit(None, 2)
    return out[0], int(out[1]), int(out[2])


@glibc_only
def test_a_freed_block_stays_resident_and_is_reused_without_page_faults():
    state, kept, faults = _second_block()
    assert state == "applied"
    assert kept >= _BLOCK * 0.9, kept
    assert faults < 64, faults


@glibc_only
@pytest.mark.parametrize("env, state", [
    ({"GPUCONV_MALLOC_TUNING": "0"}, "off (GPUCONV_MALLOC_TUNING=0)"),
    ({"MALLOC_TRIM_THRESHOLD_": "131072", "MALLOC_MMAP_THRESHOLD_": "131072"}, "off (the user tuned malloc)"),
])
def test_left_alone_when_turned_off_or_tuned_by_the_user(env, state):
    got, kept, faults = _second_block(**env)
    assert got == state
    assert kept < _BLOCK // 4, kept  # the freed block went back to the kernel
    assert faults > 0


def test_a_bad_setting_names_the_variable_and_the_value():
    with pytest.raises(ValueError, match=r"GPUCONV_MALLOC_TUNING=.*'maybe'"):
        _host_malloc.keep_freed_memory({"GPUCONV_MALLOC_TUNING": "maybe"})


@pytest.mark.parametrize("raw", ["0", "off", "False", " no "])
def test_the_switch_reads_like_gpuconvs_other_switches(monkeypatch, raw):
    monkeypatch.setattr(_host_malloc, "_state", _host_malloc.applied())  # restored afterwards
    assert _host_malloc.keep_freed_memory({"GPUCONV_MALLOC_TUNING": raw}).startswith("off (GPUCONV_MALLOC_TUNING=")


def test_glibc_tunables_for_malloc_count_as_the_users_choice():
    assert _host_malloc._user_tuned({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1"})
    assert not _host_malloc._user_tuned({"GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX2"})


def test_another_c_library_is_left_alone(monkeypatch):
    monkeypatch.setattr(_host_malloc, "_state", _host_malloc.applied())  # restored afterwards
    monkeypatch.setattr(_host_malloc, "_glibc", lambda: None)
    assert _host_malloc.keep_freed_memory({}) == "off (the C library is not glibc)" == _host_malloc.applied()
