"""Every registered kernel instantiation, launched once against the float64 NumPy engine.

One test per name of ``gpuconv.cuda.registry.registry()``: it builds the smallest problem that makes
the CUDA engine's host planner pick exactly that instantiation (dtype, layout, index width, tile
shape, depthwise specialisation (k, s, d), vector width, pool / upsample mode, separable fused or
two-kernel, the two-kernel path's float32 intermediate for float16), runs it through
``gpuconv.cuda.engine``, compares with ``gpuconv.cpu`` on float64 copies of the same rounded inputs
(``conftest.assert_close``) and asserts that the instantiation was launched. 64-bit-index
instantiations are reached on small tensors with ``GPUCONV_FORCE_INDEX_WIDTH=int64``.

The last test fails if an instantiation is registered but no test of this module launched it, so a
new instantiation needs a problem here (``_problem``) before CI passes.

Sizes are small on purpose: the module also runs under the cuda-emulator's AddressSanitizer build
and its race checker (``python -m gpuconv.emulator.sanitized -m pytest <this file>``,
``GPUCONV_EMULATOR_CHECK=race``). Launches are recorded by the emulator (``runtime.launched``) or,
on a real GPU, by a spy on ``module_cache.get_function``.
"""
import zlib

import engine_calls as calls
import numpy as np
import optimizer_cases
import pytest

from conftest import CUDA_MARKS, ON_EMULATOR, assert_close, gpu_xp, random_array
from gpuconv import dtypes as gpuconv_dtypes
from gpuconv import geometry as g
from gpuconv.cuda import indexing, module_cache, registry
from gpuconv.cuda import engine  # noqa: F401  (imports every kernel module: they register their instantiations)

REGISTERED = sorted(name for names in registry.registry().values() for name in names)
_DTYPES = {"float": "float32", "gc::half": "float16", "double": "float64",
           "gc::bfloat16": "bfloat16"}  # ml_dtypes' NumPy dtype (the tensor-core conv's), resolved at use
_INDEX = {"int": "int32", "long long": "int64"}
_seen = set()  # instantiations launched by this module's tests


def _gpu(test):
    """The CUDA_MARKS of conftest on one test (this module's index-width tests need no device)."""
    for mark in CUDA_MARKS:
        test = mark(test)
    return test


def _parse(name):
    """'gc::pool<float, int, 4, 0>' -> ('pool', ['float', 'int', '4', '0'])."""
    template = name.split("<", 1)[0].split("::")[-1].strip()
    return template, [a.strip() for a in name[name.index("<") + 1: name.rindex(">")].split(",")]


def _shape(n, c, spatial, channels_last):
    return (n, *spatial, c) if channels_last else (n, c, *spatial)


def _same(spatial, k, s, d):
    return tuple(g.conv_padding_pair(L, kk, ss, dd, "same") for L, kk, ss, dd in zip(spatial, k, s, d))


# ---------------------------------------------------------------------------------------------
# One problem per kernel family: (op, float64 host args, kwargs)
# ---------------------------------------------------------------------------------------------
def _conv(rng, dtype, cl, tile, activation="relu"):
    groups, cpg = 2, 3
    fpg = 4 if tile == 1 else 20  # the narrow tile takes <= 16 filters per group (algorithms._narrow_fits)
    spatial, k, s, d = (5, 6), (3, 3), (1, 2), (1, 1)
    x = random_array(rng, _shape(2, groups * cpg, spatial, cl))
    w = random_array(rng, (*k, cpg, groups * fpg))
    b = random_array(rng, (groups * fpg,))
    return "conv", (x, w, b), dict(strides=s, padding=g.conv_padding(spatial, k, s, d, "same"), dilation=d,
                                   groups=groups, channels_last=cl, activation=activation)


def _conv_transpose(rng, dtype, cl, tile):
    groups, cpg = 2, 3
    fpg = 4 if tile == 1 else 20
    spatial, k, s, d = (4, 5), (3, 3), (2, 2), (1, 1)
    out_spatial, crop = g.conv_transpose_geometry(spatial, k, s, d, "same", None)
    x = random_array(rng, _shape(2, groups * cpg, spatial, cl))
    w = random_array(rng, (*k, fpg, groups * cpg))
    b = random_array(rng, (groups * fpg,))
    return "conv_transpose", (x, w, b), dict(strides=s, dilation=d, groups=groups, out_spatial=out_spatial,
                                             crop=crop, channels_last=cl, activation="tanh")


