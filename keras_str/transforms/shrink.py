"""Plain model with dead channels -> a narrower dense model with the same outputs.

Channel-structured sparsity (`StructuredSTR("channel")`, `GMP(...,
structure="channel")`) leaves whole filters and units at zero. Zeros in a
kernel make a file smaller but no runtime faster; removing the channels makes
every layer on their path narrower, which any runtime runs faster.

A channel can go only where its removal is exact:

- A dead filter does not output zero but a constant (its bias, then the
  activation, then BatchNormalization's shift...). Every consumer that uses
  the channel must absorb that constant: `Dense` and convolutions whose
  window never sees padding (`"valid"`, or kernel size 1) fold it into their
  bias; a `"same"`-padded convolution folds it only when it is 0 (its
  borders see the zero padding, so the constant is not constant there).
- A channel some consumer does not use at all (its slice of the consumer's
  kernel is zero, e.g. a dead depthwise filter) can go whatever it holds.
- Layers that map channel i to channel i (BatchNormalization, activations,
  pooling, dropout, depthwise convolutions) are narrowed along; residual
  `Add`s tie the channels of their inputs; `Concatenate` joins them;
  `Flatten -> Dense` maps a channel to its features.
- Anywhere else (model inputs and outputs, reshapes, layers keras-str does
  not know, shared layers), channels stay, with their zeros; `shrink_channels`
  says where.

`channel_multiple` keeps a few removable channels back so that every
narrowed layer's width is a multiple of it: runtimes compute channels in
tiles (XNNPACK's float kernels 8 or 16 output channels on x86 and ARM), so
13 channels cost what 16 do.
"""

import warnings

import keras
import numpy as np

from keras_str.core.channel_kinds import CHANNEL_PRESERVING
from keras_str.core.channel_kinds import ELEMENTWISE
from keras_str.core.channel_kinds import MERGES
from keras_str.core.channel_kinds import PADDING
from keras_str.host import to_numpy
from keras_str.methods.base import check_channel_multiple
from keras_str.transforms.cloning import check_clonable
from keras_str.transforms.cloning import clone_with

_LAYERS = keras.layers

_CONVOLUTIONS = (_LAYERS.Conv1D, _LAYERS.Conv2D, _LAYERS.Conv3D)
_DEPTHWISE = (_LAYERS.DepthwiseConv1D, _LAYERS.DepthwiseConv2D)
def shrink_channels(model, *, channel_multiple=1, check=True):
    """Returns `model` with its removable dead channels removed.

    A channel (a conv filter, a Dense unit) whose weights are all zero, and
    every channel it feeds one-to-one (BatchNormalization, activation,
    pooling, depthwise filters, residual adds, concatenations), is removed
    where that changes no output: the constant it carries is folded into the
    consumers' biases. The result is a smaller plain Keras model (fewer
    filters and units) that predicts what `model` predicts and runs faster
    on any runtime. Dead channels that cannot be removed exactly stay as
    zeros, and a warning says where and why. `keras_str.strip` calls this
    for models trained with channel-structured methods.

    Supports `channels_last` models built with the functional or Sequential
    API (a nested model is kept as it is).

    Args:
        model: A plain (stripped) Sequential or functional Keras model.
        channel_multiple: Round each narrowed layer's channels up to a
            multiple of this (keeping some dead channels as zeros), as
            MobileNet's `make_divisible` does: XNNPACK's and GPU kernels
            compute channels in tiles of 4 to 16, so a width just past a
            multiple costs a whole tile. `1` (default) removes every
            removable channel. A layer never grows past its width.
        check: Run `model` and the result on one random batch and fall back
            to `model` (with a warning) if their outputs differ; a safety
            net for layer types this transform does not know.

    Returns:
        A new model, or `model` itself when no channel can be removed.

    Example:

    >>> plain = keras_str.strip(sparse_model, shrink=False)
    >>> small = keras_str.shrink_channels(plain)
    >>> small.count_params() < plain.count_params()
    True
    """
    check_channel_multiple(channel_multiple)
    check_clonable(model)
    graph = _Graph(model)
    constants = _propagate_constants(graph)
    removal, causes = _removable_channels(graph, constants)
    _warn_about_kept_dead_channels(graph, removal, causes)
    removal = _round_widths(graph, constants, removal, channel_multiple)
    if not any(removal.values()):
        return model
    plan = _Plan(graph, constants, removal)
    shrunk = clone_with(model, plan.replace)
    if check and not _same_outputs(model, shrunk):
        warnings.warn(
            f"shrink_channels: the narrowed model's outputs differ from "
            f"{model.name!r}'s on a random batch, so the channels were kept. "
            "Please report this with the model's summary.",
            stacklevel=2,
        )
        return model
    return shrunk


