"""``gpuconv.utils.random``: ``set_random_seed`` seeds Python, NumPy and gpuconv's own generator
(what shuffling and unseeded layers draw from), with ``keras.utils.set_random_seed``'s errors."""
import random

import numpy as np
import pytest

from gpuconv.utils import random as grandom


def draws():
    return (random.random(), float(np.random.random()), float(grandom.global_generator().random()),
            grandom.draw_seed())


def test_same_seed_same_draws_everywhere():
    grandom.set_random_seed(1234)
    first = draws()
    grandom.set_random_seed(1234)
    assert draws() == first
    assert grandom.get_random_seed() == 1234


def test_different_seeds_differ_in_every_source():
    grandom.set_random_seed(1)
    one = draws()
    grandom.set_random_seed(2)
    two = draws()
    assert all(a != b for a, b in zip(one, two))


def test_draw_seed_gives_fresh_int32_seeds():
    grandom.set_random_seed(7)
    seeds = [grandom.draw_seed() for _ in range(50)]
    assert all(type(seed) is int and 0 <= seed < 2**31 - 1 for seed in seeds)
    assert len(set(seeds)) == 50
    grandom.set_random_seed(7)
    assert [grandom.draw_seed() for _ in range(50)] == seeds


def test_set_random_seed_replaces_the_generator():
    before = grandom.global_generator()
    grandom.set_random_seed(3)
    assert grandom.global_generator() is not before
    assert grandom.global_generator().integers(0, 2**30) == np.random.default_rng(3).integers(0, 2**30)


@pytest.mark.parametrize("seed", [1.5, "7", None, np.int64(3)])
def test_non_int_seed_gives_keras_error(seed):
    with pytest.raises(ValueError, match=r"Expected `seed` argument to be an integer. Received: seed=.* \(of type"):
        grandom.set_random_seed(seed)


@pytest.mark.parametrize("seed", [-1, 2**32])
def test_seed_out_of_range_names_the_argument(seed):
    with pytest.raises(ValueError, match=rf"Argument `seed` must be between 0 and 2\*\*32 - 1. Received: seed={seed}"):
        grandom.set_random_seed(seed)
