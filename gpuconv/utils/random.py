"""gpuconv's global random state, and ``set_random_seed``, Keras' one switch for reproducible runs.

Everything in gpuconv that needs randomness without a seed of its own (shuffling in ``fit``,
initializers and Dropout built with ``seed=None``) draws from one module-level NumPy
``Generator``, so that ``set_random_seed(s)`` makes a whole program repeatable, as
``keras.utils.set_random_seed`` does for Keras. Without a call the generator starts from fresh OS
entropy, so unseeded runs differ, as in Keras.

``global_generator()`` is looked up on every use rather than imported, because
``set_random_seed`` replaces the generator instead of reseeding it in place (a NumPy
``Generator`` cannot be reseeded).
"""
import random as _python_random
import threading

import numpy as np

# What ``np.random.seed`` accepts; Keras passes the seed straight to it.
_MAX_SEED = 2**32 - 1
# ``draw_seed`` stays within int32 so that any consumer (a CUDA kernel's int seed, a Keras config
# read by a 32-bit reader) can hold the value.
_DRAWN_SEED_BOUND = 2**31 - 1

_lock = threading.Lock()
_generator = np.random.default_rng()
_seed = None


def set_random_seed(seed):
    """Seed Python's ``random``, NumPy's global generator and gpuconv's own generator with ``seed``
    (an ``int`` from 0 to 2**32 - 1), as ``keras.utils.set_random_seed`` does."""
    global _generator, _seed
    if not isinstance(seed, int):
        raise ValueError(
            "Expected `seed` argument to be an integer. "
            f"Received: seed={seed} (of type {type(seed)})"
        )
    if not 0 <= seed <= _MAX_SEED:
        raise ValueError(f"Argument `seed` must be between 0 and 2**32 - 1. Received: seed={seed}")
    with _lock:
        _seed = seed
        _python_random.seed(seed)
        np.random.seed(seed)
        _generator = np.random.default_rng(seed)


def get_random_seed():
    """The seed of the last ``set_random_seed`` call, or None when none was made (Keras'
    ``keras.src.utils.rng_utils.get_random_seed``)."""
    return _seed


def global_generator():
    """The NumPy ``Generator`` that gpuconv's unseeded randomness draws from."""
    return _generator


def draw_seed():
    """A new int seed in [0, 2**31 - 1) from the global generator: what a layer or initializer
    built with ``seed=None`` uses, so that its draws follow ``set_random_seed``."""
    with _lock:
        return int(_generator.integers(0, _DRAWN_SEED_BOUND))
