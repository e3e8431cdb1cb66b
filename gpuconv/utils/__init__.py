"""``keras.utils``' training helpers for gpuconv: ``PyDataset`` (and its old name ``Sequence``),
``set_random_seed``, ``Progbar``, and the batch packing helpers."""
from .py_dataset import PyDataset, Sequence  # noqa: F401  (first: the data adapters import it)
from .random import draw_seed, get_random_seed, global_generator, set_random_seed  # noqa: F401
from .progbar import Progbar  # noqa: F401
from ..training.data_adapters import pack_x_y_sample_weight, unpack_x_y_sample_weight  # noqa: F401

__all__ = ["PyDataset", "Sequence", "Progbar", "set_random_seed", "get_random_seed", "global_generator",
           "draw_seed", "pack_x_y_sample_weight", "unpack_x_y_sample_weight"]
