"""The training loop on its own terms (no Keras needed): gradient-step identities, what each
input form gives, Dropout's training switch, reproducibility, the layers' losses and constraints,
and the errors a user gets for a wrong call.

- One SGD step is ``w - lr * tape.gradient(loss, w)`` exactly (the same float32 arithmetic).
- Two ``train_on_batch`` calls equal one ``fit`` epoch of the same two batches, bitwise.
- Arrays, generators and PyDataset give the same weights for the same batches.
- ``fit`` with the same ``set_random_seed`` is bitwise reproducible, Dropout included.
"""
import numpy as np
import pytest

import gpuconv
from gpuconv import layers as L
from gpuconv.utils import PyDataset, set_random_seed

from conftest import GPU_BACKEND, requires_cuda


def small_model(dropout=None, regularize=False, constrain=False):
    kwargs = {}
    if regularize:
        kwargs.update(kernel_regularizer="l2", activity_regularizer="l1")
    if constrain:
        kwargs.update(kernel_constraint=gpuconv.constraints.NonNeg())
    stack = [L.Input((6, 6, 2)), L.Conv2D(3, 3, activation="relu", **kwargs), L.Flatten()]
    if dropout is not None:
        stack.append(L.Dropout(dropout, seed=7))
    stack.append(L.Dense(4, activation="softmax"))
    return gpuconv.Sequential(stack)


def data(rng, n=12):
    return rng.standard_normal((n, 6, 6, 2)).astype("float32"), rng.integers(0, 4, size=n)


def twin(model):
    other = gpuconv.Sequential.from_config(model.get_config())
    other.set_weights(model.get_weights())
    return other


def test_one_sgd_step_is_w_minus_lr_times_the_gradient(rng):
    model = small_model()
    x, y = data(rng, 8)
    before = model.get_weights()
    loss_fn = gpuconv.losses.SparseCategoricalCrossentropy()
    with gpuconv.GradientTape() as tape:
        loss = loss_fn(y, model(x, training=True))
    grads = tape.gradient(loss, model.trainable_weights)
    model.compile(optimizer=gpuconv.optimizers.SGD(learning_rate=0.1), loss="sparse_categorical_crossentropy")
    model.train_on_batch(x, y)
    # Keras' torch backend rounds `w - lr * g` once (a fused multiply-add): float64 holds the
    # product of two float32 values exactly, so this is that single rounding.
    lr = np.float64(np.float32(0.1))
    for w0, g, w1 in zip(before, grads, model.get_weights()):
        expected = (w0.astype(np.float64) - lr * gpuconv.to_numpy(g).astype(np.float64)).astype(np.float32)
        np.testing.assert_array_equal(w1, expected)


def test_train_on_batch_twice_equals_one_fit_epoch_of_two_batches(rng):
    a = small_model()
    b = twin(a)
    x, y = data(rng, 8)
    for model in (a, b):
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    a.train_on_batch(x[:4], y[:4])
    a.train_on_batch(x[4:], y[4:])
    b.fit(x, y, batch_size=4, shuffle=False, verbose=0)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert int(a.optimizer.iterations) == int(b.optimizer.iterations) == 2


