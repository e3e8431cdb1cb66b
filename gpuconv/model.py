"""``gpuconv.Model``: Keras 3's model class, in its three forms.

- ``Model(inputs, outputs, name=None)`` (or ``inputs=``/``outputs=`` keywords) builds a
  functional model (``gpuconv.functional.Functional``) from symbolic tensors;
- ``class M(gpuconv.Model)`` with ``__init__`` and ``call(inputs, training=None)`` is a
  subclassed model: layers assigned as attributes (or in lists / dicts of them) are tracked,
  so their weights train and save;
- ``Sequential`` is a Model too.

What every form shares lives here: the layers' weights, ``get_layer``, ``get_weights`` /
``set_weights``, ``save_weights`` / ``load_weights``, ``count_params``, ``summary``, and training
(``compile`` / ``fit`` / ``evaluate`` / ``predict``, ``gpuconv.training.Trainer``).
"""
import inspect

import numpy as np

from . import arrays as _arrays
from . import model_summary
from .layers.base_layer import Layer
from .layers import symbolic as _symbolic
from .training import Trainer

__all__ = ["Model"]


def _unique(items):
    seen, out = set(), []
    for item in items:
        if id(item) not in seen:
            seen.add(id(item))
            out.append(item)
    return out


class Model(Trainer, Layer):
    # Inference fusion (gpuconv.fusion): BatchNormalization folded into the convolution before
    # it and the activation after it run in the convolution's epilogue when the model predicts.
    fuse_inference = True

    def __new__(cls, *args, **kwargs):
        if cls is Model and (args or "inputs" in kwargs or "outputs" in kwargs):
            from .functional import Functional

            cls = Functional  # Python then runs Functional.__init__(*args, **kwargs)
        return super().__new__(cls)

    def __init__(self, *args, name=None, trainable=True, **kwargs):
        if args:
            raise TypeError(
                f"{type(self).__name__}.__init__ got positional arguments {args!r}: a subclassed model's "
                "__init__ passes only keywords (name=, trainable=, dtype=) to super().__init__()."
            )
        super().__init__(name=name, trainable=trainable, **kwargs)

    @classmethod
    def from_config(cls, config, custom_objects=None):
        """A functional config (one with ``layers`` / ``input_layers`` / ``output_layers``) makes
        a functional model; a subclassed model's config goes to its ``__init__``."""
        from .functional import Functional

        if isinstance(config, dict) and {"layers", "input_layers", "output_layers"} <= set(config):
            target = Functional if cls is Model else cls
            from . import functional_config

            return functional_config.from_config(target, config, custom_objects)
        return super().from_config(config, custom_objects)

    # ---- layer tracking (subclassed models) ------------------------------------------------
    def __setattr__(self, key, value):
        # Layers assigned as attributes, or in a list / tuple / dict, belong to the model: Keras'
        # tracker. Names starting with '_' are the model's own bookkeeping.
        if not key.startswith("_") and any(isinstance(v, Layer) for v in _symbolic.flatten(value)):
            tracked = self.__dict__.setdefault("_tracked_layers", {})
            tracked[key] = [v for v in _symbolic.flatten(value) if isinstance(v, Layer)]
        super().__setattr__(key, value)

    @property
    def layers(self):
        tracked = self.__dict__.get("_tracked_layers", {})
        return _unique(layer for layers in tracked.values() for layer in layers)

    def get_layer(self, name=None, index=None):
        """The layer called ``name``, or at ``index`` in ``layers`` (Keras' errors for neither,
        both, or no match)."""
        if index is not None and name is not None:
            raise ValueError(f"Provide only a layer name or a layer index. Received: index={index}, name={name}.")
        layers = self.layers
        if index is not None:
            if not isinstance(index, int) or not -len(layers) <= index < len(layers):
                raise ValueError(
                    f"Was asked to retrieve layer at index {index} but model only has {len(layers)} layers."
                )
            return layers[index]
        if name is not None:
            for layer in layers:
                if layer.name == name:
                    return layer
            raise ValueError(
                f"No such layer: {name}. Existing layers are: {[layer.name for layer in layers]}."
            )
        raise ValueError("Provide either a layer name or layer index at `get_layer`.")

    # ---- running (subclassed models) -------------------------------------------------------
    def __call__(self, inputs, training=None):
        if _symbolic.any_symbolic(inputs):
            raise TypeError(
                f"The subclassed model '{self.name}' cannot be called on symbolic tensors: gpuconv "
                "builds functional graphs from layers and functional/Sequential models only. Call it on arrays."
            )
        if inputs is None:
            raise TypeError(f'Model "{self.name}" received inputs=None; expected an array.')
        inputs = _symbolic.map_structure(lambda x: _arrays.as_array(x, "inputs", f'model "{self.name}"'), inputs)
        if "training" in inspect.signature(self.call).parameters:
            outputs = self.call(inputs, training=training)
        else:
            outputs = self.call(inputs)
        self.built = True
        return outputs

    def build(self, input_shape=None):
        """A subclassed model builds by running ``call`` once on zeros of ``input_shape``."""
        if type(self).call is Model.call:
            raise NotImplementedError(f"Model {self.name} has no `call` method.")
        if input_shape is None:
            raise ValueError("You must provide an `input_shape` argument.")
        shape = tuple(1 if d is None else int(d) for d in input_shape)
        self(np.zeros(shape, dtype=self.compute_dtype))

    def call(self, inputs, training=None):
        raise NotImplementedError(f"Model {self.name} does not have a `call()` method implemented.")

    # ---- weights -----------------------------------------------------------------------------
    @property
    def weights(self):
        return _unique(w for layer in self.layers for w in layer.weights)

    @property
    def trainable_weights(self):
        if not self.trainable:
            return []
        return _unique(w for layer in self.layers for w in layer.trainable_weights)

    @property
    def non_trainable_weights(self):
        if not self.trainable:
            return self.weights
        trainable = {id(w) for w in self.trainable_weights}
        return [w for w in self.weights if id(w) not in trainable]

    @property
    def losses(self):
        return [loss for layer in self.layers for loss in layer.losses]

    def get_weights(self):
        return [w.numpy() for w in self.weights]

    def set_weights(self, weights):
        weights = list(weights)
        expected = self.weights
        if len(weights) != len(expected):
            raise ValueError(
                f"You called `set_weights(weights)` on model '{self.name}' with a weight list of length "
                f"{len(weights)}, but the model was expecting {len(expected)} weights."
            )
        for var, value in zip(expected, weights):  # every check before any assignment
            shape = tuple(np.shape(_arrays.to_numpy(value)))
            if shape != var.shape:
                raise ValueError(
                    f"Weight '{var.path}' of model '{self.name}' has shape {var.shape}, "
                    f"which is not compatible with the provided weight shape {shape}."
                )
        for var, value in zip(expected, weights):
            var.assign(value)

    def save_weights(self, filepath, overwrite=True):
        """Keras 3's ``.weights.h5`` file: every layer's weights, and the optimizer's variables
        once the model is compiled (as Keras writes them)."""
        from . import weights_file

        weights_file.save_weights(self, filepath, overwrite=overwrite)

    def save(self, filepath, overwrite=True, zipped=None):
        """Keras' ``model.save``: a ``.keras`` archive (config, weights, compile config) that
        ``gpuconv.saving.load_model`` and real Keras 3's ``keras.saving.load_model`` both read."""
        from . import keras_archive

        keras_archive.save_archive(self, filepath, overwrite=overwrite, zipped=zipped)

    def load_weights(self, filepath, skip_mismatch=False):
        """Weights from a ``.weights.h5`` file written by gpuconv or by Keras 3 for the same
        architecture (the optimizer's variables too when they fit exactly)."""
        from . import weights_file

        weights_file.load_weights(self, filepath, skip_mismatch=skip_mismatch)

    def count_params(self):
        unbuilt = [layer.name for layer in self.layers if not layer.built]
        if unbuilt:
            raise ValueError(
                f"You tried to call `count_params` on layer '{self.name}', but the layer isn't built. "
                f"Unbuilt layers: {unbuilt}. You can build it manually via: `model.build(input_shape)`."
            )
        return int(sum(int(np.prod(w.shape)) for w in self.weights))

    # ---- summary -------------------------------------------------------------------------------
    def _summary_rows(self):
        """(rows, connected): the table's cells per layer and whether "Connected to" is shown."""
        rows = []
        for layer in self.layers:
            shapes = getattr(layer, "_build_shapes", None)
            shape = "?"
            if layer.built and shapes is not None:
                try:
                    shape = str(tuple(layer.compute_output_shape(shapes)))
                except Exception:  # a layer that cannot say: Keras prints '?'
                    shape = "?"
            rows.append((f"{layer.name} ({type(layer).__name__})", shape, _param_cell(layer)))
        return rows, False

    def summary(self, print_fn=None, line_length=None):
        """Keras' table: each layer's ``name (Type)``, output shape and parameter count (and
        "Connected to" for a branching functional model), then the totals."""
        rows, connected = self._summary_rows()
        model_summary.print_summary(self, rows, connected, print_fn=print_fn, line_length=line_length)


def _param_cell(layer):
    return f"{layer.count_params():,}" if layer.built else "0 (unbuilt)"
