"""GMP: gradual magnitude pruning with a hard per-layer mask, on Keras 3."""

import math

import keras
from keras import ops

from keras_str.core.arguments import check_channel_multiple
from keras_str.core.arguments import check_fraction
from keras_str.core.arguments import check_frequency
from keras_str.core.arguments import check_quantile
from keras_str.core.host import to_numpy
from keras_str.core.n_m import kept_per_group
from keras_str.core.n_m import layer_n_m_axis
from keras_str.core.n_m import n_m_mask
from keras_str.core.n_m import n_m_target
from keras_str.core.n_m import parse_n_m
from keras_str.core.quantile import kth_smallest
from keras_str.core.schedules import get_schedule
from keras_str.methods.base import SparsityMethod
from keras_str.methods.base import when_due
from keras_str.methods.channel_groups import channel_groups
from keras_str.methods.channel_groups import output_channel_count

STRUCTURES = ("weight", "channel")


@keras.saving.register_keras_serializable(package="keras_str")
class GMP(SparsityMethod):
    """Gradual magnitude pruning (Zhu & Gupta, 2017) with a hard mask.

    Every `frequency` steps while the schedule runs (from `begin_step`, and
    at `end_step`), inside the compiled train step, each layer's mask is
    reset to keep its largest-magnitude effective weights, so that the layer
    has `layer_target * schedule(step)` zeros. The layer computes with
    `W * mask`, so pruned weights get no gradient and, having magnitude 0 in
    the next update, stay pruned while the target rises. The same as
    tfmot's `prune_low_magnitude` with `PolynomialDecay`, on Keras 3 and on
    every backend.

    Args:
        target_sparsity: Final sparsity of every layer not in `layer_targets`
            (`None` with `n_m`, which sets it).
        schedule: A `PolynomialSchedule` or `ConstantSchedule`.
        frequency: Steps between mask updates (tfmot's default is 100).
        layer_targets: Optional `{layer_name: target_sparsity}`, e.g. a budget
            learned by STR (`keras_str.layer_budget`). A name that matches no
            layer of the method raises at the first training step.
        structure: `"weight"` (default: single weights) or `"channel"`:
            whole output channels (conv filters, Dense units) by their L1
            norm, the uniform filter pruning of Li et al. (2017); each
            layer's share of zeros is then its target up to one channel,
            and `keras_str.strip` removes the pruned channels (a pruned
            channel's bias is 0, so it outputs what a missing one would).
            Layers whose channels strip removes together (a conv and the
            depthwise conv it feeds, the convs a residual add joins) are
            pruned as one group: the same channels, ranked by the sum of
            their relative L1 norms, at the group's largest target.
        quantile: How each layer's magnitude quantile is found each step:
            `"auto"` (default), `"exact"` or `"sample"`; see `keras_str.ST3`.
        channel_multiple: `structure="channel"` only: each layer keeps a
            multiple of this many channels (its group's kept count rounded
            to the nearest multiple, at least one multiple; a layer not yet
            pruned stays whole), as MobileNet's `make_divisible` sizes
            layers: XNNPACK and GPU kernels compute channels in tiles of 4
            to 16. `keras_str.strip` keeps the same multiple. `1`
            (default): no rounding.
        n_m: Optional N:M sparsity, `(2, 4)` or `"2:4"`: at most N nonzero
            weights in every M consecutive ones along each kernel's input
            axis (a Dense kernel's rows, a convolution's input channels),
            the pattern sparse tensor cores run. The mask keeps the largest
            magnitudes of each group; while the schedule runs each group
            keeps `M - round(schedule(step) * (M - N))` weights (4, 3, then
            2 for 2:4), so the model moves from dense to N:M in steps. The
            target is then `1 - N/M` (`target_sparsity` may be `None`); a
            layer that cannot hold the pattern (a depthwise conv, an input
            axis that is not a multiple of M) is refused by name.

    Raises:
        ValueError: If an argument is out of range or of the wrong type
            (named, with the value received): `target_sparsity` outside
            [0, 1), an unknown `structure`, `layer_targets` that is not a
            dict of shares or names layers the method does not prune (said
            when the layers are known), `n_m` with `structure` or
            `layer_targets`, a `channel_multiple` below 1 or, without
            `structure="channel"`, above 1.

    Example:

    >>> dense = keras.Sequential([keras.Input((16,)),
    ...     keras.layers.Dense(32, name="hidden"), keras.layers.Dense(4, name="logits")])
    >>> schedule = keras_str.PolynomialSchedule(0, 6)
    >>> sparse = keras_str.sparsify(dense, method=keras_str.GMP(0.9, schedule, frequency=2))
    >>> sparse.compile(optimizer="sgd", loss="mse")
    >>> _ = sparse.fit(np.random.rand(64, 16), np.random.rand(64, 4), batch_size=8, verbose=0)
    >>> filters = keras_str.GMP(0.5, schedule, structure="channel")
    >>> two_four = keras_str.GMP(None, schedule, n_m="2:4")
    """

    scheduled = True

    def __init__(
        self,
        target_sparsity,
        schedule,
        frequency=100,
        layer_targets=None,
        structure="weight",
        quantile="auto",
        channel_multiple=1,
        n_m=None,
    ):
        super().__init__()
        self.n_m = None if n_m is None else parse_n_m(n_m)
        if self.n_m is not None:
            target_sparsity = _n_m_target(self.n_m, target_sparsity, structure, layer_targets)
        self.quantile = check_quantile(quantile)
        if structure not in STRUCTURES:
            raise ValueError(
                f"Invalid value for argument `structure`. Expected one of "
                f"{STRUCTURES}. Received: structure={structure!r}"
            )
        self.structure = structure
        self.channel_multiple = check_channel_multiple(channel_multiple, structure)
        self.target_sparsity = check_fraction("target_sparsity", target_sparsity)
        self.schedule = get_schedule(schedule)
        self.frequency = check_frequency(frequency)
        if layer_targets is not None:
            if not isinstance(layer_targets, dict):
                raise ValueError(
                    "Invalid value for argument `layer_targets`. Expected a "
                    "dict {layer_name: sparsity}. "
                    f"Received: layer_targets={layer_targets!r}"
                )
            layer_targets = {
                str(name): check_fraction(f"layer_targets[{name!r}]", value)
                for name, value in layer_targets.items()
            }
        self.layer_targets = layer_targets

    def build(self, layer):
        if self.n_m is not None:
            layer_n_m_axis(layer, self.n_m[1])
        return {
            "mask": layer.add_weight(
                name="mask",
                shape=tuple(layer.raw_kernel.shape),
                initializer="ones",
                dtype=layer.variable_dtype,
                trainable=False,
                autocast=False,
                aggregation="only_first_replica",
            )
        }

    def effective_kernel(self, layer, kernel):
        return kernel * ops.cast(layer.sparsity_state["mask"], kernel.dtype)

    def live_channels(self, layer, kernel):
        if self.structure != "channel":
            return None
        # A pruned filter goes whole, bias included, as in Li et al.: it then
        # outputs the activation of 0, which `strip` can take out of the model.
        mask = ops.convert_to_tensor(layer.sparsity_state["mask"])
        kept = ops.max(mask, axis=_input_axes(layer)) > 0
        return ops.reshape(kept, (-1,))

    def layer_target(self, layer):
        if self.layer_targets and layer.name in self.layer_targets:
            return self.layer_targets[layer.name]
        return self.target_sparsity

    def due(self, step):
        # tfmot's rule: every `frequency` steps from `begin_step` until
        # `end_step`, and at `end_step`; then the mask is frozen.
        begin, end = self.schedule.begin_step, self.schedule.end_step
        in_range = ops.logical_and(step >= begin, step <= end)
        on_beat = ops.logical_or(
            ops.equal((step - begin) % self.frequency, 0), ops.equal(step, end)
        )
        return ops.logical_and(in_range, on_beat)

    def final_layer_sparsity(self, layers):
        if self.n_m is not None:
            return {layer.name: self.target_sparsity for layer in layers}
        if self.structure != "channel":
            return {layer.name: self.layer_target(layer) for layer in layers}
        kept = [0.0] * len(layers)
        for group in self._channel_groups(layers):
            pruned = float(to_numpy(self._pruned_channels(group, layers, 1.0)))
            for index, _ in group.members:
                kept[index] += group.width - pruned
        return {
            layer.name: 1.0 - kept[index] / output_channel_count(layer)
            for index, layer in enumerate(layers)
        }

    def _check_layer_targets(self, layers):
        if not self.layer_targets:
            return
        unknown = sorted(set(self.layer_targets) - {layer.name for layer in layers})
        if unknown:
            raise ValueError(
                f"`layer_targets` names layers {unknown} that do not use this "
                f"GMP method; its layers are {[layer.name for layer in layers]}. "
                f"Received: layer_targets={self.layer_targets}"
            )

    def update(self, layers, step):
        self._check_layer_targets(layers)
        due = self.due(step)
        fraction = self.schedule(step)
        if self.structure == "channel":
            self._update_channels(layers, due, fraction)
            return
        if self.n_m is not None:
            self._update_n_m(layers, due, fraction)
            return
        for layer in layers:
            mask_variable = layer.sparsity_state["mask"]
            size = math.prod(mask_variable.shape)

            def compute(layer=layer, mask_variable=mask_variable, size=size):
                mask = ops.convert_to_tensor(mask_variable)
                magnitude = ops.stop_gradient(
                    ops.abs(ops.convert_to_tensor(layer.raw_kernel) * mask)
                )
                count = ops.cast(
                    ops.round(self.layer_target(layer) * fraction * size), "int32"
                )
                value = kth_smallest(
                    [magnitude], ops.maximum(count, 1), method=self.quantile
                )
                kept = ops.cast(magnitude > value, mask.dtype)
                return ops.where(count > 0, kept, ops.ones_like(mask))

            mask = when_due(due, compute, ops.convert_to_tensor(mask_variable))
            mask_variable.assign(mask)

    def _update_n_m(self, layers, due, fraction):
        """Each group of M keeps its largest weights: M, then fewer, down to N."""
        m = self.n_m[1]
        kept = kept_per_group(self.n_m, fraction)
        for layer in layers:
            mask_variable = layer.sparsity_state["mask"]
            axis = layer.kernel_spec.input_axis(layer)

            def compute(layer=layer, mask_variable=mask_variable, axis=axis):
                mask = ops.convert_to_tensor(mask_variable)
                magnitude = ops.stop_gradient(
                    ops.abs(ops.convert_to_tensor(layer.raw_kernel) * mask)
                )
                return ops.cast(n_m_mask(magnitude, kept, m, axis), mask.dtype)

            mask = when_due(due, compute, ops.convert_to_tensor(mask_variable))
            mask_variable.assign(mask)

    def _update_channels(self, layers, due, fraction):
        """Each channel group keeps its channels of largest L1 norm, in all its layers at once.

        Pruned one layer at a time, a conv and the depthwise conv it feeds
        would each drop their own weakest channels, and `strip` would remove
        the union: more channels than the target, in widths that are not
        multiples of `channel_multiple`.
        """
        groups = self._channel_groups(layers)
        variables = [layer.sparsity_state["mask"] for layer in layers]

        def compute():
            scores = [_relative_channel_norms(layer) for layer in layers]
            segments = [[] for _ in layers]
            for group in groups:
                score = None
                for index, offset in group.members:
                    part = scores[index][offset:offset + group.width]
                    score = part if score is None else score + part
                # Ranks, not a value: ties (channels already at 0) cannot
                # take more channels than the count.
                rank = ops.argsort(ops.argsort(score))
                keep = rank >= self._pruned_channels(group, layers, fraction)
                for index, offset in group.members:
                    segments[index].append((offset, keep))
            masks = []
            for layer, variable, parts in zip(layers, variables, segments):
                live = ops.concatenate([keep for _, keep in sorted(parts, key=lambda p: p[0])])
                masks.append(_channel_mask(layer, live, variable.dtype))
            return masks

        previous = [ops.convert_to_tensor(variable) for variable in variables]
        for variable, mask in zip(variables, when_due(due, compute, previous)):
            variable.assign(mask)

    def _pruned_channels(self, group, layers, fraction):
        """How many of a group's channels go at `fraction` of the schedule (int32).

        A group takes the largest target among its layers.
        """
        target = max(self.layer_target(layers[index]) for index, _ in group.members)
        pruned = ops.round(ops.cast(target * fraction, "float32") * group.width)
        if self.channel_multiple > 1:
            kept = _rounded_kept_channels(group.width - pruned, group.width, self.channel_multiple)
            pruned = group.width - kept
        return ops.cast(pruned, "int32")

    def _channel_groups(self, layers):
        """`channel_groups(layers)`, found once per set of layers (host side)."""
        key = tuple(id(layer) for layer in layers)
        cached = getattr(self, "_channel_groups_cache", None)
        if cached is None or cached[0] != key:
            cached = (key, channel_groups(layers))
            self._channel_groups_cache = cached
        return cached[1]

    @property
    def removes_channels(self):
        return self.structure == "channel"

    def get_config(self):
        return {
            "target_sparsity": self.target_sparsity,
            "schedule": keras.saving.serialize_keras_object(self.schedule),
            "frequency": self.frequency,
            "layer_targets": self.layer_targets,
            "structure": self.structure,
            "quantile": self.quantile,
            "channel_multiple": self.channel_multiple,
            "n_m": None if self.n_m is None else list(self.n_m),
        }


