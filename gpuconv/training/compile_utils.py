"""What ``compile(loss=..., metrics=...)`` turns into: one object that computes the total
compiled loss of a step, and one that keeps the compiled metrics, both resolved from the first
batch's shapes as Keras 3 does.

Why it exists apart from the trainer: the names "accuracy" / "acc" and "crossentropy" / "ce"
mean a different function per output (binary, sparse categorical or categorical, chosen from the
shapes of ``y_true`` and ``y_pred``), so the objects can only be built once a batch is seen;
keeping that resolution here leaves the trainer a plain loop.

Outputs: a single array, or a flat list / tuple of arrays (one per output; ``loss`` and
``metrics`` then either apply to every output or are given per output as a list of the same
length). Nested output structures are refused with a clear error.
"""
import numbers

from ..autodiff import functions as F

__all__ = ["CompileLoss", "CompileMetrics", "resolve_loss", "resolve_metric"]

_ACCURACY_NAMES = ("accuracy", "acc")
_CROSSENTROPY_NAMES = ("crossentropy", "ce")


def _flat_outputs(y, what):
    """``y`` as a list of arrays (one per output)."""
    if isinstance(y, (list, tuple)):
        for item in y:
            if isinstance(item, (list, tuple, dict)):
                raise ValueError(f"Nested structures of {what} are not supported. Received: {what} of type {type(y)}")
        return list(y)
    if isinstance(y, dict):
        raise ValueError(f"Dict-structured {what} need a functional model with named outputs. Received: {what}={y!r}")
    return [y]


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


def _per_output(spec, n_outputs, argument):
    """``spec`` spread over the outputs: one value for all, or a list of one per output."""
    if n_outputs > 1 and isinstance(spec, (list, tuple)) and len(spec) == n_outputs:
        return list(spec)
    if n_outputs > 1 and isinstance(spec, (list, tuple)):
        raise ValueError(
            f"`{argument}` must have one entry per output ({n_outputs} outputs) or apply to every output. "
            f"Received: {argument}={spec!r}"
        )
    return [spec] * n_outputs


class CompileLoss:
    """The weighted sum of each output's loss; recorded on the tape (every term is computed with
    the recorded array functions), so ``tape.gradient`` differentiates it."""

    def __init__(self, loss, loss_weights=None):
        if loss_weights is not None and not isinstance(loss_weights, (list, tuple, numbers.Real)):
            raise ValueError(
                "Expected `loss_weights` argument to be a float (single output case) or a list or tuple "
                f"(multiple output case). Received instead: loss_weights={loss_weights} of type {type(loss_weights)}"
            )
        self._user_loss = loss
        self._user_loss_weights = loss_weights
        self._losses = None  # [(Loss or None, weight)] per output, from the first batch

    def build(self, y_true, y_pred):
        y_true, y_pred = _flat_outputs(y_true, "y"), _flat_outputs(y_pred, "y_pred")
        n = len(y_pred)
        if len(y_true) != n:
            raise ValueError(f"The model has {n} output(s) but `y` has {len(y_true)} entries.")
        weights = _per_output(1.0 if self._user_loss_weights is None else self._user_loss_weights, n, "loss_weights")
        specs = _per_output(self._user_loss, n, "loss")
        self._losses = [(resolve_loss(s, yt, yp), float(w)) for s, yt, yp, w in zip(specs, y_true, y_pred, weights)]

    def __call__(self, y_true, y_pred, sample_weight=None):
        if self._losses is None:
            self.build(y_true, y_pred)
        y_true, y_pred = _flat_outputs(y_true, "y"), _flat_outputs(y_pred, "y_pred")
        weights = _flat_outputs(sample_weight, "sample_weight") if sample_weight is not None else [None]
        weights = weights * len(y_pred) if len(weights) < len(y_pred) else weights
        total = None
        for (loss, weight), yt, yp, sw in zip(self._losses, y_true, y_pred, weights):
            if loss is None:
                continue
            value = loss(yt, yp, sample_weight=sw)
            if weight != 1.0:
                value = F.multiply(value, weight)
            total = value if total is None else F.add(total, value)
        return total


class CompileMetrics:
    """The compiled metrics of every output: ``metrics`` are updated without the sample weights,
    ``weighted_metrics`` with them (Keras 3's split)."""

    name = "compile_metrics"

    def __init__(self, metrics=None, weighted_metrics=None):
        for argument, value in (("metrics", metrics), ("weighted_metrics", weighted_metrics)):
            if value and not isinstance(value, (list, tuple)):
                raise ValueError(
                    f"Expected `{argument}` argument to be a list, tuple, or dict. "
                    f"Received instead: {argument}={value} of type {type(value)}"
                )
        self._user_metrics = metrics
        self._user_weighted_metrics = weighted_metrics
        self._plain = None  # [[Metric]] per output
        self._weighted = None

    @property
    def built(self):
        return self._plain is not None

    @property
    def metrics(self):
        if not self.built:
            return []
        return [m for per_output in self._plain + self._weighted for m in per_output]

    def _build_set(self, spec, y_true, y_pred):
        n = len(y_pred)
        if not spec:
            return [[] for _ in range(n)]
        if n > 1 and len(spec) == n and all(isinstance(s, (list, tuple)) or s is None for s in spec):
            per_output = [list(s or ()) for s in spec]
        else:
            per_output = [list(spec)] * n
        return [[resolve_metric(m, yt, yp) for m in ms] for ms, yt, yp in zip(per_output, y_true, y_pred)]

    def build(self, y_true, y_pred):
        y_true, y_pred = _flat_outputs(y_true, "y"), _flat_outputs(y_pred, "y_pred")
        self._prefixes = [""] if len(y_pred) == 1 else [f"output_{i}_" for i in range(len(y_pred))]
        self._plain = self._build_set(self._user_metrics, y_true, y_pred)
        self._weighted = self._build_set(self._user_weighted_metrics, y_true, y_pred)

    def update_state(self, y_true, y_pred, sample_weight=None):
        if not self.built:
            self.build(y_true, y_pred)
        y_true, y_pred = _flat_outputs(y_true, "y"), _flat_outputs(y_pred, "y_pred")
        weights = _flat_outputs(sample_weight, "sample_weight") if sample_weight is not None else [None]
        weights = weights * len(y_pred) if len(weights) < len(y_pred) else weights
        for ms, yt, yp in zip(self._plain, y_true, y_pred):
            for m in ms:
                m.update_state(yt, yp)
        for ms, yt, yp, sw in zip(self._weighted, y_true, y_pred, weights):
            for m in ms:
                m.update_state(yt, yp, sample_weight=sw)

    def reset_state(self):
        for m in self.metrics:
            m.reset_state()

    def result(self):
        """{name: value}; a repeated name gets "_1", "_2", ...; a weighted metric whose name a
        plain one already has is called "weighted_<name>" (Keras' naming)."""
        results, counts = {}, {}

        def put(name):
            if name in counts:
                counts[name] += 1
                return f"{name}_{counts[name] - 1}"
            counts[name] = 1
            return name

        for ms, prefix in zip(self._plain, self._prefixes):
            for m in ms:
                results[put(prefix + m.name)] = m.result()
        for ms, prefix in zip(self._weighted, self._prefixes):
            for m in ms:
                name = prefix + m.name
                results[put(prefix + "weighted_" + m.name if name in counts else name)] = m.result()
        return results
