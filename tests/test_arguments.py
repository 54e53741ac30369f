"""Numeric arguments of the public API: numpy scalars and 0-d arrays are numbers; bools, NaN, inf and strings are refused by name."""

import json
import re

import keras
import numpy as np
import pytest

import keras_str
from keras_str.core.arguments import as_number
from keras_str.core.arguments import check_number

SCHEDULE = keras_str.PolynomialSchedule(0, 10)


def _schedule_config(schedule):
    return json.dumps(schedule.get_config())


def _method_config(method):
    return json.dumps(keras.saving.serialize_keras_object(method))


# (argument, a valid value, a call taking the value; it returns something whose JSON must not fail)
CASES = [
    ("begin_step", 2, lambda v: _schedule_config(keras_str.PolynomialSchedule(v, 10))),
    ("end_step", 10, lambda v: _schedule_config(keras_str.PolynomialSchedule(0, v))),
    ("power", 2.5, lambda v: _schedule_config(keras_str.PolynomialSchedule(0, 10, power=v))),
    ("begin_step", 3, lambda v: _schedule_config(keras_str.ConstantSchedule(v))),
    ("steps_per_epoch", 5, lambda v: _schedule_config(
        keras_str.PolynomialSchedule.from_epochs(v, 0, 2))),
    ("end_epoch", 1.5, lambda v: _schedule_config(
        keras_str.PolynomialSchedule.from_epochs(10, 0, v))),
    ("target_sparsity", 0.9, lambda v: _method_config(keras_str.ST3(v, SCHEDULE))),
    ("frequency", 2, lambda v: _method_config(keras_str.ST3(0.5, SCHEDULE, frequency=v))),
    ("target_sparsity", 0.75, lambda v: _method_config(keras_str.GMP(v, SCHEDULE))),
    ("channel_multiple", 4, lambda v: _method_config(
        keras_str.GMP(0.5, SCHEDULE, structure="channel", channel_multiple=v))),
    ("layer_targets['a']", 0.5, lambda v: _method_config(
        keras_str.GMP(0.5, SCHEDULE, layer_targets={"a": v}))),
    ("target_sparsity", 0.5, lambda v: _method_config(keras_str.STR(v, SCHEDULE))),
    ("threshold_init", -4.5, lambda v: _method_config(keras_str.STR(threshold_init=v))),
    ("block_size", 4, lambda v: _method_config(keras_str.StructuredSTR("block", block_size=v))),
    ("max_layer_sparsity", 0.8, lambda v: _method_config(
        keras_str.StructuredSTR("channel", max_layer_sparsity=v))),
    ("max_rank", 3, lambda v: _method_config(keras_str.LowRankSTR(max_rank=v))),
    ("threshold_init", -3.0, lambda v: _method_config(keras_str.LowRankSTR(threshold_init=v))),
    ("weight_decay", 1e-4, lambda v: keras_str.apply_weight_decay(
        keras.Sequential([keras.Input((4,)), keras_str.STRDense(2)]), v) and None),
    ("weight_decay", 1e-4, lambda v: keras_str.sparsify(
        keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]), weight_decay=v) and None),
    ("min_params", 3, lambda v: keras_str.layer_budget(
        keras.Sequential([keras.Input((4,)), keras_str.STRDense(2, name="d")]), min_params=v)),
    ("axis", 0, lambda v: keras_str.check_n_m(np.ones((8, 3)), "2:4", axis=v) and None),
]
IDS = [f"{i}-{name}" for i, (name, _, _) in enumerate(CASES)]


def _numpy_forms(value):
    dtype = np.int64 if isinstance(value, int) else np.float32
    return [dtype(value), np.array(value, dtype=dtype), keras.ops.convert_to_tensor(value)]


@pytest.mark.parametrize("name, value, call", CASES, ids=IDS)
def test_numpy_scalars_and_0d_arrays_are_numbers(name, value, call):
    expected = call(value)
    for form in _numpy_forms(value):
        assert call(form) == expected, form  # the same result, and a config JSON can hold


@pytest.mark.parametrize("name, value, call", CASES, ids=IDS)
def test_non_numbers_are_refused_naming_the_argument_and_value(name, value, call):
    for bad in (True, np.bool_(False), float("nan"), float("inf"), "1", [value]):
        with pytest.raises(ValueError, match=re.escape(f"Received: {name}={bad!r}")):
            call(bad)


def test_the_decimal_a_float32_shows_is_the_number():
    assert keras_str.ST3(np.float32(0.9), SCHEDULE).target_sparsity == 0.9
    assert keras_str.PolynomialSchedule(np.int64(0), 1000.0).end_step == 1000
    assert type(keras_str.PolynomialSchedule(np.int64(0), 1000.0).end_step) is int


@pytest.mark.parametrize(
    "kwargs, received, expected",
    [
        ({"minimum": 0, "maximum": 1, "below_maximum": True}, 1, r"a number in \[0, 1\)"),
        ({"minimum": 0, "above_minimum": True}, 0, "a finite number > 0"),
        ({"integer": True, "minimum": 1}, 2.5, "an integer >= 1"),
        ({}, "x", "a finite number"),
    ],
)
def test_the_message_says_what_was_expected(kwargs, received, expected):
    with pytest.raises(ValueError, match=rf"`x`. Expected {expected}. Received: x={received!r}"):
        check_number("x", received, **kwargs)


def test_as_number_reads_one_real_number_or_nothing():
    assert as_number(np.float16(0.1)) == 0.1
    assert as_number(np.array(7, dtype=np.uint8)) == 7
    for not_a_number in (True, "3", np.array([1.0]), 1j, object(), None):
        assert as_number(not_a_number) is None
