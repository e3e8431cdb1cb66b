"""gpuconv.callbacks against hand-computed expectations (no Keras needed).

The callbacks run on the stand-in model and ``fit`` loop of callbacks_fakes.py: the base class'
hooks and aliases, CallbackList's ordering, log conversion and skipping of unused batch hooks,
each callback's decisions on short log sequences worked out by hand, the files they write, and
the arguments they reject. The last section runs each callback once through a real
``gpuconv.Sequential.fit`` on a tiny Dense model. test_callbacks_keras_parity.py compares the
same callbacks with Keras' own.
"""
import json
import os

import numpy as np
import pytest

import gpuconv
from gpuconv import callbacks
from gpuconv.callbacks.callback import is_default_hook
from gpuconv.callbacks.logs import plain_logs

from callbacks_fakes import FakeModel, FakeOptimizer, drive_fit, epoch_weights
from conftest import gpu_xp, requires_cuda


def _losses(*values, key="val_loss"):
    return [{key: v} for v in values]


class Recorder(callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.calls = []

    def on_batch_begin(self, batch, logs=None):
        self.calls.append(("batch_begin", batch))

    def on_batch_end(self, batch, logs=None):
        self.calls.append(("batch_end", batch, logs))

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(("epoch_end", epoch, logs))


# ---- Callback and CallbackList ------------------------------------------------------------------
def test_base_callback_hooks_and_aliases():
    recorder = Recorder()
    recorder.on_train_batch_begin(3)
    recorder.on_train_batch_end(3, logs={"loss": 1.0})
    assert recorder.calls == [("batch_begin", 3), ("batch_end", 3, {"loss": 1.0})]
    base = callbacks.Callback()
    assert base.model is None and base.params is None
    for hook in ("on_epoch_begin", "on_epoch_end", "on_test_batch_end", "on_predict_end", "on_train_begin"):
        assert is_default_hook(getattr(base, hook))
    assert not is_default_hook(recorder.on_batch_end)
    model = FakeModel()
    base.set_model(model)
    base.set_params({"epochs": 2})
    assert base.model is model and base.params == {"epochs": 2}


def test_callback_list_appends_history_then_progbar():
    user = Recorder()
    cbs = callbacks.CallbackList([user], add_history=True, add_progbar=True, model=FakeModel(), verbose=1,
                                 epochs=1, steps=1)
    assert [type(cb) for cb in cbs.callbacks] == [Recorder, callbacks.History, callbacks.ProgbarLogger]
    assert cbs.callbacks[1].model.history is cbs.callbacks[1]
    assert user.params == {"verbose": 1, "epochs": 1, "steps": 1}


def test_callback_list_reuses_given_history_and_flattens():
    history, logger = callbacks.History(), callbacks.ProgbarLogger()
    cbs = callbacks.CallbackList([[history], (logger,)], add_history=True, add_progbar=True)
    assert cbs.callbacks == [history, logger]


def test_callback_list_rejects_non_callbacks():
    with pytest.raises(TypeError, match=r"callbacks\[1\]=.*int"):
        callbacks.CallbackList([callbacks.History(), 3])


def test_callback_list_end_without_begin():
    cbs = callbacks.CallbackList([])
    with pytest.raises(ValueError, match="without corresponding"):
        cbs.on_test_end()


def test_logs_are_plain_sorted_and_shared():
    seen = []
    adder = callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: logs.update(extra=1.0))
    reader = callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(logs))
    cbs = callbacks.CallbackList([adder, reader])
    cbs.on_epoch_end(0, {"z": np.float32(0.5), "a": np.array(2), "nested": {"m": np.array([3.0])},
                         "vec": np.array([1.0, 2.0]), "name": "text"})
    logs = seen[0]
    assert list(logs) == ["a", "name", "m", "vec", "z", "extra"]  # a nested dict sorts under its key
    assert type(logs["a"]) is float and type(logs["z"]) is float and logs["m"] == 3.0
    assert isinstance(logs["vec"], np.ndarray) and logs["name"] == "text"


def test_unused_batch_hooks_do_not_touch_logs():
    class Watched:
        reads = 0

        def __float__(self):
            Watched.reads += 1
            return 1.0

    cbs = callbacks.CallbackList([callbacks.History()])
    assert not cbs.wants_batch_logs("on_train_batch_end")
    cbs.on_train_batch_end(0, {"loss": Watched()})
    assert Watched.reads == 0
    cbs = callbacks.CallbackList([callbacks.TerminateOnNaN()])  # overrides the on_batch_end alias
    assert cbs.wants_batch_logs("on_train_batch_end")
    cbs.set_model(FakeModel())
    cbs.on_train_batch_end(0, {"loss": Watched()})
    assert Watched.reads == 1


