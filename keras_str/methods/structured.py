"""Structured STR: one learned threshold on the norm of each group of weights.

Whole groups become zero, in the shapes runtimes can use: output channels
(filters / units, removable from the model) or blocks of consecutive weights
(`block_axis="input"`, size 4: the 1x4 blocks TFLite's sparse
FULLY_CONNECTED kernel runs; 16 for int8; `block_axis="output"`, size 2 or 4:
XNNPACK's output-channel blocks for 1x1 convolutions).
"""

import math
import warnings

import keras
from keras import ops

from keras_str.core.arguments import check_fraction
from keras_str.core.arguments import check_positive_int
from keras_str.core.host import to_numpy
from keras_str.methods.channel_groups import output_channel_count
from keras_str.methods.channel_macs import ChannelMacs
from keras_str.methods.str import STR
from keras_str.ops import group_soft_threshold

STRUCTURES = ("channel", "block")
BLOCK_AXES = ("input", "output")
SCOPES = ("global", "sigma", "layer")
# Keeps the norm's gradient finite for a group of zeros.
_NORM_EPSILON = 1e-12
# What a group kept by its layer's floor counts as in the target's quantile:
# above every real group, and finite, so that a target the floors make
# unreachable gives a finite threshold (then capped), not inf - inf = NaN.
_FLOOR_MAGNITUDE = 1e30
# The largest share of its norm a group kept by the floor is thresholded by.
_FLOOR_SHRINK = 0.5