def _spec_rank(spec):
    k = spec[0]
    return 3 if k[0] > 1 else 2 if k[1] > 1 else 1


def _depthwise(rng, dtype, vec, spec, activation="relu"):
    """A depthwise conv with kernel/stride/dilation ``spec`` (3-D tuples) and vector width ``vec``:
    V > 1 is channels_last with a multiple of V channels, V = 1 channels_first; ``activation``
    fused (a cheap one launches the tile kernel's ACTS_CHEAP build, any other its ACTS_ANY one)."""
    rank = _spec_rank(spec)
    k, s, d = (t[3 - rank:] for t in spec)
    spatial = {1: (9,), 2: (5, 6), 3: (4, 4, 5)}[rank]
    cl = vec > 1
    c, dm = (2 * vec, 1) if cl else (3, 2)
    x = random_array(rng, _shape(2, c, spatial, cl))
    w = random_array(rng, (*k, c, dm))
    b = random_array(rng, (c * dm,))
    return "depthwise_conv", (x, w, b), dict(strides=s, padding=_same(spatial, k, s, d), dilation=d,
                                             channels_last=cl, activation=activation)


def _separable_two_kernel(rng, dtype, vec, spec):
    """A separable conv whose M = C*dm mid channels overflow the fused kernel's shared memory, so the
    depthwise kernel of ``spec`` writes the intermediate (float32 for float16) and pointwise_conv
    reads it. V > 1: C = 1600, dm = 1 (vector stores of the intermediate); V = 1: 401 channels
    (no multiple of the vector) and dm = 4."""
    from gpuconv.cuda import separable

    rank = _spec_rank(spec)
    k, s, d = (t[3 - rank:] for t in spec)
    spatial = {1: (5,), 2: (3, 4), 3: (3, 3, 3)}[rank]
    double = np.dtype(dtype) == np.float64
    c, dm = ((800, 1) if double else (1600, 1)) if vec > 1 else ((201, 4) if double else (401, 4))
    filters = 8
    assert separable.plan_separable(c, dm, filters, np.dtype(dtype)).kind == "two_kernel"
    x = random_array(rng, _shape(1, c, spatial, True))
    dwk = random_array(rng, (*k, c, dm))
    pwk = random_array(rng, (*(1,) * rank, c * dm, filters)) * 0.05
    b = random_array(rng, (filters,))
    return "separable_conv", (x, dwk, pwk, b), dict(strides=s, padding=_same(spatial, k, s, d), dilation=d,
                                                    channels_last=True, activation=None)


def _separable_fused(rng, dtype, cl):
    spatial, k = (5, 6), (3, 3)
    x = random_array(rng, _shape(2, 4, spatial, cl))
    dwk = random_array(rng, (*k, 4, 2))
    pwk = random_array(rng, (1, 1, 8, 5))
    b = random_array(rng, (5,))
    return "separable_conv", (x, dwk, pwk, b), dict(strides=(1, 1), padding=_same(spatial, k, (1, 1), (1, 1)),
                                                    dilation=(1, 1), channels_last=cl, activation="tanh")


def _pool(rng, dtype, vec, mode):
    spatial, p, s = (6, 7), (3, 3), (2, 2)
    cl = vec > 1
    x = random_array(rng, _shape(2, 2 * vec if cl else 3, spatial, cl))
    return "pool", (x,), dict(mode=mode, pool_size=p, strides=s, padding=g.pool_padding(spatial, p, s, "same"),
                              channels_last=cl)


def _upsample(rng, dtype, vec, mode):
    size, spatial = {"nearest": ((3,), (4,)), "bilinear": ((2, 3), (3, 4)), "trilinear": ((2, 2, 3), (2, 3, 2))}[mode]
    cl = vec > 1
    x = random_array(rng, _shape(2, 2 * vec if cl else 3, spatial, cl))
    return "upsample", (x,), dict(size=size, interpolation=mode, channels_last=cl)


