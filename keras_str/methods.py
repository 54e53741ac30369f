"""Sparsity methods: what a sparse layer keeps, computes with, and updates.

A method is a small serializable object held by each sparse layer
(`STRDense(..., method=ST3(...))`, or `keras_str.sparsify(model, method=...)`).
The layer asks it for its state (`build`) and its effective kernel
(`effective_kernel`); scheduled methods are advanced once per training step
by `keras_str.UpdateSparsity`, which hands `update` every layer of the model
that uses the same method, so global choices (one ST-3 threshold across
layers, one STR offset) are made over the whole model.

- `STR`: learned soft threshold `g(s)` per layer (Kusupati et al., 2020).
  With `target_sparsity`, a global offset on `s` tracks a schedule.
- `ST3`: soft threshold set every step from a global magnitude quantile to
  meet a cubic schedule, straight-through gradients (Vanderschueren & De
  Vleeschouwer, 2023).
- `GMP`: gradual magnitude pruning with a hard per-layer mask (Zhu & Gupta,
  2017), on Keras 3.
"""

import math

import keras
import numpy as np
from keras import ops

from keras_str.ops import soft_threshold
from keras_str.schedules import get_schedule


def _check_fraction(name, value, allow_none=False):
    if value is None and allow_none:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not 0.0 <= value < 1.0
    ):
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected a number in "
            f"[0, 1). Received: {name}={value!r}"
        )
    return float(value)


def _check_frequency(frequency):
    if isinstance(frequency, bool) or not isinstance(frequency, int) or frequency < 1:
        raise ValueError(
            "Invalid value for argument `frequency`. Expected a positive "
            f"integer. Received: frequency={frequency!r}"
        )
    return frequency


def _kernel_magnitudes(layer):
    return np.abs(ops.convert_to_numpy(layer._kernel))


def _kth_smallest(values, count):
    """The `count`-th smallest entry (1-based) of a flat array."""
    return float(np.partition(values, count - 1)[count - 1])


class SparsityMethod:
    """Base class: how a sparse layer turns its raw kernel into the one it uses.

    Subclasses implement `build(layer)` (create state with
    `layer.add_weight`), `effective_kernel(layer, kernel)` (written with
    `keras.ops`), and, when `scheduled`, `update(layers, step)`, which sets
    the state of every layer sharing the method from the raw weights at a
    training step. State lives in layer variables, so it is saved and
    restored with the model.
    """

    scheduled = False

    def build(self, layer):
        raise NotImplementedError

    def effective_kernel(self, layer, kernel):
        raise NotImplementedError

    def threshold(self, layer):
        """The current threshold tensor of `layer`, or `None` if it has none."""
        return None

    def update(self, layers, step):
        """Sets the state of `layers` for optimizer step `step`."""

    def due(self, step):
        """Whether `UpdateSparsity` should call `update` before step `step`."""
        frequency = getattr(self, "frequency", 1)
        return step % frequency == 0 or step == self.schedule.end_step

    def target_at(self, step):
        """Overall target sparsity at `step` (scheduled methods)."""
        return self.target_sparsity * self.schedule(step)

    def _add_step_variable(self, layer):
        layer.sparsity_step = layer.add_weight(
            name="sparsity_step",
            shape=(),
            initializer="zeros",
            dtype="int64",
            trainable=False,
            autocast=False,
        )

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        arguments = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{self.__class__.__name__}({arguments})"


