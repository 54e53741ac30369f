"""SeparableConv1D/2D -> a sparse depthwise conv followed by a sparse 1x1 conv.

A separable convolution is exactly a depthwise convolution (strides,
padding, dilation, no bias) followed by a pointwise convolution (bias and
activation), which is also how TFLite runs it. Rewritten as that pair, both
kernels get their own sparse layer, and `strip` gives `DepthwiseConv` +
`Conv` layers that every runtime knows.
"""

import keras

from keras_str.core.kernel_specs import raw_kernel_variable
from keras_str.layers.conv import STRConv1D
from keras_str.layers.conv import STRConv2D
from keras_str.layers.depthwise_conv import STRDepthwiseConv1D
from keras_str.layers.depthwise_conv import STRDepthwiseConv2D
from keras_str.transforms.cloning import assign_copy

SEPARABLE_CONVS = {
    keras.layers.SeparableConv1D: (STRDepthwiseConv1D, STRConv1D),
    keras.layers.SeparableConv2D: (STRDepthwiseConv2D, STRConv2D),
}


def separable_as_two_layers(layer, method):
    """Returns `(Sequential([depthwise, pointwise]), copy_weights)` for `layer`."""
    depthwise_class, pointwise_class = SEPARABLE_CONVS[type(layer)]
    config = layer.get_config()
    shared = {"data_format": config["data_format"], "dtype": config["dtype"]}
    depthwise = depthwise_class(
        kernel_size=config["kernel_size"],
        strides=config["strides"],
        padding=config["padding"],
        dilation_rate=config["dilation_rate"],
        depth_multiplier=config["depth_multiplier"],
        use_bias=False,
        depthwise_initializer=config["depthwise_initializer"],
        depthwise_regularizer=config["depthwise_regularizer"],
        depthwise_constraint=config["depthwise_constraint"],
        name=f"{layer.name}_depthwise",
        method=method,
        **shared,
    )
    pointwise = pointwise_class(
        filters=config["filters"],
        kernel_size=1,
        activation=config["activation"],
        use_bias=config["use_bias"],
        kernel_initializer=config["pointwise_initializer"],
        kernel_regularizer=config["pointwise_regularizer"],
        kernel_constraint=config["pointwise_constraint"],
        bias_initializer=config["bias_initializer"],
        bias_regularizer=config["bias_regularizer"],
        bias_constraint=config["bias_constraint"],
        activity_regularizer=config["activity_regularizer"],
        name=f"{layer.name}_pointwise",
        method=method,
        **shared,
    )
    return keras.Sequential([depthwise, pointwise], name=layer.name), _copy_separable


def _copy_separable(separable, pair):
    depthwise, pointwise = pair.layers
    assign_copy(raw_kernel_variable(depthwise), separable.depthwise_kernel)
    assign_copy(raw_kernel_variable(pointwise), separable.pointwise_kernel)
    if separable.use_bias:
        assign_copy(pointwise.bias, separable.bias)
