"""Issue 8, section 2: the first call builds a layer (and a Sequential) exactly once, however many
threads make it together.

Eight threads released by one ``threading.Barrier`` call the same unbuilt object; repeated several
times per layer type. Before the fix each thread could run ``build`` and add its own weights (4 to
10 instead of 2 for ``Conv2D(8, 3)``), and threads computed with different random kernels. A kernel
initializer that sleeps a little makes the window wide enough to hit on every run; the default
initializers are tested too. Every thread must see the same output, equal to a call made after
the threads finished, and the layer must have exactly its weights.
"""
import threading
import time

import numpy as np
import pytest

from gpuconv import Sequential, initializers
from gpuconv import layers as L

THREADS = 8
REPEATS = 4


def slow_glorot(shape, dtype=None):
    """Fresh random values (seed None), after a pause: a slow build, e.g. a big Orthogonal."""
    time.sleep(0.02)
    return initializers.GlorotUniform()(shape, dtype)


def _call_together(obj, x, make_call=None):
    """``obj(x)`` in THREADS threads released at once; returns their outputs (re-raising any error)."""
    barrier = threading.Barrier(THREADS)
    outputs, errors = [None] * THREADS, []
    call = make_call or (lambda: obj(x))

    def run(i):
        try:
            barrier.wait()
            outputs[i] = np.asarray(call())
        except BaseException as e:  # noqa: BLE001  (reported below, in the test's thread)
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return outputs


LAYERS = {
    # name: (factory(kernel_initializer), input shape, number of weights)
    "Conv2D(8, 3)": (lambda init: L.Conv2D(8, 3, kernel_initializer=init), (2, 9, 9, 3), 2),
    "Conv1D": (lambda init: L.Conv1D(4, 3, kernel_initializer=init), (2, 10, 3), 2),
    "Conv2DTranspose": (lambda init: L.Conv2DTranspose(4, 3, kernel_initializer=init), (1, 5, 5, 2), 2),
    "DepthwiseConv2D": (lambda init: L.DepthwiseConv2D(3, depthwise_initializer=init), (1, 7, 7, 3), 2),
    "SeparableConv2D": (lambda init: L.SeparableConv2D(4, 3, depthwise_initializer=init,
                                                       pointwise_initializer=init), (1, 7, 7, 3), 3),
    "LocallyConnected1D": (lambda init: L.LocallyConnected1D(2, 3, kernel_initializer=init), (1, 8, 2), 2),
    "Dense": (lambda init: L.Dense(5, kernel_initializer=init), (3, 4), 2),
}


@pytest.mark.parametrize("init", [slow_glorot, "glorot_uniform"], ids=["slow-build", "default-init"])
@pytest.mark.parametrize("name", list(LAYERS))
def test_concurrent_first_calls_build_a_layer_once(name, init):
    factory, shape, n_weights = LAYERS[name]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    for _ in range(REPEATS):
        layer = factory(init)
        outputs = _call_together(layer, x)
        assert len(layer.weights) == n_weights, [w.path for w in layer.weights]
        after = np.asarray(layer(x))
        for out in outputs:
            np.testing.assert_array_equal(out, after)


def _model(with_input):
    stack = [L.Conv2D(4, 3, kernel_initializer=slow_glorot, name="c1"), L.MaxPooling2D(2, name="p"),
             L.Flatten(name="f"), L.Dense(3, kernel_initializer=slow_glorot, name="d")]
    return Sequential(([L.Input((8, 8, 2))] if with_input else []) + stack)


def test_concurrent_first_calls_build_a_sequential_once():
    x = np.random.default_rng(1).standard_normal((2, 8, 8, 2)).astype(np.float32)
    for _ in range(REPEATS):
        model = _model(with_input=False)  # unbuilt: the first call builds every layer
        outputs = _call_together(model, x)
        assert model.built and model.input_shape == (None, 8, 8, 2)
        assert [w.path for w in model.weights] == ["c1/kernel", "c1/bias", "d/kernel", "d/bias"]
        after = np.asarray(model(x))
        for out in outputs:
            np.testing.assert_array_equal(out, after)


def test_concurrent_explicit_builds_and_calls_build_once():
    x = np.ones((1, 8, 8, 2), np.float32)
    for _ in range(REPEATS):
        model = _model(with_input=False)
        calls = iter(range(THREADS))

        def build_or_call():
            if next(calls) % 2:  # half the threads build explicitly, half call
                model.build((None, 8, 8, 2))
                return model(x)
            return model(x)

        outputs = _call_together(model, x, build_or_call)
        assert len(model.weights) == 4
        for out in outputs:
            np.testing.assert_array_equal(out, outputs[0])


def test_predict_from_threads_on_an_unbuilt_model():
    x = np.random.default_rng(2).standard_normal((5, 8, 8, 2)).astype(np.float32)
    model = _model(with_input=False)
    outputs = _call_together(model, x, lambda: model.predict(x, batch_size=2))
    assert len(model.weights) == 4
    for out in outputs:
        np.testing.assert_array_equal(out, outputs[0])


def test_built_layers_are_copyable_and_picklable():
    """The build lock (and Variable's lock) are per object and recreated on copy, not shared."""
    import copy
    import pickle

    layer = L.Dense(2)
    layer(np.ones((1, 3), np.float32))
    for clone in (copy.deepcopy(layer), pickle.loads(pickle.dumps(layer))):
        assert clone._build_lock is not layer._build_lock
        np.testing.assert_array_equal(clone(np.ones((1, 3), np.float32)), layer(np.ones((1, 3), np.float32)))
        clone.kernel.assign(np.zeros((3, 2)))
        assert layer.kernel.numpy().any()
