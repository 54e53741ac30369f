"""Sparse versions of keras-hub layers, registered when a keras-hub layer is first met.

keras-str does not import keras-hub (it loads TensorFlow and takes seconds):
this module is imported by `keras_str.sparsify` once a model holds a
keras-hub layer, and by `keras_str.load_model`, when keras-hub is already
loaded or installed.
"""

import keras
from keras_hub.layers import PositionEmbedding

from keras_str.core.kernel_specs import SparseLayerSpec
from keras_str.core.kernel_specs import register_sparse_layer
from keras_str.layers.base import SparseKernelLayer


@keras.saving.register_keras_serializable(package="keras_str")
class STRPositionEmbedding(SparseKernelLayer, PositionEmbedding):
    """keras-hub's `PositionEmbedding` whose table is soft-thresholded.

    Args:
        sequence_length: The longest sequence the table covers.
        initializer: Initializer of the table.
        method: `keras_str.STR(...)` (default: plain STR), `ST3(...)` or
            `GMP(...)`; see `keras_str.STRDense`.
        **kwargs: Every other argument of `keras_hub.layers.PositionEmbedding`.

    Example:

    >>> layer = STRPositionEmbedding(sequence_length=16)
    >>> layer(np.zeros((1, 4, 8))).shape
    (1, 4, 8)
    """

    def build(self, inputs_shape):
        # keras-hub's argument name: `sparsify` builds with the old layer's.
        super().build(inputs_shape)

    def add_weight(self, *args, **kwargs):
        if kwargs.get("name") == "embeddings":
            # The threshold comparison must see the full-precision table.
            kwargs["autocast"] = False
        return super().add_weight(*args, **kwargs)

    @property
    def position_embeddings(self):
        """The effective table, cast to the layer's compute dtype."""
        return self.kernel

    @position_embeddings.setter
    def position_embeddings(self, value):
        self._position_embeddings = value

    def call(self, inputs, start_index=0, positions=None, training=None):
        if training:
            self.method.advance(self)
        return PositionEmbedding.call(
            self, inputs, start_index=start_index, positions=positions
        )


def register():
    register_sparse_layer(
        SparseLayerSpec(
            PositionEmbedding,
            STRPositionEmbedding,
            kernel_attribute="position_embeddings",
            initializer_attribute="initializer",
            adds_only=True,
        )
    )


register()
