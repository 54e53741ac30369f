"""Dense Keras model -> the same architecture with STR layers."""

import keras

from keras_str.cloning import check_clonable
from keras_str.cloning import clone_with
from keras_str.layers.mapping import STR_LAYER_FOR
from keras_str.layers.str_layer import DEFAULT_THRESHOLD_INIT
from keras_str.methods import get_method
from keras_str.model_utils import iter_layers
from keras_str.model_utils import raw_kernel_variable
from keras_str.weight_decay import apply_weight_decay


def sparsify(
    model,
    *,
    threshold_init=DEFAULT_THRESHOLD_INIT,
    threshold_fn="sigmoid",
    threshold_granularity="layer",
    weight_decay=None,
    keep_dense=None,
    method=None,
):
    """Returns `model` rebuilt with sparse-trainable layers in place of its kernel layers.

    Every `Dense`, `Conv1D`, `Conv2D` and `DepthwiseConv2D` (exactly those
    classes; custom subclasses are left alone) becomes its STR counterpart
    with the same config and weights; other layers are copied with their
    weights. The new model computes the dense model's outputs up to the
    initial threshold `g(threshold_init)` (`~4.5e-5` by default; with
    `threshold_init=-100` the outputs are identical).

    Args:
        model: A built Sequential or functional Keras 3 model, e.g. from
            `keras.applications`. Nested models are rewritten too.
        threshold_init: Initial raw threshold parameter `s` of every STR layer.
        threshold_fn: `"sigmoid"`, `"exp"` or a callable `g(s)`.
        threshold_granularity: `"layer"`, `"channel"` or `"weight"`.
        weight_decay: If given, `keras_str.apply_weight_decay` is applied to
            the new model with this PyTorch-style lambda.
        keep_dense: Layers to leave dense: a list of layer names, or a
            predicate `fn(layer) -> bool`. Common: the first conv and the
            classifier.
        method: The sparsity method every new layer uses: `None` (plain
            STR), `keras_str.STR(target_sparsity, schedule)`,
            `keras_str.ST3(...)` or `keras_str.GMP(...)`. Scheduled methods
            need `keras_str.UpdateSparsity()` in `fit()`'s callbacks. The
            `threshold_*` arguments configure STR only.

    Returns:
        A new Keras model; `model` itself is not changed.

    Example:

    >>> dense = keras.applications.MobileNet(weights=None, input_shape=(96, 96, 3))
    >>> sparse = keras_str.sparsify(
    ...     dense, weight_decay=5e-5, keep_dense=["conv1", "predictions"])
    >>> st3 = keras_str.sparsify(
    ...     dense, method=keras_str.ST3(0.9, keras_str.PolynomialSchedule(0, 5000)))
    """
    check_clonable(model)
    should_keep_dense = _keep_dense_predicate(model, keep_dense)
    str_options = {
        "method": keras.saving.serialize_keras_object(get_method(method)),
        "threshold_init": threshold_init,
        "threshold_fn": threshold_fn,
        "threshold_granularity": threshold_granularity,
    }

    def replace(layer):
        str_class = STR_LAYER_FOR.get(type(layer))
        if str_class is None or should_keep_dense(layer):
            return None
        return str_class.from_config({**layer.get_config(), **str_options}), _copy_into_str

    sparse_model = clone_with(model, replace)
    if weight_decay is not None:
        apply_weight_decay(sparse_model, weight_decay)
    return sparse_model


def _copy_into_str(dense_layer, str_layer):
    raw_kernel_variable(str_layer).assign(raw_kernel_variable(dense_layer))
    if dense_layer.use_bias:
        str_layer.bias.assign(dense_layer.bias)


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