def removed_channels(model, *, channel_multiple=1):
    """What `shrink_channels` would remove: `{layer name: removed output channels}`."""
    check_channel_multiple(channel_multiple)
    check_clonable(model)
    graph = _Graph(model)
    constants = _propagate_constants(graph)
    removal, _ = _removable_channels(graph, constants)
    removal = _round_widths(graph, constants, removal, channel_multiple)
    result = {}
    for node in graph.nodes:
        if _is_kernel_producer(node.layer) and removal[node.outputs[0]]:
            result[node.layer.name] = len(removal[node.outputs[0]])
    return result


class _Node:
    def __init__(self, layer, inputs, outputs):
        self.layer = layer
        self.inputs = inputs
        self.outputs = outputs


class _Graph:
    """The model's layer calls in order, each tensor by id, with its channel count."""

    def __init__(self, model):
        function = model._functional if isinstance(model, keras.Sequential) else model
        if function is None:
            raise ValueError(
                f"Sequential model {model.name!r} has no input shape; build it "
                "with `keras.Input` first."
            )
        self.widths = {}
        self.ranks = {}
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
        self.ranks[id(tensor)] = len(shape)
        return id(tensor)

    def _classify(self, node):
        """`(kind, None)`, or `(None, why its channels stay)`."""
        layer = node.layer
        if not node.inputs:
            return None, f"layer {layer.name!r} has no tensor inputs"
        rank = self.ranks[node.inputs[0]]
        kind = _kind(layer, rank)
        if kind is None:
            return None, f"{type(layer).__name__} layer {layer.name!r} keeps its channels"
        if id(layer) in self.shared:
            return None, f"layer {layer.name!r} is shared (called more than once)"
        if len(node.outputs) != 1:
            return None, f"layer {layer.name!r} has several outputs"
        if kind == "merge" and (
            len({self.widths[t] for t in node.inputs}) != 1
            or len({self.ranks[t] for t in node.inputs}) != 1
        ):
            return None, f"{layer.name!r} broadcasts its inputs"
        if kind in ("preserving", "elementwise", "depthwise", "batch_norm", "kernel") and len(node.inputs) != 1:
            return None, f"layer {layer.name!r} has several inputs"
        return kind, None


def _channels_last(layer):
    return getattr(layer, "data_format", "channels_last") == "channels_last"


def _pointwise(activation):
    """Whether an activation acts on each channel alone (softmax does not)."""
    name = getattr(activation, "__name__", "")
    return "softmax" not in name


def _is_kernel_layer(layer):
    # Exact classes: a subclass may compute something else with its kernel.
    # Any activation: one that mixes channels (a softmax classifier) keeps
    # the layer's outputs, but its inputs can still go.
    exact = type(layer) is _LAYERS.Dense or (
        type(layer) in _CONVOLUTIONS and layer.groups == 1
    )
    return exact and _channels_last(layer)


def _is_depthwise(layer):
    return (
        type(layer) in _DEPTHWISE
        and layer.depth_multiplier == 1
        and _channels_last(layer)
        and _pointwise(layer.activation)
    )


def _is_kernel_producer(layer):
    return _is_kernel_layer(layer) or _is_depthwise(layer)


def _kind(layer, rank):
    """How channels flow through `layer` (inputs of rank `rank`), or None if unknown."""
    if _is_kernel_layer(layer):
        return "kernel"
    if _is_depthwise(layer):
        return "depthwise"
    if type(layer) is _LAYERS.BatchNormalization:
        return "batch_norm" if layer.axis % rank == rank - 1 else None
    if isinstance(layer, (CHANNEL_PRESERVING, PADDING)):
        return "preserving" if _channels_last(layer) else None
    if isinstance(layer, ELEMENTWISE):
        activation = getattr(layer, "activation", None)
        return "elementwise" if activation is None or _pointwise(activation) else None
    if isinstance(layer, MERGES):
        return "merge"
    if isinstance(layer, _LAYERS.Concatenate):
        return "concatenate" if layer.axis % rank == rank - 1 else None
    if isinstance(layer, _LAYERS.Flatten):
        return "flatten" if _channels_last(layer) else None
    return None


