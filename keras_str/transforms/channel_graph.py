"""A plain model's channel graph, and the constant each channel carries.

`shrink_channels` reads it: each layer call with its channel kind
(`keras_str.core.channel_kinds`), each tensor's width, and for each tensor
one float per channel, NaN where the channel depends on the input.
"""

import keras
import numpy as np

from keras_str.core.channel_kinds import channel_kind
from keras_str.core.channel_kinds import folds_exactly
from keras_str.core.channel_kinds import pointwise
from keras_str.core.host import to_numpy
from keras_str.layers.base import is_sparse_layer

_LAYERS = keras.layers


class _Node:
    def __init__(self, layer, inputs, outputs):
        self.layer = layer
        self.inputs = inputs
        self.outputs = outputs


class ChannelGraph:
    """The model's layer calls in order, each tensor by id, with its channel count."""

    def __init__(self, model):
        function = model._functional if isinstance(model, keras.Sequential) else model
        if function is None:
            raise ValueError(
                f"Sequential model {model.name!r} has no input shape; build it "
                "with `keras.Input` first."
            )
        self.widths = {}
        self.shapes = {}
        self.nodes = []
        calls = {}
        for depth in sorted(function._nodes_by_depth, reverse=True):
            for node in function._nodes_by_depth[depth]:
                if node.operation is None or node.is_input:
                    continue
                inputs = [self._tensor(t) for t in node.input_tensors]
                outputs = [self._tensor(t) for t in node.outputs]
                self.nodes.append(_Node(node.operation, inputs, outputs))
                calls[id(node.operation)] = calls.get(id(node.operation), 0) + 1
        self.shared = {key for key, count in calls.items() if count > 1}
        self.model_inputs = [id(t) for t in function.inputs]
        self.model_outputs = [id(t) for t in function.outputs]
        self.consumers = {}
        for node in self.nodes:
            for tensor in node.inputs:
                self.consumers.setdefault(tensor, []).append(node)
        for node in self.nodes:
            node.kind, node.blocked = self._classify(node)

    def _tensor(self, tensor):
        shape = tensor.shape
        self.widths[id(tensor)] = shape[-1] if shape and shape[-1] is not None else 0
        self.shapes[id(tensor)] = tuple(shape)
        return id(tensor)

    def _classify(self, node):
        """`(kind, None)`, or `(None, why its channels stay)`."""
        layer = node.layer
        if is_sparse_layer(layer):
            return None, f"layer {layer.name!r} is sparse (`keras_str.strip` the model first)"
        return channel_kind(
            layer,
            [self.shapes[t] for t in node.inputs],
            outputs=len(node.outputs),
            calls=2 if id(layer) in self.shared else 1,
        )


# Constants: for each tensor, one float per channel, NaN where the channel
# depends on the input.


def kernel_and_bias(layer):
    kernel = to_numpy(layer.kernel).astype(np.float64)
    bias = (
        to_numpy(layer.bias).astype(np.float64)
        if getattr(layer, "use_bias", False)
        else np.zeros(kernel.shape[-1])
    )
    return kernel, bias


def _apply(function, values):
    """`function` on a (1, C) batch of constants; NaN channels stay NaN."""
    known = np.nan_to_num(values)
    result = to_numpy(
        function(keras.ops.convert_to_tensor(known[None, :].astype("float32")))
    )[0].astype(np.float64)
    return np.where(np.isnan(values), np.nan, result)


def propagate_constants(graph):
    constants = {t: np.full(graph.widths[t], np.nan) for t in graph.widths}
    for node in graph.nodes:
        layer, kind = node.layer, node.kind
        if kind is None:
            continue
        out = node.outputs[0]
        values = [constants[t] for t in node.inputs]
        if kind == "kernel":
            constants[out] = _kernel_constants(layer, values[0])
        elif kind == "depthwise":
            constants[out] = _depthwise_constants(layer, values[0])
        elif kind == "batch_norm":
            constants[out] = _batch_norm_constants(layer, values[0])
        elif kind == "preserving":
            constants[out] = values[0]
        elif kind == "padding":
            # Zeros padded around a constant channel keep it constant only if 0.
            constants[out] = np.where(values[0] == 0, 0.0, np.nan)
        elif kind == "elementwise":
            constants[out] = _apply(layer, values[0])
        elif kind == "merge":
            if all(v.shape == values[0].shape for v in values):
                merge = next(f for c, f in _MERGE_FUNCTIONS if isinstance(layer, c))
                constants[out] = merge(np.stack(values))
        elif kind == "concatenate":
            axis = layer.axis % len(layer.output.shape)
            if axis == len(layer.output.shape) - 1:
                constants[out] = np.concatenate(values)
        elif kind == "flatten":
            features = graph.widths[out]
            width = graph.widths[node.inputs[0]]
            if width and features % width == 0:
                constants[out] = np.tile(values[0], features // width)
    return constants


# NaN in, NaN out: an input-dependent channel stays input-dependent.
_MERGE_FUNCTIONS = (
    (_LAYERS.Add, lambda v: v.sum(axis=0)),
    (_LAYERS.Subtract, lambda v: v[0] - v[1]),
    (_LAYERS.Multiply, lambda v: v.prod(axis=0)),
    (_LAYERS.Average, lambda v: v.mean(axis=0)),
    (_LAYERS.Maximum, lambda v: v.max(axis=0)),
    (_LAYERS.Minimum, lambda v: v.min(axis=0)),
)


def _kernel_constants(layer, inputs):
    kernel, bias = kernel_and_bias(layer)
    if not pointwise(layer.activation):
        return np.full(kernel.shape[-1], np.nan)
    used = np.any(kernel != 0, axis=tuple(range(kernel.ndim - 2)))  # (in, out)
    if folds_exactly(layer):
        foldable = ~np.isnan(inputs)
    else:
        foldable = inputs == 0
    constant = ~np.any(used & ~foldable[:, None], axis=0)
    summed = kernel.sum(axis=tuple(range(kernel.ndim - 2)))
    pre = np.nan_to_num(inputs) @ np.where(used, summed, 0.0) + bias
    return np.where(constant, _apply(layer.activation, pre), np.nan)


def _depthwise_constants(layer, inputs):
    kernel, bias = kernel_and_bias(layer)
    taps = kernel.reshape(-1, kernel.shape[-2])  # (taps, channels)
    dead = ~np.any(taps != 0, axis=0)
    foldable = ~np.isnan(inputs) if folds_exactly(layer) else inputs == 0
    pre = np.nan_to_num(inputs) * taps.sum(axis=0) + bias
    return np.where(dead | foldable, _apply(layer.activation, pre), np.nan)


def _batch_norm_constants(layer, inputs):
    def numpy(variable):
        return to_numpy(variable).astype(np.float64)

    scale = 1.0 / np.sqrt(numpy(layer.moving_variance) + layer.epsilon)
    if layer.scale:
        scale = scale * numpy(layer.gamma)
    shift = numpy(layer.beta) if layer.center else 0.0
    # A channel scaled by 0 (thresholded by STRBatchNormalization) is its
    # shift whatever comes in.
    scaled = np.where(scale == 0, 0.0, (inputs - numpy(layer.moving_mean)) * scale)
    return scaled + shift
