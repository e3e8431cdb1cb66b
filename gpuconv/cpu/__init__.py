"""The NumPy engine: the CPU fallback and the oracle every GPU result is checked against.

Why it matters beyond machines without a GPU: its float64 results are the expected values of
every CUDA test and of the benchmark's correctness gate, so it favours exactness (IEEE zeros
padded literally, float16 accumulated in float32) and bounded memory over every last cycle.
Its entry point is ``gpuconv.cpu.engine`` (the contract of ``gpuconv.engines.Engine``), like
``gpuconv.cuda.engine``; this package itself holds only the implementation.

Implementation map (one idea per module): ``_windows`` (padding, sliding-window views, the taps
that can touch real input and the input a piece of the output reads), ``memory`` (the workspace
budget ``GPUCONV_WORKSPACE_MB`` / ``MEMORY_BUDGET_BYTES``, the allocation limit, batch/row
chunking, the reused scratch buffers), ``_pieces`` (every op fills its output piece by piece
under that budget: sizes checked, output allocated once, epilogue per piece), ``_parallel``
(disjoint pieces of memory-bound work on ``GPUCONV_NUM_THREADS`` pinned, fork-safe worker
threads), ``_epilogue`` (bias, fused activation, cast), ``_quiet`` (IEEE results without NumPy
warnings), ``conv`` (im2col + GEMM), ``conv_transpose`` (GEMM + per-tap strided scatter-add),
``depthwise`` (channels_last row blocks), ``depthwise_planes`` (channels_first depthwise over
shifted plane copies), ``separable`` (depthwise then a GEMM per piece), ``pooling``,
``locally_connected``, ``upsampling``: the same module names as ``gpuconv/cuda/``. Every
output is a fresh C-contiguous array.
"""
