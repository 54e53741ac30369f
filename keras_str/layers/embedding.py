"""`Embedding` with sparse embeddings (token tables are most of many text models).

ST-3's sigma scope normalises a table by its initializer's own standard
deviation (Keras: uniform in +-0.05), not by fans.
"""

import keras

from keras_str.layers.base import SparseKernelLayer


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
        method: `keras_str.STR(...)` (default: plain STR), `ST3(...)` or
            `GMP(...)`; see `keras_str.STRDense`.
        threshold_fn, threshold_init, threshold_granularity,
            threshold_regularizer: Shortcut for `method=keras_str.STR(...)`.
        **kwargs: Every other argument of `keras.layers.Embedding`.

    Example:

    >>> layer = keras_str.STREmbedding(100, 8)
    >>> layer(np.array([[1, 2, 3]])).shape
    (1, 3, 8)
    """

    @property
    def embeddings(self):
        """The effective table, cast to the layer's compute dtype."""
        return self.kernel

    @embeddings.setter
    def embeddings(self, value):
        self._embeddings = value


@keras.saving.register_keras_serializable(package="keras_str")
class STRReversibleEmbedding(SparseKernelLayer, keras.layers.ReversibleEmbedding):
    """`keras.layers.ReversibleEmbedding` whose tied table is soft-thresholded.

    One sparse table serves both uses of a tied embedding: the token
    lookup and, with `reverse=True`, the projection to vocabulary logits
    (`x @ table.T`), so the zeros are the same in both and a forward pass
    that uses the layer twice counts one training step. With
    `tie_weights=False` the separate `reverse_embeddings` matrix stays
    dense (the report lists it).

    Args:
        input_dim: Size of the vocabulary.
        output_dim: Dimension of the embedding.
        method: `keras_str.STR(...)` (default: plain STR), `ST3(...)` or
            `GMP(...)`; see `keras_str.STRDense`.
        threshold_fn, threshold_init, threshold_granularity,
            threshold_regularizer: Shortcut for `method=keras_str.STR(...)`.
        **kwargs: Every other argument of `keras.layers.ReversibleEmbedding`.

    Example:

    >>> layer = keras_str.STRReversibleEmbedding(100, 8)
    >>> hidden = layer(np.array([[1, 2, 3]]))
    >>> layer(hidden, reverse=True).shape
    (1, 3, 100)
    """

    @property
    def embeddings(self):
        """The effective table, cast to the layer's compute dtype."""
        return self.kernel

    @embeddings.setter
    def embeddings(self, value):
        self._embeddings = value

    def call(self, inputs, reverse=False, training=None):
        if training and self.method.scheduled:
            self.method.advance(self)
        return keras.layers.ReversibleEmbedding.call(self, inputs, reverse=reverse)
