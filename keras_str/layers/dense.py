import keras

from keras_str.core.kernel_specs import SparseLayerSpec
from keras_str.core.kernel_specs import register_sparse_layer
from keras_str.layers.base import SparseKernelLayer


@keras.saving.register_keras_serializable(package="keras_str")
class STRDense(SparseKernelLayer, keras.layers.Dense):
    """`keras.layers.Dense` whose kernel is soft-thresholded by a learned threshold.

    Computes `activation(inputs @ K + bias)` with
    `K = sign(W) * relu(|W| - g(s))`: weights whose magnitude is at or below
    the threshold `g(s)` are exact zeros. `W` and the threshold parameter `s`
    are both trained; weight decay on both (see
    `keras_str.apply_weight_decay`) raises the threshold until the loss
    pushes back, so the layer learns its own sparsity.

    Args:
        units: Positive integer, dimensionality of the output space.
        method: The sparsity method: `keras_str.STR(...)` (the default,
            plain STR with a learned threshold), `keras_str.ST3(...)` or
            `keras_str.GMP(...)`. Share one method object among the layers
            of a model: scheduled methods choose one global threshold over
            all of its layers at every training step.
        threshold_fn: Shortcut for `method=keras_str.STR(threshold_fn=...)`:
            `"sigmoid"` (default), `"exp"`, or a callable `g(s)`.
        threshold_init: Shortcut: STR's initial raw threshold `s` (default
            `-10.0`, i.e. `g(s) ~ 4.5e-5`).
        threshold_granularity: Shortcut: `"layer"` (default), `"channel"`
            (one per output unit) or `"weight"` (mask learning).
        threshold_regularizer: Shortcut: regularizer for `s`; STR needs the
            same decay on `s` as on the kernel.
        **kwargs: Every other argument of `keras.layers.Dense`, with the same
            meaning (LoRA and quantization are not supported).

    Raises:
        ValueError: If `method` is given together with STR's shortcut
            arguments, the method cannot hold this layer's kernel (e.g. `n_m`
            on an input axis that is not a multiple of M), or LoRA or
            quantization is asked for (`lora_rank`, `quantization_config`, a
            quantized `dtype`): strip the model first, then quantize. Keras's
            own checks of the parent's arguments apply as well.

    Example:

    >>> layer = keras_str.STRDense(4, threshold_init=-2.0)
    >>> y = layer(np.ones((2, 8)))
    >>> y.shape
    (2, 4)
    """


register_sparse_layer(SparseLayerSpec(keras.layers.Dense, STRDense, n_m_axis=-2))
