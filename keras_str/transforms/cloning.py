"""Rebuilding a Sequential or functional model with some layers replaced."""

import keras


def check_rewritable(model, in_place, argument="model"):
    """Raises a clear `ValueError` unless `model` can be rewritten as asked.

    Sequential and functional models are rebuilt (`in_place=False`);
    subclassed models, having no graph, only in place.
    """
    if isinstance(model, keras.Model) and not is_clonable(model):
        if not in_place:
            raise ValueError(
                f"{type(model).__name__} {model.name!r} is a subclassed model: "
                "it has no layer graph to rebuild, so keras-str can only "
                "rewrite it in place (its layers are replaced inside the "
                "object you pass; save a copy first if you need the old one). "
                "Pass `in_place=True`. Received: in_place=False"
            )
        if not model.built:
            raise ValueError(
                f"Model {model.name!r} is not built; call it on data first."
            )
        return
    if in_place:
        raise ValueError(
            "`in_place=True` is for subclassed models; Sequential and "
            "functional models are rebuilt (the one you pass is not changed). "
            f"Received: in_place=True, {argument}={getattr(model, 'name', model)!r}"
        )
    check_clonable(model, argument)


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


def is_clonable(model):
    """Whether `model` has a layer graph (Sequential or functional)."""
    return isinstance(model, keras.Sequential) or type(model).__name__ == "Functional"


def rewrite_in_place(model, replace):
    """Replaces, inside `model`, each sublayer `l` by `replace(l)`, in place.

    For subclassed models, which have no graph to clone: every layer the
    model (or one of its sublayers) holds in an attribute or a list is
    visited; `replace(layer)` returns `(new_layer, copy_weights)` or `None`
    to keep it (and look inside it). New layers are built with the shapes
    the old ones were built with, then `copy_weights(old, new)` runs. Nested
    Sequential / functional models are rebuilt with `clone_with`. A layer
    held in two places is replaced by one new layer.
    """
    replaced = {}

    def new_for(old):
        if id(old) in replaced:
            return replaced[id(old)]
        new = None
        if isinstance(old, keras.Model) and is_clonable(old):
            new = clone_with(old, replace)
        else:
            replacement = replace(old)
            if replacement is not None:
                new, copy = replacement
                shapes = getattr(old, "_build_shapes_dict", None)
                if old.built and shapes:
                    new.build(**shapes)
                    copy(old, new)
            else:
                visit(old)
        replaced[id(old)] = new
        return new

    def visit(layer):
        # Built layers lock their state; a swap keeps the count of sublayers.
        tracker = layer._tracker
        locked, message = tracker.locked, tracker._lock_violation_msg
        tracker.unlock()
        try:
            swap_sublayers(layer)
        finally:
            if locked:
                tracker.lock(message)

    def swap_sublayers(layer):
        tracked = {id(sublayer) for sublayer in layer._layers}
        # On PyTorch, sublayers live in the torch.nn.Module's `_modules`.
        names = list(vars(layer)) + list(getattr(layer, "_modules", None) or {})
        for name in dict.fromkeys(names):
            value = getattr(layer, name, None)
            if isinstance(value, keras.layers.Layer) and id(value) in tracked:
                new = new_for(value)
                if new is not None:
                    layer._tracker.untrack(value)
                    setattr(layer, name, new)
            elif isinstance(value, list) and value is not layer._layers:
                for i, item in enumerate(list(value)):
                    if isinstance(item, keras.layers.Layer) and id(item) in tracked:
                        new = new_for(item)
                        if new is not None:
                            layer._tracker.untrack(item)
                            value[i] = new
                            layer._tracker.track(new)

    visit(model)
    return model
