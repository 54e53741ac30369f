import keras

from keras_str.core.kernel_specs import SparseLayerSpec
from keras_str.core.kernel_specs import register_sparse_layer
from keras_str.layers.base import SparseKernelLayer


@keras.saving.register_keras_serializable(package="keras_str")
class STRDepthwiseConv2D(SparseKernelLayer, keras.layers.DepthwiseConv2D):
    """`keras.layers.DepthwiseConv2D` with a learned soft threshold.

    The depthwise kernel, shaped `(kh, kw, in_channels, depth_multiplier)`,
    is used as `sign(W) * relu(|W| - g(s))`. With
    `threshold_granularity="channel"` there is one threshold per output
    channel, i.e. a `(in_channels, depth_multiplier)` grid. The kernel's
    regularizer is `depthwise_regularizer`, as in the parent.

    Args:
        kernel_size: Height and width of the depthwise window.
        method: `keras_str.STR(...)` (default: plain STR), `ST3(...)` or
            `GMP(...)`; see `keras_str.STRDense`.
        threshold_fn: Shortcut for `method=keras_str.STR(threshold_fn=...)`:
            `"sigmoid"` (default), `"exp"` or a callable `g(s)`.
        threshold_init: Shortcut for STR's initial raw threshold `s`.
        threshold_granularity: Shortcut for STR's `"layer"`, `"channel"` or
            `"weight"` thresholds.
        threshold_regularizer: Shortcut for STR's regularizer of `s`.
        **kwargs: Every other argument of `keras.layers.DepthwiseConv2D`.

    Raises:
        ValueError: If `method` is given together with STR's shortcut
            arguments, the method cannot hold this layer's kernel (e.g. `n_m`
            on an input axis that is not a multiple of M), or LoRA or
            quantization is asked for (`lora_rank`, `quantization_config`, a
            quantized `dtype`): strip the model first, then quantize. Keras's
            own checks of the parent's arguments apply as well.

    Example:

    >>> layer = keras_str.STRDepthwiseConv2D(3, padding="same")
    >>> layer(np.ones((2, 8, 8, 4))).shape
    (2, 8, 8, 4)
    """


@keras.saving.register_keras_serializable(package="keras_str")
class STRDepthwiseConv1D(SparseKernelLayer, keras.layers.DepthwiseConv1D):
    """`keras.layers.DepthwiseConv1D` with a learned soft threshold.

    The kernel, shaped `(k, in_channels, depth_multiplier)`, is used as
    `sign(W) * relu(|W| - g(s))`; `"channel"` granularity gives one
    threshold per output channel (`(in_channels, depth_multiplier)`).

    Args:
        kernel_size: Length of the depthwise window.
        method: `keras_str.STR(...)` (default: plain STR), `ST3(...)` or
            `GMP(...)`; see `keras_str.STRDense`.
        threshold_fn: Shortcut for `method=keras_str.STR(threshold_fn=...)`:
            `"sigmoid"` (default), `"exp"` or a callable `g(s)`.
        threshold_init: Shortcut for STR's initial raw threshold `s`.
        threshold_granularity: Shortcut for STR's `"layer"`, `"channel"` or
            `"weight"` thresholds.
        threshold_regularizer: Shortcut for STR's regularizer of `s`.
        **kwargs: Every other argument of `keras.layers.DepthwiseConv1D`.

    Raises:
        ValueError: If `method` is given together with STR's shortcut
            arguments, the method cannot hold this layer's kernel (e.g. `n_m`
            on an input axis that is not a multiple of M), or LoRA or
            quantization is asked for (`lora_rank`, `quantization_config`, a
            quantized `dtype`): strip the model first, then quantize. Keras's
            own checks of the parent's arguments apply as well.

    Example:

    >>> layer = keras_str.STRDepthwiseConv1D(3, padding="same")
    >>> layer(np.ones((2, 8, 4))).shape
    (2, 8, 4)
    """


for _keras_class, _sparse_class in (
    (keras.layers.DepthwiseConv1D, STRDepthwiseConv1D),
    (keras.layers.DepthwiseConv2D, STRDepthwiseConv2D),
):
    register_sparse_layer(
        SparseLayerSpec(
            _keras_class,
            _sparse_class,
            regularizer_attribute="depthwise_regularizer",
            initializer_attribute="depthwise_initializer",
            # Kernel (..., in_channels, multiplier): both index outputs.
            output_channel_ndim=2,
        )
    )
