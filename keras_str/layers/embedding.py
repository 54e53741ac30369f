"""`Embedding` with sparse embeddings (token tables are most of many text models).

ST-3's sigma scope normalises a table by its initializer's own standard
deviation (Keras: uniform in +-0.05), not by fans.
"""

import keras

from keras_str.core.kernel_specs import SparseLayerSpec
from keras_str.core.kernel_specs import register_sparse_layer
from keras_str.layers.base import SparseKernelLayer
from keras_str.layers.recurrent import STRKernelWeight


@keras.saving.register_keras_serializable(package="keras_str")
class STREmbedding(SparseKernelLayer, keras.layers.Embedding):
    """`keras.layers.Embedding` whose table is soft-thresholded.

    Looks rows up in `sign(E) * relu(|E| - g(s))`. With
    `threshold_granularity="channel"` there is one threshold per embedding
    dimension (the table's last axis). The table's regularizer is
    `embeddings_regularizer`, as in the parent.

    Args:
        input_dim: Size of the vocabulary.
        output_dim: Dimension of the embedding.
        weights: Optional initial table (a list holding one array of shape
            `(input_dim, output_dim)`), as `keras.layers.Embedding` takes.
        method: `keras_str.STR(...)` (default: plain STR), `ST3(...)` or
            `GMP(...)`; see `keras_str.STRDense`.
        threshold_fn: Shortcut for `method=keras_str.STR(threshold_fn=...)`:
            `"sigmoid"` (default), `"exp"` or a callable `g(s)`.
        threshold_init: Shortcut for STR's initial raw threshold `s`.
        threshold_granularity: Shortcut for STR's `"layer"`, `"channel"` or
            `"weight"` thresholds.
        threshold_regularizer: Shortcut for STR's regularizer of `s`.
        **kwargs: Every other argument of `keras.layers.Embedding`.

    Raises:
        ValueError: If `method` is given together with STR's shortcut
            arguments, the method cannot hold this layer's kernel (e.g. `n_m`
            on an input axis that is not a multiple of M), or LoRA or
            quantization is asked for (`lora_rank`, `quantization_config`, a
            quantized `dtype`): strip the model first, then quantize. Keras's
            own checks of the parent's arguments apply as well.

    Example:

    >>> layer = keras_str.STREmbedding(100, 8)
    >>> layer(np.array([[1, 2, 3]])).shape
    (1, 3, 8)
    """

    def __init__(self, *args, weights=None, **kwargs):
        # Keras's `Embedding` builds and loads `weights` inside its own
        # `__init__`, before the sparse layer has its method: done after.
        super().__init__(*args, **kwargs)
        if weights is not None:
            if not (isinstance(weights, list) and len(weights) == 1):
                weights = [weights]
            self.build()
            self.set_weights(weights)

    @property
    def embeddings(self):
        """The effective table, cast to the layer's compute dtype."""
        return self.kernel

    @embeddings.setter
    def embeddings(self, value):
        self._embeddings = value


@keras.saving.register_keras_serializable(package="keras_str")
class STRReversibleEmbedding(STREmbedding, keras.layers.ReversibleEmbedding):
    """`keras.layers.ReversibleEmbedding` whose tables are soft-thresholded.

    Tied (`tie_weights=True`), one sparse table serves both uses: the token
    lookup and, with `reverse=True`, the projection to vocabulary logits
    (`x @ table.T`), so the zeros are the same in both and a forward pass
    that uses the layer twice counts one training step. Untied, the output
    projection `reverse_embeddings` is a sparse kernel of its own (a
    `keras_str.layers.STRKernelWeight` sublayer with the same method, its
    variable at the path the dense one had), and both count every step.

    Args:
        input_dim: Size of the vocabulary.
        output_dim: Dimension of the embedding.
        weights: Optional initial table (a list holding one array of shape
            `(input_dim, output_dim)`), as `keras.layers.Embedding` takes.
        method: `keras_str.STR(...)` (default: plain STR), `ST3(...)` or
            `GMP(...)`; see `keras_str.STRDense`.
        threshold_fn: Shortcut for `method=keras_str.STR(threshold_fn=...)`:
            `"sigmoid"` (default), `"exp"` or a callable `g(s)`.
        threshold_init: Shortcut for STR's initial raw threshold `s`.
        threshold_granularity: Shortcut for STR's `"layer"`, `"channel"` or
            `"weight"` thresholds.
        threshold_regularizer: Shortcut for STR's regularizer of `s`.
        **kwargs: Every other argument of `keras.layers.ReversibleEmbedding`.

    Raises:
        ValueError: If `method` is given together with STR's shortcut
            arguments, the method cannot hold this layer's kernel (e.g. `n_m`
            on an input axis that is not a multiple of M), or LoRA or
            quantization is asked for (`lora_rank`, `quantization_config`, a
            quantized `dtype`): strip the model first, then quantize. Keras's
            own checks of the parent's arguments apply as well.

    Example:

    >>> layer = keras_str.STRReversibleEmbedding(100, 8)
    >>> hidden = layer(np.array([[1, 2, 3]]))
    >>> layer(hidden, reverse=True).shape
    (1, 3, 100)
    """

    @property
    def reverse_projection(self):
        """The untied output projection's sparse sublayer, or `None` (tied)."""
        # Not a class attribute: PyTorch keeps sublayers out of `__dict__`.
        return getattr(self, "_reverse_projection", None)

    def add_weight(self, *args, **kwargs):
        if kwargs.get("name") != "reverse_embeddings":
            return super().add_weight(*args, **kwargs)
        # The untied output projection: a sparse kernel of its own.
        projection = STRKernelWeight(
            kwargs["shape"],
            kernel_initializer=kwargs.get("initializer") or self.embeddings_initializer,
            method=self.method,
            name="reverse_embeddings",
            dtype=self.dtype_policy,
        )
        projection.build()
        # Keras names it `<layer>/reverse_embeddings/kernel`; keep the dense
        # layer's path, which layouts and checkpoints know.
        projection.raw_kernel._path = f"{self.path}/reverse_embeddings"
        self._reverse_projection = projection
        return projection.raw_kernel

    @property
    def reverse_embeddings(self):
        """The effective output projection (untied), in the compute dtype."""
        if self.reverse_projection is None:
            return getattr(self, "_reverse_embeddings", None)
        return self.reverse_projection.kernel

    @reverse_embeddings.setter
    def reverse_embeddings(self, value):
        if self.reverse_projection is not None and value is self.reverse_projection.raw_kernel:
            # The parent's build storing what `add_weight` returned: the
            # sublayer owns it (tracked once, saved once).
            self._tracker.untrack(value)
            return
        self._reverse_embeddings = value

    def call(self, inputs, reverse=False, training=None):
        if training:
            self.method.advance(self)
            if self.reverse_projection is not None:
                # Counted whether or not this pass projects to logits (a
                # backbone alone never does).
                self.method.advance(self.reverse_projection)
        return keras.layers.ReversibleEmbedding.call(self, inputs, reverse=reverse)


for _keras_class, _sparse_class in (
    (keras.layers.Embedding, STREmbedding),
    (keras.layers.ReversibleEmbedding, STRReversibleEmbedding),
):
    register_sparse_layer(
        SparseLayerSpec(
            _keras_class,
            _sparse_class,
            kernel_attribute="embeddings",
            regularizer_attribute="embeddings_regularizer",
            initializer_attribute="embeddings_initializer",
        )
    )
