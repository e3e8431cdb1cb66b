"""Issue 8, section 6: a property-based fuzz of every op family, and of invalid arguments.

Builds on tests/test_ops_properties.py (its geometry strategy and helpers), which checks plain
float64 configurations. Here each example also draws what the tester varied by hand: the dtype
(float16/32/64, against the float64 reference on the same rounded values), the memory layout of
every argument (C order, Fortran order, negative strides, zero strides), a bias and an
activation, a planted NaN or Inf, a long kernel, window, stride or dilation that reaches far
beyond the input (so taps that read only padding are left out, and must not change the result),
and the engine's workspace budget and thread count (so the output is cut into pieces of every
size). Every result must equal tests/reference.py; every configuration whose output would be
empty must raise Keras' "Computed output size would be zero or negative".

The second half corrupts one argument of a valid call with random garbage (zero, negative and
huge sizes, non-integral floats, NaN, strings, None, bools, wrong-length and nested tuples,
complex and integer arrays, wrong ranks and shapes, mixed dtypes): the call must raise ValueError
or TypeError and nothing else (no OverflowError, IndexError, ZeroDivisionError, NumPy's
"array is too big", MemoryError from the allocator, ...).

3,600 examples per run (2,400 + 1,200), derandomized so CI is reproducible; about 20 s on the
2-core CI machine. ``GPUCONV_FUZZ_SCALE=10`` runs ten times as many.
"""
import contextlib
import math
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gpuconv
from gpuconv import ops
from gpuconv.cpu import _parallel, memory

import reference as ref
from conftest import assert_close
from test_ops_properties import CL, MAX_LENGTH, per_dim

SCALE = float(os.environ.get("GPUCONV_FUZZ_SCALE", "1"))
FAMILIES = ("conv", "conv_transpose", "depthwise", "separable", "max_pool", "average_pool", "locally_connected",
            "upsampling")
ZERO_TEXT = "Computed output size would be zero or negative"


def fuzz_settings(examples):
    return settings(max_examples=max(1, int(examples * SCALE)), deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                           HealthCheck.function_scoped_fixture])


@pytest.fixture(autouse=True)
def numpy_engine(restore_backend):
    gpuconv.set_backend("numpy")


@contextlib.contextmanager
def engine_settings(budget, threads):
    """The workspace budget and thread count for one example (module globals, restored after)."""
    saved = (memory.MEMORY_BUDGET_BYTES, _parallel.NUM_THREADS, _parallel.MIN_PARALLEL_BYTES,
             memory.GATHER_PARALLEL_BYTES)
    memory.MEMORY_BUDGET_BYTES = budget
    if threads is not None:  # split work into pieces however small it is
        _parallel.NUM_THREADS, _parallel.MIN_PARALLEL_BYTES, memory.GATHER_PARALLEL_BYTES = threads, 0, 0
    try:
        yield
    finally:
        (memory.MEMORY_BUDGET_BYTES, _parallel.NUM_THREADS, _parallel.MIN_PARALLEL_BYTES,
         memory.GATHER_PARALLEL_BYTES) = saved


# --------------------------------------------------------------------------------------------
# Valid configurations against the float64 reference
# --------------------------------------------------------------------------------------------
def layout(a, kind):
    """The same values in another memory layout."""
    if kind == "fortran":
        return np.asfortranarray(a)
    if kind == "negative":
        flip = (slice(None, None, -1),) * a.ndim
        return np.ascontiguousarray(a[flip])[flip]
    if kind == "zero_strides" and a.shape[0] > 1:
        return np.broadcast_to(a[:1], a.shape)
    return a


