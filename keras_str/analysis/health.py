"""What goes wrong in sparse training without an error, read back from a model's counters.

Three faults: a sparse layer whose trained values went NaN or inf (noted
in-step by its method, `finite_steps`), a scheduled method whose schedule
did not reach its end step (the model stopped short of its target), and a
sparse model that never trained (often: the dense model `sparsify` was
given was fitted instead). Host side: read at epoch ends by
`keras_str.SparsityChecks` and by `keras_str.sparsity_report`.
"""

import dataclasses

import numpy as np
from keras import ops

from keras_str.core.host import to_numpy
from keras_str.core.layer_walk import iter_layers
from keras_str.layers.base import SparseKernelLayer


@dataclasses.dataclass
class NonFiniteLayer:
    """A sparse layer whose trained values held NaN or inf.

    `after_steps` is how many training steps the layer had run when its
    values were first seen non-finite (its method checks them at the start
    of each step), or `None` when they were found only now (the last
    step's update, which no later step saw). `weights` names the variables
    non-finite now.
    """

    name: str
    after_steps: int | None
    weights: list

    def describe(self):
        where = ", ".join(self.weights) if self.weights else "its weights"
        if self.after_steps is None:
            return f"{self.name}: NaN or inf in {where} after the last training step"
        if self.after_steps == 0:
            return f"{self.name}: NaN or inf in {where} before its first training step"
        return (
            f"{self.name}: NaN or inf in {where}, first seen after "
            f"{_count_of(self.after_steps, 'training step')} (a non-finite "
            "loss or gradient in the last of them)"
        )


@dataclasses.dataclass
class UnfinishedSchedule:
    """A scheduled method whose layers stopped before its schedule's end step.

    Steps count from 0, as the optimizer's do: the update at step
    `end_step` sets the final target, so a schedule is finished once the
    layers trained `end_step + 1` steps.
    """

    method: object
    steps: int
    end_step: int
    sparsity: float
    target: float

    def describe(self):
        return (
            f"{type(self.method).__name__}'s schedule ends at step "
            f"{self.end_step}, but its layers trained {_count_of(self.steps, 'step')}: "
            f"{100 * self.sparsity:.1f} % zeros against its target of "
            f"{100 * self.target:.1f} %. Train "
            f"{_count_of(self.end_step + 1 - self.steps, 'more step')}, or end "
            "the schedule within the training you run (`PolynomialSchedule(begin_step, end_step)` counts optimizer steps)."
        )


def _count_of(count, noun):
    return f"{count} {noun}{'' if count == 1 else 's'}"


def sparse_layers(model):
    """The built sparse layers of `model` (a model or a single layer)."""
    return [
        layer for layer in iter_layers(model)
        if isinstance(layer, SparseKernelLayer) and layer.built
    ]


def _name(layer, model):
    """The layer's path inside `model`, as the report names it."""
    path = layer.path or layer.name
    prefix = f"{getattr(model, 'path', None) or model.name}/"
    return path[len(prefix):] if path.startswith(prefix) else path


def _count(variable):
    return None if variable is None else int(to_numpy(variable))


def nonfinite_layers(model, check_values=False):
    """The sparse layers of `model` whose trained values went NaN or inf.

    Reads each layer's in-step record (`finite_steps` against
    `sparsity_step`: the steps that began finite against all); with
    `check_values`, also checks the values as they are now (one reduction
    per variable), which catches the last step's update.
    """
    found = []
    for layer in sparse_layers(model):
        finite = _count(getattr(layer, "finite_steps", None))
        steps = _count(getattr(layer, "sparsity_step", None))
        after = finite if finite is not None and steps is not None and finite < steps else None
        bad = []
        if check_values or after is not None:
            bad = [
                v.name for v in layer.method.trained_values(layer)
                if not bool(to_numpy(ops.all(ops.isfinite(v))))
            ]
        if after is not None:
            found.append(NonFiniteLayer(_name(layer, model), after, bad))
        elif bad:
            found.append(NonFiniteLayer(_name(layer, model), None, bad))
    return found


def unfinished_schedules(model):
    """The scheduled methods of `model` whose layers trained fewer steps than their schedule lasts.

    Sparse models that never trained are left out (`never_trained` says so).
    """
    groups = {}
    for layer in sparse_layers(model):
        method = layer.method
        schedule = getattr(method, "schedule", None)
        if method.scheduled and schedule is not None:
            groups.setdefault(id(method), (method, []))[1].append(layer)
    unfinished = []
    for method, layers in groups.values():
        steps = max(_count(layer.sparsity_step) for layer in layers)
        # The update of step `end_step` (counted from 0) sets the final
        # target: it has run once the layers trained `end_step + 1` steps.
        if steps == 0 or steps > method.schedule.end_step:
            continue
        zeros = total = 0
        for layer in layers:
            kernel = to_numpy(layer.thresholded_kernel())
            zeros += int(kernel.size - np.count_nonzero(kernel))
            total += int(kernel.size)
        unfinished.append(
            UnfinishedSchedule(
                method=method,
                steps=steps,
                end_step=method.schedule.end_step,
                sparsity=zeros / total if total else 0.0,
                target=float(method.target_sparsity),
            )
        )
    return unfinished


def never_trained(model):
    """Whether `model` has sparse layers and none of them has run a training step."""
    layers = sparse_layers(model)
    return bool(layers) and all(
        _count(getattr(layer, "sparsity_step", None)) in (0, None) for layer in layers
    )


NEVER_TRAINED = (
    "No sparse layer has run a training step yet. If you did train, you "
    "trained another model: `keras_str.sparsify` returns a new model (the "
    "dense one you pass is not changed); fit the one it returns."
)
