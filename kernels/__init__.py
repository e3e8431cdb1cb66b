"""CUDA sources of gpuconv, shipped as package data ``gpuconv.kernels`` (read with importlib.resources)."""
