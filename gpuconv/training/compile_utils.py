"""What ``compile(loss=..., metrics=...)`` turns into: one object that computes the total
compiled loss of a step, and one that keeps the compiled metrics, both resolved from the first
batch's shapes as Keras 3 does.

Why it exists apart from the trainer: the names "accuracy" / "acc" and "crossentropy" / "ce"
mean a different function per output (binary, sparse categorical or categorical, chosen from the
shapes of ``y_true`` and ``y_pred``), so the objects can only be built once a batch is seen;
keeping that resolution here leaves the trainer a plain loop.

Outputs: a single array, a flat list / tuple of arrays or a flat dict of arrays (a functional
model's output structure). ``loss``, ``loss_weights``, ``metrics`` and ``weighted_metrics`` are
one value for every output, a list (one entry per output, in output order) or a dict keyed by
output name, with Keras 3.15's rules:

- the flat order of the outputs is the list order, or the sorted keys of a dict;
- an output is named by its dict key, or (list outputs) by the layer that produces it
  (``model.output_names``); a model with several losses logs ``"<name>_loss"`` for each (the
  unweighted loss, averaged over the samples) and ``"<name>_<metric>"`` for each metric;
- ``y`` and ``sample_weight`` may be arrays, lists or dicts; a dict ``y`` for list outputs is
  matched by output name, and a shorter list ``y`` goes to the outputs that have a loss.

Outputs nested more deeply (a dict of lists, ...) are refused with a clear error.
"""
import numbers

from ..autodiff import functions as F

__all__ = ["CompileLoss", "CompileMetrics", "OutputStructureError", "resolve_loss", "resolve_metric"]

_ACCURACY_NAMES = ("accuracy", "acc")
_CROSSENTROPY_NAMES = ("crossentropy", "ce")


class OutputStructureError(ValueError, KeyError):
    """A ``loss`` entry that names or indexes an output the model does not have. Keras raises a
    KeyError here; deriving from both lets code written for Keras (``except KeyError``) and code
    expecting an argument error (``except ValueError``) catch it."""

    __str__ = ValueError.__str__  # the message as written, not KeyError's quoted repr


def _is_nested(value):
    return isinstance(value, (list, tuple, dict))


def _flatten(value):
    """The leaves of a nest of lists / tuples / dicts in Keras' order (dicts by sorted key)."""
    if isinstance(value, dict):
        return [leaf for key in sorted(value) for leaf in _flatten(value[key])]
    if isinstance(value, (list, tuple)):
        return [leaf for item in value for leaf in _flatten(item)]
    return [value]


def _same_structure(a, b):
    if isinstance(a, dict) or isinstance(b, dict):
        return isinstance(a, dict) and isinstance(b, dict) and set(a) == set(b) and all(
            _same_structure(a[key], b[key]) for key in a)
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b)
                and all(map(_same_structure, a, b)))
    return True


def _placeholder(structure):
    """``structure`` with every leaf shown as "X" (how Keras prints an output structure)."""
    if isinstance(structure, dict):
        return {key: _placeholder(value) for key, value in structure.items()}
    if isinstance(structure, (list, tuple)):
        return [_placeholder(value) for value in structure]
    return "X"


