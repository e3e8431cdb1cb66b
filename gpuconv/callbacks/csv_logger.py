"""``CSVLogger``: one CSV row per epoch with every logs value (Keras 3.15's text exactly).

The columns are ``epoch`` and the first epoch's keys, sorted; when that epoch had no validation
keys, ``val_``-prefixed copies of them are added so later validated epochs still fit, and a
missing value is written ``NA``. A list-like value is written as ``"[a, b]"`` (quotes included,
which the CSV writer then escapes), as Keras writes it.
"""
import collections.abc
import csv
import os

import numpy as np

from .callback import Callback

__all__ = ["CSVLogger"]


def _cell(value):
    if isinstance(value, str):
        return value
    if isinstance(value, collections.abc.Iterable) and not (isinstance(value, np.ndarray) and value.ndim == 0):
        return f'"[{", ".join(map(str, value))}]"'
    return value


class CSVLogger(Callback):
    """Stream epoch results to a CSV file.

    Args:
        filename: path of the CSV file.
        separator: the one character between fields.
        append: add to an existing file (its header kept) instead of overwriting it.
    """

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        if not isinstance(filename, (str, os.PathLike)):
            raise TypeError(f"Expected `filename` to be a string or path-like. Received: filename={filename!r}")
        if not isinstance(separator, str) or len(separator) != 1:
            raise ValueError(f"Expected `separator` to be a one-character string. Received: separator={separator!r}")
        self.sep = separator
        self.filename = os.fspath(filename)
        self.append = append
        self.writer = None
        self.keys = None
        self.append_header = True
        self.csv_file = None

    def on_train_begin(self, logs=None):
        if self.append:
            if os.path.exists(self.filename):
                with open(self.filename, "r", newline="") as f:
                    self.append_header = not f.readline()
            mode = "a"
        else:
            mode = "w"
        self._close()
        self.csv_file = open(self.filename, mode, newline="")
        self.writer = None
        self.keys = None

    def _columns(self, logs):
        keys = sorted(logs)
        if keys and not any(key.startswith("val_") for key in keys):
            keys += [f"val_{key}" for key in keys]
        return keys

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.keys is None:
            self.keys = self._columns(logs)
        if not self.writer:
            separator = self.sep

            class Dialect(csv.excel):
                delimiter = separator

            self.writer = csv.DictWriter(self.csv_file, fieldnames=["epoch"] + self.keys, dialect=Dialect)
            if self.append_header:
                self.writer.writeheader()
        row = {"epoch": epoch}
        row.update((key, _cell(logs.get(key, "NA"))) for key in self.keys)
        self.writer.writerow(row)
        self.csv_file.flush()

    def _close(self):
        if self.csv_file and not self.csv_file.closed:
            self.csv_file.close()

    def on_train_end(self, logs=None):
        self._close()
        self.writer = None
