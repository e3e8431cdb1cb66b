"""One benchmark row: a layer shape declared as data, and the shapes it implies.

A :class:`Row` is frozen data (suites are lists of them). Everything derived from it, the input
and weight shapes in Keras' layout, the output spatial size, comes from ``gpuconv.geometry`` so
that the benchmark never re-derives a formula the library already owns.

Ops, and the library call each one stands for:

=================  ==========================================================================
``conv``           ``ops.conv_core`` (groups ``g``, dilation ``d``, padding valid/same/causal)
``conv_transpose`` ``ops.conv_transpose_core`` (Keras padding: the crop is Keras' rule)
``depthwise``      ``ops.depthwise_conv_core`` (``K == C * dm``)
``separable``      ``ops.separable_conv_core`` (depthwise ``dm`` then pointwise ``C*dm -> K``)
``max_pool``       ``ops.pool_core(mode='max')`` (window ``k``, stride ``s``; ``K == C``)
``avg_pool``       ``ops.pool_core(mode='average')``
``dense``          ``ops.conv_core`` on a length-1 sequence with a ``(1, C, K)`` kernel: the same
                   matrix product as a Dense layer (``spatial == (1,)``, ``k == 1``)
=================  ==========================================================================
"""
import dataclasses
from typing import Optional, Tuple, Union

from .. import geometry as g

OPS = ("conv", "conv_transpose", "depthwise", "separable", "max_pool", "avg_pool", "dense")
POOL_MODES = {"max_pool": "max", "avg_pool": "average"}

IntOrTuple = Union[int, Tuple[int, ...]]


@dataclasses.dataclass(frozen=True)
class Row:
    """A forward-pass layer shape. ``K`` is the number of output channels for every op."""

    id: str
    description: str
    op: str
    N: int
    C: int
    K: int
    spatial: Tuple[int, ...]
    k: IntOrTuple = 1
    s: IntOrTuple = 1
    padding: str = "valid"
    d: IntOrTuple = 1
    g: int = 1
    dm: int = 1
    bias: bool = False
    activation: Optional[str] = None

    # ---- normalised geometry (raises the library's ValueError texts for bad values) ----------
    @property
    def rank(self):
        return len(self.spatial)

    @property
    def kernel_size(self):
        return g.standardize_tuple(self.k, self.rank, "kernel_size")

    @property
    def strides(self):
        return g.standardize_tuple(self.s, self.rank, "strides")

    @property
    def dilation(self):
        return g.standardize_tuple(self.d, self.rank, "dilation_rate")

    @property
    def is_pool(self):
        return self.op in POOL_MODES

    @property
    def mid_channels(self):
        """Channels after the depthwise step (depthwise and separable ops)."""
        return self.C * self.dm

    def with_batch(self, n):
        return dataclasses.replace(self, N=int(n))

    def input_shape(self, data_format, batch=None):
        n = self.N if batch is None else batch
        return g.make_shape(n, self.C, self.spatial, data_format)

    def weight_shapes(self):
        """``{name: shape}`` of the op's weights in Keras' layout, in the order the op takes them."""
        k, r = self.kernel_size, self.rank
        shapes = {}
        if self.op in ("conv", "dense"):
            shapes["kernel"] = k + (self.C // self.g, self.K)
        elif self.op == "conv_transpose":
            shapes["kernel"] = k + (self.K // self.g, self.C)
        elif self.op == "depthwise":
            shapes["kernel"] = k + (self.C, self.dm)
        elif self.op == "separable":
            shapes["depthwise_kernel"] = k + (self.C, self.dm)
            shapes["pointwise_kernel"] = (1,) * r + (self.mid_channels, self.K)
        if self.bias and not self.is_pool:
            shapes["bias"] = (self.K,)
        return shapes

    def output_spatial(self):
        k, s, d = self.kernel_size, self.strides, self.dilation
        if self.op == "conv_transpose":
            out, _ = g.conv_transpose_geometry(self.spatial, k, s, d, self.padding, None)
            return out
        if self.is_pool:
            return tuple(g.pool_output_length(L, p, st, self.padding) for L, p, st in zip(self.spatial, k, s))
        return g.conv_output_spatial(self.spatial, k, s, d, self.padding)

    def output_shape(self, data_format, batch=None):
        n = self.N if batch is None else batch
        return g.make_shape(n, self.K, self.output_spatial(), data_format)

    def shape_text(self):
        """Short human form, e.g. ``32x56x56 64->64 k3 s1 same`` (``128 3136->100`` for dense)."""
        if self.op == "dense":
            return f"{self.N} {self.C}->{self.K}"
        sp = "x".join(str(v) for v in self.spatial)
        parts = [f"{self.N}x{sp}", f"{self.C}->{self.K}", "k" + _dims(self.k)]
        if self.s != 1:
            parts.append("s" + _dims(self.s))
        if self.d != 1:
            parts.append("d" + _dims(self.d))
        if self.g != 1:
            parts.append(f"g{self.g}")
        if self.dm != 1:
            parts.append(f"dm{self.dm}")
        parts.append(self.padding)
        return " ".join(parts)

    def op_text(self):
        r = f"{self.rank}d"
        return {
            "conv": f"conv{r}", "conv_transpose": f"convT{r}", "depthwise": f"dwconv{r}",
            "separable": f"sepconv{r}", "max_pool": f"maxpool{r}", "avg_pool": f"avgpool{r}",
            "dense": "dense",
        }[self.op]


def _dims(v):
    if isinstance(v, int):
        return str(v)
    return "x".join(str(x) for x in v)
