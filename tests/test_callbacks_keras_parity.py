"""gpuconv.callbacks decide what Keras 3.15's keras.callbacks decide, on the same logs.

Each test builds a Keras callback and the gpuconv one from the same arguments, drives each with
its own library's ``CallbackList`` through the same simulated ``fit`` (callbacks_fakes.drive_fit:
Keras' hook order, one fake model per library), and compares what happened: the epoch training
stopped at, the weights restored, the learning rates reached, the files written (names, order,
contents), the CSV text, the history, and everything printed. Log sequences come from a seeded
generator and include plateaus, float32 ties and missing keys. Constructor errors and warnings
are compared by text. Only Keras' decisions are the reference here; test_callbacks.py checks the
same callbacks against hand-computed expectations.
"""
import os
import time
import warnings

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "torch"  # before keras is imported anywhere in this process
keras = pytest.importorskip("keras", reason="callback parity needs keras>=3.15 with the torch backend "
                            "(pip install .[parity])", exc_type=ImportError)

from gpuconv import callbacks as gcallbacks  # noqa: E402
from gpuconv.utils import progbar as gprogbar  # noqa: E402

from callbacks_fakes import FakeModel, drive_evaluate, drive_fit, drive_predict  # noqa: E402

LIBRARIES = {"keras": keras.callbacks, "gpuconv": gcallbacks}


def _plateau_logs(seed, epochs=14, key="val_loss"):
    """Decreasing-then-flat values with noise, some steps repeated exactly, one float32 tie."""
    rng = np.random.default_rng(seed)
    values = np.maximum(1.0 - 0.15 * np.arange(epochs), 0.3) + rng.normal(0, 0.02, epochs) * (rng.random(epochs) < 0.6)
    if epochs > 2:
        values[rng.integers(1, epochs)] = values[0]
        tie = int(rng.integers(2, epochs))
        values[tie] = float(np.float32(values[tie - 1])) + 1e-9  # equal to the previous one in float32
    return [{key: float(v), "loss": float(v) + 0.1, "accuracy": float(1 - v)} for v in values]


def _run_both(make, epoch_logs, capsys, monkeypatch, tmp_path, **drive_kwargs):
    """Run ``make(library)``'s callbacks in each library; return {library: (ran, model, out, cb)}."""
    results = {}
    for name, library in LIBRARIES.items():
        workdir = tmp_path / name
        workdir.mkdir()
        monkeypatch.chdir(workdir)  # relative paths: printed messages name the same files
        model = FakeModel()
        callbacks = make(library)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ran = drive_fit(library.CallbackList, callbacks, model, epoch_logs, **drive_kwargs)
        results[name] = (ran, model, capsys.readouterr().out, callbacks, [str(w.message) for w in caught])
    return results


def _assert_same_run(results):
    (k_ran, k_model, k_out, _, k_warn), (g_ran, g_model, g_out, _, g_warn) = results["keras"], results["gpuconv"]
    assert g_ran == k_ran
    assert g_out == k_out
    assert g_warn == k_warn
    assert g_model.stop_training == k_model.stop_training
    assert g_model.set_weights_calls == k_model.set_weights_calls
    for g, k in zip(g_model.get_weights(), k_model.get_weights()):
        np.testing.assert_array_equal(g, k)
    assert g_model.history.history == k_model.history.history
    assert g_model.history.epoch == k_model.history.epoch