@st.composite
def example(draw):
    """One op call: family, geometry (sometimes far beyond the input), dtype, layout, extras."""
    family = draw(st.sampled_from(FAMILIES))
    rank = draw(st.integers(1, 3))
    long_reach = draw(st.integers(0, 3)) == 0  # a quarter of the examples reach far
    small = st.integers(1, 3)
    cfg = dict(
        family=family, rank=rank,
        data_format=draw(st.sampled_from(["channels_last", "channels_first"])),
        n=draw(st.integers(1, 3)),
        spatial=per_dim(draw, rank, st.integers(1, MAX_LENGTH[rank])),
        kernel=per_dim(draw, rank, st.integers(1, 12 if long_reach and rank == 1 else 4 if rank < 3 else 3)),
        strides=per_dim(draw, rank, st.integers(1, 9) if long_reach else small),
        dilation=per_dim(draw, rank, st.integers(1, 25) if long_reach else small),
        padding=draw(st.sampled_from(["valid", "same"] + (["causal"] if rank == 1 and family in (
            "conv", "depthwise") else []))),
        dtype=draw(st.sampled_from(["float64", "float32", "float16"])),
        layout=draw(st.sampled_from(["C", "C", "fortran", "negative", "zero_strides"])),
        bias=draw(st.booleans()),
        activation=draw(st.sampled_from([None, "relu", "sigmoid", "tanh", "elu"])),
        plant=draw(st.sampled_from([None, None, np.nan, np.inf, -np.inf])),
        plant_in_weights=draw(st.booleans()),
        budget=draw(st.sampled_from([None, None, 1, 700, 20000])),
        threads=draw(st.sampled_from([None, 1, 3])),
        seed=draw(st.integers(0, 2**16)),
        groups=draw(small), c_group=draw(st.integers(1, 2)), f_group=draw(st.integers(1, 2)),
        dm=draw(st.integers(1, 2)), filters=draw(small),
        mode_same_strides=draw(st.booleans()),
        linear=draw(st.booleans()),
    )
    if family == "conv_transpose":
        cfg["spatial"] = tuple(min(L, 4) for L in cfg["spatial"])
        cfg["output_padding"] = draw(st.one_of(st.none(), st.tuples(*[st.integers(0, s - 1) for s in cfg["strides"]])))
    if family in ("max_pool", "average_pool") and long_reach:
        cfg["kernel"] = per_dim(draw, rank, st.integers(1, 40))  # pooling windows far past the input
    if family == "upsampling":
        cfg["spatial"] = tuple(min(L, 4) for L in cfg["spatial"])
        cfg["strides"] = per_dim(draw, rank, small)
    return cfg


def arrays_for(cfg, rng):
    """The named operands of one example (float64, rounded to the example's dtype)."""
    rank, df = cfg["rank"], cfg["data_format"]
    fam = cfg["family"]
    channels = {"conv": cfg["c_group"] * cfg["groups"], "conv_transpose": cfg["c_group"] * cfg["groups"]}.get(fam, 2)
    shape = (cfg["n"], *cfg["spatial"], channels) if df == CL else (cfg["n"], channels, *cfg["spatial"])
    out = {"x": rng.standard_normal(shape)}
    k = tuple(cfg["kernel"])
    if fam == "conv":
        out["kernel"] = rng.standard_normal(k + (cfg["c_group"], cfg["f_group"] * cfg["groups"]))
    elif fam == "conv_transpose":
        out["kernel"] = rng.standard_normal(k + (cfg["f_group"], channels))
    elif fam in ("depthwise", "separable"):
        out["kernel"] = rng.standard_normal(k + (channels, cfg["dm"]))
        if fam == "separable":
            out["pointwise"] = rng.standard_normal((1,) * rank + (channels * cfg["dm"], cfg["filters"]))
    elif fam == "locally_connected":
        positions = [ref.locally_connected_geometry(L, kk, s, cfg["padding"])[0]
                     for L, kk, s in zip(cfg["spatial"], k, cfg["strides"])]
        out["kernel"] = rng.standard_normal((max(1, math.prod(positions)), math.prod(k) * channels, cfg["filters"]))
    filters = {"conv": cfg["f_group"] * cfg["groups"], "conv_transpose": cfg["f_group"] * cfg["groups"],
               "depthwise": channels * cfg["dm"], "separable": cfg["filters"]}.get(fam)
    if cfg["bias"] and filters is not None:
        out["bias"] = rng.standard_normal(filters)
    if cfg["plant"] is not None:
        target = out["kernel"] if cfg["plant_in_weights"] and "kernel" in out else out["x"]
        target[tuple(rng.integers(0, n) for n in target.shape)] = cfg["plant"]
    if cfg["layout"] == "zero_strides":  # values constant along axis 0, so a broadcast view holds them
        out = {name: np.broadcast_to(a[:1], a.shape).copy() for name, a in out.items()}
    return {name: a.astype(cfg["dtype"]).astype(np.float64) for name, a in out.items()}


