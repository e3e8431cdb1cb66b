"""What ``fit`` / ``evaluate`` / ``predict`` accept as data, turned into one epoch's batches.

Keras 3.15 splits this between data adapters (one per input kind: arrays, Python generators,
``PyDataset``) that know how to produce one pass of batches, and an ``EpochIterator`` that
decides how many batches make an epoch (``steps_per_epoch``) and what happens when the data
runs out. This module follows that split and Keras' rules, with gpuconv's two differences:

- batches stay where the arrays live: CuPy (and cuda-emulator) arrays are sliced on their
  device and never copied to the host, as are other libraries' CUDA tensors (taken as CuPy
  views through DLPack, ``arrays.as_array``); everything else becomes NumPy;
- shuffling draws from ``gpuconv.utils.random.global_generator()``, so
  ``set_random_seed(s)`` makes the order of every epoch reproducible.

Every batch comes out as a 3-tuple ``(x, y, sample_weight)`` with None for an absent part.

Where Keras 3.15's ``EpochIterator`` misbehaves at the edges, this one does the evident thing
instead (see ``EpochIterator``): a generator that has run out yields no more batches rather
than replaying the two batches Keras peeked at, the batch count it learns is the number it
really yielded, and a dataset's ``on_epoch_end`` runs once per epoch.
"""
import collections
import collections.abc
import itertools
import math
import numbers
import warnings

import numpy as np

from .. import arrays as _arrays
from .. import dtypes as _dtypes
from ..utils import py_dataset as _py_dataset
from ..utils import random as _random

# Keras' floatx: float arrays of any other precision are cast to it once, as Keras' array
# adapter does, so a float64 dataset trains with Keras' numbers.
FLOATX = np.dtype("float32")
# The batch size Keras uses when neither `batch_size` nor `steps_per_epoch` decides it.
DEFAULT_BATCH_SIZE = 32
# What `next(iterator, _END)` returns when an iterator has no more batches.
_END = object()


# ---- nested structures (x and y may be lists, tuples or dicts of arrays) ------------------------
def _map_structure(fn, structure):
    """``fn`` applied to every leaf of nested lists / tuples / dicts; None stays None."""
    if structure is None:
        return None
    if isinstance(structure, dict):
        return {key: _map_structure(fn, value) for key, value in structure.items()}
    if isinstance(structure, (list, tuple)):
        values = [_map_structure(fn, value) for value in structure]
        return type(structure)(*values) if hasattr(structure, "_fields") else type(structure)(values)
    return fn(structure)


def _leaves(structure):
    """The non-None leaves of nested lists / tuples / dicts, in order."""
    if structure is None:
        return []
    if isinstance(structure, dict):
        return [leaf for value in structure.values() for leaf in _leaves(value)]
    if isinstance(structure, (list, tuple)):
        return [leaf for value in structure for leaf in _leaves(value)]
    return [structure]


def _is_nested(structure):
    return isinstance(structure, (list, tuple, dict))


# ---- single arrays -------------------------------------------------------------------------------
def _is_device_array(x):
    return _arrays.is_cupy_array(x) or _arrays.is_emulator_array(x)


def _as_batch_array(x, name="x"):
    """A leaf of a batch as the trainer gets it: device arrays and NumPy arrays unchanged, other
    libraries' arrays through ``arrays.as_array`` (CPU tensors as NumPy views, CUDA tensors as
    CuPy views; a tensor that requires grad is refused, as a layer refuses it), anything else (a
    Python scalar) as it is."""
    return _arrays.as_array(x, name) if _arrays.is_array_like(x) else x


def _as_dataset_array(x, name):
    """A leaf of array data as the array adapter keeps it: on its device or as NumPy, with a batch
    axis, float data in Keras' floatx."""
    array = _as_batch_array(x, name)
    if array.ndim == 0:
        raise ValueError(
            f"Argument `{name}` must hold arrays with a batch axis. Received an array of shape {tuple(array.shape)}."
        )
    dtype = np.dtype(array.dtype)
    if _dtypes.is_float(dtype) and dtype != FLOATX:  # bfloat16 too (NumPy kind 'V')
        array = array.astype(FLOATX)
    return array