def test_arrays_generators_and_pydataset_give_the_same_training(rng):
    x, y = data(rng, 12)
    reference = small_model()
    models = [twin(reference) for _ in range(3)]

    def generator():
        while True:
            for start in range(0, 12, 4):
                yield x[start:start + 4], y[start:start + 4]

    class Batches(PyDataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return x[4 * i:4 * i + 4], y[4 * i:4 * i + 4]

    for model in models:
        model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy")
    models[0].fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    models[1].fit(generator(), steps_per_epoch=3, epochs=2, verbose=0)
    models[2].fit(Batches(), epochs=2, shuffle=False, verbose=0)  # Keras shuffles a PyDataset by default
    for other in models[1:]:
        for w0, w1 in zip(models[0].get_weights(), other.get_weights()):
            np.testing.assert_array_equal(w0, w1)


def test_fit_is_bitwise_reproducible_with_a_seed(rng):
    x, y = data(rng, 16)
    runs = []
    for _ in range(2):
        set_random_seed(123)
        model = small_model(dropout=0.5)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        history = model.fit(x, y, batch_size=4, epochs=2, verbose=0)  # shuffled, with Dropout
        runs.append((model.get_weights(), history.history))
    for w0, w1 in zip(runs[0][0], runs[1][0]):
        np.testing.assert_array_equal(w0, w1)
    assert runs[0][1] == runs[1][1]


def test_dropout_is_active_in_fit_and_not_in_evaluate_or_predict(rng):
    x, y = data(rng, 8)
    model = small_model(dropout=0.9)
    model.compile(optimizer=gpuconv.optimizers.SGD(0.0), loss="sparse_categorical_crossentropy")
    plain = small_model()
    plain.set_weights(model.get_weights())
    plain.compile(optimizer=gpuconv.optimizers.SGD(0.0), loss="sparse_categorical_crossentropy")
    np.testing.assert_array_equal(model.predict(x, verbose=0), plain.predict(x, verbose=0))
    assert model.evaluate(x, y, verbose=0) == plain.evaluate(x, y, verbose=0)
    train_loss = model.fit(x, y, batch_size=8, verbose=0, shuffle=False).history["loss"][0]
    plain_loss = plain.fit(x, y, batch_size=8, verbose=0, shuffle=False).history["loss"][0]
    assert train_loss != plain_loss  # 90% of the Dense inputs dropped changes the training loss


def test_layer_losses_are_added_and_constraints_applied(rng):
    x, y = data(rng, 8)
    model = small_model(regularize=True, constrain=True)
    model.compile(optimizer=gpuconv.optimizers.SGD(0.5), loss="sparse_categorical_crossentropy")
    unregularized = small_model()
    unregularized.set_weights(model.get_weights())
    unregularized.compile(optimizer=gpuconv.optimizers.SGD(0.5), loss="sparse_categorical_crossentropy")
    got = model.evaluate(x, y, verbose=0, batch_size=8)
    base = unregularized.evaluate(x, y, verbose=0, batch_size=8)
    model(x)  # the activity penalty of this batch, as evaluate computed it
    penalties = sum(float(gpuconv.to_numpy(p)) for p in model.losses)
    assert penalties > 0
    np.testing.assert_allclose(got, base + penalties, rtol=1e-6)
    model.fit(x, y, batch_size=8, verbose=0)
    assert (model.layers[0].kernel.numpy() >= 0).all()  # NonNeg applied after the update


def test_history_logs_and_callbacks_see_the_same_numbers(rng):
    x, y = data(rng, 12)
    model = small_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    seen = []
    cb = gpuconv.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(dict(logs)))
    history = model.fit(x, y, batch_size=4, epochs=3, validation_data=(x, y), callbacks=[cb], verbose=0)
    assert history is model.history
    assert history.epoch == [0, 1, 2]
    assert [s["loss"] for s in seen] == history.history["loss"]
    assert all(isinstance(v, float) for s in seen for v in s.values())
    np.testing.assert_allclose(history.history["val_loss"][-1], model.evaluate(x, y, verbose=0)[0], rtol=1e-6)


def test_early_stopping_sets_stop_training(rng):
    x, y = data(rng, 8)
    model = small_model()
    model.compile(optimizer=gpuconv.optimizers.SGD(0.0), loss="sparse_categorical_crossentropy")
    stop = gpuconv.callbacks.EarlyStopping(monitor="loss", patience=1, min_delta=1.0)
    history = model.fit(x, y, epochs=10, callbacks=[stop], verbose=0)
    assert len(history.epoch) == 2 and model.stop_training