class _Outputs:
    """The flat view of a model's outputs that losses and metrics are matched against: their
    keys in flat order (list indices, or a dict's sorted keys) and their names."""

    def __init__(self, y_pred, output_names=None):
        if isinstance(y_pred, dict):
            self.kind, self.keys = "dict", sorted(y_pred)
        elif isinstance(y_pred, (list, tuple)):
            self.kind, self.keys = "list", list(range(len(y_pred)))
        else:
            self.kind, self.keys = "single", [0]
        if self.kind != "single" and any(_is_nested(v) for v in (y_pred.values() if self.kind == "dict" else y_pred)):
            raise ValueError(
                "Nested output structures (a list or dict inside the model's outputs) are not supported; "
                f"use a flat list or dict of outputs. Received outputs of structure {_placeholder(y_pred)}"
            )
        self.n = len(self.keys)
        self.structure = _placeholder(y_pred)
        self.model_names = list(output_names) if output_names is not None else None
        if self.kind == "dict":
            self.names = [str(key) for key in self.keys]  # Keras names dict outputs by their keys
        elif self.model_names is not None and len(self.model_names) == self.n:
            self.names = list(self.model_names)
        else:
            self.names = None

    def flatten_pred(self, y_pred):
        if self.kind == "dict":
            return [y_pred[key] for key in self.keys]
        return list(y_pred) if self.kind == "list" else [y_pred]

    def flatten(self, value, argument, fill=None):
        """``value`` (``y`` or ``sample_weight``: an array, a list or a dict) as one entry per flat
        output (None where it gives none). A list shorter than the outputs goes to the outputs
        ``fill`` lists (those with a loss), in order."""
        if value is None:
            return [None] * self.n
        if self.n == 1:
            if isinstance(value, (list, tuple, dict)) and len(value) == 1:
                return list(value.values()) if isinstance(value, dict) else [value[0]]
            if not _is_nested(value):
                return [value]
        if isinstance(value, dict):
            return self._from_dict(value, argument)
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        if len(values) == self.n:
            return values
        if fill is not None and len(values) == len(fill) and len(values) < self.n:
            flat = [None] * self.n
            for index, item in zip(fill, values):
                flat[index] = item
            return flat
        raise ValueError(
            f"`{argument}` and the model's outputs have different structures: the model has {self.n} outputs "
            f"{self.structure}, `{argument}` has {len(values)} entries."
        )

    def _from_dict(self, value, argument):
        names = self.keys if self.kind == "dict" else self.model_names
        if names is None or not set(value) <= set(names):
            raise ValueError(
                f"`{argument}` is a dict whose keys do not match the model's outputs. Expected keys among "
                f"{list(names) if names is not None else []}. Received: {argument} keys {list(value)}"
            )
        return [value.get(name) for name in names]


def _binary_or_sparse(y_true, y_pred):
    """Keras' rule: binary when ``y_pred`` has one column; sparse categorical when the labels
    have one axis fewer than the predictions, or a single column against several."""
    y_true_shape, y_pred_shape = tuple(y_true.shape), tuple(y_pred.shape)
    is_binary = y_pred_shape[-1:] == (1,)
    is_sparse = len(y_true_shape) < len(y_pred_shape) or (y_true_shape[-1:] == (1,) and y_pred_shape[-1] > 1)
    return is_binary, is_sparse


def resolve_loss(identifier, y_true, y_pred):
    """The Loss object for one output (None for an output without a loss)."""
    from .. import losses

    if identifier is None:
        return None
    if isinstance(identifier, str) and identifier.lower() in _CROSSENTROPY_NAMES:
        is_binary, is_sparse = _binary_or_sparse(y_true, y_pred)
        fn = (losses.binary_crossentropy if is_binary
              else losses.sparse_categorical_crossentropy if is_sparse else losses.categorical_crossentropy)
    else:
        fn = losses.get(identifier)
    if isinstance(fn, losses.Loss):
        return fn
    name = identifier if isinstance(identifier, str) else getattr(fn, "__name__", type(fn).__name__)
    return losses.LossFunctionWrapper(fn, name=name)


def resolve_metric(identifier, y_true, y_pred):
    """The Metric object for one entry of ``metrics`` (named as the user wrote it)."""
    from .. import metrics

    if identifier is None:
        raise ValueError("Expected metric, received `None`")
    if isinstance(identifier, str) and identifier.lower() in _ACCURACY_NAMES:
        is_binary, is_sparse = _binary_or_sparse(y_true, y_pred)
        cls = (metrics.BinaryAccuracy if is_binary
               else metrics.SparseCategoricalAccuracy if is_sparse else metrics.CategoricalAccuracy)
        return cls(name=identifier)
    metric = metrics.get(identifier)
    name = identifier if isinstance(identifier, str) else getattr(metric, "name", None) or getattr(
        metric, "__name__", type(metric).__name__)
    if not isinstance(metric, metrics.Metric):
        metric = metrics.MeanMetricWrapper(metric, name=name)
    metric.name = name
    return metric


def _check_target(y_true, output_name, argument):
    if y_true is None:
        raise ValueError(
            f"The output {output_name!r} has a `{argument}` entry but `y` gives no target for it. "
            "Pass one target per output (an array, a list or a dict keyed by output name)."
        )


