"""ST-3: a scheduled soft threshold with straight-through gradients."""

import keras
import numpy as np
from keras import ops

from keras_str.core.arguments import check_budget
from keras_str.core.arguments import check_fraction
from keras_str.core.arguments import check_frequency
from keras_str.core.arguments import check_quantile
from keras_str.core.host import to_numpy
from keras_str.core.n_m import n_m_target
from keras_str.core.n_m import parse_n_m
from keras_str.core.schedules import get_schedule
from keras_str.methods.base import SparsityMethod
from keras_str.methods.base import when_due
from keras_str.methods.base import zero_fractions_at_quantile
from keras_str.methods.n_m_state import build_n_m_state
from keras_str.methods.n_m_state import masked_kernel_and_group_threshold
from keras_str.methods.n_m_state import update_n_m_state
from keras_str.ops import soft_threshold

ST3_SCOPES = ("global", "sigma")


@keras.saving.register_keras_serializable(package="keras_str")
class ST3(SparsityMethod):
    """ST-3: a scheduled soft threshold with straight-through gradients.

    Every training step, inside the compiled train step, the threshold `t`
    is set so that `target_sparsity * schedule(step)` of all the method's
    kernel weights satisfy `|W| <= t` (one global magnitude quantile on the
    device: exact, or estimated from a fixed sample for models over 131k
    weights; see `quantile` and `keras_str.core.quantile`). The layer computes with
    `sign(W) * relu(|W| - t)`, but the gradient reaches every raw weight
    unchanged (straight-through), so pruned weights keep learning and can
    come back (Vanderschueren & De Vleeschouwer, 2023). The threshold is
    set from the weights at the start of the step, so after the last
    optimizer step the sparsity can differ from the target by the few
    weights that step moved across it.

    Args:
        target_sparsity: Final fraction of zeros over all ST-3 kernels.
        schedule: A `PolynomialSchedule` (cubic by default) or
            `ConstantSchedule`.
        scope: `"global"` (one magnitude threshold, ST-3) or `"sigma"` (the
            quantile is taken over `|W| / sigma_l`, with `sigma_l` the
            standard deviation the layer's kernel initializer draws with
            (`sqrt(2 / (fan_in + fan_out))` for Glorot, `sqrt(2 / fan)` for
            He, with Keras's fans; see `SparseLayerSpec.scale`); ST-3-sigma,
            which spares small layers less and saves FLOPs).
        rescale: If `True`, each output channel's thresholded weights are
            scaled by `1 / rho`, `rho = mean|W * mask| / mean|W|` (the share
            of the channel's raw magnitude that survives the mask).
        frequency: Steps between threshold updates (1: every step, as in
            the paper). The end of the schedule always gets an update.
        budget: What `target_sparsity` counts: `"weights"` (the share of
            zero weights) or `"macs"` (the share of the dense model's
            multiply-adds removed, each weight weighing the MACs it costs
            per example: 0.9 leaves 10 % of the dense MACs).
        quantile: How the threshold's quantile is found each step:
            `"exact"`, `"sample"` (from 16,384 fixed random weights; the
            reached sparsity is off by a standard deviation of
            `sqrt(p (1 - p) / 16384)`, 0.23 points at p = 0.9, and the
            update costs the same for any model size), or `"auto"`
            (default: sampled above 131,072 weights, else exact; see
            `keras_str.core.quantile`).
        n_m: Optional N:M sparsity, `(2, 4)` or `"2:4"`: at most N nonzero
            weights in every M consecutive ones along each kernel's input
            axis (see `keras_str.GMP`). Each group then has a threshold of
            its own, the largest magnitude it drops: while the schedule
            runs a group keeps `M - round(schedule(step) * (M - N))` of its
            weights, shrunk by that threshold, and the gradient still
            reaches all of them (straight-through). The target is `1 - N/M`
            (`target_sparsity` may be `None`); `scope` then changes
            nothing (no threshold is compared across groups), and the
            budget is `"weights"`.

    Raises:
        ValueError: If an argument is out of range or of the wrong type
            (named, with the value received): `target_sparsity` outside
            [0, 1) (or not None with `n_m`), an unknown `scope`, a `rescale`
            that is not a bool, `n_m` with a MACs budget. A MACs budget on a
            layer built without fixed spatial dimensions is refused when the
            model is sparsified.

    Example:

    >>> dense = keras.Sequential([keras.Input((16,)),
    ...     keras.layers.Dense(32, name="hidden"), keras.layers.Dense(4, name="logits")])
    >>> schedule = keras_str.PolynomialSchedule(0, 6)
    >>> sparse = keras_str.sparsify(dense, method=keras_str.ST3(0.9, schedule))
    >>> sparse.compile(optimizer="sgd", loss="mse")
    >>> _ = sparse.fit(np.random.rand(64, 16), np.random.rand(64, 4), batch_size=8, verbose=0)
    >>> round(keras_str.sparsity_report(sparse).totals["sparsity"], 2)
    0.9
    >>> two_four = keras_str.ST3(None, schedule, n_m="2:4")
    """

    scheduled = True

    def __init__(
        self,
        target_sparsity,
        schedule,
        scope="global",
        rescale=False,
        frequency=1,
        budget="weights",
        quantile="auto",
        n_m=None,
    ):
        super().__init__()
        self.n_m = None if n_m is None else parse_n_m(n_m)
        if self.n_m is not None:
            if budget != "weights":
                raise ValueError(
                    "N:M sparsity sets each group's share of zeros, not a "
                    f"MACs budget. Received: budget={budget!r}, n_m={n_m!r}"
                )
            target_sparsity = n_m_target(self.n_m, target_sparsity)
        self.budget = check_budget(budget)
        self.quantile = check_quantile(quantile)
        self.frequency = check_frequency(frequency)
        self.target_sparsity = check_fraction("target_sparsity", target_sparsity)
        self.schedule = get_schedule(schedule)
        if scope not in ST3_SCOPES:
            raise ValueError(
                f"Invalid value for argument `scope`. Expected one of "
                f"{ST3_SCOPES}. Received: scope={scope!r}"
            )
        self.scope = scope
        if not isinstance(rescale, bool):
            raise ValueError(
                "Invalid value for argument `rescale`. Expected a bool. "
                f"Received: rescale={rescale!r}"
            )
        self.rescale = rescale

    def build(self, layer):
        if self.n_m is not None:
            return build_n_m_state(layer, self.n_m[1])
        return {
            "threshold": layer.add_weight(
                name="threshold",
                shape=(),
                initializer="zeros",
                dtype=layer.variable_dtype,
                trainable=False,
                autocast=False,
                aggregation="only_first_replica",
            )
        }

    def threshold(self, layer):
        if self.n_m is not None:
            return None  # one per group
        return ops.convert_to_tensor(layer.sparsity_state["threshold"])

    def effective_kernel(self, layer, kernel):
        if self.n_m is None:
            threshold = self.threshold(layer)
            candidates = kernel
        else:
            candidates, threshold = masked_kernel_and_group_threshold(
                layer, kernel, self.n_m[1]
            )
        thresholded = soft_threshold(candidates, threshold)
        if self.rescale:
            # rho = mean|W * mask| / mean|W| per output channel; the kept
            # weights are scaled by 1 / rho, so a channel keeps the mean
            # magnitude its raw weights have.
            channel_axes = layer.kernel_spec.output_axes(layer)
            axes = tuple(
                a for a in range(len(kernel.shape)) if a not in channel_axes
            )
            magnitude = ops.abs(kernel)
            kept = ops.where(ops.abs(candidates) > threshold, magnitude, 0.0)
            kept_sum = ops.sum(kept, axis=axes, keepdims=True)
            total = ops.sum(magnitude, axis=axes, keepdims=True)
            scale = ops.where(kept_sum > 0, total / ops.maximum(kept_sum, 1e-12), 1.0)
            thresholded = thresholded * ops.stop_gradient(scale)
        # Straight-through: the value is the thresholded kernel, the gradient
        # is the identity on the raw kernel. Pruned entries are exact zeros
        # (w + (-w) == 0 in IEEE arithmetic).
        return kernel + ops.stop_gradient(thresholded - kernel)

    def final_layer_sparsity(self, layers):
        if self.n_m is not None:
            return {layer.name: self.target_sparsity for layer in layers}
        values = [
            np.abs(to_numpy(layer.raw_kernel)) / self.layer_scale(layer)
            for layer in layers
        ]
        return zero_fractions_at_quantile(
            layers, values, self.target_sparsity, self.budget
        )

    def layer_scale(self, layer):
        """The scale each layer's magnitudes are divided by before the quantile."""
        if self.scope == "global":
            return 1.0
        return layer.kernel_spec.scale(layer)

    def update(self, layers, step):
        if self.n_m is not None:
            update_n_m_state(layers, self.n_m, self.schedule(step), self.due(step))
            return
        scales = [self.layer_scale(layer) for layer in layers]

        def compute():
            normalized = [
                ops.stop_gradient(
                    ops.abs(ops.convert_to_tensor(layer.raw_kernel)) / scale
                )
                for layer, scale in zip(layers, scales)
            ]
            value, any_pruned = self.select(normalized, layers, self.target_at(step))
            return ops.where(any_pruned, value, 0.0)

        variables = [layer.sparsity_state["threshold"] for layer in layers]
        previous = ops.convert_to_tensor(variables[0]) / scales[0]
        normalized_threshold = when_due(self.due(step), compute, previous)
        for variable, scale in zip(variables, scales):
            variable.assign(ops.cast(normalized_threshold * scale, variable.dtype))

    def get_config(self):
        return {
            "target_sparsity": self.target_sparsity,
            "schedule": keras.saving.serialize_keras_object(self.schedule),
            "scope": self.scope,
            "rescale": self.rescale,
            "frequency": self.frequency,
            "budget": self.budget,
            "quantile": self.quantile,
            "n_m": None if self.n_m is None else list(self.n_m),
        }