EARLY_STOPPING_CASES = [
    {"monitor": "val_loss"},
    {"monitor": "val_loss", "patience": 2},
    {"monitor": "val_loss", "patience": 3, "restore_best_weights": True, "verbose": 1},
    {"monitor": "val_loss", "patience": 1, "min_delta": 0.05, "verbose": 1},
    {"monitor": "val_loss", "patience": 2, "baseline": 0.5, "restore_best_weights": True},
    {"monitor": "val_loss", "patience": 2, "baseline": 0.05, "restore_best_weights": True, "verbose": 1},
    {"monitor": "accuracy", "mode": "max", "patience": 2, "restore_best_weights": True},
    {"monitor": "loss", "patience": 0, "start_from_epoch": 4, "verbose": 1},
    {"monitor": "val_loss", "mode": "min", "patience": 4, "min_delta": -0.01},
    {"monitor": "missing", "mode": "min", "patience": 1},
]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("case", range(len(EARLY_STOPPING_CASES)))
def test_early_stopping(case, seed, capsys, monkeypatch, tmp_path):
    kwargs = EARLY_STOPPING_CASES[case]
    results = _run_both(lambda lib: [lib.EarlyStopping(**kwargs)], _plateau_logs(seed), capsys, monkeypatch, tmp_path)
    _assert_same_run(results)
    k_cb, g_cb = results["keras"][3][0], results["gpuconv"][3][0]
    assert (g_cb.stopped_epoch, g_cb.best_epoch, g_cb.wait) == (k_cb.stopped_epoch, k_cb.best_epoch, k_cb.wait)
    assert g_cb.best == k_cb.best


def test_early_stopping_cases_do_stop_and_restore(capsys, monkeypatch, tmp_path):
    """The cases above exercise an actual stop and an actual restore (not only full runs)."""
    results = _run_both(lambda lib: [lib.EarlyStopping(patience=2, restore_best_weights=True)], _plateau_logs(0),
                        capsys, monkeypatch, tmp_path)
    ran, model = results["gpuconv"][0], results["gpuconv"][1]
    assert len(ran) < len(_plateau_logs(0)) and model.stop_training
    assert model.set_weights_calls == len(ran) + 1


REDUCE_LR_CASES = [
    {"monitor": "val_loss", "patience": 1, "verbose": 1},
    {"monitor": "val_loss", "factor": 0.5, "patience": 2, "cooldown": 1, "verbose": 1},
    {"monitor": "val_loss", "factor": 0.2, "patience": 0, "min_lr": 0.0005, "verbose": 1},
    {"monitor": "accuracy", "mode": "max", "factor": 0.5, "patience": 1, "min_delta": 0.01},
    {"monitor": "val_loss", "factor": 0.9, "patience": 1, "cooldown": 3, "min_delta": 0.0},
    {"monitor": "missing", "patience": 1, "mode": "min"},
]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("case", range(len(REDUCE_LR_CASES)))
def test_reduce_lr_on_plateau(case, seed, capsys, monkeypatch, tmp_path):
    kwargs = REDUCE_LR_CASES[case]
    rates = {name: [] for name in LIBRARIES}

    def make(lib):
        name = "keras" if lib is keras.callbacks else "gpuconv"
        record = lib.LambdaCallback(on_epoch_end=lambda epoch, logs: rates[name].append(
            float(record.model.optimizer.learning_rate)))
        return [lib.ReduceLROnPlateau(**kwargs), record]

    results = _run_both(make, _plateau_logs(seed), capsys, monkeypatch, tmp_path)
    _assert_same_run(results)
    assert rates["gpuconv"] == rates["keras"]
    if case < 3:
        assert len(set(rates["gpuconv"])) > 1  # a reduction happened
    k_cb, g_cb = results["keras"][3][0], results["gpuconv"][3][0]
    assert (g_cb.wait, g_cb.cooldown_counter, g_cb.best) == (k_cb.wait, k_cb.cooldown_counter, k_cb.best)


def test_reduce_lr_on_plateau_with_real_optimizers(monkeypatch):
    """Keras' SGD and gpuconv's SGD (float32 rate variables) reach the same rates."""
    gpuconv_optimizers = pytest.importorskip("gpuconv.optimizers")
    logs = _plateau_logs(5, epochs=12)
    rates = {}
    for name, library, optimizer in (("keras", keras.callbacks, keras.optimizers.SGD(learning_rate=0.1)),
                                     ("gpuconv", gcallbacks, gpuconv_optimizers.SGD(learning_rate=0.1))):
        model = FakeModel(optimizer=optimizer)
        callback = library.ReduceLROnPlateau(factor=0.3, patience=1, min_lr=0.001)
        seen = []
        record = library.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(
            float(np.asarray(model.optimizer.learning_rate))))
        drive_fit(library.CallbackList, [callback, record], model, logs)
        rates[name] = (seen, model.history.history["learning_rate"])
    assert rates["gpuconv"] == rates["keras"]
    assert len(set(rates["gpuconv"][0])) > 2


