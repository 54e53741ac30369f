"""Transposed convolutions with a sparse kernel, shaped `(*window, filters, in_channels)`."""

import keras

from keras_str.core.kernel_specs import SparseLayerSpec
from keras_str.core.kernel_specs import raw_kernel_variable
from keras_str.core.kernel_specs import register_sparse_layer
from keras_str.layers.base import SparseKernelLayer


def transpose_channel_axes(layer):
    """Output channels of a transposed-conv kernel sit on its second-last axis."""
    return (len(raw_kernel_variable(layer).shape) - 2,)


@keras.saving.register_keras_serializable(package="keras_str")
class STRConv1DTranspose(SparseKernelLayer, keras.layers.Conv1DTranspose):
    """`keras.layers.Conv1DTranspose` with a soft-thresholded kernel.

    The kernel is used as `sign(W) * relu(|W| - g(s))`. With
    `threshold_granularity="channel"` there is one threshold per output
    filter (the kernel's second-last axis).

    Args:
        filters: Number of output filters.
        kernel_size: Length of the transposed convolution window.
        method: `keras_str.STR(...)` (default: plain STR), `ST3(...)` or
            `GMP(...)`; see `keras_str.STRDense`.
        threshold_fn: Shortcut for `method=keras_str.STR(threshold_fn=...)`:
            `"sigmoid"` (default), `"exp"` or a callable `g(s)`.
        threshold_init: Shortcut for STR's initial raw threshold `s`.
        threshold_granularity: Shortcut for STR's `"layer"`, `"channel"` or
            `"weight"` thresholds.
        threshold_regularizer: Shortcut for STR's regularizer of `s`.
        **kwargs: Every other argument of `keras.layers.Conv1DTranspose`.

    Raises:
        ValueError: If `method` is given together with STR's shortcut
            arguments, the method cannot hold this layer's kernel (e.g. `n_m`
            on an input axis that is not a multiple of M), or LoRA or
            quantization is asked for (`lora_rank`, `quantization_config`, a
            quantized `dtype`): strip the model first, then quantize. Keras's
            own checks of the parent's arguments apply as well.

    Example:

    >>> layer = keras_str.STRConv1DTranspose(4, 3, strides=2, padding="same")
    >>> layer(np.ones((2, 8, 3))).shape
    (2, 16, 4)
    """


@keras.saving.register_keras_serializable(package="keras_str")
class STRConv2DTranspose(SparseKernelLayer, keras.layers.Conv2DTranspose):
    """`keras.layers.Conv2DTranspose` with a soft-thresholded kernel.

    The kernel is used as `sign(W) * relu(|W| - g(s))`. With
    `threshold_granularity="channel"` there is one threshold per output
    filter (the kernel's second-last axis).

    Args:
        filters: Number of output filters.
        kernel_size: Height and width of the transposed convolution window.
        method: `keras_str.STR(...)` (default: plain STR), `ST3(...)` or
            `GMP(...)`; see `keras_str.STRDense`.
        threshold_fn: Shortcut for `method=keras_str.STR(threshold_fn=...)`:
            `"sigmoid"` (default), `"exp"` or a callable `g(s)`.
        threshold_init: Shortcut for STR's initial raw threshold `s`.
        threshold_granularity: Shortcut for STR's `"layer"`, `"channel"` or
            `"weight"` thresholds.
        threshold_regularizer: Shortcut for STR's regularizer of `s`.
        **kwargs: Every other argument of `keras.layers.Conv2DTranspose`.

    Raises:
        ValueError: If `method` is given together with STR's shortcut
            arguments, the method cannot hold this layer's kernel (e.g. `n_m`
            on an input axis that is not a multiple of M), or LoRA or
            quantization is asked for (`lora_rank`, `quantization_config`, a
            quantized `dtype`): strip the model first, then quantize. Keras's
            own checks of the parent's arguments apply as well.

    Example:

    >>> layer = keras_str.STRConv2DTranspose(4, 3, strides=2, padding="same")
    >>> layer(np.ones((2, 8, 8, 3))).shape
    (2, 16, 16, 4)
    """


@keras.saving.register_keras_serializable(package="keras_str")
class STRConv3DTranspose(SparseKernelLayer, keras.layers.Conv3DTranspose):
    """`keras.layers.Conv3DTranspose` with a soft-thresholded kernel.

    The kernel is used as `sign(W) * relu(|W| - g(s))`. With
    `threshold_granularity="channel"` there is one threshold per output
    filter (the kernel's second-last axis).

    Args:
        filters: Number of output filters.
        kernel_size: Depth, height and width of the window.
        method: `keras_str.STR(...)` (default: plain STR), `ST3(...)` or
            `GMP(...)`; see `keras_str.STRDense`.
        threshold_fn: Shortcut for `method=keras_str.STR(threshold_fn=...)`:
            `"sigmoid"` (default), `"exp"` or a callable `g(s)`.
        threshold_init: Shortcut for STR's initial raw threshold `s`.
        threshold_granularity: Shortcut for STR's `"layer"`, `"channel"` or
            `"weight"` thresholds.
        threshold_regularizer: Shortcut for STR's regularizer of `s`.
        **kwargs: Every other argument of `keras.layers.Conv3DTranspose`.

    Raises:
        ValueError: If `method` is given together with STR's shortcut
            arguments, the method cannot hold this layer's kernel (e.g. `n_m`
            on an input axis that is not a multiple of M), or LoRA or
            quantization is asked for (`lora_rank`, `quantization_config`, a
            quantized `dtype`): strip the model first, then quantize. Keras's
            own checks of the parent's arguments apply as well.

    Example:

    >>> layer = keras_str.STRConv3DTranspose(4, 2, strides=2)
    >>> layer(np.ones((2, 4, 4, 4, 3))).shape
    (2, 8, 8, 8, 4)
    """


for _keras_class, _sparse_class in (
    (keras.layers.Conv1DTranspose, STRConv1DTranspose),
    (keras.layers.Conv2DTranspose, STRConv2DTranspose),
    (keras.layers.Conv3DTranspose, STRConv3DTranspose),
):
    register_sparse_layer(
        SparseLayerSpec(_keras_class, _sparse_class, channel_axes=transpose_channel_axes)
    )
