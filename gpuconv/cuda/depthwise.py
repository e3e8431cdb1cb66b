"""Depthwise convolution on the GPU (engine contract ``depthwise_conv``), kernels/depthwise.cu.

Choice of kernel (:func:`plan_depthwise`, pure, unit-tested without CUDA):
- ``depthwise_tile`` when (kernel, stride, dilation) is one of :data:`SPECIALISATIONS`, the
  offsets fit 32-bit indices and a tile's input halo fits shared memory: compile-time geometry,
  shared-memory halo, register tile (see the .cu);
- ``depthwise_direct`` otherwise (run-time geometry): any other shape, huge dilation, 64-bit
  offsets.
The weights are handed over transposed to (*k, dm, C) so one multiplier's channels are
contiguous (vector loads for any depth multiplier).

``out_dtype`` (plans and names): the output's dtype when it is not the input's. Only the separable
two-kernel path asks for one: its intermediate is float32 for float16 inputs (:func:`mid_dtype`),
so both kernels are also instantiated with ``OutT = float`` for ``gc::half``.
"""
import dataclasses

import numpy as np

from ..dtypes import accumulation_dtype
from . import module_cache, registry, tensors
from . import memory_bound as mb
from .epilogue import ACTS_ANY, ACTS_CHEAP, activation_set
from .tensors import KERNEL_DTYPES

FILE = "depthwise.cu"

# (kernel, strides, dilation) in the 3-D view, one per bench shape: 2-D 3x3 s1/s2, 5x5 s1/s2,
# 7x7 s1; 1-D k3 (d1 and the Conv-TasNet d64), k4 (Mamba causal: padding is run-time); 3-D 3x3x3.
SPECIALISATIONS = (
    ((1, 3, 3), (1, 1, 1), (1, 1, 1)),
    ((1, 3, 3), (1, 2, 2), (1, 1, 1)),
    ((1, 5, 5), (1, 1, 1), (1, 1, 1)),
    ((1, 5, 5), (1, 2, 2), (1, 1, 1)),
    ((1, 7, 7), (1, 1, 1), (1, 1, 1)),
    ((1, 1, 3), (1, 1, 1), (1, 1, 1)),
    ((1, 1, 3), (1, 1, 1), (1, 1, 64)),
    ((1, 1, 4), (1, 1, 1), (1, 1, 1)),
    ((3, 3, 3), (1, 1, 1), (1, 1, 1)),
)

# (dtype, vector width, specialisation) whose tile kernel has no ACTS_CHEAP build: held to its
# twin's 2 CTAs per SM (depthwise.cu DwCheapMinBlocks) it spilled on sm_80, so every activation
# takes the ACTS_ANY build there.
_NO_CHEAP_BUILD = frozenset({(np.dtype("float32"), 4, ((1, 1, 4), (1, 1, 1), (1, 1, 1)))})


def tile_activation_sets(dtype, vec, spec):
    """The builds (``epilogue.ACTS_*``) the tile kernel of ``(dtype, vec, spec)`` has."""
    if (np.dtype(dtype), vec, spec) in _NO_CHEAP_BUILD:
        return (ACTS_ANY,)
    return (ACTS_CHEAP, ACTS_ANY)


def tile_build(dtype, vec, spec, activation):
    """The build that applies ``activation`` (None: none) with the least compiled code."""
    wanted = activation_set(activation)
    return min(a for a in tile_activation_sets(dtype, vec, spec) if a >= wanted)


# Output pixels per thread of the tile kernel (DwPixelsPerThread in the .cu).
def pixels_per_thread(dtype):
    return 2 if np.dtype(dtype) == np.float64 else 4


def mid_dtype(dtype):
    """The dtype of the separable two-kernel path's intermediate: the kernels' accumulation type
    (float32 for float16, whose range a depthwise sum easily leaves; else the dtype itself)."""
    return accumulation_dtype(dtype)


def _out_suffix(dtype, out_dtype):
    # OutT defaults to T in the .cu: named only where it differs, so the common names stay short.
    if out_dtype is None or np.dtype(out_dtype) == np.dtype(dtype):
        return ()
    return (out_dtype,)


