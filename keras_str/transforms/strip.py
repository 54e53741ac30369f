"""Sparse-trainable model -> plain Keras model whose kernels hold exact zeros."""

import warnings

import keras
from keras import ops

from keras_str.core.arguments import check_channel_multiple
from keras_str.core.host import to_numpy
from keras_str.core.kernel_specs import bias_variable
from keras_str.core.kernel_specs import block_spec_for_sparse_layer
from keras_str.core.kernel_specs import raw_kernel_variable
from keras_str.core.layer_walk import iter_layers
from keras_str.layers.base import SPARSE_CONFIG_KEYS
from keras_str.layers.base import is_kernel_layer
from keras_str.layers.base import is_sparse_layer
from keras_str.layers.batch_norm import STRBatchNormalization
from keras_str.transforms.cloning import assign_copy
from keras_str.transforms.cloning import block_copier
from keras_str.transforms.cloning import check_clonable
from keras_str.transforms.cloning import check_rewritable
from keras_str.transforms.cloning import clone_with
from keras_str.transforms.cloning import copy_other_variables
from keras_str.transforms.cloning import own_variables
from keras_str.transforms.cloning import rewrite_in_place
from keras_str.transforms.recipe import detach as detach_recipe
from keras_str.transforms.recipe import recipe_of
from keras_str.transforms.shrink import shrink_channels


def strip(model, *, in_place=False, shrink=None, channel_multiple=None):
    """Returns a plain Keras model with the thresholded weights baked in.

    Each sparse layer becomes its Keras parent (`Dense`, `Conv2D`,
    `EinsumDense`, `MultiHeadAttention`, ...) with the same config, minus
    the sparsity arguments, and with the kernel its method computes with
    (for STR `sign(W) * relu(|W| - g(s))`): the pruned weights are exact
    zeros. Other layers are copied with their weights. The result predicts
    what the sparse model predicts, and saves and loads without keras-str.
    A low-rank (`keras_str.LowRankSTR`) Dense that keeps rank r becomes
    `Dense(r, use_bias=False)` then `Dense(units, ...)`, in a Sequential
    named like the layer, when `r * (in + out) < in * out` (else one Dense
    with the product); recurrent cells get the product.

    Args:
        model: A built model with sparse layers. Subclassed models need
            `in_place=True`, except those `sparsify(..., in_place=True)`
            rewrote (keras-hub's): without it, they are copied (rebuilt
            from their config, sparsified again as recorded, given the
            model's variables) and the copy is stripped.
        in_place: For subclassed models: replace the sparse layers inside
            `model` itself and return it (the trained sparse layers are
            gone afterwards: save the model first if you need them).
        shrink: Whether to remove all-zero channels (filters, units) and
            what they feed, where that changes no output
            (`keras_str.shrink_channels`): the result is a narrower dense
            model. `None` (default) shrinks models trained with a
            channel-structured method (`StructuredSTR("channel")`,
            `GMP(..., structure="channel")`); `True` / `False` force it.
            Sequential and functional models only.
        channel_multiple: When shrinking, round each narrowed layer's
            width up to a multiple of this (`keras_str.shrink_channels`).
            `None` (default): the training method's `channel_multiple`
            (the largest, if several), else 1.

    Returns:
        A new Keras model (`model` itself is not changed), or `model`
        rewritten in place.

    Raises:
        ValueError: If `shrink` is not None or a bool, `shrink=True` is asked
            of a model rewritten in place, `channel_multiple` is not a positive
            integer, a subclassed model is passed without `in_place=True`, or
            a copy rebuilt from the model's config does not hold its variables
            (strip it in place then).

    Example:

    >>> dense = keras.Sequential([keras.Input((16,)),
    ...     keras.layers.Dense(32, name="hidden"), keras.layers.Dense(4, name="logits")])
    >>> sparse = keras_str.sparsify(dense, threshold_init=-2.0, weight_decay=5e-4)
    >>> plain = keras_str.strip(sparse)
    >>> type(plain.get_layer("hidden")).__name__
    'Dense'
    >>> plain.save("model_stripped.keras")
    """
    if not in_place and recipe_of(model) is not None:
        # Sparsified in place (a keras-hub model): its config rebuilds it
        # dense, so the copy is rebuilt, sparsified again and stripped.
        return strip(
            _rebuilt_copy(model), in_place=True, shrink=shrink, channel_multiple=channel_multiple
        )
    check_rewritable(model, in_place)
    if shrink not in (None, True, False):
        raise ValueError(
            "Invalid value for argument `shrink`. Expected None, True or "
            f"False. Received: shrink={shrink!r}"
        )
    if shrink and in_place:
        raise ValueError(
            "`shrink=True` rebuilds the model with narrower layers, which a "
            "subclassed model (rewritten in place) cannot be. Pass "
            "`shrink=False`, or build the model with the functional API. "
            "Received: shrink=True, in_place=True"
        )
    if channel_multiple is not None:
        channel_multiple = check_channel_multiple(channel_multiple)
    methods = [layer.method for layer in iter_layers(model) if is_sparse_layer(layer)]
    if shrink is None:
        shrink = not in_place and any(method.removes_channels for method in methods)
    if channel_multiple is None:
        channel_multiple = max(
            [getattr(method, "channel_multiple", 1) for method in methods], default=1
        )

    def replace(layer):
        block = block_spec_for_sparse_layer(layer)
        if block is not None:
            plain = block.keras_class.from_config(_plain_config(layer))
            return plain, block_copier(
                block, _copy_thresholded, _copy_kernel_thresholded, to_sparse=False
            )
        if not is_sparse_layer(layer):
            return None
        thin = _thin_dense_pair(layer)
        if thin is not None:
            return thin
        plain = layer.kernel_spec.keras_class.from_config(_plain_config(layer))
        if isinstance(layer, STRBatchNormalization):
            return plain, _copy_batch_norm_thresholded
        return plain, _copy_thresholded

    if in_place:
        plain = rewrite_in_place(model, replace)
        detach_recipe(plain)
    else:
        plain = clone_with(model, replace)
    _warn_about_empty_kernels(plain)
    if shrink:
        plain = shrink_channels(plain, channel_multiple=channel_multiple)
    return plain


