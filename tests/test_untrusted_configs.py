"""Issue 8, section 1: a config is data, never code.

Every payload the tester used (a module and a function or class name from a config) is put in each
slot of a Sequential config that names an object: the activation, the kernel and bias initializers,
the kernel regularizer, the kernel constraint, and the layer itself. Each must raise ValueError
("Could not interpret ..."), import no module, have no side effect and leave the process alive.
The same payloads go through every public ``get`` / ``deserialize`` too. Then the positive side:
a user's own objects round-trip when the caller supplies them (``custom_objects=``,
``gpuconv.saving.custom_object_scope``, ``@gpuconv.saving.register_serializable``), and Keras'
module strings keep working.

``gpuconv.saving`` is imported inside the tests that need it, so the payload tests also run
against a pre-fix checkout (``PYTHONPATH=<old copy> pytest tests/test_untrusted_configs.py``),
where they fail.
"""
import copy
import os
import pickle
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import gpuconv
from gpuconv import Sequential, activations, constraints, initializers, regularizers
from gpuconv import layers as L

# module, name: what the tester proved (or what would be just as bad)
FUNCTION_PAYLOADS = {
    "pickle.loads": {"module": "pickle", "class_name": "function", "config": "loads", "registered_name": "loads"},
    "os.system": {"module": "os", "class_name": "function", "config": "system"},
    "subprocess.getoutput": {"module": "subprocess", "class_name": "function", "config": "getoutput"},
    "builtins.exec": {"module": "builtins", "class_name": "function", "config": "exec", "registered_name": "function"},
    "builtins.eval": {"module": "builtins", "class_name": "function", "config": "eval"},
    "sys.exit": {"module": "sys", "class_name": "function", "config": "exit"},
    "this": {"module": "this", "class_name": "function", "config": "s"},
    "missing module": {"module": "gpuconv_no_such_module_8", "class_name": "function", "config": "f"},
}
CLASS_PAYLOADS = {
    "class os.system": {"module": "os", "class_name": "system", "config": {}},
    "class subprocess.Popen": {"module": "subprocess", "class_name": "Popen", "config": {"args": ["true"]}},
    "class pickle.loads": {"module": "pickle", "class_name": "loads", "config": {}, "registered_name": "loads"},
    "class builtins.eval": {"module": "builtins", "class_name": "eval", "config": {}},
    "class this": {"module": "this", "class_name": "Anything", "config": {}},
    "class missing module": {"module": "gpuconv_no_such_module_8", "class_name": "Thing", "config": {}},
    # a gpuconv name under a foreign module: the module decides the table may not be consulted
    "class numpy.GlorotUniform": {"module": "numpy", "class_name": "GlorotUniform", "config": {}},
}
PAYLOADS = {**FUNCTION_PAYLOADS, **CLASS_PAYLOADS}
SLOTS = ("activation", "kernel_initializer", "bias_initializer", "kernel_regularizer", "kernel_constraint", "layer")


def _model_config():
    model = Sequential([L.Input((6, 6, 2)), L.Conv2D(3, 3, name="conv"), L.Flatten(name="flat")])
    return model.get_config()


def _with_payload(slot, payload):
    """The model config with ``payload`` in ``slot`` of the Conv2D entry (or as the entry)."""
    config = _model_config()
    if slot == "layer":
        config["layers"][1] = copy.deepcopy(payload)
    else:
        config["layers"][1]["config"][slot] = copy.deepcopy(payload)
    return config


def _rebuild_and_call(config):
    model = Sequential.from_config(config)
    return model(np.ones((1, 6, 6, 2), np.float32))  # reached only if the config was accepted


@pytest.mark.parametrize("slot", SLOTS)
@pytest.mark.parametrize("payload", list(PAYLOADS), ids=list(PAYLOADS))
def test_payload_in_a_sequential_config_is_refused(slot, payload):
    config = _with_payload(slot, PAYLOADS[payload])
    before = set(sys.modules)
    with pytest.raises(ValueError, match="Could not interpret"):
        _rebuild_and_call(config)
    assert set(sys.modules) - before == set(), "a config imported a module"


GETTERS = {
    "activations.get": activations.get,
    "activations.deserialize": activations.deserialize,
    "initializers.get": initializers.get,
    "initializers.deserialize": initializers.deserialize,
    "regularizers.get": regularizers.get,
    "regularizers.deserialize": regularizers.deserialize,
    "constraints.get": constraints.get,
    "constraints.deserialize": constraints.deserialize,
}