def calls_for(cfg, a):
    """(gpuconv call, float64 reference call, whether the output is empty per Keras' rule)."""
    fam, df, pad = cfg["family"], cfg["data_format"], cfg["padding"]
    s, d, k = cfg["strides"], cfg["dilation"], cfg["kernel"]
    act = cfg["activation"]
    conv_kw = dict(strides=s, padding=pad, data_format=df, dilation_rate=d)
    dt = cfg["dtype"]

    def cast(*names):
        return [None if a.get(n) is None else layout(a[n].astype(dt), cfg["layout"]) for n in names]

    def forward_empty():
        return any(ref.forward_geometry(L, kk, ss, dd, pad)[0] <= 0 for L, kk, ss, dd in zip(cfg["spatial"], k, s, d))

    if fam == "conv":
        x, w, b = cast("x", "kernel", "bias")
        return (lambda: ops.conv_core(x, w, b, activation=act, **conv_kw),
                lambda: ref.activate(ref.conv(a["x"], a["kernel"], a.get("bias"), **conv_kw), act), forward_empty())
    if fam == "conv_transpose":
        x, w, b = cast("x", "kernel", "bias")
        kw = dict(conv_kw, output_padding=cfg["output_padding"], groups=cfg["groups"])
        expected = ref.conv_transpose(a["x"], a["kernel"], a.get("bias"), **kw)
        return (lambda: ops.conv_transpose_core(x, w, b, activation=act, **kw),
                lambda: ref.activate(expected, act), expected.size == 0)
    if fam == "depthwise":
        x, w, b = cast("x", "kernel", "bias")
        return (lambda: ops.depthwise_conv_core(x, w, b, activation=act, **conv_kw),
                lambda: ref.activate(ref.depthwise_conv(a["x"], a["kernel"], a.get("bias"), **conv_kw), act),
                forward_empty())
    if fam == "separable":
        x, w, p, b = cast("x", "kernel", "pointwise", "bias")
        return (lambda: ops.separable_conv_core(x, w, p, b, activation=act, **conv_kw),
                lambda: ref.activate(ref.separable_conv(a["x"], a["kernel"], a["pointwise"], a.get("bias"), **conv_kw),
                                     act), forward_empty())
    if fam in ("max_pool", "average_pool"):
        (x,) = cast("x")
        mode = "max" if fam == "max_pool" else "average"
        strides = None if cfg["mode_same_strides"] else s
        kw = dict(pool_size=k, strides=strides, padding=pad, data_format=df)
        empty = any(ref.pool_geometry(L, p, ss, pad)[0] <= 0 for L, p, ss in zip(cfg["spatial"], k, strides or k))
        return lambda: ops.pool_core(x, mode, **kw), lambda: ref.pool(a["x"], mode, **kw), empty
    if fam == "locally_connected":
        x, w = cast("x", "kernel")
        out = [ref.locally_connected_geometry(L, kk, ss, pad)[0] for L, kk, ss in zip(cfg["spatial"], k, s)]
        b = None
        if cfg["bias"] and min(out) > 0:
            b = np.random.default_rng(cfg["seed"] + 9).standard_normal((*out, cfg["filters"])).astype(dt)
        kw = dict(kernel_size=k, strides=s, padding=pad, data_format=df)
        return (lambda: ops.locally_connected_core(x, w, b, activation=act, **kw),
                lambda: ref.activate(ref.locally_connected(a["x"], a["kernel"], None if b is None else b.astype(
                    np.float64), **kw), act), min(out) <= 0)
    (x,) = cast("x")
    interpolation = {1: "nearest", 2: "bilinear", 3: "trilinear"}[cfg["rank"]] if cfg["linear"] else "nearest"
    return (lambda: ops.upsampling_core(x, s, interpolation, df), lambda: ref.upsample(a["x"], s, interpolation, df),
            False)


