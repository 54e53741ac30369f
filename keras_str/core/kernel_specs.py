"""The one table of layer types keras-str can sparsify: kernel layers and blocks.

Each entry says which Keras layer a sparse layer stands in for, where its
kernel's regularizer lives, how many trailing kernel axes index output
channels, and its fans. `sparsify`, `strip`, the report, weight decay and
the methods all read this table; supporting a new layer type is one entry
(`register_sparse_layer`, next to the sparse class) plus the class.
Nothing here imports a layer: the layer modules register themselves.
"""

import dataclasses
import math

import keras

from keras_str.core.initializer_scale import initializer_std
from keras_str.core.initializer_scale import keras_fans


def kernel_fans(layer):
    """Keras's fans for the layer's raw kernel shape (the default entry)."""
    return keras_fans(tuple(raw_kernel_variable(layer).shape))


@dataclasses.dataclass(frozen=True)
class SparseLayerSpec:
    """How keras-str treats one Keras kernel layer type.

    Attributes:
        keras_class: The plain Keras layer (what `strip` produces).
        sparse_class: Its sparse-trainable subclass (what `sparsify` makes).
        kernel_attribute: The attribute the parent's `call()` reads its
            kernel from (`"kernel"`; `"embeddings"` for `Embedding`); the
            raw variable is the weight of that name, kept at
            `"_" + kernel_attribute`.
        regularizer_attribute: The constructor argument / attribute holding
            the kernel's regularizer.
        output_channel_ndim: Number of trailing kernel axes that index output
            channels (2 for DepthwiseConv2D: in_channels x multiplier).
        channel_axes: Optional `layer -> tuple of kernel axes` indexing
            output channels, for kernels whose output axes are not trailing
            (transposed convs: `(..., out, in)`; `EinsumDense`: from its
            equation). Overrides `output_channel_ndim`.
        fans: `layer -> (fan_in, fan_out)` of its kernel; Keras's convention.
        initializer_attribute: The attribute holding the kernel's
            initializer.
        init_scale: Optional `layer -> float` overriding `scale(layer)`.
        on_request: Whether `sparsify` converts the layer only when a
            method asks for it (`BatchNormalization`, whose channel scales
            channel STR thresholds), rather than every layer of the class.
            A plain layer of such a class is not a kernel layer.
        adds_only: Whether the layer adds its kernel to its input instead of
            multiplying (a position embedding): it costs no multiply-adds.
        n_m_axis: The kernel axis the layer sums its inputs over, along
            which N:M groups run (`-2` for Dense and convolutions), or a
            `layer -> axis` callable; `None` (default) where the layer
            cannot hold N:M sparsity (depthwise filters, embedding tables).
    """

    keras_class: type
    sparse_class: type
    kernel_attribute: str = "kernel"
    regularizer_attribute: str = "kernel_regularizer"
    output_channel_ndim: int = 1
    channel_axes: object = None
    fans: object = kernel_fans
    initializer_attribute: str = "kernel_initializer"
    init_scale: object = None
    on_request: bool = False
    adds_only: bool = False
    n_m_axis: object = None

    def output_axes(self, layer):
        """The kernel axes that index output channels, ascending."""
        rank = len(raw_kernel_variable(layer).shape)
        if self.channel_axes is not None:
            return tuple(sorted(a % rank for a in self.channel_axes(layer)))
        return tuple(range(rank - self.output_channel_ndim, rank))

    def input_axis(self, layer):
        """The non-negative kernel axis N:M groups run along, or `None` where there is none."""
        axis = self.n_m_axis(layer) if callable(self.n_m_axis) else self.n_m_axis
        if axis is None:
            return None
        return axis % len(raw_kernel_variable(layer).shape)

    def channel_shape(self, layer):
        """Shape of one value per output channel, broadcastable to the kernel.

        Trailing output axes give the short form (`(units,)` for Dense);
        others keep the kernel's rank with 1 on the other axes.
        """
        shape = tuple(raw_kernel_variable(layer).shape)
        axes = self.output_axes(layer)
        if axes == tuple(range(len(shape) - len(axes), len(shape))):
            return shape[len(shape) - len(axes) :]
        return tuple(d if i in axes else 1 for i, d in enumerate(shape))

    def scale(self, layer):
        """The standard deviation of a freshly initialised kernel (ST-3's sigma).

        What the layer's own initializer draws (He-initialised layers are
        wider than Glorot ones), else Glorot's `sqrt(2 / (fan_in + fan_out))`.
        """
        if self.init_scale is not None:
            return float(self.init_scale(layer))
        fans = self.fans(layer)
        initializer = getattr(layer, self.initializer_attribute, None)
        std = initializer_std(initializer, fans)
        if std is None:
            std = math.sqrt(2.0 / (fans[0] + fans[1]))
        return std


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