def _locally_connected(rng, dtype, cl):
    spatial, k, s, c, f = (5, 6), (2, 3), (1, 2), 3, 4
    out = tuple(g.locally_connected_output_length(L, kk, ss, "valid") for L, kk, ss in zip(spatial, k, s))
    pads = tuple(g.locally_connected_padding_pair(L, kk, ss, "valid") for L, kk, ss in zip(spatial, k, s))
    x = random_array(rng, _shape(3, c, spatial, cl))
    w = random_array(rng, (int(np.prod(out)), int(np.prod(k)) * c, f))
    b = random_array(rng, (*out, f))
    return "locally_connected", (x, w, b), dict(kernel_size=k, strides=s, padding=pads, out_spatial=out,
                                                channels_last=cl, activation="sigmoid")


def _with_dy(rng, op, forward):
    """A backward problem from a forward one: the same arrays and geometry plus a random output
    gradient ``dy`` of the forward's output shape."""
    _, arrays, kwargs = forward
    problem_of = {"pool": calls.pool_problem, "upsample": calls.upsample_problem,
                  "locally_connected": calls.locally_connected_problem}[forward[0]]
    dy = random_array(rng, problem_of(*arrays, **kwargs).output_shape)
    return op, (*arrays, dy), kwargs


def _pool_backward_call(engine, x, dy, **geometry):
    return engine.pool_backward(calls.pool_problem(x, **geometry), x, dy)


def _upsample_backward_call(engine, x, dy, **geometry):  # x only shapes the problem
    return engine.upsample_backward(calls.upsample_problem(x, **geometry), dy)


def _lc_backward_input_call(engine, x, kernel, bias, dy, **geometry):
    problem = calls.locally_connected_problem(x, kernel, bias, **geometry)
    return engine.locally_connected_backward_input(problem, dy, kernel)


def _lc_backward_weights_call(engine, x, kernel, bias, dy, **geometry):
    problem = calls.locally_connected_problem(x, kernel, bias, **geometry)
    return engine.locally_connected_backward_weights(problem, x, dy)


def _conv_wgrad(rng, dtype, cl, tile):
    """A conv weight gradient on the tile ``tile`` (the narrow one takes <= 16 filters per group,
    as the forward's); the kernel array only shapes the problem."""
    _, (x, w, _), kwargs = _conv(rng, dtype, cl, tile, activation=None)
    dy = random_array(rng, calls.conv_problem(x, w, None, **kwargs).output_shape)
    return "conv_backward_weights", (x, w, dy), kwargs


def _depthwise_wgrad(rng, vec):
    """A depthwise kernel gradient in grouped form (groups = C, one input channel per group):
    V > 1 is channels_last with a multiple of V channels and dm 1, V = 1 channels_first, dm 2."""
    cl = vec > 1
    c, dm = (2 * vec, 1) if cl else (3, 2)
    spatial, k, s, d = (5, 6), (3, 2), (1, 2), (1, 1)
    x = random_array(rng, _shape(2, c, spatial, cl))
    w = random_array(rng, (*k, 1, c * dm))
    kwargs = dict(strides=s, padding=_same(spatial, k, s, d), dilation=d, groups=c, channels_last=cl)
    dy = random_array(rng, calls.conv_problem(x, w, None, **kwargs).output_shape)
    return "conv_backward_weights", (x, w, dy), kwargs


def _depthwise_backward(rng, vec):
    """A depthwise convolution's backward with a fused relu (the depthwise input gradient and the
    bias reduction): V > 1 channels_last with a multiple of V channels and dm 1, V = 1
    channels_first, dm 2, strided and dilated."""
    cl = vec > 1
    c, dm = (2 * vec, 1) if cl else (3, 2)
    spatial, k, s, d = (5, 6), (3, 2), (1, 2), (2, 1)
    x = random_array(rng, _shape(2, c, spatial, cl))
    w, bias = random_array(rng, (*k, c, dm)), random_array(rng, (c * dm,))
    kwargs = dict(strides=s, padding=_same(spatial, k, s, d), dilation=d, channels_last=cl)
    out_shape = calls.depthwise_problem(x, w, bias, **kwargs).output_shape
    y = np.maximum(random_array(rng, out_shape), 0.0)  # a relu's output: zeros where the derivative is 0
    return "depthwise_backward_fused", (x, w, bias, random_array(rng, out_shape), y), kwargs