def _schedules():
    return {
        "two-args": lambda epoch, lr: lr * 0.5 if epoch % 2 else lr,
        "one-arg": lambda epoch: 0.1 / (epoch + 1),
        "numpy-float32": lambda epoch, lr: np.float32(lr * 0.9),
    }


@pytest.mark.parametrize("schedule", sorted(_schedules()))
@pytest.mark.parametrize("verbose", [0, 1])
def test_learning_rate_scheduler(schedule, verbose, capsys, monkeypatch, tmp_path):
    function = _schedules()[schedule]
    results = _run_both(lambda lib: [lib.LearningRateScheduler(function, verbose=verbose)], _plateau_logs(1, epochs=6),
                        capsys, monkeypatch, tmp_path)
    _assert_same_run(results)
    assert len(set(results["gpuconv"][1].history.history["learning_rate"])) > 1
    if verbose:
        assert "LearningRateScheduler setting learning rate to" in results["gpuconv"][2]


def test_learning_rate_scheduler_rejects_non_float_like_keras(monkeypatch, tmp_path):
    messages = []
    for library in LIBRARIES.values():
        with pytest.raises(ValueError) as error:
            drive_fit(library.CallbackList, [library.LearningRateScheduler(lambda epoch, lr: 1)], FakeModel(),
                      _plateau_logs(0, epochs=2))
        messages.append(str(error.value))
    assert messages[0] == messages[1]


CHECKPOINT_CASES = [
    {"filepath": "ckpt/{epoch:02d}.weights.h5", "save_weights_only": True},
    {"filepath": "{epoch:02d}-{val_loss:.2f}.weights.h5", "save_weights_only": True, "save_best_only": True,
     "verbose": 1},
    {"filepath": "best.keras", "save_best_only": True, "monitor": "accuracy", "mode": "max", "verbose": 1},
    {"filepath": "model-{epoch}.keras", "save_best_only": True, "initial_value_threshold": 0.45, "verbose": 1},
    {"filepath": "b/{epoch}-{batch}.weights.h5", "save_weights_only": True, "save_freq": 3, "verbose": 1},
    # (save_best_only with an integer save_freq is left out: Keras 3.15 sets its comparison only at
    # the first epoch end and fails at the second batch-level save; test_callbacks.py covers it.)
    {"filepath": "last.h5", "save_freq": 2, "monitor": "loss", "verbose": 1},
    {"filepath": "m.keras", "save_best_only": True, "monitor": "missing", "mode": "min"},
]


def _batch_logs(epoch_logs, steps=4):
    return [[{"loss": log["loss"] + 0.01 * (steps - s), "accuracy": log["accuracy"]} for s in range(steps)]
            for log in epoch_logs]


def _written(tmp_path, name):
    root = tmp_path / name
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("seed", [0, 2])
@pytest.mark.parametrize("case", range(len(CHECKPOINT_CASES)))
def test_model_checkpoint(case, seed, capsys, monkeypatch, tmp_path):
    kwargs = CHECKPOINT_CASES[case]
    logs = _plateau_logs(seed, epochs=8)
    results = _run_both(lambda lib: [lib.ModelCheckpoint(**kwargs)], logs, capsys, monkeypatch, tmp_path,
                        batch_logs=_batch_logs(logs))
    _assert_same_run(results)
    k_model, g_model = results["keras"][1], results["gpuconv"][1]
    assert g_model.saves == k_model.saves
    assert g_model.saves, "the case saved nothing"
    assert _written(tmp_path, "gpuconv") == _written(tmp_path, "keras")


def test_model_checkpoint_directory_filepath_is_keras_error(monkeypatch, tmp_path):
    messages = []
    for name, library in LIBRARIES.items():
        (tmp_path / name / "taken.keras").mkdir(parents=True)
        monkeypatch.chdir(tmp_path / name)
        with pytest.raises(IOError) as error:
            drive_fit(library.CallbackList, [library.ModelCheckpoint("taken.keras")], FakeModel(),
                      _plateau_logs(0, epochs=1))
        messages.append(str(error.value))
    assert messages[0] == messages[1]


