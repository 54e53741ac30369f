import keras

from keras_str.layers.str_layer import STRLayer


@keras.saving.register_keras_serializable(package="keras_str")
class STRConv1D(STRLayer, keras.layers.Conv1D):
    """`keras.layers.Conv1D` whose kernel is soft-thresholded by a learned threshold.

    The kernel used by the convolution is `sign(W) * relu(|W| - g(s))`; see
    `keras_str.STRDense` for the threshold arguments.

    Args:
        filters: Number of output filters.
        kernel_size: Length of the convolution window.
        threshold_fn: `"sigmoid"` (default), `"exp"`, or a callable `g(s)`.
        threshold_init: Initial value of the raw threshold parameter `s`.
        threshold_granularity: `"layer"`, `"channel"` (one per filter) or
            `"weight"`.
        threshold_regularizer: Regularizer for `s`.
        **kwargs: Every other argument of `keras.layers.Conv1D`.

    Example:

    >>> layer = keras_str.STRConv1D(4, 3, threshold_granularity="channel")
    >>> layer(np.ones((2, 10, 3))).shape
    (2, 8, 4)
    """


@keras.saving.register_keras_serializable(package="keras_str")
class STRConv2D(STRLayer, keras.layers.Conv2D):
    """`keras.layers.Conv2D` whose kernel is soft-thresholded by a learned threshold.

    The kernel used by the convolution is `sign(W) * relu(|W| - g(s))`; see
    `keras_str.STRDense` for the threshold arguments.

    Args:
        filters: Number of output filters.
        kernel_size: Height and width of the convolution window.
        threshold_fn: `"sigmoid"` (default), `"exp"`, or a callable `g(s)`.
        threshold_init: Initial value of the raw threshold parameter `s`.
        threshold_granularity: `"layer"`, `"channel"` (one per filter) or
            `"weight"`.
        threshold_regularizer: Regularizer for `s`.
        **kwargs: Every other argument of `keras.layers.Conv2D`.

    Example:

    >>> layer = keras_str.STRConv2D(8, 3, padding="same")
    >>> layer(np.ones((2, 16, 16, 3))).shape
    (2, 16, 16, 8)
    """
