"""How every kernel is compiled, decided in one place.

The runtime (``module_cache``) and the CI audit (``python -m gpuconv.cuda.check``, which adds only
``--ptxas-options=-v``) both take their options from :func:`compile_options`, so what CI proves
compiles is exactly what a user's GPU compiles. The options are ours, not CuPy's: RawModule would
add ``-ftz=true`` and its own arch flag. Which architecture to build for is part of the same
decision (a cubin for a device NVRTC knows, PTX for a newer one), so it lives here too.
"""

# -ftz=false: NumPy and Keras keep float32 subnormals; CuPy's RawModule default (-ftz=true) would
#   flush them, so tiny activations (and their products with weights) would differ from the
#   oracle. Subnormal arithmetic is full speed on FMA units since sm_20 (no penalty).
# --prec-div/--prec-sqrt=true: IEEE-rounded division and sqrt (average pooling, activations).
# --fmad=true: a*b+c contracted to one FMA is more accurate than two roundings, and what every
#   reference GPU library does; the tolerance tests are written for it.
# -DGPUCONV_NVRTC=1: lets a source tell it is built by gpuconv (no toolkit headers available).
_BASE_OPTIONS = (
    "--std=c++17",
    "-ftz=false",
    "--prec-div=true",
    "--prec-sqrt=true",
    "--fmad=true",
    "-DGPUCONV_NVRTC=1",
)


def arch_option(arch):
    """``-arch=sm_XX`` (a cubin) from 80, '80' or 'sm_80'; ``-arch=compute_XX`` (PTX) from 'compute_80'."""
    text = str(arch)
    kind = "sm"
    for prefix in ("sm_", "compute_"):
        if text.startswith(prefix):
            kind = prefix[:-1]
            text = text[len(prefix):]
    if not text.isdigit():
        raise ValueError(f"Invalid value for argument `arch`. Expected e.g. 80, 'sm_90' or 'compute_90'. Received: arch={arch!r}")
    return f"-arch={kind}_{text}"


def emits_ptx(options):
    """Whether ``options`` ask NVRTC for PTX (a ``compute_XX`` target) instead of a cubin."""
    return any(o.startswith("-arch=compute_") for o in options)


def compile_options(arch=None):
    """The compiler options of every gpuconv kernel (see the comment above for each choice); with
    ``arch`` (80, 'sm_90', 'compute_90') the tuple ends with its ``-arch=`` option."""
    if arch is None:
        return _BASE_OPTIONS
    return _BASE_OPTIONS + (arch_option(arch),)


def device_arch(device=None):
    """The target to build for: the device's compute capability as a cubin target when NVRTC knows
    it or an older minor of its generation; PTX of NVRTC's newest architecture (``'compute_XX'``)
    for a device of a newer major generation than NVRTC knows (no cubin NVRTC can emit would load
    there, PTX is JIT-compiled by the driver)."""
    import cupy
    from cupy.cuda import nvrtc as cupy_nvrtc

    dev = device if device is not None else cupy.cuda.Device()
    return target_arch(int(dev.compute_capability), [int(a) for a in cupy_nvrtc.getSupportedArchs()])


def target_arch(cc, supported):
    """``device_arch``'s rule on plain numbers (unit-tested without a GPU)."""
    usable = [a for a in supported if a <= cc]
    if not usable:
        return cc
    best = max(usable)
    if cc // 10 > best // 10:
        return f"compute_{best}"
    return best
