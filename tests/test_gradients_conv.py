"""Gradients of the convolution family through ``gpuconv.GradientTape``, checked three independent
ways: central finite differences in float64 on the NumPy engine (every op, random geometries),
PyTorch autograd in float32, and identities (the input gradient of a convolution is the
transposed convolution of the output gradient; <gradient, v> is the directional derivative).
Plus determinism and the rule that the tape keeps what each backward needs and nothing else.
"""
import gc
import weakref

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gpuconv
from gpuconv import geometry as g
from gpuconv import ops

torch = pytest.importorskip("torch")
F = torch.nn.functional

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(autouse=True)
def _numpy_backend():
    previous = gpuconv.backend.requested_backend()
    gpuconv.set_backend("numpy")
    yield
    gpuconv.set_backend(previous)


def _grads(fn, arrays, dy):
    """Gradients of ``sum(fn(*arrays) * dy)`` with respect to every array, through the tape."""
    with gpuconv.GradientTape() as tape:
        for a in arrays:
            tape.watch(a)
        y = fn(*arrays)
    return y, tape.gradient(y, list(arrays), output_gradients=dy)


def _finite_difference_check(fn, arrays, rng, eps=1e-6, tol=1e-6):
    """Every entry of every gradient against a central difference of ``sum(fn * dy)``."""
    y = fn(*arrays)
    dy = rng.standard_normal(y.shape)
    _, grads = _grads(fn, arrays, dy)
    for which, (a, grad) in enumerate(zip(arrays, grads)):
        assert grad is not None and grad.shape == a.shape and grad.dtype == a.dtype, which
        numeric = np.empty_like(a)
        for i in np.ndindex(a.shape):
            saved = a[i]
            a[i] = saved + eps
            plus = float(np.sum(fn(*arrays) * dy))
            a[i] = saved - eps
            minus = float(np.sum(fn(*arrays) * dy))
            a[i] = saved
            numeric[i] = (plus - minus) / (2 * eps)
        scale = max(1.0, float(np.abs(numeric).max()))
        np.testing.assert_allclose(grad, numeric, rtol=0, atol=tol * scale, err_msg=f"argument {which}")


def _spatial(draw, rank, lo=3, hi=7):
    return tuple(draw(st.integers(lo, hi)) for _ in range(rank))


@st.composite
def conv_cases(draw):
    rank = draw(st.integers(1, 3))
    groups = draw(st.sampled_from([1, 2]))
    c = groups * draw(st.integers(1, 2))
    f = groups * draw(st.integers(1, 2))
    k = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    strided = draw(st.booleans())
    s = tuple(draw(st.integers(1, 2)) for _ in range(rank)) if strided else (1,) * rank
    d = (1,) * rank if strided else tuple(draw(st.integers(1, 2)) for _ in range(rank))
    padding = draw(st.sampled_from(["valid", "same", "causal"] if rank == 1 else ["valid", "same"]))
    spatial = _spatial(draw, rank, 4 if rank < 3 else 3, 7 if rank < 3 else 4)
    if padding == "valid" and any(g.effective_kernel(kk, dd) > L for kk, dd, L in zip(k, d, spatial)):
        padding = "same"
    data_format = draw(st.sampled_from(["channels_last", "channels_first"]))
    bias = draw(st.booleans())
    activation = draw(st.sampled_from([None, "tanh", "sigmoid"]))
    return dict(rank=rank, c=c, f=f, groups=groups, k=k, s=s, d=d, padding=padding, spatial=spatial,
                data_format=data_format, bias=bias, activation=activation)


def _input(rng, case, channels):
    return rng.standard_normal(g.make_shape(2, channels, case["spatial"], case["data_format"]))


