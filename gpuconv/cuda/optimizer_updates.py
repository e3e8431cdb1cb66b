"""One optimizer step on the GPU (engine contract ``optimizer_update``): every parameter of the
step updated by ONE launch of kernels/optimizer_updates.cu per parameter dtype (multi-tensor
apply), the rule's per-element formula exactly as ``gpuconv/optimizers/rules.py`` states it.

Why one launch: a model's weights are many small arrays; a launch per array per step costs more
in latency than the arithmetic. The host packs one table per call (the rule's scalars, then per
tensor its size, first chunk, weight decay and the addresses of its param, gradient and slots,
layout in the kernel file), moves it to the device in one copy, and launches a persistent grid
over the chunks of all tensors. Parameters and slots are updated in place, so they must already be
C-contiguous arrays of the active device (a copy would update the copy); gradients are only read
and are moved or made contiguous when needed.

bfloat16 has an instantiation of its own (the other kernel families run it as float32,
``bfloat16_round_trip.py``): Keras and the NumPy engine round every operation of a rule to the
variable's dtype, so an update computed in float32 and rounded once would train differently.
"""
import numpy as np

from .. import dtypes as _dtypes
from ..optimizers import rules as _rules
from . import module_cache, registry
from . import memory_bound as mb
from .indexing import index_type
from .tensors import INDEX_WIDTHS, KERNEL_DTYPES

FILE = "optimizer_updates.cu"
# Elements per chunk: a multiple of every vector width (16 bytes of float16 is 8 elements), large
# enough that a block's binary search for its tensor is amortised over 16 elements per thread.
CHUNK = 4096
RECORD_HEADER = 5  # n, first chunk, decay, param, grad; then one word per slot

# The functor of each rule in the kernel file (same slots and scalars, same order, as rules.py).
FUNCTORS = {
    "sgd": "gc::SgdRule",
    "sgd_momentum": "gc::SgdMomentumRule",
    "sgd_nesterov": "gc::SgdNesterovRule",
    "adam": "gc::AdamRule",
    "adam_amsgrad": "gc::AdamAmsgradRule",
    "rmsprop": "gc::RmspropRule",
    "rmsprop_momentum": "gc::RmspropMomentumRule",
    "rmsprop_centered": "gc::RmspropCenteredRule",
    "rmsprop_centered_momentum": "gc::RmspropCenteredMomentumRule",
    "adagrad": "gc::AdagradRule",
    "adadelta": "gc::AdadeltaRule",
    "adamax": "gc::AdamaxRule",
    "nadam": "gc::NadamRule",
    "lion": "gc::LionRule",
}


# The param dtypes with a kernel: every family's, and bfloat16 by name (its dtype needs ml_dtypes,
# which only a bfloat16 call imports; registry.template_name spells the name).
DTYPES = KERNEL_DTYPES + (_dtypes.BFLOAT16_NAME,)


def kernel_name(dtype, width, rule):
    return registry.template_name("gc::optimizer_update", dtype, width, FUNCTORS[rule])


def instantiations():
    return [kernel_name(dt, w, rule) for dt in DTYPES for w in INDEX_WIDTHS for rule in FUNCTORS]


registry.register(FILE, instantiations())


# ---------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------
def _in_place(dev, what, array):
    """``array`` itself when it is a C-contiguous array of the active device (it is updated in
    place); ValueError otherwise (a CuPy array of another GPU: DeviceMismatchError)."""
    if not dev.is_device_array(array) or not array.flags.c_contiguous:
        contiguous = getattr(getattr(array, "flags", None), "c_contiguous", None)
        raise ValueError(
            f"{what} is updated in place, so it must be a C-contiguous array on the {dev.name!r} device; "
            f"received a {type(array).__name__} of shape {tuple(getattr(array, 'shape', ()))} "
            f"(C-contiguous: {contiguous})."
        )
    dev.contiguous(array)  # the same array, or DeviceMismatchError for one on another GPU
    return array


def _as_float(what, value):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{what} must be a real number. Received: {what}={value!r}")
    return float(value)


def _check_no_overlap(dev, written):
    """ValueError when two arrays the kernel writes share memory: their updates would race."""
    spans = sorted((dev.pointer(a), dev.pointer(a) + a.nbytes, what) for what, a in written if a.size)
    for (lo0, hi0, what0), (lo1, _, what1) in zip(spans, spans[1:]):
        if lo1 < hi0:
            raise ValueError(f"{what0} and {what1} share memory; every param and slot of one optimizer_update "
                             "call must be a separate array.")


