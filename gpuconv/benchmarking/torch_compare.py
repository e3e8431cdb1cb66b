"""The comparison library: PyTorch (cuDNN on the GPU, oneDNN/ATen on the CPU), called on the very
operands gpuconv gets, with weights converted from Keras' layout.

Set-up follows what a careful PyTorch user would do: ``cudnn.benchmark = True``; TF32 off for
convolutions and matmuls (float32 is compared with float32); channels_last memory format when the
data is channels_last (the input is a permuted view of the NHWC buffer, as
``x.to(memory_format=torch.channels_last)`` would make it, and the weights are converted to
the same format); on the CPU the same thread count as the NumPy engine's BLAS, and its OpenMP
workers pinned one per CPU, as the NumPy engine pins its own workers.

Why pinned: PyTorch's CPU ops run on an OpenMP pool whose threads spin while they wait. Unpinned
on a 2-CPU machine, a woken worker is often queued on the CPU of the thread that woke it, which
spins at the barrier until the scheduler's next tick (4 ms steps on the 2-vCPU bench machine):
every parallel call then costs whole ticks. Measured on the keras suite's Dense 3136->100 (torch
alone, 40 calls, 2 threads): 8-12 ms median unpinned in 5 processes of 5, 0.5-0.9 ms pinned. The pinning is
``OMP_PROC_BIND=true`` while torch is imported (libgomp reads it when it loads), then the
environment and the calling thread's CPU mask are put back (libgomp binds the importing thread
too). A placement the user chose (``OMP_PROC_BIND``, ``OMP_PLACES``, ``GOMP_CPU_AFFINITY``,
``KMP_AFFINITY``) is kept, and an OpenMP runtime loaded before the benchmark cannot be pinned any
more; the run's header (and the exports' ``env compare_threads``) say which of these happened.

Backward rows (``pass_name`` 'backward' / 'both') differentiate the same call with respect to the
input, the weights (as PyTorch holds them: leaf tensors in torch's layout, converted once) and the
bias: 'backward' is ``torch.autograd.grad(y, leaves, dy, retain_graph=True)`` on one recorded
forward, 'both' the forward and that call per timed call. ``to_host`` gives the gradients back in
Keras' layout, so they are checked against the same oracle as gpuconv's.

Keras padding is mapped exactly, so the result can be checked against the oracle:
symmetric padding goes to ``padding=``; an asymmetric pair whose difference is a whole number
of strides (causal, 'same' with even kernels at stride 1) is computed with the larger padding
on both sides and the extra outputs are sliced off (the idiom of causal convs in PyTorch);
anything else (odd 'same' at stride 2) is padded explicitly with ``F.pad`` first, which is what
Keras' torch backend does too. Transposed convs map Keras' crop to ``padding`` +
``output_padding`` (or a slice of the uncropped result).
"""
import math
import os
import sys

from .. import geometry as g
from .row import POOL_MODES

# Variables by which a user already chose where an OpenMP runtime puts its threads.
OMP_PLACEMENT_VARS = ("OMP_PROC_BIND", "OMP_PLACES", "GOMP_CPU_AFFINITY", "KMP_AFFINITY")


class Unsupported(Exception):
    """The row has no faithful PyTorch equivalent; the reason is reported instead of a ratio."""


def omp_pinning_plan(environ, torch_imported, openmp_loaded):
    """``(pin, words)``: whether :func:`import_torch_pinned` may pin torch's OpenMP workers, and
    the few words of the run's header that say how its threads are placed."""
    chosen = [v for v in OMP_PLACEMENT_VARS if environ.get(v)]
    if chosen:
        return False, f"OpenMP placement from ${chosen[0]}={environ[chosen[0]]}"
    if torch_imported or openmp_loaded:
        return False, "OpenMP workers unpinned: an OpenMP runtime was loaded before the benchmark"
    if not hasattr(os, "sched_setaffinity"):  # macOS, Windows: no CPU masks to put back
        return False, "OpenMP workers unpinned (no CPU affinity on this OS)"
    return True, "OpenMP workers pinned"


