"""What every sparsity method is: state in its layers, an effective kernel, an in-step update.

A method is one serializable object shared by all the layers it sparsifies
(`keras_str.sparsify` gives each new model its own). Each layer asks it to
create its state (`build`), to compute the kernel the layer uses
(`effective_kernel`), and, for scheduled methods, to advance (`advance`) at
every training call. The first layer the method was attached to makes the
group-wide choice for the whole step (one global quantile over all the
method's kernels), so the update runs once per step, inside the compiled
train step, written with `keras.ops`; no callback, no host copy.
"""

import math

import keras
import numpy as np
from keras import ops

from keras_str.core.forward_pass import current_forward_pass
from keras_str.core.host import to_numpy
from keras_str.core.macs import uses_per_weight
from keras_str.core.quantile import kth_smallest
from keras_str.core.quantile import weighted_kth_smallest


def macs_per_weight(layers):
    """Each layer's multiply-adds per kernel weight per example (Python floats)."""
    uses = []
    for layer in layers:
        count = uses_per_weight(layer)
        if count is None:
            raise ValueError(
                f"A MACs budget needs each layer's multiply-adds, but layer "
                f"{layer.name!r} ({type(layer).__name__}) was built on a shape "
                "with unknown spatial dimensions. Build the model on a fixed "
                "input shape (`keras.Input((32, 32, 3))`), or use "
                "budget='weights'. Received: budget='macs'"
            )
        uses.append(float(count))
    return uses


