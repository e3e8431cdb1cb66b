"""Hypothesis property tests: random configurations (rank, sizes, strides, dilation, padding, groups,
depth multiplier, output padding, data format) against the loop reference. Configurations Keras
rejects must raise ValueError with a message naming the argument: never crash with another
exception, never return a result.

Derandomized (a fixed example sequence per test) so CI is reproducible; raise max_examples locally
(``HYPOTHESIS_MAX_EXAMPLES=500``) to explore more.
"""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gpuconv
from gpuconv import ops

import reference as ref
from conftest import assert_close

CL, CF = "channels_last", "channels_first"
MAX_EXAMPLES = int(os.environ.get("HYPOTHESIS_MAX_EXAMPLES", "100"))
SETTINGS = settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
# Spatial sizes stay small for the loop reference: the cap shrinks with the rank.
MAX_LENGTH = {1: 9, 2: 6, 3: 4}


def per_dim(draw, rank, strategy):
    return tuple(draw(strategy) for _ in range(rank))


def make_input(seed, n, spatial, channels, data_format):
    shape = (n, *spatial, channels) if data_format == CL else (n, channels, *spatial)
    return np.random.default_rng(seed).standard_normal(shape)


def weights(seed, shape):
    return np.random.default_rng(seed + 1).standard_normal(shape)


@st.composite
def geometry(draw, allow_causal=False):
    """rank, data format, batch, spatial sizes, kernel, strides, dilation, padding (possibly too
    small an input for 'valid': then the op must refuse)."""
    rank = draw(st.integers(1, 3))
    paddings = ["valid", "same"] + (["causal"] if allow_causal and rank == 1 else [])
    return dict(
        rank=rank,
        data_format=draw(st.sampled_from([CL, CF])),
        n=draw(st.integers(1, 2)),
        spatial=per_dim(draw, rank, st.integers(1, MAX_LENGTH[rank])),
        kernel=per_dim(draw, rank, st.integers(1, 4 if rank < 3 else 3)),
        strides=per_dim(draw, rank, st.integers(1, 3)),
        dilation=per_dim(draw, rank, st.integers(1, 3)),
        padding=draw(st.sampled_from(paddings)),
        seed=draw(st.integers(0, 2**16)),
    )


def forward_fits(g):
    return all(ref.forward_geometry(L, k, s, d, g["padding"])[0] > 0
               for L, k, s, d in zip(g["spatial"], g["kernel"], g["strides"], g["dilation"]))


def check_forward(g, call, reference_call):
    """Valid geometry: matches the reference. Empty output per Keras: ValueError naming the size."""
    if forward_fits(g):
        assert_close(call(), reference_call(), "float64")
    else:
        with pytest.raises(ValueError, match="Computed output size would be zero or negative"):
            call()


@SETTINGS
@given(g=geometry(allow_causal=True), groups=st.integers(1, 3), cg=st.integers(1, 2), fg=st.integers(1, 2),
       bias=st.booleans())
def test_conv_property(backend_name, g, groups, cg, fg, bias):
    x = make_input(g["seed"], g["n"], g["spatial"], cg * groups, g["data_format"])
    w = weights(g["seed"], (*g["kernel"], cg, fg * groups))
    b = weights(g["seed"] + 7, (fg * groups,)) if bias else None
    kwargs = dict(strides=g["strides"], padding=g["padding"], data_format=g["data_format"],
                  dilation_rate=g["dilation"])
    check_forward(g, lambda: ops.conv_core(x, w, b, **kwargs), lambda: ref.conv(x, w, b, **kwargs))


@SETTINGS
@given(g=geometry(allow_causal=True), channels=st.integers(1, 3), dm=st.integers(1, 3))
def test_depthwise_conv_property(backend_name, g, channels, dm):
    x = make_input(g["seed"], g["n"], g["spatial"], channels, g["data_format"])
    w = weights(g["seed"], (*g["kernel"], channels, dm))
    kwargs = dict(strides=g["strides"], padding=g["padding"], data_format=g["data_format"],
                  dilation_rate=g["dilation"])
    check_forward(g, lambda: ops.depthwise_conv_core(x, w, **kwargs), lambda: ref.depthwise_conv(x, w, **kwargs))


