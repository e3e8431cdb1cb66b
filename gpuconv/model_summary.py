"""``model.summary()`` as Keras 3 prints it: one row per layer (``name (Type)``, output shape,
parameter count, and for a functional model that is not a plain chain the "Connected to"
column), then the totals with thousands separators and their size in memory.

Keras renders the table with rich; the box characters, column positions (0.45 / 0.80 of the
line for three columns, 0.3 / 0.56 / 0.74 for four) and the wrapping of a long cell at the
", " between connections are reproduced here without it.
"""
import textwrap

import numpy as np

__all__ = ["print_summary", "readable_size", "weights_bytes"]

_THREE_COLUMNS = ((0.45, 0.80, 1.0), 88)
_FOUR_COLUMNS = ((0.3, 0.56, 0.74, 1.0), 108)
_HEADERS = ("Layer (type)", "Output Shape", "Param #", "Connected to")


def readable_size(num_bytes):
    """Keras' ``readable_memory_size``: '1.27 MB' (powers of 1024)."""
    size = float(num_bytes)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size / 1024 < 1:
            return f"{size:.2f} {unit}"
        size /= 1024
    return f"{size:.2f} PB"


def weights_bytes(weights):
    return sum(int(np.prod(w.shape)) * np.dtype(w.dtype).itemsize for w in weights)


def _ratio_reduce(total, values):
    """rich's ``ratio_reduce`` with equal ratios: take ``total`` off ``values``, spread evenly
    and rounded as Python rounds (3.5 -> 4)."""
    out, remaining, count = [], total, len(values)
    for value in values:
        taken = min(value, round(remaining / count))
        out.append(value - taken)
        remaining -= taken
        count -= 1
    return out


def _column_widths(positions, line_length):
    """The text width of each column as rich lays out Keras' table: each column asks for its
    share of ``line_length`` plus one space of padding either side; the table (borders
    included) must fit ``line_length``, so the excess is taken evenly off every column."""
    widths, current = [], 0
    for pos in positions:
        width = int(pos * line_length) - current
        widths.append(width + 2)
        current += width
    excess = sum(widths) - (line_length - len(widths) - 1)
    if excess > 0:
        widths = _ratio_reduce(excess, widths)
    return [max(w - 2, 1) for w in widths]


def _wrap(text, width):
    """A cell's lines as rich wraps them: at spaces, a word too long for the column cut with
    an ellipsis."""
    if len(text) <= width:
        return [text]
    lines = textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False) or [""]
    return [line if len(line) <= width else line[: width - 1] + "…" for line in lines]


def _table(rows, headers, widths):
    def line(left, fill, mid, right):
        return left + mid.join(fill * (w + 2) for w in widths) + right

    def cells(values, sep):
        wrapped = [_wrap(v, w) for v, w in zip(values, widths)]
        height = max(len(parts) for parts in wrapped)
        lines = []
        for k in range(height):
            texts = []
            for i, (parts, w) in enumerate(zip(wrapped, widths)):
                text = parts[k] if k < len(parts) else ""
                texts.append(text.rjust(w) if i == 2 else text.ljust(w))
            lines.append(sep + sep.join(f" {t} " for t in texts) + sep)
        return lines

    out = [line("┏", "━", "┳", "┓"), *cells(headers, "┃"), line("┡", "━", "╇", "┩")]
    for i, row in enumerate(rows):
        if i:
            out.append(line("├", "─", "┼", "┤"))
        out.extend(cells(row, "│"))
    out.append(line("└", "─", "┴", "┘"))
    return out


def print_summary(model, rows, connected, print_fn=None, line_length=None):
    """Print ``rows`` (tuples of cell texts, with a fourth "Connected to" cell when
    ``connected``) as Keras' table for ``model``, then its parameter totals."""
    print_fn = print if print_fn is None else print_fn
    positions, default_length = _FOUR_COLUMNS if connected else _THREE_COLUMNS
    headers = _HEADERS[: len(positions)]
    widths = _column_widths(positions, line_length or default_length)
    trainable, non_trainable = model.trainable_weights, model.non_trainable_weights
    n_trainable = sum(int(np.prod(w.shape)) for w in trainable)
    n_non_trainable = sum(int(np.prod(w.shape)) for w in non_trainable)
    total_bytes = weights_bytes(trainable) + weights_bytes(non_trainable)
    out = [f'Model: "{model.name}"', *_table(rows, headers, widths)]
    out.append(f" Total params: {n_trainable + n_non_trainable:,} ({readable_size(total_bytes)})")
    out.append(f" Trainable params: {n_trainable:,} ({readable_size(weights_bytes(trainable))})")
    out.append(f" Non-trainable params: {n_non_trainable:,} ({readable_size(weights_bytes(non_trainable))})")
    for text in out:
        print_fn(text)