def _csv_logs():
    return [{"loss": 0.5, "accuracy": np.float32(0.25)},
            {"loss": 0.25, "accuracy": 0.5, "val_loss": 0.75, "val_accuracy": 0.125},
            {"loss": float("nan"), "accuracy": 1.0, "note": "text, with comma"},
            {"loss": np.array([1.0, 2.0]), "accuracy": 0.75}]


@pytest.mark.parametrize("separator", [",", ";", "\t"])
@pytest.mark.parametrize("append", [False, True])
def test_csv_logger(separator, append, capsys, monkeypatch, tmp_path):
    texts = {}
    for name, library in LIBRARIES.items():
        path = tmp_path / f"{name}.csv"
        if append:
            path.write_text("")  # an empty existing file: the header is still written
        for start in (0, 2):  # two fit calls on one logger, as a resumed training does
            logs = _csv_logs()
            drive_fit(library.CallbackList, [library.CSVLogger(path, separator=separator, append=append)],
                      FakeModel(), logs, initial_epoch=start)
        texts[name] = path.read_text()
    assert texts["gpuconv"] == texts["keras"]
    assert "NA" in texts["gpuconv"]


def test_csv_logger_val_keys_first(tmp_path):
    texts = {}
    for name, library in LIBRARIES.items():
        path = tmp_path / f"{name}.csv"
        logs = [{"loss": 0.5, "val_loss": 0.6}, {"loss": 0.4}]
        drive_fit(library.CallbackList, [library.CSVLogger(str(path))], FakeModel(), logs)
        texts[name] = path.read_text()
    assert texts["gpuconv"] == texts["keras"]


@pytest.mark.parametrize("raise_error", [False, True])
def test_terminate_on_nan(raise_error, capsys):
    logs = [{"loss": 0.5}, {"loss": 0.4}, {"loss": 0.3}]
    batches = [[{"loss": 0.5}, {"loss": 0.4}], [{"loss": 0.3}, {"loss": float("inf")}], [{"loss": float("nan")}] * 2]
    outcomes = {}
    for name, library in LIBRARIES.items():
        model = FakeModel()
        try:
            ran = drive_fit(library.CallbackList, [library.TerminateOnNaN(raise_error=raise_error)], model, logs,
                            batch_logs=batches)
        except RuntimeError as error:
            ran = str(error)
        outcomes[name] = (ran, model.stop_training, capsys.readouterr().out)
    assert outcomes["gpuconv"] == outcomes["keras"]
    assert outcomes["gpuconv"][0] != [0, 1, 2]


def test_lambda_callback_call_order():
    calls = {}
    for name, library in LIBRARIES.items():
        seen = calls[name] = []
        hooks = {hook: (lambda hook: lambda *args, **kwargs: seen.append((hook, args, sorted(kwargs))))(hook)
                 for hook in ("on_epoch_begin", "on_epoch_end", "on_train_begin", "on_train_end",
                              "on_train_batch_begin", "on_train_batch_end", "on_test_begin", "on_test_end",
                              "on_test_batch_begin", "on_test_batch_end", "on_predict_begin", "on_predict_end",
                              "on_predict_batch_begin", "on_predict_batch_end")}
        callback = library.LambdaCallback(**hooks)
        model = FakeModel()
        logs = _plateau_logs(0, epochs=3)
        drive_fit(library.CallbackList, [callback], model, logs, batch_logs=_batch_logs(logs, steps=2))
        drive_evaluate(library.CallbackList, [callback], model, [{"loss": 1.0}] * 2, {"loss": 1.0}, steps=2)
        drive_predict(library.CallbackList, [callback], model, steps=2)
    assert calls["gpuconv"] == calls["keras"]
    assert len(calls["gpuconv"]) == 2 + 3 * 2 + 3 * 2 * 2 + 2 + 2 * 2 + 2 + 2 * 2


def _fixed_clock(monkeypatch, step=0.137):
    """``time.time`` advancing ``step`` seconds per call from a fixed start, rewound by ``reset``."""
    state = {"now": 0.0}

    def now():
        state["now"] += step
        return 1_000_000.0 + state["now"]

    monkeypatch.setattr(time, "time", now)
    return lambda: state.update(now=0.0)


