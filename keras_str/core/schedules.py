"""Sparsity schedules: how far along its final sparsity a method is at a step."""

import keras
import numpy as np
from keras import ops

from keras_str.core.arguments import check_number


@keras.saving.register_keras_serializable(package="keras_str")
class PolynomialSchedule:
    """Rises from 0 to 1 as `1 - (1 - progress)^power` between two steps.

    With `power=3` this is the cubic schedule of gradual magnitude pruning
    (Zhu & Gupta, 2017) and of ST-3: the sparsity target climbs fast while
    the network is still plastic and slowly near the end. A method's target
    at `step` is `target_sparsity * schedule(step)`; before `begin_step` it
    is 0, after `end_step` it stays at `target_sparsity` (the fine-tuning
    phase).
    Called with a Python number it returns a float; with a step tensor (as
    inside the compiled train step) a float32 tensor.

    Args:
        begin_step: Optimizer step at which sparsification starts.
        end_step: Step at which the final sparsity is reached; must be
            greater than `begin_step`.
        power: Exponent of the schedule (3 = cubic).

    Raises:
        ValueError: If `begin_step` is negative or not an integer, `end_step`
            is not greater than `begin_step`, or `power` is not positive.

    Example:

    >>> schedule = keras_str.PolynomialSchedule(0, 1000)
    >>> schedule(500)
    0.875
    """

    def __init__(self, begin_step, end_step, power=3):
        self.begin_step = check_number("begin_step", begin_step, integer=True, minimum=0)
        self.end_step = check_number(
            "end_step", end_step, integer=True, minimum=self.begin_step + 1
        )
        power = check_number("power", power, minimum=0, above_minimum=True)
        self.power = int(power) if power.is_integer() else power

    @classmethod
    def from_epochs(cls, steps_per_epoch, begin_epoch, end_epoch, power=3):
        """The same schedule with its ends given in (fractional) epochs."""
        steps_per_epoch = check_number("steps_per_epoch", steps_per_epoch, integer=True, minimum=1)
        begin_epoch = check_number("begin_epoch", begin_epoch, minimum=0)
        end_epoch = check_number("end_epoch", end_epoch, minimum=0)
        begin = int(round(begin_epoch * steps_per_epoch))
        end = max(int(round(end_epoch * steps_per_epoch)), begin + 1)
        return cls(begin, end, power=power)

    def __call__(self, step):
        if _is_python_step(step):
            if step <= self.begin_step:
                return 0.0
            if step >= self.end_step:
                return 1.0
            progress = (step - self.begin_step) / (self.end_step - self.begin_step)
            return 1.0 - (1.0 - progress) ** self.power
        # A step tensor inside the compiled train step.
        progress = ops.clip(
            (ops.cast(step, "float32") - self.begin_step)
            / (self.end_step - self.begin_step),
            0.0,
            1.0,
        )
        return 1.0 - ops.power(1.0 - progress, self.power)

    def get_config(self):
        return {
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "power": self.power,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return (
            f"PolynomialSchedule(begin_step={self.begin_step}, "
            f"end_step={self.end_step}, power={self.power})"
        )


@keras.saving.register_keras_serializable(package="keras_str")
class ConstantSchedule:
    """Full target sparsity from `begin_step` on (one-shot pruning).

    Args:
        begin_step: Step from which the final sparsity applies.

    Raises:
        ValueError: If `begin_step` is negative or not an integer.

    Example:

    >>> keras_str.ConstantSchedule(10)(9), keras_str.ConstantSchedule(10)(10)
    (0.0, 1.0)
    """

    def __init__(self, begin_step=0):
        self.begin_step = check_number("begin_step", begin_step, integer=True, minimum=0)

    @property
    def end_step(self):
        return self.begin_step

    def __call__(self, step):
        if _is_python_step(step):
            return 1.0 if step >= self.begin_step else 0.0
        return ops.cast(step >= self.begin_step, "float32")

    def get_config(self):
        return {"begin_step": self.begin_step}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"ConstantSchedule(begin_step={self.begin_step})"


def _is_python_step(step):
    return isinstance(step, (int, float, np.integer, np.floating))


def get_schedule(schedule):
    """A schedule object from a schedule, its serialized dict, or raises."""
    if isinstance(schedule, dict):
        schedule = keras.saving.deserialize_keras_object(schedule)
    # A custom schedule is called with a step tensor inside the train step,
    # so it must be written with `keras.ops`.
    if not isinstance(schedule, (PolynomialSchedule, ConstantSchedule)) and not (
        callable(schedule) and hasattr(schedule, "get_config")
    ):
        raise ValueError(
            "Invalid value for argument `schedule`. Expected a "
            "`keras_str.PolynomialSchedule`, `keras_str.ConstantSchedule` or "
            f"a serializable callable step tensor -> [0, 1] written with keras.ops. Received: schedule={schedule!r}"
        )
    return schedule
