"""Reading tensors and variables back to the host as numpy arrays."""

import keras
import numpy as np


def to_numpy(value):
    """`value` (a tensor, a variable or an array) as a numpy array.

    Keras's `convert_to_numpy` goes through `np.array(x)`, which NumPy 2
    asks for a `copy` keyword that Keras variables and TensorFlow's and
    PyTorch's tensors do not take: one DeprecationWarning a call. Their
    own `.numpy()` (JAX arrays: `np.asarray`) makes the same copy without it.
    """
    # A variable's own `__array__` lacks the keyword too: read its value.
    value = keras.ops.convert_to_tensor(value)
    backend = keras.backend.backend()
    if backend == "tensorflow":
        if hasattr(value, "numpy"):
            return value.numpy()
    elif backend == "torch":
        value = value.detach().cpu()
        # NumPy has no bfloat16 of its own: Keras's conversion handles it.
        if str(value.dtype) != "torch.bfloat16":
            # A copy: `.numpy()` shares the CPU tensor's memory, and a
            # variable's tensor is updated in place by the next train step.
            return value.numpy().copy()
    return np.asarray(keras.ops.convert_to_numpy(value))
