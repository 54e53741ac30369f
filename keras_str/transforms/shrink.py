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

from keras_str.core.arguments import check_channel_multiple
from keras_str.core.channel_kinds import folds_exactly
from keras_str.core.channel_kinds import pointwise
from keras_str.core.channel_kinds import producer_kind
from keras_str.core.host import to_numpy
from keras_str.transforms.channel_graph import ChannelGraph
from keras_str.transforms.channel_graph import kernel_and_bias
from keras_str.transforms.channel_graph import propagate_constants
from keras_str.transforms.cloning import check_clonable
from keras_str.transforms.cloning import clone_with


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

    Raises:
        ValueError: If `channel_multiple` is not a positive integer, or the
            model is subclassed (it has no graph to rebuild narrower).

    Example:

    >>> model = keras.Sequential([keras.Input((16,)),
    ...     keras.layers.Dense(8, activation="relu", name="hidden"), keras.layers.Dense(4)])
    >>> kernel, bias = model.get_layer("hidden").get_weights()
    >>> kernel[:, :3] = 0.0  # three dead units
    >>> model.get_layer("hidden").set_weights([kernel, np.zeros_like(bias)])
    >>> keras_str.shrink_channels(model).get_layer("hidden").units
    5
    """
    channel_multiple = check_channel_multiple(channel_multiple)
    check_clonable(model)
    graph = ChannelGraph(model)
    constants = propagate_constants(graph)
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
    channel_multiple = check_channel_multiple(channel_multiple)
    check_clonable(model)
    graph = ChannelGraph(model)
    constants = propagate_constants(graph)
    removal, _ = _removable_channels(graph, constants)
    removal = _round_widths(graph, constants, removal, channel_multiple)
    result = {}
    for node in graph.nodes:
        if producer_kind(node.layer) and removal[node.outputs[0]]:
            result[node.layer.name] = len(removal[node.outputs[0]])
    return result


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
        elif node.kind == "kernel" and not pointwise(node.layer.activation):
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
        if kind in ("depthwise", "batch_norm", "preserving", "padding", "elementwise"):
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
    foldable = ~np.isnan(values) if folds_exactly(layer) else values == 0
    allowed = {c for c in range(kernel.shape[-2]) if not used[c] or foldable[c]}
    if folds_exactly(layer):
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
        producer = producer_kind(layer)
        if producer is None or len(node.outputs) != 1:
            continue
        kernel = to_numpy(layer.kernel)
        if producer == "depthwise":
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
        kernel, bias = kernel_and_bias(layer)
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