def _n_m_target(n_m, target_sparsity, structure, layer_targets):
    """The target N:M implies (`1 - N/M`), after checking the other arguments agree."""
    if structure != "weight" or layer_targets is not None:
        raise ValueError(
            "N:M sparsity is one pattern for every layer, of single weights: "
            "it takes neither `structure` nor `layer_targets`. Received: "
            f"structure={structure!r}, layer_targets={layer_targets!r}, n_m={n_m!r}"
        )
    return n_m_target(n_m, target_sparsity)


def _relative_channel_norms(layer):
    """Each output channel's L1 norm (mask applied) over the layer's mean, float32.

    Relative, so that a group's layers weigh alike: a 1x1 conv's filter
    sums hundreds of weights, the depthwise filter after it nine.
    """
    kernel = ops.cast(ops.convert_to_tensor(layer.raw_kernel), "float32")
    mask = ops.cast(ops.convert_to_tensor(layer.sparsity_state["mask"]), "float32")
    magnitude = ops.stop_gradient(ops.abs(kernel * mask))
    norms = ops.reshape(ops.sum(magnitude, axis=_input_axes(layer)), (-1,))
    return norms / ops.maximum(ops.mean(norms), 1e-30)


def _channel_mask(layer, live, dtype):
    """A kernel-shaped mask from one bool per output channel."""
    shape = tuple(layer.raw_kernel.shape)
    outputs = sorted(layer.kernel_spec.output_axes(layer))
    mask = ops.reshape(ops.cast(live, dtype), [shape[axis] for axis in outputs])
    for axis in _input_axes(layer):
        mask = ops.expand_dims(mask, axis)
    return ops.broadcast_to(mask, shape)


def _rounded_kept_channels(kept, width, multiple):
    """`kept` (a float tensor) to the nearest multiple, at least one, at most `width`.

    A layer with nothing pruned stays whole.
    """
    rounded = ops.clip(ops.round(kept / multiple) * multiple, min(multiple, width), width)
    return ops.where(kept >= width, float(width), rounded)


def _input_axes(layer):
    """The kernel axes that do not index output channels."""
    outputs = layer.kernel_spec.output_axes(layer)
    return tuple(a for a in range(len(layer.raw_kernel.shape)) if a not in outputs)
