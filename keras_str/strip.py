"""Sparse-trainable model -> plain Keras model whose kernels hold exact zeros."""

from keras import ops

from keras_str.callbacks import warn_if_stalled
from keras_str.cloning import check_clonable
from keras_str.cloning import clone_with
from keras_str.layers.mapping import is_str_layer
from keras_str.layers.mapping import plain_layer_class
from keras_str.layers.str_layer import STR_CONFIG_KEYS
from keras_str.model_utils import raw_kernel_variable


def strip(model):
    """Returns a plain Keras model with the thresholded weights baked in.

    Each STR layer becomes its Keras parent (`Dense`, `Conv1D`, `Conv2D`,
    `DepthwiseConv2D`) with the same config, minus the threshold arguments
    and regularizer, and with kernel `sign(W) * relu(|W| - g(s))`: the
    pruned weights are exact zeros. Other layers are copied with their
    weights. The result predicts what the STR model predicts, and saves and
    loads without keras-str. Warns when a scheduled method (`ST3`, `GMP`,
    targeted `STR`) never advanced, which means training ran without
    `keras_str.UpdateSparsity`.

    Args:
        model: A built Sequential or functional model with STR layers.

    Returns:
        A new Keras model; `model` itself is not changed.

    Example:

    >>> plain = keras_str.strip(sparse_model)
    >>> plain.save("model_stripped.keras")
    """
    check_clonable(model)
    warn_if_stalled(model, "strip")

    def replace(layer):
        if not is_str_layer(layer):
            return None
        config = {
            key: value
            for key, value in layer.get_config().items()
            if key not in STR_CONFIG_KEYS
        }
        return plain_layer_class(layer).from_config(config), _copy_thresholded

    return clone_with(model, replace)


def _copy_thresholded(str_layer, plain_layer):
    raw_kernel_variable(plain_layer).assign(
        ops.cast(str_layer.thresholded_kernel(), plain_layer.variable_dtype)
    )
    if str_layer.use_bias:
        plain_layer.bias.assign(str_layer.bias)
