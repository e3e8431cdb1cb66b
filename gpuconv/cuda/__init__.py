"""The CUDA engine: kernels/*.cu compiled at run time by CuPy (NVRTC), launched on CuPy's
current stream. Importing this package does not import CuPy; ``gpuconv.cuda.engine`` does."""
