"""Loading an emulator shared object and launching its kernels (ctypes), with the driver's checks.

A kernel here is an :class:`EmulatedKernel`, the emulator's counterpart of ``cupy.RawKernel``:
``launch(grid, block, args, shared_mem, limits)`` refuses what a GPU would refuse (block size past
the kernel's ``__launch_bounds__`` or 1,024, grid y/z past 65,535 or x past 2**31 - 1, shared
memory past 48 KB without the opt-in attribute, arguments that do not match the kernel's
parameters in count, size and kind) and what would silently read wrong memory on one (a host
array or a strided view passed as a pointer), then runs the grid and raises
:class:`gpuconv.cuda.launch.KernelLaunchError` with the runtime's report (a divergent barrier, a
race, a deadlock) naming the kernel.

Launches are serialised by one lock (one emulated device, one stream): the runtime's per-launch
state is global in each shared object and ctypes releases the GIL during the call.
"""
import ctypes
import os
import subprocess
import threading

import numpy as np

from ..cuda.launch import KernelLaunchError
from . import build

PARAM_INT, PARAM_FLOAT, PARAM_POINTER, PARAM_OTHER = 0, 1, 2, 3
STATIC_SHARED_LIMIT = 48 * 1024
STACK_ENV = "GPUCONV_EMULATOR_STACK_KB"
SHUFFLE_ENV = "GPUCONV_EMULATOR_SHUFFLE_BLOCKS"

_launch_lock = threading.Lock()

# Name expressions of every kernel launched successfully in this process (tests check that each
# registered instantiation has run: tests/test_cuda_gpu_instantiations.py).
launched = set()


class DeviceArray(np.ndarray):
    """An array in the emulated device's memory (host memory the kernels may be handed)."""


def _stack_bytes(mode):
    default_kb = {"plain": 64, "race": 128, "asan": 512}[mode]
    text = os.environ.get(STACK_ENV, "")
    if not text:
        return default_kb * 1024
    if not text.isdigit() or not 16 <= int(text) <= 1 << 20:
        raise ValueError(f"Invalid value for {STACK_ENV}: expected kilobytes between 16 and 1048576. Received: {text!r}")
    return int(text) * 1024


def _shuffle_seed():
    text = os.environ.get(SHUFFLE_ENV, "")
    if not text or text == "0":
        return 0
    if not text.isdigit():
        raise ValueError(f"Invalid value for {SHUFFLE_ENV}: expected a non-negative integer seed. Received: {text!r}")
    return int(text)


def static_shared_variables(path):
    """[(offset, size, demangled name)] of the function-local statics of the shared object: the
    kernels' static ``__shared__`` variables (CUDA allows no other function-scope statics in
    device code), read from its symbol table."""
    out = subprocess.run(["nm", "-C", "-S", "--defined-only", str(path)], capture_output=True, text=True, timeout=120)
    found, anchor = [], None
    for line in out.stdout.splitlines():
        parts = line.split(None, 3)  # address, size, type, demangled name
        if len(parts) == 4 and parts[3] == "gcemu_anchor":
            anchor = int(parts[0], 16)
        elif len(parts) == 4 and parts[2] in "bBuVd" and ")::" in parts[3]:
            found.append((int(parts[0], 16), int(parts[1], 16), parts[3]))
    return found, anchor


class Library:
    """One loaded shared object: every instantiation of one source file in one check mode."""

    def __init__(self, built):
        self.built = built
        self.lib = lib = ctypes.CDLL(str(built.path), mode=os.RTLD_LOCAL | os.RTLD_NOW)
        lib.gcemu_kernel_name.restype = ctypes.c_char_p
        lib.gcemu_anchor.restype = ctypes.c_void_p
        lib.gcemu_launch.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_uint), ctypes.POINTER(ctypes.c_uint),
                                     ctypes.c_size_t, ctypes.POINTER(ctypes.c_void_p), ctypes.c_ulonglong,
                                     ctypes.c_char_p, ctypes.c_size_t]
        lib.gcemu_set_stack_bytes.argtypes = [ctypes.c_size_t]
        lib.gcemu_set_stack_bytes(_stack_bytes(built.mode))
        statics, anchor = static_shared_variables(built.path)
        base = lib.gcemu_anchor() - anchor
        self.kernels = {}
        for i in range(lib.gcemu_kernel_count()):
            name = lib.gcemu_kernel_name(i).decode()
            own = [(base + off, size, sym) for off, size, sym in statics if sym.startswith(name + "(")]
            self.kernels[name] = EmulatedKernel(self, i, name, built.bounds.get(build.template_of(name), 1024), own)


class _Statics:
    """A kernel's static __shared__ variables as the runtime takes them (kept alive here)."""

    def __init__(self, variables):
        self.names = [ctypes.c_char_p(sym.encode()) for _, _, sym in variables]
        self.bounds = (ctypes.c_size_t * max(2 * len(variables), 1))(
            *[v for addr, size, _ in variables for v in (addr, addr + size)])
        self.name_array = (ctypes.c_char_p * max(len(variables), 1))(*self.names)
        self.count = len(variables)
        self.total_bytes = sum(size for _, size, _ in variables)