def _standardize_arrays(structure, name):
    return _map_structure(lambda leaf: _as_dataset_array(leaf, name), structure)


def can_convert_arrays(structure):
    """Whether every leaf of ``structure`` (None allowed) is array-like (Keras' test for taking
    data through the array adapter)."""
    return all(leaf is None or _arrays.is_array_like(leaf) for leaf in _leaves(structure))


# ---- (x, y, sample_weight) tuples ----------------------------------------------------------------
def unpack_x_y_sample_weight(data):
    """``(x, y, sample_weight)`` from ``x``, ``(x,)``, ``(x, y)`` or ``(x, y, sample_weight)``, with
    None for what is absent (``keras.utils.unpack_x_y_sample_weight``)."""
    if isinstance(data, list):
        data = tuple(data)
    if not isinstance(data, tuple):
        return (data, None, None)
    if len(data) == 1:
        return (data[0], None, None)
    if len(data) == 2:
        return (data[0], data[1], None)
    if len(data) == 3:
        return (data[0], data[1], data[2])
    raise ValueError(
        "Data is expected to be in format `x`, `(x,)`, `(x, y)`, "
        f"or `(x, y, sample_weight)`, found: {data}"
    )


def pack_x_y_sample_weight(x, y=None, sample_weight=None):
    """The tuple ``fit`` takes for ``x``, ``y`` and ``sample_weight``
    (``keras.utils.pack_x_y_sample_weight``): a lone non-sequence ``x`` is returned unwrapped."""
    if y is None:
        return x if not isinstance(x, (tuple, list)) else (x,)
    if sample_weight is None:
        return (x, y)
    return (x, y, sample_weight)


def _batch_tuple(data):
    """One batch of any source as the trainer gets it: ``(x, y, sample_weight)``."""
    return tuple(_map_structure(lambda leaf, name=name: _as_batch_array(leaf, name), part)
                 for name, part in zip(("x", "y", "sample_weight"), unpack_x_y_sample_weight(data)))


# ---- class weights --------------------------------------------------------------------------------
def _check_class_weight(class_weight):
    if not isinstance(class_weight, dict):
        raise TypeError(
            "Argument `class_weight` must be a dict mapping class indices to weights. "
            f"Received: class_weight={class_weight!r} (of type {type(class_weight)})"
        )
    for key, weight in class_weight.items():
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real):
            raise TypeError(
                "Argument `class_weight` must map class indices to numbers. "
                f"Received: class_weight={class_weight!r} (the weight of class {key!r} is {weight!r})"
            )


def class_weight_to_sample_weights(y, class_weight):
    """One weight per sample of ``y`` (sparse labels, ``(n, 1)`` labels or one-hot rows), looked
    up in ``class_weight`` ({class index: weight}; a class not in it weighs 1), as Keras does.
    The weights are float32, on ``y``'s device."""
    _check_class_weight(class_weight)
    if y is None:
        raise ValueError(f"Argument `class_weight` needs targets `y`. Received: y=None, class_weight={class_weight}")
    labels = _arrays.to_numpy(_as_batch_array(y, "y"))
    shape = labels.shape
    if labels.ndim > 1:
        labels = np.argmax(labels, axis=-1) if labels.shape[-1] != 1 else np.squeeze(labels, axis=-1)
    if labels.ndim != 1:
        raise ValueError(
            "Argument `class_weight` needs one label per sample: `y` of shape (n,), (n, 1) or one-hot "
            f"(n, classes). Received y of shape {shape}"
        )
    labels = np.round(labels).astype("int32")
    weights = np.ones(labels.shape, dtype=FLOATX)
    for label in np.unique(labels):
        weights[labels == label] = class_weight.get(int(label), 1.0)
    return _arrays.array_module(y).asarray(weights) if _is_device_array(y) else weights