# ---- loss ----------------------------------------------------------------------------------------
def _missing_path(path):
    return OutputStructureError(
        f"The path: {path} in the `loss` argument, can't be found in either the model's output (`y_pred`) "
        "or in the labels (`y_true`)."
    )


def _pair_weights(loss, loss_weights):
    """``loss_weights`` in the structure of ``loss``: matched entry by entry when the structures
    agree, else by flat order (dicts by sorted key), as Keras pairs them."""
    if loss_weights is None:
        return _map_leaves(lambda _: None, loss)
    if _same_structure(loss, loss_weights):
        return loss_weights
    flat_loss, flat_weights = _flatten(loss), _flatten(loss_weights)
    if len(flat_loss) != len(flat_weights):
        raise ValueError(
            f"`loss_weights` must match the number of losses, got {len(flat_loss)} losses and "
            f"{len(flat_weights)} weights."
        )
    weights = iter(flat_weights)
    if isinstance(loss, dict):
        by_key = {key: next(weights) for key in sorted(loss)}
        return {key: by_key[key] for key in loss}
    if isinstance(loss, (list, tuple)):
        return [next(weights) for _ in loss]
    return next(weights)


def _map_leaves(fn, structure):
    if isinstance(structure, dict):
        return {key: fn(value) for key, value in structure.items()}
    if isinstance(structure, (list, tuple)):
        return [fn(value) for value in structure]
    return fn(structure)


def _per_output_losses(outputs, loss, weights):
    """[(flat output index, loss spec, weight)] in Keras' order: a dict's own key order, else the
    flat output order; outputs without a loss are left out."""
    if isinstance(loss, dict):  # only dict outputs get here: list outputs had it turned into a list
        pairs = []
        for key, spec in loss.items():
            if spec is None:
                continue
            if key not in outputs.keys:
                raise _missing_path((key,))
            pairs.append((outputs.keys.index(key), spec, weights[key]))
        return pairs
    if isinstance(loss, (list, tuple)):
        if any(_is_nested(spec) for spec in loss):
            raise ValueError(
                "Each entry of a `loss` list must be one loss (a name, a function or a Loss); several losses "
                f"for one output are not supported. Received: loss={loss!r}"
            )
        if len(loss) > outputs.n and outputs.kind == "list":
            raise _missing_path((outputs.n,))
        if len(loss) != outputs.n and outputs.kind != "list":
            raise ValueError(
                f"`loss` as a list must have one entry per output ({outputs.n} output(s): {outputs.structure}). "
                f"Received: loss={loss!r}"
            )
        # A shorter list gives losses to the first outputs only (Keras).
        return [(i, spec, weight) for i, (spec, weight) in enumerate(zip(loss, weights)) if spec is not None]
    return [(i, loss, weights) for i in range(outputs.n)] if loss is not None else []


