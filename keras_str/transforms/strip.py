"""Sparse-trainable model -> plain Keras model whose kernels hold exact zeros."""

from keras import ops

from keras_str.layers.base import SPARSE_CONFIG_KEYS
from keras_str.layers.registry import is_sparse_layer
from keras_str.layers.registry import raw_kernel_variable
from keras_str.transforms.cloning import check_clonable
from keras_str.transforms.cloning import clone_with


def strip(model):
    """Returns a plain Keras model with the thresholded weights baked in.

    Each STR layer becomes its Keras parent (`Dense`, `Conv1D`, `Conv2D`,
    `DepthwiseConv2D`) with the same config, minus the threshold arguments
    and regularizer, and with kernel `sign(W) * relu(|W| - g(s))`: the
    pruned weights are exact zeros. Other layers are copied with their
    weights. The result predicts what the STR model predicts, and saves and
    loads without keras-str.

    Args:
        model: A built Sequential or functional model with STR layers.

    Returns:
        A new Keras model; `model` itself is not changed.

    Example:

    >>> plain = keras_str.strip(sparse_model)
    >>> plain.save("model_stripped.keras")
    """
    check_clonable(model)

    def replace(layer):
        if not is_sparse_layer(layer):
            return None
        config = {
            key: value
            for key, value in layer.get_config().items()
            if key not in SPARSE_CONFIG_KEYS
        }
        return layer.kernel_spec.keras_class.from_config(config), _copy_thresholded

    return clone_with(model, replace)


def _copy_thresholded(str_layer, plain_layer):
    raw_kernel_variable(plain_layer).assign(
        ops.cast(str_layer.thresholded_kernel(), plain_layer.variable_dtype)
    )
    if str_layer.use_bias:
        plain_layer.bias.assign(str_layer.bias)