# Constants: for each tensor, one float per channel, NaN where the channel
# depends on the input.


def _kernel_and_bias(layer):
    kernel = to_numpy(layer.kernel).astype(np.float64)
    bias = (
        to_numpy(layer.bias).astype(np.float64)
        if getattr(layer, "use_bias", False)
        else np.zeros(kernel.shape[-1])
    )
    return kernel, bias


def _folds_exactly(layer):
    """Whether every output of `layer` sees every kernel tap on real input."""
    if type(layer) is _LAYERS.Dense:
        return True
    return layer.padding == "valid" or all(k == 1 for k in layer.kernel_size)


def _apply(function, values):
    """`function` on a (1, C) batch of constants; NaN channels stay NaN."""
    known = np.nan_to_num(values)
    result = to_numpy(
        function(keras.ops.convert_to_tensor(known[None, :].astype("float32")))
    )[0].astype(np.float64)
    return np.where(np.isnan(values), np.nan, result)


def _propagate_constants(graph):
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
            value = values[0]
            if isinstance(layer, PADDING):
                value = np.where(value == 0, 0.0, np.nan)
            constants[out] = value
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
    kernel, bias = _kernel_and_bias(layer)
    if not _pointwise(layer.activation):
        return np.full(kernel.shape[-1], np.nan)
    used = np.any(kernel != 0, axis=tuple(range(kernel.ndim - 2)))  # (in, out)
    if _folds_exactly(layer):
        foldable = ~np.isnan(inputs)
    else:
        foldable = inputs == 0
    constant = ~np.any(used & ~foldable[:, None], axis=0)
    summed = kernel.sum(axis=tuple(range(kernel.ndim - 2)))
    pre = np.nan_to_num(inputs) @ np.where(used, summed, 0.0) + bias
    return np.where(constant, _apply(layer.activation, pre), np.nan)


def _depthwise_constants(layer, inputs):
    kernel, bias = _kernel_and_bias(layer)
    taps = kernel.reshape(-1, kernel.shape[-2])  # (taps, channels)
    dead = ~np.any(taps != 0, axis=0)
    exact = layer.padding == "valid" or all(k == 1 for k in layer.kernel_size)
    foldable = ~np.isnan(inputs) if exact else inputs == 0
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


# Which channels can go: a greatest fixed point. Every rule only ever
# removes candidates, so the iteration ends.


def _removable_channels(graph, constants, removal=None, round_to=1):
    """`(removal, causes)`: per tensor, the channels that can go, and why others stay.

    `removal`: a start (default: every channel); `round_to`: keep each
    kernel layer's output width a multiple of it.
    """
    if removal is None:
        removal = {t: set(range(graph.widths[t])) for t in graph.widths}
    else:
        removal = {t: set(channels) for t, channels in removal.items()}
    causes = {}

    def limit(tensor, allowed, cause):
        before = removal[tensor]
        after = before & allowed
        if after != before:
            removal[tensor] = after
            if cause is not None and cause not in causes.setdefault(tensor, []):
                causes[tensor].append(cause)
            return True
        return False

    def tie(tensors):
        common = set.intersection(*(removal[t] for t in tensors))
        changed = False
        for t in tensors:
            changed |= limit(t, common, None)
        return changed

    for tensor in graph.model_inputs:
        limit(tensor, set(), "it is a model input")
    for tensor in graph.model_outputs:
        limit(tensor, set(), "it is a model output")
    for node in graph.nodes:
        if node.kind is None:
            for tensor in node.inputs + node.outputs:
                limit(tensor, set(), node.blocked)
        elif node.kind == "kernel" and not _pointwise(node.layer.activation):
            name = getattr(node.layer.activation, "__name__", "its activation")
            limit(node.outputs[0], set(), f"{node.layer.name!r} applies {name} across channels")

    changed = True
    while changed:
        changed = _apply_rules(graph, constants, removal, limit, tie)
        if not changed:
            # Only once the rules agree: a layer needs at least one channel.
            for tensor, channels in removal.items():
                if channels and len(channels) == graph.widths[tensor]:
                    changed |= limit(tensor, channels - {min(channels)}, None)
        if not changed and round_to > 1:
            changed = _round_up(graph, removal, limit, round_to)
    return removal, causes