def _openmp_loaded():
    """Whether an OpenMP runtime is mapped into this process already (it has read its settings)."""
    try:
        with open("/proc/self/maps") as f:
            maps = f.read()
    except OSError:
        return False
    return any(name in maps for name in ("libgomp", "libiomp", "libomp"))


def import_torch_pinned():
    """``(torch, words)``: torch imported with its OpenMP workers pinned where that is still
    possible (see the module doc), and the label words saying what was done."""
    pin, words = omp_pinning_plan(os.environ, "torch" in sys.modules, _openmp_loaded())
    if not pin:
        import torch

        return torch, words
    mask = os.sched_getaffinity(0)
    before = os.environ.get("OMP_PROC_BIND")  # None, or an empty value: no choice made
    os.environ["OMP_PROC_BIND"] = "true"
    try:
        import torch
    finally:
        if before is None:
            del os.environ["OMP_PROC_BIND"]
        else:
            os.environ["OMP_PROC_BIND"] = before
        os.sched_setaffinity(0, mask)
    return torch, words


class TorchSubject:
    placement = ""  # CPU: how its OpenMP threads are placed (the header and the exports say it)

    def __init__(self, device, threads):
        if device == "cuda":
            import torch
        else:
            torch, self.placement = import_torch_pinned()
        self.torch = torch
        self.device = device
        if device == "cuda":
            if not torch.cuda.is_available():
                raise Unsupported(f"torch {torch.__version__} has no CUDA here")
            torch.backends.cudnn.benchmark = True
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
            cudnn = torch.backends.cudnn.version()
            self.label = f"torch {torch.__version__} cuDNN {cudnn} on {torch.cuda.get_device_name()}"
        else:
            torch.set_num_threads(int(threads))
            self.label = f"torch {torch.__version__} CPU ({threads} threads)"
        self.version = torch.__version__

    # ---- operands ---------------------------------------------------------------------------
    def _tensor(self, a):
        t = self.torch
        if self.device == "cuda":
            return t.from_dlpack(a)
        return t.from_numpy(a)

    def _memory_format(self, ndim, data_format):
        t = self.torch
        if data_format != "channels_last":
            return t.contiguous_format
        return {4: t.channels_last, 5: t.channels_last_3d}.get(ndim, t.contiguous_format)

    def _weight(self, w, data_format):
        return w.contiguous(memory_format=self._memory_format(w.ndim, data_format))

    @staticmethod
    def _keras_to_torch_kernel(w, rank):
        """(k.., A, B) -> (B, A, k..): conv (k.., C/g, K) and transposed conv (k.., K/g, C) alike."""
        return w.permute(rank + 1, rank, *range(rank))

    @staticmethod
    def _depthwise_kernel(w, rank):
        """(k.., C, dm) -> (C*dm, 1, k..): output channel c*dm + m, as Keras orders it."""
        k = tuple(w.shape[:rank])
        return w.reshape(*k, -1).permute(rank, *range(rank)).unsqueeze(1)

    @staticmethod
    def _torch_to_keras_kernel(w, rank):
        """The inverse of ``_keras_to_torch_kernel``: (B, A, k..) -> (k.., A, B)."""
        return w.permute(*range(2, rank + 2), 1, 0)

    @staticmethod
    def _torch_to_keras_depthwise(w, rank, dm):
        """The inverse of ``_depthwise_kernel``: (C*dm, 1, k..) -> (k.., C, dm)."""
        k = tuple(w.shape[2:])
        return w.squeeze(1).permute(*range(1, rank + 1), 0).reshape(*k, -1, dm)

    # ---- the call -----------------------------------------------------------------------------
    def prepare(self, row, arrays, data_format, pass_name="forward"):
        """A zero-argument callable returning torch's output in gpuconv's layout (a view); for a
        backward pass, the gradients of input, weights and bias ('both': after the output)."""
        t = self.torch
        F = t.nn.functional
        r = row.rank
        grad = pass_name != "forward"
        leaves, to_keras = [], []

        def leaf(tensor, back=lambda g: g):
            """A differentiable input of the call (backward passes), with its map to Keras' layout."""
            if not grad:
                return tensor
            tensor = tensor.detach().requires_grad_(True)
            leaves.append(tensor)
            to_keras.append(back)
            return tensor

        x_leaf = leaf(self._tensor(arrays["x"]))

        def to_torch_layout():
            return x_leaf.movedim(-1, 1) if data_format == "channels_last" else x_leaf

        # The forward reuses one view of the input; a backward pass makes it inside each recorded
        # forward, so every graph starts at the leaf.
        x = to_torch_layout()
        inputs = to_torch_layout if grad else (lambda: x)
        activation = _activation(t, row.activation, inplace=not grad)
        ksize, strides, dilation = row.kernel_size, row.strides, row.dilation
        spatial, out_spatial = tuple(row.spatial), tuple(row.output_spatial())

        if row.op == "dense":
            w = leaf(self._tensor(arrays["kernel"])[0].t().contiguous(), lambda g: g.t().unsqueeze(0))
            bias = self._bias(arrays, leaf)
            x2 = x.reshape(x.shape[0], row.C)
            flat = (lambda: inputs().reshape(x.shape[0], row.C)) if grad else (lambda: x2)

            def core():
                return F.linear(flat(), w, bias).unsqueeze(-1)

        elif row.op in ("conv", "depthwise", "separable"):
            conv = getattr(F, f"conv{r}d")
            pairs = g.conv_padding(spatial, ksize, strides, dilation, row.padding)
            pad, slices, explicit = _padding_plan(spatial, pairs, ksize, strides, dilation, out_spatial)
            to_keras_kernel = lambda g: self._torch_to_keras_kernel(g, r)  # noqa: E731
            if row.op == "conv":
                w = leaf(self._weight(self._keras_to_torch_kernel(self._tensor(arrays["kernel"]), r), data_format),
                         to_keras_kernel)
                groups, pw = row.g, None
            else:
                name = "kernel" if row.op == "depthwise" else "depthwise_kernel"
                w = leaf(self._weight(self._depthwise_kernel(self._tensor(arrays[name]), r), data_format),
                         lambda g: self._torch_to_keras_depthwise(g, r, row.dm))
                groups = row.C
                pw = None
                if row.op == "separable":
                    pw = leaf(self._weight(self._keras_to_torch_kernel(self._tensor(arrays["pointwise_kernel"]), r),
                                           data_format), to_keras_kernel)
            bias = self._bias(arrays, leaf)
            flat_pad = _flat_pad(explicit) if explicit else None

            def core():
                xi = inputs()
                xi = F.pad(xi, flat_pad) if flat_pad else xi
                if pw is None:
                    y = conv(xi, w, bias, strides, pad, dilation, groups)
                else:
                    y = conv(xi, w, None, strides, pad, dilation, groups)
                y = y[(slice(None), slice(None), *slices)] if slices else y
                return conv(y, pw, bias) if pw is not None else y

        elif row.op == "conv_transpose":
            convt = getattr(F, f"conv_transpose{r}d")
            w = leaf(self._weight(self._keras_to_torch_kernel(self._tensor(arrays["kernel"]), r), data_format),
                     lambda g: self._torch_to_keras_kernel(g, r))
            bias = self._bias(arrays, leaf)
            pad, out_pad, slices = _transpose_plan(spatial, ksize, strides, dilation, row.padding, out_spatial)
            groups = row.g

            def core():
                y = convt(inputs(), w, bias, strides, pad, out_pad, groups, dilation)
                return y[(slice(None), slice(None), *slices)] if slices else y

        elif row.op in POOL_MODES:
            pairs = g.pool_padding(spatial, ksize, strides, row.padding)
            pad, slices, explicit = _padding_plan(spatial, pairs, ksize, strides, (1,) * r, out_spatial)
            if any(2 * p > k for p, k in zip(pad, ksize)):
                raise Unsupported(f"torch pooling allows padding <= kernel/2; Keras 'same' needs {tuple(pad)}")
            if row.op == "max_pool":
                pool = getattr(F, f"max_pool{r}d")
                flat_pad = _flat_pad(explicit) if explicit else None

                def core():
                    xi = F.pad(inputs(), flat_pad, value=-math.inf) if flat_pad else inputs()
                    y = pool(xi, ksize, strides, pad)
                    return y[(slice(None), slice(None), *slices)] if slices else y

            else:
                if explicit:
                    raise Unsupported("torch avg_pool cannot exclude explicitly padded cells from the count")
                pool = getattr(F, f"avg_pool{r}d")

                def core():
                    y = pool(inputs(), ksize, strides, pad, False, False)
                    return y[(slice(None), slice(None), *slices)] if slices else y

        else:
            raise Unsupported(f"no torch mapping for op {row.op!r}")

        def forward():
            y = core()
            if activation is not None:
                y = activation(y)
            return y.movedim(1, -1) if data_format == "channels_last" else y

        if not grad:
            def run():
                with t.inference_mode():
                    return forward()

            return run
        self._to_keras = tuple(to_keras)
        dy = self._tensor(arrays["dy"])
        if pass_name == "backward":
            y = forward()
            return lambda: t.autograd.grad(y, leaves, dy, retain_graph=True)
        self._to_keras = (lambda g: g,) + self._to_keras

        def both():
            y = forward()
            return (y,) + t.autograd.grad(y, leaves, dy)

        return both

    def _bias(self, arrays, leaf):
        return leaf(self._tensor(arrays["bias"])) if "bias" in arrays else None

    def to_host(self, y):
        """The output on the host; a backward pass' tuple in Keras' layout (the last row prepared)."""
        if isinstance(y, tuple):
            return tuple(back(g).detach().cpu().numpy() for back, g in zip(self._to_keras, y))
        return y.detach().cpu().numpy()

    def capture_graph(self, fn):
        from .timing import capture_torch_graph

        return capture_torch_graph(fn)