# ---- argument checks --------------------------------------------------------------------------------
def check_positive_int(name, value, allow_none=True):
    """``value`` as an int; ValueError naming the argument unless a positive integer (or None)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"Argument `{name}` must be a positive integer. Received: {name}={value!r}")
    return int(value)


def _check_shuffle(shuffle):
    if shuffle == "batch" or isinstance(shuffle, (bool, np.bool_)):
        return shuffle if shuffle == "batch" else bool(shuffle)
    raise ValueError(f"Argument `shuffle` must be a boolean or 'batch'. Received: shuffle={shuffle!r}")


def _check_cardinality(parts):
    """Keras' check that x, y and sample_weight hold the same number of samples."""
    sizes = {name: [int(leaf.shape[0]) for leaf in _leaves(part)] for name, part in parts.items() if part is not None}
    if len({size for group in sizes.values() for size in group}) > 1:
        message = "Data cardinality is ambiguous. Make sure all arrays contain the same number of samples."
        for name, group in sizes.items():
            message += f"'{name}' sizes: {', '.join(str(size) for size in group)}\n"
        raise ValueError(message)


def _per_output_sample_weight(y, sample_weight):
    """For several outputs ``y``: ``sample_weight`` as one array per output (Keras' rules)."""
    if not _is_nested(y) or sample_weight is None:
        return sample_weight
    if _is_nested(sample_weight):
        if not _same_structure(y, sample_weight):
            raise ValueError(
                "You should provide one `sample_weight` array per output in `y`. The two structures did not match:\n"
                f"- y: {y}\n- sample_weight: {sample_weight}\n"
            )
        return sample_weight
    shape = tuple(sample_weight.shape)
    if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
        raise ValueError(
            "For a model with multiple outputs, when providing a single `sample_weight` array, it should only "
            "have one scalar score per sample (i.e. shape `(num_samples,)`). If you want to use non-scalar "
            "sample weights, pass a `sample_weight` argument with one array per model output."
        )
    return _map_structure(lambda _: sample_weight, y)


def _same_structure(a, b):
    if isinstance(a, dict) or isinstance(b, dict):
        return isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys() and all(
            _same_structure(a[key], b[key]) for key in a)
    if _is_nested(a) or _is_nested(b):
        return _is_nested(a) and _is_nested(b) and len(a) == len(b) and all(map(_same_structure, a, b))
    return True


# ---- adapters -------------------------------------------------------------------------------------------
class DataAdapter:
    """One kind of input data, producing one pass of batches at a time (Keras' ``DataAdapter``)."""

    def get_numpy_iterator(self):
        """An iterator over one pass of batches, each ``(x, y, sample_weight)``."""
        raise NotImplementedError

    def peek(self):
        """The first batch the next pass will start with (for building a model from its shapes)
        without consuming it or drawing random numbers; None when there is no data."""
        raise NotImplementedError

    @property
    def num_batches(self):
        """Batches in one pass, or None when unknown (a generator, an endless PyDataset)."""
        raise NotImplementedError

    @property
    def batch_size(self):
        """Samples per batch, or None when the data decides (generators, PyDataset)."""
        return None

    @property
    def has_partial_batch(self):
        """Whether the last batch of a pass is smaller than ``batch_size`` (None when unknown)."""
        return None

    @property
    def partial_batch_size(self):
        """The size of the smaller last batch, or None when there is none or it is unknown."""
        return None

    def on_epoch_begin(self):
        """Called before each epoch."""

    def on_epoch_end(self):
        """Called after each epoch."""