class CompileLoss:
    """The weighted sum of each output's loss; recorded on the tape (every term is computed with
    the recorded array functions), so ``tape.gradient`` differentiates it. With several losses,
    ``metrics`` holds one ``Mean`` per loss ("<output>_loss") that each step updates with the
    unweighted value."""

    def __init__(self, loss, loss_weights=None, output_names=None):
        if loss_weights is not None and (isinstance(loss_weights, bool) or not isinstance(
                loss_weights, (list, tuple, dict, numbers.Real))):
            raise ValueError(
                "Expected `loss_weights` argument to be a float (single output case) or a list, tuple, or dict "
                f"(multiple output case). Received instead: loss_weights={loss_weights} of type {type(loss_weights)}"
            )
        self._user_loss = loss
        self._user_loss_weights = loss_weights
        self.output_names = list(output_names) if output_names is not None else None
        self._outputs = None
        self._losses = None  # [(flat output index, Loss, weight or None, name)], from the first batch
        self.metrics = []

    @property
    def built(self):
        return self._losses is not None

    def _as_list_for_outputs(self, loss, loss_weights):
        """A ``loss`` dict for list (or single) outputs, as a list in ``output_names`` order."""
        names = self.output_names
        if names is None or set(loss) != set(names):
            raise ValueError(f"Expected keys {names} in loss dict, but found loss.keys()={list(loss.keys())}")
        if isinstance(loss_weights, dict) and set(loss_weights) == set(names):
            loss_weights = [loss_weights[name] for name in names]
        return [loss[name] for name in names], loss_weights

    def build(self, y_true, y_pred):
        from .. import metrics as metrics_module

        outputs = _Outputs(y_pred, self.output_names)
        loss, loss_weights = self._user_loss, self._user_loss_weights
        if isinstance(loss, dict) and outputs.kind != "dict":
            loss, loss_weights = self._as_list_for_outputs(loss, loss_weights)
        if outputs.kind == "single" and isinstance(loss, (list, tuple)):
            if len(loss) != 1:
                raise ValueError(
                    f"`loss` as a list must have one entry per output (the model has 1 output). Received: loss={loss!r}"
                )
        per_output = _per_output_losses(outputs, loss, _pair_weights(loss, loss_weights))
        # A `y` list shorter than the outputs gives targets to the outputs with a loss, in order.
        fill = sorted({index for index, _, _ in per_output})
        flat_true, flat_pred = outputs.flatten(y_true, "y", fill), outputs.flatten_pred(y_pred)
        entries = []
        for index, spec, weight in per_output:
            name = outputs.names[index] if outputs.names is not None else None
            if isinstance(y_true, dict) and outputs.kind == "dict" and outputs.keys[index] not in y_true:
                raise _missing_path((outputs.keys[index],))
            _check_target(flat_true[index], name, "loss")
            resolved = resolve_loss(spec, flat_true[index], flat_pred[index])
            weight = None if weight is None else float(weight)
            entries.append((index, resolved, weight, name if name is not None else resolved.name))
        self._outputs, self._losses = outputs, entries
        self._fill = fill
        # Per-loss trackers only when there is more than one loss (Keras' condition).
        self.metrics = ([metrics_module.Mean(name=f"{name}_loss") for _, _, _, name in entries]
                        if len(entries) > 1 else [])

    def __call__(self, y_true, y_pred, sample_weight=None):
        if self._losses is None:
            self.build(y_true, y_pred)
        outputs = self._outputs
        flat_true = outputs.flatten(y_true, "y", self._fill)
        flat_pred = outputs.flatten_pred(y_pred)
        flat_weights = (outputs.flatten(sample_weight, "sample_weight", self._fill) if _is_nested(sample_weight)
                        else [sample_weight] * outputs.n)
        total = None
        trackers = self.metrics or [None] * len(self._losses)
        for (index, loss, weight, name), tracker in zip(self._losses, trackers):
            _check_target(flat_true[index], name, "loss")
            value = loss(flat_true[index], flat_pred[index], sample_weight=flat_weights[index])
            if tracker is not None:
                tracker.update_state(value, sample_weight=int(flat_pred[index].shape[0]))
            if weight is not None:
                value = F.multiply(value, weight)
            total = value if total is None else F.add(total, value)
        return total


# ---- metrics -------------------------------------------------------------------------------------
class _OutputMetrics:
    """The metrics of one output, with the output's name for the logs (None: a single output)."""

    def __init__(self, metrics, output_name):
        self.metrics = metrics
        self.output_name = output_name


