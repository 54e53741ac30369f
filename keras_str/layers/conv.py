import keras

from keras_str.core.kernel_specs import SparseLayerSpec
from keras_str.core.kernel_specs import register_sparse_layer
from keras_str.layers.base import SparseKernelLayer


@keras.saving.register_keras_serializable(package="keras_str")
class STRConv1D(SparseKernelLayer, keras.layers.Conv1D):
    """`keras.layers.Conv1D` whose kernel is soft-thresholded by a learned threshold.

    The kernel used by the convolution is `sign(W) * relu(|W| - g(s))`; see
    `keras_str.STRDense` for the threshold arguments.

    Args:
        filters: Number of output filters.
        kernel_size: Length of the convolution window.
        method: `keras_str.STR(...)` (default: plain STR), `ST3(...)` or
            `GMP(...)`; see `keras_str.STRDense`.
        threshold_fn: Shortcut for `method=keras_str.STR(threshold_fn=...)`:
            `"sigmoid"` (default), `"exp"` or a callable `g(s)`.
        threshold_init: Shortcut for STR's initial raw threshold `s`.
        threshold_granularity: Shortcut for STR's `"layer"`, `"channel"` or
            `"weight"` thresholds.
        threshold_regularizer: Shortcut for STR's regularizer of `s`.
        **kwargs: Every other argument of `keras.layers.Conv1D`.

    Raises:
        ValueError: If `method` is given together with STR's shortcut
            arguments, the method cannot hold this layer's kernel (e.g. `n_m`
            on an input axis that is not a multiple of M), or LoRA or
            quantization is asked for (`lora_rank`, `quantization_config`, a
            quantized `dtype`): strip the model first, then quantize. Keras's
            own checks of the parent's arguments apply as well.

    Example:

    >>> layer = keras_str.STRConv1D(4, 3, threshold_granularity="channel")
    >>> layer(np.ones((2, 10, 3))).shape
    (2, 8, 4)
    """


@keras.saving.register_keras_serializable(package="keras_str")
class STRConv2D(SparseKernelLayer, keras.layers.Conv2D):
    """`keras.layers.Conv2D` whose kernel is soft-thresholded by a learned threshold.

    The kernel used by the convolution is `sign(W) * relu(|W| - g(s))`; see
    `keras_str.STRDense` for the threshold arguments.

    Args:
        filters: Number of output filters.
        kernel_size: Height and width of the convolution window.
        method: `keras_str.STR(...)` (default: plain STR), `ST3(...)` or
            `GMP(...)`; see `keras_str.STRDense`.
        threshold_fn: Shortcut for `method=keras_str.STR(threshold_fn=...)`:
            `"sigmoid"` (default), `"exp"` or a callable `g(s)`.
        threshold_init: Shortcut for STR's initial raw threshold `s`.
        threshold_granularity: Shortcut for STR's `"layer"`, `"channel"` or
            `"weight"` thresholds.
        threshold_regularizer: Shortcut for STR's regularizer of `s`.
        **kwargs: Every other argument of `keras.layers.Conv2D`.

    Raises:
        ValueError: If `method` is given together with STR's shortcut
            arguments, the method cannot hold this layer's kernel (e.g. `n_m`
            on an input axis that is not a multiple of M), or LoRA or
            quantization is asked for (`lora_rank`, `quantization_config`, a
            quantized `dtype`): strip the model first, then quantize. Keras's
            own checks of the parent's arguments apply as well.

    Example:

    >>> layer = keras_str.STRConv2D(8, 3, padding="same")
    >>> layer(np.ones((2, 16, 16, 3))).shape
    (2, 16, 16, 8)
    """


@keras.saving.register_keras_serializable(package="keras_str")
class STRConv3D(SparseKernelLayer, keras.layers.Conv3D):
    """`keras.layers.Conv3D` whose kernel is soft-thresholded by a learned threshold.

    The kernel used by the convolution is `sign(W) * relu(|W| - g(s))`; see
    `keras_str.STRDense` for the threshold arguments.

    Args:
        filters: Number of output filters.
        kernel_size: Depth, height and width of the convolution window.
        method: `keras_str.STR(...)` (default: plain STR), `ST3(...)` or
            `GMP(...)`; see `keras_str.STRDense`.
        threshold_fn: Shortcut for `method=keras_str.STR(threshold_fn=...)`:
            `"sigmoid"` (default), `"exp"` or a callable `g(s)`.
        threshold_init: Shortcut for STR's initial raw threshold `s`.
        threshold_granularity: Shortcut for STR's `"layer"`, `"channel"` or
            `"weight"` thresholds.
        threshold_regularizer: Shortcut for STR's regularizer of `s`.
        **kwargs: Every other argument of `keras.layers.Conv3D`.

    Raises:
        ValueError: If `method` is given together with STR's shortcut
            arguments, the method cannot hold this layer's kernel (e.g. `n_m`
            on an input axis that is not a multiple of M), or LoRA or
            quantization is asked for (`lora_rank`, `quantization_config`, a
            quantized `dtype`): strip the model first, then quantize. Keras's
            own checks of the parent's arguments apply as well.

    Example:

    >>> layer = keras_str.STRConv3D(4, 3, padding="same")
    >>> layer(np.ones((2, 6, 6, 6, 3))).shape
    (2, 6, 6, 6, 4)
    """


for _keras_class, _sparse_class in (
    (keras.layers.Conv1D, STRConv1D),
    (keras.layers.Conv2D, STRConv2D),
    (keras.layers.Conv3D, STRConv3D),
):
    # Kernel (*window, in_channels, filters): groups run along in_channels.
    register_sparse_layer(SparseLayerSpec(_keras_class, _sparse_class, n_m_axis=-2))
