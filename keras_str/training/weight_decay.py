"""The STR paper's weight decay: the same coupled L2 on kernels and thresholds."""

import keras

from keras_str.core.arguments import check_number
from keras_str.core.kernel_specs import kernel_regularizer_attribute
from keras_str.core.kernel_specs import raw_kernel_variable
from keras_str.core.layer_walk import iter_layers
from keras_str.layers.base import is_kernel_layer
from keras_str.layers.base import is_sparse_layer


def apply_weight_decay(model, weight_decay):
    """Applies the paper's weight decay to every kernel and STR threshold.

    STR learns sparsity only when the same decay `lambda` acts on the weights
    `W` and on the threshold parameters `s`: the decay pulls the (negative)
    `s` toward zero, `g(s)` grows, and sparsity rises until the loss pushes
    back. The reference code uses PyTorch SGD's `weight_decay=lambda`, which
    adds `lambda * w` to each gradient (coupled L2, it goes through
    momentum). That is the loss term `(lambda / 2) * ||w||^2`, i.e.
    `keras.regularizers.L2(lambda / 2)`; this function sets exactly that on
    every Dense/Conv1D/Conv2D/DepthwiseConv2D kernel (STR or plain, so
    layers kept dense decay too, as in the paper) and on every STR
    threshold; `keras_str.LowRankSTR` layers decay the factors `U`, `sigma`
    and `V` they train in the kernel's place. Biases and normalization
    layers are left alone.

    Use the paper's lambda unchanged with plain SGD + momentum (e.g.
    ResNet50 at 90 %: `2.2518e-5`, MobileNetV1 at 89 %: `3.7518e-5`); do
    not also set the optimizer's own (decoupled) `weight_decay`. Works
    before or after the model is built, and the regularizers are part of
    the layer configs, so they are saved with the model. Call it before
    `compile()`/`fit()`.

    Args:
        model: A Keras model or layer.
        weight_decay: Non-negative float, PyTorch-style `weight_decay`.
            `0` removes the decay.

    Returns:
        The same `model`, for chaining.

    Raises:
        ValueError: If `weight_decay` is negative, not a number, NaN or inf.

    Example:

    >>> model = keras.Sequential([keras.Input((8,)), keras_str.STRDense(4)])
    >>> model = keras_str.apply_weight_decay(model, 5e-4)
    >>> model.layers[0].method.threshold_regularizer.l2
    0.00025
    """
    weight_decay = check_number("weight_decay", weight_decay, minimum=0)
    regularizer = (
        keras.regularizers.L2(weight_decay / 2.0) if weight_decay else None
    )
    for layer in iter_layers(model):
        if not is_kernel_layer(layer):
            continue
        setattr(layer, kernel_regularizer_attribute(layer), regularizer)
        sparse = is_sparse_layer(layer)
        # STR learns its threshold; ST-3's is set by the schedule.
        learns_threshold = sparse and layer.method.learns_threshold
        if learns_threshold:
            # One STR object serves all its layers: the setting is the
            # method's, the variables are each layer's.
            layer.method.threshold_regularizer = regularizer
        if layer.built:
            raw_kernel_variable(layer).regularizer = regularizer
            if sparse:
                # Low-rank STR trains factors in the raw kernel's place.
                for variable in layer.method.kernel_variables(layer):
                    variable.regularizer = regularizer
            if learns_threshold:
                layer.threshold_param.regularizer = regularizer
    return model
