"""The correctness gate of backward rows: every gradient against the float64 NumPy-engine gradients
of the same rounded operands (and the same ``dy``), before any timing.

Why a gate of its own: a weight or bias gradient sums over the whole batch, so the forward gate's
trick (recompute a few batch items, compare those items of the full-batch output) holds only for
the batch-indexed results (``dx``, and ``y`` of 'both'). When the oracle runs on a subset of the
batch, the weight gradients are compared with the subject's own gradients of that same sub-batch
(``GradientOracle.sub_batch``): the same kernels and geometry, on fewer items; ``dx`` is still
compared on the full-batch call that is timed. With the whole batch checked (every row of the CPU
suites), every gradient of the timed call itself is compared.
"""
import dataclasses

import numpy as np

from .. import arrays as _arrays
from . import gradient_calls
from .oracle_gate import relative_l2_error

BATCHED = ("y", "dx")  # the results indexed by batch item; weight gradients sum over the batch


def sub_batch(host_arrays, indices):
    """The operands restricted to the batch items ``indices`` (weights unchanged)."""
    return {name: (a[indices] if name in ("x", "dy") else a) for name, a in host_arrays.items()}


@dataclasses.dataclass
class GradientOracle:
    """The float64 results of a row's backward (or forward + backward) on the items ``indices``."""

    names: tuple
    indices: list
    full_batch: bool
    reference: tuple

    @property
    def needs_sub_batch(self):
        """Whether the weight gradients can only be compared on a sub-batch run."""
        return not self.full_batch

    def errors_of(self, outputs, sub_batch_outputs=None):
        """``{name: relative L2 error}`` of a full-batch call's ``outputs``. Weight gradients come
        from ``sub_batch_outputs`` when the oracle covers a subset; without them they are left out."""
        errors = {}
        for i, (name, ref) in enumerate(zip(self.names, self.reference)):
            if name in BATCHED:
                errors[name] = relative_l2_error(_arrays.to_numpy(outputs[i])[self.indices], ref)
            elif self.full_batch:
                errors[name] = relative_l2_error(_arrays.to_numpy(outputs[i]), ref)
            elif sub_batch_outputs is not None:
                errors[name] = relative_l2_error(_arrays.to_numpy(sub_batch_outputs[i]), ref)
        return errors

    def error_of(self, outputs, sub_batch_outputs=None):
        """The largest error over the compared results (the row's ``rel_err``)."""
        return max(self.errors_of(outputs, sub_batch_outputs).values())


def compute_gradient_oracle(row, host_arrays, data_format, indices, pass_name):
    """Run ``pass_name`` of the row in float64 on the NumPy engine for the batch items ``indices``."""
    arrays = {name: a.astype(np.float64) for name, a in sub_batch(host_arrays, indices).items()}
    fn = gradient_calls.prepare(row.with_batch(len(indices)), arrays, data_format, "numpy", pass_name)
    reference = tuple(_arrays.to_numpy(r) for r in fn())
    return GradientOracle(gradient_calls.output_names(row, pass_name), list(indices), len(indices) == row.N,
                          reference)
