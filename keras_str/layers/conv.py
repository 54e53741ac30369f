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
        threshold_fn: Shortcut for `method=keras_str.STR(threshold_fn=...)`,
            as are `threshold_init`, `threshold_granularity` and
            `threshold_regularizer` for STR's settings of those names.
        **kwargs: Every other argument of `keras.layers.Conv1D`.

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
        threshold_fn: Shortcut for `method=keras_str.STR(threshold_fn=...)`,
            as are `threshold_init`, `threshold_granularity` and
            `threshold_regularizer` for STR's settings of those names.
        **kwargs: Every other argument of `keras.layers.Conv2D`.

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
        threshold_fn: Shortcut for `method=keras_str.STR(threshold_fn=...)`,
            as are `threshold_init`, `threshold_granularity` and
            `threshold_regularizer` for STR's settings of those names.
        **kwargs: Every other argument of `keras.layers.Conv3D`.

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