def _progbar_outputs(run, capsys, monkeypatch, dynamic):
    """stdout of ``run(library)`` in each library, same clock, both bars dynamic or both plain."""
    reset = _fixed_clock(monkeypatch)
    monkeypatch.setattr(gprogbar, "_is_interactive", lambda stream: dynamic)
    outputs = {}
    for name, library in LIBRARIES.items():
        reset()
        with monkeypatch.context() as patch:
            if not dynamic:
                patch.delitem(__import__("sys").modules, "posix")  # Keras redraws wherever posix is loaded
            run(library)
        outputs[name] = capsys.readouterr().out
    return outputs


@pytest.mark.parametrize("verbose", [1, 2, "auto"])
@pytest.mark.parametrize("dynamic", [True, False], ids=["tty", "pipe"])
@pytest.mark.parametrize("epochs", [1, 3])
def test_progbar_logger_fit(verbose, dynamic, epochs, capsys, monkeypatch):
    logs = _plateau_logs(4, epochs=epochs)

    def run(library):
        # The logger is passed explicitly: Keras then dispatches batch hooks synchronously, in order.
        drive_fit(library.CallbackList, [library.ProgbarLogger()], FakeModel(), logs,
                  batch_logs=_batch_logs(logs, steps=5), verbose=verbose)

    outputs = _progbar_outputs(run, capsys, monkeypatch, dynamic)
    assert outputs["gpuconv"] == outputs["keras"]
    assert ("Epoch 1/3" in outputs["gpuconv"]) == (epochs == 3)
    assert "accuracy:" in outputs["gpuconv"]


@pytest.mark.parametrize("verbose", [1, 2])
def test_progbar_logger_unknown_steps(verbose, capsys, monkeypatch):
    logs = _plateau_logs(2, epochs=2)

    def run(library):
        drive_fit(library.CallbackList, [library.ProgbarLogger()], FakeModel(), logs,
                  batch_logs=_batch_logs(logs, steps=3), verbose=verbose, steps=None)

    outputs = _progbar_outputs(run, capsys, monkeypatch, True)
    assert outputs["gpuconv"] == outputs["keras"]
    assert "Unknown" in outputs["gpuconv"] or verbose == 2


@pytest.mark.parametrize("verbose", [1, 2])
def test_progbar_logger_evaluate_and_predict(verbose, capsys, monkeypatch):
    def run(library):
        logger = library.ProgbarLogger()
        drive_evaluate(library.CallbackList, [logger], FakeModel(), [{"loss": 0.5 - 0.1 * s} for s in range(4)],
                       {"loss": 0.3, "mae": 2e-4}, verbose=verbose, steps=4)
        drive_predict(library.CallbackList, [library.ProgbarLogger()], FakeModel(), steps=3, verbose=verbose)

    outputs = _progbar_outputs(run, capsys, monkeypatch, True)
    assert outputs["gpuconv"] == outputs["keras"]
    assert "mae: 2.0000e-04" in outputs["gpuconv"]


def test_progbar_logger_validation_inside_fit_is_silent(capsys, monkeypatch):
    def run(library):
        logger = library.ProgbarLogger()
        cbs = library.CallbackList([logger], add_history=True, model=FakeModel(), verbose=1, epochs=2, steps=2)
        cbs.on_train_begin()
        for epoch in range(2):
            cbs.on_epoch_begin(epoch)
            for step in range(2):
                cbs.on_train_batch_begin(step)
                cbs.on_train_batch_end(step, {"loss": 1.0 / (step + 1)})
            cbs.on_test_begin()
            cbs.on_test_batch_begin(0)
            cbs.on_test_batch_end(0, {"loss": 9.0})
            cbs.on_test_end({"loss": 9.0})
            cbs.on_epoch_end(epoch, {"loss": 0.75, "val_loss": 9.0})
        cbs.on_train_end()

    outputs = _progbar_outputs(run, capsys, monkeypatch, True)
    assert outputs["gpuconv"] == outputs["keras"]
    assert "val_loss: 9.0000" in outputs["gpuconv"] and "- loss: 9.0000" not in outputs["gpuconv"]


