"""`MultiHeadAttention` whose four projections are sparse `EinsumDense` layers."""

import keras

from keras_str.core.kernel_specs import SparseBlockSpec
from keras_str.core.kernel_specs import register_sparse_block
from keras_str.layers.base import _serialize_shared
from keras_str.layers.base import pop_method
from keras_str.layers.einsum_dense import STREinsumDense

# Keras's attribute names for the projections a MultiHeadAttention builds.
PROJECTIONS = ("_query_dense", "_key_dense", "_value_dense", "_gate_dense", "_output_dense")


@keras.saving.register_keras_serializable(package="keras_str")
class STRMultiHeadAttention(keras.layers.MultiHeadAttention):
    """`keras.layers.MultiHeadAttention` with sparse query/key/value/output kernels.

    Builds as its parent does, then puts a `keras_str.STREinsumDense` with
    the same config in place of each projection, all using this layer's
    `method`; the attention itself is unchanged. `strip` gives back a plain
    `MultiHeadAttention` whose projection kernels hold exact zeros.

    Args:
        num_heads: Number of attention heads.
        key_dim: Size of each head for query and key.
        method: `keras_str.STR(...)` (default: plain STR), `ST3(...)` or
            `GMP(...)`; see `keras_str.STRDense`.
        threshold_fn: Shortcut for `method=keras_str.STR(threshold_fn=...)`:
            `"sigmoid"` (default), `"exp"` or a callable `g(s)`.
        threshold_init: Shortcut for STR's initial raw threshold `s`.
        threshold_granularity: Shortcut for STR's `"layer"`, `"channel"` or
            `"weight"` thresholds.
        threshold_regularizer: Shortcut for STR's regularizer of `s`.
        **kwargs: Every other argument of `keras.layers.MultiHeadAttention`.

    Raises:
        ValueError: If `method` is given together with STR's shortcut
            arguments, the method cannot hold this layer's kernel (e.g. `n_m`
            on an input axis that is not a multiple of M), or LoRA or
            quantization is asked for (`lora_rank`, `quantization_config`, a
            quantized `dtype`): strip the model first, then quantize. Keras's
            own checks of the parent's arguments apply as well.

    Example:

    >>> layer = keras_str.STRMultiHeadAttention(num_heads=2, key_dim=4)
    >>> x = np.ones((1, 5, 8))
    >>> layer(x, x).shape
    (1, 5, 8)
    """

    def __init__(self, num_heads, key_dim, **kwargs):
        method = pop_method(kwargs)
        super().__init__(num_heads, key_dim, **kwargs)
        self.method = method

    def build(self, query_shape, value_shape, key_shape=None):
        super().build(query_shape, value_shape, key_shape)
        for attribute in PROJECTIONS:
            dense = getattr(self, attribute, None)
            if dense is None or isinstance(dense, STREinsumDense):
                continue
            sparse = STREinsumDense.from_config(
                {**dense.get_config(), "method": self.method}
            )
            sparse.build(dense._build_shapes_dict["input_shape"])
            self._tracker.untrack(dense)
            setattr(self, attribute, sparse)

    def sparse_sublayers(self):
        """The sparse projections, in Keras's order."""
        return [
            getattr(self, attribute)
            for attribute in PROJECTIONS
            if getattr(self, attribute, None) is not None
        ]

    def set_weights(self, weights):
        """Sets `layer.weights`, or, given a plain `MultiHeadAttention`'s weights, the projections'.

        `STRMultiHeadAttention(...).set_weights(mha.get_weights())` loads the
        kernels and biases of a built `keras.layers.MultiHeadAttention` of
        the same config; the method's state stays as `build` made it.
        """
        sublayers = self.sparse_sublayers() if self.built else []
        plain_counts = [len(layer.plain_variables()) for layer in sublayers]
        if sublayers and len(weights) == sum(plain_counts) != len(self.weights):
            start = 0
            for layer, count in zip(sublayers, plain_counts):
                layer.set_weights(weights[start : start + count])
                start += count
            return
        super().set_weights(weights)

    def get_config(self):
        return {**super().get_config(), "method": _serialize_shared(self.method)}


register_sparse_block(
    SparseBlockSpec(
        keras.layers.MultiHeadAttention,
        STRMultiHeadAttention,
        sublayer_attributes=PROJECTIONS,
    )
)