@pytest.mark.gpu
@requires_cuda
def test_plain_logs_on_device_arrays():
    """CuPy scalars on a real GPU (brought over together), emulator arrays on the emulator."""
    xp = gpu_xp()
    logs = plain_logs({"loss": xp.asarray(np.float32(0.25)), "acc": xp.asarray(np.array([0.5])),
                       "n": xp.asarray(np.int64(7)), "vec": xp.asarray(np.array([1.0, 2.0]))})
    assert logs["acc"] == 0.5 and logs["loss"] == 0.25 and logs["n"] == 7.0
    assert all(type(logs[k]) is float for k in ("acc", "loss", "n"))
    np.testing.assert_array_equal(gpuconv.to_numpy(logs["vec"]), [1.0, 2.0])


# ---- History ------------------------------------------------------------------------------------
def test_history_records_and_spans_fits():
    model = FakeModel()
    history = callbacks.History()
    drive_fit(callbacks.CallbackList, [history], model, [{"loss": 1.0}, {"loss": 0.5}])
    drive_fit(callbacks.CallbackList, [history], model, [{"loss": 0.25}])
    assert history.history == {"loss": [1.0, 0.5, 0.25]}
    assert history.epoch == [0]  # restarts with each fit
    assert model.history is history


# ---- EarlyStopping ------------------------------------------------------------------------------
def test_early_stopping_patience_and_restore(capsys):
    model = FakeModel()
    stopper = callbacks.EarlyStopping(patience=2, restore_best_weights=True, verbose=1)
    ran = drive_fit(callbacks.CallbackList, [stopper], model, _losses(1.0, 0.8, 0.9, 0.85, 0.7, 0.6))
    assert ran == [0, 1, 2, 3]  # 0.8 at epoch 1 is not beaten twice
    assert model.stop_training and stopper.stopped_epoch == 3 and stopper.best_epoch == 1
    np.testing.assert_array_equal(model.get_weights()[0], epoch_weights(1)[0])
    assert capsys.readouterr().out == ("Epoch 4: early stopping\n"
                                       "Restoring model weights from the end of the best epoch: 2.\n")


def test_early_stopping_min_delta_and_max_mode():
    model = FakeModel()
    stopper = callbacks.EarlyStopping(monitor="acc", mode="max", min_delta=0.05, patience=1)
    ran = drive_fit(callbacks.CallbackList, [stopper], model, _losses(0.5, 0.56, 0.6, 0.64, 0.9, key="acc"))
    # 0.6 and 0.64 improve on 0.56 by less than 0.05: two epochs without improvement.
    assert ran == [0, 1, 2]


def test_early_stopping_baseline_and_warmup():
    losses = _losses(0.9, 0.8, 0.85, 0.7, 0.75, 0.76)
    # Without a baseline each improvement resets the count: two misses in a row only at the end.
    plain = callbacks.EarlyStopping(patience=2)
    assert drive_fit(callbacks.CallbackList, [plain], FakeModel(), losses) == [0, 1, 2, 3, 4, 5]
    # Improvements that stay above the baseline do not reset it: the third epoch is the second miss.
    stopper = callbacks.EarlyStopping(patience=2, baseline=0.5)
    assert drive_fit(callbacks.CallbackList, [stopper], FakeModel(), losses) == [0, 1, 2]
    warm = callbacks.EarlyStopping(patience=0, start_from_epoch=2)
    assert drive_fit(callbacks.CallbackList, [warm], FakeModel(), _losses(0.1, 0.9, 0.9, 0.9, 0.9)) == [0, 1, 2, 3]


def test_early_stopping_missing_monitor_warns():
    with pytest.warns(UserWarning, match="`val_loss` which is not available. Available metrics are: loss"):
        ran = drive_fit(callbacks.CallbackList, [callbacks.EarlyStopping()], FakeModel(), [{"loss": 1.0}] * 3)
    assert ran == [0, 1, 2]


