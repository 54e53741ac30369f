"""How many multiply-adds each kernel weight of a layer costs per example.

The report's MACs and the methods' MACs budgets both count with this.
A layer that knows its own count (a recurrent cell's `KernelWeight`, used
once per time step) says so in a `uses_per_example` attribute.
"""

import math

import keras

from keras_str.core.kernel_specs import raw_kernel_variable
from keras_str.core.kernel_specs import spec_for_layer

_TRANSPOSED_CONVS = (
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
)


def _input_shape(layer):
    try:
        return tuple(layer.input.shape)
    except (AttributeError, ValueError):
        pass
    # Layers called outside a functional graph remember their build shape.
    shapes = getattr(layer, "_build_shapes_dict", None) or {}
    if len(shapes) == 1:
        return tuple(next(iter(shapes.values())))
    return None


def uses_per_weight(layer, per_position=False):
    """How many multiply-adds each kernel weight costs per example, or `None`.

    The output positions one kernel entry contributes to: 1 for a Dense layer
    on vectors, the output's spatial size for a convolution, the input's for
    a transposed one, the time steps for an RNN cell's kernel, 0 for an
    embedding lookup (1 per token more for a tied embedding that also
    projects to logits); for a BatchNormalization's channel scale, the
    multiply-adds of the filter producing the channel (what its removal
    saves). `None` when the shapes are not known (unknown spatial
    dimensions, a layer not yet called).

    With `per_position=True`, a Dense or EinsumDense layer's (or a tied
    embedding's projection's) unknown dimensions other than the batch count
    as 1: the cost per token of a transformer's projections, whose sequence
    length is only known at run time. Convolutions stay `None`.
    """
    if isinstance(layer, keras.layers.Embedding):
        return _reverse_uses(layer, per_position)
    spec = spec_for_layer(layer)
    if spec is not None and spec.adds_only:
        return 0
    if isinstance(layer, keras.layers.BatchNormalization):
        return _producer_macs_per_channel(layer)
    if hasattr(layer, "uses_per_example"):
        # A cell kernel: used once per time step (set when its RNN builds).
        return layer.uses_per_example
    input_shape = _input_shape(layer)
    if input_shape is None:
        return None
    if per_position and isinstance(layer, (keras.layers.Dense, keras.layers.EinsumDense)):
        input_shape = input_shape[:1] + tuple(d or 1 for d in input_shape[1:])
    channels_first = getattr(layer, "data_format", None) == "channels_first"
    if isinstance(layer, _TRANSPOSED_CONVS):
        # Every input position scatters the whole kernel.
        spatial = input_shape[2:] if channels_first else input_shape[1:-1]
        return None if None in spatial else int(math.prod(spatial))
    if isinstance(layer, keras.layers.EinsumDense):
        return _einsum_positions(layer.equation, input_shape)
    output_shape = tuple(layer.compute_output_shape(input_shape))[1:]
    if any(dim is None for dim in output_shape):
        return None
    # Each output entry takes one kernel column: outputs / output channels.
    kernel_shape = tuple(raw_kernel_variable(layer).shape)
    channels = math.prod(kernel_shape[axis] for axis in spec.output_axes(layer))
    return int(math.prod(output_shape)) // channels


def has_unknown_positions(layer):
    """Whether `layer`'s input has unknown dimensions besides the batch."""
    input_shape = _input_shape(layer)
    return input_shape is not None and None in tuple(input_shape)[1:]


def _reverse_uses(layer, per_position):
    """Multiply-adds per table entry of an embedding: its projections to logits.

    A lookup costs none; a tied `ReversibleEmbedding` called with
    `reverse=True` in a layer graph multiplies each table entry once per
    position it projects. Calls outside a graph leave no trace: 0.
    """
    if not getattr(layer, "tie_weights", False):
        return 0
    uses = 0
    for node in getattr(layer, "_inbound_nodes", ()):
        if not node.arguments.kwargs.get("reverse"):
            continue
        shape = tuple(node.arguments.args[0].shape)[1:-1]
        if per_position:
            shape = tuple(d or 1 for d in shape)
        if None in shape:
            return None
        uses += int(math.prod(shape))
    return uses


def _producer_macs_per_channel(layer):
    """A thresholded BatchNormalization's channel costs its producer's filter: those MACs."""
    producer = layer.producer() if hasattr(layer, "producer") else None
    if producer is None or spec_for_layer(producer) is None or isinstance(
        producer, keras.layers.BatchNormalization
    ):
        return None
    uses = uses_per_weight(producer)
    if uses is None:
        return None
    spec = spec_for_layer(producer)
    kernel_shape = tuple(raw_kernel_variable(producer).shape)
    channels = math.prod(kernel_shape[axis] for axis in spec.output_axes(producer))
    return uses * (math.prod(kernel_shape) // channels)


def _einsum_positions(equation, input_shape):
    """Output entries a kernel entry contributes to: the output's own axes."""
    if "..." in equation:
        return None
    inputs, output = equation.split("->")
    input_letters, kernel_letters = inputs.split(",")
    sizes = dict(zip(input_letters, input_shape))
    # The first input axis is the batch.
    own = [sizes.get(letter) for letter in output
           if letter not in kernel_letters and letter != input_letters[0]]
    if any(size is None for size in own):
        return None
    return int(math.prod(own))