@fuzz_settings(2400)
@given(cfg=example())
def test_fuzz_every_op_family_against_the_reference(cfg):
    call, reference_call, empty = calls_for(cfg, arrays_for(cfg, np.random.default_rng(cfg["seed"])))
    with engine_settings(cfg["budget"], cfg["threads"]):
        if empty:
            with pytest.raises(ValueError, match=ZERO_TEXT):
                call()
            return
        y = call()
    assert y.dtype == cfg["dtype"] and y.flags.c_contiguous
    assert_close(y, reference_call(), cfg["dtype"])


# --------------------------------------------------------------------------------------------
# Invalid arguments: ValueError or TypeError, never anything else
# --------------------------------------------------------------------------------------------
HUGE = st.sampled_from([2**31, 2**31 + 1, 2**40, 2**59, 2**63, 2**64 + 3, 10**30, 2**200])
NOT_A_SIZE = st.one_of(
    st.integers(-2**70, 0),  # zero or negative
    HUGE,
    st.floats(allow_nan=True, allow_infinity=True).filter(lambda v: not float(v).is_integer() if math.isfinite(v)
                                                          else True),
    st.text(max_size=4), st.none(), st.booleans(), st.just(object()), st.just(1 + 2j),
    st.just(np.array([[1, 2]])), st.just([[1]]), st.just(((1, 2), 3)), st.just(()),
)


def bad_tuple(rank, element=NOT_A_SIZE, fill=st.integers(1, 2)):
    """A wrong-length tuple, or a right-length one holding one bad ``element`` among ``fill``."""
    return st.one_of(
        st.lists(st.integers(1, 3), min_size=rank + 1, max_size=rank + 3).map(tuple),
        st.tuples(*([element] + [fill] * (rank - 1))),
    )


def bad_size(rank):
    return st.one_of(NOT_A_SIZE, bad_tuple(rank))


def bad_array(shape, alone):
    """Not a float array of ``shape``: other dtypes, ranks, shapes, None, strings, ragged lists.
    ``alone``: the op's only array, whose rank and dtype (pooling) may legitimately vary."""
    bad = [None, "abc", [[1.0], [1.0, 2.0]], np.ones(shape, np.int64), np.ones(shape, np.complex128),
           np.ones(shape, bool), np.ones(shape, object), np.ones(()), np.ones((2,) * 6)]
    if not alone:
        bad += [np.ones(shape[:-1]), np.ones(shape + (1,)), np.ones(shape, np.float32)]  # float32 among float64
    return st.sampled_from(bad)