def test_auto_mode_uses_metric_direction():
    class Metric:
        def __init__(self, name, direction):
            self.name, self._direction = name, direction

    model = FakeModel()
    model.metrics = [Metric("loss", None), type("Group", (), {"metrics": [Metric("accuracy", "up")]})()]
    stopper = callbacks.EarlyStopping(monitor="val_accuracy", patience=0)
    ran = drive_fit(callbacks.CallbackList, [stopper], model, _losses(0.5, 0.6, 0.55, 0.7, key="val_accuracy"))
    assert ran == [0, 1, 2]
    with pytest.raises(ValueError, match="monitor=val_f1, but Keras isn't able"):
        drive_fit(callbacks.CallbackList, [callbacks.EarlyStopping(monitor="val_f1")], model,
                  _losses(0.5, key="val_f1"))


@pytest.mark.parametrize("kwargs, error, pattern", [
    ({"patience": -1}, ValueError, r"`patience`.*Received: patience=-1"),
    ({"patience": 1.5}, ValueError, r"`patience`.*Received: patience=1.5"),
    ({"start_from_epoch": -2}, ValueError, r"`start_from_epoch`.*Received: start_from_epoch=-2"),
    ({"min_delta": "0.1"}, TypeError, r"`min_delta`.*Received: min_delta='0.1'"),
    ({"baseline": "low"}, TypeError, r"`baseline`.*Received: baseline='low'"),
    ({"monitor": 3}, TypeError, r"`monitor`.*Received: monitor=3"),
])
def test_early_stopping_bad_arguments(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        callbacks.EarlyStopping(**kwargs)


def test_unknown_mode_warns_and_falls_back():
    with pytest.warns(UserWarning, match="EarlyStopping mode 'lowest' is unknown, fallback to auto mode."):
        assert callbacks.EarlyStopping(mode="lowest").mode == "auto"


# ---- ReduceLROnPlateau --------------------------------------------------------------------------
def test_reduce_lr_on_plateau_sequence(capsys):
    model = FakeModel(optimizer=FakeOptimizer(0.1))
    reducer = callbacks.ReduceLROnPlateau(factor=0.5, patience=1, cooldown=2, min_lr=0.02, verbose=1)
    drive_fit(callbacks.CallbackList, [reducer], model, _losses(1.0, 1.0, 1.0, 1.0, 1.0, 1.0))
    rates = model.history.history["learning_rate"]
    # Logged at epoch end before that epoch's reduction; after a reduction the cooldown counts
    # down 2, 1 (no reduction), then 0 (a reduction): every second epoch. The last one is clipped.
    assert rates == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025], rel=1e-6)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.02)
    out = capsys.readouterr().out
    assert out.count("ReduceLROnPlateau reducing learning rate to") == 3
    assert "\nEpoch 2: ReduceLROnPlateau reducing learning rate to 0.05000000074505806.\n" in out


def test_reduce_lr_on_plateau_needs_an_optimizer():
    model = FakeModel()
    model.optimizer = None
    with pytest.raises(ValueError, match="model.optimizer` is None"):
        drive_fit(callbacks.CallbackList, [callbacks.ReduceLROnPlateau()], model, _losses(1.0))


