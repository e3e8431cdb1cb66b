"""channels_first float16 convolutions on the tensor-core kernel (gpuconv/cuda/conv.py): the
input re-laid to channels_last, kernels/conv_implicit_gemm.cu run there, the output re-laid
back. Against the float64 NumPy engine on the cuda-emulator, asserting which kernel ran; the
table's routing needs no device.
"""
import engine_calls as calls
import numpy as np
import pytest

from conftest import CUDA_MARKS, ON_EMULATOR, assert_close, gpu_xp
from gpuconv import geometry as g
from gpuconv import problems
from gpuconv.cuda import algorithms, conv_implicit_gemm as igemm, tensors


class _Device:
    compute_capability = "90"


def _problem(cl):
    return problems.ConvProblem(kind=problems.CONV, batch=2, in_channels=32, out_channels=64, groups=1,
                                in_spatial=(8, 8), out_spatial=(8, 8), kernel_size=(3, 3), strides=(1, 1),
                                dilation=(1, 1), pad_before=(1, 1), channels_last=cl, dtype=np.dtype("float16"))


def test_table_sends_channels_first_float16_to_tensor_cores():
    for cl in (True, False):
        assert algorithms.choose_conv_algorithm(_problem(cl), np.float16, _Device()).name == "implicit_gemm"
    assert algorithms.choose_conv_algorithm(_problem(False), np.float32, _Device()).name == "direct_tiled"


@pytest.mark.parametrize("ndim, channels_last, expected", [
    (4, True, (0, 3, 1, 2)), (4, False, (0, 2, 3, 1)), (3, True, (0, 2, 1)), (5, False, (0, 2, 3, 4, 1)),
])
def test_relayout_axes(ndim, channels_last, expected):
    assert tensors._relayout_axes(ndim, channels_last) == expected
    back = tensors._relayout_axes(ndim, not channels_last)
    assert tuple(np.array(expected)[list(back)]) == tuple(range(ndim))  # the two moves undo each other


# (batch, C, F, spatial, kernel, strides, dilation, padding, groups, activation, bias)
CASES = [
    (2, 16, 40, (6, 7), (3, 3), (1, 1), (1, 1), "same", 1, "relu", True),
    (1, 3, 24, (9, 8), (3, 3), (2, 2), (1, 1), "same", 1, None, False),        # the stem, element loads
    (2, 8, 32, (11,), (3,), (1,), (2,), "causal", 1, "tanh", True),            # 1-D
    (1, 8, 20, (3, 4, 5), (2, 2, 3), (1, 1, 2), (1, 1, 1), "valid", 1, None, True),  # 3-D
    (2, 32, 48, (5, 5), (3, 3), (1, 1), (1, 1), "same", 2, "sigmoid", True),   # groups
]


def _case_id(case):
    n, c, f, spatial, k, s, d, pad, groups, act, bias = case
    return f"{len(spatial)}d-c{c}-f{f}-s{'x'.join(map(str, s))}-{pad}-g{groups}-{act}"


def _reference(x, w, b, act, kwargs):
    from gpuconv import activations
    from gpuconv.cpu import engine as cpu

    y = calls.conv(cpu, x.astype(np.float64), w.astype(np.float64), None if b is None else b.astype(np.float64),
                   **kwargs, activation=None)
    return y if act is None else np.asarray(activations.get(act)(y), dtype=np.float64)


def _on_gpu(test):
    for mark in reversed(CUDA_MARKS):
        test = mark(test)
    return test


@_on_gpu
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_channels_first_float16_runs_the_tensor_core_kernel(case):
    if not ON_EMULATOR:
        pytest.skip("the launch record is the cuda-emulator's")
    from gpuconv.cuda import engine as eng
    from gpuconv.emulator import runtime

    n, c, f, spatial, k, s, d, pad, groups, act, has_bias = case
    xp = gpu_xp()
    rng = np.random.default_rng(sum(map(ord, _case_id(case))))
    x = rng.standard_normal((n, c, *spatial)).astype(np.float16)
    w = (rng.standard_normal((*k, c // groups, f)) / np.sqrt(np.prod(k) * c / groups)).astype(np.float16)
    b = rng.standard_normal((f,)).astype(np.float16) if has_bias else None
    kwargs = dict(strides=s, padding=g.conv_padding(spatial, k, s, d, pad), dilation=d, groups=groups,
                  channels_last=False)
    x_dev = xp.asarray(x)
    runtime.launched.clear()
    got = calls.conv(eng, x_dev, xp.asarray(w), None if b is None else xp.asarray(b), **kwargs, activation=act)
    assert runtime.launched == {igemm.name_expression(np.float16, *igemm.vector_flags(
        calls.conv_problem(x, w, b, **kwargs)))}, sorted(runtime.launched)
    got = xp.asnumpy(got)
    assert got.dtype == np.float16 and got.flags.c_contiguous
    assert_close(got, _reference(x, w, b, act, kwargs), "float16")
    np.testing.assert_array_equal(xp.asnumpy(x_dev), x)  # the input is copied, never re-laid in place


@_on_gpu
def test_channels_first_equals_channels_last_bitwise():
    """The same products in the same order: the channels_first result is the channels_last one,
    transposed, bit for bit."""
    if not ON_EMULATOR:
        pytest.skip("runs on the cuda-emulator")
    from gpuconv.cuda import engine as eng

    xp = gpu_xp()
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 6, 5, 24)).astype(np.float16)
    w = (rng.standard_normal((3, 3, 24, 40)) / 8).astype(np.float16)
    b = rng.standard_normal((40,)).astype(np.float16)
    geometry = dict(strides=(1, 1), padding=((1, 1), (1, 1)), dilation=(1, 1), groups=1, activation="relu")
    last = xp.asnumpy(calls.conv(eng, xp.asarray(x), xp.asarray(w), xp.asarray(b), channels_last=True, **geometry))
    first = xp.asnumpy(calls.conv(eng, xp.asarray(np.ascontiguousarray(x.transpose(0, 3, 1, 2))), xp.asarray(w),
                                  xp.asarray(b), channels_last=False, **geometry))
    np.testing.assert_array_equal(first, last.transpose(0, 3, 1, 2))

