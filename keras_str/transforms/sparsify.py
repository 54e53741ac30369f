"""Dense Keras model -> the same architecture with STR layers."""

import warnings

import keras

from keras_str.core.arguments import check_number
from keras_str.core.kernel_specs import bias_variable
from keras_str.core.kernel_specs import block_spec_for_keras_layer
from keras_str.core.kernel_specs import raw_kernel_variable
from keras_str.core.kernel_specs import spec_for_keras_layer
from keras_str.core.layer_walk import iter_layers
from keras_str.layers.batch_norm import STRBatchNormalization
from keras_str.methods import copy_method
from keras_str.methods import get_method
from keras_str.training.checks import check_during_fit
from keras_str.training.weight_decay import apply_weight_decay
from keras_str.transforms.cloning import assign_copy
from keras_str.transforms.cloning import block_copier
from keras_str.transforms.cloning import check_rewritable
from keras_str.transforms.cloning import clone_with
from keras_str.transforms.cloning import copy_other_variables
from keras_str.transforms.cloning import rewrite_in_place
from keras_str.transforms.recipe import Recipe
from keras_str.transforms.recipe import attach as attach_recipe
from keras_str.transforms.separable import SEPARABLE_CONVS
from keras_str.transforms.separable import separable_as_two_layers
from keras_str.transforms.sparsify_checks import check_finite_weights
from keras_str.transforms.sparsify_checks import check_not_sparse
from keras_str.transforms.sparsify_checks import check_training_reaches
from keras_str.transforms.sparsify_checks import warn_about_channel_str_before_batch_norm
from keras_str.transforms.sparsify_checks import warn_about_dense_matrices
from keras_str.transforms.sparsify_checks import warn_about_emptied_layers