def _depthwise_backward_fused_call(engine, x, kernel, bias, dy, y, **geometry):
    """dx and db of the relu-fused depthwise backward (gradients.conv_with_bias), concatenated flat:
    on CUDA the kernels take the derivative, on the NumPy engine dy is masked first."""
    from gpuconv import gradients

    problem = calls.depthwise_problem(x, kernel, bias, activation="relu", **geometry)
    dx, _, db = gradients.conv_with_bias(engine, problem, x, kernel, bias, dy, output=y)
    from gpuconv import arrays

    return arrays.array_module(dx).concatenate([dx.reshape(-1), db.reshape(-1)])


def _conv_backward_weights_call(engine, x, kernel, dy, **geometry):
    return engine.conv_backward_weights(calls.conv_problem(x, kernel, None, **geometry), x, dy)


def _optimizer_update(rng, dtype, functor):
    """One step of the rule whose kernel functor is ``functor`` on one param of 1003 elements
    (vectors and a scalar tail), its slots in the rule's domain and its scalars rounded to
    ``dtype`` (tests/optimizer_cases.py), the same scalars for the float64 reference."""
    from gpuconv.cuda import optimizer_updates

    rule = {f: r for r, f in optimizer_updates.FUNCTORS.items()}[functor]
    p, grad = random_array(rng, (1003,)), random_array(rng, (1003,))
    return "optimizer_update", (p, grad, *optimizer_cases.initial_slots(rule, (1003,), "float64", rng)), \
        dict(rule=rule, scalars=optimizer_cases.scalars_for(rule, dtype))


def _optimizer_update_call(engine, p, grad, *slots, rule, scalars):
    """The param after one step with weight decay."""
    engine.optimizer_update(rule, scalars, [p], [grad], [list(slots)], [0.01])
    return p


# Ops that engine_calls does not spell: the backward calls built here.
_BACKWARD_CALLS = {"optimizer_update": _optimizer_update_call,
                   "pool_backward": _pool_backward_call, "upsample_backward": _upsample_backward_call,
                   "locally_connected_backward_input": _lc_backward_input_call,
                   "locally_connected_backward_weights": _lc_backward_weights_call,
                   "conv_backward_weights": _conv_backward_weights_call,
                   "depthwise_backward_fused": _depthwise_backward_fused_call}


def _engine_call(op):
    return _BACKWARD_CALLS[op] if op in _BACKWARD_CALLS else getattr(calls, op)


_POOL_MODES = {"0": "max", "1": "average"}
_UPSAMPLE_MODES = {"0": "nearest", "2": "bilinear", "3": "trilinear"}
_GENERIC_DEPTHWISE = ((1, 2, 3), (1, 1, 2), (1, 1, 1))  # no specialisation: depthwise_direct
_GENERIC_DEPTHWISE_1D = ((1, 1, 2), (1, 1, 1), (1, 1, 1))


