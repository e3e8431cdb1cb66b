"""Keep freed host memory for reuse: glibc's malloc thresholds, set once when gpuconv is imported.

Why: the NumPy engine allocates every output and working buffer fresh (1-10 MB each at training
sizes), and glibc's defaults hand such blocks back to the kernel as soon as they are freed:
blocks above the dynamic mmap threshold are unmapped, and a free top of the heap larger than
twice that threshold is trimmed. The next allocation then takes one page fault per 4 KiB page
touched. Measured on the 2-core bench machine, one training step of the seed CNN (batch 32):
2,574 minor faults and 11 ms of system time per step with the defaults, none and 0.7 ms with
the thresholds below; 46 -> 38 ms per step (median of 9 epochs each, from 3 pairs of
alternating processes).

What: ``mallopt(M_MMAP_THRESHOLD, 32 MiB)`` (glibc's largest allowed value on 64-bit: blocks up
to it come from the heap and are reused) and ``mallopt(M_TRIM_THRESHOLD, 256 MiB)`` (at most
that much freed memory is kept at the top of each heap before it is returned). The cost is
resident memory: up to 256 MiB of freed heap per malloc arena stays mapped, as a caching
allocator's pool would. Blocks over 32 MiB are mapped and unmapped as before.

Who decides: nothing is changed where the C library is not glibc, where the user tuned malloc
themselves (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_TOP_PAD_``, or
``glibc.malloc`` in ``GLIBC_TUNABLES``), or where ``GPUCONV_MALLOC_TUNING`` is off (0 / off /
false / no; unset, empty, 1 / on / true / yes: on). ``applied()`` says which, for the
benchmark's environment record.
"""
import ctypes
import os
import sys

from ._env_switch import switch

TUNING_VAR = "GPUCONV_MALLOC_TUNING"
MMAP_THRESHOLD_BYTES = 32 << 20
TRIM_THRESHOLD_BYTES = 256 << 20

# mallopt parameter numbers, from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_USER_MALLOC_VARS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")

_state = "not applied"


def _user_tuned(environ):
    return any(name in environ for name in _USER_MALLOC_VARS) or "glibc.malloc" in environ.get("GLIBC_TUNABLES", "")


def _glibc():
    """The process's C library when it is glibc (it has ``gnu_get_libc_version``), else None.
    Linux only: elsewhere (Windows' ``CDLL(None)`` raises TypeError) there is no glibc."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version
        return libc
    except (OSError, AttributeError, TypeError):
        return None


def keep_freed_memory(environ=None):
    """Set the thresholds unless the user chose otherwise (see the module docstring); returns
    and records what happened: 'applied', or why not (or not wholly)."""
    global _state
    environ = os.environ if environ is None else environ
    if not switch(TUNING_VAR, environ.get(TUNING_VAR, "")):
        _state = f"off ({TUNING_VAR}={environ[TUNING_VAR]})"
    elif _user_tuned(environ):
        _state = "off (the user tuned malloc)"
    else:
        libc = _glibc()
        if libc is None:
            _state = "off (the C library is not glibc)"
        elif not libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES):
            _state = "off (mallopt refused the thresholds)"
        elif not libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES):
            _state = "partly applied (mallopt refused the trim threshold)"
        else:
            _state = "applied"
    return _state


def applied():
    """What ``keep_freed_memory`` did at import: 'applied', 'off (why)' or 'partly applied (why)'."""
    return _state
