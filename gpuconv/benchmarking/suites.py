"""The benchmark suites, declared as data.

``SUITE`` is the table of docs/bench_suite.md, row for row (25 lines: S1a and S1b are the
two halves of one separable layer). The table gives PyTorch-style explicit padding ``p``; every
row here says the same thing in Keras terms, checked against the table's output size:

- D*/V*/W* rows with ``p = d*(k-1)/2`` are Keras 'same'. D1 (k7 s2 p3, 224 -> 112) and D3/W3
  (stride 2) are Keras 'same' too: same output size and FLOPs, but Keras puts the odd padding
  pixel after (D1 pads (2, 3) instead of (3, 3)), which is what a Keras model computes.
- T1 (k4 s2 p1, 8 -> 16): (8-1)*2 - 2*1 + 4 = 16 = 8*2, Keras 'same' (crop (18-16)//2 = 1 = p).
- T2 (k2 s2 p0, 64 -> 128) and T4 (k2 s2 p0, 16 -> 32): Keras 'valid' (crop 0).
- T3 (k16 s8 p4, 32 -> 256): (32-1)*8 - 2*4 + 16 = 256 = 32*8, Keras 'same'
  (crop ((32-1)*8 + 16 - 256)//2 = 4 = p).
``tests/test_bench_suites.py`` re-checks each of these against ``gpuconv.geometry``.

``CPU`` holds a CPU-sized version of every row (same id, same kind of layer: kernel, stride,
dilation, groups, padding kept; batch 1-4 and, where needed, fewer channels or a smaller extent)
so each runs well under a second on the NumPy engine. ``QUICK`` is a subset of ``CPU`` covering
each op family. ``KERAS`` is the seed CNN of the README at batch 128.
"""
import dataclasses

from .row import Row

SUITE = (
    Row("D1", "ResNet-50 stem 7x7/2, C=3 (torch p=3; Keras 'same' pads (2,3))", "conv", 32, 3, 64, (224, 224), 7, 2, "same"),
    Row("D2", "ResNet-50 res2 3x3", "conv", 32, 64, 64, (56, 56), 3, 1, "same"),
    Row("D3", "ResNet-50 v1.5 res3 3x3 s2", "conv", 32, 128, 128, (56, 56), 3, 2, "same"),
    Row("D4", "ResNet-50 res4 3x3 (worked example)", "conv", 32, 256, 256, (14, 14), 3, 1, "same"),
    Row("D5", "ResNet-50 res4 3x3, batch 1", "conv", 1, 256, 256, (14, 14), 3, 1, "same"),
    Row("D6", "ResNet-50 res4 1x1 reduce 1024->256", "conv", 32, 1024, 256, (14, 14), 1, 1, "same"),
    Row("D7", "ResNet-50 res5 3x3", "conv", 32, 512, 512, (7, 7), 3, 1, "same"),
    Row("D8", "ResNeXt-50 32x4d res4 3x3 grouped g=32", "conv", 32, 512, 512, (14, 14), 3, 1, "same", g=32),
    Row("D9", "DeepLabv3 ASPP 3x3 dilation 12", "conv", 16, 2048, 256, (32, 32), 3, 1, "same", d=12),
    Row("W1", "MobileNetV2 dw3x3 s1 C144 56x56", "depthwise", 32, 144, 144, (56, 56), 3, 1, "same"),
    Row("W2", "MobileNetV2 dw3x3 s1 C960 7x7", "depthwise", 32, 960, 960, (7, 7), 3, 1, "same"),
    Row("W3", "EfficientNet-B0 dw5x5 s2 C144 56->28", "depthwise", 32, 144, 144, (56, 56), 5, 2, "same"),
    Row("W4", "ConvNeXt-T stage3 dw7x7 C384 14x14", "depthwise", 32, 384, 384, (14, 14), 7, 1, "same"),
    Row("S1a", "Separable: dw3x3 C256 28x28 (part 1)", "depthwise", 32, 256, 256, (28, 28), 3, 1, "same"),
    Row("S1b", "Separable: pw1x1 256->256 28x28 (part 2)", "conv", 32, 256, 256, (28, 28), 1, 1, "same"),
    Row("W5", "Conv-TasNet dw conv1d k3 d64 C512 L4000", "depthwise", 8, 512, 512, (4000,), 3, 1, "same", d=64),
    Row("W6", "Mamba-style causal dw conv1d k4 C4096 L2048", "depthwise", 8, 4096, 4096, (2048,), 4, 1, "causal"),
    Row("A1", "WaveNet causal dilated conv1d k2 d512 64->128 L16384", "conv", 16, 64, 128, (16384,), 2, 1, "causal", d=512),
    Row("T1", "DCGAN G ConvT 4x4 s2 p1 256->128 8->16", "conv_transpose", 128, 256, 128, (8, 8), 4, 2, "same"),
    Row("T2", "U-Net up ConvT 2x2 s2 256->128 64->128", "conv_transpose", 8, 256, 128, (64, 64), 2, 2, "valid"),
    Row("T3", "HiFi-GAN ConvT1d k16 s8 p4 512->256 L32->256", "conv_transpose", 16, 512, 256, (32,), 16, 8, "same"),
    Row("T4", "3D U-Net ConvT3d 2x2x2 s2 256->128 16^3->32^3", "conv_transpose", 2, 256, 128, (16, 16, 16), 2, 2, "valid"),
    Row("V1", "C3D conv3a 3x3x3 128->256 8x28x28", "conv", 8, 128, 256, (8, 28, 28), 3, 1, "same"),
    Row("V2", "nnU-Net 3d_fullres stage1 3x3x3 32->32 128^3", "conv", 2, 32, 32, (128, 128, 128), 3, 1, "same"),
    Row("V3", "X3D-M-like channelwise 3x3x3 C108 16x28x28", "depthwise", 8, 108, 108, (16, 28, 28), 3, 1, "same"),
)