def _problem(name, rng):
    """(dtype, index width, op, args, kwargs) whose launch plan includes ``name``."""
    template, a = _parse(name)
    dtype = gpuconv_dtypes.resolve(_DTYPES[a[0]])
    if template.startswith("conv_implicit_gemm"):  # <T, VEC_A, VEC_B>: channels (filters) per group % 8 == 0
        _, (x, w, _), kwargs = _conv(rng, dtype, True, 0)  # its geometry: 2 groups, 3x3, strides (1, 2), 'same'
        vec_a, vec_b = (a[1] == "1", a[2] == "1") if len(a) >= 3 else (True, True)  # split-K's sum<T>: any
        cpg, fpg = (16 if vec_a else 11), (24 if vec_b else 20)  # k tiles: 5 / 4, so split-K has 2 slices
        arrays = (random_array(rng, (*x.shape[:-1], 2 * cpg)), random_array(rng, (*w.shape[:-2], cpg, 2 * fpg)),
                  random_array(rng, (2 * fpg,)))
        return (dtype, "int32", "conv", arrays, kwargs)
    if template in ("conv_direct", "conv_transpose"):
        build = _conv if template == "conv_direct" else _conv_transpose
        return (dtype, _INDEX[a[2]], *build(rng, dtype, a[1] == "0", int(a[3])))
    if template == "depthwise_tile":
        vec, nums = int(a[2]), [int(v) for v in a[3:12]]
        spec = (tuple(nums[0:3]), tuple(nums[3:6]), tuple(nums[6:9]))
        if len(a) == 14:  # OutT: only the separable two-kernel path's intermediate
            return (dtype, "int32", *_separable_two_kernel(rng, dtype, vec, spec))
        activation = "relu" if a[12] == "0" else "tanh"  # ACTS_CHEAP / ACTS_ANY (one the NumPy engine fuses)
        return (dtype, "int32", *_depthwise(rng, dtype, vec, spec, activation))
    if template == "depthwise_direct":
        width, vec = _INDEX[a[1]], int(a[2])
        if len(a) == 4:
            return (dtype, width, *_separable_two_kernel(rng, dtype, vec, _GENERIC_DEPTHWISE_1D))
        return (dtype, width, *_depthwise(rng, dtype, vec, _GENERIC_DEPTHWISE))
    if template == "separable_fused":
        return (dtype, _INDEX[a[1]], *_separable_fused(rng, dtype, a[1] == "int"))
    if template == "pointwise_conv":
        return (dtype, _INDEX[a[1]], *_separable_two_kernel(rng, dtype, 1, _GENERIC_DEPTHWISE_1D))
    if template == "pool":
        return (dtype, _INDEX[a[1]], *_pool(rng, dtype, int(a[2]), _POOL_MODES[a[3]]))
    if template == "upsample":
        return (dtype, _INDEX[a[1]], *_upsample(rng, dtype, int(a[2]), _UPSAMPLE_MODES[a[3]]))
    if template == "locally_connected":
        return (dtype, _INDEX[a[1]], *_locally_connected(rng, dtype, a[1] == "int"))
    if template == "pool_backward":
        return (dtype, _INDEX[a[1]], *_with_dy(rng, template, _pool(rng, dtype, int(a[2]), _POOL_MODES[a[3]])))
    if template == "upsample_backward":
        forward = _upsample(rng, dtype, int(a[2]), _UPSAMPLE_MODES[a[3]])
        return (dtype, _INDEX[a[1]], *_with_dy(rng, template, forward))
    if template == "locally_connected_backward":
        op = ("locally_connected_backward_input", "locally_connected_backward_weights")[int(a[2])]
        return (dtype, _INDEX[a[1]], *_with_dy(rng, op, _locally_connected(rng, dtype, a[1] == "int")))
    if template == "conv_wgrad":
        return (dtype, _INDEX[a[2]], *_conv_wgrad(rng, dtype, a[1] == "0", int(a[3])))
    if template == "depthwise_wgrad":
        return (dtype, _INDEX[a[1]], *_depthwise_wgrad(rng, int(a[2])))
    if template in ("depthwise_dgrad", "bias_grad"):
        return (dtype, _INDEX[a[1]], *_depthwise_backward(rng, int(a[2])))
    if template == "wgrad_sum":
        return (dtype, _INDEX[a[1]], *_conv_wgrad(rng, dtype, True, 0))
    if template == "optimizer_update":
        return (dtype, _INDEX[a[1]], *_optimizer_update(rng, dtype, a[2]))
    raise AssertionError(f"no problem builds {name!r}: add one to _problem in {__file__}")


# ---------------------------------------------------------------------------------------------
# Which kernels a test launched
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def launches(monkeypatch):
    """A callable returning the name expressions launched (emulator) or fetched for launch (GPU)
    since the test began."""
    if ON_EMULATOR:
        from gpuconv.emulator import runtime

        before = set(runtime.launched)
        runtime.launched.clear()
        yield lambda: set(runtime.launched)
        runtime.launched.update(before)
        return
    requested = set()
    real = module_cache.get_function

    def spy(filename, name_expression):
        requested.add(name_expression)
        return real(filename, name_expression)

    monkeypatch.setattr(module_cache, "get_function", spy)
    yield lambda: set(requested)


