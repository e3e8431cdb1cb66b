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
from .regularization import *  # noqa: F401,F403  SpatialDropout1D/2D/3D, GaussianNoise, GaussianDropout, ActivityRegularization
from .preprocessing import *  # noqa: F401,F403  Rescaling, Resizing, CenterCrop
from .normalization import *  # noqa: F401,F403  BatchNormalization, LayerNormalization, GroupNormalization, Normalization
from .activation_layers import *  # noqa: F401,F403  ReLU, LeakyReLU, PReLU, ELU, Softmax
from .shape_layers import *  # noqa: F401,F403  Identity, Reshape, Permute, RepeatVector
from .merging import *  # noqa: F401,F403  Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate, Dot (+ add, ...)