@pytest.mark.parametrize("kwargs", [{}, {"save_freq": 2}, {"double_checkpoint": True},
                                    {"delete_checkpoint": False}, {"double_checkpoint": True, "save_freq": 1}])
def test_backup_and_restore(kwargs, monkeypatch, tmp_path):
    """An interrupted fit then a resumed one: the same files, metadata, restored weights and
    optimizer step, and the resumed fit starts at the same epoch."""
    logs = _plateau_logs(3, epochs=6)
    outcome = {}
    for name, library in LIBRARIES.items():
        backup = tmp_path / name / "backup"
        model = FakeModel()
        with pytest.raises(RuntimeError):
            drive_fit(library.CallbackList, [library.BackupAndRestore(str(backup), **kwargs)], model, logs,
                      batch_logs=_batch_logs(logs, steps=3), interrupt_at=3)
        after_interrupt = _written(tmp_path / name, "backup")
        resumed = FakeModel()
        ran = drive_fit(library.CallbackList, [library.BackupAndRestore(str(backup), **kwargs)], resumed, logs,
                        batch_logs=_batch_logs(logs, steps=3))
        outcome[name] = (after_interrupt, ran, resumed.loads and os.path.basename(resumed.loads[0]),
                         resumed._initial_epoch, _written(tmp_path / name, "backup"))
    assert outcome["gpuconv"] == outcome["keras"]
    # Batch-level backups record the epochs finished before the one they were taken in: the
    # interrupted run's last backup came from inside epoch 2, which then runs again.
    assert outcome["gpuconv"][1] == ([3, 4, 5] if kwargs.get("save_freq", "epoch") == "epoch" else [2, 3, 4, 5])


def test_backup_and_restore_falls_back_to_previous_checkpoint(tmp_path):
    outcome = {}
    for name, library in LIBRARIES.items():
        backup = tmp_path / name
        logs = _plateau_logs(1, epochs=4)
        with pytest.raises(RuntimeError):
            drive_fit(library.CallbackList, [library.BackupAndRestore(str(backup), double_checkpoint=True)],
                      FakeModel(), logs, interrupt_at=3)
        (backup / "latest.weights.h5").write_text("{ corrupted")
        resumed = FakeModel()

        def load_or_oserror(path, load=resumed.load_weights):
            try:
                load(path)
            except ValueError as error:  # what h5py raises for an unreadable file is an OSError
                raise OSError(str(error))

        resumed.load_weights = load_or_oserror
        ran = drive_fit(library.CallbackList, [library.BackupAndRestore(str(backup), double_checkpoint=True)],
                        resumed, logs)
        outcome[name] = (ran, resumed.get_weights()[0].tolist())
    assert outcome["gpuconv"] == outcome["keras"]
    assert outcome["gpuconv"][0] == [2, 3]


def _error_text(factory, error_class):
    with pytest.raises(error_class) as error:
        factory()
    return str(error.value)


@pytest.mark.parametrize("make, error_class", [
    (lambda lib: lib.ModelCheckpoint("weights.h5", save_weights_only=True), ValueError),
    (lambda lib: lib.ModelCheckpoint("model.weights"), ValueError),
    (lambda lib: lib.ModelCheckpoint("m.keras", save_freq="batch"), ValueError),
    (lambda lib: lib.ModelCheckpoint("m.keras", save_freq=1.5), ValueError),
    (lambda lib: lib.ReduceLROnPlateau(factor=1.0), ValueError),
    (lambda lib: lib.ReduceLROnPlateau(factor=2), ValueError),
    (lambda lib: lib.BackupAndRestore(""), ValueError),
    (lambda lib: lib.BackupAndRestore("dir", save_freq="step"), ValueError),
], ids=["weights-suffix", "model-suffix", "save-freq-str", "save-freq-float", "factor-1", "factor-2",
        "empty-backup-dir", "backup-save-freq"])
def test_constructor_errors_match_keras(make, error_class):
    assert _error_text(lambda: make(gcallbacks), error_class) == _error_text(lambda: make(keras.callbacks), error_class)


