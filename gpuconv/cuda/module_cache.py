"""Compile each kernel once: once per machine on disk, once per device and process in memory.

An NVRTC run costs about a second per instantiation (ptxas dominates: the kernels are unrolled
per template), and many threads may ask for the same kernel at the same moment, so a compiled
unit is kept at two levels:

- on disk, a cubin per (file, instantiations, options, NVRTC version, source and header text),
  content-addressed and verified on load (``disk_cache.py``): a new process finds it there
  (``GPUCONV_CACHE_DIR``, default ``~/.cache/gpuconv/kernels``; ``off`` keeps it in a temporary
  folder);
- in memory, the loaded kernels per module key of the active device (``device.py``: for CuPy the
  device and the options, for the cuda-emulator its check mode), built exactly once even when
  many threads ask at the same time: the others wait and share the result or the exception.
  Failures are not cached, so the next call tries again.

What is built together is the device's choice (``Device.compile_unit``): on a GPU one NVRTC
program per instantiation, so the first call of a layer compiles only the kernel it launches
(the depthwise file alone registers 141); the emulator's host compiler builds a whole file at
once. :func:`get_function` refuses a name that is not registered: only what CI compiled can be
asked for.
"""
import contextlib
import hashlib
import threading

from . import disk_cache, nvrtc, options, registry, sources

CACHE_ENV = "GPUCONV_CACHE_DIR"
# Part of every disk-cache key. 2: cubins are written whole (nvrtc.complete_cubin); the
# one-byte-short files format 1 wrote are never read again.
CACHE_FORMAT = 2

# Counters tests read (a cold cache must compile each file once per device).
stats = {"nvrtc_compiles": 0, "disk_hits": 0}
_stats_lock = threading.Lock()


def _count(key, filename):
    with _stats_lock:
        stats[key] = stats.get(key, 0) + 1
        per_file = f"{key}:{filename}"
        stats[per_file] = stats.get(per_file, 0) + 1


# ---------------------------------------------------------------------------------------------
# On disk
# ---------------------------------------------------------------------------------------------
def cache_dir():
    """Where cubins are kept: GPUCONV_CACHE_DIR, '~/.cache/gpuconv/kernels', or a temporary folder ('off')."""
    return disk_cache.root_from_env(CACHE_ENV, "kernels")


def _cache_key(filename, names, compile_options):
    h = hashlib.sha256()
    h.update(repr((CACHE_FORMAT, filename, tuple(names), tuple(compile_options), nvrtc.version())).encode())
    h.update(sources.read_source(filename).encode())
    for name, text in sources.read_headers().items():
        h.update(name.encode())
        h.update(text.encode())
    return h.hexdigest()[:32]


def cubin_on_disk(filename, names, compile_options):
    """(cubin path, lowered names): from the disk cache, else compiled now and stored."""
    stem = f"{filename.replace('.', '_')}-{_cache_key(filename, names, compile_options)}"
    suffix = ".ptx" if options.emits_ptx(compile_options) else ".cubin"
    root = cache_dir()
    hit = disk_cache.load(root, stem, suffix)
    if hit is not None and tuple(hit[1].get("names", ())) == tuple(names) and isinstance(hit[1].get("lowered"), dict):
        _count("disk_hits", filename)
        return hit[0], hit[1]["lowered"]
    compiled = nvrtc.nvrtc_compile(filename, names, compile_options)
    _count("nvrtc_compiles", filename)
    path = disk_cache.store(root, stem, suffix, compiled.cubin, {"names": list(names), "lowered": compiled.lowered})
    return path, compiled.lowered


def kernels_from_cubin(path, lowered, names):
    """{name expression: cupy.RawKernel} loaded on the current device (tests replace this)."""
    import cupy

    module = cupy.RawModule(path=str(path))
    return {ne: module.get_function(lowered[ne]) for ne in names}


def load_module(filename, names, compile_options):
    """{name expression: kernel} from the disk cache or a fresh NVRTC run (the CuPy device's loader)."""
    path, lowered = cubin_on_disk(filename, names, compile_options)
    return kernels_from_cubin(path, lowered, names)


# ---------------------------------------------------------------------------------------------
# In memory, exactly once per module key
# ---------------------------------------------------------------------------------------------
class _Once:
    """A slot filled by the first caller; later callers wait and share its result or error."""

    def __init__(self):
        self.done = threading.Event()
        self.value = None
        self.error = None


_modules = {}
_modules_lock = threading.Lock()


def once(key, build, table=None, lock=None):
    """``build()`` exactly once per ``key`` across threads; waiting threads share its result or
    its exception. A failure is removed from the table, so the next call builds again."""
    table = _modules if table is None else table
    lock = _modules_lock if lock is None else lock
    with lock:
        slot = table.get(key)
        owner = slot is None
        if owner:
            slot = table[key] = _Once()
    if owner:
        try:
            slot.value = build()
        except BaseException as e:
            slot.error = e
            with lock:
                if table.get(key) is slot:
                    del table[key]
            raise
        finally:
            slot.done.set()
        return slot.value
    slot.done.wait()
    if slot.error is not None:
        raise slot.error
    return slot.value


def _kernel(filename, name_expression):
    """The kernel of ``name_expression`` on the active device: its compile unit built exactly
    once per module key, from the disk cache when it holds it."""
    from . import device

    dev = device.active()
    unit = dev.compile_unit(filename, name_expression)
    if _requests is not None:
        _requests.append((filename, name_expression))
    return once(dev.module_key(filename, unit), lambda: dev.load_kernels(filename, unit))[name_expression]


def get_function(filename, name_expression):
    """The kernel of ``name_expression`` in ``kernels/<filename>`` on the active device (a
    ``cupy.RawKernel`` on a GPU)."""
    names = registry.registered(filename)
    if name_expression not in names:
        raise KeyError(
            f"{name_expression!r} is not a registered instantiation of {filename!r} "
            f"(registered: {', '.join(names)}); CI compiles only registered ones."
        )
    return _kernel(filename, name_expression)


# (filename, name expression) of every kernel asked for while :func:`recording_requests` is open.
_requests = None


@contextlib.contextmanager
def recording_requests():
    """Collect the kernels the calls in the block ask for, in order, repeats included (the
    cold-start benchmark and the warm-up learn from the real dispatch what a call needs)."""
    global _requests
    outer, _requests = _requests, []
    try:
        yield _requests
    finally:
        if outer is not None:
            outer.extend(_requests)
        _requests = outer


def clear_cache():
    """Forget loaded modules (tests use it to start from a cold cache)."""
    with _modules_lock:
        _modules.clear()
