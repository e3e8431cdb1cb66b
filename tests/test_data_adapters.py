"""Data adapters and the epoch iterator against Keras 3.15's own (keras.src.trainers...): the
batches ``fit`` gets from arrays and generators, shuffling, class weights, validation_split, the
``steps_per_epoch`` rules, and the errors for bad input.

Where Keras' iterator misbehaves (a generator that ran out replays the two batches Keras peeked
at; the count it learns is one too many) the test states gpuconv's rule instead of Keras'.
"""
import os
import warnings

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "torch"  # before keras is imported anywhere in this process
keras = pytest.importorskip("keras", reason="real-Keras parity needs keras>=3.15 with the torch backend "
                            "(pip install .[parity])", exc_type=ImportError)

from keras.src.trainers import data_adapters as keras_adapters  # noqa: E402
from keras.src.trainers import epoch_iterator as keras_epoch_iterator  # noqa: E402
from keras.src.trainers.data_adapters import array_slicing as keras_slicing  # noqa: E402
from keras.src.trainers.data_adapters import data_adapter_utils as keras_utils  # noqa: E402

from gpuconv.training import data_adapters as da  # noqa: E402
from gpuconv.utils import random as grandom  # noqa: E402

pytestmark = [
    pytest.mark.parity,
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"),
]

OUT_OF_DATA = "Your input ran out of data"


def keras_batches(x, y=None, sample_weight=None, **kwargs):
    adapter = keras_adapters.get_data_adapter(x, y, sample_weight, **kwargs)
    return [keras_utils.unpack_x_y_sample_weight(batch) for batch in adapter.get_numpy_iterator()]


def our_batches(x, y=None, sample_weight=None, **kwargs):
    return list(da.get_data_adapter(x, y, sample_weight, **kwargs).get_numpy_iterator())


def assert_same_batches(ours, theirs):
    assert len(ours) == len(theirs)
    for mine, keras_batch in zip(ours, theirs):
        assert len(mine) == 3
        for part, expected in zip(mine, keras_batch):
            if expected is None:
                assert part is None
            else:
                assert part.dtype == expected.dtype
                np.testing.assert_array_equal(part, expected)


def epochs_of(iterator, epochs, value):
    """Per epoch: [(step, value(batch))] and the warnings given."""
    out = []
    for _ in range(epochs):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            steps = [(step, value(batch)) for step, batch in iterator.enumerate_epoch()]
        out.append((steps, sum(OUT_OF_DATA in str(w.message) for w in caught)))
    return out


def keras_epochs_of(iterator, epochs, value):
    out = []
    for _ in range(epochs):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            steps = [(begin, value(keras_utils.unpack_x_y_sample_weight(data[0])))
                     for begin, _, data in iterator.enumerate_epoch()]
        out.append((steps, sum(OUT_OF_DATA in str(w.message) for w in caught)))
    return out


def first_value(batch):
    return batch[0].ravel()[0].item()


@pytest.fixture
def data(rng):
    x = rng.standard_normal((10, 3))  # float64: both libraries cast it to float32
    y = rng.integers(0, 3, size=(10,))
    sw = rng.random(10)
    return x, y, sw


# ---- arrays -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("batch_size", [None, 1, 3, 4, 10, 32])
@pytest.mark.parametrize("parts", ["x", "xy", "xyw"])
def test_array_batches_match_keras(data, batch_size, parts):
    x, y, sw = data
    args = (x, y if "y" in parts else None, sw if "w" in parts else None)
    ours, theirs = da.get_data_adapter(*args, batch_size=batch_size), keras_adapters.get_data_adapter(
        *args, batch_size=batch_size)
    assert_same_batches(list(ours.get_numpy_iterator()), keras_batches(*args, batch_size=batch_size))
    for attribute in ("num_batches", "batch_size", "has_partial_batch", "partial_batch_size"):
        assert getattr(ours, attribute) == getattr(theirs, attribute), attribute


def test_batch_size_default_is_32_and_steps_decide_it(rng):
    x = rng.standard_normal((70, 2)).astype("float32")
    assert da.get_data_adapter(x).batch_size == 32
    assert da.get_data_adapter(x).partial_batch_size == 6
    for steps in (1, 3, 7, 70):
        ours = da.get_data_adapter(x, steps_per_epoch=steps)
        theirs = keras_adapters.get_data_adapter(x, steps_per_epoch=steps)
        assert (ours.batch_size, ours.num_batches) == (theirs.batch_size, theirs.num_batches)