class EmulatedKernel:
    def __init__(self, library, index, name, max_threads, statics):
        lib = library.lib
        self.library, self.index, self.name = library, index, name
        self.max_threads_per_block = int(max_threads)
        self._statics = _Statics(statics)  # poisoned (and race-checked) for this kernel's launches only
        self.static_shared_bytes = self._statics.total_bytes
        self.max_dynamic_shared_size_bytes = 0  # the opt-in attribute (CUDA's cudaFuncAttribute)
        n = lib.gcemu_param_count(index)
        self.param_sizes = tuple(lib.gcemu_param_size(index, p) for p in range(n))
        self.param_kinds = tuple(lib.gcemu_param_kind(index, p) for p in range(n))

    # -- checks ------------------------------------------------------------------------------
    def _refuse(self, grid, block, why):
        raise KernelLaunchError(f"launching {self.name} with grid={grid} block={block} failed: {why}")

    def _check_config(self, grid, block, shared_mem, limits):
        threads = block[0] * block[1] * block[2]
        if threads > min(limits.max_block_threads, self.max_threads_per_block) or block[2] > 64:
            self._refuse(grid, block, f"{threads} threads per block exceed the kernel's __launch_bounds__ "
                         f"({self.max_threads_per_block}) or the device's {limits.max_block_threads} "
                         "(cudaErrorInvalidValue / too many resources requested)")
        if any(g > m for g, m in zip(grid, limits.max_grid)):
            self._refuse(grid, block, f"the grid exceeds the device's maximum {limits.max_grid} (cudaErrorInvalidValue)")
        cap = max(STATIC_SHARED_LIMIT, self.static_shared_bytes + self.max_dynamic_shared_size_bytes)
        if self.static_shared_bytes + shared_mem > min(cap, limits.max_shared_per_block_optin):
            self._refuse(grid, block, f"{self.static_shared_bytes} static + {shared_mem} dynamic bytes of shared memory "
                         f"exceed {cap} (more than 48 KB needs max_dynamic_shared_size_bytes set first)")

    def _marshal(self, grid, block, args):
        if len(args) != len(self.param_sizes):
            self._refuse(grid, block, f"{len(args)} arguments for {len(self.param_sizes)} parameters")
        cells, keep = [], []
        for i, (arg, size, kind) in enumerate(zip(args, self.param_sizes, self.param_kinds)):
            if kind == PARAM_POINTER:
                cell = ctypes.c_void_p(self._pointer(grid, block, i, arg))
            elif kind in (PARAM_INT, PARAM_FLOAT):
                wanted = np.integer if kind == PARAM_INT else np.floating
                if not isinstance(arg, wanted) or np.dtype(type(arg)).itemsize != size:
                    self._refuse(grid, block, f"argument {i} is {arg!r} ({type(arg).__name__}); the parameter is a "
                                 f"{size}-byte {'integer' if kind == PARAM_INT else 'float'}")
                cell = ctypes.create_string_buffer(np.asarray(arg).tobytes(), size)
            else:
                self._refuse(grid, block, f"parameter {i} has a type the emulator cannot marshal")
            keep.append(cell)
            cells.append(ctypes.cast(ctypes.pointer(cell), ctypes.c_void_p))
        return (ctypes.c_void_p * max(len(cells), 1))(*[c.value for c in cells]), keep

    def _pointer(self, grid, block, i, arg):
        if isinstance(arg, np.integer) and int(arg) == 0:
            return None  # a null pointer (launch.optional_pointer)
        if not isinstance(arg, DeviceArray):
            self._refuse(grid, block, f"argument {i} is a {type(arg).__name__}, not an emulator device array "
                         "(a host pointer handed to a kernel)")
        if not arg.flags.c_contiguous:
            self._refuse(grid, block, f"argument {i} is a strided view (strides {arg.strides}); kernels read dense "
                         "arrays, so the host code must make it contiguous first")
        return arg.ctypes.data

    # -- launch ------------------------------------------------------------------------------
    def launch(self, grid, block, args, shared_mem, limits):
        grid, block = tuple(int(g) for g in grid), tuple(int(b) for b in block)
        self._check_config(grid, block, int(shared_mem), limits)
        argv, keep = self._marshal(grid, block, args)
        g3, b3 = (ctypes.c_uint * 3)(*grid), (ctypes.c_uint * 3)(*block)
        err = ctypes.create_string_buffer(4096)
        st = self._statics
        with _launch_lock:
            self.library.lib.gcemu_set_statics(st.bounds, st.name_array, st.count)
            rc = self.library.lib.gcemu_launch(self.index, g3, b3, int(shared_mem), argv, _shuffle_seed(), err, len(err))
        del keep
        if rc != 0:
            raise KernelLaunchError(f"{self.name} (grid={grid} block={block} shared_mem={shared_mem}) failed on the "
                                    f"cuda-emulator: {err.value.decode(errors='replace')}")
        launched.add(self.name)
