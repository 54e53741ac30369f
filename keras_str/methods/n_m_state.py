"""The N:M state a thresholding method keeps per layer, set in-step at the start of each step.

ST-3 and targeted STR reach N:M the same way: each group of M weights along
the kernel's input axis keeps its `kept` largest raw magnitudes (`kept`
scheduled from M down to N), and a kept weight is shrunk by at least the
largest magnitude its group drops, so the soft threshold never lets a
dropped weight back. The mask and the group thresholds are set from the
weights at the start of the step and stored, so the forward pass only
multiplies and shrinks, and the pattern holds after the step's optimizer
update (the weights it moves are judged again at the next step).
"""

import keras
from keras import ops

from keras_str.core.n_m import kept_per_group
from keras_str.core.n_m import largest_dropped
from keras_str.core.n_m import layer_n_m_axis
from keras_str.core.n_m import n_m_mask
from keras_str.core.n_m import per_entry
from keras_str.methods.base import when_due


def build_n_m_state(layer, m):
    """Adds the `kept`, `mask` and `group_threshold` variables to `layer`; a `ValueError` if it cannot hold M."""
    axis = layer_n_m_axis(layer, m)
    shape = tuple(layer.raw_kernel.shape)
    groups = list(shape)
    groups[axis] //= m
    state = {
        # Weights each group of M keeps: M (dense) down to N.
        "kept": ("int32", (), keras.initializers.Constant(m)),
        "mask": (layer.variable_dtype, shape, "ones"),
        "group_threshold": (layer.variable_dtype, tuple(groups), "zeros"),
    }
    return {
        name: layer.add_weight(
            name=name,
            shape=variable_shape,
            initializer=initializer,
            dtype=dtype,
            trainable=False,
            autocast=False,
            aggregation="only_first_replica",
        )
        for name, (dtype, variable_shape, initializer) in state.items()
    }


def update_n_m_state(layers, n_m, fraction, due):
    """Sets each layer's group pattern for a step `fraction` of the way through the schedule.

    Every raw weight competes, the ones dropped so far included: under a
    straight-through gradient they train and can come back.
    """
    m = n_m[1]
    kept = when_due(
        due,
        lambda: kept_per_group(n_m, fraction),
        ops.convert_to_tensor(layers[0].sparsity_state["kept"]),
    )
    for layer in layers:
        state = layer.sparsity_state
        state["kept"].assign(kept)
        axis = layer.kernel_spec.input_axis(layer)
        magnitude = ops.stop_gradient(ops.abs(ops.convert_to_tensor(layer.raw_kernel)))
        mask = when_due(
            due,
            lambda: ops.cast(n_m_mask(magnitude, kept, m, axis), state["mask"].dtype),
            ops.convert_to_tensor(state["mask"]),
        )
        state["mask"].assign(mask)
        threshold = when_due(
            due,
            lambda: ops.cast(
                largest_dropped(ops.cast(magnitude, mask.dtype), mask, m, axis),
                state["group_threshold"].dtype,
            ),
            ops.convert_to_tensor(state["group_threshold"]),
        )
        state["group_threshold"].assign(threshold)


def masked_kernel_and_group_threshold(layer, kernel, m):
    """`kernel` times the stored mask, and the stored group thresholds, one per entry."""
    state = layer.sparsity_state
    threshold = per_entry(
        ops.cast(state["group_threshold"], kernel.dtype), m, layer.kernel_spec.input_axis(layer)
    )
    return kernel * ops.cast(state["mask"], kernel.dtype), threshold
