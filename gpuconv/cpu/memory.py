"""The engine's scratch-memory budget, the chunking that keeps im2col buffers under it, and the
reusable scratch buffer the chunks are gathered into.

Tests (and users on small machines) may monkeypatch ``MEMORY_BUDGET_BYTES``; it is read at every
call. The budget bounds the *scratch* buffers (im2col columns, GEMM results before the scatter of
a transposed conv); the output itself is always allocated whole. Independently of the budget,
pieces are kept near ``CHUNK_TARGET_BYTES``: a column buffer that stays in the last-level cache
and is reused for every piece is faster than one huge buffer that must be paged in.
"""
import numpy as np

from . import _parallel

MEMORY_BUDGET_BYTES = 512 * 2**20
CHUNK_TARGET_BYTES = 8 * 2**20
# A gather feeds a GEMM and usually follows one, whose OpenBLAS workers keep spinning on the
# other cores for a while (OpenBLAS' thread timeout, ~0.1 s); a piece handed to one of our
# threads then waits for its core. Gathers below this size are copied on the calling thread
# (measured, bench row D9 with 1.2 MB gathers: 1.77 ms -> 1.48 ms; rows with 7 MB or larger
# gathers, D1/D2/V1, measured within noise either way and keep the threads).
GATHER_PARALLEL_BYTES = 4 * 2**20


def chunk_limit():
    return min(MEMORY_BUDGET_BYTES, CHUNK_TARGET_BYTES)


def chunks(batch, rows, bytes_per_row):
    """Yield ``(batch_slice, row_slice)`` pieces whose scratch stays under ``chunk_limit()``.

    A *row* is one index of the first spatial output axis (or input axis, for the transposed conv)
    and ``bytes_per_row`` what one row of one batch item needs. Whole batch items are grouped while
    they fit; an item that alone exceeds the limit is cut into runs of rows (at least one row per
    piece, so a single row larger than the limit is still computed). Every piece either spans all
    rows or exactly one batch item, which keeps each piece of a C-contiguous output a strided view.
    """
    limit = chunk_limit()
    per_item = rows * bytes_per_row
    if per_item <= limit:
        step = max(1, limit // max(per_item, 1))
        for b in range(0, batch, step):
            yield slice(b, min(b + step, batch)), slice(0, rows)
        return
    step = max(1, limit // max(bytes_per_row, 1))
    for b in range(batch):
        for r in range(0, rows, step):
            yield slice(b, b + 1), slice(r, min(r + step, rows))


class Scratch:
    """One buffer reused by every piece of a chunked loop (allocated once, at the largest size)."""

    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)
        self.buffer = None

    def gather(self, piece, shape):
        """``piece.reshape(shape)``: a view when the layout allows it, else a copy into the buffer."""
        try:
            return np.reshape(piece, shape, copy=False)
        except ValueError:
            pass
        size = piece.size
        if self.buffer is None or self.buffer.size < size:
            self.buffer = np.empty(size, self.dtype)
        flat = self.buffer[:size]
        if flat.nbytes < GATHER_PARALLEL_BYTES:
            np.copyto(flat.reshape(piece.shape), piece, casting="unsafe")
        else:
            _parallel.copy(flat.reshape(piece.shape), piece)
        return flat.reshape(shape)