@SETTINGS
@given(g=geometry(), channels=st.integers(1, 3), dm=st.integers(1, 2), filters=st.integers(1, 3))
def test_separable_conv_property(backend_name, g, channels, dm, filters):
    x = make_input(g["seed"], g["n"], g["spatial"], channels, g["data_format"])
    dk = weights(g["seed"], (*g["kernel"], channels, dm))
    pk = weights(g["seed"] + 3, (1,) * g["rank"] + (channels * dm, filters))
    kwargs = dict(strides=g["strides"], padding=g["padding"], data_format=g["data_format"],
                  dilation_rate=g["dilation"])
    check_forward(g, lambda: ops.separable_conv(x, dk, pk, **kwargs), lambda: ref.separable_conv(x, dk, pk, **kwargs))


@SETTINGS
@given(g=geometry(), groups=st.integers(1, 2), cg=st.integers(1, 2), fg=st.integers(1, 2), data=st.data())
def test_conv_transpose_property(backend_name, g, groups, cg, fg, data):
    spatial = tuple(min(L, 4) for L in g["spatial"])
    output_padding = data.draw(st.one_of(
        st.none(), st.tuples(*[st.integers(0, s - 1) for s in g["strides"]])), label="output_padding")
    x = make_input(g["seed"], g["n"], spatial, cg * groups, g["data_format"])
    w = weights(g["seed"], (*g["kernel"], fg, cg * groups))
    kwargs = dict(strides=g["strides"], padding=g["padding"], output_padding=output_padding,
                  data_format=g["data_format"], dilation_rate=g["dilation"])
    # Keras has no zero-size check for transposed convs (spec 2.2); since issue 8 an output of
    # length 0 is refused, as conv and pooling refuse theirs.
    expected = ref.conv_transpose(x, w, groups=groups, **kwargs)
    if expected.size == 0:
        with pytest.raises(ValueError, match="Computed output size would be zero or negative"):
            ops.conv_transpose_core(x, w, groups=groups, **kwargs)
        return
    assert_close(ops.conv_transpose_core(x, w, groups=groups, **kwargs), expected, "float64")


@SETTINGS
@given(g=geometry(), mode=st.sampled_from(["max", "average"]), same_strides=st.booleans())
def test_pool_property(backend_name, g, mode, same_strides):
    x = make_input(g["seed"], g["n"], g["spatial"], 2, g["data_format"])
    strides = None if same_strides else g["strides"]
    kwargs = dict(pool_size=g["kernel"], strides=strides, padding=g["padding"], data_format=g["data_format"])
    fits = all(ref.pool_geometry(L, p, s, g["padding"])[0] > 0
               for L, p, s in zip(g["spatial"], g["kernel"], strides or g["kernel"]))
    if fits:
        assert_close(ops.pool_core(x, mode, **kwargs), ref.pool(x, mode, **kwargs), "float64")
    else:
        with pytest.raises(ValueError, match="Computed output size would be zero or negative"):
            ops.pool_core(x, mode, **kwargs)


@SETTINGS
@given(g=geometry(), filters=st.integers(1, 3), bias=st.booleans())
def test_locally_connected_property(backend_name, g, filters, bias):
    channels = 2
    out = [ref.locally_connected_geometry(L, k, s, g["padding"])[0]
           for L, k, s in zip(g["spatial"], g["kernel"], g["strides"])]
    x = make_input(g["seed"], g["n"], g["spatial"], channels, g["data_format"])
    kwargs = dict(kernel_size=g["kernel"], strides=g["strides"], padding=g["padding"], data_format=g["data_format"])
    if min(out) <= 0:
        with pytest.raises(ValueError):
            ops.locally_connected_core(x, weights(g["seed"], (1, int(np.prod(g["kernel"])) * channels, filters)),
                                       **kwargs)
        return
    w = weights(g["seed"], (int(np.prod(out)), int(np.prod(g["kernel"])) * channels, filters))
    b = weights(g["seed"] + 5, (*out, filters)) if bias else None
    assert_close(ops.locally_connected_core(x, w, b, **kwargs), ref.locally_connected(x, w, b, **kwargs), "float64")


@SETTINGS
@given(g=geometry(), linear=st.booleans())
def test_upsampling_property(backend_name, g, linear):
    interpolation = {1: "nearest", 2: "bilinear", 3: "trilinear"}[g["rank"]] if linear else "nearest"
    spatial = tuple(min(L, 4) for L in g["spatial"])
    x = make_input(g["seed"], g["n"], spatial, 2, g["data_format"])
    size = g["strides"]
    assert_close(ops.upsampling_core(x, size, interpolation, g["data_format"]),
                 ref.upsample(x, size, interpolation, g["data_format"]), "float64")