def _cpu(row, **changes):
    """The CPU-sized twin of a suite row: same id and layer kind, smaller extents."""
    sizes = ", ".join(f"{k}={v}" for k, v in changes.items())
    return dataclasses.replace(row, description=f"{row.description} [CPU-sized: {sizes}]", **changes)


_BY_ID = {r.id: r for r in SUITE}

CPU = (
    _cpu(_BY_ID["D1"], N=1),
    _cpu(_BY_ID["D2"], N=1),
    _cpu(_BY_ID["D3"], N=1),
    _cpu(_BY_ID["D4"], N=1),
    _cpu(_BY_ID["D5"], N=1),
    _cpu(_BY_ID["D6"], N=2),
    _cpu(_BY_ID["D7"], N=1),
    _cpu(_BY_ID["D8"], N=4),
    _cpu(_BY_ID["D9"], N=1, C=256, K=64),
    _cpu(_BY_ID["W1"], N=2),
    _cpu(_BY_ID["W2"], N=4),
    _cpu(_BY_ID["W3"], N=2),
    _cpu(_BY_ID["W4"], N=4),
    _cpu(_BY_ID["S1a"], N=2),
    _cpu(_BY_ID["S1b"], N=2),
    _cpu(_BY_ID["W5"], N=1),
    _cpu(_BY_ID["W6"], N=1, C=1024, K=1024),
    _cpu(_BY_ID["A1"], N=1, spatial=(8192,)),
    _cpu(_BY_ID["T1"], N=4),
    _cpu(_BY_ID["T2"], N=1, spatial=(32, 32)),
    _cpu(_BY_ID["T3"], N=2),
    _cpu(_BY_ID["T4"], N=1, spatial=(8, 8, 8)),
    _cpu(_BY_ID["V1"], N=1, C=64, K=64, spatial=(8, 14, 14)),
    _cpu(_BY_ID["V2"], N=1, spatial=(16, 16, 16)),
    _cpu(_BY_ID["V3"], N=1),
)

QUICK_IDS = ("D1", "D4", "D8", "W1", "W6", "A1", "T1", "T3", "V3")
QUICK = tuple(r for r in CPU if r.id in QUICK_IDS)

KERAS_BATCH = 128
KERAS = (
    Row("K1", "seed CNN Conv2D 32 3x3 same relu", "conv", KERAS_BATCH, 1, 32, (28, 28), 3, 1, "same",
        bias=True, activation="relu"),
    Row("K2", "seed CNN MaxPooling2D 2", "max_pool", KERAS_BATCH, 32, 32, (28, 28), 2, 2, "valid"),
    Row("K3", "seed CNN Conv2D 64 3x3 same relu", "conv", KERAS_BATCH, 32, 64, (14, 14), 3, 1, "same",
        bias=True, activation="relu"),
    Row("K4", "seed CNN MaxPooling2D 2", "max_pool", KERAS_BATCH, 64, 64, (14, 14), 2, 2, "valid"),
    Row("K5", "seed CNN Dense 3136->100 relu", "dense", KERAS_BATCH, 3136, 100, (1,), 1, 1, "valid",
        bias=True, activation="relu"),
    Row("K6", "seed CNN Dense 100->10", "dense", KERAS_BATCH, 100, 10, (1,), 1, 1, "valid", bias=True),
)

SUITES = {"suite": SUITE, "cpu": CPU, "quick": QUICK, "keras": KERAS}