@_gpu
@pytest.mark.parametrize("name", REGISTERED)
def test_instantiation_matches_oracle(name, launches, monkeypatch):
    from gpuconv.cpu import engine as cpu
    from gpuconv.cuda import engine as eng

    cupy = gpu_xp()
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    dtype, width, op, args, kwargs = _problem(name, rng)
    monkeypatch.setenv(indexing.FORCE_ENV, width)
    if name.startswith("gc::conv_direct<"):  # the FFMA rows by name: float16 would take tensor cores
        monkeypatch.setenv("GPUCONV_ALGORITHM", "conv=" + ("direct_tiled_narrow" if _parse(name)[1][3] == "1" else "direct_tiled"))
    if name.startswith("gc::conv_transpose<"):  # the same for the transposed convolution's FFMA rows
        monkeypatch.setenv("GPUCONV_ALGORITHM",
                           "conv_transpose=" + ("phase_tiled_narrow" if _parse(name)[1][3] == "1" else "phase_tiled"))
    if name.startswith(("gc::conv_implicit_gemm_partial<", "gc::conv_implicit_gemm_sum<")):  # split-K, forced
        monkeypatch.setenv("GPUCONV_SPLIT_K", "2")
    if name.startswith("gc::conv_implicit_gemm_128<"):  # the 128 x 128 tile's row
        monkeypatch.setenv("GPUCONV_ALGORITHM", "conv=implicit_gemm_128")
    rounded = [None if a is None else a.astype(dtype) for a in args]
    got = _engine_call(op)(eng, *[None if a is None else cupy.asarray(a) for a in rounded], **kwargs)
    ref = _engine_call(op)(cpu, *[None if a is None else a.astype(np.float64) for a in rounded], **kwargs)
    assert got.dtype == np.dtype(dtype)
    assert_close(cupy.asnumpy(got), ref, dtype)
    ran = launches()
    assert name in ran, f"{name} was not launched; the problem launched {sorted(ran)}"
    _seen.add(name)


@_gpu
def test_every_registered_instantiation_was_launched():
    """Runs last: every instantiation the runtime may request ran in this module."""
    registered = {name for names in registry.registry().values() for name in names}
    missing = sorted(registered - _seen)
    assert not missing, (f"{len(missing)} of {len(registered)} registered instantiations were never launched by "
                         f"{__name__} (deselected, failed, or no problem reaches them):\n" + "\n".join(missing))


# ---------------------------------------------------------------------------------------------
# GPUCONV_FORCE_INDEX_WIDTH (no device needed)
# ---------------------------------------------------------------------------------------------
def test_force_index_width_int64_on_small_tensors(monkeypatch):
    monkeypatch.setenv(indexing.FORCE_ENV, "int64")
    assert indexing.index_type((2, 3, 4)) == "int64"
    assert indexing.index_type(np.zeros(3, np.float16)) == "int64"


def test_force_index_width_int32_keeps_int64_where_int32_overflows(monkeypatch):
    monkeypatch.setenv(indexing.FORCE_ENV, "int32")
    assert indexing.index_type((2, 3, 4)) == "int32"
    assert indexing.index_type((2**31,), itemsize=1) == "int64"
    monkeypatch.setenv(indexing.FORCE_ENV, "")
    assert indexing.index_type((2, 3, 4)) == "int32"


@pytest.mark.parametrize("value", ["int16", "INT64", "64", " int64"])
def test_force_index_width_rejects_other_values(monkeypatch, value):
    monkeypatch.setenv(indexing.FORCE_ENV, value)
    with pytest.raises(ValueError, match="GPUCONV_FORCE_INDEX_WIDTH"):
        indexing.index_type((2, 3))


def test_problems_exist_for_every_registered_instantiation():
    """Each registered name parses into a problem (a new kernel family fails here first, without a device)."""
    rng = np.random.default_rng(0)
    for name in REGISTERED:
        dtype, width, op, args, kwargs = _problem(name, rng)
        assert width in ("int32", "int64") and gpuconv_dtypes.is_float(dtype)