def _round_widths(graph, constants, removal, multiple):
    """`removal` with fewer channels removed, so that kept widths are multiples of `multiple`."""
    if multiple == 1 or not any(removal.values()):
        return removal
    rounded, _ = _removable_channels(graph, constants, removal, round_to=multiple)
    return rounded


def _round_up(graph, removal, limit, multiple):
    """Keeps dead channels back where a kernel layer's width is off a multiple."""
    changed = False
    for node in graph.nodes:
        if node.kind not in ("kernel", "depthwise"):
            continue
        tensor = node.outputs[0]
        width = graph.widths[tensor]
        kept = width - len(removal[tensor])
        wanted = min(width, -(-kept // multiple) * multiple)
        if wanted > kept:
            # The same indices in every tensor tied to this one (ties
            # intersect the sets), so one pass rounds the whole group.
            back = set(sorted(removal[tensor])[: wanted - kept])
            changed |= limit(tensor, removal[tensor] - back, None)
    return changed


def _apply_rules(graph, constants, removal, limit, tie):
    changed = False
    for node in graph.nodes:
        kind = node.kind
        if kind in ("depthwise", "batch_norm", "preserving", "elementwise"):
            changed |= tie([node.inputs[0], node.outputs[0]])
        elif kind == "merge":
            changed |= tie(node.inputs + node.outputs)
        elif kind == "concatenate":
            changed |= _concatenate_rule(graph, node, removal, limit)
        elif kind == "flatten":
            changed |= _flatten_rule(graph, node, removal, limit)
        elif kind == "kernel":
            changed |= _absorb_rule(node, removal, constants, limit)
    return changed


def _concatenate_rule(graph, node, removal, limit):
    changed = False
    out = node.outputs[0]
    offset = 0
    joined = set()
    for tensor in node.inputs:
        width = graph.widths[tensor]
        from_output = {c - offset for c in removal[out] if offset <= c < offset + width}
        changed |= limit(tensor, from_output, None)
        joined |= {c + offset for c in removal[tensor]}
        offset += width
    changed |= limit(out, joined, None)
    return changed


def _flatten_rule(graph, node, removal, limit):
    source, out = node.inputs[0], node.outputs[0]
    width = graph.widths[source]
    if not width or graph.widths[out] % width:
        return limit(source, set(), None) | limit(out, set(), None)
    copies = graph.widths[out] // width
    whole = {
        c for c in removal[source]
        if all(c + i * width in removal[out] for i in range(copies))
    }
    changed = limit(source, whole, None)
    changed |= limit(out, {c + i * width for c in whole for i in range(copies)}, None)
    return changed


def _absorb_rule(node, removal, constants, limit):
    """A kernel layer's input channel can go if unused by its kept outputs, or constant and foldable."""
    layer = node.layer
    source, out = node.inputs[0], node.outputs[0]
    kernel = to_numpy(layer.kernel)
    kept_outputs = sorted(set(range(kernel.shape[-1])) - removal[out])
    spatial = tuple(range(kernel.ndim - 2))
    used = np.any(kernel[..., kept_outputs] != 0, axis=spatial + (kernel.ndim - 1,))
    values = constants[source]
    foldable = ~np.isnan(values) if _folds_exactly(layer) else values == 0
    allowed = {c for c in range(kernel.shape[-2]) if not used[c] or foldable[c]}
    if _folds_exactly(layer):
        reason = f"{layer.name!r} uses input channels that are not constant"
    else:
        reason = (
            f"{layer.name!r} ({type(layer).__name__}, padding "
            f"{layer.padding!r}) uses input channels that are not 0, and its "
            "padding makes a constant input vary at the borders"
        )
    return limit(source, allowed, reason)


def _warn_about_kept_dead_channels(graph, removal, causes):
    kept = []
    for node in graph.nodes:
        layer = node.layer
        if not _is_kernel_producer(layer) or len(node.outputs) != 1:
            continue
        kernel = to_numpy(layer.kernel)
        if _is_depthwise(layer):
            dead = ~np.any(kernel.reshape(-1, kernel.shape[-2]) != 0, axis=0)
        else:
            dead = ~np.any(kernel.reshape(-1, kernel.shape[-1]) != 0, axis=0)
        out = node.outputs[0]
        left = [c for c in np.flatnonzero(dead) if c not in removal[out]]
        if left:
            cause = _causes_downstream(graph, out, causes)
            kept.append(f"{layer.name}: {len(left)} of {int(dead.sum())} (where {cause})")
    if kept:
        warnings.warn(
            "shrink_channels kept these all-zero channels (as zeros) where "
            "removing them would change the outputs: " + "; ".join(kept[:10])
            + (f"; and {len(kept) - 10} more layers" if len(kept) > 10 else ""),
            stacklevel=3,
        )


def _causes_downstream(graph, tensor, causes):
    """The reasons recorded on the channels' way from `tensor` to the outputs."""
    found, frontier, seen = [], [tensor], set()
    while frontier:
        current = frontier.pop(0)
        seen.add(current)
        found.extend(c for c in causes.get(current, []) if c not in found)
        for node in graph.consumers.get(current, []):
            # A kernel layer ends the channels' way: its outputs are others.
            if node.kind not in (None, "kernel"):
                frontier.extend(t for t in node.outputs if t not in seen)
    return "; ".join(found[:3]) or "a layer needs at least one channel"


class _Plan:
    """New layers (narrower configs) and how to slice the old weights into them."""

    def __init__(self, graph, constants, removal):
        self.nodes = {id(node.layer): node for node in graph.nodes if node.kind}
        self.widths = graph.widths
        self.constants = constants
        self.removal = removal

    def _kept(self, tensor):
        return [c for c in range(self.widths[tensor]) if c not in self.removal[tensor]]

    def replace(self, layer):
        node = self.nodes.get(id(layer))
        if node is None or node.kind not in ("kernel", "depthwise", "batch_norm"):
            return None
        source, out = node.inputs[0], node.outputs[0]
        if not self.removal[source] and not self.removal[out]:
            return None
        kept_in, kept_out = self._kept(source), self._kept(out)
        config = layer.get_config()
        if node.kind == "batch_norm":
            return layer.__class__.from_config(config), _slicer(kept_out)
        if node.kind == "depthwise":
            return layer.__class__.from_config(config), _depthwise_slicer(kept_out)
        kernel, bias = _kernel_and_bias(layer)
        removed = sorted(self.removal[source])
        values = np.nan_to_num(self.constants[source][removed])
        summed = kernel.sum(axis=tuple(range(kernel.ndim - 2)))
        new_bias = (bias + values @ summed[removed])[kept_out]
        key = "units" if "units" in config else "filters"
        config[key] = len(kept_out)
        if np.any(new_bias != 0):
            config["use_bias"] = True
        new_kernel = kernel[..., kept_in, :][..., kept_out]
        return layer.__class__.from_config(config), _kernel_setter(new_kernel, new_bias)


def _slicer(kept):
    def copy(old, new):
        new.set_weights(
            [to_numpy(w)[kept] for w in old.weights]
        )

    return copy


def _depthwise_slicer(kept):
    def copy(old, new):
        weights = [to_numpy(w) for w in old.weights]
        new.set_weights(
            [w[..., kept, :] if w.ndim > 1 else w[kept] for w in weights]
        )

    return copy


def _kernel_setter(kernel, bias):
    def copy(old, new):
        new.kernel.assign(kernel.astype(new.kernel.dtype))
        if new.use_bias:
            new.bias.assign(bias.astype(new.bias.dtype))

    return copy


def _same_outputs(model, shrunk):
    inputs = []
    for tensor in model.inputs:
        if "float" not in str(tensor.dtype):
            return True  # integer inputs (token ids): no meaningful random batch
        shape = [2] + [d or 8 for d in tensor.shape[1:]]
        inputs.append(np.random.default_rng(0).normal(size=shape).astype("float32"))
    before = keras.tree.flatten(model(inputs if len(inputs) > 1 else inputs[0]))
    after = keras.tree.flatten(shrunk(inputs if len(inputs) > 1 else inputs[0]))
    for a, b in zip(before, after):
        a, b = to_numpy(a), to_numpy(b)
        if a.shape != b.shape:
            return False
        scale = max(float(np.max(np.abs(a))), 1e-6)
        if float(np.max(np.abs(a - b))) > 1e-4 * scale + 1e-5:
            return False
    return True