@SETTINGS
@given(conv_cases(), st.integers(0, 2**31 - 1))
def test_conv_finite_differences(case, seed):
    rng = np.random.default_rng(seed)
    x = _input(rng, case, case["c"])
    w = rng.standard_normal(case["k"] + (case["c"] // case["groups"], case["f"]))
    arrays = [x, w] + ([rng.standard_normal(case["f"])] if case["bias"] else [])

    def fn(x, w, b=None):
        return ops.conv_core(x, w, b, strides=case["s"], padding=case["padding"], data_format=case["data_format"],
                             dilation_rate=case["d"], activation=case["activation"])

    _finite_difference_check(fn, arrays, rng)


@SETTINGS
@given(conv_cases(), st.integers(0, 2**31 - 1), st.booleans())
def test_conv_transpose_finite_differences(case, seed, with_output_padding):
    rng = np.random.default_rng(seed)
    padding = "same" if case["padding"] == "causal" else case["padding"]
    output_padding = None
    if with_output_padding:
        output_padding = tuple(int(rng.integers(0, s)) if s > 1 else 0 for s in case["s"])
    x = _input(rng, case, case["c"])
    w = rng.standard_normal(case["k"] + (case["f"] // case["groups"], case["c"]))
    arrays = [x, w] + ([rng.standard_normal(case["f"])] if case["bias"] else [])

    def fn(x, w, b=None):
        return ops.conv_transpose_core(x, w, b, strides=case["s"], padding=padding, output_padding=output_padding,
                                       data_format=case["data_format"], dilation_rate=case["d"],
                                       groups=case["groups"], activation=case["activation"])

    _finite_difference_check(fn, arrays, rng)


@SETTINGS
@given(conv_cases(), st.integers(0, 2**31 - 1), st.integers(1, 2))
def test_depthwise_and_separable_finite_differences(case, seed, dm):
    rng = np.random.default_rng(seed)
    x = _input(rng, case, case["c"])
    dk = rng.standard_normal(case["k"] + (case["c"], dm))
    common = dict(strides=case["s"], padding=case["padding"], data_format=case["data_format"],
                  dilation_rate=case["d"], activation=case["activation"])
    bias_dw = [rng.standard_normal(case["c"] * dm)] if case["bias"] else []
    _finite_difference_check(lambda x, k, b=None: ops.depthwise_conv_core(x, k, b, **common), [x, dk] + bias_dw, rng)
    pk = rng.standard_normal((1,) * case["rank"] + (case["c"] * dm, case["f"]))
    bias_sep = [rng.standard_normal(case["f"])] if case["bias"] else []
    _finite_difference_check(lambda x, k, p, b=None: ops.separable_conv_core(x, k, p, b, **common),
                             [x, dk, pk] + bias_sep, rng)


@SETTINGS
@given(st.integers(1, 3), st.sampled_from(["max", "average"]), st.sampled_from(["valid", "same"]),
       st.sampled_from(["channels_last", "channels_first"]), st.integers(0, 2**31 - 1))
def test_pooling_finite_differences(rank, mode, padding, data_format, seed):
    rng = np.random.default_rng(seed)
    pool = tuple(int(v) for v in rng.integers(1, 4, rank))
    strides = tuple(int(v) for v in rng.integers(1, 4, rank))
    spatial = tuple(int(v) for v in rng.integers(3, 7 if rank < 3 else 5, rank))
    x = rng.standard_normal(g.make_shape(2, 2, spatial, data_format))  # continuous: no ties
    _finite_difference_check(lambda x: ops.pool_core(x, mode, pool, strides, padding, data_format), [x], rng)


@pytest.mark.parametrize("rank, interpolation", [(1, "nearest"), (2, "nearest"), (2, "bilinear"), (3, "nearest"),
                                                 (3, "trilinear")])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_upsampling_finite_differences(rank, interpolation, data_format):
    rng = np.random.default_rng(rank)
    size = tuple(int(v) for v in rng.integers(1, 4, rank))
    x = rng.standard_normal(g.make_shape(2, 2, (3,) * rank, data_format))
    _finite_difference_check(lambda x: ops.upsampling_core(x, size, interpolation, data_format), [x], rng)


@pytest.mark.parametrize("rank, padding", [(1, "valid"), (1, "same"), (2, "valid"), (2, "same")])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_locally_connected_finite_differences(rank, padding, data_format):
    rng = np.random.default_rng(rank)
    k, s = (3,) * rank, (2,) * rank
    spatial = (6,) * rank if rank == 1 else (5, 4)
    x = rng.standard_normal(g.make_shape(2, 2, spatial, data_format))
    out = tuple(g.locally_connected_output_length(L, kk, ss, padding) for L, kk, ss in zip(spatial, k, s))
    w = rng.standard_normal((int(np.prod(out)), int(np.prod(k)) * 2, 3))
    b = rng.standard_normal(out + (3,))

    def fn(x, w, b):
        return ops.locally_connected_core(x, w, b, kernel_size=k, strides=s, padding=padding, data_format=data_format,
                                          activation="tanh")

    _finite_difference_check(fn, [x, w, b], rng)


# ---------------------------------------------------------------------------------------------
# PyTorch autograd, float32
# ---------------------------------------------------------------------------------------------
def _rel_l2(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def _torch_conv(rank):
    return {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[rank]


def _torch_pads(spatial, k, s, d, padding):
    """F.pad's argument (last dim first) for Keras' padding, the odd cell after."""
    pairs = g.conv_padding(spatial, k, s, d, padding)
    return [v for pair in reversed(pairs) for v in pair]


@SETTINGS
@given(conv_cases(), st.integers(0, 2**31 - 1))
def test_conv_gradients_match_torch(case, seed):
    rng = np.random.default_rng(seed)
    rank = case["rank"]
    x = rng.standard_normal(g.make_shape(2, case["c"], case["spatial"], "channels_first")).astype(np.float32)
    w = rng.standard_normal(case["k"] + (case["c"] // case["groups"], case["f"])).astype(np.float32)
    b = rng.standard_normal(case["f"]).astype(np.float32)
    common = dict(strides=case["s"], padding=case["padding"], data_format="channels_first", dilation_rate=case["d"])
    y = ops.conv_core(x, w, b, **common)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    _, (gx, gw, gb) = _grads(lambda x, w, b: ops.conv_core(x, w, b, **common), [x, w, b], dy)

    tx = torch.tensor(x, requires_grad=True)
    # Keras (k.., C/g, F) -> torch (F, C/g, k..)
    tw = torch.tensor(np.moveaxis(w, (-1, -2), (0, 1)).copy(), requires_grad=True)
    tb = torch.tensor(b, requires_grad=True)
    padded = F.pad(tx, _torch_pads(case["spatial"], case["k"], case["s"], case["d"], case["padding"]))
    ty = _torch_conv(rank)(padded, tw, tb, stride=case["s"], dilation=case["d"], groups=case["groups"])
    ty.backward(torch.tensor(dy))
    assert _rel_l2(gx, tx.grad.numpy()) <= 1e-5
    assert _rel_l2(gw, np.moveaxis(tw.grad.numpy(), (0, 1), (-1, -2))) <= 1e-5
    _assert_float32_sum(gb, dy, axes=(0,) + tuple(range(2, dy.ndim)))
    _assert_float32_sum(tb.grad.numpy(), dy, axes=(0,) + tuple(range(2, dy.ndim)))


def _assert_float32_sum(got, terms, axes):
    """A bias gradient is a sum of ``dy`` per channel: with few channels and a cancelling sum, a
    relative error against another float32 sum measures only the two summation orders. So both
    libraries are held to the bound any float32 sum of n terms meets against the exact (float64)
    sum: n * eps32 * sum(|terms|) per channel."""
    n = np.prod([terms.shape[a] for a in axes])
    exact = terms.astype(np.float64).sum(axis=axes)
    bound = n * np.finfo(np.float32).eps * np.abs(terms.astype(np.float64)).sum(axis=axes)
    assert np.all(np.abs(got.astype(np.float64) - exact) <= bound), (got, exact, bound)


@SETTINGS
@given(st.integers(1, 2), st.integers(1, 3), st.integers(0, 2**31 - 1))
def test_depthwise_gradients_match_torch(rank, dm, seed):
    rng = np.random.default_rng(seed)
    c, k, spatial = 3, (3,) * rank, (6,) * rank
    x = rng.standard_normal(g.make_shape(2, c, spatial, "channels_first")).astype(np.float32)
    w = rng.standard_normal(k + (c, dm)).astype(np.float32)
    common = dict(strides=1, padding="same", data_format="channels_first")
    y = ops.depthwise_conv_core(x, w, **common)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    _, (gx, gw) = _grads(lambda x, w: ops.depthwise_conv_core(x, w, **common), [x, w], dy)
    tx = torch.tensor(x, requires_grad=True)
    # (k.., C, dm) -> torch (C*dm, 1, k..): output channel c*dm + m
    tw = torch.tensor(np.moveaxis(w.reshape(k + (1, c * dm)), (-1, -2), (0, 1)).copy(), requires_grad=True)
    ty = _torch_conv(rank)(F.pad(tx, _torch_pads(spatial, k, (1,) * rank, (1,) * rank, "same")), tw, groups=c)
    ty.backward(torch.tensor(dy))
    assert _rel_l2(gx, tx.grad.numpy()) <= 1e-5
    assert _rel_l2(gw, np.moveaxis(tw.grad.numpy(), (0, 1), (-1, -2)).reshape(w.shape)) <= 1e-5


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_max_pool_gradient_matches_torch_including_ties(rank):
    rng = np.random.default_rng(rank)
    x = rng.integers(0, 3, g.make_shape(2, 3, (6,) * rank, "channels_first")).astype(np.float32)  # many ties
    pool = (3,) * rank
    y = ops.pool_core(x, "max", pool, (2,) * rank, "valid", "channels_first")
    dy = rng.standard_normal(y.shape).astype(np.float32)
    _, (gx,) = _grads(lambda x: ops.pool_core(x, "max", pool, (2,) * rank, "valid", "channels_first"), [x], dy)
    tx = torch.tensor(x, requires_grad=True)
    {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[rank](tx, 3, 2).backward(torch.tensor(dy))
    np.testing.assert_allclose(gx, tx.grad.numpy(), rtol=1e-6, atol=1e-6)


def test_max_pool_nan_takes_the_gradient():
    x = np.array([[[1.0], [np.nan], [5.0], [np.nan]]])  # (1, 4, 1)
    _, (gx,) = _grads(lambda x: ops.max_pool(x, 4), [x], np.array([[[2.0]]]))
    np.testing.assert_array_equal(gx, [[[0.0], [2.0], [0.0], [0.0]]])  # the first NaN


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_average_pool_gradient_matches_torch(rank):
    rng = np.random.default_rng(rank)
    x = rng.standard_normal(g.make_shape(2, 3, (7,) * rank, "channels_first")).astype(np.float32)
    y = ops.pool_core(x, "average", (3,) * rank, (2,) * rank, "same", "channels_first")
    dy = rng.standard_normal(y.shape).astype(np.float32)
    _, (gx,) = _grads(lambda x: ops.pool_core(x, "average", (3,) * rank, (2,) * rank, "same", "channels_first"),
                      [x], dy)
    # Keras 'same' for 7 / s2 / p3: 1 cell each side; count_include_pad=False divides by real cells.
    tx = torch.tensor(x, requires_grad=True)
    {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[rank](tx, 3, 2, padding=1, count_include_pad=False).backward(
        torch.tensor(dy))
    assert _rel_l2(gx, tx.grad.numpy()) <= 1e-5


@pytest.mark.parametrize("mode, rank", [("nearest", 2), ("bilinear", 2), ("trilinear", 3), ("nearest", 3)])
def test_upsampling_gradient_matches_torch(mode, rank):
    rng = np.random.default_rng(7)
    x = rng.standard_normal(g.make_shape(2, 3, (4,) * rank, "channels_first")).astype(np.float32)
    size = (2, 3, 2)[:rank]
    y = ops.upsampling_core(x, size, mode, "channels_first")
    dy = rng.standard_normal(y.shape).astype(np.float32)
    _, (gx,) = _grads(lambda x: ops.upsampling_core(x, size, mode, "channels_first"), [x], dy)
    tx = torch.tensor(x, requires_grad=True)
    kwargs = {} if mode == "nearest" else {"align_corners": False}
    F.interpolate(tx, scale_factor=size, mode=mode, **kwargs).backward(torch.tensor(dy))
    assert _rel_l2(gx, tx.grad.numpy()) <= 1e-5


# ---------------------------------------------------------------------------------------------
# Identities
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("strides, padding", [(1, "same"), (2, "same"), (2, "valid"), (3, "valid")])
def test_input_gradient_of_conv_is_conv_transpose_of_output_gradient(strides, padding):
    rng = np.random.default_rng(strides)
    x = rng.standard_normal((2, 9, 8, 3))
    w = rng.standard_normal((3, 3, 3, 4))
    y = ops.conv(x, w, strides=strides, padding=padding)
    dy = rng.standard_normal(y.shape)
    _, (gx, _) = _grads(lambda x, w: ops.conv(x, w, strides=strides, padding=padding), [x, w], dy)
    # The transposed conv of the same geometry, sized back to the input: Keras' length with
    # output_padding p is (L_y - 1)*s + (k % 2 for 'same', k for 'valid') + p.
    reach = 3 % 2 if padding == "same" else 3
    output_padding = tuple(L - ((Ly - 1) * strides + reach) for L, Ly in zip(x.shape[1:3], y.shape[1:3]))
    want = ops.conv_transpose(dy, w, strides=strides, padding=padding, output_padding=output_padding)
    np.testing.assert_allclose(gx, want, rtol=1e-12, atol=1e-12)


def test_directional_derivative_of_a_conv_stack():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 8, 8, 3))
    w1, w2 = rng.standard_normal((3, 3, 3, 4)), rng.standard_normal((2, 2, 2, 4))  # w2: (k, F, C_in)

    def loss(x, w1, w2):
        h = ops.conv_core(x, w1, padding="same", activation="tanh")
        return ops.pool_core(ops.conv_transpose_core(h, w2, strides=2), "average", 2)

    y = loss(x, w1, w2)
    dy = rng.standard_normal(y.shape)
    _, grads = _grads(loss, [x, w1, w2], dy)
    v = [rng.standard_normal(a.shape) for a in (x, w1, w2)]
    eps = 1e-6
    plus = np.sum(loss(*[a + eps * d for a, d in zip((x, w1, w2), v)]) * dy)
    minus = np.sum(loss(*[a - eps * d for a, d in zip((x, w1, w2), v)]) * dy)
    assert sum(float(np.vdot(gr, d)) for gr, d in zip(grads, v)) == pytest.approx((plus - minus) / (2 * eps),
                                                                                    rel=1e-7)


# ---------------------------------------------------------------------------------------------
# Determinism, float16, memory
# ---------------------------------------------------------------------------------------------
def test_gradients_are_bitwise_deterministic():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 12, 12, 8)).astype(np.float32)
    w = rng.standard_normal((3, 3, 8, 16)).astype(np.float32)
    dy = rng.standard_normal((4, 6, 6, 16)).astype(np.float32)
    runs = [_grads(lambda x, w: ops.conv(x, w, strides=2, padding="same"), [x, w], dy)[1] for _ in range(3)]
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            assert np.array_equal(a, b)


def test_float16_gradients_accumulate_in_float32():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 10, 10, 8)).astype(np.float16)
    w = rng.standard_normal((3, 3, 8, 4)).astype(np.float16)
    y = ops.conv(x, w, padding="same")
    dy = rng.standard_normal(y.shape).astype(np.float16)
    _, (gx, gw) = _grads(lambda x, w: ops.conv(x, w, padding="same"), [x, w], dy)
    assert gx.dtype == gw.dtype == np.float16
    _, (rx, rw) = _grads(lambda x, w: ops.conv(x, w, padding="same"),
                         [x.astype(np.float64), w.astype(np.float64)], dy.astype(np.float64))
    assert _rel_l2(gx, rx) <= 2e-3 and _rel_l2(gw, rw) <= 2e-3


def test_a_non_persistent_tape_releases_what_it_kept_after_gradient():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 6, 6, 3))
    w = rng.standard_normal((3, 3, 3, 4))
    kept = weakref.ref(x)
    with gpuconv.GradientTape() as tape:
        tape.watch(w)
        y = ops.conv_core(x, w, padding="same", activation="tanh")
    grad = tape.gradient(y, w)
    assert grad.shape == w.shape
    del x, y
    gc.collect()
    assert kept() is None  # the conv's backward kept the input; the tape let it go with its records


# ---------------------------------------------------------------------------------------------
# PyTorch autograd for the remaining ops: transposed, separable, locally connected
# ---------------------------------------------------------------------------------------------
def _torch_crop(full, out_spatial, crop):
    """Keras' transposed output from torch's full scatter: ``y[o] = full[o + crop]``, zeros past
    the end (output_padding can ask for cells no tap reaches)."""
    rank = len(out_spatial)
    need = [max(0, c + o - L) for c, o, L in zip(crop, out_spatial, full.shape[2:])]
    if any(need):
        full = F.pad(full, [v for n in reversed(need) for v in (0, n)])
    index = (slice(None), slice(None)) + tuple(slice(c, c + o) for c, o in zip(crop, out_spatial))
    return full[index] if rank else full


@SETTINGS
@given(conv_cases(), st.integers(0, 2**31 - 1), st.booleans())
def test_conv_transpose_gradients_match_torch(case, seed, with_output_padding):
    rng = np.random.default_rng(seed)
    rank, groups = case["rank"], case["groups"]
    padding = "same" if case["padding"] == "causal" else case["padding"]
    output_padding = None
    if with_output_padding:
        output_padding = tuple(int(rng.integers(0, s)) if s > 1 else 0 for s in case["s"])
    x = rng.standard_normal(g.make_shape(2, case["c"], case["spatial"], "channels_first")).astype(np.float32)
    w = rng.standard_normal(case["k"] + (case["f"] // groups, case["c"])).astype(np.float32)
    b = rng.standard_normal(case["f"]).astype(np.float32)
    common = dict(strides=case["s"], padding=padding, output_padding=output_padding, data_format="channels_first",
                  dilation_rate=case["d"], groups=groups)
    y = ops.conv_transpose_core(x, w, b, **common)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    _, (gx, gw, gb) = _grads(lambda x, w, b: ops.conv_transpose_core(x, w, b, **common), [x, w, b], dy)
    out, crop = g.conv_transpose_geometry(case["spatial"], case["k"], case["s"], case["d"], padding, output_padding)

    tx = torch.tensor(x, requires_grad=True)
    # Keras (k.., F/g, C) -> torch (C, F/g, k..)
    tw = torch.tensor(np.moveaxis(w, (-1, -2), (0, 1)).copy(), requires_grad=True)
    tb = torch.tensor(b, requires_grad=True)
    transpose = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[rank]
    full = transpose(tx, tw, stride=case["s"], dilation=case["d"], groups=groups)
    ty = _torch_crop(full, out, crop) + tb.reshape((1, -1) + (1,) * rank)
    ty.backward(torch.tensor(dy))
    assert _rel_l2(gx, tx.grad.numpy()) <= 1e-5
    assert _rel_l2(gw, np.moveaxis(tw.grad.numpy(), (0, 1), (-1, -2))) <= 1e-5
    _assert_float32_sum(gb, dy, axes=(0,) + tuple(range(2, dy.ndim)))
    _assert_float32_sum(tb.grad.numpy(), dy, axes=(0,) + tuple(range(2, dy.ndim)))


@SETTINGS
@given(st.integers(1, 2), st.integers(1, 2), st.sampled_from([1, 2]), st.integers(0, 2**31 - 1))
def test_separable_gradients_match_torch(rank, dm, stride, seed):
    rng = np.random.default_rng(seed)
    c, f, k, spatial = 3, 4, (3,) * rank, (7,) * rank
    x = rng.standard_normal(g.make_shape(2, c, spatial, "channels_first")).astype(np.float32)
    dk = rng.standard_normal(k + (c, dm)).astype(np.float32)
    pk = rng.standard_normal((1,) * rank + (c * dm, f)).astype(np.float32)
    b = rng.standard_normal(f).astype(np.float32)
    common = dict(strides=stride, padding="same", data_format="channels_first")
    y = ops.separable_conv_core(x, dk, pk, b, **common)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    _, (gx, gdk, gpk, gb) = _grads(lambda x, dk, pk, b: ops.separable_conv_core(x, dk, pk, b, **common),
                                   [x, dk, pk, b], dy)
    tx = torch.tensor(x, requires_grad=True)
    tdk = torch.tensor(np.moveaxis(dk.reshape(k + (1, c * dm)), (-1, -2), (0, 1)).copy(), requires_grad=True)
    tpk = torch.tensor(np.moveaxis(pk, (-1, -2), (0, 1)).copy(), requires_grad=True)
    tb = torch.tensor(b, requires_grad=True)
    conv = _torch_conv(rank)
    pads = _torch_pads(spatial, k, (stride,) * rank, (1,) * rank, "same")
    ty = conv(conv(F.pad(tx, pads), tdk, stride=stride, groups=c), tpk, tb)
    ty.backward(torch.tensor(dy))
    assert _rel_l2(gx, tx.grad.numpy()) <= 1e-5
    assert _rel_l2(gdk, np.moveaxis(tdk.grad.numpy(), (0, 1), (-1, -2)).reshape(dk.shape)) <= 1e-5
    assert _rel_l2(gpk, np.moveaxis(tpk.grad.numpy(), (0, 1), (-1, -2))) <= 1e-5
    _assert_float32_sum(gb, dy, axes=(0,) + tuple(range(2, dy.ndim)))
    _assert_float32_sum(tb.grad.numpy(), dy, axes=(0,) + tuple(range(2, dy.ndim)))


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_locally_connected_gradients_match_torch(padding, data_format):
    """A 2-D locally connected op written position by position in torch (autograd through it)."""
    rng = np.random.default_rng(11)
    c, f, k, s, spatial = 3, 2, (3, 2), (2, 1), (6, 5)
    x = rng.standard_normal(g.make_shape(2, c, spatial, data_format)).astype(np.float32)
    out = tuple(g.locally_connected_output_length(L, kk, ss, padding) for L, kk, ss in zip(spatial, k, s))
    w = rng.standard_normal((out[0] * out[1], k[0] * k[1] * c, f)).astype(np.float32)
    b = rng.standard_normal(out + (f,)).astype(np.float32)
    common = dict(kernel_size=k, strides=s, padding=padding, data_format=data_format)
    y = ops.locally_connected_core(x, w, b, **common)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    _, (gx, gw, gb) = _grads(lambda x, w, b: ops.locally_connected_core(x, w, b, **common), [x, w, b], dy)

    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    xl = tx if data_format == "channels_last" else tx.permute(0, 2, 3, 1)  # (N, H, W, C)
    pads = [g.locally_connected_padding_pair(L, kk, ss, padding) for L, kk, ss in zip(spatial, k, s)]
    xl = F.pad(xl, (0, 0, *pads[1], *pads[0]))
    rows = []
    for i in range(out[0]):
        cols = []
        for j in range(out[1]):
            patch = xl[:, i * s[0]:i * s[0] + k[0], j * s[1]:j * s[1] + k[1], :]  # (N, k0, k1, C)
            if data_format == "channels_first":
                patch = patch.permute(0, 3, 1, 2)  # the kernel's rows are (C, *k) for channels_first
            cols.append(patch.reshape(2, -1) @ tw[i * out[1] + j] + tb[i, j])
        rows.append(torch.stack(cols, 1))
    ty = torch.stack(rows, 1)  # (N, o0, o1, F)
    if data_format == "channels_first":
        ty = ty.permute(0, 3, 1, 2)
    ty.backward(torch.tensor(dy))
    for got, want in ((gx, tx), (gw, tw), (gb, tb)):
        assert _rel_l2(got, want.grad.numpy()) <= 1e-5