def _rebuilt_copy(model):
    """A copy of a model sparsified in place: rebuilt from its config and recipe, given its variables."""
    from keras_str.transforms.sparsify import replay

    copy = replay(keras.saving.serialize_keras_object(model), recipe_of(model))
    # Built by the same config and rewrite: the same variables, in order.
    pairs = list(zip(copy.weights, model.weights))
    if len(copy.weights) != len(model.weights) or any(
        target.name != source.name or tuple(target.shape) != tuple(source.shape)
        for target, source in pairs
    ):
        raise ValueError(
            f"Cannot copy {type(model).__name__} {model.name!r}: rebuilt from "
            "its config and sparsified again, it does not have the same "
            "variables. Strip it in place instead: "
            "`keras_str.strip(model, in_place=True)`."
        )
    for target, source in pairs:
        assign_copy(target, source)
    return copy


def _warn_about_empty_kernels(model):
    empty = [
        layer.name
        for layer in iter_layers(model)
        if is_kernel_layer(layer)
        and not ops.any(ops.convert_to_tensor(raw_kernel_variable(layer)) != 0)
    ]
    if empty:
        warnings.warn(
            f"Layers {empty} have no nonzero weights left: they pass on only "
            "their bias, cutting the network there. Train with a lower target, "
            "ST-3's `scope=\"sigma\"`, or keep them dense (`keep_dense=`).",
            stacklevel=3,
        )


def _plain_config(layer):
    return {
        key: value
        for key, value in layer.get_config().items()
        if key not in SPARSE_CONFIG_KEYS
    }


def _thin_dense_pair(layer):
    """Two thin `Dense` layers for a low-rank `Dense` kernel, if they hold fewer weights.

    A method that keeps the kernel as factors (`keras_str.LowRankSTR`)
    gives `left @ right` of rank `r`; when `r * (in + out) < in * out` the
    layer becomes `Dense(r, use_bias=False)` then `Dense(units, activation,
    bias)`, in a `keras.Sequential` named like the layer (a model is a
    layer: it goes wherever the layer was). Returns `(pair, copy_weights)`,
    or `None` where one `Dense` with the product kernel is no larger (or
    the layer is not a `Dense`).
    """
    if layer.kernel_spec.keras_class is not keras.layers.Dense or not layer.built:
        return None
    factors = layer.method.factors(layer)
    if factors is None:
        return None
    left, right = factors
    (fan_in, rank), fan_out = left.shape, right.shape[1]
    # Rank 0 keeps one Dense: its zero kernel passes on the bias alone.
    if rank == 0 or rank * (fan_in + fan_out) >= fan_in * fan_out:
        return None
    down = keras.layers.Dense(
        rank, use_bias=False, dtype=layer.dtype_policy, name=f"{layer.name}_down"
    )
    up = keras.layers.Dense.from_config(
        {**_plain_config(layer), "name": f"{layer.name}_up"}
    )
    pair = keras.Sequential([down, up], name=layer.name)

    def copy_factors(str_layer, pair):
        for plain_layer, factor in zip((down, up), (left, right)):
            kernel = raw_kernel_variable(plain_layer)
            kernel.assign(ops.cast(factor, kernel.dtype))
        if bias_variable(str_layer) is not None:
            assign_copy(bias_variable(up), str_layer.bias)

    return pair, copy_factors


