"""Live Keras objects into gpuconv: ``gpuconv.saving.from_keras(keras_layer_or_model)``.

A Keras 3 layer or model already in memory (built in a notebook, or loaded with Keras) becomes
the equivalent gpuconv object: its config goes through gpuconv's own deserialization (only
gpuconv's built-ins and the caller's ``custom_objects`` can be named: the object's Python
module is never consulted), then the weights are copied, so the two predict the same.
``Sequential.add`` and ``Sequential([...])`` accept Keras layers by converting them here.
"""
import numpy as np

__all__ = ["from_keras", "is_keras_object"]

_MODEL_CLASSES = {"Sequential": "keras", "Functional": "keras.src.models.functional"}


def is_keras_object(obj):
    """A layer or model of the real Keras package (duck-typed: gpuconv never imports Keras)."""
    module = type(obj).__module__ or ""
    return (module == "keras" or module.startswith("keras.")) and hasattr(obj, "get_config") \
        and hasattr(obj, "get_weights")


def _serialized(obj):
    name = type(obj).__name__
    module = _MODEL_CLASSES.get(name, "keras.layers")
    return {"module": module, "class_name": name, "config": obj.get_config(), "registered_name": None}


def _build_shape(obj):
    getter = getattr(obj, "get_build_config", None)
    config = getter() if callable(getter) else None
    return (config or {}).get("input_shape")


def from_keras(obj, custom_objects=None):
    """The gpuconv layer or model equivalent to the Keras object ``obj``, with its weights."""
    from . import saving

    if not is_keras_object(obj):
        raise TypeError(f"`from_keras` expects a Keras 3 layer or model. Received: {obj!r} of type {type(obj).__name__}")
    converted = saving.deserialize_keras_object(_serialized(obj), custom_objects=custom_objects)
    weights = [np.asarray(w) for w in obj.get_weights()]
    if weights:
        shape = _build_shape(obj)
        if not converted.built:
            if shape is None:
                raise ValueError(
                    f"Keras object '{obj.name}' has weights but no build shape to build its gpuconv copy with."
                )
            converted._ensure_built(shape)  # a list of shapes for a multi-input layer
        converted.set_weights(weights)
    return converted