class CompileMetrics:
    """The compiled metrics of every output: ``metrics`` are updated without the sample weights,
    ``weighted_metrics`` with them (Keras 3's split)."""

    name = "compile_metrics"

    def __init__(self, metrics=None, weighted_metrics=None, output_names=None):
        for argument, value in (("metrics", metrics), ("weighted_metrics", weighted_metrics)):
            if value and not isinstance(value, (list, tuple, dict)):
                raise ValueError(
                    f"Expected `{argument}` argument to be a list, tuple, or dict. "
                    f"Received instead: {argument}={value} of type {type(value)}"
                )
        self._user_metrics = metrics
        self._user_weighted_metrics = weighted_metrics
        self.output_names = list(output_names) if output_names is not None else None
        self._plain = None  # [_OutputMetrics or None] per flat output
        self._weighted = None

    @property
    def built(self):
        return self._plain is not None

    @property
    def metrics(self):
        if not self.built:
            return []
        return [m for group in self._plain + self._weighted if group is not None for m in group.metrics]

    def _metric_names(self, outputs):
        """The names that prefix each output's metrics: dict keys, or the model's output names."""
        return outputs.names

    def _per_output_specs(self, spec, outputs, argument):
        names = self._metric_names(outputs)
        if isinstance(spec, (list, tuple)) and len(spec) == outputs.n:
            return list(spec)
        if isinstance(spec, dict) and names and len(spec) <= outputs.n and set(spec) <= set(names):
            return [spec.get(name) for name in names]
        expected = (f"either be a dict or a list matching the output names of the functional model "
                    f"{self.output_names} or " if self.output_names else "")
        raise ValueError(
            f"Expected one entry per output ({outputs.n} outputs) or a dict keyed by output name.\n"
            f"Invalid `{argument}`. `{argument}` should contain metrics objects and {expected}match the output "
            f"structure of the model: {outputs.structure}.\nReceived: {argument}={spec}"
        )

    def _build_set(self, spec, outputs, flat_true, flat_pred, argument):
        if not spec:
            return [None] * outputs.n
        if outputs.n == 1:  # every metric applies to the one output, named without a prefix
            _check_target(flat_true[0], None, argument)
            return [_OutputMetrics([resolve_metric(m, flat_true[0], flat_pred[0]) for m in _flatten(spec)], None)]
        names = self._metric_names(outputs) or [None] * outputs.n
        groups = []
        for entry, yt, yp, name in zip(self._per_output_specs(spec, outputs, argument), flat_true, flat_pred, names):
            if entry is None:
                groups.append(None)
                continue
            _check_target(yt, name, argument)
            entries = list(entry) if isinstance(entry, (list, tuple)) else [entry]
            groups.append(_OutputMetrics([resolve_metric(m, yt, yp) for m in entries], name))
        return groups

    def build(self, y_true, y_pred):
        outputs = _Outputs(y_pred, self.output_names)
        flat_true, flat_pred = outputs.flatten(y_true, "y"), outputs.flatten_pred(y_pred)
        self._outputs = outputs
        self._plain = self._build_set(self._user_metrics, outputs, flat_true, flat_pred, "metrics")
        self._weighted = self._build_set(self._user_weighted_metrics, outputs, flat_true, flat_pred,
                                         "weighted_metrics")

    def update_state(self, y_true, y_pred, sample_weight=None):
        if not self.built:
            self.build(y_true, y_pred)
        outputs = self._outputs
        flat_true, flat_pred = outputs.flatten(y_true, "y"), outputs.flatten_pred(y_pred)
        for group, yt, yp in zip(self._plain, flat_true, flat_pred):
            for m in group.metrics if group is not None else ():
                m.update_state(yt, yp)
        weights = [sample_weight] * outputs.n
        if _is_nested(sample_weight):
            weights = outputs.flatten(sample_weight, "sample_weight")
        for group, yt, yp, sw in zip(self._weighted, flat_true, flat_pred, weights):
            for m in group.metrics if group is not None else ():
                m.update_state(yt, yp, sample_weight=sw)

    def reset_state(self):
        for m in self.metrics:
            m.reset_state()

    def result(self):
        """{name: value}: "<output>_<metric>" for several outputs; a repeated name gets "_1",
        "_2", ...; a weighted metric whose name is already taken is called
        "[<output>_]weighted_<name>" (Keras' naming)."""
        results, counts = {}, {}

        def unique(name):
            if name not in counts:
                counts[name] = 1
                return name
            counts[name] += 1
            return f"{name}_{counts[name] - 1}"

        def prefixed(group, name):
            return f"{group.output_name}_{name}" if group.output_name else name

        for group in self._plain or ():
            for m in group.metrics if group is not None else ():
                results[unique(prefixed(group, m.name))] = m.result()
        for group in self._weighted or ():
            for m in group.metrics if group is not None else ():
                name = prefixed(group, m.name)
                if name in counts:
                    name = unique(prefixed(group, f"weighted_{m.name}"))
                else:
                    counts[name] = 1
                results[name] = m.result()
        return results
