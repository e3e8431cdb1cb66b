"""Keras 3-compatible layers: ``from gpuconv import layers`` is a drop-in for ``keras.layers``
for the convolution, pooling and reshaping families (and LocallyConnected1D/2D from Keras 2)."""
from .base_layer import InputSpec, Layer
from .core import *  # noqa: F401,F403  Input, InputLayer, Dense, Flatten, Dropout, Activation
from .conv import *  # noqa: F401,F403  Conv1D/2D/3D (+ Convolution* aliases)
from .conv_transpose import *  # noqa: F401,F403  Conv1D/2D/3DTranspose (+ aliases)
from .depthwise_conv import *  # noqa: F401,F403  DepthwiseConv1D/2D/3D
from .separable_conv import *  # noqa: F401,F403  SeparableConv1D/2D (+ aliases)
from .locally_connected import *  # noqa: F401,F403  LocallyConnected1D/2D
from .pooling import *  # noqa: F401,F403  Max/Average/GlobalMax/GlobalAverage pooling 1D-3D (+ aliases)
from .reshaping import *  # noqa: F401,F403  Cropping, UpSampling, ZeroPadding 1D-3D
