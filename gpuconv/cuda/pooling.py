"""Max and average pooling on the GPU (engine contract ``pool``), kernels/pooling.cu.

One kernel per (dtype, index width, vector width, mode); run-time window geometry. See the .cu
for the semantics (padded cells ignored by max, not counted by average; NaN propagates in max).
"""
import numpy as np

from . import module_cache, registry, tensors
from . import memory_bound as mb

FILE = "pooling.cu"
MODES = {"max": 0, "average": 1}


def kernel_name(dtype, width, vec, mode):
    return registry.template_name("gc::pool", dtype, width, vec, MODES[mode])


def instantiations():
    return mb.mode_instantiations(kernel_name, MODES)


registry.register(FILE, instantiations())


def plan_pool(x_shape, out_shape, dtype, mode, channels_last, pointers=(), index=None):
    """(instantiation name, vector width, index width); no CUDA needed."""
    if mode not in MODES:
        raise ValueError(f"Invalid value for argument `mode`. Expected one of {tuple(MODES)}. Received: mode={mode!r}")
    _, channels, _ = mb.view5(x_shape, channels_last)
    vec = mb.vector_width(dtype, channels, channels_last, pointers)
    width = index or mb.index_width(x_shape, out_shape, dtype=dtype)
    return kernel_name(dtype, width, vec, mode), vec, width


def pool(problem, x):
    from . import launch

    (x,), y, width = tensors.begin_call(problem, x)
    channels_last = problem.channels_last
    n, channels, in3 = mb.view5(x.shape, channels_last)
    name, vec, width = plan_pool(x.shape, y.shape, x.dtype, problem.mode, channels_last,
                                 pointers=(mb.pointer(x), mb.pointer(y)), index=width)
    _, _, out3 = mb.view5(y.shape, channels_last)
    i32 = mb.int32
    args = (x, y, launch.index_scalar(n, width), i32(channels), *[i32(v) for v in (*in3, *out3)],
            *[i32(v) for v in (*mb.as3d(problem.pool_size, 1), *mb.as3d(problem.strides, 1),
                                *mb.as3d(problem.pad_before, 0))],
            i32(int(channels_last)))
    work = n * int(np.prod(out3)) * (channels // vec)
    launch.launch(module_cache.get_function(FILE, name), mb.persistent_grid(-(-work // mb.THREADS)),
                  (mb.THREADS, 1, 1), args)
    return y
