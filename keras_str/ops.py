"""The soft-threshold math of STR, in one place, written with `keras.ops`.

Everything else in keras-str (layers, strip, reports) calls these functions, so
the forward pass, the stripped kernel and the reported sparsity can never
disagree about which weights are zero.
"""

from keras import ops

# The threshold functions g (and g^-1) are public here too.
from keras_str.core.threshold_fns import get_threshold_fn
from keras_str.core.threshold_fns import serialize_threshold_fn

__all__ = [
    "soft_threshold",
    "group_soft_threshold",
    "get_threshold_fn",
    "serialize_threshold_fn",
]


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
    # As tensors: numpy operands would meet the backend's tensors in numpy's
    # operators (a NumPy 2 DeprecationWarning on PyTorch).
    x = ops.convert_to_tensor(x)
    # In x's dtype: a float64 array with a Python threshold (float32 on
    # TensorFlow) would not subtract.
    threshold = ops.cast(threshold, x.dtype)
    return ops.sign(x) * ops.relu(ops.abs(x) - threshold)


def group_soft_threshold(x, threshold, group_norms):
    """Soft-thresholds groups of `x` by their norm: `x * relu(1 - threshold / norm)`.

    The proximal step of a group lasso: a group whose norm is at or below
    `threshold` becomes exactly zero as a whole; the others shrink toward
    zero by `threshold` in norm. A group of one entry is `soft_threshold`.

    Args:
        x: Tensor of weights.
        threshold: Non-negative tensor broadcastable to `x`.
        group_norms: Each entry's group norm, broadcastable to `x` (positive;
            add a tiny constant before the square root).

    Returns:
        A tensor with the shape and dtype of `x`.

    Example:

    >>> x = np.array([[3.0, 4.0], [0.3, 0.4]])
    >>> norms = np.linalg.norm(x, axis=1, keepdims=True)
    >>> keras_str.ops.group_soft_threshold(x, 1.0, norms)
    array([[2.4, 3.2], [0. , 0. ]])
    """
    x = ops.convert_to_tensor(x)
    threshold = ops.cast(threshold, x.dtype)
    group_norms = ops.cast(group_norms, x.dtype)
    return ops.multiply(x, ops.relu(1.0 - ops.divide(threshold, group_norms)))