class ArrayDataAdapter(DataAdapter):
    """Arrays (NumPy, CuPy, or lists / tuples / dicts of them) sliced into batches of
    ``batch_size``, optionally shuffled once per pass (``shuffle=True``) or within each batch
    (``shuffle="batch"``)."""

    def __init__(self, x, y=None, sample_weight=None, batch_size=None, steps=None, shuffle=False,
                 class_weight=None):
        parts = {"x": x, "y": y, "sample_weight": sample_weight}
        for name, part in parts.items():
            if not can_convert_arrays(part):
                raise ValueError(
                    f"Expected all elements of `{name}` to be array-like (NumPy or CuPy arrays, or lists, tuples "
                    f"or dicts of them). Received invalid types: {name}={part!r} (of type {type(part)})"
                )
        if not _leaves(x):
            raise ValueError(f"Argument `x` must hold at least one array. Received: x={x!r}")
        batch_size = check_positive_int("batch_size", batch_size)
        steps = check_positive_int("steps", steps)
        self._shuffle = _check_shuffle(shuffle)
        x, y, sample_weight = (_standardize_arrays(part, name) for name, part in parts.items())
        if sample_weight is not None and class_weight is not None:
            raise ValueError("You cannot `class_weight` and `sample_weight` at the same time.")
        sample_weight = _per_output_sample_weight(y, sample_weight)
        if class_weight is not None:
            if _is_nested(y):
                raise ValueError("`class_weight` is only supported for Models with a single output.")
            sample_weight = class_weight_to_sample_weights(y, class_weight)
        _check_cardinality({"x": x, "y": y, "sample_weight": sample_weight})
        self._inputs = (x, y, sample_weight)
        self._num_samples = int(_leaves(x)[0].shape[0])
        if batch_size is None:
            batch_size = int(math.ceil(self._num_samples / steps)) if steps else DEFAULT_BATCH_SIZE
            batch_size = max(batch_size, 1)
        self._batch_size = batch_size
        self._size = int(math.ceil(self._num_samples / batch_size))
        self._partial_batch_size = self._num_samples % batch_size

    def _pass_order(self):
        """This pass's sample order (None: as given), drawn from gpuconv's global generator."""
        generator = _random.global_generator()
        if self._shuffle is True:
            return generator.permutation(self._num_samples)
        if self._shuffle == "batch" and self._num_samples:
            return np.concatenate([generator.permutation(stop - start) + start for start, stop in self._bounds()])
        return None

    def _bounds(self):
        return [(start, min(start + self._batch_size, self._num_samples))
                for start in range(0, self._num_samples, self._batch_size)]

    def _batch(self, take):
        return tuple(_map_structure(take, part) for part in self._inputs)

    def get_numpy_iterator(self):
        order = self._pass_order()
        order_on = {}  # the order, copied once per pass to each array library holding data (CuPy)

        def rows(array, start, stop):
            if order is None:
                return array[start:stop]
            xp = _arrays.array_module(array)
            if xp not in order_on:
                order_on[xp] = order if xp is np else xp.asarray(order)
            return array[order_on[xp][start:stop]]

        for start, stop in self._bounds():
            yield self._batch(lambda array: rows(array, start, stop))

    def peek(self):
        return self._batch(lambda array: array[:self._batch_size]) if self._num_samples else None

    @property
    def num_batches(self):
        return self._size

    @property
    def batch_size(self):
        return self._batch_size

    @property
    def has_partial_batch(self):
        return self._partial_batch_size > 0

    @property
    def partial_batch_size(self):
        return self._partial_batch_size or None


class GeneratorDataAdapter(DataAdapter):
    """A Python generator (or other iterator) yielding ``(x,)``, ``(x, y)`` or
    ``(x, y, sample_weight)``. It is consumed once: the batches of every epoch come from the same
    generator, continuing where the last epoch stopped."""

    def __init__(self, generator):
        first = next(generator, _END)
        if first is _END:
            raise ValueError(
                "When passing a Python generator to a Keras model, the generator must yield at least one batch. "
                "Received an empty generator."
            )
        if not isinstance(first, tuple):
            raise ValueError(
                "When passing a Python generator to a Keras model, the generator must return a tuple, either "
                f"(input,) or (inputs, targets) or (inputs, targets, sample_weights). Received: {first}"
            )
        self._generator = generator
        self._pushed_back = collections.deque([first])  # taken from the generator, not yet consumed

    def _next_item(self):
        return self._pushed_back.popleft() if self._pushed_back else next(self._generator, _END)

    def get_numpy_iterator(self):
        item = self._next_item()
        while item is not _END:
            yield _batch_tuple(item)
            item = self._next_item()

    def peek(self):
        if not self._pushed_back:
            item = next(self._generator, _END)
            if item is _END:
                return None
            self._pushed_back.append(item)
        return _batch_tuple(self._pushed_back[0])

    @property
    def num_batches(self):
        return None


