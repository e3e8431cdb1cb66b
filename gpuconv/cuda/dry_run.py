"""The kernels a call will launch, learned from the real dispatch without compiling or running any.

Which instantiation a layer's call launches is decided by the CUDA engine's host code from the
problem and the device's limits (tile shapes, vector widths, index widths, fused epilogues).
Knowing it ahead of the call is what a deployment image needs (compile exactly those into the
disk cache: ``python -m gpuconv.cuda.warmup``) and what the cold-start benchmark measures
(``python -m gpuconv.benchmarking.cold_start``). Rather than restating the engine's choices, this
runs the engine itself on a device that keeps host arrays (the cuda-emulator's), answers every
kernel request with a stand-in and skips every launch, while ``module_cache.recording_requests``
lists what was asked for. The results of such a call are garbage by design; only the list counts.

:data:`TARGETS` gives the limits of the GPUs the plans are made for (the dispatch reads the SM
count and the shared-memory caps), so a CPU-only build machine can plan for the GPU it deploys to.
"""
import contextlib
import time

import numpy as np

from ..emulator.device import EmulatorDevice
from . import device, module_cache, options
from .launch import DeviceLimits

_MAX_GRID = (2**31 - 1, 65535, 65535)
# name: (compute capability, limits). Shared memory: 48 KiB without opt-in; the opt-in caps are
# the CUDA programming guide's per-architecture figures (sm_80: 163 KiB, sm_90: 227 KiB).
TARGETS = {
    "a100": (80, DeviceLimits(_MAX_GRID, 1024, 108, 48 * 1024, 163 * 1024)),
    "h100": (90, DeviceLimits(_MAX_GRID, 1024, 132, 48 * 1024, 227 * 1024)),
    "h200": (90, DeviceLimits(_MAX_GRID, 1024, 132, 48 * 1024, 227 * 1024)),
}


class DryRunDevice(EmulatorDevice):
    """The cuda-emulator's host arrays, with kernels that are never built and launches that never run."""

    name = "cuda-dry-run"

    def __init__(self, target="h200"):
        if target not in TARGETS:
            raise ValueError(f"Invalid value for argument `target`. Expected one of {sorted(TARGETS)}. "
                             f"Received: target={target!r}")
        super().__init__(check="plain")
        self.target = target
        self._cc, self._limits = TARGETS[target]

    def module_key(self, filename, names):
        return ("cuda-dry-run", filename, tuple(names))

    def compile_unit(self, filename, name_expression):
        return (name_expression,)

    def load_kernels(self, filename, names):
        return {name: name for name in names}

    def limits(self):
        return self._limits

    @property
    def compute_capability(self):
        return str(self._cc)

    def launch(self, kernel, grid, block, args, shared_mem):
        pass


@contextlib.contextmanager
def planning(target="h200"):
    """Run the block's CUDA-engine calls on a :class:`DryRunDevice`; yields the list of
    ``(kernel file, name expression)`` they ask for, in order, repeats included. The block must
    run on a CUDA-engine backend (``gpuconv.set_backend("cuda-emulator")`` on a machine without a
    GPU): the engine's host code is what decides."""
    dry = DryRunDevice(target)
    with np.errstate(all="ignore"), device.using(dry), module_cache.recording_requests() as requests:
        yield requests


def unique(requests):
    """``requests`` without repeats, first-asked order kept."""
    return list(dict.fromkeys(requests))


def compile_planned(kernels, target="h200", done=None):
    """Compile ``kernels`` (``(kernel file, name expression)`` pairs, as :func:`planning` lists
    them) for ``target``'s architecture through the runtime's own path
    (``module_cache.cubin_on_disk``: NVRTC with the runtime's options, or a verified disk-cache
    hit), each in the unit the GPU compiles it in (:meth:`DryRunDevice.compile_unit`). ``done``
    (a set, updated) holds the units already compiled or found in this process, which a real
    process keeps loaded in memory: they are not asked for again. Returns the seconds spent."""
    dry = DryRunDevice(target)
    compile_options = options.compile_options(dry._cc)
    done = set() if done is None else done
    start = time.perf_counter()
    for filename, expression in kernels:
        unit = dry.compile_unit(filename, expression)
        if (filename, unit) not in done:
            module_cache.cubin_on_disk(filename, unit, compile_options)
            done.add((filename, unit))
    return time.perf_counter() - start