@pytest.mark.parametrize("kwargs, error, pattern", [
    ({"factor": 1.0}, ValueError, "does not support a factor >= 1.0. Received factor=1.0"),
    ({"factor": "half"}, TypeError, "`factor`.*Received: factor='half'"),
    ({"patience": -3}, ValueError, "`patience`.*patience=-3"),
    ({"cooldown": -1}, ValueError, "`cooldown`.*cooldown=-1"),
    ({"min_lr": None}, TypeError, "`min_lr`.*min_lr=None"),
])
def test_reduce_lr_bad_arguments(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        callbacks.ReduceLROnPlateau(**kwargs)


def test_reduce_lr_ignored_kwargs_warn():
    with pytest.warns(UserWarning, match=r"ignores the arguments \['epsilon'\]"):
        callbacks.ReduceLROnPlateau(epsilon=1e-3)


# ---- LearningRateScheduler ----------------------------------------------------------------------
def test_learning_rate_scheduler_sets_and_logs(capsys):
    model = FakeModel(optimizer=FakeOptimizer(0.5))
    scheduler = callbacks.LearningRateScheduler(lambda epoch, lr: lr / 2.0 if epoch else lr, verbose=1)
    drive_fit(callbacks.CallbackList, [scheduler], model, [{"loss": 1.0}] * 3)
    assert model.history.history["learning_rate"] == [0.5, 0.25, 0.125]
    assert capsys.readouterr().out.startswith("\nEpoch 1: LearningRateScheduler setting learning rate to 0.5.\n")


def test_learning_rate_scheduler_checks():
    with pytest.raises(TypeError, match="`schedule`.*Received: schedule=0.1"):
        callbacks.LearningRateScheduler(0.1)
    with pytest.raises(ValueError, match="should be a float. Got: 1"):
        drive_fit(callbacks.CallbackList, [callbacks.LearningRateScheduler(lambda epoch: 1)], FakeModel(),
                  [{"loss": 1.0}])


# ---- ModelCheckpoint ----------------------------------------------------------------------------
def test_model_checkpoint_file_names_and_best_only(tmp_path, capsys):
    model = FakeModel()
    pattern = str(tmp_path / "{epoch:02d}-{val_loss:.2f}.weights.h5")
    checkpoint = callbacks.ModelCheckpoint(pattern, save_best_only=True, save_weights_only=True, verbose=1)
    drive_fit(callbacks.CallbackList, [checkpoint], model, _losses(0.9, 0.7, 0.8, 0.5))
    assert [os.path.basename(p) for _, p in model.saves] == ["01-0.90.weights.h5", "02-0.70.weights.h5",
                                                             "04-0.50.weights.h5"]
    assert {m for m, _ in model.saves} == {"save_weights"}
    saved = json.loads((tmp_path / "04-0.50.weights.h5").read_text())
    assert saved["weights"][0] == epoch_weights(3)[0].tolist()  # the weights at that epoch's end
    out = capsys.readouterr().out
    assert "Epoch 3: val_loss did not improve from 0.70000" in out
    assert "Epoch 2: val_loss improved from 0.90000 to 0.70000, saving model to" in out


def test_model_checkpoint_every_n_batches(tmp_path):
    model = FakeModel()
    checkpoint = callbacks.ModelCheckpoint(str(tmp_path / "m-{epoch}-{batch}.keras"), save_freq=3)
    logs = [{"loss": 1.0}] * 2
    drive_fit(callbacks.CallbackList, [checkpoint], model, logs, batch_logs=[[{"loss": 1.0}] * 4] * 2)
    # 8 batches, a save every third: epoch 1 batch 3, epoch 2 batches 2 (the count spans epochs).
    assert [os.path.basename(p) for _, p in model.saves] == ["m-1-3.keras", "m-2-2.keras"]
    assert {m for m, _ in model.saves} == {"save"}


def test_model_checkpoint_best_only_at_batch_level(tmp_path):
    """Keras 3.15 fails here (its comparison is set at the first epoch end); gpuconv saves the
    batches whose loss improves."""
    model = FakeModel()
    checkpoint = callbacks.ModelCheckpoint(str(tmp_path / "b{batch}.keras"), monitor="loss", save_best_only=True,
                                           save_freq=1)
    drive_fit(callbacks.CallbackList, [checkpoint], model, [{"loss": 0.0}],
              batch_logs=[[{"loss": 0.5}, {"loss": 0.6}, {"loss": 0.4}]])
    assert [os.path.basename(p) for _, p in model.saves] == ["b1.keras", "b3.keras"]


def test_model_checkpoint_missing_placeholder_key(tmp_path):
    checkpoint = callbacks.ModelCheckpoint(str(tmp_path / "{val_acc:.2f}.keras"))
    with pytest.raises(KeyError, match="Failed to format this callback filepath"):
        drive_fit(callbacks.CallbackList, [checkpoint], FakeModel(), _losses(0.5))


@pytest.mark.parametrize("kwargs, error, pattern", [
    ({"filepath": "w.h5", "save_weights_only": True}, ValueError, "must end in `.weights.h5`"),
    ({"filepath": "m.txt"}, ValueError, r"must end in `.keras` \(Keras model format\). Received: filepath=m.txt"),
    ({"filepath": "m.keras", "save_freq": 0}, ValueError, "`save_freq`.*Received: save_freq=0"),
    ({"filepath": "m.keras", "save_freq": "batch"}, ValueError, "Unrecognized save_freq: batch"),
    ({"filepath": 7}, TypeError, "`filepath`.*Received: filepath=7"),
    ({"filepath": "m.keras", "initial_value_threshold": "x"}, TypeError, "`initial_value_threshold`"),
])
def test_model_checkpoint_bad_arguments(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        callbacks.ModelCheckpoint(**kwargs)


# ---- CSVLogger ----------------------------------------------------------------------------------
def _text(path):
    with open(path, newline="") as f:  # the CSV writer's \r\n kept as written
        return f.read()


def test_csv_logger_text(tmp_path):
    path = tmp_path / "log.csv"
    logs = [{"loss": 0.5, "acc": 0.25}, {"loss": 0.25, "acc": 0.5, "val_loss": 0.75}]
    drive_fit(callbacks.CallbackList, [callbacks.CSVLogger(path, separator=";")], FakeModel(), logs)
    assert _text(path) == ("epoch;acc;loss;val_acc;val_loss\r\n"
                                "0;0.25;0.5;NA;NA\r\n"
                                "1;0.5;0.25;NA;0.75\r\n")
    drive_fit(callbacks.CallbackList, [callbacks.CSVLogger(path, separator=";", append=True)], FakeModel(),
              [{"loss": 0.125, "acc": 1.0}])
    assert _text(path).endswith("1;0.5;0.25;NA;0.75\r\n0;1.0;0.125;NA;NA\r\n")


@pytest.mark.parametrize("kwargs, error", [({"filename": 3}, TypeError), ({"filename": "a", "separator": ";;"},
                                                                            ValueError)])
def test_csv_logger_bad_arguments(kwargs, error):
    with pytest.raises(error, match="filename|separator"):
        callbacks.CSVLogger(**kwargs)


# ---- TerminateOnNaN and LambdaCallback ----------------------------------------------------------
def test_terminate_on_nan(capsys):
    model = FakeModel()
    ran = drive_fit(callbacks.CallbackList, [callbacks.TerminateOnNaN()], model, [{"loss": 1.0}] * 3,
                    batch_logs=[[{"loss": 1.0}], [{"loss": np.float32("nan")}, {"loss": 1.0}], [{"loss": 1.0}]])
    assert ran == [0, 1] and model.stop_training
    assert capsys.readouterr().out == "Batch 0: Invalid loss, terminating training\n"
    with pytest.raises(RuntimeError, match="NaN or Inf loss encountered at batch 0. Loss value: inf"):
        drive_fit(callbacks.CallbackList, [callbacks.TerminateOnNaN(raise_error=True)], FakeModel(),
                  [{"loss": np.inf}])


def test_lambda_callback_checks():
    with pytest.raises(ValueError, match=r"name no callback hook: \['on_epoch_ends'\]"):
        callbacks.LambdaCallback(on_epoch_ends=print)
    with pytest.raises(TypeError, match="`on_train_end`.*Received: on_train_end=1"):
        callbacks.LambdaCallback(on_train_end=1)
    seen = []
    callback = callbacks.LambdaCallback(on_test_end=seen.append)
    callbacks.CallbackList([callback]).on_test_begin()
    callback.on_test_end({"loss": 1.0})
    assert seen == [{"loss": 1.0}]


# ---- BackupAndRestore ---------------------------------------------------------------------------
def test_backup_and_restore_layout_and_resume(tmp_path):
    backup = tmp_path / "backup"
    model = FakeModel()
    logs = [{"loss": 1.0}] * 4
    with pytest.raises(RuntimeError):
        drive_fit(callbacks.CallbackList, [callbacks.BackupAndRestore(backup)], model, logs, interrupt_at=2)
    assert sorted(os.listdir(backup)) == ["latest.weights.h5", "training_metadata.json"]
    assert json.loads((backup / "training_metadata.json").read_text()) == {"epoch": 2, "batch": 0}
    resumed = FakeModel()
    assert drive_fit(callbacks.CallbackList, [callbacks.BackupAndRestore(backup)], resumed, logs) == [2, 3]
    assert resumed.optimizer.iterations == 4  # 2 restored + 2 run
    assert not backup.exists()  # delete_checkpoint=True


def test_backup_and_restore_rejects_bad_metadata(tmp_path):
    (tmp_path / "training_metadata.json").write_text(json.dumps({"epoch": "__import__('os')"}))
    with pytest.raises(ValueError, match="non-negative integer 'epoch'"):
        drive_fit(callbacks.CallbackList, [callbacks.BackupAndRestore(tmp_path)], FakeModel(), [{"loss": 1.0}])


def test_backup_and_restore_needs_built_model(tmp_path):
    model = FakeModel()
    model.built = False
    with pytest.raises(ValueError, match="must be built before you call `fit\\(\\)`"):
        drive_fit(callbacks.CallbackList, [callbacks.BackupAndRestore(tmp_path)], model, [{"loss": 1.0}])


def test_backup_and_restore_save_freq_false_backs_up_nothing(tmp_path):
    backup = tmp_path / "b"
    drive_fit(callbacks.CallbackList, [callbacks.BackupAndRestore(backup, save_freq=False, delete_checkpoint=False)],
              FakeModel(), [{"loss": 1.0}] * 2, batch_logs=[[{"loss": 1.0}] * 2] * 2)
    assert not backup.exists()


@pytest.mark.parametrize("kwargs, error, pattern", [
    ({"backup_dir": None}, ValueError, "Empty `backup_dir`"),
    ({"backup_dir": 5}, TypeError, "`backup_dir`.*Received: backup_dir=5"),
    ({"backup_dir": "d", "save_freq": 0}, ValueError, "`save_freq`.*save_freq=0"),
    ({"backup_dir": "d", "save_freq": "batch"}, ValueError, "Invalid value for argument `save_freq`"),
])
def test_backup_and_restore_bad_arguments(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        callbacks.BackupAndRestore(**kwargs)


# ---- ProgbarLogger ------------------------------------------------------------------------------
def test_progbar_logger_verbose_2_line(capsys, monkeypatch):
    import time

    clock = iter(1000.0 + 0.25 * i for i in range(100))
    monkeypatch.setattr(time, "time", lambda: next(clock))
    drive_fit(callbacks.CallbackList, [], FakeModel(), [{"loss": 0.5, "val_loss": 2e-4}] * 2,
              batch_logs=[[{"loss": 1.0}] * 2] * 2, verbose=2)
    # verbose=2 reads the clock twice per epoch (bar created, bar finished): 0.25 s for 2 steps,
    # and it shows the epoch's logs, not the batches'.
    assert capsys.readouterr().out == ("Epoch 1/2\n2/2 - 0s - 125ms/step - loss: 0.5000 - val_loss: 2.0000e-04\n"
                                       "Epoch 2/2\n2/2 - 0s - 125ms/step - loss: 0.5000 - val_loss: 2.0000e-04\n")


# ---- through a real fit (each engine: ``backend_name`` selects NumPy, then CUDA where available) --
def _tiny_model():
    if not hasattr(gpuconv.Sequential, "fit"):
        pytest.skip("gpuconv.Sequential has no fit yet")
    from gpuconv import layers, optimizers

    model = gpuconv.Sequential([layers.Input((3,)), layers.Dense(2)])
    model.compile(optimizer=optimizers.SGD(learning_rate=0.1), loss="mse")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 3)).astype("float32")
    y = (x[:, :2] * 2.0).astype("float32")
    return model, x, y


def test_fit_history_and_early_stopping(backend_name):
    model, x, y = _tiny_model()
    stopper = callbacks.EarlyStopping(monitor="loss", patience=0, min_delta=1e9, restore_best_weights=True)
    history = model.fit(x, y, epochs=5, batch_size=8, verbose=0, callbacks=[stopper])
    assert isinstance(history, callbacks.History) and model.history is history
    assert history.epoch == [0, 1] and stopper.stopped_epoch == 1


def test_fit_learning_rate_callbacks(backend_name):
    model, x, y = _tiny_model()
    scheduler = callbacks.LearningRateScheduler(lambda epoch, lr: 0.1 / (epoch + 1))
    reducer = callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0, min_delta=1e9)
    history = model.fit(x, y, epochs=3, batch_size=8, verbose=0, callbacks=[scheduler, reducer])
    assert history.history["learning_rate"] == pytest.approx([0.1, 0.05, 0.1 / 3], rel=1e-6)
    assert float(np.asarray(model.optimizer.learning_rate)) == pytest.approx(0.1 / 6, rel=1e-6)


