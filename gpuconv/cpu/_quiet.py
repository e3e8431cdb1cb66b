"""IEEE special values are results here, not errors: NaN/Inf propagate as the arithmetic says
(0 * Inf = NaN at a padded tap, overflow to Inf near FLT_MAX), as in Keras and PyTorch, which
do not warn either. The engine's entry points run with NumPy's floating-point warnings off."""
import functools

import numpy as np


def quiet(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with np.errstate(all="ignore"):
            return fn(*args, **kwargs)

    return wrapper
