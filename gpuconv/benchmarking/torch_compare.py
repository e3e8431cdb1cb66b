"""The comparison library: PyTorch (cuDNN on the GPU, oneDNN/ATen on the CPU), called on the very
operands gpuconv gets, with weights converted from Keras' layout.

Set-up follows what a careful PyTorch user would do: ``cudnn.benchmark = True``; TF32 off for
convolutions and matmuls (float32 is compared with float32); channels_last memory format when the
data is channels_last (the input is a permuted view of the NHWC buffer, as
``x.to(memory_format=torch.channels_last)`` would make it, and the weights are converted to
the same format); on the CPU the same thread count as the NumPy engine's BLAS.

Keras padding is mapped exactly, so the result can be checked against the oracle:
symmetric padding goes to ``padding=``; an asymmetric pair whose difference is a whole number
of strides (causal, 'same' with even kernels at stride 1) is computed with the larger padding
on both sides and the extra outputs are sliced off (the idiom of causal convs in PyTorch);
anything else (odd 'same' at stride 2) is padded explicitly with ``F.pad`` first, which is what
Keras' torch backend does too. Transposed convs map Keras' crop to ``padding`` +
``output_padding`` (or a slice of the uncropped result).
"""
import math

from .. import geometry as g
from .row import POOL_MODES


class Unsupported(Exception):
    """The row has no faithful PyTorch equivalent; the reason is reported instead of a ratio."""


class TorchSubject:
    def __init__(self, device, threads):
        import torch

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

    # ---- the call -----------------------------------------------------------------------------
    def prepare(self, row, arrays, data_format):
        """A zero-argument callable returning torch's output in gpuconv's layout (a view)."""
        t = self.torch
        F = t.nn.functional
        r = row.rank
        x = self._tensor(arrays["x"])
        if data_format == "channels_last":
            x = x.movedim(-1, 1)
        bias = self._tensor(arrays["bias"]) if "bias" in arrays else None
        activation = _activation(t, row.activation)
        ksize, strides, dilation = row.kernel_size, row.strides, row.dilation
        spatial, out_spatial = tuple(row.spatial), tuple(row.output_spatial())

        if row.op == "dense":
            w = self._tensor(arrays["kernel"])[0].t().contiguous()
            x2 = x.reshape(x.shape[0], row.C)

            def core():
                return F.linear(x2, w, bias).unsqueeze(-1)

        elif row.op in ("conv", "depthwise", "separable"):
            conv = getattr(F, f"conv{r}d")
            pairs = g.conv_padding(spatial, ksize, strides, dilation, row.padding)
            pad, slices, explicit = _padding_plan(spatial, pairs, ksize, strides, dilation, out_spatial)
            if row.op == "conv":
                w = self._weight(self._keras_to_torch_kernel(self._tensor(arrays["kernel"]), r), data_format)
                groups, pw = row.g, None
            else:
                name = "kernel" if row.op == "depthwise" else "depthwise_kernel"
                w = self._weight(self._depthwise_kernel(self._tensor(arrays[name]), r), data_format)
                groups = row.C
                pw = None
                if row.op == "separable":
                    pw = self._weight(self._keras_to_torch_kernel(self._tensor(arrays["pointwise_kernel"]), r),
                                      data_format)
            flat_pad = _flat_pad(explicit) if explicit else None

            def core():
                xi = F.pad(x, flat_pad) if flat_pad else x
                if pw is None:
                    y = conv(xi, w, bias, strides, pad, dilation, groups)
                else:
                    y = conv(xi, w, None, strides, pad, dilation, groups)
                y = y[(slice(None), slice(None), *slices)] if slices else y
                return conv(y, pw, bias) if pw is not None else y

        elif row.op == "conv_transpose":
            convt = getattr(F, f"conv_transpose{r}d")
            w = self._weight(self._keras_to_torch_kernel(self._tensor(arrays["kernel"]), r), data_format)
            pad, out_pad, slices = _transpose_plan(spatial, ksize, strides, dilation, row.padding, out_spatial)
            groups = row.g

            def core():
                y = convt(x, w, bias, strides, pad, out_pad, groups, dilation)
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
                    xi = F.pad(x, flat_pad, value=-math.inf) if flat_pad else x
                    y = pool(xi, ksize, strides, pad)
                    return y[(slice(None), slice(None), *slices)] if slices else y

            else:
                if explicit:
                    raise Unsupported("torch avg_pool cannot exclude explicitly padded cells from the count")
                pool = getattr(F, f"avg_pool{r}d")

                def core():
                    y = pool(x, ksize, strides, pad, False, False)
                    return y[(slice(None), slice(None), *slices)] if slices else y

        else:
            raise Unsupported(f"no torch mapping for op {row.op!r}")

        def run():
            with t.inference_mode():
                y = core()
                if activation is not None:
                    y = activation(y)
            return y.movedim(1, -1) if data_format == "channels_last" else y

        return run

    def to_host(self, y):
        return y.detach().cpu().numpy()

    def capture_graph(self, fn):
        from .timing import capture_torch_graph

        return capture_torch_graph(fn)


def _activation(torch, name):
    if name in (None, "linear"):
        return None
    table = {"relu": torch.relu_, "sigmoid": torch.sigmoid_, "tanh": torch.tanh_}
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