@pytest.mark.parametrize("getter", list(GETTERS))
@pytest.mark.parametrize("payload", list(PAYLOADS), ids=list(PAYLOADS))
def test_payload_through_every_getter_is_refused(getter, payload):
    before = set(sys.modules)
    with pytest.raises(ValueError, match="Could not interpret .* identifier: {'module'"):
        GETTERS[getter](copy.deepcopy(PAYLOADS[payload]))
    assert set(sys.modules) - before == set()


@pytest.mark.parametrize("payload", list(PAYLOADS), ids=list(PAYLOADS))
def test_payload_through_generic_deserialize_is_refused(payload):
    from gpuconv import saving

    with pytest.raises(ValueError, match="Could not interpret"):
        saving.deserialize_keras_object(copy.deepcopy(PAYLOADS[payload]))


def test_payload_in_a_layer_constructor_is_refused():
    """The constructors read identifiers too (``Dense(activation={...})``)."""
    with pytest.raises(ValueError, match="Could not interpret activation function identifier"):
        L.Dense(2, activation=FUNCTION_PAYLOADS["os.system"])
    with pytest.raises(ValueError, match="Could not interpret initializer identifier"):
        L.Conv2D(2, 3, kernel_initializer=CLASS_PAYLOADS["class subprocess.Popen"])


def _pickle_exploit_config(target):
    """The issue's proof: a Dense whose bias is a Constant holding pickle bytes as float64s, and
    whose activation is pickle.loads, so the first call unpickles ``open(target, 'w')``."""

    class Touch:
        def __reduce__(self):
            return (open, (target, "w"))

    blob = pickle.dumps(Touch(), protocol=2)
    blob += b"." * (-len(blob) % 8)  # pickle ignores what follows its STOP opcode
    bias = np.frombuffer(blob, dtype=np.float64).tolist()
    model = Sequential([L.Input((1,)), L.Dense(len(bias), dtype="float64", kernel_initializer="zeros")])
    config = model.get_config()
    dense = config["layers"][1]["config"]
    dense["activation"] = FUNCTION_PAYLOADS["pickle.loads"]
    dense["bias_initializer"] = {"module": "keras.initializers", "class_name": "Constant", "config": {"value": bias}}
    return config


def test_pickle_payload_has_no_side_effect(tmp_path):
    target = tmp_path / "created_by_the_config"
    config = _pickle_exploit_config(str(target))
    with pytest.raises(ValueError, match="Could not interpret activation function identifier"):
        Sequential.from_config(config)(np.zeros((1, 1)))
    assert not target.exists()


def _run_isolated(code):
    """Run ``code`` in a fresh interpreter (modules imported by earlier tests are absent there)."""
    env = {**os.environ, "GPUCONV_BACKEND": "numpy"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120, env=env)


_ISOLATED_HEAD = """
    import sys
    import numpy as np
    from gpuconv import Sequential
    from gpuconv import layers as L

    def config_with(slot, payload):
        config = Sequential([L.Input((4, 4, 1)), L.Conv2D(2, 3, name="conv")]).get_config()
        if slot == "layer":
            config["layers"][1] = payload
        else:
            config["layers"][1]["config"][slot] = payload
        return config

    SLOTS = ("activation", "kernel_initializer", "bias_initializer", "kernel_regularizer", "kernel_constraint",
             "layer")

    def refused(config):
        try:
            Sequential.from_config(config)(np.ones((1, 4, 4, 1), np.float32))
        except ValueError as e:
            return "Could not interpret" in str(e)
        return False
"""


def test_this_payload_never_imports_the_module():
    """Importing `this` prints the Zen of Python: both its module entry and its output must stay absent."""
    result = _run_isolated(_ISOLATED_HEAD + """
    assert "this" not in sys.modules
    for slot in SLOTS:
        for payload in ({"module": "this", "class_name": "function", "config": "s"},
                        {"module": "this", "class_name": "Anything", "config": {}}):
            assert refused(config_with(slot, payload)), (slot, payload)
    print("this imported:", "this" in sys.modules)
    """)
    assert result.returncode == 0, result.stderr
    assert "this imported: False" in result.stdout
    assert "Beautiful is better than ugly" not in result.stdout