class PyDatasetAdapter(DataAdapter):
    """A ``gpuconv.utils.PyDataset``: batch ``i`` is ``dataset[i]``, fetched ahead on threads when
    the dataset has ``workers > 1``; ``shuffle`` permutes the order of the batches of a finite
    dataset once per pass (Keras); ``class_weight`` weighs ``(x, y)`` batches."""

    def __init__(self, dataset, class_weight=None, shuffle=False):
        if class_weight is not None:
            _check_class_weight(class_weight)
        self.py_dataset = dataset
        self.class_weight = class_weight
        self.shuffle = _check_shuffle(shuffle)
        self._prefetch = _py_dataset.prefetches(dataset)
        self._prefetcher = None
        self._within_epoch = False

    def _standardize_batch(self, batch):
        if isinstance(batch, dict):
            return (batch, None, None)
        if isinstance(batch, np.ndarray) or _is_device_array(batch):
            batch = (batch,)
        if isinstance(batch, list):
            batch = tuple(batch)
        if not isinstance(batch, tuple) or len(batch) not in (1, 2, 3):
            raise ValueError(
                "PyDataset.__getitem__() must return a tuple or a dict. If a tuple, it must be ordered either "
                "(input,) or (inputs, targets) or (inputs, targets, sample_weights). "
                f"Received: {str(batch)[:100]}... of type {type(batch)}"
            )
        if self.class_weight is not None:
            if len(batch) == 3:
                raise ValueError("You cannot specify `class_weight` and `sample_weight` at the same time.")
            if len(batch) == 2:
                batch = batch + (class_weight_to_sample_weights(batch[1], self.class_weight),)
        return _batch_tuple(batch)

    def _indices(self):
        count = self.py_dataset.num_batches
        if count is None:
            return itertools.count()
        if self.shuffle:
            return (int(i) for i in _random.global_generator().permutation(count))
        return iter(range(count))

    def get_numpy_iterator(self):
        self._close_prefetcher()
        indices = self._indices()
        if not self._prefetch:
            return (self._standardize_batch(self.py_dataset[i]) for i in indices)
        self._prefetcher = _py_dataset.OrderedPrefetcher(self.py_dataset, indices)
        return map(self._standardize_batch, self._prefetcher)

    def _close_prefetcher(self):
        if self._prefetcher is not None:
            self._prefetcher.close()
            self._prefetcher = None

    def peek(self):
        return self._standardize_batch(self.py_dataset[0]) if self.py_dataset.num_batches != 0 else None

    def on_epoch_begin(self):
        if self._within_epoch:
            raise ValueError("`on_epoch_begin` was called twice without `on_epoch_end` having been called.")
        self._within_epoch = True
        self.py_dataset.on_epoch_begin()

    def on_epoch_end(self):
        if self._prefetcher is not None:
            self._prefetcher.pause()  # no __getitem__ runs while the dataset changes between epochs
        self.py_dataset.on_epoch_end()
        self._within_epoch = False

    @property
    def num_batches(self):
        return self.py_dataset.num_batches


def _is_generator(x):
    return isinstance(x, collections.abc.Iterator) and not _arrays.is_array_like(x)


def _refuse_argument(name, description, input_type):
    raise ValueError(
        f"When providing `x` as a {input_type}, `{name}` should not be passed. Instead, {description} should "
        f"be included as part of the {input_type}."
    )


def _refuse_targets_and_weights(y, sample_weight, input_type):
    if y is not None:
        _refuse_argument("y", "the targets", input_type)
    if sample_weight is not None:
        _refuse_argument("sample_weights", "the sample weights", input_type)


