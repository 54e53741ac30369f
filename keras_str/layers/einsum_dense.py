"""`EinsumDense` with a sparse kernel: attention projections, transformer blocks."""

import math

import keras

from keras_str.core.kernel_specs import SparseLayerSpec
from keras_str.core.kernel_specs import raw_kernel_variable
from keras_str.core.kernel_specs import register_sparse_layer
from keras_str.layers.base import SparseKernelLayer


def _equation_parts(layer):
    inputs, output = layer.equation.split("->")
    _, kernel = inputs.split(",")
    return inputs.split(",")[0], kernel.strip(), output.strip()


def einsum_channel_axes(layer):
    """Kernel axes whose letter appears in the output: the output channels."""
    _, kernel, output = _equation_parts(layer)
    return tuple(i for i, letter in enumerate(kernel) if letter in output)


def einsum_input_axis(layer):
    """The last kernel axis the einsum sums the input over (N:M groups run along it)."""
    inputs, kernel, output = _equation_parts(layer)
    summed = [i for i, letter in enumerate(kernel) if letter in inputs and letter not in output]
    return summed[-1] if summed else None


def einsum_fans(layer):
    """(fan_in, fan_out) as Keras's `EinsumDense` initialises its kernel.

    Keras passes the kernel's contracted axes as `input_axes` and its output
    axes as `output_axes` to a `VarianceScaling` initializer.
    """
    shape = tuple(raw_kernel_variable(layer).shape)
    outputs = set(einsum_channel_axes(layer))
    fan_in = math.prod(d for i, d in enumerate(shape) if i not in outputs)
    fan_out = math.prod(d for i, d in enumerate(shape) if i in outputs)
    return fan_in, fan_out


@keras.saving.register_keras_serializable(package="keras_str")
class STREinsumDense(SparseKernelLayer, keras.layers.EinsumDense):
    """`keras.layers.EinsumDense` whose kernel is soft-thresholded.

    The kernel used by the einsum is `sign(W) * relu(|W| - g(s))`. The
    projections inside `MultiHeadAttention` and most keras-hub blocks are
    `EinsumDense` layers. With `threshold_granularity="channel"` there is one
    threshold per output unit: per kernel entry whose letters appear in the
    output (e.g. per head and head dimension for `"abc,cde->abde"`).

    Args:
        equation: The einsum equation, e.g. `"ab,bc->ac"`.
        output_shape: The output shape, without the batch axis.
        method: `keras_str.STR(...)` (default: plain STR), `ST3(...)` or
            `GMP(...)`; see `keras_str.STRDense`.
        threshold_fn: Shortcut for `method=keras_str.STR(threshold_fn=...)`:
            `"sigmoid"` (default), `"exp"` or a callable `g(s)`.
        threshold_init: Shortcut for STR's initial raw threshold `s`.
        threshold_granularity: Shortcut for STR's `"layer"`, `"channel"` or
            `"weight"` thresholds.
        threshold_regularizer: Shortcut for STR's regularizer of `s`.
        **kwargs: Every other argument of `keras.layers.EinsumDense`
            (`bias_axes`, `activation`, ...).

    Raises:
        ValueError: If `method` is given together with STR's shortcut
            arguments, the method cannot hold this layer's kernel (e.g. `n_m`
            on an input axis that is not a multiple of M), or LoRA or
            quantization is asked for (`lora_rank`, `quantization_config`, a
            quantized `dtype`): strip the model first, then quantize. Keras's
            own checks of the parent's arguments apply as well.

    Example:

    >>> layer = keras_str.STREinsumDense("abc,cde->abde", (None, 2, 8))
    >>> layer(np.ones((2, 5, 16))).shape
    (2, 5, 2, 8)
    """


register_sparse_layer(
    SparseLayerSpec(
        keras.layers.EinsumDense,
        STREinsumDense,
        channel_axes=einsum_channel_axes,
        fans=einsum_fans,
        n_m_axis=einsum_input_axis,
    )
)