def tile_name(dtype, vec, spec, acts, out_dtype=None):
    """``acts``: ``epilogue.ACTS_CHEAP`` or ``ACTS_ANY``, the activations its epilogue is built for."""
    k, s, d = spec  # 32-bit offsets only: plan_depthwise takes the tile kernel only where they fit
    return registry.template_name("gc::depthwise_tile", dtype, "int32", vec, *k, *s, *d, acts,
                                  *_out_suffix(dtype, out_dtype))


def direct_name(dtype, width, vec, out_dtype=None):
    return registry.template_name("gc::depthwise_direct", dtype, width, vec, *_out_suffix(dtype, out_dtype))


def instantiations():
    names = []
    for dtype in KERNEL_DTYPES:
        # The output in the input dtype, and (where it differs) in the separable path's mid dtype.
        for out in dict.fromkeys((dtype, mid_dtype(dtype))):
            for vec in mb.vector_widths(dtype):
                for spec in SPECIALISATIONS:
                    # The separable path's intermediate takes no activation: one build.
                    sets = tile_activation_sets(dtype, vec, spec) if out == dtype else (tile_build(dtype, vec, spec, None),)
                    names += [tile_name(dtype, vec, spec, acts, out) for acts in sets]
                names += [direct_name(dtype, w, vec, out) for w in ("int32", "int64")]
    return names


registry.register(FILE, instantiations())


@dataclasses.dataclass(frozen=True)
class Tile:
    """An output tile (TD, TH, TW) x CV channel vectors, its block size and halo bytes."""
    td: int
    th: int
    tw: int
    cv: int
    threads: int
    smem: int


@dataclasses.dataclass(frozen=True)
class Plan:
    kernel: str  # 'tile' | 'direct'
    name: str
    vec: int
    index: str
    tile: Tile = None
    acts: int = ACTS_ANY  # the tile kernel's build: the activations its epilogue applies


def _pow2_at_least(n, cap):
    p = 1
    while p < n and p < cap:
        p *= 2
    return p


def halo_bytes(tile, k, s, d, vec, itemsize):
    box = [(t - 1) * st + (kk - 1) * dd + 1 for t, kk, st, dd in zip((tile[0], tile[1], tile[2]), k, s, d)]
    return box[0] * box[1] * box[2] * tile[3] * vec * itemsize


