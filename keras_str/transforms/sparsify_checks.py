"""What `sparsify` checks before and after the rewrite: refusals, warnings, a probe that training reaches the thresholds."""

import math
import warnings

import keras
import numpy as np

from keras_str.core.host import to_numpy
from keras_str.core.layer_walk import in_plain_blocks
from keras_str.core.layer_walk import iter_layers
from keras_str.core.layer_walk import weight_matrices
from keras_str.layers.base import is_kernel_layer
from keras_str.layers.base import is_sparse_layer


def check_not_sparse(model):
    """Refuses a model that already has sparse layers: a second method would split the budget."""
    sparse = [layer.name for layer in iter_layers(model) if is_sparse_layer(layer)]
    if not sparse:
        return
    listed = ", ".join(sparse[:5]) + (f" and {len(sparse) - 5} more" if len(sparse) > 5 else "")
    raise ValueError(
        f"Model {model.name!r} already has {len(sparse)} sparse layers "
        f"({listed}): it was sparsified before, or built from keras-str "
        "layers. Train it as it is. To sparsify it again with other "
        "settings, sparsify the dense original; to freeze its zeros into "
        "plain layers first, call `keras_str.strip(model)`. "
        f"Received: model={model.name!r}"
    )


def check_finite_weights(model):
    """Refuses a model holding NaN or inf: every threshold would inherit them."""
    owners = {
        id(variable): layer
        for layer in iter_layers(model)
        for variable in layer._trainable_variables + layer._non_trainable_variables
    }
    for variable in model.weights:
        if "float" not in str(variable.dtype):
            continue
        if bool(to_numpy(keras.ops.all(keras.ops.isfinite(variable)))):
            continue
        layer = owners.get(id(variable), model)
        values = to_numpy(variable)
        raise ValueError(
            f"Layer {layer.name!r} holds non-finite values in its weight "
            f"{variable.name!r} ({int(np.isnan(values).sum())} NaN, "
            f"{int(np.isinf(values).sum())} inf, of {values.size}); "
            "sparsify copies weights as they are, and thresholds computed "
            "from them would be non-finite too. Fix or reload the weights "
            "(was the dense model trained into NaN?). Received: "
            f"model={model.name!r} with weight {variable.path!r} non-finite"
        )


def warn_about_dense_matrices(model):
    """Names the layers whose matrices no sparse layer covers, with their share."""
    layers = list(iter_layers(model))
    # A plain LSTM / MultiHeadAttention left there was kept dense on purpose.
    kept_dense = in_plain_blocks(layers)
    sizes, total = {}, 0
    for layer in layers:
        matrices = weight_matrices(layer)
        total += sum(math.prod(v.shape) for v in matrices)
        name = f"{layer.path or layer.name} ({type(layer).__name__})"
        if is_sparse_layer(layer):
            # Matrices beside the sparse kernel (an untied
            # ReversibleEmbedding's output projection).
            sparse = [layer.raw_kernel, *layer.sparsity_state.values()]
            for variable in matrices:
                if not any(variable is known for known in sparse):
                    sizes[f"{name}.{variable.name}"] = math.prod(variable.shape)
        elif not is_kernel_layer(layer) and id(layer) not in kept_dense and matrices:
            sizes[name] = sum(math.prod(v.shape) for v in matrices)
    if not sizes:
        return
    listed = sorted(sizes.items(), key=lambda item: -item[1])
    names = ", ".join(f"{name}: {100 * size / total:.1f} %" for name, size in listed[:5])
    more = f" and {len(listed) - 5} more" if len(listed) > 5 else ""
    warnings.warn(
        f"sparsify left {100 * sum(sizes.values()) / total:.1f} % of the "
        f"model's weight matrices dense, in layers with no sparse version or "
        f"beside a sparse kernel ({names}{more}). `keras_str.sparsity_report` "
        "lists them; a layer "
        "of your own can opt in with `keras_str.layers.register_sparse_layer`.",
        stacklevel=3,
    )


def warn_about_emptied_layers(method):
    """Warns by name about layers the method's final target would leave all zero."""
    fractions = method.final_layer_sparsity(method.layers)
    if not fractions:
        return
    emptied = [name for name, fraction in fractions.items() if fraction >= 1.0]
    if not emptied:
        return
    advice = (
        "use `scope=\"sigma\"` (each layer's magnitudes relative to its "
        "initialisation scale), " if getattr(method, "scope", None) == "global" else ""
    )
    warnings.warn(
        f"{method!r} would prune every weight of {len(emptied)} of its "
        f"{len(fractions)} layers at its final target, judged on the current "
        f"weights: {emptied[:10]}{' ...' if len(emptied) > 10 else ''}. A layer "
        "with no weights left cuts the network. To avoid it, "
        f"{advice}keep those layers dense (`keep_dense=`), or lower the target.",
        stacklevel=3,
    )