def _copy_thresholded(str_layer, plain_layer):
    kernel = raw_kernel_variable(plain_layer)
    kernel.assign(ops.cast(str_layer.thresholded_kernel(), plain_layer.variable_dtype))
    bias = bias_variable(str_layer)
    if bias is not None:
        # The effective bias: 0 in the channels a channel method removed.
        assign_copy(bias_variable(plain_layer), str_layer.bias)
    copy_other_variables(
        str_layer, plain_layer, {kernel.name} | ({bias.name} if bias is not None else set())
    )
    # Matrices the sparse layer trains in sparse sublayers of their own
    # (an untied output projection): the plain layer's variable of that name.
    targets = {v.name: v for v in own_variables(plain_layer)}
    for sublayer in str_layer._layers:
        target = targets.get(sublayer.name)
        if is_sparse_layer(sublayer) and target is not None:
            target.assign(ops.cast(sublayer.thresholded_kernel(), target.dtype))


def _copy_batch_norm_thresholded(str_layer, plain_layer):
    values = {
        "gamma": str_layer.thresholded_kernel(),
        "beta": str_layer.thresholded_beta(),
        "moving_mean": str_layer.moving_mean,
        "moving_variance": str_layer.moving_variance,
    }
    for name, value in values.items():
        target = getattr(plain_layer, name)
        if target is not None:
            target.assign(ops.cast(value, target.dtype))


def _copy_kernel_thresholded(plain_kernel, str_layer):
    plain_kernel.assign(ops.cast(str_layer.thresholded_kernel(), plain_kernel.dtype))


# Mixed precision. The TFLite converter has no float16 kernels for most ops
# (MatMul, BiasAdd, Conv2D, ...): a model that computes in float16 is
# converted through a float32 copy; `precision="float16"` then stores its
# weights as float16 where that is supported.

_HALF_PRECISION = ("float16", "bfloat16")


def as_float32(model):
    """Returns `model` rebuilt to compute in float32, or `model` itself.

    Layers whose dtype policy computes in float16 or bfloat16 (a model built
    under `keras.config.set_dtype_policy("mixed_float16")`) are rebuilt from
    their config with the `"float32"` policy, wrapped layers
    (`Bidirectional`, `TimeDistributed`) included, and get the same weights
    (mixed-precision variables are float32 already). Other layers are copied
    as they are. A model that already computes in float32 is returned
    unchanged.

    Args:
        model: A built Sequential or functional Keras model.

    Returns:
        A Keras model that computes in float32 and predicts what `model`
        predicts, up to float16 rounding.

    Example:

    >>> keras.config.set_dtype_policy("mixed_float16")
    >>> model = build_and_train()
    >>> converter = tf.lite.TFLiteConverter.from_keras_model(as_float32(model))
    """
    half = [layer for layer in iter_layers(model) if _computes_in_half(layer)]
    if not half:
        return model
    if not (
        isinstance(model, keras.Sequential)
        or type(model).__name__ == "Functional"
    ):
        raise ValueError(
            f"Model {model.name!r} computes in "
            f"{half[0].dtype_policy.compute_dtype} (layer {half[0].name!r} "
            f"has dtype policy {half[0].dtype_policy.name!r}), and a "
            f"subclassed model ({type(model).__name__}) cannot be rebuilt in "
            "float32. Create it again after "
            "`keras.config.set_dtype_policy('float32')` and load the weights "
            "(`model.load_weights`). Received: model with dtype policy "
            f"{model.dtype_policy.name!r}"
        )
    check_clonable(model)

    def replace(layer):
        if isinstance(layer, keras.layers.InputLayer) or not any(
            _computes_in_half(sublayer)
            for sublayer in [layer, *iter_layers(layer)]
        ):
            return None
        config = _float32_config(layer.get_config())
        return layer.__class__.from_config(config), _copy_as_float32

    return clone_with(model, replace)


def _computes_in_half(layer):
    if isinstance(layer, keras.layers.InputLayer):
        return False
    policy = getattr(layer, "dtype_policy", None)
    return (
        policy is not None
        and not policy.quantization_mode
        and policy.compute_dtype in _HALF_PRECISION
    )


def _float32_config(config):
    """`config` with every half-precision dtype policy replaced by float32."""
    if isinstance(config, dict):
        config = dict(config)
        dtype = config.get("dtype")
        policy_name = (
            dtype.get("config", {}).get("name")
            if isinstance(dtype, dict)
            and dtype.get("class_name") == "DTypePolicy"
            else dtype
        )
        if isinstance(policy_name, str) and (
            policy_name in _HALF_PRECISION
            or policy_name in ("mixed_float16", "mixed_bfloat16")
        ):
            config["dtype"] = "float32"
        return {
            key: value if key == "dtype" else _float32_config(value)
            for key, value in config.items()
        }
    if isinstance(config, (list, tuple)):
        return type(config)(_float32_config(value) for value in config)
    return config


def _copy_as_float32(old, new):
    new.set_weights(
        [
            to_numpy(value).astype(variable.dtype)
            for value, variable in zip(old.weights, new.weights)
        ]
    )