class SparsityMethod:
    """Base class: how a sparse layer turns its raw kernel into the one it uses.

    Subclasses implement:
    - `build(layer)`: create the per-layer state with `layer.add_weight` and
      return it as a dict `{name: variable}` (the layer keeps it as
      `layer.sparsity_state`; variables are saved with the layer by name).
    - `effective_kernel(layer, kernel)`: the kernel the layer computes with,
      written with `keras.ops`.
    - `threshold(layer)`: the current threshold tensor, or `None`.
    - `update(layers, step)` (scheduled methods): set the state of every
      layer of the group for training step `step` (an int32 tensor), with
      `keras.ops` and `variable.assign` only. It runs inside the compiled
      train step, so it must not read values into Python.

    Layers call `advance(layer)` from `call(..., training=True)`: the
    group's first layer runs `update` once for the step (scheduled
    methods), then each layer notes whether its trained values are still
    finite (`finite_steps`) and counts the step in its own
    `sparsity_step` variable.

    Methods that train other variables in place of the raw kernel (low-rank
    factors) also implement `kernel_variables(layer)` (they take the
    kernel's weight decay), `kernel_assigned(layer)` (recompute them after
    the raw kernel was set from outside) and, where `strip` can deploy the
    kernel as two thin matrices, `factors(layer)`.

    Example:

    >>> class FixedThreshold(keras_str.SparsityMethod):
    ...     # Zeroes every weight whose magnitude is at most 0.1.
    ...     def build(self, layer):
    ...         return {}
    ...     def effective_kernel(self, layer, kernel):
    ...         return keras_str.ops.soft_threshold(kernel, 0.1)
    >>> layer = keras_str.STRDense(4, method=FixedThreshold())
    >>> layer(np.ones((2, 8))).shape
    (2, 4)
    """

    scheduled = False
    # Whether the method's `"threshold"` variable is trained with the loss
    # and takes the kernel's weight decay (STR's `s`), not set by a schedule.
    learns_threshold = False

    def __init__(self):
        # Plain references (a method and its layers live and die together);
        # torch.compile cannot trace weak references.
        self._layers = []
        # The forward pass being run and the layers it advanced so far.
        self._forward_pass = None
        self._advanced = []

    @property
    def removes_channels(self):
        """Whether the method zeroes whole output channels (which `strip` can then remove)."""
        return False

    @property
    def thresholds_batch_norm_scales(self):
        """Whether channel thresholds sit on the scale of a BatchNormalization that follows.

        Under BatchNormalization a filter's own scale does not reach the loss,
        so a channel threshold learned on it would not train; `sparsify`
        makes the BatchNormalization sparse instead.
        """
        return False

    # Layers of the group.

    def attach(self, layer):
        """Adds a built layer to the group this method updates together."""
        if not any(known is layer for known in self._layers):
            self._layers.append(layer)

    @property
    def layers(self):
        """The layers using this method, in the order they were built."""
        return list(self._layers)

    # Per-layer state and math.

    def build(self, layer):
        raise NotImplementedError

    def effective_kernel(self, layer, kernel):
        raise NotImplementedError

    def threshold(self, layer):
        """The current threshold tensor of `layer`, or `None` if it has none."""
        return None

    def live_channels(self, layer, kernel):
        """Per output channel, whether the method keeps it (a bool tensor), or `None`.

        Methods that remove whole channels return the mask; the layer then
        computes a removed channel's bias as 0, so that a removed filter
        outputs what a missing one would (the activation of 0), and
        `strip` can take it out of the model.
        """
        return None

    def kernel_variables(self, layer):
        """The trained variables the effective kernel is made of; they take the kernel's weight decay."""
        return [layer.raw_kernel]

    def trained_values(self, layer):
        """The variables whose values must stay finite: the kernel's (or its factors) and the float state."""
        return list(self.kernel_variables(layer)) + [
            v for v in layer.sparsity_state.values() if "float" in str(v.dtype)
        ]

    def kernel_assigned(self, layer):
        """Called after `layer`'s raw kernel was set from outside (`sparsify` copies a trained one in).

        Methods whose state is derived from the kernel recompute it here.
        Runs eagerly, never inside a train step.
        """

    def factors(self, layer):
        """The effective kernel as thin factors `(left, right)`, or `None`.

        `left @ right` is the effective kernel of a 2-D kernel (numpy
        arrays, host side), with as few columns in `left` as the method
        keeps; `strip` deploys them as two layers when that is cheaper.
        """
        return None

    # Scheduled methods.

    def update(self, layers, step):
        """Sets the state of `layers` for training step `step` (in-step)."""

    def advance(self, layer):
        """Counts one training step of `layer`; called by `layer.call(training=True)`.

        The first of the method's layers that a forward pass reaches makes
        the group's update, so the update never depends on one particular
        layer being called (a model may leave some unused, or call them
        outside `training`); a layer called twice in one pass (a tied
        embedding that also projects to logits, a shared layer) counts the
        step once.
        """
        forward_pass = current_forward_pass()
        if forward_pass is None or forward_pass is not self._forward_pass:
            self._forward_pass = forward_pass
            self._advanced = []
        if any(known is layer for known in self._advanced):
            return
        first = not self._advanced
        self._advanced.append(layer)
        step = ops.convert_to_tensor(layer.sparsity_step)
        if first and self.scheduled:
            self.update(self.layers, step)
        self._count_finite(layer)
        layer.sparsity_step.assign(step + 1)

    def _count_finite(self, layer):
        """Counts in `layer.finite_steps` the steps that began with its trained values finite.

        One reduction per variable, a few scalar ops and no host read, so
        the step stays compiled and cheap; `keras_str.SparsityChecks`
        compares it with `sparsity_step` at epoch ends. Trained values that
        went NaN or inf stay so (every update reads them), so the count is
        also the step at which they first did. Checked after the group's
        update, so a non-finite quantile shows in the thresholds it set.
        """
        trained = self.trained_values(layer)
        # A sum is NaN or inf iff an element is (finite weights summing past
        # 3e38 do not occur), and costs fewer ops than `all(isfinite(.))`.
        total = ops.sum(trained[0])
        for variable in trained[1:]:
            total = total + ops.sum(variable)
        finite = ops.cast(ops.isfinite(total), "int32")
        layer.finite_steps.assign(ops.convert_to_tensor(layer.finite_steps) + finite)

    budget = "weights"
    quantile = "auto"

    def select(self, values, layers, fraction):
        """The value at or below which `fraction` of the method's budget lies.

        `values[i]` are layer i's scores (a weight is pruned iff its score is
        at or below the result). `budget="weights"` counts weights (the
        k-th smallest score, k = round(fraction * total)); `"macs"` weighs
        each weight by the multiply-adds it costs per example
        (`keras_str.core.macs.uses_per_weight`). `self.quantile` picks
        the selection (`keras_str.core.quantile`). Returns
        `(value, any_pruned)`, both tensors; runs in the train step.
        """
        if self.budget == "macs":
            uses = macs_per_weight(layers)
            total = sum(u * math.prod(v.shape) for u, v in zip(uses, values))
            target = ops.cast(fraction, "float32") * total
            value = weighted_kth_smallest(values, uses, target, method=self.quantile)
            return value, target > 0
        total = sum(math.prod(v.shape) for v in values)
        count = ops.cast(ops.round(fraction * total), "int32")
        value = kth_smallest(values, ops.maximum(count, 1), method=self.quantile)
        return value, count > 0

    def target_at(self, step):
        """Overall target sparsity at `step` (a tensor for a step tensor)."""
        return self.target_sparsity * self.schedule(step)

    def due(self, step):
        """Whether `update` recomputes the state at `step`: a bool tensor, or `None` for every step."""
        frequency = getattr(self, "frequency", 1)
        if frequency == 1:
            return None
        return ops.logical_or(
            ops.equal(step % frequency, 0),
            ops.equal(step, self.schedule.end_step),
        )

    def final_layer_sparsity(self, layers):
        """Each layer's share of zeros at the final target, on today's weights.

        A host-side preview (numpy, run once by `sparsify`, never in the train
        step) that lets keras-str warn before training when a method would
        empty a whole layer. Returns `{layer.name: fraction}`, or `None` when
        the method has no target.
        """
        return None

    # Serialization.

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        # The live settings (a schedule's own repr, not its serialized dict).
        arguments = ", ".join(
            f"{k}={getattr(self, k, v)!r}" for k, v in self.get_config().items()
        )
        return f"{self.__class__.__name__}({arguments})"