def test_multi_input_structures_batch_like_keras(rng):
    x = {"image": rng.standard_normal((7, 2, 2)), "meta": rng.integers(0, 5, (7, 1))}
    y = [rng.standard_normal((7, 1)), rng.integers(0, 2, (7,))]
    sw = rng.random(7)
    ours = our_batches(x, y, sw, batch_size=3)
    theirs = keras_batches(x, y, sw, batch_size=3)
    assert len(ours) == len(theirs) == 3
    for mine, expected in zip(ours, theirs):
        assert mine[0].keys() == expected[0].keys()
        for key in expected[0]:
            np.testing.assert_array_equal(mine[0][key], expected[0][key])
            assert mine[0][key].dtype == expected[0][key].dtype
        for mine_y, expected_y in zip(mine[1], expected[1]):
            np.testing.assert_array_equal(mine_y, expected_y)
        # one sample_weight for several outputs is replicated per output, as Keras does
        assert len(mine[2]) == len(expected[2]) == 2
        for mine_w, expected_w in zip(mine[2], expected[2]):
            np.testing.assert_array_equal(mine_w, expected_w)


def test_float_arrays_are_cast_to_float32_integers_kept(rng):
    x = rng.standard_normal((4, 2)).astype("float16")
    y = np.arange(4, dtype="int64")
    (bx, by, _), = our_batches(x, y, batch_size=4)
    assert bx.dtype == np.float32 and by.dtype == np.int64


def test_emulator_device_arrays_stay_on_the_device(rng):
    """A device array's batches are that device's arrays (the emulator's ndarray subclass here;
    CuPy's indexing takes the same NumPy indices)."""
    runtime = pytest.importorskip("gpuconv.emulator.runtime")
    x = rng.standard_normal((9, 2)).astype("float32").view(runtime.DeviceArray)
    y = np.arange(9).view(runtime.DeviceArray)
    for shuffle in (False, True, "batch"):
        batches = our_batches(x, y, batch_size=4, shuffle=shuffle)
        assert all(isinstance(part, runtime.DeviceArray) for batch in batches for part in batch[:2])
    weighted = our_batches(x, y, batch_size=4, class_weight={1: 2.0})
    assert all(isinstance(batch[2], runtime.DeviceArray) for batch in weighted)
    np.testing.assert_array_equal(np.concatenate([b[2] for b in weighted]), np.where(np.arange(9) == 1, 2.0, 1.0))


# ---- shuffling ----------------------------------------------------------------------------------------
def all_rows(batches):
    return np.concatenate([batch[1] for batch in batches])


def test_shuffle_false_keeps_order(rng):
    y = np.arange(23)
    assert all_rows(our_batches(y, y, batch_size=5, shuffle=False)).tolist() == list(range(23))


def test_shuffle_true_is_a_full_permutation_per_epoch():
    y = np.arange(50)
    adapter = da.get_data_adapter(y, y, batch_size=8, shuffle=True)
    orders = [all_rows(list(adapter.get_numpy_iterator())) for _ in range(3)]
    for order in orders:
        assert sorted(order.tolist()) == list(range(50))
        assert order.tolist() != list(range(50))
    assert orders[0].tolist() != orders[1].tolist()  # a new permutation each epoch
    # rows across batches are mixed, not only within them (what "batch" does)
    assert any(set(batch[1].tolist()) != set(range(i * 8, min(i * 8 + 8, 50)))
               for i, batch in enumerate(adapter.get_numpy_iterator()))


def test_shuffle_batch_permutes_within_each_batch_only():
    y = np.arange(50)
    batches = our_batches(y, y, batch_size=8, shuffle="batch")
    assert [sorted(batch[1].tolist()) for batch in batches] == [
        list(range(start, min(start + 8, 50))) for start in range(0, 50, 8)]
    assert all_rows(batches).tolist() != list(range(50))


