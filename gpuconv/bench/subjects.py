"""What gets timed: gpuconv through its ops (the subject) and the engine behind it.

``GpuconvSubject.prepare`` returns a zero-argument callable that runs the row on arrays already
placed on the device, and returns the output (asynchronously, on the GPU). The engine is
injectable: ``GpuconvSubject(engine=my_engine)`` routes every op of the timed call to
``my_engine`` (any object with the engine contract of ``gpuconv/cpu/__init__.py``), which is how
a test shows that a wrong engine gets a FAIL and no time.
"""
import contextlib

from .. import backend as _backend
from .calls import call_op


@contextlib.contextmanager
def engine_override(engine):
    """Make ``gpuconv.backend.engine()`` return ``engine`` inside the block (ops look it up per call)."""
    original = _backend.engine
    _backend.engine = lambda: engine
    try:
        yield
    finally:
        _backend.engine = original


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
        self.engine = engine
        name = getattr(engine, "NAME", type(engine).__name__) if engine is not None else backend
        self.label = f"gpuconv {gpuconv.__version__} ({name})"

    def prepare(self, row, arrays, data_format):
        if self.engine is None:
            return lambda: call_op(row, arrays, data_format)
        engine = self.engine

        def run():
            with engine_override(engine):
                return call_op(row, arrays, data_format)

        return run

    def capture_graph(self, fn):
        from .timing import capture_cupy_graph

        return capture_cupy_graph(fn)
