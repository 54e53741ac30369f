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
