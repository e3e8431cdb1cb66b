"""``gpuconv.utils.PyDataset`` through the data adapters: Keras' contract (``__len__`` or
``num_batches``, ``__getitem__``, the epoch hooks), in-order prefetching on worker threads, and
the errors for what a dataset may not return or be given."""
import pickle
import threading
import time
import warnings

import numpy as np
import pytest

from gpuconv.training import data_adapters as da
from gpuconv.utils import py_dataset as pyd
from gpuconv.utils import random as grandom


class Numbers(pyd.PyDataset):
    """Batch i is (x filled with i, y = i); records what ran where and when."""

    def __init__(self, count=6, delay=0.0, **kwargs):
        super().__init__(**kwargs)
        self.count = count
        self.delay = delay
        self.events = []
        self.requested = []
        self.threads = set()
        self.active = 0
        self.overlap_with_hooks = False
        self._lock = threading.Lock()

    def __len__(self):
        return self.count

    def __getitem__(self, index):
        with self._lock:
            self.requested.append(index)
            self.active += 1
            self.threads.add(threading.current_thread().name)
        if self.delay:
            time.sleep(self.delay * ((index * 7919) % 5) / 4)  # uneven: later batches may finish first
        with self._lock:
            self.events.append(("get", index))
            self.active -= 1
        return np.full((2, 1), float(index)), np.full((2,), index)

    def on_epoch_begin(self):
        self.overlap_with_hooks |= self.active > 0
        self.events.append(("begin",))

    def on_epoch_end(self):
        self.overlap_with_hooks |= self.active > 0
        self.events.append(("end",))

    def hooks(self):
        return [event[0] for event in self.events if event[0] != "get"]


def batch_ids(iterator):
    return [int(batch[1][0]) for _, batch in iterator.enumerate_epoch()]


@pytest.mark.parametrize("workers", [1, 3])
def test_batches_in_order_and_hooks_once_per_epoch(workers):
    dataset = Numbers(count=7, delay=0.004, workers=workers, max_queue_size=4)
    iterator = da.EpochIterator(dataset)
    assert iterator.num_batches == 7
    for _ in range(3):
        assert batch_ids(iterator) == list(range(7))
    assert dataset.hooks() == ["begin", "end"] * 3
    assert not dataset.overlap_with_hooks
    used_workers = {name for name in dataset.threads if name.startswith("gpuconv-PyDataset")}
    assert bool(used_workers) == (workers > 1)
    assert len(used_workers) <= workers


def test_prefetching_stays_within_max_queue_size():
    dataset = Numbers(count=30, workers=3, max_queue_size=4)
    iterator = da.EpochIterator(dataset)
    ahead = 0
    for step, _ in iterator.enumerate_epoch():
        time.sleep(0.002)  # give the workers time to run ahead as far as they may
        ahead = max(ahead, max(dataset.requested) - step)
    assert ahead == 4


def test_hooks_still_once_per_epoch_when_the_consumer_leaves_early():
    dataset = Numbers(count=8, workers=2)
    iterator = da.EpochIterator(dataset)
    for step, _ in iterator.enumerate_epoch():
        if step == 2:
            break
    assert dataset.hooks() == ["begin", "end"]
    assert batch_ids(iterator) == list(range(8))
    assert dataset.hooks() == ["begin", "end"] * 2


def test_steps_per_epoch_continues_the_pass_across_epochs():
    dataset = Numbers(count=5, workers=3)
    iterator = da.EpochIterator(dataset, steps_per_epoch=2)
    assert [batch_ids(iterator) for _ in range(2)] == [[0, 1], [2, 3]]
    with pytest.warns(UserWarning, match="Your input ran out of data"):  # Keras warns: 1 batch of 2
        assert batch_ids(iterator) == [4]
    assert batch_ids(iterator) == [0, 1]  # a new pass
    assert dataset.hooks() == ["begin", "end"] * 4


def test_endless_dataset_with_steps_per_epoch():
    class Endless(Numbers):
        @property
        def num_batches(self):
            return None

    dataset = Endless(workers=2)
    with pytest.warns(UserWarning, match="infinite PyDataset"):
        iterator = da.EpochIterator(dataset, steps_per_epoch=3, shuffle=True)
    assert iterator.num_batches == 3
    assert [batch_ids(iterator) for _ in range(2)] == [[0, 1, 2], [3, 4, 5]]


def test_length_read_again_each_epoch():
    dataset = Numbers(count=2)

    def grow():
        dataset.count += 1

    dataset.on_epoch_end = grow
    iterator = da.EpochIterator(dataset)
    assert [batch_ids(iterator) for _ in range(3)] == [[0, 1], [0, 1, 2], [0, 1, 2, 3]]


def test_errors_in_getitem_reach_the_consumer_at_their_batch():
    class Broken(Numbers):
        def __getitem__(self, index):
            if index == 3:
                raise KeyError("batch 3 is missing")
            return super().__getitem__(index)

    iterator = da.EpochIterator(Broken(count=6, workers=3))
    seen = []
    with pytest.raises(KeyError, match="batch 3 is missing"):
        for _, batch in iterator.enumerate_epoch():
            seen.append(int(batch[1][0]))
    assert seen == [0, 1, 2]


