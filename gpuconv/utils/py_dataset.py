"""``PyDataset``: Keras' contract for a dataset written in Python, and its in-order prefetching.

A user subclasses ``PyDataset``, returns one whole batch from ``__getitem__(index)`` and the
number of batches from ``__len__`` (or the ``num_batches`` property, None for an endless
dataset), and may hook ``on_epoch_begin`` / ``on_epoch_end``; ``fit``, ``evaluate`` and
``predict`` take the object as ``x`` (``gpuconv.training.data_adapters`` turns it into batches).

``workers > 1`` fetches batches ahead of the consumer on that many threads, at most
``max_queue_size`` ahead, and hands them out in index order, as Keras' ``OrderedEnqueuer``
does. ``use_multiprocessing=True`` runs on threads too, with a warning: gpuconv never pickles a
user's dataset into another process.
"""
import collections
import concurrent.futures
import itertools
import warnings


def _count_check(name, minimum):
    def check(value):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"Argument `{name}` must be an integer >= {minimum}. Received: {name}={value!r}")
        return value

    return check


def _check_use_multiprocessing(value):
    if not isinstance(value, bool):
        raise ValueError(f"Argument `use_multiprocessing` must be a boolean. Received: use_multiprocessing={value!r}")
    return value


# Keras' defaults, also what a subclass that skipped ``super().__init__`` gets.
_DEFAULTS = {"workers": 1, "use_multiprocessing": False, "max_queue_size": 10}


def _setting(name, check):
    """A parallelism setting of ``PyDataset``: checked when set; reading it first makes sure
    ``super().__init__`` ran (Keras' warning and defaults otherwise)."""
    attribute = "_" + name

    def read(self):
        self._warn_if_super_not_called()
        return getattr(self, attribute)

    def write(self, value):
        setattr(self, attribute, check(value))

    return property(read, write)


class PyDataset:
    """Base class of a dataset that builds its batches in Python code (Keras' ``PyDataset``).

    Args:
        workers: threads that fetch batches ahead of the training loop; 1 fetches on demand,
            in the caller's thread (Keras starts its enqueuer only for more than one worker, or
            for one worker with ``use_multiprocessing``).
        use_multiprocessing: accepted for Keras compatibility; batches are still fetched on
            threads (with a warning), since a dataset is never pickled.
        max_queue_size: the most batches fetched ahead of the consumer.
    """

    workers = _setting("workers", _count_check("workers", 0))
    use_multiprocessing = _setting("use_multiprocessing", _check_use_multiprocessing)
    max_queue_size = _setting("max_queue_size", _count_check("max_queue_size", 1))

    def __init__(self, workers=1, use_multiprocessing=False, max_queue_size=10):
        self.workers = workers
        self.use_multiprocessing = use_multiprocessing
        self.max_queue_size = max_queue_size

    def _warn_if_super_not_called(self):
        """A subclass that forgot ``super().__init__(**kwargs)`` gets Keras' defaults and warning."""
        missing = [name for name in _DEFAULTS if not hasattr(self, "_" + name)]
        for name in missing:
            setattr(self, "_" + name, _DEFAULTS[name])
        if missing:
            warnings.warn(
                "Your `PyDataset` class should call `super().__init__(**kwargs)` in its constructor. "
                "`**kwargs` can include `workers`, `use_multiprocessing`, `max_queue_size`. Do not pass "
                "these arguments to `fit()`, as they will be ignored.",
                stacklevel=3,
            )

    def __getitem__(self, index):
        """The batch at position ``index``: ``x``, ``(x,)``, ``(x, y)``, ``(x, y, sample_weight)``
        or a dict."""
        raise NotImplementedError

    @property
    def num_batches(self):
        """The number of batches, or None for an endless dataset; ``len(self)`` by default."""
        if hasattr(self, "__len__"):
            return len(self)
        raise NotImplementedError(
            "You need to implement the `num_batches` property:\n\n"
            "@property\ndef num_batches(self):\n  return ..."
        )

    def __iter__(self):
        """Every batch in order, in the caller's thread (no prefetching, as in Keras)."""
        try:
            count = self.num_batches
        except NotImplementedError:
            count = None
        for index in itertools.count() if count is None else range(count):
            yield self[index]

    def on_epoch_begin(self):
        """Called at the beginning of every epoch."""

    def on_epoch_end(self):
        """Called at the end of every epoch."""


# Keras keeps the old name as an alias.
Sequence = PyDataset


def prefetches(dataset):
    """Whether iterating ``dataset`` in ``fit`` uses worker threads (Keras' rule for starting its
    enqueuer)."""
    return dataset.workers > 1 or (dataset.workers > 0 and dataset.use_multiprocessing)


class OrderedPrefetcher:
    """``dataset[i]`` for each ``i`` of ``indices``, fetched on ``dataset.workers`` threads at most
    ``dataset.max_queue_size`` ahead of the consumer and returned in the order of ``indices``.

    An exception raised by ``__getitem__`` reaches the consumer at that batch's turn. ``pause()``
    waits until no fetch is running (nothing new starts until the next batch is asked for), so
    ``on_epoch_end`` / ``on_epoch_begin`` never run while ``__getitem__`` does. ``close()`` drops
    what was fetched ahead and stops the threads.
    """

    def __init__(self, dataset, indices):
        if dataset.use_multiprocessing:
            warnings.warn(
                "`use_multiprocessing=True` is not supported by gpuconv, which never pickles a "
                f"dataset into another process: the batches are fetched on {max(dataset.workers, 1)} "
                "threads instead.",
                stacklevel=3,
            )
        self._dataset = dataset
        self._indices = iter(indices)
        self._depth = dataset.max_queue_size
        self._pending = collections.deque()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(dataset.workers, 1), thread_name_prefix="gpuconv-PyDataset"
        )
        self._closed = False

    def __iter__(self):
        return self

    def __next__(self):
        if self._closed:
            raise StopIteration
        self._fill()
        if not self._pending:
            self.close()
            raise StopIteration
        future = self._pending.popleft()
        self._fill()  # keep max_queue_size batches coming while the consumer works on this one
        try:
            return future.result()
        except BaseException:
            self.close()
            raise

    def _fill(self):
        while len(self._pending) < self._depth:
            index = next(self._indices, None)
            if index is None:
                return
            self._pending.append(self._executor.submit(self._dataset.__getitem__, index))

    def pause(self):
        concurrent.futures.wait(list(self._pending))

    def close(self):
        if self._closed:
            return
        self._closed = True
        for future in self._pending:
            future.cancel()
        self._pending.clear()
        self._executor.shutdown(wait=True)
