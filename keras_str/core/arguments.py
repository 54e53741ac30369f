"""Argument checks the methods and transforms share: one message for one mistake."""

import math

import numpy as np

from keras_str.core.quantile import SELECTIONS


def as_number(value):
    """`value` as a Python `int` or `float` if it is one real number, else `None`.

    Python numbers, numpy scalars and 0-d arrays (numpy's or a backend's)
    are numbers; bools, strings and arrays of more than one value are not.
    """
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, np.generic) or hasattr(value, "__array__"):
        try:
            array = np.asarray(value)
        except Exception:  # an object numpy cannot read is no number
            return None
        if array.shape != () or array.dtype.kind not in "iuf":
            return None
        if array.dtype.kind == "f" and array.dtype.itemsize < 8:
            # The shortest decimal that reads back as this float32 / float16:
            # np.float32(0.9) is 0.9, not 0.8999999761581421.
            return float(str(array[()]))
        return array.item()
    return None


def check_number(name, value, integer=False, minimum=None, maximum=None,
                 above_minimum=False, below_maximum=False, allow_none=False):
    """`value` as a finite Python number within bounds; a Keras-style `ValueError` otherwise.

    Accepts whatever `as_number` does, so `np.float32(0.9)` works where
    `0.9` does; returns a Python `int` (with `integer`) or `float`, which
    configs serialize as they are. `integer` also takes integral floats
    (`1000.0`); `above_minimum` / `below_maximum` make the bounds exclusive.
    """
    if value is None and allow_none:
        return None
    number = as_number(value)
    valid = number is not None and math.isfinite(number)
    if valid and integer:
        valid = float(number).is_integer()
    if valid:
        number = int(number) if integer else float(number)
        valid = (minimum is None or number > minimum or (not above_minimum and number == minimum)) and (
            maximum is None or number < maximum or (not below_maximum and number == maximum)
        )
    if not valid:
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected "
            f"{_expected(integer, minimum, maximum, above_minimum, below_maximum)}. "
            f"Received: {name}={value!r}"
        )
    return number


def _expected(integer, minimum, maximum, above_minimum, below_maximum):
    kind = "an integer" if integer else "a finite number"
    if minimum is not None and maximum is not None:
        opening = "(" if above_minimum else "["
        closing = ")" if below_maximum else "]"
        return (
            f"{'an integer' if integer else 'a number'} in "
            f"{opening}{minimum:g}, {maximum:g}{closing}"
        )
    if minimum is not None:
        return f"{kind} {'>' if above_minimum else '>='} {minimum:g}"
    if maximum is not None:
        return f"{kind} {'<' if below_maximum else '<='} {maximum:g}"
    return kind


def check_fraction(name, value, allow_none=False):
    """A number in `[0, 1)`, as a float."""
    return check_number(
        name, value, minimum=0, maximum=1, below_maximum=True, allow_none=allow_none
    )


def check_finite_number(name, value):
    return check_number(name, value)


def check_positive_int(name, value):
    return check_number(name, value, integer=True, minimum=1)


def check_channel_multiple(channel_multiple, structure="channel"):
    """A positive int; more than 1 only for channel-structured pruning."""
    channel_multiple = check_positive_int("channel_multiple", channel_multiple)
    if channel_multiple > 1 and structure != "channel":
        raise ValueError(
            "`channel_multiple` rounds the widths of channel-pruned layers; "
            f"it needs structure='channel'. Received: structure={structure!r}, "
            f"channel_multiple={channel_multiple!r}"
        )
    return channel_multiple


def check_frequency(frequency):
    return check_positive_int("frequency", frequency)


BUDGETS = ("weights", "macs")


def check_budget(budget):
    if budget not in BUDGETS:
        raise ValueError(
            f"Invalid value for argument `budget`. Expected one of {BUDGETS}. "
            f"Received: budget={budget!r}"
        )
    return budget


def check_quantile(quantile):
    if quantile not in SELECTIONS:
        raise ValueError(
            f"Invalid value for argument `quantile`. Expected one of "
            f"{SELECTIONS}. Received: quantile={quantile!r}"
        )
    return quantile
