"""Layer losses are differentiable: ``layer.losses`` / ``model.losses`` (weight regularizers and
the activity penalty) are 0-d arrays recorded on the tape, so ``tape.gradient`` of them equals
the analytic penalty gradient (L1: l1 sign(w), L2: 2 l2 w), finite differences in float64
(OrthogonalRegularizer, activity penalties w.r.t. the layer input), and a training loss plus
the layer losses differentiates to the sum of the parts.

``tape.gradient(model.losses, weights)`` differentiates the SUM of the listed targets (the
tape's TensorFlow semantics); Python's built-in ``sum(...)`` adds with NumPy's operators, which
the tape cannot see, so a total is formed with ``gpuconv.ops.add``.
"""
import functools

import numpy as np
import pytest

import gpuconv
from gpuconv import layers, losses, ops
from gpuconv import regularizers as R

from test_losses import numeric_gradient


def _add_all(values):
    return functools.reduce(ops.add, values)


def _dense_model(rng, dtype="float32", **kwargs):
    model = gpuconv.Sequential([layers.Input((4,), dtype=dtype), layers.Dense(3, dtype=dtype, **kwargs)])
    dense = model.layers[-1]
    dense.set_weights([rng.standard_normal(w.shape).astype(dtype) for w in dense.get_weights()])
    return model, dense


def test_weight_penalties_are_recorded_arrays_with_the_analytic_gradient(rng):
    model, dense = _dense_model(rng, kernel_regularizer=R.L1(0.3), bias_regularizer=R.L2(0.2))
    kernel, bias = dense.get_weights()
    with gpuconv.GradientTape() as tape:
        penalties = model.losses
    assert all(isinstance(p, np.ndarray) and p.shape == () and p.dtype == np.float32 for p in penalties)
    np.testing.assert_allclose([float(p) for p in penalties],
                               [np.float32(0.3) * np.abs(kernel).sum(), 0.2 * (bias * bias).sum()], rtol=1e-6)
    g_kernel, g_bias = tape.gradient(penalties, [dense.kernel, dense.bias])
    np.testing.assert_allclose(g_kernel, np.float32(0.3) * np.sign(kernel), rtol=1e-6)
    np.testing.assert_allclose(g_bias, 2 * 0.2 * bias, rtol=1e-6)


def test_l1l2_on_a_conv_kernel(rng):
    conv = layers.Conv2D(2, 3, kernel_regularizer=R.L1L2(l1=0.05, l2=0.1), use_bias=False)
    conv(rng.standard_normal((1, 5, 5, 2)).astype("float32"))
    (kernel,) = conv.get_weights()
    with gpuconv.GradientTape() as tape:
        total = _add_all(conv.losses)
    np.testing.assert_allclose(tape.gradient(total, conv.kernel), 0.05 * np.sign(kernel) + 0.2 * kernel, rtol=1e-5)


@pytest.mark.parametrize("mode", ["rows", "columns"])
def test_orthogonal_regularizer_gradient_matches_finite_differences(rng, mode):
    reg = R.OrthogonalRegularizer(factor=0.7, mode=mode)
    model, dense = _dense_model(rng, dtype="float64", kernel_regularizer=reg)
    with gpuconv.GradientTape() as tape:
        (penalty,) = model.losses
    got = tape.gradient(penalty, dense.kernel)
    kernel = dense.get_weights()[0]
    expected = numeric_gradient(lambda w: reg(w), kernel)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-9)


def test_orthogonal_regularizer_keeps_a_zero_row_finite(rng):
    w = rng.standard_normal((4, 3))
    w[1] = 0.0
    with gpuconv.GradientTape() as tape:
        tape.watch(w)
        penalty = R.OrthogonalRegularizer(factor=1.0)(w)
    g = tape.gradient(penalty, w)
    assert np.isfinite(g).all()
    rest = [0, 2, 3]
    np.testing.assert_allclose(g[rest], numeric_gradient(R.OrthogonalRegularizer(factor=1.0), w)[rest], rtol=1e-6)