def test_save_and_load_weights_round_trip_with_the_optimizer(rng, tmp_path):
    x, y = data(rng, 8)
    model = small_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=4, verbose=0)
    path = tmp_path / "m.weights.h5"
    model.save_weights(path)
    other = small_model()
    other.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    other.optimizer.build(other.trainable_weights)
    other.load_weights(path)
    for w0, w1 in zip(model.get_weights(), other.get_weights()):
        np.testing.assert_array_equal(w0, w1)
    for v0, v1 in zip(model.optimizer.variables, other.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(v0), np.asarray(v1))
    np.testing.assert_array_equal(model.predict(x, verbose=0), other.predict(x, verbose=0))


@pytest.mark.parametrize("call,match", [
    (lambda m, x, y: m.fit(x, y), "compile"),
    (lambda m, x, y: m.evaluate(x, y), "compile"),
    (lambda m, x, y: m.train_on_batch(x, y), "compile"),
])
def test_training_before_compile_is_refused(call, match, rng):
    x, y = data(rng, 4)
    with pytest.raises(ValueError, match=match):
        call(small_model(), x, y)


@pytest.mark.parametrize("kwargs,match", [
    ({"batch_size": 0}, "batch_size"),
    ({"batch_size": 2.5}, "batch_size"),
    ({"epochs": -1}, "epochs"),
    ({"validation_freq": "often", "validation_data": "VAL"}, "validation_freq"),
    ({"validation_split": 1.5}, "validation_split"),
])
def test_bad_fit_arguments_name_the_argument(kwargs, match, rng):
    x, y = data(rng, 4)
    if kwargs.get("validation_data") == "VAL":
        kwargs["validation_data"] = (x, y)
    model = small_model()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=match):
        model.fit(x, y, verbose=0, **kwargs)


def test_no_loss_is_a_clear_error(rng):
    x, y = data(rng, 4)
    model = small_model()
    model.compile(optimizer="sgd")
    with pytest.raises(ValueError, match="No loss to compute"):
        model.fit(x, y, verbose=0)


def test_inputs_are_not_mutated(rng):
    x, y = data(rng, 8)
    x0, y0 = x.copy(), y.copy()
    model = small_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=4, verbose=0, validation_split=0.25)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(y, y0)


def test_progress_output_lines(rng, capsys):
    x, y = data(rng, 8)
    model = small_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, batch_size=4, epochs=2, verbose=2)
    out = capsys.readouterr().out
    assert "Epoch 1/2" in out and "Epoch 2/2" in out
    assert out.count("accuracy: ") == 2 and out.count("loss: ") == 2
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert capsys.readouterr().out == ""


@pytest.mark.gpu
@requires_cuda
def test_fit_on_the_cuda_engine_equals_fit_on_numpy(rng, monkeypatch):
    """The whole loop on the device (the emulator in CI): batches, forward, backward, the fused
    optimizer kernel and the metrics; the weights and logs equal the NumPy engine's run within
    float32 rounding, the weights stay on the device between steps, and each step launches the
    optimizer kernel once."""
    from gpuconv.cuda import launch as cuda_launch

    x, y = data(rng, 12)
    gpuconv.set_backend("numpy")
    host = small_model(regularize=True)
    initial = host.get_weights()
    host.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    expected = host.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0).history
    gpuconv.set_backend(GPU_BACKEND)
    device = small_model(regularize=True)
    device.set_weights(initial)
    device.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    launches = []
    real = cuda_launch.launch
    monkeypatch.setattr(cuda_launch, "launch", lambda kernel, *a, **k: launches.append(
        cuda_launch.kernel_name(kernel)) or real(kernel, *a, **k))
    got = device.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0).history
    optimizer_launches = [name for name in launches if "optimizer" in name]
    assert len(optimizer_launches) == 6 and all("AdamRule" in name for name in optimizer_launches), optimizer_launches
    assert all(w._authority is not None for w in device.trainable_weights)  # updated where they live
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-5, err_msg=key)
    for w_dev, w_host in zip(device.get_weights(), host.get_weights()):
        np.testing.assert_allclose(w_dev, w_host, rtol=1e-5, atol=1e-6)