@st.composite
def corrupted_call(draw):
    """(family, argument, bad value, call) for a valid rank-r call with one argument replaced."""
    rank = draw(st.integers(1, 3))
    df = draw(st.sampled_from(["channels_last", "channels_first"]))
    xs = (1,) + (5,) * rank + (4,) if df == CL else (1, 4) + (5,) * rank
    x = np.ones(xs)
    arrays = {
        "conv": dict(inputs=x, kernel=np.ones((2,) * rank + (2, 4))),
        "conv_transpose": dict(inputs=x, kernel=np.ones((2,) * rank + (3, 4))),
        "depthwise": dict(inputs=x, kernel=np.ones((2,) * rank + (4, 1))),
        "separable": dict(inputs=x, depthwise_kernel=np.ones((2,) * rank + (4, 1)),
                          pointwise_kernel=np.ones((1,) * rank + (4, 2))),
        "pool": dict(inputs=x),
        "locally_connected": dict(inputs=x, kernel=np.ones((4**rank, 2**rank * 4, 2))),
        "upsampling": dict(inputs=x),
    }
    family = draw(st.sampled_from(sorted(arrays)))
    sizes = {"conv": ["strides", "dilation_rate"], "conv_transpose": ["strides", "dilation_rate", "output_padding",
                                                                      "groups"],
             "depthwise": ["strides", "dilation_rate"], "separable": ["strides", "dilation_rate"],
             "pool": ["pool_size", "strides"], "locally_connected": ["kernel_size", "strides"],
             "upsampling": ["size"]}[family]
    strings = {"upsampling": ["interpolation", "data_format"], "pool": ["padding", "data_format"]}.get(
        family, ["padding", "data_format"])
    argument = draw(st.sampled_from(sizes + strings + sorted(arrays[family])))
    if argument in arrays[family]:
        bad = draw(bad_array(arrays[family][argument].shape, alone=len(arrays[family]) == 1))
    elif argument in strings:
        allowed = {"padding": ("valid", "same", "causal"), "data_format": ("channels_first", "channels_last"),
                   "interpolation": ("nearest", "bilinear", "trilinear")}[argument]
        bad = draw(st.one_of(st.text(max_size=12).filter(lambda t: t.lower() not in allowed), st.integers(),
                             st.just(("same",)), st.just(b"same"), st.none() if argument != "data_format" else
                             st.just(3.5)))  # data_format=None means the global default
    elif argument == "groups":
        bad = draw(st.one_of(NOT_A_SIZE, st.sampled_from([3, 5, 8])))  # or not dividing the channels
    elif argument == "output_padding":  # with strides 1, only 0 is valid
        not_zero = NOT_A_SIZE.filter(lambda v: v is not None and not (type(v) is int and v == 0))  # None: Keras
        bad = draw(st.one_of(st.integers(1, 2**70), not_zero, bad_tuple(rank, not_zero, st.just(0))))
    elif family == "pool" and argument == "strides":
        bad = draw(bad_size(rank).filter(lambda v: v is not None))  # None: the pool size, valid
    else:
        bad = draw(bad_size(rank))
    kwargs = dict(arrays[family])
    if family == "conv_transpose" and argument == "output_padding":
        kwargs["strides"] = 1  # so any output padding >= 1 is invalid too
    kwargs[argument] = bad
    kwargs.setdefault("data_format", df)
    call = {
        "conv": lambda: ops.conv_core(**kwargs),
        "conv_transpose": lambda: ops.conv_transpose_core(**kwargs),
        "depthwise": lambda: ops.depthwise_conv_core(**kwargs),
        "separable": lambda: ops.separable_conv_core(**kwargs),
        "pool": lambda: ops.pool_core(mode="max", **dict({"pool_size": 2}, **kwargs)),
        "locally_connected": lambda: ops.locally_connected_core(**dict({"kernel_size": 2}, **kwargs)),
        "upsampling": lambda: ops.upsampling_core(**dict({"size": (2,) * rank}, **kwargs)),
    }[family]
    return family, argument, bad, call


@fuzz_settings(1200)
@given(case=corrupted_call())
def test_fuzz_invalid_arguments_raise_only_value_or_type_errors(case):
    family, argument, bad, call = case
    with engine_settings(None, None):
        try:
            call()
        except (ValueError, TypeError):
            return
        except Exception as e:  # noqa: BLE001 - the point of the test
            pytest.fail(f"{family}({argument}={bad!r}) raised {type(e).__name__}: {e}")
    pytest.fail(f"{family}({argument}={bad!r}) was accepted")