def choose_tile(out3, channels, vec, channels_last, k, s, d, dtype, budget=mb.SMEM_BUDGET):
    """The largest tile of the default shape whose halo fits ``budget``, or None.

    channels_last: CV channel vectors per CTA (a divisor of the vector count where one exists)
    and 32 threads per vector; channels_first: one channel plane, 256 threads along W."""
    itemsize = np.dtype(dtype).itemsize
    ppt = pixels_per_thread(dtype)
    if channels_last:
        nvec = channels // vec
        cv = next((c for c in (8, 7, 6, 5, 4) if nvec % c == 0), min(nvec, 8))
        lanes = 32
    else:
        cv, lanes = 1, mb.THREADS
    threads = cv * lanes
    target = lanes * ppt  # pixels in one pass of the register tile
    od, oh, ow = out3
    tw = _pow2_at_least(ow, target)
    th = _pow2_at_least(oh, max(target // tw, 1))
    td = _pow2_at_least(od, max(target // (tw * th), 1))
    tile = [td, th, tw, cv]
    while halo_bytes(tile, k, s, d, vec, itemsize) > budget:
        # Shrink the largest spatial extent first, then the channel vectors.
        i = max(range(3), key=lambda j: tile[j])
        if tile[i] > 1:
            tile[i] //= 2
        elif tile[3] > 1:
            tile[3] -= 1
            threads = tile[3] * lanes
        else:
            return None
    return Tile(tile[0], tile[1], tile[2], tile[3], threads, halo_bytes(tile, k, s, d, vec, itemsize))


def plan_depthwise(x_shape, kernel_shape, dtype, strides, padding, dilation, channels_last, out_shape,
                   pointers=(), index=None, out_dtype=None, activation=None):
    """Which kernel and instantiation runs a depthwise conv (no CUDA needed); ``out_dtype``: the
    output's dtype when it is not ``dtype`` (the separable two-kernel path's intermediate);
    ``activation``: the fused one (None: none), which picks the tile kernel's build."""
    rank = len(kernel_shape) - 2
    _, channels, _ = mb.view5(x_shape, channels_last)
    _, _, out3 = mb.view5(out_shape, channels_last)
    k, s, d = mb.as3d(kernel_shape[:rank], 1), mb.as3d(strides, 1), mb.as3d(dilation, 1)
    vec = mb.vector_width(dtype, channels, channels_last, pointers)
    width = index or mb.index_width(x_shape, out_shape, dtype=dtype)
    if width == "int32" and (k, s, d) in SPECIALISATIONS:
        tile = choose_tile(out3, channels, vec, channels_last, k, s, d, dtype)
        if tile is not None:
            n = int(x_shape[0])
            tiles = n * np.prod([-(-o // t) for o, t in zip(out3, (tile.td, tile.th, tile.tw))]) \
                * -(-channels // (tile.cv * vec))
            if tiles < 2**31:
                acts = tile_build(dtype, vec, (k, s, d), activation)
                return Plan("tile", tile_name(dtype, vec, (k, s, d), acts, out_dtype), vec, width, tile, acts)
    return Plan("direct", direct_name(dtype, width, vec, out_dtype), vec, width)


def depthwise_conv(problem, x, kernel, bias):
    """Engine contract: kernel (*k, C, dm), output channel c*dm + m, bias (C*dm,)."""
    (x, kernel, bias), y, width = tensors.begin_call(problem, x, kernel, bias)
    # (*k, C, dm) -> (*k, dm, C): one multiplier's channels contiguous.
    w = tensors.swapaxes(kernel, -1, -2)
    ptrs = [mb.pointer(a) for a in (x, w, y) + ((bias,) if bias is not None else ())]
    plan = plan_depthwise(x.shape, kernel.shape, x.dtype, problem.strides, problem.padding, problem.dilation,
                          problem.channels_last, y.shape, pointers=ptrs, index=width, activation=problem.activation)
    launch_depthwise(plan, problem, x, w, bias, y, problem.activation)
    return y


def launch_depthwise(plan, problem, x, w, bias, y, activation):
    """Runs ``plan`` for the depthwise step of ``problem`` (``w`` already (*k, dm, C)) into ``y``;
    shared with the separable two-kernel path, which asks for no activation."""
    from . import launch

    if plan.kernel == "tile" and activation_set(activation) > plan.acts:  # it would skip the activation
        raise ValueError(f"The depthwise plan {plan.name} is built for the cheap activations only; "
                         f"received activation={activation!r} (plan it with that activation)")
    channels_last = problem.channels_last
    n, channels, in3 = mb.view5(x.shape, channels_last)
    _, _, out3 = mb.view5(y.shape, channels_last)
    dm = int(w.shape[-2])
    pads = mb.as3d(problem.pad_before, 0)
    kernel = module_cache.get_function(FILE, plan.name)
    i32 = mb.int32
    geometry = [i32(v) for v in (*in3, *out3)]
    if plan.kernel == "tile":
        t = plan.tile
        tiles = n * np.prod([-(-o // e) for o, e in zip(out3, (t.td, t.th, t.tw))]) * -(-channels // (t.cv * plan.vec))
        args = (x, w, launch.optional_pointer(bias), y, i32(n), i32(channels), i32(dm), *geometry,
                *[i32(p) for p in pads], i32(int(channels_last)),
                i32(t.td), i32(t.th), i32(t.tw), i32(t.cv), mb.kernel_activation(activation))
        grid = mb.persistent_grid(int(tiles), t.threads, blocks_per_sm=max(1, min(2048 // t.threads, 4)))
        launch.launch(kernel, grid, (t.threads, 1, 1), args, shared_mem=t.smem)
    else:
        k3, s3, d3 = mb.as3d(problem.kernel_size, 1), mb.as3d(problem.strides, 1), mb.as3d(problem.dilation, 1)
        work = n * int(np.prod(out3)) * (channels // plan.vec)
        args = (x, w, launch.optional_pointer(bias), y, launch.index_scalar(n, plan.index), i32(channels), i32(dm),
                *geometry, *[i32(v) for v in (*k3, *s3, *d3)], *[i32(p) for p in pads],
                i32(int(channels_last)), mb.kernel_activation(activation))
        launch.launch(kernel, mb.persistent_grid(-(-work // mb.THREADS)), (mb.THREADS, 1, 1), args)
    return y