@keras.saving.register_keras_serializable(package="keras_str")
class StructuredSTR(STR):
    """STR on group norms: `W_group * relu(1 - g(s) / rms(W_group))`.

    Each group of weights is soft-thresholded by its root mean square
    `||W_group|| / sqrt(group size)` (the proximal step of a group lasso
    with the usual sqrt(group size) weights, as in the STR paper's filter
    pruning, with `g = exp` by default): a group whose RMS is at or below
    `g(s)` is exactly zero. Measuring groups by RMS puts groups of
    different sizes (a 3x3x1 filter, a 1600-input unit) on one scale, so a
    target shared by the layers does not empty the layers with small
    groups. Everything else is STR's: `s` is learned with weight
    decay, or, given `target_sparsity` and a `schedule`, a common offset
    sets the share of zero weights exactly (up to one group) at every
    training step, inside the train step.

    Args:
        structure: `"channel"` (a group is one output channel: a conv
            filter, a Dense unit's weights) or `"block"` (`block_size`
            consecutive weights along `block_axis`, within one output
            channel; Dense and convolution layers).
        block_size: Weights per block (`"block"` only). 4 gives the 1x4
            blocks TFLite's sparse FULLY_CONNECTED kernel runs in float32,
            16 the int8 ones. An axis whose length is not a multiple has a
            shorter last block.
        block_axis: `"input"` (consecutive input features of one unit:
            TFLite's FC blocks) or `"output"` (the same input in consecutive
            output channels: XNNPACK's 2- or 4-channel blocks for 1x1
            convs).
        target_sparsity: As in `keras_str.STR`.
        schedule: As in `keras_str.STR`.
        frequency: As in `keras_str.STR`.
        threshold_init: As in `keras_str.STR`.
        threshold_regularizer: As in `keras_str.STR`.
        quantile: As in `keras_str.STR`.
        budget: `"weights"` or `"macs"`, as in `keras_str.STR`. With
            `structure="channel"`, `"macs"` counts the multiply-adds the
            stripped model keeps: a removed channel also removes the inputs
            of the layers reading it and the channels a depthwise chain or a
            residual add ties to it (`keras_str.methods.channel_macs`,
            following the model's graph as `keras_str.shrink_channels`
            does). A removed channel's bias is 0, so a removed filter
            outputs the activation of 0 and strip can take it out.
        threshold_fn: `"exp"` (default: the STR paper's choice for
            structured sparsity, filters and low rank; unlike the sigmoid it
            is not capped at 1), `"sigmoid"` or a callable.
        scope: `"global"` (default: thresholds compare group RMS values
            directly) or `"sigma"` (relative to the standard deviation each
            layer's kernel initializer draws with, as ST-3-sigma: layers
            initialised at different scales, e.g. depthwise 3x3 filters and
            1x1 convolutions, are pruned on one footing; the threshold a
            layer computes with is `sigma_l * g(s)`) or `"layer"` (relative
            to the layer's current kernel RMS: groups are judged against
            their own layer's, not the weights' drifting absolute size;
            on a small CNN without BatchNormalization it was the more
            accurate, but it compares BatchNormalization gammas with their
            own layer's too, which emptied a MobileNet's early layers: use
            `"sigma"` there).
            A layer that feeds a BatchNormalization is thresholded there,
            on the channels' `gamma` (`keras_str.STRBatchNormalization`,
            set up by `keras_str.sparsify`).
        max_layer_sparsity: The largest share of one layer's groups that
            may be zero, in `[0, 1)`. `None` (default): every layer keeps at
            least one group, so no layer is emptied (an empty layer passes
            on a constant and disconnects the network). The groups a floor
            keeps are each layer's largest; they never count toward the
            target (the other layers' groups make it up), and are thresholded
            by at most half their norm.
        rescale: Scale each layer's kept groups by `sum|W_kept| /
            sum|W_effective|` (no gradient through the factor), so that
            soft-thresholding does not shrink the layer's output. Group
            norms are much alike, so a threshold at a target quantile
            shrinks every kept group nearly to zero: targeted training
            without it collapses. `None` (default): on with a target.
        threshold_granularity: `"layer"` (default) or `"channel"` (one
            threshold per output channel).

    Raises:
        ValueError: If an argument is out of range or of the wrong type
            (named, with the value received): an unknown `structure`,
            `block_axis` or `scope`, `threshold_granularity="weight"`, a
            `rescale` other than None or a bool. `"block"` on a layer whose
            kernel's last axis is not its only output axis is refused, naming
            the layer, when the model is sparsified.

    Example:

    >>> method = keras_str.StructuredSTR("block", block_size=4)
    >>> layer = keras_str.STRDense(16, method=method)
    >>> targeted = keras_str.StructuredSTR(
    ...     "channel", target_sparsity=0.5,
    ...     schedule=keras_str.PolynomialSchedule(0, 1000))
    """

    def __init__(
        self,
        structure="channel",
        block_size=4,
        block_axis="input",
        target_sparsity=None,
        schedule=None,
        frequency=1,
        threshold_fn="exp",
        threshold_init=-10.0,
        threshold_granularity="layer",
        threshold_regularizer=None,
        budget="weights",
        scope="global",
        rescale=None,
        quantile="auto",
        max_layer_sparsity=None,
    ):
        if scope not in SCOPES:
            raise ValueError(
                f"Invalid value for argument `scope`. Expected one of "
                f"{SCOPES}. Received: scope={scope!r}"
            )
        if structure not in STRUCTURES:
            raise ValueError(
                f"Invalid value for argument `structure`. Expected one of "
                f"{STRUCTURES}. Received: structure={structure!r}"
            )
        block_size = check_positive_int("block_size", block_size)
        if block_axis not in BLOCK_AXES:
            raise ValueError(
                f"Invalid value for argument `block_axis`. Expected one of "
                f"{BLOCK_AXES}. Received: block_axis={block_axis!r}"
            )
        if threshold_granularity == "weight":
            raise ValueError(
                "StructuredSTR thresholds groups: `threshold_granularity` is "
                "'layer' or 'channel'. Received: threshold_granularity='weight'"
            )
        super().__init__(
            target_sparsity=target_sparsity,
            schedule=schedule,
            frequency=frequency,
            threshold_fn=threshold_fn,
            threshold_init=threshold_init,
            threshold_granularity=threshold_granularity,
            threshold_regularizer=threshold_regularizer,
            budget=budget,
            quantile=quantile,
        )
        self.structure = structure
        self.block_size = block_size
        self.block_axis = block_axis
        self.scope = scope
        if rescale not in (None, True, False):
            raise ValueError(
                "Invalid value for argument `rescale`. Expected None, True or "
                f"False. Received: rescale={rescale!r}"
            )
        self.rescale = self.scheduled if rescale is None else rescale
        self.max_layer_sparsity = check_fraction(
            "max_layer_sparsity", max_layer_sparsity, allow_none=True
        )

    def build(self, layer):
        self._block_axis_of(layer)  # fails early for a layer it cannot group
        return super().build(layer)

    def _sigma(self, layer, kernel=None):
        if self.scope == "sigma":
            return layer.kernel_spec.scale(layer)
        if self.scope == "layer":
            if kernel is None:
                kernel = ops.convert_to_tensor(layer.raw_kernel)
            rms = ops.sqrt(ops.mean(ops.square(kernel)) + _NORM_EPSILON)
            return ops.stop_gradient(rms)
        return 1.0

    def threshold(self, layer):
        return super().threshold(layer) * self._sigma(layer)

    def _group_thresholds(self, layer, kernel, norms):
        """Each group's threshold: the layer's, at most half the norm of the groups its floor keeps."""
        threshold = super().threshold(layer) * self._sigma(layer, kernel)
        floor = self._floor_groups(layer, norms)
        # Capping a kept group at its own norm would leave it a sliver (the
        # soft threshold's factor 1 - t / norm near 0) that `rescale` then
        # blows up, gradients with it; half keeps it at least half its size.
        norms = ops.stop_gradient(norms)
        capped = ops.minimum(threshold, _FLOOR_SHRINK * norms)
        # Past the layer's largest group a threshold changes nothing: clamped
        # there, it keeps t / norm finite (the gradient of a zeroed group is
        # 0 * t / norm^2) and stops feeding `s` (exp(s) would amplify any
        # gradient into a runaway, as under BatchNorm, where the loss does
        # not depend on a filter's scale).
        clamped = ops.minimum(threshold, ops.max(norms))
        return ops.where(floor, capped, clamped)

    def select(self, values, layers, fraction):
        counter = self._channel_macs(layers)
        if counter is None:
            return super().select(values, layers, fraction)
        channel_values = [
            counter.channel_values(layer, value) for layer, value in zip(layers, values)
        ]
        return counter.select(channel_values, fraction)

    def _channel_macs(self, layers):
        """The graph count of a channel MACs budget (what shrinking removes), or `None`."""
        if self.budget != "macs" or self.structure != "channel":
            return None
        key = tuple(id(layer) for layer in layers)
        cached = getattr(self, "_channel_macs_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        counter = None
        if all(len(layer._inbound_nodes) == 1 for layer in layers):
            counter = ChannelMacs(layers)
            if not counter.counts_channels:
                counter = None
        if counter is None:
            warnings.warn(
                "StructuredSTR('channel', budget='macs') counts each layer's "
                "own MACs only: its layers are not called once each in a "
                "functional or Sequential model whose graph shows what "
                "removing a channel also removes (the consumers' inputs, "
                "depthwise chains), so the stripped model may keep fewer "
                "MACs than the target asks.",
                stacklevel=2,
            )
        self._channel_macs_cache = (key, counter)
        return counter

    def final_layer_sparsity(self, layers):
        if not self.scheduled:
            return None
        counter = self._channel_macs(layers)
        if counter is None:
            fractions = super().final_layer_sparsity(layers)
        else:
            # Each layer's share of channels at the value the graph count picks.
            channel_values = [
                counter.channel_values(layer, self._critical_values(layer)) for layer in layers
            ]
            value, _ = counter.select(channel_values, self.target_sparsity)
            fractions = {
                layer.name: float((to_numpy(values) <= to_numpy(value)).mean())
                for layer, values in zip(layers, channel_values)
            }
        # A target the floors make unreachable stops at each floor.
        for layer in layers:
            groups = self._group_count(layer)
            most = 1.0 - self._kept_groups(groups) / groups
            fractions[layer.name] = min(fractions[layer.name], most)
        return fractions

    def _group_count(self, layer):
        if self.structure == "channel":
            return output_channel_count(layer)
        shape = tuple(layer.raw_kernel.shape)
        axis = self._block_axis_of(layer)
        rest = math.prod(shape) // shape[axis]
        return -(-shape[axis] // self.block_size) * rest

    def _kept_groups(self, groups):
        if self.max_layer_sparsity is None:
            return 1
        return min(groups, max(1, math.ceil((1.0 - self.max_layer_sparsity) * groups)))

    def _floor_groups(self, layer, norms):
        """Whether each entry's group is among the largest its layer keeps (a bool tensor)."""
        flat = ops.stop_gradient(ops.reshape(norms, (-1,)))
        # Block norms are repeated over their block's entries; channel norms are not.
        repeats = self.block_size if self.structure == "block" else 1
        groups = self._group_count(layer)
        kept = self._kept_groups(groups)
        if kept >= groups:
            return ops.ones(norms.shape, "bool")
        if kept == 1:
            smallest_kept = ops.max(flat)  # a reduction, not a sort
        else:
            # The last kept group ends at entry `kept * repeats`.
            smallest_kept = ops.top_k(flat, kept * repeats, sorted=True)[0][-1]
        return ops.stop_gradient(norms) >= smallest_kept

    def effective_kernel(self, layer, kernel):
        norms = self.group_norms(layer, kernel)
        thresholded = group_soft_threshold(
            kernel, self._group_thresholds(layer, kernel, norms), norms
        )
        if not self.rescale:
            return thresholded
        magnitude = ops.abs(kernel)
        kept = ops.sum(ops.where(thresholded != 0, magnitude, 0.0))
        shrunk = ops.sum(ops.abs(thresholded))
        scale = ops.where(shrunk > 0, kept / ops.maximum(shrunk, 1e-12), 1.0)
        return thresholded * ops.stop_gradient(scale)

    def live_channels(self, layer, kernel):
        if self.structure != "channel":
            return None
        norms = self.group_norms(layer, kernel)
        live = norms > self._group_thresholds(layer, kernel, norms)
        return ops.reshape(live, (-1,))

    def _magnitude(self, layer):
        # A group is pruned as a whole: each weight carries its group's RMS,
        # in units of the layer's sigma (what `g(s)` is compared with).
        # The groups each layer keeps under its floor never count toward the
        # target, so the other layers' groups make up the target in their place.
        kernel = ops.convert_to_tensor(layer.raw_kernel)
        norms = self.group_norms(layer, kernel) / self._sigma(layer, kernel)
        norms = ops.where(self._floor_groups(layer, norms), _FLOOR_MAGNITUDE, norms)
        return ops.broadcast_to(norms, kernel.shape)

    def group_norms(self, layer, kernel):
        """Each weight's group RMS (norm / sqrt(group size)), broadcastable to `kernel`."""
        if self.structure == "channel":
            outputs = layer.kernel_spec.output_axes(layer)
            axes = tuple(a for a in range(len(kernel.shape)) if a not in outputs)
            squares = ops.square(kernel)
            if axes:  # not for one value per channel (BatchNormalization's gamma)
                squares = ops.mean(squares, axis=axes, keepdims=True)
            return ops.sqrt(squares + _NORM_EPSILON)
        return _block_norms(kernel, self._block_axis_of(layer), self.block_size)

    def _block_axis_of(self, layer):
        if self.structure != "block":
            return None
        rank = len(layer.raw_kernel.shape)
        outputs = layer.kernel_spec.output_axes(layer)
        trailing = outputs == (rank - 1,)
        if not trailing or rank < 2:
            raise ValueError(
                f"StructuredSTR('block') needs a kernel whose last axis alone "
                f"indexes output channels (Dense, Conv); layer {layer.name!r} "
                f"({type(layer).__name__}) has kernel shape "
                f"{tuple(layer.raw_kernel.shape)} with output axes {outputs}. "
                "Use structure='channel', or keep the layer dense. "
                f"Received: structure='block'"
            )
        return rank - 2 if self.block_axis == "input" else rank - 1

    @property
    def removes_channels(self):
        return self.structure == "channel"

    @property
    def thresholds_batch_norm_scales(self):
        return self.structure == "channel"

    def get_config(self):
        config = super().get_config()
        del config["n_m"]  # groups are the structure's, never N:M
        return {
            "structure": self.structure,
            "block_size": self.block_size,
            "block_axis": self.block_axis,
            "scope": self.scope,
            "rescale": self.rescale,
            "max_layer_sparsity": self.max_layer_sparsity,
            **config,
        }


def _block_norms(kernel, axis, size):
    """The RMS of each run of `size` entries along `axis`, repeated over the run."""
    moved = ops.moveaxis(kernel, axis, 0)
    length = moved.shape[0]
    padded_length = -(-length // size) * size
    if padded_length != length:
        pad = [(0, padded_length - length)] + [(0, 0)] * (len(moved.shape) - 1)
        moved = ops.pad(moved, pad)
    rest = tuple(moved.shape[1:])
    blocks = ops.reshape(moved, (padded_length // size, size) + rest)
    # The last block may be shorter: divide by its own length.
    lengths = [size] * (length // size) + ([length % size] if length % size else [])
    lengths = ops.reshape(
        ops.convert_to_tensor(lengths, kernel.dtype), (len(lengths), 1) + (1,) * len(rest)
    )
    squares = ops.sum(ops.square(blocks), axis=1, keepdims=True) / lengths
    norms = ops.sqrt(ops.broadcast_to(squares, blocks.shape) + _NORM_EPSILON)
    norms = ops.reshape(norms, (padded_length,) + rest)[:length]
    return ops.moveaxis(norms, 0, axis)
