"""The NumPy engine's one-pass output gradient (a fused relu / relu6's derivative and the bias
gradient over blocks of dy): the derivative bitwise ``OUTPUT_DERIVATIVES``' (NaN and Inf
gradients included), the bias gradient within float32 summation error of the float64 sum and
bitwise the same on any thread count, blocks cut inside one item and across channels_first
channels, and dy never mutated."""
import dataclasses

import numpy as np
import pytest

from gpuconv import problems
from gpuconv.activations import OUTPUT_DERIVATIVES
from gpuconv.cpu import _parallel, engine as eng


def _problem(shape, channels_last, dtype, activation):
    channels = shape[-1] if channels_last else shape[1]
    spatial = shape[1:-1] if channels_last else shape[2:]
    rank = len(spatial)
    return problems.ConvProblem(batch=shape[0], in_spatial=spatial, out_spatial=spatial, channels_last=channels_last,
                                dtype=np.dtype(dtype), in_channels=channels, out_channels=channels,
                                kernel_size=(1,) * rank, strides=(1,) * rank, dilation=(1,) * rank,
                                pad_before=(0,) * rank, activation=activation, has_bias=True)


def _arrays(rng, shape, dtype, activation):
    dy = rng.standard_normal(shape).astype(dtype)
    y = rng.uniform(-2, 8 if activation == "relu6" else 2, shape).astype(dtype)
    y[(0,) * len(shape)] = 0.0  # the kink
    flat = dy.reshape(-1)
    flat[3], flat[7], flat[11] = np.nan, np.inf, -np.inf  # NaN * 0 stays NaN, as OUTPUT_DERIVATIVES says
    return dy, y


def _derivative(activation, y, dy):
    with np.errstate(invalid="ignore"):  # NaN * 0 and Inf * 0 are the point
        return OUTPUT_DERIVATIVES[activation](y, dy)


def _threads(monkeypatch, threads):
    monkeypatch.setattr(_parallel, "NUM_THREADS", threads)
    monkeypatch.setattr(_parallel, "MIN_PARALLEL_BYTES", 0)


@pytest.mark.parametrize("activation", ["relu", "relu6"])
@pytest.mark.parametrize("shape, channels_last", [
    ((4, 9, 7, 5), True), ((4, 5, 9, 7), False), ((2, 11, 3), True), ((3, 2, 6, 5, 4), True),
    ((1, 300, 301, 3), True),   # one item over a block: blocks of rows inside it
    ((1, 40, 64, 64), False),   # channels_first, one item over a block: blocks of channels
])
@pytest.mark.parametrize("dtype", ["float32", "float16", "float64"])
def test_derivative_is_bitwise_and_bias_is_the_float64_sum(rng, monkeypatch, activation, shape, channels_last, dtype):
    problem = _problem(shape, channels_last, dtype, activation)
    dy, y = _arrays(rng, shape, dtype, activation)
    dy_before = dy.copy()
    want = _derivative(activation, y, dy)
    axis = len(shape) - 1 if channels_last else 1
    axes = tuple(a for a in range(len(shape)) if a != axis)
    results = []
    for threads in (1, 2, 3):
        _threads(monkeypatch, threads)
        grad, bias_grad = eng.output_gradient(problem, dy, y, True)
        np.testing.assert_array_equal(grad, want)
        assert grad.dtype == want.dtype and bias_grad.dtype == np.dtype(dtype) and bias_grad.shape == (shape[axis],)
        results.append(bias_grad)
    for other in results[1:]:
        np.testing.assert_array_equal(other, results[0])  # the thread count changes nothing
    np.testing.assert_array_equal(dy, dy_before)
    bad = ~np.isfinite(want).all(axis=axes)  # the channels holding the NaN / Inf gradients
    assert bad.any()
    with np.errstate(invalid="ignore"):
        inexact = want.astype(np.float64).sum(axis=axes)[bad].astype(dtype)
    np.testing.assert_array_equal(results[0][bad], inexact)
    finite = np.where(np.isfinite(want), want, 0).astype(np.float64)
    exact = finite.sum(axis=axes)
    ok = ~bad
    bound = np.abs(finite).sum(axis=axes) * (1e-3 if dtype == "float16" else 2e-6)
    assert (np.abs(results[0][ok].astype(np.float64) - exact[ok]) <= bound[ok] + 1e-30).all()


def test_without_activation_dy_passes_uncopied_and_bias_is_summed(rng):
    problem = dataclasses.replace(_problem((4, 6, 6, 3), True, "float32", None), activation=None)
    dy = rng.standard_normal((4, 6, 6, 3)).astype(np.float32)
    grad, bias_grad = eng.output_gradient(problem, dy, None, True)
    assert grad is dy
    np.testing.assert_allclose(bias_grad, dy.astype(np.float64).sum(axis=(0, 1, 2)), rtol=1e-5)
    grad, bias_grad = eng.output_gradient(problem, dy, None, False)
    assert grad is dy and bias_grad is None


def test_without_bias_only_the_derivative_is_applied(rng):
    problem = _problem((2, 5, 5, 4), True, "float32", "relu")
    dy, y = _arrays(rng, (2, 5, 5, 4), np.float32, "relu")
    grad, bias_grad = eng.output_gradient(problem, dy, y, False)
    assert bias_grad is None
    np.testing.assert_array_equal(grad, _derivative("relu", y, dy))


@pytest.mark.parametrize("shape, channels_last", [((2, 5, 5, 0), True), ((0, 5, 5, 3), True), ((2, 0, 4, 4), False)])
def test_empty_gradients_give_zero_bias_gradients(shape, channels_last):
    """No filters or an empty batch (a conv to 0 filters under a tape): no crash, zero sums."""
    problem = _problem(shape, channels_last, "float32", "relu")
    dy = np.zeros(shape, np.float32)
    grad, bias_grad = eng.output_gradient(problem, dy, np.zeros(shape, np.float32), True)
    assert grad.shape == shape
    channels = shape[-1] if channels_last else shape[1]
    np.testing.assert_array_equal(bias_grad, np.zeros(channels, np.float32))
