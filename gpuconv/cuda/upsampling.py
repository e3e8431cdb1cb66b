"""UpSampling on the GPU (engine contract ``upsample``), kernels/upsample.cu: nearest (1-D/2-D/
3-D), bilinear (2-D) and trilinear (3-D), half-pixel centres with edge clamping."""
import numpy as np

from . import module_cache, registry, tensors
from . import memory_bound as mb

FILE = "upsample.cu"
MODES = {"nearest": 0, "bilinear": 2, "trilinear": 3}


def kernel_name(dtype, width, vec, interpolation):
    return registry.template_name("gc::upsample", dtype, width, vec, MODES[interpolation])


def instantiations():
    return mb.mode_instantiations(kernel_name, MODES)


registry.register(FILE, instantiations())


def plan_upsample(x_shape, size, interpolation, dtype, channels_last, pointers=(), index=None):
    """(instantiation name, vector width, index width, output shape); no CUDA needed."""
    rank = len(size)
    allowed = {1: ("nearest",), 2: ("nearest", "bilinear"), 3: ("nearest", "trilinear")}[rank]
    if interpolation not in allowed:
        raise ValueError(
            f"Invalid value for argument `interpolation`. Expected of one {allowed}. Received: interpolation={interpolation}"
        )
    n, channels, in3 = mb.view5(x_shape, channels_last)
    out_spatial = tuple(int(L) * int(s) for L, s in zip(in3[3 - rank:], size))
    out_shape = mb.make_shape(n, channels, out_spatial, channels_last)
    vec = mb.vector_width(dtype, channels, channels_last, pointers)
    width = index or mb.index_width(x_shape, out_shape, dtype=dtype)
    return kernel_name(dtype, width, vec, interpolation), vec, width, out_shape


def upsample(problem, x):
    from . import launch

    (x,), y, width = tensors.begin_call(problem, x)
    size, channels_last, out_shape = problem.size, problem.channels_last, problem.output_shape
    name, vec, width, _ = plan_upsample(x.shape, size, problem.interpolation, x.dtype, channels_last,
                                        pointers=(mb.pointer(x), mb.pointer(y)), index=width)
    n, channels, in3 = mb.view5(x.shape, channels_last)
    i32 = mb.int32
    args = (x, y, launch.index_scalar(n, width), i32(channels), *[i32(v) for v in in3],
            *[i32(v) for v in mb.as3d(size, 1)], i32(int(channels_last)))
    work = int(np.prod(out_shape)) // channels * (channels // vec)
    launch.launch(module_cache.get_function(FILE, name), mb.persistent_grid(-(-work // mb.THREADS)),
                  (mb.THREADS, 1, 1), args)
    return y