def test_sys_exit_payload_leaves_the_process_alive():
    result = _run_isolated(_ISOLATED_HEAD + """
    for slot in SLOTS:
        assert refused(config_with(slot, {"module": "sys", "class_name": "function", "config": "exit"})), slot
    print("still alive")
    """)
    assert result.returncode == 0, result.stderr
    assert "still alive" in result.stdout


def test_layer_from_config_failure_is_keras_type_error_and_a_value_error():
    """Keras wraps a failing Layer.from_config in TypeError; ours is that TypeError and a ValueError."""
    config = L.Dense(2).get_config()
    config["activation"] = FUNCTION_PAYLOADS["os.system"]
    with pytest.raises(TypeError, match="Error when deserializing class 'Dense'") as info:
        L.Dense.from_config(config)
    assert isinstance(info.value, ValueError)
    assert "Could not interpret activation function identifier" in str(info.value)


# --------------------------------------------------------------------------------------------
# Constant(value=...): what Keras' Constant accepts, refused otherwise at construction
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["abc", b"\x80\x04", None, 1j, [1.0, "a"], [[1.0], [1.0, 2.0]], {"a": 1},
                                   [b"\x80\x04"]], ids=repr)
def test_constant_refuses_what_is_not_real_numbers(value):
    with pytest.raises(ValueError, match=r"Argument `value` of Constant must be a real number.*Received: value="):
        initializers.Constant(value)


def test_constant_accepts_scalars_and_broadcasts_lists_as_keras():
    # Keras 3.15 computes cast(value) * ones(shape): a list broadcasts, a mismatch fails.
    assert initializers.Constant(2)((2,), "float32").tolist() == [2.0, 2.0]
    assert initializers.Constant(np.float32(0.5))((1,)).tolist() == [0.5]
    np.testing.assert_array_equal(initializers.Constant([1.0, 2.0])((2, 2)), [[1.0, 2.0], [1.0, 2.0]])
    with pytest.raises(ValueError, match=r"shape \(3,\) cannot be broadcast to the requested shape \(2,\)"):
        initializers.Constant([1.0, 2.0, 3.0])((2,))


def test_constant_reads_keras_serialized_array():
    # keras.initializers.Constant(np.ones(2)).get_config() in Keras 3.15
    keras_config = {"value": {"class_name": "__numpy__", "config": {"value": [1.0, 1.0], "dtype": "float64"}}}
    init = initializers.Constant.from_config(keras_config)
    np.testing.assert_array_equal(init((2,)), [1.0, 1.0])
    assert init.get_config() == keras_config
    with pytest.raises(ValueError, match="Argument `value` of Constant"):
        initializers.Constant.from_config({"value": {"class_name": "__numpy__",
                                                     "config": {"value": [1], "dtype": "object"}}})


# --------------------------------------------------------------------------------------------
# What keeps working: Keras' module strings, and the caller's own objects
# --------------------------------------------------------------------------------------------
def test_keras_module_strings_resolve_builtins():
    assert activations.get({"module": "builtins", "class_name": "function", "config": "relu",
                            "registered_name": "function"}) is activations.relu
    init = initializers.get({"module": "keras.src.initializers.random_initializers", "class_name": "HeNormal",
                             "config": {"seed": 3}, "registered_name": None})
    assert type(init) is initializers.HeNormal and init.seed == 3
    assert type(initializers.get({"module": None, "class_name": "Zeros", "config": {}})) is initializers.Zeros


def my_double(x):
    return x * 2


class Halves(initializers.Initializer):
    def __call__(self, shape, dtype=None):
        return np.full(shape, 0.5, dtype=dtype or "float32")


class Shift(L.Layer):
    def __init__(self, amount=1.0, **kwargs):
        super().__init__(**kwargs)
        self.amount = amount

    def call(self, inputs):
        return inputs + self.amount

    def get_config(self):
        return {**super().get_config(), "amount": self.amount}


CUSTOM = {"my_double": my_double, "Halves": Halves, "Shift": Shift}


def _custom_model():
    return Sequential([L.Input((3,)), L.Dense(2, activation=my_double, kernel_initializer=Halves(), name="d"),
                       Shift(3.0, name="shift")])


