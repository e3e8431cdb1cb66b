"""Peak rates the roofline is drawn against: datasheet values per GPU, or measured ones.

Datasheet figures are dense (no sparsity), at boost clock: fp32 FMA rate, fp16 tensor-core rate
(fp32 accumulate), fp16 CUDA-core rate (what a depthwise kernel can use), memory bandwidth.
They are leads, not truths: ``--measure-ceilings`` measures a large device-to-device copy (bytes
read + bytes written) and large matrix products instead. The CPU has no table: its ceilings are
always measured (a large NumPy copy and a float32 matrix product; the NumPy engine computes
float16 in float32, so float16 gets the float32 rate).
"""
import dataclasses
import re
import time

import numpy as np

TERA = 1e12


@dataclasses.dataclass(frozen=True)
class DeviceCeilings:
    """Peak rates of one device, in FLOP/s and B/s, and where they came from."""

    device: str
    fp32: float
    fp16_tensor: float
    fp16_simt: float
    bandwidth: float
    source: str

    def for_dtype(self, dtype):
        """The three ceilings a row of ``dtype`` is held to (float32: tensor cores off, as TF32
        is off on the comparison side too)."""
        if np.dtype(dtype) == np.float16:
            return DtypeCeilings(self.fp16_tensor, self.fp16_simt, self.bandwidth)
        return DtypeCeilings(self.fp32, self.fp32, self.bandwidth)

    def as_dict(self):
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class DtypeCeilings:
    tensor_flops: float
    simt_flops: float
    bandwidth: float


# (tokens that must all appear in the device name, label, fp32, fp16 tensor, fp16 CUDA-core [TFLOP/s],
# bandwidth [TB/s]). Most specific first: "H100 PCIe" before "H100".
DATASHEET = (
    (("H200", "NVL"), "H200 NVL", 60.0, 835.0, 120.0, 4.8),
    (("H200",), "H200 SXM", 66.9, 989.4, 133.8, 4.8),
    (("GH200",), "GH200 (96 GB HBM3)", 66.9, 989.4, 133.8, 4.0),
    (("H100", "NVL"), "H100 NVL", 60.0, 835.0, 120.0, 3.9),
    (("H100", "PCIE"), "H100 PCIe", 51.2, 756.0, 102.4, 2.0),
    (("H100",), "H100 SXM", 66.9, 989.4, 133.8, 3.35),
    (("A100", "PCIE", "80GB"), "A100 PCIe 80GB", 19.5, 312.0, 78.0, 1.935),
    (("A100", "80GB"), "A100 SXM 80GB", 19.5, 312.0, 78.0, 2.039),
    (("A100",), "A100 40GB", 19.5, 312.0, 78.0, 1.555),
    (("L40S",), "L40S", 91.6, 362.0, 91.6, 0.864),
    (("L4",), "L4", 30.3, 121.0, 30.3, 0.300),
    (("A10",), "A10", 31.2, 125.0, 31.2, 0.600),
    (("V100", "PCIE"), "V100 PCIe", 14.0, 112.0, 28.0, 0.900),
    (("V100",), "V100 SXM2", 15.7, 125.0, 31.4, 0.900),
    (("T4",), "T4", 8.1, 65.0, 16.2, 0.320),
)


def _tokens(name):
    return set(re.split(r"[\s\-_/]+", name.upper()))


def datasheet(device_name):
    """The datasheet ceilings for ``device_name`` (as the driver reports it), or None."""
    tokens = _tokens(device_name)
    for needed, label, fp32, tensor, simt, bw in DATASHEET:
        if set(needed) <= tokens:
            return DeviceCeilings(device_name, fp32 * TERA, tensor * TERA, simt * TERA, bw * TERA,
                                  f"datasheet ({label})")
    return None


