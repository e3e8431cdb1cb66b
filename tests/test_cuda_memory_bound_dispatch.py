"""Host-side logic of the CUDA memory-bound ops, without a GPU: the 5-D view, vector width,
which instantiation each op chooses, tile and shared-memory sizing, and that every choice is a
registered (so CI-compiled) instantiation."""
import engine_calls
import numpy as np

from conftest import HostArrayDevice
import pytest

from gpuconv import geometry as g
from gpuconv.cuda import epilogue, module_cache, registry, sources
from gpuconv.cuda import depthwise, locally_connected, pooling, separable
from gpuconv.cuda import upsampling as upsample
from gpuconv.cuda import memory_bound as mb

F32, F16, F64 = np.dtype("float32"), np.dtype("float16"), np.dtype("float64")


# ---------------------------------------------------------------------------------------------
# 5-D view and vector width
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape, cl, expect", [
    ((2, 10, 3), True, (2, 3, (1, 1, 10))),
    ((2, 3, 10), False, (2, 3, (1, 1, 10))),
    ((2, 5, 6, 7), True, (2, 7, (1, 5, 6))),
    ((2, 7, 5, 6), False, (2, 7, (1, 5, 6))),
    ((1, 4, 5, 6, 8), True, (1, 8, (4, 5, 6))),
])
def test_view5(shape, cl, expect):
    assert mb.view5(shape, cl) == expect


def test_pads_and_out_spatial_use_before_pads():
    assert mb.pads3d(((1, 2),)) == (0, 0, 1)
    assert mb.pads3d(((1, 2), (0, 1))) == (0, 1, 0)
    # (L + before + after - k_eff) // s + 1
    assert g.padded_output_spatial((10,), (3,), (2,), ((1, 1),), (1,)) == (5,)
    assert g.padded_output_spatial((7, 7), (3, 3), (1, 1), ((2, 2), (0, 0)), (2, 2)) == (7, 3)


@pytest.mark.parametrize("dtype, v", [(F32, 4), (F16, 8), (F64, 2)])
def test_vector_width_full_when_aligned(dtype, v):
    assert mb.full_vector_width(dtype) == v
    assert mb.vector_width(dtype, 4 * v, True, pointers=(256, 512)) == v


@pytest.mark.parametrize("channels, cl, ptrs, expect", [
    (12, True, (0,), 4),   # multiple of 4
    (6, True, (0,), 1),    # not a multiple: scalar
    (12, True, (8,), 1),   # misaligned base pointer: scalar
    (12, False, (0,), 1),  # channels_first never vectorises channels
])
def test_vector_width_fallbacks(channels, cl, ptrs, expect):
    assert mb.vector_width(F32, channels, cl, pointers=ptrs) == expect