def check_arrays(rule, params, grads, slots, decays):
    """(params, grads, slots, decays) ready for a launch: params and slots in place on the active
    device, grads contiguous on it, decays as floats. Call after ``rules.check_update``."""
    from . import device

    dev = device.active()
    names = _rules.RULES[rule].slots
    params = [_in_place(dev, f"Param {i}", p) for i, p in enumerate(params)]
    slots = [[_in_place(dev, f"Slot {name!r} of param {i}", s) for name, s in zip(names, state)]
             for i, state in enumerate(slots)]
    grads = [dev.contiguous(g) for g in grads]
    decays = [_as_float(f"decays[{i}]", d) for i, d in enumerate(decays)]
    for i, p in enumerate(params):
        if p.dtype not in KERNEL_DTYPES and not _dtypes.is_bfloat16(p.dtype):
            raise TypeError(f"Param {i} has dtype {p.dtype}; optimizer_update supports float16, float32, float64 "
                            "and bfloat16.")
    _check_no_overlap(dev, [(f"param {i}", p) for i, p in enumerate(params)]
                      + [(f"slot {name!r} of param {i}", s) for i, state in enumerate(slots)
                         for name, s in zip(names, state)])
    return params, grads, slots, decays


# ---------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------
def in_dtype_bits(values, dtype):
    """``values`` converted to ``dtype`` (as rules.py asks: scalars are taken in the param's
    dtype), as the uint64 bit patterns of their float64 values (exact: every float16, bfloat16
    and float32 is a float64)."""
    return np.asarray(values, dtype=np.float64).astype(dtype).astype(np.float64).view(np.uint64)


NO_DECAY = np.uint64(2**64 - 1)  # a NaN pattern no arithmetic produces: the kernel skips the decay


def decay_bits(decays, dtype):
    """The decay words: ``1 - decay`` computed in ``dtype`` (rules.py: the param is multiplied
    by it, rounded once), as float64 bits; :data:`NO_DECAY` where a decay is 0.0 (skipped, as in
    the NumPy rule)."""
    t = np.dtype(dtype).type
    with np.errstate(all="ignore"):  # a decay beyond the dtype's range is Inf there, as in NumPy
        factors = np.array([t(1) - t(d) for d in decays], dtype=dtype)
    bits = factors.astype(np.float64).view(np.uint64)
    bits[np.asarray(decays, dtype=np.float64) == 0] = NO_DECAY
    return bits


def build_table(rule, scalars, dtype, sizes, decays, pointers):
    """The uint64 table of one launch and its chunk count; no CUDA needed. ``sizes`` the element
    count of each tensor (non-zero), ``pointers`` per tensor (param, grad, *slots) addresses."""
    spec = _rules.RULES[rule]
    width = RECORD_HEADER + len(spec.slots)
    table = np.zeros(len(spec.scalars) + width * len(sizes), dtype=np.uint64)
    table[:len(spec.scalars)] = in_dtype_bits([scalars[name] for name in spec.scalars], dtype)
    records = table[len(spec.scalars):].reshape(len(sizes), width)
    chunks = [-(-int(n) // CHUNK) for n in sizes]
    records[:, 0] = sizes
    records[:, 1] = np.cumsum([0] + chunks[:-1])
    records[:, 2] = decay_bits(decays, dtype)
    records[:, 3:] = np.asarray(pointers, dtype=np.uint64).reshape(len(sizes), width - 3)
    return table, int(sum(chunks))


def by_dtype(params):
    """{dtype: [indices of the non-empty params of that dtype]}, in first-seen order: one launch each."""
    groups = {}
    for i, p in enumerate(params):
        if p.size:
            groups.setdefault(np.dtype(p.dtype), []).append(i)
    return groups


# ---------------------------------------------------------------------------------------------
# The engine entry
# ---------------------------------------------------------------------------------------------
def optimizer_update(rule, scalars, params, grads, slots, decays):
    """One step of ``rule`` over every param (see ``gpuconv/optimizers/rules.py``): params and
    slots updated in place, one launch per param dtype. Returns None."""
    from . import device, launch

    _rules.check_update(rule, scalars, params, grads, slots, decays)
    params, grads, slots, decays = check_arrays(rule, params, grads, slots, decays)
    dev = device.active()
    for dtype, members in by_dtype(params).items():
        arrays = [a for i in members for a in (params[i], grads[i], *slots[i])]
        table, chunks = build_table(rule, scalars, dtype, [params[i].size for i in members],
                                    [decays[i] for i in members], [dev.pointer(a) for a in arrays])
        width = index_type(*arrays)
        table = dev.contiguous(table)
        kernel = module_cache.get_function(FILE, kernel_name(dtype, width, rule))
        launch.launch(kernel, mb.persistent_grid(chunks), (mb.THREADS, 1, 1),
                      (table, mb.int32(len(members)), launch.index_scalar(chunks, width), mb.int32(CHUNK)))
