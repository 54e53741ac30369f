"""Walking a Keras model for its layers, and the variables a layer holds."""

import keras

from keras_str.core.kernel_specs import block_spec_for_keras_layer


def weight_matrices(layer):
    """The layer's own variables of rank 2 or more, biases excepted.

    What a layer keras-str has no sparse version of would keep dense (an
    LSTM cell's kernels, a custom layer's matrices); GRU's two-row bias is
    not one of them.
    """
    variables = list(layer._trainable_variables) + list(layer._non_trainable_variables)
    return [
        v for v in variables if len(v.shape) >= 2 and not v.name.endswith("bias")
    ]


def iter_layers(model):
    """Yields every layer of `model`: nested models' and layers' sublayers too.

    In model order, depth first; a layer that holds sublayers
    (`MultiHeadAttention`'s projections) comes before them; models
    themselves are not yielded. A layer held in two places (a causal LM's
    tied embedding, in the task and in its backbone) is yielded once.
    """
    seen = set()
    if isinstance(model, keras.Model):
        yield from _iter_sublayers(model, seen)
    elif isinstance(model, keras.layers.Layer):
        # A single layer stands for itself.
        seen.add(id(model))
        yield model
        yield from _iter_sublayers(model, seen)


def _iter_sublayers(layer, seen):
    children = layer.layers if isinstance(layer, keras.Model) else layer._layers
    for child in children:
        if id(child) in seen:
            continue
        seen.add(id(child))
        if not isinstance(child, keras.Model):
            yield child
        yield from _iter_sublayers(child, seen)


def in_plain_blocks(layers):
    """Ids of the sublayers of plain layers that have a block entry (a plain LSTM's cell)."""
    return {
        id(sublayer)
        for layer in layers
        if block_spec_for_keras_layer(layer) is not None
        for sublayer in iter_layers(layer)
        if sublayer is not layer
    }
