"""The spread of the weights a Keras initializer draws (ST-3's sigma, STR's thresholds)."""

import math

import keras


def keras_fans(kernel_shape):
    """(fan_in, fan_out) as Keras's initializers compute them for this shape."""
    if len(kernel_shape) == 1:
        return kernel_shape[0], kernel_shape[0]
    if len(kernel_shape) == 2:
        return kernel_shape[0], kernel_shape[1]
    receptive_field = math.prod(kernel_shape[:-2])
    return receptive_field * kernel_shape[-2], receptive_field * kernel_shape[-1]


def initializer_std(initializer, fans):
    """The standard deviation of the weights `initializer` draws, or `None`.

    `VarianceScaling` (Glorot, He, LeCun) draws with variance `scale / n`,
    `n` the fan its `mode` names, whatever its distribution; fixed-scale
    initializers say their own. `None` for others (orthogonal, constants,
    custom).
    """
    if isinstance(initializer, keras.initializers.VarianceScaling):
        fan_in, fan_out = fans
        n = {"fan_in": fan_in, "fan_out": fan_out}.get(
            initializer.mode, (fan_in + fan_out) / 2.0
        )
        return math.sqrt(initializer.scale / max(n, 1.0))
    if isinstance(initializer, keras.initializers.RandomUniform):
        return (initializer.maxval - initializer.minval) / math.sqrt(12.0)
    if isinstance(
        initializer,
        (keras.initializers.RandomNormal, keras.initializers.TruncatedNormal),
    ):
        return initializer.stddev
    if isinstance(initializer, keras.initializers.Orthogonal):
        # Orthonormal rows (or columns) of the larger dimension's length.
        fan_in, fan_out = fans
        return initializer.gain / math.sqrt(max(fan_in, fan_out, 1))
    return None
