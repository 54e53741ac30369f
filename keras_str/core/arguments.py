"""Argument checks the methods and transforms share: one message for one mistake."""

import math

from keras_str.core.quantile import SELECTIONS


def check_fraction(name, value, allow_none=False):
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


def check_finite_number(name, value):
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
    ):
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected a finite number. "
            f"Received: {name}={value!r}"
        )
    return float(value)


def check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected a positive "
            f"integer. Received: {name}={value!r}"
        )
    return value


def check_channel_multiple(channel_multiple, structure="channel"):
    """A positive int; more than 1 only for channel-structured pruning."""
    check_positive_int("channel_multiple", channel_multiple)
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