# --------------------------------------------------------------------------------------------
# Measured ceilings
# --------------------------------------------------------------------------------------------
def _best_seconds(fn, repeat):
    fn()  # warm-up: page faults, BLAS thread start-up
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def measure_cpu(device_name="cpu", copy_bytes=64 << 20, matmul_n=1024, repeat=5):
    """Quick CPU ceilings: a NumPy copy (read + write) and a float32 matrix product (best of runs)."""
    src = np.ones(copy_bytes // 4, dtype=np.float32)
    dst = np.empty_like(src)
    copy_s = _best_seconds(lambda: np.copyto(dst, src), repeat)
    a = np.random.default_rng(0).standard_normal((matmul_n, matmul_n)).astype(np.float32)
    b = a.T.copy()
    mm_s = _best_seconds(lambda: a @ b, repeat)
    flops = 2.0 * matmul_n ** 3 / mm_s
    return DeviceCeilings(
        device_name, flops, flops, flops, 2.0 * src.nbytes / copy_s,
        f"measured (CPU, no datasheet table): {copy_bytes >> 20} MiB np.copyto, {matmul_n}^3 float32 matmul",
    )


RATES = ("fp32", "fp16_tensor", "fp16_simt", "bandwidth")


def remeasure_cpu(previous, **measure_kwargs):
    """``previous`` CPU ceilings re-checked (e.g. after a run, under a second): measured again and
    kept, rate by rate, at the larger of the two. A busy machine can only make a measurement too
    low, so the larger is the better estimate of the peak; ``measure_kwargs`` go to measure_cpu."""
    if not isinstance(previous, DeviceCeilings):
        raise TypeError(f"previous must be a DeviceCeilings. Received: previous={previous!r}")
    again = measure_cpu(previous.device, **measure_kwargs)
    best = {name: max(getattr(previous, name), getattr(again, name)) for name in RATES}
    raised = [name for name in RATES if getattr(again, name) > getattr(previous, name)]
    change = f"higher now: {', '.join(raised)}" if raised else "none higher now"
    return dataclasses.replace(previous, **best,
                               source=f"{previous.source}; re-measured after the run, larger kept ({change})")


def measure_gpu(device_name, matmul_n=8192, repeat=10):
    """GPU ceilings measured with CUDA events: a device-to-device copy of up to 1 GiB (bytes read
    + written), an fp16 and an fp32 matmul (CuPy/cuBLAS). The fp16 CUDA-core rate has no library
    op to measure; it is the measured fp32 rate scaled by the datasheet's fp16/fp32 ratio."""
    import os

    import cupy as cp

    from .timing import time_gpu

    free, _ = cp.cuda.runtime.memGetInfo()
    nbytes = int(min(1 << 30, free // 4))
    src = cp.ones(nbytes // 4, dtype=cp.float32)
    dst = cp.empty_like(src)
    copy = time_gpu(lambda: cp.copyto(dst, src), warmup=3, repeat=repeat)
    bandwidth = 2.0 * src.nbytes / copy.min
    del src, dst

    rates = {}
    for dtype in (cp.float16, cp.float32):
        a = cp.random.standard_normal((matmul_n, matmul_n), dtype=cp.float32).astype(dtype)
        b = cp.random.standard_normal((matmul_n, matmul_n), dtype=cp.float32).astype(dtype)
        t = time_gpu(lambda: cp.matmul(a, b), warmup=3, repeat=repeat)
        rates[np.dtype(dtype).name] = 2.0 * matmul_n ** 3 / t.min
        del a, b
    sheet = datasheet(device_name)
    ratio = sheet.fp16_simt / sheet.fp32 if sheet else 1.0
    tf32 = os.environ.get("CUPY_TF32", "0") not in ("", "0")
    note = " (CUPY_TF32 is set: the fp32 matmul used TF32)" if tf32 else ""
    return DeviceCeilings(
        device_name, rates["float32"], rates["float16"], rates["float32"] * ratio, bandwidth,
        f"measured: {nbytes >> 20} MiB D2D copy, {matmul_n}^3 cuBLAS matmul fp16/fp32; fp16 CUDA-core = "
        f"fp32 x {ratio:g}{note}",
    )