def test_fit_checkpoint_csv_and_backup(backend_name, tmp_path):
    model, x, y = _tiny_model()
    cbs = [callbacks.ModelCheckpoint(str(tmp_path / "w{epoch}.weights.h5"), monitor="loss", save_weights_only=True),
           callbacks.CSVLogger(tmp_path / "log.csv"),
           callbacks.BackupAndRestore(tmp_path / "backup", delete_checkpoint=False),
           callbacks.TerminateOnNaN()]
    model.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=cbs)
    assert sorted(p.name for p in tmp_path.glob("w*.weights.h5")) == ["w1.weights.h5", "w2.weights.h5"]
    assert (tmp_path / "log.csv").read_text().splitlines()[0] == "epoch,loss,val_loss"
    assert json.loads((tmp_path / "backup" / "training_metadata.json").read_text())["epoch"] == 2
    fresh, _, _ = _tiny_model()
    fresh.load_weights(str(tmp_path / "w2.weights.h5"))
    np.testing.assert_allclose(fresh.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)


def test_fit_progress_output(backend_name, capsys):
    model, x, y = _tiny_model()
    model.fit(x, y, epochs=2, batch_size=8, verbose=2)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Epoch 1/2" and lines[2] == "Epoch 2/2"
    assert lines[1].startswith("2/2 - ") and " - loss: " in lines[1]


