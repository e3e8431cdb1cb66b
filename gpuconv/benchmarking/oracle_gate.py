"""The correctness gate: every row is checked against the float64 oracle before it is timed.

The oracle is the NumPy engine run on float64 copies of the very (already rounded) operands the
timed call used. Where the float64 oracle of the whole batch would be slow on the CPU, it runs on
a few batch items (batch items are independent in every op benchmarked): the first ones and the
last one, whose offsets are the largest, so a wrong stride or a 32-bit overflow near the end of
the batch still shows. The output compared is always the one of the full-batch call, so the check
covers exactly the configuration that is timed.
"""
import dataclasses
import math

import numpy as np

from .. import arrays as _arrays
from .calls import call_op
from .cost import flops

# Relative L2 error allowed (DESIGN.md "Numbers we hold ourselves to").
THRESHOLDS = {np.dtype("float32"): 1e-5, np.dtype("float16"): 2e-3}

# The comparison library is checked too, to catch a mis-mapped call (wrong layout, padding or
# weight transpose: errors of order 1). It is held to 10x our threshold because cuDNN may pick
# FFT/Winograd algorithms whose float32 error legitimately sits a little above 1e-5; its error
# is always reported.
COMPARISON_SLACK = 10.0

# float64 oracle work allowed before the check switches to a subset of the batch.
DEFAULT_ORACLE_FLOP_BUDGET = 2e9


def threshold(dtype):
    return THRESHOLDS[np.dtype(dtype)]


def relative_l2_error(actual, expected):
    """||actual - expected|| / ||expected|| in float64; inf when ``actual`` has a NaN/Inf the
    reference does not have (a NaN never passes), or a wrong shape."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    if a.shape != e.shape:
        return math.inf
    if not np.isfinite(a).all():
        return math.inf
    # Sums of squares, not np.linalg.norm: that is a multi-threaded BLAS dot whose worker threads
    # then busy-wait ~0.1 s and would steal a core from the timing that follows.
    norm = math.sqrt(float(np.sum(e * e)))
    diff = math.sqrt(float(np.sum((a - e) ** 2)))
    return diff / norm if norm > 0 else diff


def check_indices(row, check_batch=None, flop_budget=DEFAULT_ORACLE_FLOP_BUDGET, total_flops=None):
    """Batch items the oracle recomputes: all of them when cheap (or ``check_batch >= N``), else
    the first ``n - 1`` and the last one, ``n`` from ``check_batch`` or from the FLOP budget
    (spent on ``total_flops`` for the whole batch: by default the forward's)."""
    n_total = row.N
    if check_batch is None:
        total = flops(row).total if total_flops is None else total_flops
        per_item = max(total / max(n_total, 1), 1)
        check_batch = max(1, int(flop_budget // per_item))
    n = min(int(check_batch), n_total)
    if n >= n_total:
        return list(range(n_total))
    return list(range(n - 1)) + [n_total - 1]


@dataclasses.dataclass
class Oracle:
    """The float64 reference of a row on the batch items ``indices``."""

    indices: list
    reference: np.ndarray

    def error_of(self, output):
        """Relative L2 error of a full-batch output (any array module) on the checked items."""
        host = _arrays.to_numpy(output)
        return relative_l2_error(host[self.indices], self.reference)


def compute_oracle(row, host_arrays, data_format, indices):
    """Run the row in float64 on the NumPy engine for the batch items ``indices``."""
    arrays = {name: a.astype(np.float64) for name, a in host_arrays.items() if name != "x"}
    arrays["x"] = host_arrays["x"][indices].astype(np.float64)
    reference = _arrays.to_numpy(call_op(row.with_batch(len(indices)), arrays, data_format, engine="numpy"))
    return Oracle(list(indices), reference)
