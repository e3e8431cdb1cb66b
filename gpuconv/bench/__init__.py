"""gpuconv-bench: per-layer timings against the device's roofline and against PyTorch.

Modules: ``row`` (a layer shape as data), ``suites`` (the declared suites), ``cost`` (FLOPs,
bytes, roofline), ``ceilings`` (peak rates), ``calls`` (the ops call of a row and its
validation), ``inputs``, ``check`` (the float64 oracle gate), ``subjects`` / ``torch_compare``
(what is timed), ``timing``, ``runner``, ``report`` / ``export`` / ``plot`` (output),
``environment``, ``cli``. Importing this package imports neither CuPy nor PyTorch.
"""