def warn_about_channel_str_before_batch_norm(method):
    """Channel STR has not trained on BatchNorm networks here: says so by layer."""
    if not method.thresholds_batch_norm_scales:
        return
    before_batch_norm = [
        layer.name for layer in method.layers
        if any(
            isinstance(node.operation, keras.layers.BatchNormalization)
            for node in getattr(layer, "_outbound_nodes", ())
        )
    ]
    if not before_batch_norm:
        return
    warnings.warn(
        f"{len(before_batch_norm)} layers of {method!r} feed BatchNormalization "
        f"({before_batch_norm[:5]}{' ...' if len(before_batch_norm) > 5 else ''}). "
        "BatchNormalization divides out each filter's scale, so thresholds "
        "on filters get no useful gradient: on a MobileNetV1-style model "
        "they trained to 10 % accuracy (dense: 84 % after one epoch). "
        "keras-str thresholds the BatchNormalization's channel scales "
        "instead where a layer feeds only a BatchNormalization (scale=True, "
        "last axis) and neither is shared or kept dense; these layers are "
        "not such pairs.",
        stacklevel=3,
    )


def check_training_reaches(model, method):
    """Raises unless `model.call(..., training=True)` reaches every sparse layer.

    JAX's `fit` (and `stateless_call`) runs `model.call` directly, so there a
    layer sees `training=True` only if the subclassed model's `call()` passes
    it on (TensorFlow's and PyTorch's `fit` call the model, whose call
    context carries it); without it the schedule would silently never
    advance. One stateless forward pass at batch 1, the way this backend's
    trainer calls the model, checks it.
    """
    import keras

    probe = _probe_inputs(model)
    if probe is None:
        return
    variables = model.non_trainable_variables
    # The probe's shapes are arbitrary (length-1 sequences): what the
    # layers warn about them is noise.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if keras.backend.backend() == "jax":
            # What Keras's JAX trainer runs: `model.call`, not `model(...)`.
            _, values = model.stateless_call(
                [v.value for v in model.trainable_variables],
                [v.value for v in variables],
                probe,
                training=True,
            )
        else:
            # TensorFlow's and PyTorch's trainers call `model(x, training=True)`.
            with keras.StatelessScope() as scope:
                model(probe, training=True)
            values = [scope.get_current_value(v) for v in variables]
            values = [v.value if new is None else new for v, new in zip(variables, values)]
    steps = {id(layer.sparsity_step) for layer in method.layers}
    advanced = {
        id(v): int(to_numpy(new)) > int(to_numpy(v.value))
        for v, new in zip(variables, values)
        if id(v) in steps
    }
    stuck = [
        layer.name for layer in method.layers
        if not advanced.get(id(layer.sparsity_step), False)
    ]
    if stuck:
        raise ValueError(
            f"{type(model).__name__}.call(..., training=True) does not reach "
            f"the sparse layers {stuck}: a layer between them and the model "
            "is called without `training` (Keras's JAX trainer runs "
            "`model.call` directly). Pass it on in every `call()` on the way "
            "(`self.block(x, training=training)`; that also runs on every "
            f"backend), or the schedule of {type(method).__name__} would "
            "never advance."
        )


def _probe_inputs(model):
    """Inputs of batch 1 for one forward pass of `model`, or `None` when unknown.

    Functional models (keras-hub's backbones and tasks among them) declare
    their inputs, several and named ones included; other models are probed
    on the one shape they were built with. Unknown dimensions become 1;
    integer inputs (token ids, masks) are ones, which every vocabulary and
    mask accepts.
    """
    import keras

    def probe_for(shape, dtype="float32"):
        if not isinstance(shape, (tuple, list)) or not all(
            isinstance(d, int) or d is None for d in shape
        ):
            raise TypeError(shape)
        shape = [1] + [d or 1 for d in shape[1:]]
        if "int" in str(dtype) or "bool" in str(dtype):
            return keras.ops.ones(shape, dtype=dtype)
        return keras.ops.zeros(shape, dtype=dtype)

    try:
        if hasattr(model, "_inputs_struct"):
            return keras.tree.map_structure(
                lambda x: probe_for(tuple(x.shape), x.dtype), model._inputs_struct
            )
        shapes = getattr(model, "_build_shapes_dict", None) or {}
        if len(shapes) != 1:
            return None
        return probe_for(next(iter(shapes.values())))
    except TypeError:
        return None
