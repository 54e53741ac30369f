"""The MACs a channel-pruned model keeps, counted inside the train step.

A dead channel costs more than its own filter. `keras_str.shrink_channels`
removes it with every channel it feeds one-to-one (BatchNormalization,
activations, pooling, depthwise filters, residual adds, its slice of a
concatenation) and with the matching inputs of the kernel layers reading it.
Counted weight by weight, half the channels of every layer look like half the
MACs; the stripped model keeps a quarter. `ChannelMacs` follows the model's
graph the way `shrink_channels` does, so a channel-structured MACs budget
lands on the stripped model's MACs.

Like `shrink_channels`, it carries each dead channel's constant value (the
activation of 0, shifted by BatchNormalization, cut to 0 by ReLU, ...) to the
kernel layers reading it: Dense, kernel size 1 and `"valid"` padding fold
any constant into their bias, a `"same"`-padded convolution only 0 (its
borders see the zero padding). Unlike it, a channel whose inputs are all
constant is not followed through a kernel layer that keeps it. Reshapes and
layers it does not know keep their channels; a group whose channels could
all go keeps one.
"""

import math

from keras import ops

from keras_str.core.channel_kinds import channel_kind
from keras_str.core.channel_kinds import folds_exactly
from keras_str.core.channel_kinds import pointwise
from keras_str.core.kernel_specs import raw_kernel_variable
from keras_str.core.macs import uses_per_weight
from keras_str.methods.channel_layout import Component
from keras_str.methods.channel_layout import Layout
from keras_str.methods.channel_layout import graph_nodes
from keras_str.methods.channel_layout import topological