def test_fit_auto_mode_reads_metric_directions(backend_name):
    model, x, _ = _tiny_model()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    labels = np.arange(len(x)) % 2
    watchers = {name: callbacks.EarlyStopping(monitor=name, patience=99) for name in ("val_accuracy", "val_loss")}
    model.fit(x, labels, epochs=1, batch_size=8, verbose=0, validation_split=0.25,
              callbacks=list(watchers.values()))
    up, down = watchers["val_accuracy"], watchers["val_loss"]
    assert up._is_improvement(0.6, 0.5) and not up._is_improvement(0.4, 0.5)
    assert down._is_improvement(0.4, 0.5) and not down._is_improvement(0.6, 0.5)


def test_fit_lambda_callback_sees_every_hook(backend_name):
    model, x, y = _tiny_model()
    seen = []
    hooks = {hook: (lambda hook: lambda *args, **kwargs: seen.append(hook))(hook)
             for hook in ("on_train_begin", "on_epoch_begin", "on_train_batch_begin", "on_train_batch_end",
                          "on_test_begin", "on_test_batch_end", "on_test_end", "on_epoch_end", "on_train_end")}
    model.fit(x, y, epochs=1, batch_size=6, verbose=0, validation_split=0.25,
              callbacks=[callbacks.LambdaCallback(**hooks)])
    # 12 training samples in batches of 6, 4 validation samples in one batch.
    assert seen == ["on_train_begin", "on_epoch_begin", "on_train_batch_begin", "on_train_batch_end",
                    "on_train_batch_begin", "on_train_batch_end", "on_test_begin", "on_test_batch_end",
                    "on_test_end", "on_epoch_end", "on_train_end"]


