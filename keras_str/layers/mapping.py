"""Which STR layer stands in for which Keras layer, and back."""

import keras

from keras_str.layers.conv import STRConv1D
from keras_str.layers.conv import STRConv2D
from keras_str.layers.dense import STRDense
from keras_str.layers.depthwise_conv import STRDepthwiseConv2D
from keras_str.layers.str_layer import STRLayer

STR_LAYER_FOR = {
    keras.layers.Dense: STRDense,
    keras.layers.Conv1D: STRConv1D,
    keras.layers.Conv2D: STRConv2D,
    keras.layers.DepthwiseConv2D: STRDepthwiseConv2D,
}


def plain_layer_class(str_layer):
    """The Keras parent class an STR layer strips back to."""
    for cls in type(str_layer).__mro__:
        if cls in STR_LAYER_FOR:
            return cls
    raise ValueError(
        f"Layer {str_layer.name!r} of class {type(str_layer).__name__} "
        "derives from none of the Keras layers keras-str can strip to "
        f"({', '.join(c.__name__ for c in STR_LAYER_FOR)})."
    )


def is_str_layer(layer):
    return isinstance(layer, STRLayer)
