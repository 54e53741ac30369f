"""Threshold functions g (raw parameter s -> threshold) and their inverses, together.

STR computes with the threshold `g(s)`; targeted STR needs `g^-1` to find the
shift of `s` that prunes a given number of weights. Keeping both in one table
means a function can never be added without its inverse.
"""

import keras
from keras import ops


def _logit(x):
    # |w| >= 1 is never pruned under sigmoid: logit -> +inf (not NaN).
    return ops.log(x / ops.maximum(1.0 - x, 0.0))


THRESHOLD_FUNCTIONS = {
    "sigmoid": (ops.sigmoid, _logit),
    "exp": (ops.exp, ops.log),
}


def get_threshold_fn(identifier):
    """Returns the threshold function g for a name, a serialized dict or a callable.

    Args:
        identifier: `"sigmoid"` (unstructured STR), `"exp"` (structured STR),
            or a callable mapping the raw threshold parameter `s` to a
            non-negative threshold with `keras.ops`.

    Returns:
        A callable `g(s)`.

    Raises:
        ValueError: If `identifier` is none of these.

    Example:

    >>> g = keras_str.ops.get_threshold_fn("sigmoid")
    >>> float(g(0.0))
    0.5
    """
    if isinstance(identifier, str):
        if identifier in THRESHOLD_FUNCTIONS:
            return THRESHOLD_FUNCTIONS[identifier][0]
    elif isinstance(identifier, dict):
        return keras.saving.deserialize_keras_object(identifier)
    elif callable(identifier):
        return identifier
    raise ValueError(
        "Invalid value for argument `threshold_fn`. Expected one of "
        f"{sorted(THRESHOLD_FUNCTIONS)} or a callable. "
        f"Received: threshold_fn={identifier!r}"
    )


def get_inverse_threshold_fn(identifier):
    """Returns `g^-1` for a named threshold function, or `None` for a callable."""
    if isinstance(identifier, str) and identifier in THRESHOLD_FUNCTIONS:
        return THRESHOLD_FUNCTIONS[identifier][1]
    return None


def serialize_threshold_fn(identifier):
    """Returns a config-friendly form of a threshold function identifier.

    Args:
        identifier: A name (`"sigmoid"`, `"exp"`) or a callable `g(s)`, as
            `get_threshold_fn` takes.

    Returns:
        The name as it is, or Keras's serialized dict of the callable (a
        function registered with `keras.saving.register_keras_serializable`),
        which `get_threshold_fn` turns back into it.

    Raises:
        ValueError: If `identifier` is neither a string nor a callable.

    Example:

    >>> keras_str.ops.serialize_threshold_fn("exp")
    'exp'
    >>> g = keras_str.ops.get_threshold_fn(keras_str.ops.serialize_threshold_fn("sigmoid"))
    """
    if isinstance(identifier, str):
        return identifier
    if not callable(identifier):
        raise ValueError(
            "Invalid value for argument `threshold_fn`. Expected a name or a "
            f"callable. Received: threshold_fn={identifier!r}"
        )
    return keras.saving.serialize_keras_object(identifier)
