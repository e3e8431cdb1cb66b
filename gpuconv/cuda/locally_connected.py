"""Locally connected 1-D/2-D on the GPU (engine contract ``locally_connected``),
kernels/locally_connected.cu. Weights (positions, prod(k)*C, F), patch order (*k, C) for
channels_last and (C, *k) for channels_first, per-position bias (*out, F); padding pairs are
applied inside the kernel's gather."""
import dataclasses

import numpy as np

from . import module_cache, registry, tensors
from . import memory_bound as mb
from .tensors import KERNEL_DTYPES

FILE = "locally_connected.cu"
LC_BATCH = 4  # LC_BATCH in the .cu


def kernel_name(dtype, width):
    return registry.template_name("gc::locally_connected", dtype, width)


def instantiations():
    return [kernel_name(dt, w) for dt in KERNEL_DTYPES for w in ("int32", "int64")]


registry.register(FILE, instantiations())


@dataclasses.dataclass(frozen=True)
class Plan:
    fch: int  # filters per CTA (threads along F)
    threads: int
    batch_chunk: int  # batch items per CTA pass
    kc: int  # patch elements per shared-memory chunk
    smem: int


def plan_locally_connected(batch, patch_size, filters, dtype, budget=mb.SMEM_BUDGET // 2):
    """Threads along F (a power of two up to 128, coalesced weight rows), the rest along the
    batch (each thread LC_BATCH items), and the patch chunk that fits ``budget``."""
    acc = 8 if np.dtype(dtype) == np.float64 else 4
    fch = 1
    while fch < filters and fch < 128:
        fch *= 2
    groups = max(1, min(mb.THREADS // fch, -(-int(batch) // LC_BATCH)))
    threads = fch * groups
    while threads < 32 and groups * fch * 2 <= mb.THREADS:  # at least a full warp
        groups *= 2
        threads = fch * groups
    chunk = groups * LC_BATCH
    kc = max(1, min(int(patch_size), budget // (chunk * acc)))
    return Plan(fch, threads, chunk, kc, chunk * kc * acc)


def locally_connected(problem, x, kernel, bias):
    from . import launch

    (x, kernel, bias), y, width = tensors.begin_call(problem, x, kernel, bias)
    channels_last, filters = problem.channels_last, problem.out_channels
    n, channels, in3 = mb.view5(x.shape, channels_last)
    plan = plan_locally_connected(n, problem.patch_size, filters, x.dtype)
    _, _, out3 = mb.view5(y.shape, channels_last)
    positions = int(np.prod(out3))
    work = positions * -(-filters // plan.fch)
    i32 = mb.int32
    args = (x, kernel, launch.optional_pointer(bias), y, i32(n), i32(channels), i32(filters),
            *[i32(v) for v in (*in3, *out3)],
            *[i32(v) for v in (*mb.as3d(problem.kernel_size, 1), *mb.as3d(problem.strides, 1),
                                *mb.as3d(problem.pad_before, 0))],
            i32(int(channels_last)), i32(plan.fch), i32(plan.kc), mb.kernel_activation(problem.activation))
    launch.launch(module_cache.get_function(FILE, kernel_name(x.dtype, width)),
                  mb.persistent_grid(i32(work), plan.threads), (plan.threads, 1, 1), args, shared_mem=plan.smem)
    return y
