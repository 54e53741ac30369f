"""How Keras layers carry channels: the taxonomy the channel graph walks.

Read by `transforms.shrink` (which removes dead channels) and
`methods.channel_macs` (which counts, in-step, the multiply-adds they
cost), so both see one graph: `channel_kind` says, for one layer call,
how its output channels follow from its input channels.
"""

import keras

from keras_str.core.kernel_specs import spec_for_layer

_LAYERS = keras.layers

# Each output channel is one filter over all input channels.
KERNEL_LAYERS = (_LAYERS.Dense, _LAYERS.Conv1D, _LAYERS.Conv2D, _LAYERS.Conv3D)
# Output channel i is input channel i filtered (depth multiplier 1).
DEPTHWISE_LAYERS = (_LAYERS.DepthwiseConv1D, _LAYERS.DepthwiseConv2D)

# Channel i in, channel i out, and a constant channel stays that constant.
CHANNEL_PRESERVING = (
    _LAYERS.Dropout,
    _LAYERS.SpatialDropout1D,
    _LAYERS.SpatialDropout2D,
    _LAYERS.SpatialDropout3D,
    _LAYERS.GaussianNoise,
    _LAYERS.GaussianDropout,
    _LAYERS.AlphaDropout,
    _LAYERS.MaxPooling1D,
    _LAYERS.MaxPooling2D,
    _LAYERS.MaxPooling3D,
    _LAYERS.AveragePooling1D,
    _LAYERS.AveragePooling2D,
    _LAYERS.AveragePooling3D,
    _LAYERS.GlobalAveragePooling1D,
    _LAYERS.GlobalAveragePooling2D,
    _LAYERS.GlobalAveragePooling3D,
    _LAYERS.GlobalMaxPooling1D,
    _LAYERS.GlobalMaxPooling2D,
    _LAYERS.GlobalMaxPooling3D,
    _LAYERS.UpSampling1D,
    _LAYERS.UpSampling2D,
    _LAYERS.UpSampling3D,
    _LAYERS.Cropping1D,
    _LAYERS.Cropping2D,
    _LAYERS.Cropping3D,
    _LAYERS.Identity,
)
# Channel i in, channel i out; a constant channel stays constant only if 0.
PADDING = (_LAYERS.ZeroPadding1D, _LAYERS.ZeroPadding2D, _LAYERS.ZeroPadding3D)
# Elementwise functions of one input: the constant's image is computed.
ELEMENTWISE = (
    _LAYERS.Activation,
    _LAYERS.ReLU,
    _LAYERS.LeakyReLU,
    _LAYERS.ELU,
)
MERGES = (
    _LAYERS.Add,
    _LAYERS.Subtract,
    _LAYERS.Multiply,
    _LAYERS.Average,
    _LAYERS.Maximum,
    _LAYERS.Minimum,
)


def computes_as(layer):
    """The Keras class whose computation `layer` runs.

    Its own class, or the Keras class a registered sparse class stands in
    for (`STRDense` computes as `Dense`). A subclass of either may compute
    something else with its kernel, so it computes as itself.
    """
    spec = spec_for_layer(layer)
    if spec is not None and type(layer) is spec.sparse_class:
        return spec.keras_class
    return type(layer)


def pointwise(activation):
    """Whether an activation acts on each channel alone (softmax does not)."""
    return "softmax" not in getattr(activation, "__name__", "")


def folds_exactly(layer):
    """Whether every output of a kernel or depthwise layer sees every kernel tap on real input.

    Then a constant input channel folds into the bias; with `"same"`
    padding only a zero one does (the borders see fewer taps).
    """
    if issubclass(computes_as(layer), _LAYERS.Dense):
        return True
    return layer.padding == "valid" or all(k == 1 for k in layer.kernel_size)


def _channels_last(layer):
    return getattr(layer, "data_format", "channels_last") == "channels_last"


def producer_kind(layer):
    """`"kernel"` or `"depthwise"` where `layer` makes its output channels with filters that can be narrowed, else `None`."""
    cls = computes_as(layer)
    if not _channels_last(layer):
        return None
    if cls in KERNEL_LAYERS and getattr(layer, "groups", 1) == 1:
        return "kernel"
    if (
        cls in DEPTHWISE_LAYERS
        and layer.depth_multiplier == 1
        and pointwise(layer.activation)
    ):
        return "depthwise"
    return None


def channel_kind(layer, input_shapes, outputs=1, calls=1):
    """How channels flow through one call of `layer`, on the last axis.

    Args:
        layer: The layer called.
        input_shapes: The shapes of the call's input tensors.
        outputs: How many tensors the call returns.
        calls: How many times the model calls `layer`.

    Returns:
        `(kind, None)`, `kind` one of `"kernel"`, `"depthwise"`,
        `"batch_norm"`, `"preserving"`, `"padding"`, `"elementwise"`,
        `"merge"`, `"concatenate"`, `"flatten"`; or `(None, why)` where the
        call keeps its channels as they are. A kernel layer's activation may
        mix its outputs (a softmax classifier): it is still `"kernel"`, its
        inputs can still go.
    """
    if not input_shapes:
        return None, f"layer {layer.name!r} has no tensor inputs"
    kind = _kind(layer, input_shapes)
    if kind is None:
        return None, f"{type(layer).__name__} layer {layer.name!r} keeps its channels"
    if calls != 1:
        return None, f"layer {layer.name!r} is shared (called more than once)"
    if outputs != 1:
        return None, f"layer {layer.name!r} has several outputs"
    if kind == "merge" and (
        len({shape[-1] for shape in input_shapes}) != 1
        or len({len(shape) for shape in input_shapes}) != 1
    ):
        return None, f"{layer.name!r} broadcasts its inputs"
    if kind not in ("merge", "concatenate") and len(input_shapes) != 1:
        return None, f"layer {layer.name!r} has several inputs"
    return kind, None


def _kind(layer, input_shapes):
    cls = computes_as(layer)
    if cls in KERNEL_LAYERS + DEPTHWISE_LAYERS:
        return producer_kind(layer)
    rank = len(input_shapes[0])
    channels_last = _channels_last(layer)
    if cls is _LAYERS.BatchNormalization:
        return "batch_norm" if layer.axis % rank == rank - 1 else None
    if isinstance(layer, PADDING):
        return "padding" if channels_last else None
    if isinstance(layer, CHANNEL_PRESERVING):
        return "preserving" if channels_last else None
    if isinstance(layer, ELEMENTWISE):
        return "elementwise" if pointwise(getattr(layer, "activation", None)) else None
    if isinstance(layer, MERGES):
        return "merge"
    if isinstance(layer, _LAYERS.Concatenate):
        ranks = {len(shape) for shape in input_shapes}
        return "concatenate" if len(ranks) == 1 and layer.axis % rank == rank - 1 else None
    if isinstance(layer, _LAYERS.Flatten):
        return "flatten" if channels_last else None
    return None
