"""What tests need that differs between Keras backends: gradients, and which backend runs."""

import keras
import pytest

from keras_str.core.host import to_numpy as host_to_numpy

BACKEND = keras.backend.backend()


def slow_on(*backends):
    """Marks a test `slow` on `backends`: it runs by default on the others."""
    return pytest.mark.slow if BACKEND in backends else pytest.mark.skipif(False, reason="")


def to_numpy(value):
    # keras_str's own: no NumPy 2 `copy` DeprecationWarning per call.
    return host_to_numpy(value)


def gradients(loss_fn, variables):
    """Gradients of the scalar `loss_fn()` with respect to `variables`, as numpy."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = loss_fn()
        grads = tape.gradient(loss, [v.value for v in variables])
    elif BACKEND == "jax":
        import jax

        def pure(values):
            mapping = list(zip(variables, values))
            with keras.StatelessScope(state_mapping=mapping):
                return loss_fn()

        grads = jax.grad(pure)([v.value for v in variables])
    elif BACKEND == "torch":
        import torch

        loss = loss_fn()
        grads = torch.autograd.grad(loss, [v.value for v in variables])
    else:
        raise NotImplementedError(BACKEND)
    return [to_numpy(g) for g in grads]