# --------------------------------------------------------------------------------------------
# Configurations Keras rejects: ValueError naming the argument, never another exception
# --------------------------------------------------------------------------------------------
BAD_STRINGS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=0, max_size=10)


@st.composite
def rejected_call(draw):
    """(description, argument name, zero-argument call) for one corrupted, otherwise valid call."""
    rank = draw(st.integers(1, 3))
    data_format = draw(st.sampled_from([CL, CF]))
    spatial = (5,) * rank
    x = make_input(0, 1, spatial, 4, data_format)
    w = weights(0, (2,) * rank + (2, 4))  # groups = 2
    wt = weights(0, (2,) * rank + (3, 4))  # transpose kernel (k.., F, C_in)
    ok = (1,) * rank
    kind = draw(st.sampled_from(["strides", "dilation_rate", "padding", "causal", "data_format", "output_padding",
                                 "channels", "tuple_length", "groups", "pool_size", "pool_padding", "kernel_size"]))
    if kind == "strides":
        bad = draw(st.integers(-3, 0))
        return kind, "strides", lambda: ops.conv(x, w, strides=ok[:-1] + (bad,), data_format=data_format)
    if kind == "dilation_rate":
        bad = draw(st.integers(-3, 0))
        return kind, "dilation_rate", lambda: ops.depthwise_conv(
            x, weights(0, (2,) * rank + (4, 1)), dilation_rate=(bad,) + ok[1:], data_format=data_format)
    if kind == "padding":
        bad = draw(BAD_STRINGS.filter(lambda s: s not in ("valid", "same", "causal")))
        return kind, "padding", lambda: ops.conv(x, w, padding=bad, data_format=data_format)
    if kind == "causal":  # causal exists only for 1-D conv-family cores, never for the public ops
        if rank == 1:
            return kind, "padding", lambda: ops.conv_transpose(x, wt, padding="causal", data_format=data_format)
        return kind, "padding", lambda: ops.conv_core(x, w, padding="causal", data_format=data_format)
    if kind == "data_format":
        bad = draw(BAD_STRINGS.filter(lambda s: s not in ("channels_first", "channels_last")))
        return kind, "data_format", lambda: ops.max_pool(x, 2, data_format=bad)
    if kind == "output_padding":
        s = draw(st.integers(1, 3))
        bad = draw(st.integers(s, s + 2))
        return kind, "output_padding", lambda: ops.conv_transpose(x, wt, strides=s, output_padding=bad,
                                                                  data_format=data_format)
    if kind == "channels":
        extra = draw(st.sampled_from([1, 2, 3]))
        return kind, "channels", lambda: ops.conv(x, weights(0, (2,) * rank + (4 + extra, 4)), data_format=data_format)
    if kind == "tuple_length":
        return kind, "kernel_size|strides", lambda: ops.conv(x, w, strides=(1,) * (rank + 1), data_format=data_format)
    if kind == "groups":
        groups = draw(st.sampled_from([3, 5, 0, -1]))
        return kind, "groups", lambda: ops.conv_transpose_core(x, wt, groups=groups, data_format=data_format)
    if kind == "pool_size":
        bad = draw(st.integers(-2, 0))
        return kind, "pool_size", lambda: ops.average_pool(x, (bad,) + (2,) * (rank - 1), data_format=data_format)
    if kind == "pool_padding":
        bad = draw(BAD_STRINGS.filter(lambda s: s not in ("valid", "same")))
        return kind, "padding", lambda: ops.max_pool(x, 2, padding=bad, data_format=data_format)
    # kernel larger than the input for 'valid'
    k = draw(st.integers(6, 8))
    return kind, "output size", lambda: ops.conv(x, weights(0, (k,) * rank + (4, 2)), data_format=data_format)


@SETTINGS
@given(case=rejected_call())
def test_rejected_configurations_raise_value_error_naming_the_argument(backend_name, case):
    kind, name, call = case
    with pytest.raises(ValueError, match=name):
        call()


def test_outputs_are_host_convertible(backend_name):
    """The property tests compare through gpuconv.to_numpy; make sure that works for every result type."""
    y = ops.conv(np.ones((1, 4, 1)), np.ones((2, 1, 1)))
    np.testing.assert_array_equal(gpuconv.to_numpy(y), np.full((1, 3, 1), 2.0))
