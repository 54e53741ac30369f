"""Rebuilding a Sequential or functional model with some layers replaced."""

import keras


def check_clonable(model, argument="model"):
    """Raises a clear `ValueError` unless `model` is Sequential or functional."""
    if not isinstance(model, keras.Model):
        raise ValueError(
            f"Expected a Keras 3 `keras.Model` for argument `{argument}`. "
            f"Received: {argument}={model!r} of type {type(model).__name__}"
        )
    # `keras.Model(inputs, outputs)` returns an instance of Keras's
    # (non-public) Functional class.
    is_functional = type(model).__name__ == "Functional"
    if not (isinstance(model, keras.Sequential) or is_functional):
        raise ValueError(
            f"Cannot rebuild subclassed model {model.name!r} "
            f"({type(model).__name__}): only Sequential and functional "
            "models have a layer graph keras-str can rewrite. Use the STR "
            "layers directly in your model's __init__ (e.g. "
            "`keras_str.STRDense` in place of `keras.layers.Dense`), or build "
            "the model with the functional API."
        )
    if not model.built:
        raise ValueError(
            f"Model {model.name!r} is not built; create it with `keras.Input` "
            "or call it on data first."
        )


def clone_with(model, replace):
    """Clones `model`, replacing each layer `l` by `replace(l)` (or a copy).

    `replace(layer)` returns `(new_layer, copy_weights)` or `None` to keep a
    fresh copy of the layer with the same weights. `copy_weights(old, new)`
    is called once the clone is built.

    Returns:
        The new model.
    """
    pairs = []

    def clone_function(layer):
        replacement = replace(layer)
        if replacement is None:
            new_layer = layer.__class__.from_config(layer.get_config())
            copy = copy_all_weights
        else:
            new_layer, copy = replacement
        pairs.append((layer, new_layer, copy))
        return new_layer

    clone = keras.models.clone_model(
        model, clone_function=clone_function, recursive=True
    )
    for old, new, copy in pairs:
        # Operation nodes (`x + y`, `keras.ops.*` calls in a functional
        # graph) are cloned too; they have no `built` and no weights.
        if getattr(old, "built", False) and old.weights:
            copy(old, new)
    return clone


def copy_all_weights(old, new):
    new.set_weights(old.get_weights())


def block_copier(block, copy):
    """Copies each kernel sublayer of a block with `copy`."""

    def copy_block(old, new):
        for attribute in block.sublayer_attributes:
            old_sublayer = getattr(old, attribute, None)
            if old_sublayer is not None:
                copy(old_sublayer, getattr(new, attribute))

    return copy_block
