"""The engine contract: every engine implements the whole Protocol with identical signatures,
the problems lose nothing Keras' padding rules say, routing is the planner's (so every engine
computes the same problem), explicit engines leave the global backend alone, and a convolution's
``adjoint()`` problem is its transposed convolution (the base the gradients build on).
"""
import dataclasses
import inspect

import numpy as np
import pytest

import gpuconv
from conftest import EMULATOR_AVAILABLE, EMULATOR_REASON
from gpuconv import backend, engines, geometry as g, ops, planning, problems
from gpuconv.cpu import engine as cpu

needs_emulator = pytest.mark.skipif(not EMULATOR_AVAILABLE, reason=f"cuda-emulator unavailable: {EMULATOR_REASON}")


def _protocol_signature(name):
    sig = inspect.signature(getattr(engines.Engine, name))
    return sig.replace(parameters=list(sig.parameters.values())[1:])  # without self


def _engines_to_check():
    from gpuconv.cuda import engine as cuda

    return {"numpy": cpu, "cuda module": cuda, "cuda bound": cuda.on_device("cuda-emulator")}


@pytest.mark.parametrize("which", ["numpy", "cuda module", "cuda bound"])
def test_every_engine_implements_the_whole_protocol_with_identical_signatures(which):
    engine = _engines_to_check()[which]
    assert isinstance(engine, engines.Engine)
    assert isinstance(engine.NAME, str) and isinstance(engine.FUSED_ACTIVATIONS, frozenset)
    for name in engines.OPERATIONS:
        assert inspect.signature(getattr(engine, name)) == _protocol_signature(name), (which, name)


def test_operations_list_is_the_protocol():
    declared = [n for n, v in vars(engines.Engine).items() if inspect.isfunction(v) and not n.startswith("_")]
    assert tuple(declared) == engines.OPERATIONS


def test_same_module_names_in_both_engines():
    import pathlib

    root = pathlib.Path(gpuconv.__file__).parent
    ops_modules = {"conv", "conv_transpose", "depthwise", "separable", "pooling", "upsampling", "locally_connected"}
    for engine_dir in ("cpu", "cuda"):
        present = {p.stem for p in (root / engine_dir).glob("*.py")}
        assert ops_modules <= present, (engine_dir, sorted(ops_modules - present))


# ---------------------------------------------------------------------------------------------
# Problems: only the leading padding is stored; the trailing one follows and equals Keras'
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("padding", ["valid", "same", "causal"])
def test_derived_trailing_padding_equals_keras_rule(padding):
    rng = np.random.default_rng(0)
    for _ in range(300):
        L, k, s, d = (int(v) for v in (rng.integers(1, 40), rng.integers(1, 6), rng.integers(1, 5), rng.integers(1, 4)))
        if padding == "valid" and g.effective_kernel(k, d) > L:
            continue
        out = g.conv_output_length(L, k, s, d, padding)
        before, after = g.conv_padding_pair(L, k, s, d, padding)
        p = problems.ConvProblem(kind=problems.CONV, batch=1, in_channels=1, out_channels=1, in_spatial=(L,),
                                 out_spatial=(out,), kernel_size=(k,), strides=(s,), dilation=(d,), pad_before=(before,),
                                 channels_last=True, dtype=np.dtype("float32"))
        # What the last window reads past the end: Keras' 'after' where it is read, never more.
        assert p.pad_after[0] <= after, (L, k, s, d, padding)
        assert g.padded_output_spatial((L,), (k,), (s,), p.padding, (d,)) == (out,), (L, k, s, d, padding)


def test_problem_is_frozen_and_shapes_follow_the_layout():
    p = problems.ConvProblem(kind=problems.CONV, batch=2, in_channels=6, out_channels=4, in_spatial=(5, 7),
                             out_spatial=(5, 7), kernel_size=(3, 3), strides=(1, 1), dilation=(1, 1),
                             pad_before=(1, 1), groups=2, channels_last=False, dtype=np.dtype("float32"))
    assert p.input_shape == (2, 6, 5, 7) and p.output_shape == (2, 4, 5, 7) and p.kernel_shape == (3, 3, 3, 4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.batch = 3


# ---------------------------------------------------------------------------------------------
# The planner routes; engines only compute
# ---------------------------------------------------------------------------------------------
class _Recording:
    """The NumPy engine, recording which engine function each problem reached."""

    NAME, FUSED_ACTIVATIONS, asarray = "recording", cpu.FUSED_ACTIVATIONS, staticmethod(cpu.asarray)

    def __init__(self):
        self.calls = []

    def __getattr__(self, op):
        def run(problem, *arrays):
            self.calls.append((op, problem))
            return getattr(cpu, op)(problem, *arrays)

        return run


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_grouped_conv_with_one_channel_per_group_runs_as_depthwise(data_format):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 6, 6, 3) if data_format == "channels_last" else (2, 3, 6, 6))
    w = rng.standard_normal((3, 3, 1, 6))  # groups = 3, two filters per channel
    engine = _Recording()
    got = ops.conv(x, w, padding="same", data_format=data_format, engine=engine)
    assert [op for op, _ in engine.calls] == ["depthwise_conv"]
    (_, problem), = engine.calls
    assert problem.kind == problems.DEPTHWISE and problem.depth_multiplier == 2 and problem.out_channels == 6
    # The dense kernel on the same problem gives the same numbers.
    dense = problems.ConvProblem(**{**dataclasses.asdict(problem), "kind": problems.CONV, "groups": 3,
                                    "depth_multiplier": 1})
    np.testing.assert_allclose(got, cpu.conv(dense, x, w, None), rtol=1e-12, atol=1e-12)