def test_use_multiprocessing_runs_on_threads_and_never_pickles():
    class Unpicklable(Numbers):
        def __reduce__(self):
            raise AssertionError("the dataset was pickled")

    dataset = Unpicklable(count=4, workers=2, use_multiprocessing=True)
    with pytest.raises(AssertionError):
        pickle.dumps(dataset)
    with pytest.warns(UserWarning, match=r"`use_multiprocessing=True` is not supported.*on 2 threads"):
        assert batch_ids(da.EpochIterator(dataset)) == [0, 1, 2, 3]


def test_shuffle_permutes_batches_reproducibly():
    def order(seed):
        grandom.set_random_seed(seed)
        iterator = da.EpochIterator(Numbers(count=12, workers=3), shuffle=True)
        return [batch_ids(iterator) for _ in range(2)]

    first, second = order(5)
    assert sorted(first) == list(range(12)) and first != list(range(12)) and first != second
    assert order(5) == [first, second]
    assert order(6) != [first, second]


@pytest.mark.parametrize("returned, expected", [
    (np.zeros((2, 1)), (True, False, False)),
    ([np.zeros((2, 1)), np.zeros(2)], (True, True, False)),
    ((np.zeros((2, 1)), np.zeros(2), np.ones(2)), (True, True, True)),
])
def test_batch_forms(returned, expected):
    class One(pyd.PyDataset):
        def __len__(self):
            return 1

        def __getitem__(self, index):
            return returned

    (_, batch), = da.EpochIterator(One()).enumerate_epoch()
    assert tuple(part is not None for part in batch) == expected


def test_dict_batches_are_x():
    class Dicts(pyd.PyDataset):
        def __len__(self):
            return 1

        def __getitem__(self, index):
            return {"a": np.zeros((2, 1))}

    (_, (x, y, sample_weight)), = da.EpochIterator(Dicts()).enumerate_epoch()
    assert list(x) == ["a"] and y is None and sample_weight is None


def test_class_weight_weighs_x_y_batches():
    iterator = da.EpochIterator(Numbers(count=3), class_weight={1: 3.0, 2: 0.5})
    weights = [batch[2].tolist() for _, batch in iterator.enumerate_epoch()]
    assert weights == [[1.0, 1.0], [3.0, 3.0], [0.5, 0.5]]


def test_bad_batches_and_arguments_are_refused():
    class Weighted(pyd.PyDataset):
        def __len__(self):
            return 1

        def __getitem__(self, index):
            return np.zeros((2, 1)), np.zeros(2), np.ones(2)

    with pytest.raises(ValueError, match="You cannot specify `class_weight` and `sample_weight` at the same time."):
        list(da.EpochIterator(Weighted(), class_weight={0: 1.0}).enumerate_epoch())

    class Strings(Weighted):
        def __getitem__(self, index):
            return "not a batch"

    with pytest.raises(ValueError, match=r"PyDataset.__getitem__\(\) must return a tuple or a dict.*not a batch"):
        list(da.EpochIterator(Strings()).enumerate_epoch())
    with pytest.raises(ValueError, match="When providing `x` as a PyDataset, `y` should not be passed."):
        da.EpochIterator(Numbers(), y=np.zeros(2))
    with pytest.raises(ValueError, match="`sample_weights` should not be passed"):
        da.EpochIterator(Numbers(), sample_weight=np.zeros(2))


@pytest.mark.parametrize("kwargs, text", [
    ({"workers": -1}, r"`workers` must be an integer >= 0. Received: workers=-1"),
    ({"workers": 2.0}, r"`workers` must be an integer >= 0. Received: workers=2.0"),
    ({"max_queue_size": 0}, r"`max_queue_size` must be an integer >= 1. Received: max_queue_size=0"),
    ({"use_multiprocessing": "yes"}, r"`use_multiprocessing` must be a boolean. Received: use_multiprocessing='yes'"),
])
def test_bad_constructor_arguments(kwargs, text):
    with pytest.raises(ValueError, match=text):
        pyd.PyDataset(**kwargs)


def test_subclass_without_super_init_warns_and_gets_defaults():
    class Forgetful(pyd.PyDataset):
        def __init__(self):
            pass

        def __len__(self):
            return 2

        def __getitem__(self, index):
            return (np.full((1, 1), index),)

    dataset = Forgetful()
    with pytest.warns(UserWarning, match=r"should call `super\(\).__init__\(\*\*kwargs\)`"):
        assert dataset.workers == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert (dataset.use_multiprocessing, dataset.max_queue_size) == (False, 10)


def test_plain_iteration_and_missing_length():
    assert [int(batch[1][0]) for batch in Numbers(count=3)] == [0, 1, 2]
    with pytest.raises(NotImplementedError, match="implement the `num_batches` property"):
        pyd.PyDataset().num_batches  # noqa: B018
    assert pyd.Sequence is pyd.PyDataset


def test_epoch_begin_twice_is_refused():
    adapter = da.get_data_adapter(Numbers())
    adapter.on_epoch_begin()
    with pytest.raises(ValueError, match="`on_epoch_begin` was called twice"):
        adapter.on_epoch_begin()