def test_shuffled_x_y_and_weights_stay_aligned(rng):
    x = np.arange(30, dtype="float32")[:, None]
    for shuffle in (True, "batch"):
        for bx, by, bw in our_batches(x, np.arange(30), np.arange(30) / 10.0, batch_size=7, shuffle=shuffle):
            np.testing.assert_array_equal(bx[:, 0], by)
            np.testing.assert_allclose(bw, by / 10.0, rtol=1e-6)


def test_set_random_seed_makes_the_shuffle_reproducible():
    y = np.arange(40)

    def orders(seed, shuffle):
        grandom.set_random_seed(seed)
        adapter = da.get_data_adapter(y, y, batch_size=6, shuffle=shuffle)
        return [all_rows(list(adapter.get_numpy_iterator())).tolist() for _ in range(2)]

    for shuffle in (True, "batch"):
        assert orders(3, shuffle) == orders(3, shuffle)
        assert orders(3, shuffle) != orders(4, shuffle)


# ---- class_weight ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("encoding", ["sparse", "column", "one_hot", "float_labels"])
def test_class_weight_matches_keras(rng, encoding):
    labels = rng.integers(0, 4, size=(13,))
    y = {"sparse": labels, "column": labels[:, None], "one_hot": np.eye(4)[labels],
         "float_labels": labels.astype("float32") + 0.1}[encoding]
    class_weight = {0: 0.5, 1: 2.0, 3: 4.0}  # class 2 is missing: weight 1
    expected = keras_utils.class_weight_to_sample_weights(y, class_weight)
    ours = da.class_weight_to_sample_weights(y, class_weight)
    assert ours.dtype == expected.dtype
    np.testing.assert_array_equal(ours, expected)
    x = rng.standard_normal((13, 2))
    assert_same_batches(our_batches(x, y, batch_size=5, class_weight=class_weight),
                        keras_batches(x, y, batch_size=5, class_weight=class_weight))


@pytest.mark.parametrize("kwargs, error, text", [
    ({"sample_weight": np.ones(6), "class_weight": {0: 1.0}}, ValueError,
     "You cannot `class_weight` and `sample_weight` at the same time."),
    ({"y": [np.zeros(6), np.zeros(6)], "class_weight": {0: 1.0}}, ValueError,
     "`class_weight` is only supported for Models with a single output."),
])
def test_class_weight_errors_match_keras(kwargs, error, text):
    arguments = {"x": np.zeros((6, 1)), "y": np.zeros(6), **kwargs}
    with pytest.raises(error, match=text.replace("`", ".")):
        keras_adapters.get_data_adapter(**arguments)
    with pytest.raises(error, match=text.replace("`", ".")):
        da.get_data_adapter(**arguments)


@pytest.mark.parametrize("class_weight, error, text", [
    ([1.0, 2.0], TypeError, r"`class_weight` must be a dict.*\[1.0, 2.0\]"),
    ({0: "heavy"}, TypeError, r"`class_weight` must map class indices to numbers.*'heavy'"),
])
def test_bad_class_weight_names_the_argument(class_weight, error, text):
    with pytest.raises(error, match=text):
        da.get_data_adapter(np.zeros((4, 1)), np.zeros(4), class_weight=class_weight)


def test_class_weight_needs_targets():
    with pytest.raises(ValueError, match=r"`class_weight` needs targets `y`"):
        da.get_data_adapter(np.zeros((4, 1)), class_weight={0: 1.0})
    with pytest.raises(ValueError, match=r"one label per sample.*\(4, 2, 3\)"):
        da.get_data_adapter(np.zeros((4, 1)), np.zeros((4, 2, 3)), class_weight={0: 1.0})


# ---- validation_split ------------------------------------------------------------------------------------
@pytest.mark.parametrize("n, split", [(10, 0.2), (10, 0.25), (7, 0.3), (3, 0.5), (100, 0.01), (9, 0.999)])
def test_train_validation_split_matches_keras(rng, n, split):
    arrays = (rng.standard_normal((n, 2)), rng.integers(0, 3, (n,)), None)
    try:
        expected = keras_slicing.train_validation_split(arrays, validation_split=split)
    except ValueError as keras_error:
        with pytest.raises(ValueError, match="not sufficient to split"):
            da.train_validation_split(arrays, split)
        assert "not sufficient to split" in str(keras_error)
        return
    ours = da.train_validation_split(arrays, split)
    for mine_part, keras_part in zip(ours, expected):
        assert mine_part[2] is None and keras_part[2] is None
        for mine, theirs in zip(mine_part[:2], keras_part[:2]):
            assert mine.dtype == theirs.dtype
            np.testing.assert_array_equal(mine, theirs)


