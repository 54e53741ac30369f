"""STR: Soft Threshold Reparameterization, a learned threshold per layer."""

import math

import keras
from keras import ops

from keras_str.core.arguments import check_budget
from keras_str.core.arguments import check_finite_number
from keras_str.core.arguments import check_fraction
from keras_str.core.arguments import check_frequency
from keras_str.core.arguments import check_quantile
from keras_str.core.host import to_numpy
from keras_str.core.n_m import n_m_target
from keras_str.core.n_m import parse_n_m
from keras_str.core.schedules import get_schedule
from keras_str.core.threshold_fns import get_inverse_threshold_fn
from keras_str.core.threshold_fns import get_threshold_fn
from keras_str.core.threshold_fns import serialize_threshold_fn
from keras_str.methods.base import SparsityMethod
from keras_str.methods.base import when_due
from keras_str.methods.base import zero_fractions_at_quantile
from keras_str.methods.n_m_state import build_n_m_state
from keras_str.methods.n_m_state import masked_kernel_and_group_threshold
from keras_str.methods.n_m_state import update_n_m_state
from keras_str.ops import soft_threshold

THRESHOLD_GRANULARITIES = ("layer", "channel", "weight")

_PYTHON_THRESHOLD_FUNCTIONS = {
    "sigmoid": lambda s: 1.0 / (1.0 + math.exp(-s)),
    "exp": math.exp,
}

# g(-10) ~ 4.5e-5 for both sigmoid and exp: the layer starts practically
# dense and weight decay on the threshold parameter has room to move it.
DEFAULT_THRESHOLD_INIT = -10.0

# The shift lands just above the k-th critical value, so float32 rounding of
# `s + shift` in the forward pass cannot leave that weight unpruned.
_SHIFT_MARGIN = 1e-5
# g^-1(|w|) is -inf for exact zeros and +inf for |w| >= 1 under sigmoid;
# clipping keeps the chosen shift finite (logit of float32 values lies
# within about +-104, log within +-104).
_CRITICAL_LIMIT = 1e3


