"""Sparsity methods: what a sparse layer keeps, computes with, and updates in-step."""

from keras_str.core.schedules import ConstantSchedule
from keras_str.core.schedules import PolynomialSchedule
from keras_str.methods.base import SparsityMethod
from keras_str.methods.gmp import GMP
from keras_str.methods.low_rank import LowRankSTR
from keras_str.methods.st3 import ST3
from keras_str.methods.str import STR
from keras_str.methods.structured import StructuredSTR

import keras as _keras


def get_method(method):
    """A method object from a method, its serialized dict, `"str"` or `None`."""
    if method is None or method == "str":
        return STR()
    if isinstance(method, dict):
        method = _keras.saving.deserialize_keras_object(method)
    if not isinstance(method, SparsityMethod):
        raise ValueError(
            "Invalid value for argument `method`. Expected a "
            "`keras_str.STR`, `ST3` or `GMP` instance (or None for plain "
            f"STR). Received: method={method!r}"
        )
    return method


def copy_method(method):
    """A fresh method with the same settings and no layers attached."""
    return type(method).from_config(method.get_config())