def get_data_adapter(x, y=None, sample_weight=None, batch_size=None, steps_per_epoch=None, shuffle=False,
                     class_weight=None):
    """The adapter for ``x`` (arrays, a generator or iterator, a ``PyDataset``, or a
    ``DataAdapter`` taken as it is), with Keras' errors and warnings for what it cannot use."""
    if isinstance(x, DataAdapter):
        return x
    shuffle = _check_shuffle(shuffle)
    if x is None:
        raise ValueError("Argument `x` must be provided: arrays, a generator or a PyDataset. Received: x=None")
    if can_convert_arrays(x):
        return ArrayDataAdapter(x, y, sample_weight=sample_weight, batch_size=batch_size, steps=steps_per_epoch,
                                shuffle=shuffle, class_weight=class_weight)
    if isinstance(x, _py_dataset.PyDataset):
        _refuse_targets_and_weights(y, sample_weight, "PyDataset")
        if shuffle and x.num_batches is None:
            warnings.warn(
                "`shuffle=True` was passed, but will be ignored since the data `x` was provided as an infinite "
                "PyDataset. The PyDataset is expected to already be shuffled.",
                stacklevel=2,
            )
        return PyDatasetAdapter(x, class_weight=class_weight, shuffle=shuffle)
    if _is_generator(x):
        _refuse_targets_and_weights(y, sample_weight, "generator")
        if class_weight is not None:
            raise ValueError(
                "Argument `class_weight` is not supported for Python generator inputs. "
                f"Received: class_weight={class_weight}"
            )
        if shuffle:
            warnings.warn(
                "`shuffle=True` was passed, but will be ignored since the data `x` was provided as a generator. "
                "The generator is expected to yield already-shuffled data.",
                stacklevel=2,
            )
        return GeneratorDataAdapter(x)
    raise ValueError(f"Unrecognized data type: x={x} (of type {type(x)})")


# ---- validation_split -------------------------------------------------------------------------------
def train_validation_split(arrays, validation_split):
    """``(train_arrays, validation_arrays)``: the last ``validation_split`` fraction of every array
    of ``arrays`` (a structure such as ``(x, y, sample_weight)``, None allowed) held out, in the
    given order, as Keras' ``validation_split`` does before any shuffling."""
    if isinstance(validation_split, bool) or not isinstance(validation_split, numbers.Real) \
            or not 0 < validation_split < 1:
        raise ValueError(
            f"Argument `validation_split` must be a float between 0 and 1 (exclusive). "
            f"Received: validation_split={validation_split!r}"
        )
    leaves = _leaves(arrays)
    unsplittable = [type(leaf) for leaf in leaves if not _arrays.is_array_like(leaf)]
    if unsplittable:
        raise ValueError(
            "Argument `validation_split` is only supported for tensors or NumPy arrays. "
            f"Found incompatible type in the input: {unsplittable}"
        )
    if not leaves:
        return arrays, arrays
    arrays = _standardize_arrays(arrays, "validation_split data")
    num_samples = int(_leaves(arrays)[0].shape[0])
    split_at = int(math.floor(num_samples * (1.0 - validation_split)))
    if split_at == 0 or split_at == num_samples:
        raise ValueError(
            f"Training data contains {num_samples} samples, which is not sufficient to split it into a validation "
            f"and training set as specified by `validation_split={validation_split}`. Either provide more data, "
            "or a different value for the `validation_split` argument."
        )
    train = _map_structure(lambda array: array[:split_at], arrays)
    validation = _map_structure(lambda array: array[split_at:num_samples], arrays)
    return train, validation


# ---- epochs -------------------------------------------------------------------------------------------
def _warn_out_of_data():
    warnings.warn(
        "Your input ran out of data; interrupting training. Make sure that your dataset or generator can "
        "generate at least `steps_per_epoch * epochs` batches. You may need to use the `.repeat()` function "
        "when building your dataset.",
        stacklevel=4,
    )