# ---------------------------------------------------------------------------------------------
# Depthwise: specialisation, tile, fallback
# ---------------------------------------------------------------------------------------------
def _dw_plan(x_shape, k, strides, dilation, cl=True, dtype=F32, dm=1, index=None, pads=None):
    n = x_shape[0]
    c = x_shape[-1] if cl else x_shape[1]
    spatial = x_shape[1:-1] if cl else x_shape[2:]
    pads = pads or tuple(((kk - 1) * d // 2, (kk - 1) * d - (kk - 1) * d // 2) for kk, d in zip(k, dilation))
    out = g.padded_output_spatial(spatial, k, strides, pads, dilation)
    out_shape = mb.make_shape(n, c * dm, out, cl)
    return depthwise.plan_depthwise(x_shape, (*k, c, dm), dtype, strides, pads, dilation, cl, out_shape,
                                    pointers=(0,), index=index)


@pytest.mark.parametrize("x_shape, k, s, d", [
    ((32, 56, 56, 144), (3, 3), (1, 1), (1, 1)),    # W1
    ((32, 56, 56, 144), (5, 5), (2, 2), (1, 1)),    # W3
    ((32, 14, 14, 384), (7, 7), (1, 1), (1, 1)),    # W4
    ((8, 4000, 512), (3,), (1,), (64,)),            # W5
    ((8, 2048, 4096), (4,), (1,), (1,)),            # W6 (causal: padding only)
    ((8, 16, 28, 28, 108), (3, 3, 3), (1, 1, 1), (1, 1, 1)),  # V3
])
@pytest.mark.parametrize("dtype", [F32, F16, F64])
def test_bench_rows_take_the_specialised_tile_kernel(x_shape, k, s, d, dtype):
    plan = _dw_plan(x_shape, k, s, d, dtype=dtype)
    assert plan.kernel == "tile", plan
    full = mb.full_vector_width(dtype)
    assert plan.vec == (full if x_shape[-1] % full == 0 else 1)  # V3: 108 half channels are not 8k
    assert plan.name in registry.registered(depthwise.FILE)
    assert 0 < plan.tile.smem <= mb.SMEM_BUDGET
    assert plan.tile.threads % plan.tile.cv == 0 and plan.tile.threads <= mb.THREADS


def test_tile_channels_first_is_one_plane_of_256_threads():
    plan = _dw_plan((4, 144, 56, 56), (3, 3), (1, 1), (1, 1), cl=False)
    assert plan.kernel == "tile" and plan.vec == 1
    assert plan.tile.cv == 1 and plan.tile.threads == 256


def test_channel_vectors_divide_the_channel_count_when_possible():
    # 144 float16 channels = 18 vectors of 8: 6 per CTA leaves no idle lanes.
    plan = _dw_plan((2, 8, 8, 144), (3, 3), (1, 1), (1, 1), dtype=F16)
    assert plan.tile.cv == 6 and plan.tile.threads == 6 * 32


@pytest.mark.parametrize("activation, acts", [(None, epilogue.ACTS_CHEAP), ("relu", epilogue.ACTS_CHEAP),
                                              ("relu6", epilogue.ACTS_CHEAP), ("leaky_relu", epilogue.ACTS_CHEAP),
                                              ("gelu", epilogue.ACTS_ANY), ("swish", epilogue.ACTS_ANY),
                                              ("hard_swish", epilogue.ACTS_ANY), ("sigmoid", epilogue.ACTS_ANY)])
def test_the_tile_kernel_is_built_for_the_cheap_activations_unless_the_layer_needs_another(activation, acts):
    """A cold first call compiles only the epilogue it runs: the cheap build for no activation and
    relu / relu6 / leaky_relu, the build with every activation otherwise; both are registered."""
    x_shape, k = (2, 9, 9, 8), (3, 3)
    pads = ((1, 1), (1, 1))
    out_shape = mb.make_shape(2, 8, (9, 9), True)
    plan = depthwise.plan_depthwise(x_shape, (*k, 8, 1), F32, (1, 1), pads, (1, 1), True, out_shape, pointers=(0,),
                                    activation=activation)
    assert plan.kernel == "tile" and plan.acts == acts
    assert plan.name == depthwise.tile_name(F32, plan.vec, ((1, 3, 3), (1, 1, 1), (1, 1, 1)), acts)
    assert plan.name in registry.registered(depthwise.FILE)


def test_a_cheap_build_refuses_an_activation_it_would_skip():
    plan = depthwise.plan_depthwise((2, 9, 9, 8), (3, 3, 8, 1), F32, (1, 1), ((1, 1), (1, 1)), (1, 1), True,
                                    (2, 9, 9, 8), pointers=(0,), activation="relu")
    problem = engine_calls.depthwise_problem(np.zeros((2, 9, 9, 8), np.float32), np.zeros((3, 3, 8, 1), np.float32),
                                             None, strides=(1, 1), padding=((1, 1), (1, 1)), dilation=(1, 1),
                                             channels_last=True, activation="gelu")
    with pytest.raises(ValueError, match="cheap activations only.*'gelu'"):
        depthwise.launch_depthwise(plan, problem, None, np.zeros((3, 3, 1, 8)), None, np.zeros((2, 9, 9, 8)), "gelu")


def test_unlisted_geometry_takes_the_direct_kernel():
    plan = _dw_plan((2, 9, 9, 8), (2, 3), (1, 1), (1, 1))
    assert plan.kernel == "direct" and plan.name == depthwise.direct_name(F32, "int32", 4)
    assert plan.name in registry.registered(depthwise.FILE)


def test_odd_channels_fall_back_to_scalar_tile():
    plan = _dw_plan((2, 9, 9, 6), (3, 3), (1, 1), (1, 1))
    assert plan.kernel == "tile" and plan.vec == 1


def test_int64_offsets_take_the_direct_kernel():
    plan = _dw_plan((2, 9, 9, 8), (3, 3), (1, 1), (1, 1), index="int64")
    assert plan.kernel == "direct" and "long long" in plan.name


def test_index_width_from_byte_offsets():
    # 2**31 bytes of float32 = 2**29 elements: the selector switches exactly there.
    assert mb.index_width((1, 2**29 - 1, 1), dtype=F32) == "int32"
    assert mb.index_width((1, 2**29, 1), dtype=F32) == "int64"
    assert mb.index_width((1, 2**30, 1), dtype=F16) == "int64"


def test_halo_shrinks_to_fit_and_gives_up_when_impossible():
    tile = depthwise.choose_tile((1, 64, 64), 256, 4, True, (1, 7, 7), (1, 1, 1), (1, 1, 1), F32, budget=8 * 1024)
    assert tile is not None
    assert depthwise.halo_bytes((tile.td, tile.th, tile.tw, tile.cv), (1, 7, 7), (1, 1, 1), (1, 1, 1), 4, 4) <= 8 * 1024
    assert depthwise.choose_tile((1, 64, 64), 256, 4, True, (1, 7, 7), (1, 1, 1), (1, 1, 1), F32, budget=64) is None


def test_depthwise_instantiation_set_is_bounded_and_listed():
    names = depthwise.instantiations()
    assert len(names) == len(set(names))
    # Two vector widths x (the tile kernel's cheap and any-activation builds per specialisation,
    # and the direct kernel's two index widths), per dtype.
    per_dtype = 2 * (2 * len(depthwise.SPECIALISATIONS) + 2)
    # float16 also with a float32 output, the separable two-kernel path's intermediate, which
    # takes no activation: the tile kernel's cheap build only.
    per_mid = 2 * (len(depthwise.SPECIALISATIONS) + 2)
    assert len(names) == 3 * per_dtype + per_mid - len(depthwise._NO_CHEAP_BUILD)
    assert sum(n.endswith(", float>") for n in names) == per_mid
    assert set(names) <= set(registry.registered(depthwise.FILE))


# ---------------------------------------------------------------------------------------------
# Separable: the fused / two-kernel choice
# ---------------------------------------------------------------------------------------------
def test_separable_fuses_when_the_mid_tile_fits():
    plan = separable.plan_separable(256, 1, 256, F32)  # S1a + S1b
    assert plan.kind == "fused" and plan.kc == 256
    assert plan.smem == plan.pixels * 256 * 4 <= mb.SMEM_BUDGET
    assert plan.pixels == mb.THREADS // plan.fch * separable.PW_PIXELS


def test_separable_prefers_more_pixels_then_wider_filter_chunks():
    small = separable.plan_separable(32, 1, 16, F32)
    assert small.kind == "fused" and small.fch == 32 and small.pixels == 64
    wide = separable.plan_separable(1024, 1, 16, F32)  # 64 px x 1024 x 4 B > 48 KiB: fch 256, 8 px
    assert wide.kind == "fused" and wide.fch == 256 and wide.pixels == 8


@pytest.mark.parametrize("dtype, mid", [(F32, 2048), (F16, 2048), (F64, 1024)])
def test_separable_two_kernels_when_mid_is_too_wide(dtype, mid):
    plan = separable.plan_separable(mid, 1, 64, dtype)
    assert plan.kind == "two_kernel"
    assert 1 <= plan.kc < mid and plan.smem <= mb.SMEM_BUDGET


def test_separable_names_registered():
    for dt in (F32, F16, F64):
        for w in ("int32", "int64"):
            assert separable.fused_name(dt, w) in registry.registered(separable.FILE)
            assert separable.pointwise_name(dt, w) in registry.registered(separable.FILE)


# ---------------------------------------------------------------------------------------------
# Pooling, upsampling, locally connected
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode, code", [("max", 0), ("average", 1)])
@pytest.mark.parametrize("cl, vec", [(True, 8), (False, 1)])
def test_pool_choice(mode, code, cl, vec):
    x_shape = (2, 8, 8, 16) if cl else (2, 16, 8, 8)
    out = (2, 4, 4, 16) if cl else (2, 16, 4, 4)
    name, v, width = pooling.plan_pool(x_shape, out, F16, mode, cl, pointers=(0, 0))
    assert (v, width) == (vec, "int32")
    assert name == f"gc::pool<gc::half, int, {vec}, {code}>"
    assert name in registry.registered(pooling.FILE)


def test_pool_rejects_unknown_mode():
    with pytest.raises(ValueError, match="mode"):
        pooling.plan_pool((1, 4, 4, 1), (1, 2, 2, 1), F32, "median", True)


@pytest.mark.parametrize("x_shape, size, interp, code, out", [
    ((2, 5, 4), (2,), "nearest", 0, (2, 10, 4)),
    ((2, 5, 6, 4), (2, 3), "bilinear", 2, (2, 10, 18, 4)),
    ((2, 3, 4, 5, 4), (2, 2, 2), "trilinear", 3, (2, 6, 8, 10, 4)),
])
def test_upsample_choice(x_shape, size, interp, code, out):
    name, vec, width, out_shape = upsample.plan_upsample(x_shape, size, interp, F32, True, pointers=(0, 0))
    assert out_shape == out and vec == 4 and width == "int32"
    assert name == f"gc::upsample<float, int, 4, {code}>"
    assert name in registry.registered(upsample.FILE)


def test_upsample_rejects_bilinear_in_1d_and_3d():
    for shape, size in (((1, 4, 1), (2,)), ((1, 2, 2, 2, 1), (2, 2, 2))):
        with pytest.raises(ValueError, match="interpolation"):
            upsample.plan_upsample(shape, size, "bilinear", F32, True)


@pytest.mark.parametrize("batch, filters, fch", [(8, 3, 4), (2, 64, 64), (64, 1000, 128)])
def test_locally_connected_plan(batch, filters, fch):
    plan = locally_connected.plan_locally_connected(batch, 3 * 3 * 16, filters, F32)
    assert plan.fch == fch
    assert plan.threads % plan.fch == 0 and 32 <= plan.threads <= mb.THREADS
    assert plan.batch_chunk == plan.threads // plan.fch * locally_connected.LC_BATCH
    assert plan.smem == plan.batch_chunk * plan.kc * 4 <= mb.SMEM_BUDGET


def test_every_memory_bound_file_registers_all_dtypes_and_widths():
    reg = registry.registry()
    for module in (pooling, upsample, locally_connected, separable):
        names = reg[module.FILE]
        for ctype in ("float", "gc::half", "double"):
            for itype in ("int", "long long"):
                assert any(f"<{ctype}, {itype}" in n for n in names), (module.FILE, ctype, itype)


# ---------------------------------------------------------------------------------------------
# Argument marshalling, without a GPU: the engine functions run against a NumPy stand-in for
# CuPy, the launch is captured, and every argument is checked against the kernel's C++
# parameter list (count, pointer / int / Index kind) parsed from the .cu source.
# ---------------------------------------------------------------------------------------------
import re

from gpuconv.cuda import launch as _launch


def _kernel_params(filename, kernel):
    src = sources.read_source(filename)
    m = re.search(r"\b" + kernel + r"\(([^)]*)\)\s*\{", src)
    assert m, f"{kernel} not found in {filename}"
    return [p.strip() for p in m.group(1).split(",")]


def _check_args(params, args, width):
    assert len(params) == len(args), (params, args)
    index_type = np.int32 if width == "int32" else np.int64
    for p, a in zip(params, args):
        if "*" in p:
            assert isinstance(a, np.ndarray) or a is None or isinstance(a, np.uintp), (p, a)
        elif p.startswith("Index"):
            assert type(a) is index_type, (p, type(a))
        else:
            assert p.startswith("int ") and type(a) is np.int32, (p, type(a))


@pytest.fixture
def captured(monkeypatch):
    from gpuconv.cuda import device

    monkeypatch.setattr(device, "_active", HostArrayDevice())
    monkeypatch.setattr(mb, "pointer", lambda a: 0)
    limits = _launch.DeviceLimits((2**31 - 1, 65535, 65535), 1024, 132, 48 * 1024, 227 * 1024)
    monkeypatch.setattr(_launch, "device_limits", lambda device=None: limits)
    calls = []
    monkeypatch.setattr(module_cache, "get_function", lambda f, name: (f, name))
    monkeypatch.setattr(_launch, "launch",
                        lambda kernel, grid, block, args, shared_mem=0: calls.append((kernel, grid, block, args,
                                                                                     shared_mem)))
    return calls


def _template(name):
    return name.split("<")[0].split("::")[-1]


def _assert_calls_match(calls, width="int32"):
    assert calls
    for (filename, name), grid, block, args, smem in calls:
        assert name in registry.registered(filename)
        _check_args(_kernel_params(filename, _template(name)), args, width)
        assert 1 <= grid[0] < 2**31 and block[0] <= mb.THREADS and smem <= mb.SMEM_BUDGET


@pytest.mark.parametrize("cl", [True, False])
@pytest.mark.parametrize("k, s, d, spatial", [((3, 3), (1, 1), (1, 1), (6, 7)), ((2, 3), (1, 2), (1, 1), (6, 7)),
                                              ((3,), (1,), (64,), (200,))])
def test_depthwise_marshalling(captured, cl, k, s, d, spatial):
    x = np.zeros(mb.make_shape(2, 8, spatial, cl), np.float32)
    w = np.zeros((*k, 8, 2), np.float32)
    pads = tuple(((kk - 1) * dd // 2, (kk - 1) * dd // 2) for kk, dd in zip(k, d))
    y = engine_calls.depthwise_conv(depthwise, x, w, np.zeros(16, np.float32), strides=s, padding=pads, dilation=d,
                                 channels_last=cl, activation="gelu")
    assert y.shape == mb.make_shape(2, 16, g.padded_output_spatial(spatial, k, s, pads, d), cl)
    _assert_calls_match(captured)
    # gelu is fused into the depthwise kernel's epilogue: one launch, the activation code as `act`.
    assert [_template(c[0][1]) for c in captured] in (["depthwise_tile"], ["depthwise_direct"])
    assert captured[-1][3][-1] == epilogue.activation_code("gelu")


@pytest.mark.parametrize("cl", [True, False])
@pytest.mark.parametrize("channels", [8, 2048])  # fused, two kernels
def test_separable_marshalling(captured, cl, channels):
    x = np.zeros(mb.make_shape(1, channels, (5, 4), cl), np.float32)
    dwk = np.zeros((3, 3, channels, 1), np.float32)
    pwk = np.zeros((1, 1, channels, 6), np.float32)
    y = engine_calls.separable_conv(separable, x, dwk, pwk, None, strides=(1, 1), padding=((1, 1), (1, 1)), dilation=(1, 1),
                                 channels_last=cl, activation=None)
    assert y.shape == mb.make_shape(1, 6, (5, 4), cl)
    _assert_calls_match(captured)
    kernels = [_template(c[0][1]) for c in captured]
    assert kernels == (["separable_fused"] if channels == 8 else ["depthwise_tile", "pointwise_conv"])


@pytest.mark.parametrize("cl", [True, False])
def test_pool_upsample_lc_marshalling(captured, cl):
    x = np.zeros(mb.make_shape(2, 4, (6, 7), cl), np.float16)
    y = engine_calls.pool(pooling, x, mode="average", pool_size=(2, 2), strides=(2, 2), padding=((0, 0), (0, 1)),
                     channels_last=cl)
    assert y.shape == mb.make_shape(2, 4, (3, 4), cl)
    y = engine_calls.upsample(upsample, x, size=(2, 3), interpolation="bilinear", channels_last=cl)
    assert y.shape == mb.make_shape(2, 4, (12, 21), cl)
    w = np.zeros((3 * 3, 3 * 3 * 4, 5), np.float16)
    y = engine_calls.locally_connected(locally_connected, x, w, np.zeros((3, 3, 5), np.float16), kernel_size=(3, 3),
                                            strides=(2, 2), padding=((0, 0), (0, 0)), out_spatial=(3, 3),
                                            channels_last=cl, activation=None)
    assert y.shape == mb.make_shape(2, 5, (3, 3), cl)
    _assert_calls_match(captured)
    assert [_template(c[0][1]) for c in captured] == ["pool", "upsample", "locally_connected"]


# ---------------------------------------------------------------------------------------------
# Fused activations of the memory-bound kernels
# ---------------------------------------------------------------------------------------------
def _inline_switch_codes():
    """The Act values ``gc::activate_inline`` has a case for, parsed from common.cuh."""
    src = sources.read_source("common.cuh")
    body = src[src.index("void activate_inline("):]
    body = body[:body.index("default:")]
    enum = {m.group(1): int(m.group(2)) for m in re.finditer(r"\b(ACT_[A-Z0-9_]+)\s*=\s*(\d+)", src)}
    return {enum[name] for name in re.findall(r"case (ACT_[A-Z0-9_]+):", body)}


def test_inline_switch_covers_every_fused_activation():
    # The memory-bound epilogues fuse every activation the engine declares fusable; a code the
    # switch lacks would make a kernel silently return the un-activated value.
    codes = {epilogue.activation_code(name) for name in epilogue.FUSED_ACTIVATIONS}
    assert 0 not in codes
    assert codes <= _inline_switch_codes()
    assert int(mb.kernel_activation(None)) == 0 and int(mb.kernel_activation("linear")) == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
@pytest.mark.parametrize("activation", ["sigmoid", "swish", "squareplus", "relu"])
def test_separable_and_lc_pass_the_activation_code_and_launch_no_pass(captured, dtype, activation):
    x = np.zeros(mb.make_shape(2, 8, (5, 4), True), dtype)
    engine_calls.separable_conv(separable, x, np.zeros((3, 3, 8, 1), dtype), np.zeros((1, 1, 8, 6), dtype), None,
                             strides=(1, 1), padding=((1, 1), (1, 1)), dilation=(1, 1), channels_last=True,
                             activation=activation)
    engine_calls.locally_connected(locally_connected, x, np.zeros((3 * 2, 3 * 3 * 8, 5), dtype), None, kernel_size=(3, 3),
                                        strides=(1, 1), padding=((0, 0), (0, 0)), out_spatial=(3, 2),
                                        channels_last=True, activation=activation)
    _assert_calls_match(captured)
    assert [_template(c[0][1]) for c in captured] == ["separable_fused", "locally_connected"]
    assert all(c[3][-1] == epilogue.activation_code(activation) for c in captured)