def test_activity_penalty_gradient_wrt_the_input(rng):
    dense = layers.Dense(3, activity_regularizer=R.L2(0.5), dtype="float64")
    x = rng.standard_normal((5, 4))
    with gpuconv.GradientTape() as tape:
        tape.watch(x)
        y = dense(x)
        (penalty,) = dense.losses
    kernel = dense.get_weights()[0]
    assert penalty.shape == () and float(penalty) == pytest.approx(0.5 * (y * y).sum() / 5, rel=1e-12)
    # d/dx of l2 * sum(y^2) / batch, y = x W + b: (2 l2 y / batch) W^T
    np.testing.assert_allclose(tape.gradient(penalty, x), (2 * 0.5 * y / 5) @ kernel.T, rtol=1e-10)


def test_activity_penalty_of_a_conv_matches_finite_differences(rng):
    conv = layers.Conv2D(2, 2, activity_regularizer=R.L1(0.2), dtype="float64", activation="tanh")
    x = rng.standard_normal((2, 4, 4, 1))

    def penalty(inputs):
        conv(inputs)
        return conv.losses[0]

    with gpuconv.GradientTape() as tape:
        tape.watch(x)
        value = penalty(x)
    np.testing.assert_allclose(tape.gradient(value, x), numeric_gradient(penalty, x), rtol=1e-6, atol=1e-10)


def test_training_loss_plus_layer_losses(rng):
    model, dense = _dense_model(rng, kernel_regularizer=R.L2(0.1), activity_regularizer=R.L1(0.01))
    x = rng.standard_normal((6, 4)).astype("float32")
    y = rng.standard_normal((6, 3)).astype("float32")
    loss_fn = losses.MeanSquaredError()
    with gpuconv.GradientTape(persistent=True) as tape:
        data_loss = loss_fn(y, model(x))
        total = _add_all([data_loss, *model.losses])
        activity, weight_penalty = model.losses
    assert len(model.losses) == 2
    got = tape.gradient(total, dense.kernel)
    parts = [tape.gradient(t, dense.kernel) for t in (data_loss, activity, weight_penalty)]
    np.testing.assert_allclose(got, sum(parts), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(parts[2], 0.2 * dense.get_weights()[0], rtol=1e-6)


def test_penalty_values_unchanged_outside_a_tape(rng):
    """Outside a tape the penalties are the same numbers, plain 0-d arrays."""
    layer = layers.Dense(3, kernel_regularizer="l2", bias_regularizer=R.L1(0.5), bias_initializer="ones",
                         activity_regularizer="l1")
    layer(np.zeros((0, 4), "float32"))  # an empty batch: Keras' divide_no_nan gives 0
    assert float(layer.losses[0]) == 0.0
    out = gpuconv.to_numpy(layer(rng.standard_normal((2, 4)).astype("float32")))
    kernel = layer.get_weights()[0]
    np.testing.assert_allclose([float(v) for v in layer.losses],
                               [np.float32(0.01) * np.abs(out).sum() / 2, 0.01 * (kernel ** 2).sum(), 0.5 * 3],
                               rtol=1e-6)


def test_penalties_follow_the_layer_to_the_emulated_device(rng, restore_backend):
    from conftest import EMULATOR_AVAILABLE

    if not EMULATOR_AVAILABLE:
        pytest.skip("cuda-emulator unavailable")
    from gpuconv.emulator.runtime import DeviceArray

    layer = layers.Dense(3, kernel_regularizer=R.L2(0.1))
    x = rng.standard_normal((2, 4)).astype("float32")
    layer(x)
    host = float(layer.losses[0])
    gpuconv.set_backend("cuda-emulator")
    with gpuconv.GradientTape() as tape:
        layer(x)
        (penalty,) = layer.losses
    assert isinstance(penalty, DeviceArray)
    g = tape.gradient(penalty, layer.kernel)
    np.testing.assert_allclose(np.asarray(g), 0.2 * layer.get_weights()[0], rtol=1e-6)
    assert float(np.asarray(penalty)) == pytest.approx(host, rel=1e-6)