@pytest.mark.parametrize("make", [
    lambda lib: lib.EarlyStopping(mode="minimum"),
    lambda lib: lib.ReduceLROnPlateau(mode="best"),
    lambda lib: lib.ModelCheckpoint("m.keras", mode="up"),
], ids=["early-stopping", "reduce-lr", "checkpoint"])
def test_unknown_mode_warns_like_keras(make):
    texts = []
    for library in (keras.callbacks, gcallbacks):
        with pytest.warns(UserWarning) as caught:
            callback = make(library)
        texts.append([str(w.message) for w in caught])
        assert callback.mode == "auto"
    assert texts[0] == texts[1]


def test_auto_mode_error_matches_keras():
    texts = []
    for library in (keras.callbacks, gcallbacks):
        callback = library.EarlyStopping(monitor="val_f2")
        callback.set_model(FakeModel())
        texts.append(_error_text(lambda: callback.on_epoch_end(0, {"val_f2": 1.0}), ValueError))
    assert texts[0] == texts[1]


@pytest.mark.parametrize("metric", ["Accuracy", "SparseCategoricalAccuracy", "AUC", "MeanSquaredError",
                                    "SparseCategoricalCrossentropy", "Precision"])
def test_auto_mode_follows_metric_direction_like_keras(metric):
    """Given a Keras metric object among the model's metrics, auto mode picks Keras' direction."""
    keras_metric = getattr(keras.metrics, metric)(name="score")

    class Container:  # how a compiled model groups its metrics
        metrics = [keras_metric]

    model = FakeModel()
    model.metrics = [Container()]
    callback = gcallbacks.EarlyStopping(monitor="val_score")
    callback.set_model(model)
    callback.on_train_begin()
    callback.on_epoch_end(0, {"val_score": 0.5})
    expected_up = keras_metric._direction == "up"
    assert callback._is_improvement(0.6, 0.5) is expected_up
    assert callback._is_improvement(0.4, 0.5) is not expected_up


@pytest.mark.parametrize("verbose", [1, 2])
def test_real_fit_prints_and_records_what_keras_does(verbose, capsys, monkeypatch):
    """The same tiny Dense model (Keras' initial weights copied), data and callbacks in a real
    Keras fit and a real gpuconv fit: identical printed text (a frozen clock, so the times read
    0s), the same History keys and learning rates, and epoch results within 1e-5."""
    import gpuconv
    from gpuconv import layers, optimizers

    monkeypatch.setattr(time, "time", lambda: 1_000_000.0)
    monkeypatch.setattr(gprogbar, "_is_interactive", lambda stream: True)  # Keras redraws on posix
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3)).astype("float32")
    y = (x[:, :2] * 2.0).astype("float32")
    keras_model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    keras_model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse", metrics=["mae"])
    gpuconv_model = gpuconv.Sequential([layers.Input((3,)), layers.Dense(2)])
    gpuconv_model.compile(optimizer=optimizers.SGD(learning_rate=0.1), loss="mse", metrics=["mae"])
    gpuconv_model.set_weights(keras_model.get_weights())
    outputs, histories = {}, {}
    for name, model, library in (("keras", keras_model, keras.callbacks), ("gpuconv", gpuconv_model, gcallbacks)):
        # An explicit logger keeps Keras' batch hooks synchronous (ordered output).
        cbs = [library.ProgbarLogger(), library.ReduceLROnPlateau(monitor="loss", patience=0, min_delta=1e9,
                                                                   factor=0.5)]
        histories[name] = model.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=verbose,
                                    validation_split=0.25, callbacks=cbs).history
        model.evaluate(x, y, verbose=verbose)
        outputs[name] = capsys.readouterr().out
    assert outputs["gpuconv"] == outputs["keras"]
    assert "Epoch 3/3" in outputs["gpuconv"] and "val_mae: " in outputs["gpuconv"]
    assert sorted(histories["gpuconv"]) == sorted(histories["keras"])
    assert histories["gpuconv"]["learning_rate"] == histories["keras"]["learning_rate"]
    for key in ("loss", "mae", "val_loss", "val_mae"):
        np.testing.assert_allclose(histories["gpuconv"][key], histories["keras"][key], rtol=1e-5)
