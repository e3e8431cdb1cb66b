"""Counting training batches for callbacks that save every ``save_freq`` batches
(``ModelCheckpoint``, ``BackupAndRestore``).

The loop reports batch indices that restart at 0 every epoch and, with several steps per
execution, may skip indices; Keras counts the gap since the last index seen, and a batch index
not above the last one starts a new epoch. The count carries over epoch boundaries.

``last_batch`` starts as ``None`` for ``ModelCheckpoint`` and as 0 for ``BackupAndRestore``
(which also resets it to 0 after each epoch): the two differ in Keras when the first index
reported is above 0 (``steps_per_execution`` > 1), and each callback keeps Keras' count.
"""

__all__ = ["BatchCounter"]


class BatchCounter:
    def __init__(self, every, last_batch=None):
        self.every = every
        self.since_last = 0
        self.last_batch = last_batch

    def step(self, batch):
        """Record batch ``batch``; True when ``every`` batches have passed since the last True."""
        if self.last_batch is None or batch <= self.last_batch:
            self.since_last += batch + 1
        else:
            self.since_last += batch - self.last_batch
        self.last_batch = batch
        if self.since_last >= self.every:
            self.since_last = 0
            return True
        return False