@keras.saving.register_keras_serializable(package="keras_str")
class STR(SparsityMethod):
    """Soft Threshold Reparameterization: a learned threshold per layer.

    The layer computes with `sign(W) * relu(|W| - g(s))`; `s` is trained with
    `W` and weight decay on both raises it (see `keras_str.apply_weight_decay`).
    The threshold function, `s_init` and granularity are the layer's
    `threshold_*` arguments.

    Plain STR sets the final sparsity only through lambda and `s_init`. Given
    `target_sparsity` and a `schedule`, `keras_str.UpdateSparsity` shifts the
    threshold parameters `s` of all STR layers of the model by one common
    amount every step, so that their kernels are exactly
    `target_sparsity * schedule(step)` zeros. The shift moves every layer's
    threshold together; the differences between layers' `s` are still
    learned by the loss and the decay, so the layer-wise budget stays STR's
    own.

    Args:
        target_sparsity: Optional final fraction of zeros over all STR
            kernels, in `[0, 1)`.
        schedule: A `PolynomialSchedule` (or `ConstantSchedule`); required
            with `target_sparsity`.
        frequency: Steps between shifts (1: every step). The shift is a
            global quantile computed on the host; larger values cut its cost
            on big models. The end of training always gets a final shift.

    Example:

    >>> method = keras_str.STR(0.9, keras_str.PolynomialSchedule(0, 1000))
    >>> layer = keras_str.STRDense(16, method=method, threshold_init=-5.0)
    """

    def __init__(self, target_sparsity=None, schedule=None, frequency=1):
        self.frequency = _check_frequency(frequency)
        self.target_sparsity = _check_fraction(
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

    @property
    def scheduled(self):
        return self.target_sparsity is not None

    def build(self, layer):
        layer.threshold_param = layer.add_weight(
            name="threshold",
            shape=layer._threshold_shape(),
            initializer=keras.initializers.Constant(layer.threshold_init),
            regularizer=layer.threshold_regularizer,
            dtype=layer.variable_dtype,
            autocast=False,
        )
        if self.scheduled:
            if layer.threshold_fn not in INVERSE_THRESHOLD_FUNCTIONS:
                raise ValueError(
                    "STR with `target_sparsity` needs a threshold function it "
                    f"can invert ({sorted(INVERSE_THRESHOLD_FUNCTIONS)}). "
                    f"Received: threshold_fn={layer.threshold_fn!r}"
                )
            self._add_step_variable(layer)

    def threshold(self, layer):
        return layer._threshold_fn(ops.convert_to_tensor(layer.threshold_param))

    def effective_kernel(self, layer, kernel):
        return soft_threshold(kernel, self.threshold(layer))

    def update(self, layers, step):
        # A weight w of a layer with parameter s is zero iff
        # g^-1(|w|) <= s + shift, so the shift that zeroes k weights is the
        # k-th smallest of g^-1(|w|) - s over all layers.
        parameters = [
            ops.convert_to_numpy(layer.threshold_param).astype("float64")
            for layer in layers
        ]
        critical = []
        for layer, s in zip(layers, parameters):
            inverse = INVERSE_THRESHOLD_FUNCTIONS[layer.threshold_fn]
            critical.append((inverse(_kernel_magnitudes(layer)) - s).ravel())
        critical = np.concatenate(critical)
        finite = critical[np.isfinite(critical)]
        if finite.size == 0:
            return
        # Exact zeros (-inf) are pruned at any threshold; |w| >= 1 (+inf)
        # never is under sigmoid.
        critical = np.clip(critical, finite.min() - 1.0, finite.max() + 1.0)
        count = int(round(self.target_at(step) * critical.size))
        if count == 0:
            shift = float(critical.min()) - _SHIFT_MARGIN
        else:
            # Just above the k-th critical value, so float32 rounding of
            # s + shift cannot leave that weight unpruned.
            shift = _kth_smallest(critical, count) + _SHIFT_MARGIN
        for layer, s in zip(layers, parameters):
            layer.threshold_param.assign((s + shift).astype(layer.variable_dtype))

    def get_config(self):
        return {
            "target_sparsity": self.target_sparsity,
            "schedule": (
                None
                if self.schedule is None
                else keras.saving.serialize_keras_object(self.schedule)
            ),
            "frequency": self.frequency,
        }


_SHIFT_MARGIN = 1e-5


def _logit(magnitudes):
    magnitudes = magnitudes.astype("float64")
    with np.errstate(divide="ignore"):
        return np.log(magnitudes / np.maximum(1.0 - magnitudes, 0.0))


def _log(values):
    with np.errstate(divide="ignore"):
        return np.log(values)


INVERSE_THRESHOLD_FUNCTIONS = {
    "sigmoid": _logit,
    "exp": lambda magnitudes: _log(magnitudes.astype("float64")),
}

ST3_SCOPES = ("global", "sigma")


@keras.saving.register_keras_serializable(package="keras_str")
class ST3(SparsityMethod):
    """ST-3: a scheduled soft threshold with straight-through gradients.

    Every training step, `keras_str.UpdateSparsity` sets the threshold `t`
    so that exactly `target_sparsity * schedule(step)` of all ST-3 kernel
    weights of the model satisfy `|W| <= t` (one global magnitude quantile).
    The layer computes with `sign(W) * relu(|W| - t)`, but the gradient
    reaches every raw weight unchanged (straight-through), so pruned weights
    keep learning and can come back.

    Args:
        target_sparsity: Final fraction of zeros over all ST-3 kernels.
        schedule: A `PolynomialSchedule` (cubic by default) or
            `ConstantSchedule`.
        scope: `"global"` (one magnitude threshold, ST-3) or `"sigma"` (the
            quantile is taken over `|W| / sigma_l`, with
            `sigma_l = sqrt(2 / (fan_in + fan_out))` the layer's Glorot
            scale; ST-3-sigma, which spares small layers less and saves
            FLOPs).
        rescale: If `True`, each output channel's thresholded weights are
            scaled by `1 / rho`, `rho = mean|W * mask| / mean|W|` (the share
            of the channel's raw magnitude that survives the mask).
        frequency: Steps between threshold updates (1: every step, as in the
            paper). The quantile is computed on the host; larger values cut
            its cost on big models. The end of training always gets a final
            update.

    Example:

    >>> method = keras_str.ST3(0.95, keras_str.PolynomialSchedule(0, 3000))
    >>> sparse = keras_str.sparsify(model, method=method)
    >>> sparse.fit(x, y, callbacks=[keras_str.UpdateSparsity()])
    """

    scheduled = True

    def __init__(
        self, target_sparsity, schedule, scope="global", rescale=False, frequency=1
    ):
        self.frequency = _check_frequency(frequency)
        self.target_sparsity = _check_fraction("target_sparsity", target_sparsity)
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
        layer.threshold_param = layer.add_weight(
            name="threshold",
            shape=(),
            initializer="zeros",
            dtype=layer.variable_dtype,
            trainable=False,
            autocast=False,
        )
        self._add_step_variable(layer)

    def threshold(self, layer):
        return ops.convert_to_tensor(layer.threshold_param)

    def effective_kernel(self, layer, kernel):
        threshold = self.threshold(layer)
        thresholded = soft_threshold(kernel, threshold)
        if self.rescale:
            # rho = mean|W * mask| / mean|W| per output channel; the kept
            # weights are scaled by 1 / rho, so a channel keeps the mean
            # magnitude its raw weights have.
            axes = tuple(range(len(kernel.shape) - layer.output_channel_ndim))
            magnitude = ops.abs(kernel)
            kept = ops.where(magnitude > threshold, magnitude, 0.0)
            kept_sum = ops.sum(kept, axis=axes, keepdims=True)
            total = ops.sum(magnitude, axis=axes, keepdims=True)
            scale = ops.where(kept_sum > 0, total / ops.maximum(kept_sum, 1e-12), 1.0)
            thresholded = thresholded * ops.stop_gradient(scale)
        # Straight-through: the value is the thresholded kernel, the gradient
        # is the identity on the raw kernel. Pruned entries are exact zeros
        # (w + (-w) == 0 in IEEE arithmetic).
        return kernel + ops.stop_gradient(thresholded - kernel)

    def _layer_scale(self, layer):
        if self.scope == "global":
            return 1.0
        fan_in, fan_out = _fans(layer)
        return math.sqrt(2.0 / (fan_in + fan_out))

    def update(self, layers, step):
        scales = [self._layer_scale(layer) for layer in layers]
        normalized = np.concatenate(
            [
                (_kernel_magnitudes(layer) / scale).ravel()
                for layer, scale in zip(layers, scales)
            ]
        )
        count = int(round(self.target_at(step) * normalized.size))
        threshold = 0.0 if count == 0 else _kth_smallest(normalized, count)
        for layer, scale in zip(layers, scales):
            layer.threshold_param.assign(threshold * scale)

    def get_config(self):
        return {
            "target_sparsity": self.target_sparsity,
            "schedule": keras.saving.serialize_keras_object(self.schedule),
            "scope": self.scope,
            "rescale": self.rescale,
            "frequency": self.frequency,
        }


def _fans(layer):
    shape = tuple(layer._kernel.shape)
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive_field = math.prod(shape[:-2])
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return receptive_field, receptive_field * shape[-1]
    return receptive_field * shape[-2], receptive_field * shape[-1]


@keras.saving.register_keras_serializable(package="keras_str")
class GMP(SparsityMethod):
    """Gradual magnitude pruning (Zhu & Gupta, 2017) with a hard mask.

    Every `frequency` steps while the schedule runs, each layer's mask is
    reset to keep its largest-magnitude weights, so that the layer has
    `layer_target * schedule(step)` zeros, and the pruned raw weights are set
    to zero; the layer computes with `W * mask`, so pruned weights get no
    gradient. The same as tfmot's `prune_low_magnitude` with
    `PolynomialDecay`, on Keras 3.

    Args:
        target_sparsity: Final sparsity of every layer not in `layer_targets`.
        schedule: A `PolynomialSchedule` or `ConstantSchedule`.
        frequency: Steps between mask updates (tfmot's default is 100).
        layer_targets: Optional `{layer_name: final_sparsity}`, e.g. a budget
            learned by STR (`keras_str.layer_budget`).

    Example:

    >>> method = keras_str.GMP(0.9, keras_str.PolynomialSchedule(0, 2000))
    >>> sparse = keras_str.sparsify(model, method=method)
    >>> sparse.fit(x, y, callbacks=[keras_str.UpdateSparsity()])
    """

    scheduled = True

    def __init__(self, target_sparsity, schedule, frequency=100, layer_targets=None):
        self.target_sparsity = _check_fraction("target_sparsity", target_sparsity)
        self.schedule = get_schedule(schedule)
        self.frequency = _check_frequency(frequency)
        if layer_targets is not None:
            if not isinstance(layer_targets, dict):
                raise ValueError(
                    "Invalid value for argument `layer_targets`. Expected a "
                    "dict {layer_name: sparsity}. "
                    f"Received: layer_targets={layer_targets!r}"
                )
            layer_targets = {
                str(name): _check_fraction(f"layer_targets[{name!r}]", value)
                for name, value in layer_targets.items()
            }
        self.layer_targets = layer_targets

    def build(self, layer):
        layer.mask = layer.add_weight(
            name="mask",
            shape=tuple(layer._kernel.shape),
            initializer="ones",
            dtype=layer.variable_dtype,
            trainable=False,
            autocast=False,
        )
        self._add_step_variable(layer)

    def effective_kernel(self, layer, kernel):
        return kernel * ops.cast(layer.mask, kernel.dtype)

    def due(self, step):
        # `update` itself follows tfmot: every `frequency` steps from
        # `begin_step` until `end_step`, then the mask is frozen.
        return True

    def layer_target(self, layer):
        if self.layer_targets and layer.name in self.layer_targets:
            return self.layer_targets[layer.name]
        return self.target_sparsity

    def update(self, layers, step):
        schedule = self.schedule
        if step < schedule.begin_step or step > schedule.end_step:
            return
        if (step - schedule.begin_step) % self.frequency and step != schedule.end_step:
            return
        fraction = schedule(step)
        for layer in layers:
            magnitudes = _kernel_magnitudes(layer).ravel()
            count = int(round(self.layer_target(layer) * fraction * magnitudes.size))
            mask = np.ones(magnitudes.size, dtype=layer.variable_dtype)
            if count:
                mask[np.argpartition(magnitudes, count - 1)[:count]] = 0.0
            mask = mask.reshape(tuple(layer._kernel.shape))
            layer.mask.assign(mask)
            layer._kernel.assign(ops.convert_to_numpy(layer._kernel) * mask)

    def get_config(self):
        return {
            "target_sparsity": self.target_sparsity,
            "schedule": keras.saving.serialize_keras_object(self.schedule),
            "frequency": self.frequency,
            "layer_targets": self.layer_targets,
        }


def get_method(method):
    """A method object from a method, its serialized dict, `"str"` or `None`."""
    if method is None or method == "str":
        return STR()
    if isinstance(method, dict):
        method = keras.saving.deserialize_keras_object(method)
    if not isinstance(method, SparsityMethod):
        raise ValueError(
            "Invalid value for argument `method`. Expected a "
            "`keras_str.STR`, `ST3` or `GMP` instance (or None for plain "
            f"STR). Received: method={method!r}"
        )
    return method
