"""The soft-threshold math of STR, in one place, written with `keras.ops`.

Everything else in keras-str (layers, strip, reports) calls these functions, so
the forward pass, the stripped kernel and the reported sparsity can never
disagree about which weights are zero.
"""

import keras
from keras import ops

THRESHOLD_FUNCTIONS = {
    "sigmoid": ops.sigmoid,
    "exp": ops.exp,
}


def soft_threshold(x, threshold):
    """Soft-thresholds `x`: `sign(x) * relu(|x| - threshold)`.

    Entries with `|x| <= threshold` become exact zeros; the others shrink
    toward zero by `threshold`. Gradients are plain autodiff: zero for pruned
    entries, one for kept entries, and `-sign(x)` toward the threshold for
    kept entries (the STR paper's estimator; no straight-through).

    Args:
        x: Tensor of weights.
        threshold: Non-negative tensor broadcastable to `x`.

    Returns:
        A tensor with the shape and dtype of `x`.

    Example:

    >>> keras_str.ops.soft_threshold(np.array([-0.3, 0.05, 0.2]), 0.1)
    array([-0.2, 0. , 0.1])
    """
    return ops.sign(x) * ops.relu(ops.abs(x) - threshold)


def get_threshold_fn(identifier):
    """Returns the threshold function g for a name or a callable.

    Args:
        identifier: `"sigmoid"` (unstructured STR), `"exp"` (structured STR),
            or a callable mapping the raw threshold parameter `s` to a
            non-negative threshold with `keras.ops`.

    Returns:
        A callable `g(s)`.
    """
    if isinstance(identifier, str):
        if identifier in THRESHOLD_FUNCTIONS:
            return THRESHOLD_FUNCTIONS[identifier]
    elif isinstance(identifier, dict):
        return keras.saving.deserialize_keras_object(identifier)
    elif callable(identifier):
        return identifier
    raise ValueError(
        "Invalid value for argument `threshold_fn`. Expected one of "
        f"{sorted(THRESHOLD_FUNCTIONS)} or a callable. "
        f"Received: threshold_fn={identifier}"
    )


def serialize_threshold_fn(identifier):
    """Returns a config-friendly form of a threshold function identifier."""
    if isinstance(identifier, str):
        return identifier
    return keras.saving.serialize_keras_object(identifier)