class EpochIterator:
    """The batches of each epoch of ``fit`` / ``evaluate`` / ``predict`` (Keras' ``EpochIterator``).

    Without ``steps_per_epoch`` an epoch is one pass over the data. With it, an epoch is that many
    batches, taken from a pass that continues across epochs (array data and a finite PyDataset
    start a new pass once one is used up; a generator is never restarted). Data that runs out
    before ``steps_per_epoch`` batches ends the epoch early with Keras' warning, as does a
    generator that has run out (later epochs of it get no batches; ``exhausted`` tells).

    ``enumerate_epoch()`` yields ``(step, batch)``; ``enumerate_executions()`` groups the steps by
    ``steps_per_execution`` as Keras' iterator does: ``(begin_step, end_step, [batches])``.
    The adapter's ``on_epoch_begin`` / ``on_epoch_end`` run once around every epoch, also one the
    consumer leaves early.
    """

    def __init__(self, x, y=None, sample_weight=None, batch_size=None, steps_per_epoch=None, shuffle=False,
                 class_weight=None, steps_per_execution=1):
        self.steps_per_epoch = check_positive_int("steps_per_epoch", steps_per_epoch)
        self.steps_per_execution = check_positive_int("steps_per_execution", steps_per_execution,
                                                       allow_none=False)
        self.data_adapter = get_data_adapter(x, y=y, sample_weight=sample_weight, batch_size=batch_size,
                                             steps_per_epoch=self.steps_per_epoch, shuffle=shuffle,
                                             class_weight=class_weight)
        self._num_batches = self.data_adapter.num_batches
        self._iterator = None  # the pass in progress
        self._steps_seen = 0  # batches taken from it
        self._in_epoch = False
        self.exhausted = False

    @property
    def num_batches(self):
        """Batches per epoch: ``steps_per_epoch``, else the data's count (for a generator, known
        once it has run out), else None."""
        return self.steps_per_epoch if self.steps_per_epoch else self._num_batches

    def peek(self):
        """The first batch of the data, ``(x, y, sample_weight)``, left in place for the next
        epoch (what Keras' trainer takes to build a model before it calls ``reset``)."""
        return self.data_adapter.peek()

    def peek_input_shape(self):
        """The shape of ``x`` in the first batch, as a tuple; None when there is no data or ``x`` is
        a structure of arrays."""
        batch = self.peek()
        if batch is None or _is_nested(batch[0]) or not hasattr(batch[0], "shape"):
            return None
        return tuple(batch[0].shape)

    def reset(self):
        """Forget the pass in progress (the next epoch starts a new one) and end an unfinished epoch."""
        self._finish_epoch()
        self._iterator = None
        self._steps_seen = 0
        self._learn_num_batches()

    def enumerate_epoch(self):
        """One epoch's ``(step, (x, y, sample_weight))``."""
        for begin, _, batches in self.enumerate_executions():
            for offset, batch in enumerate(batches):
                yield begin + offset, batch

    def enumerate_executions(self):
        """One epoch's ``(begin_step, end_step, batches)``, ``steps_per_execution`` batches each
        (the last group may be shorter when the data ends)."""
        self._finish_epoch()  # an epoch its consumer left early
        self.data_adapter.on_epoch_begin()
        self._in_epoch = True
        try:
            yield from self._executions()
        finally:
            self._finish_epoch()

    def _executions(self):
        if self._iterator is None or self.steps_per_epoch is None:
            self._open_pass()
        group = self.steps_per_execution
        step = 0
        while self.steps_per_epoch is None or step < self.steps_per_epoch:
            if self._pass_used_up():
                if self.steps_per_epoch is not None:
                    _warn_out_of_data()
                break
            batches = self._take(group)
            if batches:
                yield step, step + group - 1, batches
            if self._iterator is None:  # the source ran out
                break
            step += group
        if self._pass_used_up():
            self._iterator = None

    def _learn_num_batches(self):
        """The adapter's count when it knows one (a PyDataset's may change between epochs); a
        generator keeps the count learned when it ran out."""
        if self.data_adapter.num_batches is not None:
            self._num_batches = self.data_adapter.num_batches

    def _open_pass(self):
        self._iterator = iter(self.data_adapter.get_numpy_iterator())
        self._steps_seen = 0
        self._learn_num_batches()

    def _pass_used_up(self):
        """Whether the pass in progress has given all the batches its known count promised."""
        return self._num_batches is not None and self._steps_seen >= self._num_batches

    def _take(self, count):
        if self._num_batches is not None:
            count = min(count, self._num_batches - self._steps_seen)
        batches = []
        for _ in range(count):
            batch = next(self._iterator, _END)
            if batch is _END:
                self._ran_out()
                break
            batches.append(batch)
            self._steps_seen += 1
        return batches

    def _ran_out(self):
        if self._num_batches is None:
            self._num_batches = self._steps_seen
        self.exhausted = isinstance(self.data_adapter, GeneratorDataAdapter)
        self._iterator = None
        _warn_out_of_data()

    def _finish_epoch(self):
        if self._in_epoch:
            self._in_epoch = False
            self.data_adapter.on_epoch_end()
