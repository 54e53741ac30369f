"""How Keras layers carry channels: the taxonomy the channel graph walks.

Read by `transforms.shrink` (which removes dead channels) and
`methods.channel_macs` (which counts, in-step, the multiply-adds they
cost), so both see one graph.
"""

import keras

_LAYERS = keras.layers

# Channel i in, channel i out, and a constant channel stays that constant.
CHANNEL_PRESERVING = (
    _LAYERS.Dropout,
    _LAYERS.SpatialDropout1D,
    _LAYERS.SpatialDropout2D,
    _LAYERS.SpatialDropout3D,
    _LAYERS.GaussianNoise,
    _LAYERS.GaussianDropout,
    _LAYERS.AlphaDropout,
    _LAYERS.MaxPooling1D,
    _LAYERS.MaxPooling2D,
    _LAYERS.MaxPooling3D,
    _LAYERS.AveragePooling1D,
    _LAYERS.AveragePooling2D,
    _LAYERS.AveragePooling3D,
    _LAYERS.GlobalAveragePooling1D,
    _LAYERS.GlobalAveragePooling2D,
    _LAYERS.GlobalAveragePooling3D,
    _LAYERS.GlobalMaxPooling1D,
    _LAYERS.GlobalMaxPooling2D,
    _LAYERS.GlobalMaxPooling3D,
    _LAYERS.UpSampling1D,
    _LAYERS.UpSampling2D,
    _LAYERS.UpSampling3D,
    _LAYERS.Cropping1D,
    _LAYERS.Cropping2D,
    _LAYERS.Cropping3D,
    _LAYERS.Identity,
)
# Channel i in, channel i out; a constant channel stays constant only if 0.
PADDING = (_LAYERS.ZeroPadding1D, _LAYERS.ZeroPadding2D, _LAYERS.ZeroPadding3D)
# Elementwise functions of one input: the constant's image is computed.
ELEMENTWISE = (
    _LAYERS.Activation,
    _LAYERS.ReLU,
    _LAYERS.LeakyReLU,
    _LAYERS.ELU,
)
MERGES = (
    _LAYERS.Add,
    _LAYERS.Subtract,
    _LAYERS.Multiply,
    _LAYERS.Average,
    _LAYERS.Maximum,
    _LAYERS.Minimum,
)