def _activation(torch, name, inplace=True):
    """In place on the forward's fresh output; out of place under autograd (a backward pass)."""
    if name in (None, "linear"):
        return None
    if inplace:
        table = {"relu": torch.relu_, "sigmoid": torch.sigmoid_, "tanh": torch.tanh_}
    else:
        table = {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh}
    if name not in table:
        raise Unsupported(f"no torch mapping for activation {name!r}")
    return table[name]


def _flat_pad(pairs):
    """F.pad's argument: (before, after) pairs from the last dimension to the first."""
    flat = []
    for before, after in reversed(pairs):
        flat += [before, after]
    return tuple(flat)


def _padding_plan(spatial, pairs, ksize, strides, dilation, out_spatial):
    """``(padding, slices, explicit_pairs)`` for torch's symmetric-only padding (see module doc)."""
    if all(b == a for b, a in pairs):
        return tuple(b for b, _ in pairs), None, None
    pads, slices = [], []
    for L, (b, a), k, s, d, o in zip(spatial, pairs, ksize, strides, dilation, out_spatial):
        p = max(b, a)
        offset = p - b
        torch_len = g.conv_output_length(L + 2 * p, k, s, d, "valid")
        start = offset // s
        if offset % s or torch_len < start + o:
            return (0,) * len(spatial), None, pairs
        pads.append(p)
        slices.append(slice(start, start + o))
    return tuple(pads), tuple(slices), None


def _transpose_plan(spatial, ksize, strides, dilation, padding, out_spatial):
    """``(padding, output_padding, slices)`` reproducing Keras' crop of the full scatter."""
    pads, out_pads, slices, native = [], [], [], True
    for L, k, s, d, o in zip(spatial, ksize, strides, dilation, out_spatial):
        full = g.conv_transpose_output_length(L, k, s, d, "valid", 0)  # the uncropped scatter
        crop = g.conv_transpose_crop(L, k, s, d, o)
        extra = o - (full - 2 * crop)
        if full - crop < o:
            raise Unsupported("Keras' output_padding here extends past the scatter; torch has no equivalent")
        if not 0 <= extra < max(s, d):
            native = False
        pads.append(crop)
        out_pads.append(extra)
        slices.append(slice(crop, crop + o))
    if native:
        return tuple(pads), tuple(out_pads), None
    return (0,) * len(spatial), (0,) * len(spatial), tuple(slices)