def sparsify(
    model,
    *,
    threshold_init=None,
    threshold_fn=None,
    threshold_granularity=None,
    weight_decay=None,
    keep_dense=None,
    method=None,
    in_place=False,
):
    """Returns `model` rebuilt with sparse-trainable layers in place of its kernel layers.

    Every layer of a type in the registry (`Dense`, `EinsumDense`,
    `Embedding`, `ReversibleEmbedding`, the convolutions and their
    transposes, depthwise convolutions, `SimpleRNN` / `GRU` / `LSTM`,
    `MultiHeadAttention`; exactly those classes: subclasses of one's own are
    left alone, with a warning, unless registered) becomes its sparse
    counterpart with the same
    config and weights; other layers are copied with their weights. All new
    layers share one copy of `method`, so a scheduled method's global
    threshold spans the whole model. The new model computes the dense
    model's outputs up to the initial threshold (`~4.5e-5` for plain STR by
    default; with `threshold_init=-100` the outputs are identical). The
    rewrite knows nothing of training: methods advance themselves inside
    `fit`, and the new model's `fit` warns when its sparse layers go NaN or
    inf or its schedule cannot finish (`keras_str.SparsityChecks`).

    With `StructuredSTR("channel")`, a layer whose one consumer is a
    `BatchNormalization` (channels last, `scale=True`) stays plain and the
    BatchNormalization becomes `keras_str.STRBatchNormalization`, which
    thresholds the channel's scale `gamma` (a BatchNormalization divides
    out the filter's own scale, so a threshold on filters would get no
    gradient); `strip` then removes the dead channels with their filters.

    Args:
        model: A built Keras 3 model, e.g. from `keras.applications`.
            Nested models are rewritten too; subclassed ones need
            `in_place=True`.
        threshold_init: STR's initial raw threshold parameter `s` (default
            `-10.0`); a shortcut for the same setting of `keras_str.STR`.
        threshold_fn: STR's `"sigmoid"` (default), `"exp"` or a callable.
        threshold_granularity: STR's `"layer"` (default), `"channel"` or
            `"weight"`.
        weight_decay: If given, `keras_str.apply_weight_decay` is applied to
            the new model with this PyTorch-style lambda.
        keep_dense: Layers to leave dense: a list of layer names, or a
            predicate `fn(layer) -> bool`. Common: the first conv and the
            classifier.
        method: The sparsity method every new layer uses: `None` (plain
            STR), `keras_str.STR(target_sparsity, schedule)`,
            `keras_str.ST3(...)`, `keras_str.GMP(...)`,
            `keras_str.StructuredSTR(...)` or `keras_str.LowRankSTR(...)`.
            The model gets its own copy of it (find it as `layer.method`).
            The `threshold_*` arguments override the settings of the
            methods that learn a threshold (the STR family).
        in_place: For subclassed models (which have no graph to rebuild):
            `True` replaces their layers inside `model` itself, wherever the
            model or its layers hold them (attributes and lists), and returns
            `model`. Sequential and functional models are always rebuilt.
            The rewrite is saved with the model (`model.save`); load it
            with `keras_str.load_model`, which redoes it.

    Returns:
        A new Keras model (`model` itself is not changed), or `model`
        rewritten in place.

    Raises:
        ValueError: if `model` already has sparse layers (sparsify the dense
            original instead, or `keras_str.strip` it first), or holds NaN
            or inf in a weight (named in the message).

    Example:

    >>> dense = keras.applications.MobileNet(weights=None, input_shape=(96, 96, 3))
    >>> sparse = keras_str.sparsify(
    ...     dense, weight_decay=5e-5, keep_dense=["conv1", "predictions"])
    >>> st3 = keras_str.sparsify(dense, method=keras_str.ST3(
    ...     0.9, keras_str.PolynomialSchedule(0, 5000), scope="sigma"))
    """
    weight_decay = check_number("weight_decay", weight_decay, minimum=0, allow_none=True)
    check_rewritable(model, in_place)
    check_not_sparse(model)
    check_finite_weights(model)
    _register_keras_hub_layers(model)
    should_keep_dense = _keep_dense_predicate(model, keep_dense)
    shared_method = _model_method(
        method,
        threshold_init=threshold_init,
        threshold_fn=threshold_fn,
        threshold_granularity=threshold_granularity,
    )

    recipe = None
    if in_place:
        # A model rewritten in place keeps its config: the rewrite is saved
        # with it, so that `keras_str.load_model` can redo it.
        recipe = Recipe(shared_method, weight_decay=weight_decay)
        should_keep_dense = recipe.recorder(should_keep_dense)
    scaled_by_batch_norm = _batch_norm_scales(model, shared_method, should_keep_dense)

    def replace(layer):
        if should_keep_dense(layer):
            return None
        if id(layer) in scaled_by_batch_norm:
            # Its channels are thresholded by the BatchNormalization it feeds.
            return None
        if id(layer) in scaled_by_batch_norm.values():
            new_layer = STRBatchNormalization.from_config(
                {**layer.get_config(), "method": shared_method}
            )
            return new_layer, _copy_batch_norm_into_str
        spec = spec_for_keras_layer(layer)
        if spec is not None:
            new_layer = spec.sparse_class.from_config(
                {**layer.get_config(), "method": shared_method}
            )
            return new_layer, _copy_into_str
        block = block_spec_for_keras_layer(layer)
        if block is not None:
            new_layer = block.sparse_class.from_config(
                {**layer.get_config(), "method": shared_method}
            )
            return new_layer, block_copier(
                block, _copy_into_str, _copy_kernel_into_str, to_sparse=True
            )
        if type(layer) in SEPARABLE_CONVS:
            return separable_as_two_layers(layer, shared_method)
        return None

    if in_place:
        if shared_method.scheduled and not model._call_has_training_arg:
            raise ValueError(
                f"{type(model).__name__}.call() has no `training` argument, so "
                "Keras never runs its layers in training mode and "
                f"{type(shared_method).__name__}'s schedule could not advance "
                "(Dropout and BatchNormalization are stuck in inference mode "
                "too). Define `call(self, inputs, training=None)`. Received: "
                f"method={shared_method!r}"
            )
        sparse_model = rewrite_in_place(model, replace)
        attach_recipe(sparse_model, recipe)
        if shared_method.scheduled:
            check_training_reaches(sparse_model, shared_method)
    else:
        sparse_model = clone_with(model, replace)
    check_during_fit(sparse_model)
    warn_about_dense_matrices(sparse_model)
    warn_about_emptied_layers(shared_method)
    warn_about_channel_str_before_batch_norm(shared_method)
    if weight_decay is not None:
        apply_weight_decay(sparse_model, weight_decay)
    elif not shared_method.scheduled and shared_method.threshold_regularizer is None:
        warnings.warn(
            "Plain STR (no target) learns its sparsity only through weight "
            "decay on the weights and thresholds; without it training prunes "
            "almost nothing. Pass `weight_decay=` (e.g. 5e-4; or call "
            "`keras_str.apply_weight_decay`), or a target: "
            "`method=keras_str.ST3(0.9, schedule)` or "
            "`keras_str.STR(0.9, schedule)`.",
            stacklevel=2,
        )
    return sparse_model


def replay(config, recipe):
    """A model rebuilt from an in-place-sparsified model's `config`, sparsified again as `recipe` records.

    The config of a model rewritten in place is still its own class's, so
    it rebuilds the dense model; the recorded rewrite (method, layers kept
    dense, weight decay) makes it sparse again, with fresh weights. A
    `compile_config` in `config` is left out (the caller compiles after the
    rewrite, so that the optimizer's slots follow the sparse variables).
    """
    config = {key: value for key, value in config.items() if key != "compile_config"}
    model = keras.saving.deserialize_keras_object(config)
    with warnings.catch_warnings():
        # `sparsify` warned when the model was first rewritten.
        warnings.simplefilter("ignore")
        return sparsify(
            model,
            method=recipe.method,
            weight_decay=recipe.weight_decay,
            keep_dense=recipe.replayer(),
            in_place=True,
        )