def test_custom_objects_round_trip():
    model = _custom_model()
    config = model.get_config()
    x = np.arange(3, dtype=np.float32)[None]
    with pytest.raises(ValueError, match="Could not interpret"):
        Sequential.from_config(copy.deepcopy(config))  # not supplied: refused, not imported
    again = Sequential.from_config(copy.deepcopy(config), custom_objects=CUSTOM)
    assert again.layers[0].activation is my_double and type(again.layers[0].kernel_initializer) is Halves
    assert type(again.layers[1]) is Shift and again.layers[1].amount == 3.0
    np.testing.assert_array_equal(again(x), model(x))
    assert again.get_config() == config
    # the single-object paths take custom_objects too
    assert activations.deserialize(config["layers"][1]["config"]["activation"], custom_objects=CUSTOM) is my_double
    assert type(initializers.get("Halves", custom_objects=CUSTOM)) is Halves
    assert L.Dense.from_config(config["layers"][1]["config"], custom_objects=CUSTOM).activation is my_double


def test_custom_object_scope_round_trip_and_thread_locality():
    from gpuconv import saving

    config = _custom_model().get_config()
    with saving.custom_object_scope(CUSTOM):
        again = Sequential.from_config(copy.deepcopy(config))
        seen_elsewhere = []
        thread = threading.Thread(target=lambda: seen_elsewhere.append(saving.get_registered_object("Shift")))
        thread.start()
        thread.join()
        assert saving.get_registered_object("Shift") is Shift
    assert type(again.layers[1]) is Shift
    assert seen_elsewhere == [None]  # Keras' scope is per thread, and so is ours
    assert saving.get_registered_object("Shift") is None  # gone after the scope


def test_register_serializable_round_trip():
    from gpuconv import saving

    @saving.register_serializable(package="gpuconv_tests")
    def triple(x):
        return x * 3

    @saving.register_serializable(package="gpuconv_tests", name="Quarter")
    class QuarterInit(initializers.Initializer):
        def __call__(self, shape, dtype=None):
            return np.full(shape, 0.25, dtype=dtype or "float32")

    @saving.register_serializable("gpuconv_tests")
    class Negate(L.Layer):
        def call(self, inputs):
            return -inputs

    assert saving.get_registered_name(QuarterInit) == "gpuconv_tests>Quarter"
    assert saving.get_registered_object("gpuconv_tests>Negate") is Negate
    assert saving.get_custom_objects()["gpuconv_tests>triple"] is triple
    model = Sequential([L.Input((2,)), L.Dense(2, activation=triple, kernel_initializer=QuarterInit(), name="d"),
                        Negate(name="neg")])
    config = model.get_config()
    dense = config["layers"][1]["config"]
    assert dense["activation"]["config"] == "gpuconv_tests>triple"
    assert dense["kernel_initializer"]["registered_name"] == "gpuconv_tests>Quarter"
    assert config["layers"][2]["registered_name"] == "gpuconv_tests>Negate"
    again = Sequential.from_config(copy.deepcopy(config))  # no custom_objects needed
    x = np.ones((1, 2), np.float32)
    np.testing.assert_array_equal(again(x), model(x))
    assert type(again.layers[1]) is Negate and again.layers[0].activation is triple


def test_register_serializable_refuses_a_class_without_get_config():
    from gpuconv import saving

    with pytest.raises(ValueError, match="does not have a get_config"):
        saving.register_serializable("gpuconv_tests")(type("NoConfig", (), {}))


def test_generic_serialize_round_trip():
    from gpuconv import saving

    for obj in (initializers.GlorotUniform(seed=1), regularizers.L2(0.5), constraints.MaxNorm(3), L.Conv2D(2, 3)):
        config = saving.serialize_keras_object(obj)
        again = saving.deserialize_keras_object(config)
        assert type(again) is type(obj) and again.get_config() == obj.get_config()
    relu = saving.serialize_keras_object(activations.relu)
    # keras.saving.serialize_keras_object(keras.activations.relu) in Keras 3.15
    assert relu == {"module": "builtins", "class_name": "function", "config": "relu", "registered_name": "function"}
    assert saving.deserialize_keras_object(relu) is activations.relu
    model = Sequential([L.Input((3,)), L.Dense(2)])
    again = saving.deserialize_keras_object(saving.serialize_keras_object(model))
    assert type(again) is Sequential and again.count_params() == model.count_params()
    assert gpuconv.saving is saving