def test_validation_split_holds_out_the_last_samples():
    train, validation = da.train_validation_split((np.arange(10), {"a": np.arange(10) * 2}), 0.3)
    assert train[0].tolist() == list(range(7)) and validation[0].tolist() == [7, 8, 9]
    assert validation[1]["a"].tolist() == [14, 16, 18]


@pytest.mark.parametrize("split", [0, 1, 1.5, -0.2, True, "0.2", None])
def test_validation_split_outside_0_1_is_refused(split):
    with pytest.raises(ValueError, match=r"`validation_split` must be a float between 0 and 1"):
        da.train_validation_split((np.arange(10), None, None), split)


def test_validation_split_refuses_generators_like_keras():
    def gen():
        yield (np.zeros((2, 1)),)

    with pytest.raises(ValueError, match="only supported for tensors or NumPy arrays"):
        keras_slicing.train_validation_split((gen(), None, None), validation_split=0.2)
    with pytest.raises(ValueError, match=r"only supported for tensors or NumPy arrays.*generator"):
        da.train_validation_split((gen(), None, None), 0.2)


def test_too_few_samples_to_split_gives_keras_message():
    with pytest.raises(ValueError, match=r"Training data contains 2 samples, which is not sufficient"):
        da.train_validation_split((np.arange(2), None, None), 0.9)


# ---- pack / unpack ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("data", [
    "x", ("x",), ("x", "y"), ["x", "y"], ("x", "y", "w"), {"a": 1},
])
def test_unpack_matches_keras(data):
    assert da.unpack_x_y_sample_weight(data) == keras_utils.unpack_x_y_sample_weight(data)


def test_unpack_too_long_tuple_matches_keras():
    for unpack in (da.unpack_x_y_sample_weight, keras_utils.unpack_x_y_sample_weight):
        with pytest.raises(ValueError, match=r"Data is expected to be in format `x`, `\(x,\)`"):
            unpack((1, 2, 3, 4))


@pytest.mark.parametrize("args", [("x",), (["a", "b"],), (("a",),), ("x", "y"), ("x", "y", "w"), ("x", None, "w")])
def test_pack_matches_keras(args):
    assert da.pack_x_y_sample_weight(*args) == keras_utils.pack_x_y_sample_weight(*args)


# ---- generators -----------------------------------------------------------------------------------------
def counting_generator(count, arity):
    for i in range(count):
        batch = (np.full((2, 1), float(i)), np.full((2,), i), np.full((2,), 0.5))
        yield batch[:arity]


@pytest.mark.parametrize("arity", [1, 2, 3])
def test_generator_tuples_unpack_to_x_y_weight(arity):
    batches = list(da.get_data_adapter(counting_generator(3, arity)).get_numpy_iterator())
    assert [batch[0][0, 0] for batch in batches] == [0.0, 1.0, 2.0]
    for batch in batches:
        assert len(batch) == 3
        assert (batch[1] is None) == (arity < 2) and (batch[2] is None) == (arity < 3)


def test_generator_with_steps_per_epoch_continues_across_epochs_like_keras():
    ours = epochs_of(da.EpochIterator(counting_generator(8, 2), steps_per_epoch=3), 2, first_value)
    theirs = keras_epochs_of(keras_epoch_iterator.EpochIterator(counting_generator(8, 2), steps_per_epoch=3), 2,
                             first_value)
    assert ours == theirs == [([(0, 0.0), (1, 1.0), (2, 2.0)], 0), ([(0, 3.0), (1, 4.0), (2, 5.0)], 0)]


def test_generator_running_out_warns_and_then_gives_nothing():
    iterator = da.EpochIterator(counting_generator(5, 1), steps_per_epoch=3)
    keras_iterator = keras_epoch_iterator.EpochIterator(counting_generator(5, 1), steps_per_epoch=3)
    ours = epochs_of(iterator, 4, first_value)
    theirs = keras_epochs_of(keras_iterator, 2, first_value)
    assert ours[:2] == theirs  # until it runs out: Keras' batches and warning
    assert ours[1] == ([(0, 3.0), (1, 4.0)], 1)
    # Keras then replays the two batches it peeked at; gpuconv gives none, with the warning
    assert ours[2:] == [([], 1), ([], 1)]
    assert iterator.exhausted and iterator.num_batches == 3