@keras.saving.register_keras_serializable(package="keras_str")
class STR(SparsityMethod):
    """Soft Threshold Reparameterization: a learned threshold per layer.

    The layer computes with `sign(W) * relu(|W| - g(s))`; `s` is trained with
    `W`, and weight decay on both (`keras_str.apply_weight_decay`) raises it,
    so each layer learns its own sparsity (Kusupati et al., 2020).

    Plain STR sets the final sparsity only through lambda and
    `threshold_init`. Given `target_sparsity` and a `schedule`, every
    training step also sets one common offset `delta` (a non-trainable
    variable) so that the layers compute with `g(s + delta)` and their
    kernels are exactly `target_sparsity * schedule(step)` zeros overall;
    each layer keeps that threshold (`threshold_value`) for inference and
    `strip`, so the optimizer's last move of `s` cannot pull the trained
    model off its target.
    The offset moves every layer's threshold together; the differences
    between layers' `s` are still learned by the loss and the decay, so the
    layer-wise budget stays STR's own. The offset is an exact global order
    statistic computed on the device (see `keras_str.core.quantile`).

    Args:
        target_sparsity: Optional final fraction of zeros over all kernels
            of this method, in `[0, 1)`.
        schedule: A `PolynomialSchedule` (or `ConstantSchedule`); required
            with `target_sparsity`.
        frequency: Steps between offset updates (1: every step).
        threshold_fn: `"sigmoid"` (default: the STR paper's choice for
            unstructured sparsity; single weights lie well inside its
            `(0, 1)`), `"exp"`, or a
            callable `g(s)` written with `keras.ops` (not with a target).
        threshold_init: Initial value of the raw threshold parameter `s`
            (the paper's sInit). Defaults to `-10.0`, i.e. `g(s) ~ 4.5e-5`.
        threshold_granularity: `"layer"` (one threshold, the paper's
            default), `"channel"` (one per output channel) or `"weight"`
            (one per kernel entry, i.e. mask learning).
        threshold_regularizer: Regularizer for `s`; STR needs the same decay
            on `s` as on the kernel (`keras_str.apply_weight_decay` sets it).
        budget: What `target_sparsity` counts: `"weights"` (zeros) or
            `"macs"` (the share of dense multiply-adds removed; see
            `keras_str.ST3`).
        quantile: How the target's offset (a quantile) is found each step:
            `"auto"` (default), `"exact"` or `"sample"`; see `keras_str.ST3`.
        n_m: Optional N:M sparsity, `(2, 4)` or `"2:4"`, with a `schedule`:
            at most N nonzero weights in every M consecutive ones along each
            kernel's input axis (see `keras_str.GMP`). Each group keeps its
            `M - round(schedule(step) * (M - N))` largest weights, and a kept
            weight is shrunk by the larger of the layer's learned threshold
            `g(s)` and the largest magnitude its group drops. No offset is
            added to `s`: the pattern sets the target (`1 - N/M`;
            `target_sparsity` may be `None`), and where `g(s)` rises above a
            group's threshold it zeroes more, so the kernels reach at least
            the target. The budget is `"weights"`.

    Raises:
        ValueError: If an argument is out of range or of the wrong type
            (named, with the value received), or the combination cannot
            work: a `schedule` without `target_sparsity` or the reverse, a
            target with a `threshold_fn` that cannot be inverted, a MACs
            budget without a target, `n_m` without a schedule or with a MACs
            budget.

    Example:

    >>> method = keras_str.STR(threshold_init=-5.0)
    >>> layer = keras_str.STRDense(16, method=method)
    >>> targeted = keras_str.STR(0.9, keras_str.PolynomialSchedule(0, 1000))
    >>> two_four = keras_str.STR(None, keras_str.PolynomialSchedule(0, 1000), n_m="2:4")
    """

    learns_threshold = True

    def __init__(
        self,
        target_sparsity=None,
        schedule=None,
        frequency=1,
        threshold_fn="sigmoid",
        threshold_init=DEFAULT_THRESHOLD_INIT,
        threshold_granularity="layer",
        threshold_regularizer=None,
        budget="weights",
        quantile="auto",
        n_m=None,
    ):
        super().__init__()
        self.n_m = None if n_m is None else parse_n_m(n_m)
        if self.n_m is not None:
            if schedule is None or budget != "weights":
                raise ValueError(
                    "STR with N:M sparsity needs a `schedule` (the pattern goes "
                    "from dense to N:M along it) and counts weights, not MACs. "
                    f"Received: schedule={schedule!r}, budget={budget!r}, n_m={n_m!r}"
                )
            target_sparsity = n_m_target(self.n_m, target_sparsity)
        self.budget = check_budget(budget)
        self.quantile = check_quantile(quantile)
        if budget != "weights" and target_sparsity is None:
            raise ValueError(
                "A MACs budget needs a `target_sparsity` (the share of the "
                "dense MACs to remove). Received: target_sparsity=None, "
                f"budget={budget!r}"
            )
        self.frequency = check_frequency(frequency)
        self.target_sparsity = check_fraction(
            "target_sparsity", target_sparsity, allow_none=True
        )
        if self.target_sparsity is None and schedule is not None:
            raise ValueError(
                "`schedule` needs a `target_sparsity` to schedule. Received: "
                f"target_sparsity=None, schedule={schedule!r}"
            )
        if self.target_sparsity is not None and schedule is None:
            raise ValueError(
                "STR with `target_sparsity` needs a `schedule`, e.g. "
                "`keras_str.PolynomialSchedule(begin_step, end_step)`. "
                f"Received: target_sparsity={target_sparsity}, schedule=None"
            )
        self.schedule = None if schedule is None else get_schedule(schedule)
        self._threshold_fn = get_threshold_fn(threshold_fn)
        self.threshold_fn = (
            self._threshold_fn if isinstance(threshold_fn, dict) else threshold_fn
        )
        self.threshold_init = check_finite_number("threshold_init", threshold_init)
        if threshold_granularity not in THRESHOLD_GRANULARITIES:
            raise ValueError(
                "Invalid value for argument `threshold_granularity`. Expected "
                f"one of {THRESHOLD_GRANULARITIES}. "
                f"Received: threshold_granularity={threshold_granularity!r}"
            )
        self.threshold_granularity = threshold_granularity
        self.threshold_regularizer = keras.regularizers.get(
            threshold_regularizer
        )
        self._inverse_threshold_fn = get_inverse_threshold_fn(threshold_fn)
        if self.scheduled and self._inverse_threshold_fn is None:
            raise ValueError(
                "STR with `target_sparsity` needs a threshold function it can "
                "invert ('sigmoid' or 'exp'). "
                f"Received: threshold_fn={threshold_fn!r}"
            )

    @property
    def scheduled(self):
        return self.target_sparsity is not None

    def _threshold_shape(self, layer):
        kernel_shape = tuple(layer.raw_kernel.shape)
        if self.threshold_granularity == "layer":
            return ()
        if self.threshold_granularity == "channel":
            return layer.kernel_spec.channel_shape(layer)
        return kernel_shape

    def build(self, layer):
        state = {
            "threshold": layer.add_weight(
                name="threshold",
                shape=self._threshold_shape(layer),
                initializer=keras.initializers.Constant(self.threshold_init),
                regularizer=self.threshold_regularizer,
                dtype=layer.variable_dtype,
                autocast=False,
            )
        }
        if self.scheduled and self.n_m is not None:
            state.update(build_n_m_state(layer, self.n_m[1]))
        elif self.scheduled:
            state["threshold_offset"] = layer.add_weight(
                name="threshold_offset",
                shape=(),
                initializer="zeros",
                dtype=layer.variable_dtype,
                trainable=False,
                autocast=False,
                aggregation="only_first_replica",
            )
        if self.scheduled:
            state["threshold_value"] = layer.add_weight(
                name="threshold_value",
                shape=self._threshold_shape(layer),
                initializer=keras.initializers.Constant(
                    _PYTHON_THRESHOLD_FUNCTIONS[self.threshold_fn](
                        self.threshold_init
                    )
                ),
                dtype=layer.variable_dtype,
                trainable=False,
                autocast=False,
                aggregation="only_first_replica",
            )
        return state

    def _parameter(self, layer):
        """`s`, plus the scheduled offset of targeted STR."""
        state = layer.sparsity_state
        s = ops.convert_to_tensor(state["threshold"])
        if self.scheduled and self.n_m is None:
            s = s + ops.convert_to_tensor(state["threshold_offset"])
        return s

    def threshold(self, layer):
        learned = self._threshold_fn(self._parameter(layer))
        if not self.scheduled:
            return learned
        # Targeted STR: the value is the threshold set at the last training
        # step (so the optimizer's move of s in that step cannot pull the
        # saved model off its target); the gradient reaches s through g.
        stored = ops.convert_to_tensor(layer.sparsity_state["threshold_value"])
        return stored + (learned - ops.stop_gradient(learned))

    def effective_kernel(self, layer, kernel):
        if self.n_m is None:
            return soft_threshold(kernel, self.threshold(layer))
        candidates, group_threshold = masked_kernel_and_group_threshold(
            layer, kernel, self.n_m[1]
        )
        # The gradient reaches `s` where its threshold is the larger one.
        threshold = ops.maximum(ops.cast(self.threshold(layer), kernel.dtype), group_threshold)
        return soft_threshold(candidates, threshold)

    def _magnitude(self, layer):
        """What the threshold is compared with, one value per kernel entry."""
        return ops.abs(ops.convert_to_tensor(layer.raw_kernel))

    def final_layer_sparsity(self, layers):
        if not self.scheduled:
            return None
        if self.n_m is not None:
            return {layer.name: self.target_sparsity for layer in layers}
        values = [to_numpy(self._critical_values(layer)) for layer in layers]
        return zero_fractions_at_quantile(
            layers, values, self.target_sparsity, self.budget
        )

    def _critical_values(self, layer):
        """Per weight, the offset at or above which it is zero: `g^-1(|w|) - s`."""
        inverse = ops.clip(
            self._inverse_threshold_fn(self._magnitude(layer)), -_CRITICAL_LIMIT, _CRITICAL_LIMIT
        )
        return inverse - ops.convert_to_tensor(layer.sparsity_state["threshold"])

    def update(self, layers, step):
        if self.n_m is not None:
            due = self.due(step)
            update_n_m_state(layers, self.n_m, self.schedule(step), due)
            for layer in layers:
                value = layer.sparsity_state["threshold_value"]
                learned = self._threshold_fn(
                    ops.convert_to_tensor(layer.sparsity_state["threshold"])
                )
                value.assign(ops.cast(ops.stop_gradient(learned), value.dtype))
            return
        # A weight w of a layer with parameter s is zero iff
        # g^-1(|w|) <= s + delta, so the delta that zeroes k weights is the
        # k-th smallest "critical value" g^-1(|w|) - s over all layers.
        def compute():
            critical = [ops.stop_gradient(self._critical_values(layer)) for layer in layers]
            value, any_pruned = self.select(critical, layers, self.target_at(step))
            # With nothing to prune the threshold is exactly zero (sigmoid and
            # exp of -2000 are 0.0 in float32): before the schedule starts,
            # layers compute with their raw weights, not shrunk ones (a
            # group's norm would shrink by up to 1/e just below its critical value).
            return ops.where(any_pruned, value + _SHIFT_MARGIN, -2.0 * _CRITICAL_LIMIT)

        offsets = [layer.sparsity_state["threshold_offset"] for layer in layers]
        offset = when_due(
            self.due(step), compute, ops.convert_to_tensor(offsets[0])
        )
        for layer, variable in zip(layers, offsets):
            variable.assign(ops.cast(offset, variable.dtype))
            s = ops.convert_to_tensor(layer.sparsity_state["threshold"])
            layer.sparsity_state["threshold_value"].assign(
                ops.stop_gradient(self._threshold_fn(s + offset))
            )

    def get_config(self):
        return {
            "target_sparsity": self.target_sparsity,
            "schedule": (
                None
                if self.schedule is None
                else keras.saving.serialize_keras_object(self.schedule)
            ),
            "frequency": self.frequency,
            "threshold_fn": serialize_threshold_fn(self.threshold_fn),
            "threshold_init": self.threshold_init,
            "threshold_granularity": self.threshold_granularity,
            "threshold_regularizer": keras.regularizers.serialize(
                self.threshold_regularizer
            ),
            "budget": self.budget,
            "quantile": self.quantile,
            "n_m": None if self.n_m is None else list(self.n_m),
        }
