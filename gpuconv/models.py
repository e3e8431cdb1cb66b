"""``Sequential``: a stack of layers run one after the other, with Keras 3's API: add, build,
__call__, summary, count_params, weights, get/set_weights, save_weights/load_weights,
get_config/from_config, compute_output_shape, and training (compile, fit, evaluate, predict:
``gpuconv.training.Trainer``).

The model knows its input shape from an ``Input(...)`` first entry, a first layer built with
``input_shape=...``, an explicit ``build(input_shape)``, or its first call (the batch size is
then recorded as None). Shapes in ``summary()`` come from chaining ``compute_output_shape``.
"""
from . import arrays as _arrays
from .keras_interop import from_keras, is_keras_object
from .layers import symbolic as _symbolic
from .layers.base_layer import Layer
from .layers.core import InputLayer, SymbolicTensor
from .model import Model, _param_cell
from .serialization import _Scope, deserialize_object, serialize_object

__all__ = ["Model", "Sequential"]

_LAYERS_MODULE = "keras.layers"


def _layer_classes():
    """{class name: class} of everything ``gpuconv.layers`` exports (imported lazily: the
    layers package is being filled in by several files)."""
    from . import layers

    return {name: obj for name, obj in vars(layers).items() if isinstance(obj, type) and issubclass(obj, Layer)}


