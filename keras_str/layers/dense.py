import keras

from keras_str.layers.str_layer import STRLayer


@keras.saving.register_keras_serializable(package="keras_str")
class STRDense(STRLayer, keras.layers.Dense):
    """`keras.layers.Dense` whose kernel is soft-thresholded by a learned threshold.

    Computes `activation(inputs @ K + bias)` with
    `K = sign(W) * relu(|W| - g(s))`: weights whose magnitude is at or below
    the threshold `g(s)` are exact zeros. `W` and the threshold parameter `s`
    are both trained; weight decay on both (see
    `keras_str.apply_weight_decay`) raises the threshold until the loss
    pushes back, so the layer learns its own sparsity.

    Args:
        units: Positive integer, dimensionality of the output space.
        threshold_fn: `"sigmoid"` (default, unstructured STR), `"exp"`, or a
            callable `g(s)` written with `keras.ops`.
        threshold_init: Initial value of the raw threshold parameter `s`
            (the paper's sInit). Defaults to `-10.0`, i.e. `g(s) ~ 4.5e-5`.
        threshold_granularity: `"layer"` (one threshold, the paper's
            default), `"channel"` (one per output unit) or `"weight"` (one
            per kernel entry, i.e. mask learning).
        threshold_regularizer: Regularizer for `s`; STR needs the same decay
            on `s` as on the kernel.
        **kwargs: Every other argument of `keras.layers.Dense`, with the same
            meaning (LoRA and quantization are not supported).

    Example:

    >>> layer = keras_str.STRDense(4, threshold_init=-2.0)
    >>> y = layer(np.ones((2, 8)))
    >>> y.shape
    (2, 4)
    """