def spec_for_keras_layer(layer, on_request=False):
    """The entry whose Keras class is exactly `type(layer)`, or `None`.

    Entries converted only on request count only with `on_request=True`.
    """
    keras_class = _ALIASES.get(_full_name(type(layer)), type(layer))
    for spec in _REGISTRY:
        if keras_class is spec.keras_class and (on_request or not spec.on_request):
            return spec
    return None


# Subclasses that only re-export a registered Keras layer under another
# package's name; they are sparsified, and stripped, as that layer. Named,
# not imported: keras-str does not import keras-hub.
_ALIASES = {
    "keras_hub.src.layers.modeling.reversible_embedding.ReversibleEmbedding": (
        keras.layers.ReversibleEmbedding
    ),
}


def _full_name(cls):
    return f"{cls.__module__}.{cls.__qualname__}"


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


def spec_for_layer(layer):
    """The entry for a plain or sparse kernel layer (by MRO), or `None`."""
    for cls in type(layer).__mro__:
        for spec in _REGISTRY:
            if cls is spec.keras_class:
                return spec
    return None


def raw_kernel_variable(layer):
    """The kernel variable a kernel layer (plain or sparse) trains."""
    spec = spec_for_layer(layer)
    attribute = "kernel" if spec is None else spec.kernel_attribute
    kernel = getattr(layer, "_" + attribute, None)
    if kernel is None:
        kernel = getattr(layer, attribute)
    return kernel


def bias_variable(layer):
    """The layer's bias variable, or `None`."""
    if isinstance(getattr(type(layer), "bias", None), property):
        # Sparse layers compute with an effective bias; the variable is `_bias`.
        return getattr(layer, "_bias", None)
    return getattr(layer, "bias", None)


def kernel_regularizer_attribute(layer):
    spec = spec_for_layer(layer)
    return "kernel_regularizer" if spec is None else spec.regularizer_attribute


@dataclasses.dataclass(frozen=True)
class SparseBlockSpec:
    """A Keras layer whose kernels live in sublayers or cells (`MultiHeadAttention`, `LSTM`).

    Attributes:
        keras_class: The plain Keras layer.
        sparse_class: Its subclass that builds sparse sublayers; it takes
            `method=` and lists them in `sparse_sublayers()`.
        sublayer_attributes: The attributes holding the kernel sublayers, in
            both classes.
        kernel_variables: Pairs `(plain_path, sparse_path)` of dotted
            attribute paths: a kernel variable of the plain layer
            (`"cell.kernel"`) and the sparse kernel layer standing for it
            (`"cell.kernel_layer"`).
        other_variables: Dotted paths of the other variables (biases), the
            same in both classes.
    """

    keras_class: type
    sparse_class: type
    sublayer_attributes: tuple = ()
    kernel_variables: tuple = ()
    other_variables: tuple = ()


_BLOCKS = []


def register_sparse_block(spec):
    """Adds (or replaces) the entry of a layer whose kernels are sublayers."""
    if not isinstance(spec, SparseBlockSpec):
        raise ValueError(
            "Expected a `keras_str.layers.SparseBlockSpec`. "
            f"Received: spec={spec!r}"
        )
    _BLOCKS[:] = [s for s in _BLOCKS if s.keras_class is not spec.keras_class]
    _BLOCKS.append(spec)


def block_spec_for_keras_layer(layer):
    """The block entry whose Keras class is exactly `type(layer)`, or `None`."""
    for spec in _BLOCKS:
        if type(layer) is spec.keras_class:
            return spec
    return None


def block_spec_for_sparse_layer(layer):
    """The block entry whose sparse class is exactly `type(layer)`, or `None`."""
    for spec in _BLOCKS:
        if type(layer) is spec.sparse_class:
            return spec
    return None