class ChannelMacs:
    """Counts the MACs a model keeps once its dead channels are removed.

    Built once from the graph the thresholded `layers` are called in (a
    functional or Sequential model); `select` then runs inside the train step
    with `keras.ops` only.

    Args:
        layers: The layers one channel-structured method thresholds (each
            output channel of a kernel layer, or each channel of an
            `STRBatchNormalization`), called once each in one graph.
    """

    def __init__(self, layers):
        self.layers = list(layers)
        self._method_index = {id(layer): i for i, layer in enumerate(self.layers)}
        nodes = topological(graph_nodes(self.layers))
        self._tensors = {}  # id -> Layout
        self._steps = []  # how each node turns input constants into output ones
        self._method_outputs = {}  # id(method layer) -> its output tensor
        self._terms = []  # (layer name, full MACs, in tensor, out tensor, depthwise)
        readers = {}
        for node in nodes:
            kind = self._kind(node)
            for tensor in node.input_tensors:
                readers.setdefault(id(tensor), []).append((kind, node.operation))
            self._add(node, kind)
        for key, layout in self._tensors.items():
            found = readers.get(key, ())
            if not found or any(kind == "opaque" for kind, _ in found):
                layout.block()  # a model output, or read by an unknown layer
            for kind, layer in found:
                if kind == "kernel":
                    folds = folds_exactly(layer)
                    for start, component in layout.starts():
                        component.read.append((key, start, folds))
        self._terms = [t for t in self._terms if self._counted(t)]
        self.total_macs = float(sum(term[1] for term in self._terms))

    @property
    def counts_channels(self):
        """Whether some thresholded channel can leave the model (else the count is constant)."""
        return bool(self._terms) and any(
            c.active and not c.blocked for c in self._unique_components()
        )

    def _unique_components(self):
        seen = {}
        for layout in self._tensors.values():
            for root in layout.roots():
                seen[id(root)] = root
        return list(seen.values())

    def output_segments(self, layer):
        """`[(offset, component)]` of a method layer's output channels, or `None` where the graph loses them.

        Layers whose outputs share a component lose their channels together
        in `shrink_channels`: a conv and the depthwise conv after it, the
        convs a residual add joins.
        """
        key = self._method_outputs.get(id(layer))
        return None if key is None else list(self._layout(key).starts())

    # Graph analysis (host side, once).

    def _kind(self, node):
        if node.is_input:
            return None  # a model input keeps its channels
        layer = node.operation
        kind, _ = channel_kind(
            layer,
            [tuple(tensor.shape) for tensor in node.input_tensors],
            outputs=len(node.outputs),
            calls=len(layer._inbound_nodes),
        )
        return kind or "opaque"

    def _tensor(self, tensor, components=None, copies=1):
        key = id(tensor)
        if key not in self._tensors:
            width = tensor.shape[-1] or 0
            if components is None:
                components = [Component(width)]
            self._tensors[key] = Layout(width, components, copies)
        return key

    def _layout(self, key):
        return self._tensors[key]

    def _add(self, node, kind):
        layer = node.operation
        inputs = [self._tensor(t) for t in node.input_tensors]
        method = self._method_index.get(id(layer))
        if kind in (None, "opaque"):
            self._block(inputs, node.outputs)
            return
        out_tensor = node.outputs[0]
        source = self._layout(inputs[0])
        if kind == "kernel":
            out = self._tensor(out_tensor)
            self._terms.append((layer.name, _full_macs(layer), inputs[0], out, False))
            if not pointwise(layer.activation):
                # A softmax classifier mixes its outputs; its inputs can go.
                self._layout(out).block()
        elif kind == "flatten":
            features = out_tensor.shape[-1] or 0
            if not source.width or source.copies != 1 or features % source.width:
                self._block(inputs, node.outputs)
                return
            out = self._tensor(out_tensor, source.components, features // source.width)
        elif kind == "merge":
            layouts = [self._layout(key) for key in inputs]
            if any(not layouts[0].aligns_with(other) for other in layouts[1:]):
                self._block(inputs, node.outputs)  # segments that do not line up
                return
            for other in layouts[1:]:
                for mine, theirs in zip(layouts[0].components, other.components):
                    mine.join(theirs)
            out = self._tensor(out_tensor, source.components, source.copies)
        elif kind == "concatenate":
            layouts = [self._layout(key) for key in inputs]
            if any(layout.copies != 1 for layout in layouts):
                self._block(inputs, node.outputs)
                return
            joined = [c for layout in layouts for c in layout.components]
            out = self._tensor(out_tensor, joined)
        else:
            out = self._tensor(out_tensor, source.components, source.copies)
            if kind == "depthwise":
                self._terms.append((layer.name, _full_macs(layer), inputs[0], out, True))
        if method is not None:
            self._method_outputs[id(layer)] = out
            for component in self._layout(out).roots():
                component.active = True
        self._steps.append((kind, layer, out, inputs, method))

    def _block(self, inputs, outputs):
        for key in inputs:
            self._layout(key).block()
        for tensor in outputs:
            self._layout(self._tensor(tensor)).block()

    def _counted(self, term):
        _, macs, source, out, _ = term
        if macs is None:
            return False
        return any(
            component.active and not component.blocked
            for key in (source, out)
            for component in self._layout(key).roots()
        )

    # In-step count.

    def channel_values(self, layer, values):
        """One value per output channel of `layer` from its per-weight `values`."""
        outputs = layer.kernel_spec.output_axes(layer)
        axes = tuple(a for a in range(len(values.shape)) if a not in outputs)
        if axes:
            values = ops.max(values, axis=axes)
        return ops.reshape(values, (-1,))

    def _parameters(self):
        """What each step does to a constant channel (activated biases, BatchNormalization's affine map).

        Independent of which channels are dead: computed once per update,
        outside the search.
        """
        parameters = {}
        for index, (kind, layer, out, _, _) in enumerate(self._steps):
            width = self._layout(out).channels
            if kind == "kernel":
                # A removed filter's bias is 0 (the method's `live_channels`).
                parameters[index] = _activate(layer, ops.zeros((width,), "float32"))
            elif kind == "depthwise":
                taps = ops.cast(layer.kernel, "float32")
                taps = ops.sum(ops.reshape(taps, (-1, taps.shape[-2])), axis=0)
                parameters[index] = (taps, _bias(layer, width))
            elif kind == "batch_norm":
                parameters[index] = _batch_norm_affine(layer)
        return parameters

    def kept_macs(self, dead, parameters=None):
        """The MACs kept with the channels `dead[i]` (bool, per method layer) at zero."""
        if parameters is None:
            parameters = self._parameters()
        # Per tensor: which channels are constant (None: none) and their
        # values, as `shrink_channels` propagates them.
        state = {}
        for index, (kind, layer, out, inputs, method) in enumerate(self._steps):
            own = None if method is None else dead[method]
            constant, value = state.get(inputs[0], (None, None))
            width = self._layout(out).channels
            if kind == "kernel":
                # A dead filter outputs its activated bias, 0 before activation.
                constant, value = own, (None if own is None else parameters[index])
            elif kind == "depthwise":
                taps, bias = parameters[index]
                if constant is not None and not folds_exactly(layer):
                    # A nonzero constant varies at the padded borders.
                    constant = ops.logical_and(constant, ops.equal(value, 0))
                pre = _values(value, width) * taps + bias
                if own is not None:
                    # A removed channel's filter and bias are 0.
                    pre = ops.where(own, 0.0, pre)
                    constant = _either(constant, own)
                value = None if constant is None else _activate(layer, pre)
            elif kind == "batch_norm":
                scale, shift = parameters[index]
                if constant is not None:
                    value = ops.where(scale == 0, 0.0, value * scale) + shift
                if own is not None:
                    # A thresholded channel is exactly 0.
                    value = ops.where(own, 0.0, _values(value, width))
                    constant = _either(constant, own)
            elif kind == "padding":
                if constant is not None:
                    constant = ops.logical_and(constant, ops.equal(value, 0))
            elif kind == "elementwise":
                if constant is not None:
                    value = layer.call(value[None, :])[0]
            elif kind == "merge":
                pairs = [state.get(key, (None, None)) for key in inputs]
                constant = _all([pair[0] for pair in pairs])
                if constant is not None:
                    value = layer.call([pair[1][None, :] for pair in pairs])[0]
            elif kind == "concatenate":
                pairs = [state.get(key, (None, None)) for key in inputs]
                widths = [self._layout(key).channels for key in inputs]
                constant = _concatenate([pair[0] for pair in pairs], widths, "bool")
                value = _concatenate([pair[1] for pair in pairs], widths, "float32")
            state[out] = (constant, value)
        removed = {}
        for component in self._unique_components():
            if component.blocked or not component.active or not component.read:
                continue
            masks = []
            for key, start, folds in component.read:
                constant, value = state.get(key, (None, None))
                if constant is not None and not folds:
                    # A "same"-padded conv folds only a constant of 0.
                    constant = ops.logical_and(constant, ops.equal(value, 0))
                masks.append(None if constant is None else constant[start:start + component.width])
            mask = _all(masks)
            if mask is not None:
                count = ops.sum(ops.cast(mask, "float32"))
                # As `shrink_channels`: channels that could all go keep one.
                removed[id(component)] = ops.minimum(count, component.width - 1.0)
        total = ops.zeros((), "float32")
        for _, macs, source, out, depthwise in self._terms:
            in_width, in_removed = self._width_and_removed(source, removed)
            out_width, out_removed = self._width_and_removed(out, removed)
            if depthwise:
                kept = macs * (1.0 - out_removed / out_width)
            else:
                kept = macs * (1.0 - in_removed / in_width) * (1.0 - out_removed / out_width)
            total = total + kept
        return total

    def _width_and_removed(self, key, removed):
        layout = self._layout(key)
        counts = [removed[id(root)] for root in layout.roots() if id(root) in removed]
        if not counts or not layout.width:
            return max(layout.width, 1), 0.0
        # A flattened tensor holds each channel `copies` times.
        return layout.width, layout.copies * sum(counts[1:], counts[0])

    def select(self, channel_values, fraction):
        """The value at or below which channels go so that `fraction` of the MACs goes.

        `channel_values[i]` holds one value per channel of method layer i (a
        channel is dead iff its value is at or below the result). The fewest
        channels, smallest values first, whose removal leaves at most
        `(1 - fraction)` of `total_macs` (a binary search over the sorted
        values: about log2(channels) counts). Returns `(value, any_pruned)`.
        """
        flat = ops.concatenate([ops.cast(v, "float32") for v in channel_values])
        ordered = ops.sort(flat)
        count = int(ordered.shape[0])
        allowed = (1.0 - ops.cast(fraction, "float32")) * self.total_macs
        sizes = [int(v.shape[0]) for v in channel_values]
        parameters = self._parameters()

        def value_at(k):
            # The k smallest values go; k = 0 removes nothing.
            below = ops.take(ordered, ops.maximum(k - 1, 0))
            return ops.where(k > 0, below, ops.cast(-math.inf, "float32"))

        def kept_at(k):
            cutoff = value_at(k)
            dead, start = [], 0
            for size in sizes:
                dead.append(flat[start:start + size] <= cutoff)
                start += size
            return self.kept_macs(dead, parameters)

        def halve(_, bounds):
            low, high = bounds
            middle = (low + high) // 2
            enough = kept_at(middle) <= allowed
            return (
                ops.where(enough, low, middle + 1),
                ops.where(enough, middle, high),
            )

        iterations = max(1, math.ceil(math.log2(count + 1)))
        bounds = (ops.zeros((), "int32"), ops.full((), count, "int32"))
        _, smallest = ops.fori_loop(0, iterations, halve, bounds)
        return value_at(smallest), smallest > 0


def _full_macs(layer):
    uses = uses_per_weight(layer)
    if uses is None:
        return None
    return float(uses * math.prod(raw_kernel_variable(layer).shape))


def _bias(layer, width):
    """The bias `layer` computes with (0 in the channels its method removed)."""
    if getattr(layer, "use_bias", False) and getattr(layer, "bias", None) is not None:
        return ops.cast(layer.bias, "float32")
    return ops.zeros((width,), "float32")


def _activate(layer, values):
    """`layer`'s activation of one value per channel."""
    return ops.cast(layer.activation(values[None, :])[0], "float32")


def _batch_norm_affine(layer):
    """`(scale, shift)` of an inference-mode BatchNormalization, per channel: x -> (x - mean) * scale + shift."""
    def cast(value):
        return ops.cast(value, "float32")

    scale = ops.rsqrt(cast(layer.moving_variance) + layer.epsilon)
    if layer.scale:
        scale = scale * cast(layer.gamma)
    shift = cast(layer.beta) if layer.center else ops.zeros_like(scale)
    # (x - mean) * scale, with the mean in the shift; a channel scaled by 0
    # (thresholded) is its shift, as in `shrink_channels`.
    shift = shift - ops.where(scale == 0, 0.0, cast(layer.moving_mean) * scale)
    return scale, shift


def _values(value, width):
    return ops.zeros((width,), "float32") if value is None else value


def _either(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return ops.logical_or(a, b)


def _concatenate(parts, widths, dtype):
    """Per-channel vectors of consecutive segments as one (None: a segment of no constant)."""
    if all(part is None for part in parts):
        return None
    return ops.concatenate([
        ops.zeros((width,), dtype) if part is None else part
        for part, width in zip(parts, widths)
    ])


def _all(masks):
    if not masks or any(m is None for m in masks):
        return None
    result = masks[0]
    for mask in masks[1:]:
        result = ops.logical_and(result, mask)
    return result
