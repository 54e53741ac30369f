"""Walking a Keras model's layers and finding the kernels that sparsity is about."""

import keras

from keras_str.layers.str_layer import STRLayer

# Plain Keras layers whose kernel keras-str counts, reports and decays.
KERNEL_LAYER_TYPES = (
    keras.layers.Dense,
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.DepthwiseConv2D,
)


def iter_layers(model):
    """Yields every layer of `model`, descending into nested models."""
    for layer in getattr(model, "layers", [model]):
        if isinstance(layer, keras.Model):
            yield from iter_layers(layer)
        else:
            yield layer


def is_kernel_layer(layer):
    return isinstance(layer, (STRLayer,) + KERNEL_LAYER_TYPES)


def raw_kernel_variable(layer):
    """The kernel variable a Dense/Conv/DepthwiseConv (or STR) layer trains."""
    kernel = getattr(layer, "_kernel", None)
    if kernel is None:
        kernel = layer.kernel
    return kernel


def kernel_regularizer_attribute(layer):
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return "depthwise_regularizer"
    return "kernel_regularizer"
