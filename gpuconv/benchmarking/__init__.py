"""The library behind the ``gpuconv-bench`` command (also ``python -m gpuconv.benchmarking``):
per-layer timings against the device's roofline and against PyTorch, each row checked against the
float64 oracle first. This package is the benchmark *code*, installed with gpuconv; the benchmark
*tests* (pytest-benchmark, run with ``pytest bench``) and ``bench/gpu_check.sh`` live in the
top-level ``bench/`` directory of the checkout and import from here.

Modules: ``row`` (a layer shape as data), ``suites`` (the declared suites), ``cost`` (FLOPs,
bytes, roofline), ``ceilings`` (peak rates), ``calls`` (the ops call of a row and its
validation), ``inputs``, ``oracle_gate`` (the float64 oracle gate), ``gradient_calls`` /
``gradient_gate`` (backward rows: the tape's gradient of a row and its gate), ``subjects`` /
``torch_compare`` (what is timed), ``timing``, ``runner``, ``report`` / ``export`` / ``plot``
(output), ``environment``, ``cli``. Importing this package imports neither CuPy nor PyTorch.
"""