def test_generator_without_steps_is_one_pass_and_learns_its_length():
    iterator = da.EpochIterator(counting_generator(4, 2))
    assert iterator.num_batches is None
    ours = epochs_of(iterator, 2, first_value)
    assert ours[0] == ([(0, 0.0), (1, 1.0), (2, 2.0), (3, 3.0)], 1)  # Keras warns at the end of the pass too
    assert iterator.num_batches == 4  # Keras learns 5: it counts the step that found no data
    assert ours[1] == ([], 1)


def test_generator_peek_does_not_consume():
    iterator = da.EpochIterator(counting_generator(3, 2))
    assert iterator.peek()[0][0, 0] == 0.0 and iterator.peek()[0][0, 0] == 0.0
    assert [value for _, value in epochs_of(iterator, 1, first_value)[0][0]] == [0.0, 1.0, 2.0]


def test_peek_input_shape():
    assert da.EpochIterator(np.zeros((10, 4, 3)), batch_size=4).peek_input_shape() == (4, 4, 3)
    assert da.EpochIterator(counting_generator(2, 1)).peek_input_shape() == (2, 1)
    assert da.EpochIterator({"a": np.zeros((3, 1))}).peek_input_shape() is None
    assert da.EpochIterator(np.zeros((0, 2))).peek_input_shape() is None


def test_plain_iterators_are_taken_like_generators():
    batches = iter([(np.zeros((2, 1)), np.zeros(2)), (np.ones((2, 1)), np.ones(2))])
    with pytest.warns(UserWarning, match=OUT_OF_DATA):  # the end of a generator's pass warns, as in Keras
        assert [b[0][0, 0] for _, b in da.EpochIterator(batches).enumerate_epoch()] == [0.0, 1.0]


@pytest.mark.parametrize("kwargs, text", [
    ({"y": np.zeros(2)}, "When providing `x` as a generator, `y` should not be passed."),
    ({"sample_weight": np.zeros(2)}, "When providing `x` as a generator, `sample_weights` should not be passed."),
    ({"class_weight": {0: 1.0}}, "Argument `class_weight` is not supported for Python generator inputs."),
])
def test_generator_refusals_match_keras(kwargs, text):
    for get in (keras_adapters.get_data_adapter, da.get_data_adapter):
        with pytest.raises(ValueError, match=text.replace("`", ".").replace("(", r"\(")):
            get(counting_generator(2, 2), **kwargs)


def test_generator_shuffle_warns_like_keras():
    with pytest.warns(UserWarning, match=r"`shuffle=True` was passed, but will be ignored.*generator"):
        da.get_data_adapter(counting_generator(2, 2), shuffle=True)


def test_empty_and_non_tuple_generators_are_refused_like_keras():
    def empty():
        return
        yield

    def bare():
        yield np.zeros((2, 1))

    for get in (keras_adapters.get_data_adapter, da.get_data_adapter):
        with pytest.raises(ValueError, match="Received an empty generator"):
            get(empty())
        with pytest.raises(ValueError, match=r"the generator must return a tuple"):
            get(bare())


# ---- epoch iterator on arrays -------------------------------------------------------------------------------
@pytest.mark.parametrize("steps_per_epoch", [None, 1, 2, 3, 4, 6])
def test_array_steps_per_epoch_matches_keras(steps_per_epoch):
    x = np.arange(10, dtype="float32")[:, None]

    def first(batch):
        return batch[0][:, 0].tolist()

    ours = epochs_of(da.EpochIterator(x, batch_size=3, steps_per_epoch=steps_per_epoch), 4, first)
    theirs = keras_epochs_of(keras_epoch_iterator.EpochIterator(x, batch_size=3, steps_per_epoch=steps_per_epoch), 4,
                             first)
    assert ours == theirs
    assert da.EpochIterator(x, batch_size=3, steps_per_epoch=steps_per_epoch).num_batches == \
        keras_epoch_iterator.EpochIterator(x, batch_size=3, steps_per_epoch=steps_per_epoch).num_batches


