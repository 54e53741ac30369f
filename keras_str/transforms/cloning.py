"""Rebuilding a Sequential or functional model with some layers replaced."""

import keras

# Keras's switch for its attribute tracking (`Layer.__setattr__`); no public
# form.
from keras.src.utils.tracking import DotNotTrackScope

from keras_str.core.host import to_numpy


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
    fresh copy of the layer with the same weights, whose own sublayers are
    then replaced in place (`rewrite_in_place`). `copy_weights(old, new)`
    is called once the clone is built.

    Returns:
        The new model.
    """
    pairs = []

    def copy_and_rewrite_sublayers(old, new):
        # Wrappers (`Bidirectional`, `TimeDistributed`) and custom layers
        # holding kernel layers are rewritten inside, as subclassed models are.
        copy_all_weights(old, new)
        if new._layers:
            rewrite_in_place(new, replace)

    def clone_function(layer):
        replacement = replace(layer)
        if replacement is None:
            new_layer = layer.__class__.from_config(layer.get_config())
            copy = copy_and_rewrite_sublayers
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
    # `to_numpy`, not `get_weights()`: Keras's reads each variable through
    # `np.array`, a NumPy 2 DeprecationWarning per variable.
    new.set_weights([to_numpy(variable) for variable in old.weights])


def assign_copy(variable, value):
    """`variable.assign(value)` with its own buffer.

    On JAX, assigning one variable to another shares the array; the first
    model to run a jitted step donates it, and the other model's variable
    is then deleted ("Array has been deleted").
    """
    variable.assign(keras.ops.copy(keras.ops.convert_to_tensor(value)))


def copy_other_variables(old, new, copied):
    """Copies `old`'s own variables not named in `copied` into `new`'s of the same name.

    A kernel layer may hold more than its kernel and bias (an untied
    `ReversibleEmbedding`'s `reverse_embeddings`); rebuilding it must not
    leave those freshly initialised. The sparsity state (in the sparse
    layer only) has no counterpart and is skipped.
    """
    targets = {v.name: v for v in own_variables(new)}
    # A sparse layer may train such a matrix in a sublayer of its own, named
    # like the variable (`STRReversibleEmbedding`'s `reverse_embeddings`).
    sparse_sublayers = {
        sub.name: sub for sub in new._layers if hasattr(sub, "raw_kernel")
    }
    for variable in own_variables(old):
        if variable.name in copied:
            continue
        sublayer = sparse_sublayers.get(variable.name)
        target = sublayer.raw_kernel if sublayer is not None else targets.get(variable.name)
        if target is None or tuple(target.shape) != tuple(variable.shape):
            continue
        assign_copy(target, variable)
        if sublayer is not None:
            sublayer.method.kernel_assigned(sublayer)


def own_variables(layer):
    """The variables `layer` created itself, not its sublayers'."""
    return list(layer._trainable_variables) + list(layer._non_trainable_variables)


def block_copier(block, copy, copy_kernel, to_sparse):
    """Copies a block's weights: sublayers with `copy(old, new)`, kernels with `copy_kernel`.

    `copy_kernel(plain_variable, sparse_kernel_layer)` copies one of the
    block's kernel variables (`block.kernel_variables`) in the direction of
    the rewrite (`to_sparse`: from plain to sparse); other variables are
    copied as they are.
    """

    def copy_block(old, new):
        for attribute in block.sublayer_attributes:
            old_sublayer = getattr(old, attribute, None)
            if old_sublayer is not None:
                copy(old_sublayer, getattr(new, attribute))
        plain, sparse = (old, new) if to_sparse else (new, old)
        for plain_path, sparse_path in block.kernel_variables:
            copy_kernel(_attribute_path(plain, plain_path), _attribute_path(sparse, sparse_path))
        for path in block.other_variables:
            variable = _attribute_path(old, path)
            if variable is not None:
                assign_copy(_attribute_path(new, path), variable)

    return copy_block


def _attribute_path(obj, path):
    for name in path.split("."):
        obj = getattr(obj, name, None)
    return obj


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

    Subclassed functional models (keras-hub's backbones and tasks build a
    layer graph in their `__init__`) also run their graph: its nodes are
    pointed at the new layers, so the forward pass calls them.
    """
    replaced = {}
    replaced_layers = {}
    visited = []

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
                    # Built where the old layer was, so every variable keeps
                    # its path (`block_0/attention/query/kernel`, not
                    # `query/kernel`): layouts and checkpoints keyed on
                    # paths still find it.
                    new._parent_path = old._parent_path
                    new.build(**shapes)
                    copy(old, new)
            else:
                visit(old)
        replaced[id(old)] = new
        if new is not None:
            replaced_layers[id(old)] = new
        return new

    def visit(layer):
        visited.append(layer)
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
                items, changed = list(value), False
                for i, item in enumerate(items):
                    if isinstance(item, keras.layers.Layer) and id(item) in tracked:
                        new = new_for(item)
                        if new is not None:
                            layer._tracker.untrack(item)
                            items[i], changed = new, True
                            layer._tracker.track(new)
                if changed:
                    replace_list(layer, name, items)

    visit(model)
    for layer in visited:
        if has_layer_graph(layer):
            rewire_graph(layer, replaced_layers)
    return model


def replace_list(owner, name, items):
    """Sets `owner.<name>` to a new list of `items`.

    Not item by item: TensorFlow's object tracking marks a list changed
    other than by appending, and then refuses to write a SavedModel of the
    model (which TFLite export goes through). The layers in it are tracked
    already.
    """
    with DotNotTrackScope():
        setattr(owner, name, items)


def has_layer_graph(layer):
    """Whether `layer` runs a graph of nodes (a functional model, subclassed or not)."""
    return isinstance(layer, keras.Model) and hasattr(layer, "_nodes_by_depth")


def rewire_graph(model, replacements):
    """Points the nodes of `model`'s graph at the layers replacing theirs.

    `replacements` maps `id(old layer)` to its new layer. Functional
    models run their graph by calling each node's `operation`, so swapping
    the attribute that holds a layer is not enough: the node (its
    operation, the history of its output tensors, the layers' node lists)
    must name the new layer too. Keras has no public API for this; it uses
    the graph attributes `Function` builds (`_nodes_by_depth`,
    `_operations`, `_operations_by_depth`) and each node's `operation`.
    """
    moved = {}
    for nodes in model._nodes_by_depth.values():
        for node in nodes:
            old = node.operation
            new = replacements.get(id(old))
            if new is None:
                continue
            moved[id(old)] = (old, new)
            node.operation = new
            for tensor in node.outputs:
                history = getattr(tensor, "_keras_history", None)
                if history is not None and history.operation is old:
                    tensor._keras_history = history._replace(operation=new)
    for old, new in moved.values():
        new._inbound_nodes = list(old._inbound_nodes)
        new._outbound_nodes = list(old._outbound_nodes)
    replace_list(model, "_operations", [replacements.get(id(op), op) for op in model._operations])
    for operations in model._operations_by_depth.values():
        operations[:] = [replacements.get(id(op), op) for op in operations]
