"""`BatchNormalization` whose channel scales are thresholded: channel sparsity for BN networks.

A BatchNormalization after a convolution divides out each filter's scale, so
a threshold on filter norms gets no gradient there (the loss does not depend
on a filter's size until it is exactly zero). The scale the loss does see is
the channel's `gamma`: thresholding it, and shrinking the channel's shift
`beta` by the same factor, makes a pruned channel output exactly zero, and
`keras_str.strip` removes it with its filter (network slimming, with STR's
soft threshold in place of an L1 penalty and a hand-set cut).
"""

import keras
from keras import ops

from keras_str.core.kernel_specs import SparseLayerSpec
from keras_str.core.kernel_specs import register_sparse_layer
from keras_str.layers.base import SparseKernelLayer


@keras.saving.register_keras_serializable(package="keras_str")
class STRBatchNormalization(SparseKernelLayer, keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` whose channel scales are soft-thresholded.

    Each channel is computed as `f * (gamma * x_hat + beta)`, with
    `f = relu(1 - g(s) / |gamma|)`: the method's soft threshold on `gamma`
    (`keras_str.StructuredSTR("channel")`, as `keras_str.sparsify` sets it
    up for a layer feeding BatchNormalization), applied to the channel's
    shift too, so that a channel at or below the threshold is exactly 0
    and the filter feeding it can go. The moving statistics are those of
    the parent. `gamma_regularizer` is the "kernel" regularizer weight
    decay sets. With a target (`target_sparsity`), the layer's own `s` is
    not trained: one global threshold, set by the target, judges every
    channel (a following BatchNormalization makes the loss blind to a
    common scale of a layer's channels, so a per-layer `s` learns noise).
    Channels are compared by `|gamma|` as is (all start at 1): use the
    method's `scope="global"`, or `"sigma"` when thresholded filters of
    layers without BatchNormalization share the method.

    Args:
        method: The sparsity method (`keras_str.StructuredSTR("channel",
            ...)` or `keras_str.STR(...)`: on one value per channel both
            threshold channels).
        threshold_fn: Shortcut for `method=keras_str.STR(threshold_fn=...)`:
            `"sigmoid"` (default), `"exp"` or a callable `g(s)`.
        threshold_init: Shortcut for STR's initial raw threshold `s`.
        threshold_granularity: Shortcut for STR's `"layer"`, `"channel"` or
            `"weight"` thresholds.
        threshold_regularizer: Shortcut for STR's regularizer of `s`.
        **kwargs: Every other argument of `keras.layers.BatchNormalization`;
            `scale` must be True and `axis` the last one.

    Raises:
        ValueError: If `method` is given together with STR's shortcut
            arguments, the method cannot hold this layer's kernel (e.g. `n_m`
            on an input axis that is not a multiple of M), or LoRA or
            quantization is asked for (`lora_rank`, `quantization_config`, a
            quantized `dtype`): strip the model first, then quantize. Keras's
            own checks of the parent's arguments apply as well.

    Example:

    >>> layer = keras_str.STRBatchNormalization(
    ...     method=keras_str.StructuredSTR("channel"))
    >>> layer(np.ones((2, 8, 8, 4))).shape
    (2, 8, 8, 4)
    """

    def __init__(self, *args, **kwargs):
        if not kwargs.get("scale", True):
            raise ValueError(
                "STRBatchNormalization thresholds each channel's scale "
                "`gamma`, which a layer with scale=False does not have. "
                f"Received: scale={kwargs['scale']!r}"
            )
        super().__init__(*args, **kwargs)

    def build(self, input_shape):
        rank = len(input_shape)
        if self.axis % rank != rank - 1:
            raise ValueError(
                "STRBatchNormalization thresholds the channels of the last "
                f"axis. Received: axis={self.axis} for inputs of shape "
                f"{tuple(input_shape)}"
            )
        super().build(input_shape)
        threshold = (self.sparsity_state or {}).get("threshold")
        if self.method.scheduled and threshold is not None:
            # The next BatchNormalization divides out a common scale of this
            # layer's channels, so the loss gives a per-layer `s` no signal:
            # learned, it ran away (to an overflowing threshold, NaN) on
            # MobileNet. With a target, the global offset alone sets it.
            threshold.trainable = False

    def call(self, inputs, training=None, mask=None):
        if training:
            self.method.advance(self)
        return keras.layers.BatchNormalization.call(
            self, inputs, training=training, mask=mask
        )

    def producer(self):
        """The layer whose output this one normalizes (functional models), or `None`."""
        try:
            return self.input._keras_history.operation
        except (AttributeError, ValueError):
            return None

    def channel_factors(self):
        """Each channel's factor `f`: effective gamma / raw gamma (0 where pruned)."""
        raw = ops.convert_to_tensor(self._gamma)
        nonzero = raw != 0
        safe = ops.where(nonzero, raw, ops.ones_like(raw))
        return ops.where(nonzero, self.thresholded_kernel() / safe, ops.zeros_like(raw))

    def thresholded_beta(self):
        """The shift the layer computes with, in the variable dtype (None without `center`)."""
        if self._beta is None:
            return None
        return ops.convert_to_tensor(self._beta) * self.channel_factors()

    @property
    def gamma(self):
        """The effective scale, `sign(gamma) * relu(|gamma| - g(s))` for STR."""
        if getattr(self, "_gamma", None) is None:
            return None
        return self.thresholded_kernel()

    @gamma.setter
    def gamma(self, value):
        self._gamma = value

    @property
    def beta(self):
        """The effective shift: `beta` by each channel's factor."""
        if getattr(self, "_beta", None) is None:
            return None
        return self.thresholded_beta()

    @beta.setter
    def beta(self, value):
        self._beta = value


register_sparse_layer(
    SparseLayerSpec(
        keras.layers.BatchNormalization,
        STRBatchNormalization,
        kernel_attribute="gamma",
        regularizer_attribute="gamma_regularizer",
        initializer_attribute="gamma_initializer",
        init_scale=lambda layer: 1.0,
        # Only channel STR asks for it: its scales carry the channel thresholds.
        on_request=True,
    )
)