def test_steps_larger_than_the_data_warns_each_epoch():
    ours = epochs_of(da.EpochIterator(np.arange(10), batch_size=3, steps_per_epoch=6), 2, first_value)
    assert ours == [([(0, 0), (1, 3), (2, 6), (3, 9)], 1)] * 2


@pytest.mark.parametrize("steps_per_epoch", [None, 4])
def test_steps_per_execution_groups_like_keras(steps_per_epoch):
    x = np.arange(10)
    ours = da.EpochIterator(x, batch_size=3, steps_per_epoch=steps_per_epoch, steps_per_execution=2)
    theirs = keras_epoch_iterator.EpochIterator(x, batch_size=3, steps_per_epoch=steps_per_epoch,
                                                steps_per_execution=2)
    for _ in range(2):
        mine = [(b, e, [batch[0].tolist() for batch in batches]) for b, e, batches in ours.enumerate_executions()]
        expected = [(b, e, [keras_utils.unpack_x_y_sample_weight(batch)[0].tolist() for batch in batches])
                    for b, e, batches in theirs.enumerate_epoch()]
        assert mine == expected
    assert [step for step, _ in ours.enumerate_epoch()] == [0, 1, 2, 3]


def test_empty_arrays_give_an_empty_epoch():
    iterator = da.EpochIterator(np.zeros((0, 3)))
    assert iterator.num_batches == 0 and list(iterator.enumerate_epoch()) == [] and iterator.peek() is None


def test_array_peek_draws_no_random_numbers():
    grandom.set_random_seed(11)
    expected = grandom.global_generator().integers(0, 1000, 3).tolist()
    grandom.set_random_seed(11)
    iterator = da.EpochIterator(np.arange(9), batch_size=4, shuffle=True)
    assert iterator.peek()[0].tolist() == [0, 1, 2, 3]
    assert grandom.global_generator().integers(0, 1000, 3).tolist() == expected


# ---- bad input ------------------------------------------------------------------------------------------
def test_mismatched_lengths_give_keras_message():
    x, y = np.zeros((10, 2)), np.zeros(9)
    with pytest.raises(ValueError) as keras_error:
        keras_adapters.get_data_adapter(x, y)
    with pytest.raises(ValueError) as ours:
        da.get_data_adapter(x, y)
    assert str(ours.value) == str(keras_error.value)
    assert "'x' sizes: 10" in str(ours.value) and "'y' sizes: 9" in str(ours.value)


def test_mismatched_sample_weight_names_its_size():
    with pytest.raises(ValueError, match=r"'sample_weight' sizes: 4"):
        da.get_data_adapter(np.zeros((5, 1)), np.zeros(5), np.zeros(4))


def test_unrecognized_type_gives_keras_message():
    for get in (keras_adapters.get_data_adapter, da.get_data_adapter):
        with pytest.raises(ValueError, match=r"Unrecognized data type: x=.*of type <class 'str'>"):
            get("images/")


@pytest.mark.parametrize("kwargs, text", [
    ({"batch_size": 0}, r"`batch_size` must be a positive integer. Received: batch_size=0"),
    ({"batch_size": 2.5}, r"`batch_size` must be a positive integer. Received: batch_size=2.5"),
    ({"steps_per_epoch": -1}, r"`steps_per_epoch` must be a positive integer. Received: steps_per_epoch=-1"),
    ({"steps_per_execution": 0}, r"`steps_per_execution` must be a positive integer"),
    ({"shuffle": "yes"}, r"`shuffle` must be a boolean or 'batch'. Received: shuffle='yes'"),
    ({"y": "labels"}, r"Expected all elements of `y` to be array-like.*y='labels'"),
    ({"x": None}, r"Argument `x` must be provided"),
    ({"x": np.float32(3.0)}, r"Argument `x` must hold arrays with a batch axis"),
])
def test_bad_arguments_name_themselves(kwargs, text):
    arguments = {"x": np.zeros((4, 1)), **kwargs}
    with pytest.raises(ValueError, match=text):
        da.EpochIterator(**arguments)


def test_data_adapter_instances_pass_through():
    adapter = da.get_data_adapter(np.zeros((4, 1)))
    assert da.get_data_adapter(adapter) is adapter