def _register_keras_hub_layers(model):
    # keras-str does not import keras-hub; a model holding its layers has
    # loaded it, and their sparse versions can register.
    if any(type(layer).__module__.startswith("keras_hub.") for layer in iter_layers(model)):
        import keras_str.layers.keras_hub_layers  # noqa: F401


def _model_method(method, **str_settings):
    """One fresh method object for the new model's layers."""
    given = {k: v for k, v in str_settings.items() if v is not None}
    method = copy_method(get_method(method))
    if not given:
        return method
    received = ", ".join(f"{k}={v!r}" for k, v in given.items())
    if not method.learns_threshold:
        raise ValueError(
            f"{', '.join(sorted(given))} configure STR only; "
            f"{type(method).__name__} has no learned threshold. Received: "
            f"{received}, method={method!r}"
        )
    config = method.get_config()
    unknown = sorted(set(given) - set(config))
    if unknown:
        raise ValueError(
            f"{type(method).__name__} has no setting {', '.join(unknown)}. "
            f"Received: {received}, method={method!r}"
        )
    # The method's own class: StructuredSTR and LowRankSTR keep their settings.
    return type(method).from_config({**config, **given})


def _copy_into_str(dense_layer, str_layer):
    kernel = raw_kernel_variable(dense_layer)
    _copy_kernel_into_str(kernel, str_layer)
    bias = bias_variable(dense_layer)
    if bias is not None:
        assign_copy(bias_variable(str_layer), bias)
    copy_other_variables(
        dense_layer, str_layer, {kernel.name} | ({bias.name} if bias is not None else set())
    )


def _copy_batch_norm_into_str(plain_layer, str_layer):
    targets = {
        "gamma": str_layer._gamma,
        "beta": str_layer._beta,
        "moving_mean": str_layer.moving_mean,
        "moving_variance": str_layer.moving_variance,
    }
    for name, target in targets.items():
        if target is not None:
            assign_copy(target, getattr(plain_layer, name))


def _batch_norm_scales(model, method, should_keep_dense):
    """`{id(kernel layer): id(batch norm)}`: the layers whose channels their BatchNormalization thresholds.

    Under BatchNormalization a filter's scale does not reach the loss, so
    channel STR thresholds the channel's `gamma` instead (see
    `keras_str.STRBatchNormalization`); the layer feeding it stays plain.
    Only where the pair is unambiguous: a channels-last kernel layer called
    once, whose one consumer is a BatchNormalization with `scale=True` on
    the last axis, called once; both rewritten (neither kept dense).
    """
    if not method.thresholds_batch_norm_scales:
        return {}
    pairs = {}
    for layer in iter_layers(model):
        spec = spec_for_keras_layer(layer)
        if spec is None or should_keep_dense(layer) or not _feeds_last_axis(layer, spec):
            continue
        outbound = getattr(layer, "_outbound_nodes", ())
        if len(outbound) != 1 or len(getattr(layer, "_inbound_nodes", ())) != 1:
            continue
        consumer = outbound[0].operation
        if (
            type(consumer) is keras.layers.BatchNormalization
            and consumer.scale
            and consumer.axis % len(consumer.input.shape) == len(consumer.input.shape) - 1
            and len(consumer._inbound_nodes) == 1
            and not should_keep_dense(consumer)
        ):
            pairs[id(layer)] = id(consumer)
    return pairs


def _feeds_last_axis(layer, spec):
    """Whether the layer's output channels are its output's last axis, one per kernel channel."""
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        return False
    if isinstance(layer, (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D)):
        return layer.depth_multiplier == 1
    return spec.keras_class in (
        keras.layers.Dense,
        keras.layers.Conv1D,
        keras.layers.Conv2D,
        keras.layers.Conv3D,
    )


def _copy_kernel_into_str(plain_kernel, str_layer):
    assign_copy(raw_kernel_variable(str_layer), plain_kernel)
    # State derived from the kernel (low-rank STR's factors) follows it.
    str_layer.method.kernel_assigned(str_layer)


def _keep_dense_predicate(model, keep_dense):
    if keep_dense is None:
        return lambda layer: False
    if callable(keep_dense):
        return keep_dense
    if isinstance(keep_dense, str) or not all(
        isinstance(name, str) for name in keep_dense
    ):
        raise ValueError(
            "Expected `keep_dense` to be a list of layer names or a "
            f"predicate. Received: keep_dense={keep_dense!r}"
        )
    names = {layer.name for layer in iter_layers(model)}
    unknown = sorted(set(keep_dense) - names)
    if unknown:
        raise ValueError(
            f"Layers {unknown} named in `keep_dense` are not in model "
            f"{model.name!r}. Received: keep_dense={list(keep_dense)}"
        )
    keep = set(keep_dense)
    return lambda layer: layer.name in keep
