"""What every STR layer adds to its Keras parent: a learned soft threshold."""

import math

import keras
from keras import ops

from keras_str.methods import get_method
from keras_str.ops import get_threshold_fn
from keras_str.ops import serialize_threshold_fn

THRESHOLD_GRANULARITIES = ("layer", "channel", "weight")

# g(-10) ~ 4.5e-5 for both sigmoid and exp: the layer starts practically
# dense and weight decay on the threshold parameter has room to move it.
DEFAULT_THRESHOLD_INIT = -10.0

# The arguments an STR layer adds to its parent; `strip` drops exactly these.
STR_CONFIG_KEYS = (
    "threshold_fn",
    "threshold_init",
    "threshold_granularity",
    "threshold_regularizer",
    "method",
)


class STRLayer:
    """Mixin that turns a Keras kernel layer into a sparse-trainable layer.

    The layer keeps its raw kernel `W` in `self._kernel` and asks its
    sparsity method (`keras_str.STR` by default, or `ST3`, `GMP`) for the
    kernel it computes with. With STR, that is `sign(W) * relu(|W| - g(s))`
    with a trainable threshold parameter `s` (variable named `"threshold"`,
    attribute `threshold_param`). The `kernel` property, which the parent's
    `call()` uses, is that effective kernel, computed in the variable dtype
    (float32 under `mixed_float16`) and then cast to the compute dtype.

    Subclasses list the mixin first and set `output_channel_ndim`, the number
    of trailing kernel axes that index output channels.
    """

    output_channel_ndim = 1

    def __init__(
        self,
        *args,
        threshold_fn="sigmoid",
        threshold_init=DEFAULT_THRESHOLD_INIT,
        threshold_granularity="layer",
        threshold_regularizer=None,
        method=None,
        **kwargs,
    ):
        if kwargs.get("lora_rank"):
            raise ValueError(
                "LoRA is not supported on STR layers: the low-rank update "
                "would bypass the threshold. Received: "
                f"lora_rank={kwargs['lora_rank']}"
            )
        if kwargs.get("quantization_config") is not None:
            raise ValueError(
                "STR layers cannot be quantized while training; strip the "
                "model first (`keras_str.strip`). Received: "
                f"quantization_config={kwargs['quantization_config']}"
            )
        super().__init__(*args, **kwargs)
        self._threshold_fn = get_threshold_fn(threshold_fn)
        self.threshold_fn = threshold_fn
        if (
            isinstance(threshold_init, bool)
            or not isinstance(threshold_init, (int, float))
            or not math.isfinite(threshold_init)
        ):
            raise ValueError(
                "Invalid value for argument `threshold_init`. Expected a "
                f"finite number. Received: threshold_init={threshold_init}"
            )
        self.threshold_init = float(threshold_init)
        if threshold_granularity not in THRESHOLD_GRANULARITIES:
            raise ValueError(
                "Invalid value for argument `threshold_granularity`. Expected "
                f"one of {THRESHOLD_GRANULARITIES}. "
                f"Received: threshold_granularity={threshold_granularity}"
            )
        self.threshold_granularity = threshold_granularity
        self.threshold_regularizer = keras.regularizers.get(
            threshold_regularizer
        )
        self.method = get_method(method)

    def add_weight(self, *args, **kwargs):
        if kwargs.get("name") == "kernel":
            # The threshold comparison must see the full-precision kernel,
            # even when the layer computes in float16.
            kwargs["autocast"] = False
        return super().add_weight(*args, **kwargs)

    def build(self, input_shape):
        super().build(input_shape)
        self.method.build(self)

    def _threshold_shape(self):
        kernel_shape = tuple(self._kernel.shape)
        if self.threshold_granularity == "layer":
            return ()
        if self.threshold_granularity == "channel":
            return kernel_shape[-self.output_channel_ndim :]
        return kernel_shape

    @property
    def threshold(self):
        """The current threshold (`g(s)` for STR), or `None` (GMP)."""
        if not self.built:
            raise AttributeError(
                "You must build the layer before accessing `threshold`."
            )
        return self.method.threshold(self)

    def thresholded_kernel(self):
        """Returns the effective kernel in the variable dtype.

        For STR, `sign(W) * relu(|W| - g(s))`. This is what the layer
        computes with (before the cast to the compute dtype) and what
        `keras_str.strip` writes into the plain layer.
        """
        if not self.built:
            raise AttributeError(
                "You must build the layer before accessing its kernel."
            )
        return self.method.effective_kernel(
            self, ops.convert_to_tensor(self._kernel)
        )

    @property
    def kernel(self):
        """The effective kernel, cast to the layer's compute dtype."""
        return ops.cast(self.thresholded_kernel(), self.compute_dtype)

    @kernel.setter
    def kernel(self, value):
        # Parents whose build() assigns `self.kernel` (DepthwiseConv) store
        # the raw kernel where the effective-kernel property expects it.
        self._kernel = value

    def enable_lora(self, *args, **kwargs):
        raise NotImplementedError(
            f"{self.__class__.__name__} does not support LoRA: the low-rank "
            "update would bypass the threshold."
        )

    def quantize(self, *args, **kwargs):
        raise NotImplementedError(
            f"{self.__class__.__name__} cannot be quantized; call "
            "`keras_str.strip(model)` first and quantize the plain model."
        )

    # Keras parents save `self.kernel` (here the effective kernel) and skip
    # extra variables; saving every variable in order keeps W and s exact.
    def save_own_variables(self, store):
        keras.layers.Layer.save_own_variables(self, store)

    def load_own_variables(self, store):
        keras.layers.Layer.load_own_variables(self, store)

    def get_config(self):
        base_config = super().get_config()
        config = {
            "threshold_fn": serialize_threshold_fn(self.threshold_fn),
            "threshold_init": self.threshold_init,
            "threshold_granularity": self.threshold_granularity,
            "threshold_regularizer": keras.regularizers.serialize(
                self.threshold_regularizer
            ),
            "method": keras.saving.serialize_keras_object(self.method),
        }
        return {**base_config, **config}
