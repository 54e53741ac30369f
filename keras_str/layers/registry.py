"""The one table of layer types keras-str can sparsify, and how to walk a model for them.

Each entry says which Keras layer a sparse layer stands in for, where its
kernel's regularizer lives, how many trailing kernel axes index output
channels, and its fans. `sparsify`, `strip`, the report, weight decay and
the methods all read this table; supporting a new layer type is one entry
(`register_sparse_layer`) plus one sparse class.
"""

import dataclasses
import math

import keras


def keras_fans(kernel_shape):
    """(fan_in, fan_out) as Keras's initializers compute them for this shape."""
    if len(kernel_shape) == 1:
        return kernel_shape[0], kernel_shape[0]
    if len(kernel_shape) == 2:
        return kernel_shape[0], kernel_shape[1]
    receptive_field = math.prod(kernel_shape[:-2])
    return receptive_field * kernel_shape[-2], receptive_field * kernel_shape[-1]


@dataclasses.dataclass(frozen=True)
class SparseLayerSpec:
    """How keras-str treats one Keras kernel layer type.

    Attributes:
        keras_class: The plain Keras layer (what `strip` produces).
        sparse_class: Its sparse-trainable subclass (what `sparsify` makes).
        regularizer_attribute: The constructor argument / attribute holding
            the kernel's regularizer.
        output_channel_ndim: Number of trailing kernel axes that index output
            channels (2 for DepthwiseConv2D: in_channels x multiplier).
        fans: `kernel_shape -> (fan_in, fan_out)`; Keras's convention.
    """

    keras_class: type
    sparse_class: type
    regularizer_attribute: str = "kernel_regularizer"
    output_channel_ndim: int = 1
    fans: object = keras_fans


_REGISTRY = []


def register_sparse_layer(spec):
    """Adds (or replaces) the entry for `spec.keras_class`.

    Users' own layers opt in this way: subclass the layer with
    `keras_str.layers.SparseKernelLayer` first in the bases (its raw
    kernel must be a weight named `"kernel"`, used through the `kernel`
    attribute in `call()`), then register the pair.

    Example:

    >>> class SparseMyDense(keras_str.layers.SparseKernelLayer, MyDense):
    ...     pass
    >>> keras_str.layers.register_sparse_layer(
    ...     keras_str.layers.SparseLayerSpec(MyDense, SparseMyDense))
    """
    if not isinstance(spec, SparseLayerSpec):
        raise ValueError(
            "Expected a `keras_str.layers.SparseLayerSpec`. "
            f"Received: spec={spec!r}"
        )
    _REGISTRY[:] = [s for s in _REGISTRY if s.keras_class is not spec.keras_class]
    _REGISTRY.append(spec)


def registered_specs():
    return tuple(_REGISTRY)


def spec_for_keras_layer(layer):
    """The entry whose Keras class is exactly `type(layer)`, or `None`."""
    for spec in _REGISTRY:
        if type(layer) is spec.keras_class:
            return spec
    return None


def spec_for_sparse_class(sparse_class):
    """The entry of a sparse class, by the first registered Keras class in its MRO."""
    for cls in sparse_class.__mro__:
        for spec in _REGISTRY:
            if cls is spec.keras_class:
                return spec
    raise ValueError(
        f"{sparse_class.__name__} derives from none of the Keras layers "
        "keras-str can sparsify "
        f"({', '.join(s.keras_class.__name__ for s in _REGISTRY)}); register "
        "it with `keras_str.layers.register_sparse_layer`."
    )


def is_sparse_layer(layer):
    from keras_str.layers.base import SparseKernelLayer

    return isinstance(layer, SparseKernelLayer)


def is_kernel_layer(layer):
    """Whether `layer` is a registered Keras kernel layer (plain or sparse)."""
    return is_sparse_layer(layer) or any(
        isinstance(layer, spec.keras_class) for spec in _REGISTRY
    )


def spec_for_layer(layer):
    """The entry for a plain or sparse kernel layer (by MRO), or `None`."""
    for cls in type(layer).__mro__:
        for spec in _REGISTRY:
            if cls is spec.keras_class:
                return spec
    return None


def raw_kernel_variable(layer):
    """The kernel variable a kernel layer (plain or sparse) trains."""
    kernel = getattr(layer, "_kernel", None)
    if kernel is None:
        kernel = layer.kernel
    return kernel


def kernel_regularizer_attribute(layer):
    spec = spec_for_layer(layer)
    return "kernel_regularizer" if spec is None else spec.regularizer_attribute


def iter_layers(model):
    """Yields every layer of `model`, descending into nested models."""
    for layer in getattr(model, "layers", [model]):
        if isinstance(layer, keras.Model):
            yield from iter_layers(layer)
        else:
            yield layer


def _register_builtin_layers():
    from keras_str.layers.conv import STRConv1D
    from keras_str.layers.conv import STRConv2D
    from keras_str.layers.dense import STRDense
    from keras_str.layers.depthwise_conv import STRDepthwiseConv2D

    for spec in (
        SparseLayerSpec(keras.layers.Dense, STRDense),
        SparseLayerSpec(keras.layers.Conv1D, STRConv1D),
        SparseLayerSpec(keras.layers.Conv2D, STRConv2D),
        SparseLayerSpec(
            keras.layers.DepthwiseConv2D,
            STRDepthwiseConv2D,
            regularizer_attribute="depthwise_regularizer",
            output_channel_ndim=2,
        ),
    ):
        register_sparse_layer(spec)