def test_route_leaves_other_problems_alone():
    base = dict(batch=1, in_spatial=(4,), out_spatial=(4,), kernel_size=(3,), strides=(1,), dilation=(1,),
                pad_before=(1,), channels_last=True, dtype=np.dtype("float32"))
    dense = problems.ConvProblem(kind=problems.CONV, in_channels=4, out_channels=8, groups=2, **base)
    single = problems.ConvProblem(kind=problems.CONV, in_channels=1, out_channels=8, groups=1, **base)
    assert planning.route(dense) is dense and planning.route(single) is single


# ---------------------------------------------------------------------------------------------
# Explicit engines
# ---------------------------------------------------------------------------------------------
def test_engine_argument_is_validated():
    x, w = np.zeros((1, 4, 2), np.float32), np.zeros((3, 2, 2), np.float32)
    with pytest.raises(TypeError, match="engine"):
        ops.conv(x, w, engine=object())
    with pytest.raises(ValueError, match="backend"):
        ops.conv(x, w, engine="gpu")


@needs_emulator
def test_explicit_engine_leaves_the_global_backend_alone(restore_backend):
    from gpuconv.emulator.runtime import DeviceArray

    gpuconv.set_backend("numpy")
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 6, 5, 3)).astype("float32")
    k = rng.standard_normal((3, 3, 3, 4)).astype("float32")
    y = ops.conv(x, k, padding="same", engine="cuda-emulator")
    assert isinstance(y, DeviceArray)
    assert backend.get_backend() == "numpy" and backend.engine() is cpu
    host = ops.conv(x, k, padding="same")
    assert type(host) is np.ndarray
    np.testing.assert_allclose(gpuconv.to_numpy(y), host, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# adjoint(): <conv(x), y> == <x, conv_transpose(y)> with the same kernel
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(12))
def test_adjoint_problem_is_the_transposed_convolution(seed):
    rng = np.random.default_rng(seed)
    rank = int(rng.integers(1, 4))
    groups = int(rng.choice([1, 2]))
    c, f = groups * int(rng.integers(1, 3)), groups * int(rng.integers(1, 3))
    spatial = tuple(int(v) for v in rng.integers(3, 8, rank))
    ksize = tuple(int(v) for v in rng.integers(1, 4, rank))
    strides = tuple(int(v) for v in rng.integers(1, 3, rank))
    dilation = tuple(int(v) for v in rng.integers(1, 3, rank))
    padding = str(rng.choice(["valid", "same"]))
    if padding == "valid" and any(g.effective_kernel(k, d) > L for k, d, L in zip(ksize, dilation, spatial)):
        padding = "same"
    channels_last = bool(rng.integers(0, 2))
    data_format = "channels_last" if channels_last else "channels_first"
    x = rng.standard_normal(g.make_shape(2, c, spatial, data_format))
    w = rng.standard_normal(ksize + (c // groups, f))
    out = g.conv_output_spatial(spatial, ksize, strides, dilation, padding)
    pad_before = tuple(p[0] for p in g.conv_padding(spatial, ksize, strides, dilation, padding))
    problem = problems.ConvProblem(kind=problems.CONV, batch=2, in_channels=c, out_channels=f, in_spatial=spatial,
                                   out_spatial=out, kernel_size=ksize, strides=strides, dilation=dilation,
                                   pad_before=pad_before, groups=groups, channels_last=channels_last,
                                   dtype=np.dtype("float64"))
    adjoint = problem.adjoint()
    assert adjoint.kind == problems.CONV_TRANSPOSE and adjoint.crop == pad_before
    assert adjoint.input_shape == problem.output_shape and adjoint.output_shape == problem.input_shape
    assert adjoint.kernel_shape == problem.kernel_shape  # the same weights, read the other way
    assert adjoint.adjoint() == problem
    y = rng.standard_normal(problem.output_shape)
    lhs = float(np.vdot(cpu.conv(problem, x, w, None), y))
    rhs = float(np.vdot(x, cpu.conv_transpose(adjoint, y, w, None)))
    assert lhs == pytest.approx(rhs, rel=1e-10, abs=1e-10)