def zero_fractions_at_quantile(layers, values, target, budget="weights"):
    """Per-layer share of `values` at or below their global `target` quantile.

    `values[i]` are layer i's numpy scores (a weight is zero iff its score is
    at or below the global k-th smallest score, k = round(target * total));
    with `budget="macs"`, the quantile of scores weighted by each layer's
    multiply-adds per weight.
    """
    flat = np.concatenate([v.ravel() for v in values])
    if budget == "macs":
        uses = macs_per_weight(layers)
        weights = np.concatenate([np.full(v.size, u) for v, u in zip(values, uses)])
        order = np.argsort(flat, kind="stable")
        cumulative = np.cumsum(weights[order])
        wanted = target * cumulative[-1]
        if wanted <= 0:
            return {layer.name: 0.0 for layer in layers}
        cutoff = flat[order][min(np.searchsorted(cumulative, wanted), flat.size - 1)]
        return {
            layer.name: float(np.mean(v <= cutoff)) for layer, v in zip(layers, values)
        }
    count = int(round(target * flat.size))
    if count == 0:
        return {layer.name: 0.0 for layer in layers}
    cutoff = np.partition(flat, count - 1)[count - 1]
    return {
        layer.name: float(np.mean(v <= cutoff)) for layer, v in zip(layers, values)
    }


def when_due(due, compute, previous):
    """`compute()` where `due` is true, else `previous`; skips the work when not due.

    `due=None` means every step: no conditional at all (cheaper to compile).
    """
    if due is None:
        return compute()
    concrete = _concrete_bool(due)
    if concrete is not None:
        # Eager step (run_eagerly, JAX without jit): a Python branch. JAX
        # would otherwise compile a fresh `cond` for every call.
        return compute() if concrete else keras.tree.map_structure(_detached, previous)
    return ops.cond(due, compute, lambda: previous)


def _detached(value):
    # On TensorFlow `ops.convert_to_tensor(variable)` is the variable itself;
    # assigned back to it inside a `StatelessScope` (sparsify's eager training
    # probe) the variable's value would be the variable: endless recursion.
    # A compiled step's `cond` returns a tensor already.
    return ops.copy(value) if isinstance(value, keras.Variable) else value


def _concrete_bool(value):
    """`bool(value)` when it is a concrete (eager) value, else `None`."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        if isinstance(value, jax.core.Tracer):
            return None
    elif backend == "tensorflow":
        import tensorflow as tf

        if not (tf.executing_eagerly() and hasattr(value, "numpy")):
            return None
    else:
        # PyTorch: Keras's cond is a Python branch already; torch.compile
        # traces through it.
        return None
    return bool(to_numpy(value))