class Sequential(Model):
    def __init__(self, layers=None, trainable=True, name=None):
        super().__init__(name=name, trainable=trainable)
        self._input_layer = None
        self._layers = []
        self._build_input_shape = None
        for layer in layers or ():
            self.add(layer, rebuild=False)
        self._maybe_build()

    # ---- structure -------------------------------------------------------------------------
    @property
    def layers(self):
        """The layers, without the InputLayer (as Keras lists them)."""
        return list(self._layers)

    @property
    def input_shape(self):
        return self._build_input_shape

    def add(self, layer, rebuild=True):
        """Append a layer; an ``Input(...)`` (or InputLayer) is allowed only as the first entry."""
        if isinstance(layer, SymbolicTensor):
            layer = layer._input_layer
        if is_keras_object(layer):  # a real Keras layer: its gpuconv equivalent, same weights
            layer = from_keras(layer)
        if isinstance(layer, InputLayer):
            if self._input_layer is not None or self._layers:
                raise ValueError(
                    "Sequential model may only have an Input (InputLayer) as its first entry. "
                    f"Received: {layer} after {len(self._layers)} layer(s)."
                )
            self._input_layer = layer
            self._build_input_shape = layer.batch_shape
        elif isinstance(layer, Layer):
            if any(existing.name == layer.name for existing in self._layers):
                raise ValueError(
                    "All layers added to a Sequential model should have unique names. "
                    f"Name '{layer.name}' is already the name of a layer in this model. "
                    "Update the `name` argument to pass a unique name."
                )
            if not self._layers and self._input_layer is None and layer._input_shape_arg is not None:
                # Keras' legacy `Dense(..., input_shape=...)` as first layer: an implicit Input.
                self._build_input_shape = (None,) + tuple(layer._input_shape_arg)
            self._layers.append(layer)
        else:
            raise ValueError(
                "Only instances of `keras.Layer` can be added to a Sequential model. "
                f"Received: {layer} (of type {type(layer)})"
            )
        if rebuild:
            self._maybe_build()

    def pop(self):
        if not self._layers:
            raise TypeError("There are no layers in the model.")
        return self._layers.pop()

    def _maybe_build(self):
        if self._build_input_shape is not None and self._layers:
            self.build(self._build_input_shape)

    # ---- shapes and build --------------------------------------------------------------------
    def _chain(self, input_shape, build):
        """Run the shapes through every layer (building unbuilt ones when ``build``); returns
        the list of each layer's output shape."""
        shape = tuple(input_shape)
        shapes = []
        for layer in self._layers:
            if layer.input_spec is not None:
                layer.input_spec.check(shape, layer.name)
            if build and not layer.built:
                layer._ensure_built(shape)  # once, even under concurrent first calls
                if layer.input_spec is not None:
                    layer.input_spec.check(shape, layer.name)
            shape = tuple(layer.compute_output_shape(shape))
            shapes.append(shape)
        return shapes

    def build(self, input_shape=None):
        """Build every layer for ``input_shape`` (batch first; None allowed)."""
        if input_shape is None:
            input_shape = self._build_input_shape
        if input_shape is None:
            raise ValueError("You must provide an `input_shape` argument (or start the model with an `Input`).")
        input_shape = tuple(input_shape)
        with self._build_lock:  # one build at a time; a concurrent first call waits for it
            self._chain(input_shape, build=True)
            self._build_input_shape = input_shape
            self.built = True

    def compute_output_shape(self, input_shape):
        shapes = self._chain(tuple(input_shape), build=False)
        return shapes[-1] if shapes else tuple(input_shape)

    def _layer_output_shapes(self):
        """Each layer's output shape (batch None), or None per layer where not known."""
        if self._build_input_shape is None:
            return [None] * len(self._layers)
        try:
            return self._chain(self._build_input_shape, build=False)
        except Exception:  # an unbuilt, incompatible stack: show '?' as Keras does
            return [None] * len(self._layers)

    # ---- running -------------------------------------------------------------------------------
    def __call__(self, inputs, training=None):
        """Run the layers in order; returns the backend's array (NumPy or CuPy)."""
        if _symbolic.any_symbolic(inputs):  # a Sequential inside a functional model
            return _symbolic.symbolic_call(self, [inputs])
        x = inputs
        if self._input_layer is not None:
            x = self._input_layer(x)
        elif x is None:
            raise TypeError(f'Model "{self.name}" received inputs=None; expected an array.')
        else:
            x = _arrays.as_array(x, "inputs", f'model "{self.name}"')
        if not self.built:
            return self._first_call(x, training)
        return self._run_layers(x, training)

    def _run_layers(self, x, training):
        from . import fusion as _fusion  # inference: folded BatchNormalization, fused activations

        for layer in _fusion.sequential_layers(self, training):
            x = layer(x, training=training)
        return x

    def _first_call(self, x, training):
        """The first call records the input shape and builds every layer, once: concurrent first
        calls queue behind it (each layer also builds under its own lock); later calls never
        take the lock (``built`` is read first)."""
        with self._build_lock:
            if self.built:
                return self._run_layers(x, training)
            if self._build_input_shape is None and self._layers:
                self._build_input_shape = (None,) + tuple(x.shape[1:])
            y = self._run_layers(x, training)
            self.built = all(layer.built for layer in self._layers)
            return y

    def call(self, inputs):
        return self(inputs)

    # ---- summary --------------------------------------------------------------------------------
    def _summary_rows(self):
        rows = []
        for layer, shape in zip(self._layers, self._layer_output_shapes()):
            rows.append((f"{layer.name} ({type(layer).__name__})", "?" if shape is None else str(shape), _param_cell(layer)))
        return rows, False

    # ---- config ------------------------------------------------------------------------------------
    def get_config(self):
        entries = []
        if self._input_layer is not None:
            entries.append(self._layer_entry(self._input_layer, None))
        shape = self._build_input_shape
        for layer in self._layers:
            entries.append(self._layer_entry(layer, shape if layer.built else None))
            if shape is not None:
                try:
                    shape = tuple(layer.compute_output_shape(shape))
                except Exception:  # shapes beyond here are unknown; configs are still valid
                    shape = None
        config = {"name": self.name, "trainable": self.trainable, "dtype": super().get_config()["dtype"],
                  "layers": entries}
        if self._build_input_shape is not None:
            config["build_input_shape"] = self._build_input_shape
        return config

    @staticmethod
    def _layer_entry(layer, input_shape):
        entry = serialize_object(layer, _LAYERS_MODULE)
        if input_shape is not None and not getattr(layer, "_built_at_init", False):
            entry["build_config"] = {"input_shape": input_shape}
        return entry

    @classmethod
    def from_config(cls, config, custom_objects=None):
        """The model a Keras Sequential config describes. Each layer (and each object in a
        layer's config) resolves only to gpuconv's built-ins and to objects the caller supplies
        (``custom_objects``, ``gpuconv.saving``'s scope and registry): a module named in the
        config is never imported."""
        config = dict(config)
        with _Scope(custom_objects):
            model = cls(name=config.get("name"), trainable=config.get("trainable", True))
            for entry in config.get("layers", []):
                model.add(deserialize_object(entry, _layer_classes(), "layer"), rebuild=False)
            build_shape = config.get("build_input_shape")
            if build_shape is not None:
                model.build(tuple(build_shape))
        return model

    def __repr__(self):
        return f"<Sequential name={self.name}, layers={len(self._layers)}, built={self.built}>"
