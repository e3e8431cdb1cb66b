"""What gets timed: gpuconv through its ops (the subject) on an engine named explicitly.

``GpuconvSubject.prepare`` returns a zero-argument callable that runs the row on arrays already
placed on the device, and returns the output (asynchronously, on the GPU). Every call names its
engine (``ops.*(..., engine=...)``), so the global backend choice is neither read nor changed: by
default the engine of ``backend``, or any object implementing ``gpuconv.engines.Engine``
(``GpuconvSubject("numpy", engine=my_engine)``), which is how a test shows that a wrong engine
gets a FAIL and no time. Backward rows time ``gradient_calls``' tape gradient of the same call.
"""
from .. import engines as _engines
from . import gradient_calls
from .calls import call_op


def place(host_arrays, device):
    """The operands on ``device`` ('cpu': the host arrays themselves; 'cuda': CuPy copies)."""
    if device == "cpu":
        return dict(host_arrays)
    import cupy as cp

    return {name: cp.asarray(a) for name, a in host_arrays.items()}


class GpuconvSubject:
    def __init__(self, backend, engine=None):
        import gpuconv

        self.backend = backend
        self.device = "cuda" if backend == "cuda" else "cpu"
        self.engine = _engines.resolve(backend if engine is None else engine)
        self.label = f"gpuconv {gpuconv.__version__} ({self.engine.NAME})"

    def prepare(self, row, arrays, data_format, pass_name="forward"):
        """The timed call of ``pass_name``: the forward op, or (``gradient_calls``) its backward
        through ``gpuconv.GradientTape`` ('backward') or the two together ('both')."""
        engine = self.engine
        if pass_name != "forward":
            return gradient_calls.prepare(row, arrays, data_format, engine, pass_name)
        return lambda: call_op(row, arrays, data_format, engine)

    def capture_graph(self, fn):
        from .timing import capture_cupy_graph

        return capture_cupy_graph(fn)