def test_fit_terminate_on_nan(backend_name, capsys):
    model, x, y = _tiny_model()
    from gpuconv import optimizers

    model.compile(optimizer=optimizers.SGD(learning_rate=1e30), loss="mse")
    history = model.fit(x * 1e10, y, epochs=3, batch_size=2, verbose=0, callbacks=[callbacks.TerminateOnNaN()])
    assert model.stop_training and len(history.epoch) == 1
    assert "Invalid loss, terminating training" in capsys.readouterr().out


def test_fit_backup_and_restore_resumes(backend_name, tmp_path):
    model, x, y = _tiny_model()

    def interrupt(epoch, logs):
        if epoch == 2:
            raise RuntimeError("interrupted")

    backup = callbacks.BackupAndRestore(tmp_path / "backup")
    with pytest.raises(RuntimeError, match="interrupted"):
        model.fit(x, y, epochs=4, batch_size=8, verbose=0,
                  callbacks=[backup, callbacks.LambdaCallback(on_epoch_begin=interrupt)])
    weights_after_two = model.get_weights()
    resumed, _, _ = _tiny_model()
    starts = []

    def first_batch_weights(batch, logs):
        if not starts:
            starts.append(resumed.get_weights())

    history = resumed.fit(x, y, epochs=4, batch_size=8, verbose=0,
                          callbacks=[callbacks.BackupAndRestore(tmp_path / "backup"),
                                     callbacks.LambdaCallback(on_train_batch_begin=first_batch_weights)])
    assert history.epoch == [2, 3]
    for restored, saved in zip(starts[0], weights_after_two):
        np.testing.assert_array_equal(restored, saved)
    assert int(np.asarray(resumed.optimizer.iterations)) == 8  # 2 restored epochs of 2 steps, then 2 more
    assert not (tmp_path / "backup").exists()
