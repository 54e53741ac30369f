"""N:M sparsity: at most N nonzeros in every M consecutive weights along a kernel's input axis.

2:4 is what sparse tensor cores run. The groups run along the axis the
layer sums its inputs over (a Dense kernel's rows, a convolution's input
channels), as tfmot's `sparsity_m_by_n` and the tensor cores define them.
"""

import numpy as np
from keras import ops

from keras_str.core.arguments import check_fraction


def parse_n_m(n_m, argument="n_m"):
    """`(n, m)` from `(2, 4)`, `[2, 4]` or `"2:4"`; a `ValueError` naming the argument otherwise."""
    pair = n_m
    if isinstance(n_m, str):
        parts = n_m.split(":")
        pair = tuple(int(p) for p in parts) if all(p.strip().isdigit() for p in parts) else None
    valid = (
        isinstance(pair, (tuple, list))
        and len(pair) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in pair)
        and 0 < pair[0] < pair[1]
    )
    if not valid:
        raise ValueError(
            f"Invalid value for argument `{argument}`. Expected N:M as a pair "
            f"of integers 0 < N < M, e.g. (2, 4) or '2:4'. Received: "
            f"{argument}={n_m!r}"
        )
    return int(pair[0]), int(pair[1])


def n_m_target(n_m, target_sparsity):
    """The share of zeros N:M sets (`1 - N/M`), after checking `target_sparsity` is `None` or it."""
    n, m = n_m
    implied = 1.0 - n / m
    target_sparsity = check_fraction("target_sparsity", target_sparsity, allow_none=True)
    if target_sparsity is not None and abs(target_sparsity - implied) > 1e-9:
        raise ValueError(
            f"N:M sparsity {n}:{m} means a target of {implied:g}. Pass "
            f"target_sparsity=None or {implied:g}. Received: "
            f"target_sparsity={target_sparsity!r}, n_m={n_m!r}"
        )
    return implied


def kept_per_group(n_m, fraction):
    """How many weights each group keeps `fraction` of the way through the schedule: M down to N (int32)."""
    n, m = n_m
    return m - ops.cast(ops.round(fraction * (m - n)), "int32")


def largest_dropped(magnitude, mask, m, axis):
    """Each group's largest magnitude that `mask` drops: `magnitude`'s shape, `axis` divided by `m`.

    0 where the group drops nothing. A soft threshold at it keeps the
    group's masked entries, shrunk; an entry tied with it goes to 0 too.
    """
    grouped, shape = _grouped(magnitude * (1.0 - mask), axis, m)
    largest = ops.max(grouped, axis=-1)
    return ops.moveaxis(largest, -1, axis)


def per_entry(group_values, m, axis):
    """`group_values` (one per group of `m` along `axis`) repeated for each of the group's entries."""
    return ops.repeat(group_values, m, axis=axis)


def check_groups(shape, axis, m, name):
    """Raises a `ValueError` unless `shape[axis]` splits into groups of `m`."""
    size = shape[axis]
    if size % m:
        raise ValueError(
            f"Layer {name!r} cannot hold N:M sparsity with M={m}: its kernel "
            f"{tuple(shape)} has {size} inputs along axis {axis % len(shape)}, "
            f"not a multiple of {m}. Keep it dense (`keep_dense=[{name!r}]`) "
            "or choose an M that divides it."
        )


def _grouped(x, axis, m):
    """`x` with `axis` moved last and split into `(..., size // m, m)`."""
    x = ops.moveaxis(x, axis, -1)
    shape = ops.shape(x)
    return ops.reshape(x, tuple(shape[:-1]) + (shape[-1] // m, m)), shape


def n_m_mask(magnitude, kept, m, axis):
    """1.0 on the `kept` largest entries of each group of `m` along `axis`, 0.0 elsewhere.

    `kept` may be a tensor (a schedule going from `m` down to N). Ties keep
    the entry that comes first, so each group keeps exactly `kept`, the
    same on every backend (sorts are not all stable). Written with
    `keras.ops`: it runs inside the compiled train step; it compares the
    `m` entries of a group pairwise (`m` times the kernel's size, briefly).
    """
    grouped, shape = _grouped(ops.convert_to_tensor(magnitude), axis, m)
    mine = ops.expand_dims(grouped, -1)
    theirs = ops.expand_dims(grouped, -2)
    # Entry i's rank: the entries j above it, or equal to it and before it.
    before = np.tril(np.ones((m, m), dtype=bool), k=-1)
    above = ops.logical_or(
        ops.greater(theirs, mine), ops.logical_and(ops.equal(theirs, mine), before)
    )
    rank = ops.sum(ops.cast(above, "int32"), axis=-1)
    mask = ops.cast(rank < ops.cast(kept, "int32"), grouped.dtype)
    mask = ops.reshape(mask, shape)
    return ops.moveaxis(mask, -1, axis)


def group_nonzeros(kernel, m, axis):
    """Host-side: the nonzero count of each group of `m` along `axis`, shaped `(..., size // m)`."""
    kernel = np.moveaxis(np.asarray(kernel), axis, -1)
    grouped = kernel.reshape(kernel.shape[:-1] + (kernel.shape[-1] // m, m))
    return np.count_nonzero(grouped, axis=-1)


def layer_n_m_axis(layer, m):
    """The kernel axis N:M groups run along in a sparse `layer`, or a `ValueError` saying why it has none."""
    axis = layer.kernel_spec.input_axis(layer)
    if axis is None:
        raise ValueError(
            f"Layer {layer.name!r} ({type(layer).__name__}) cannot hold N:M "
            "sparsity: its kernel does not sum over its inputs along one axis "
            "(a depthwise filter reads one input channel, an embedding table "
            "is looked up). Keep it dense (`keep_dense=["
            f"{layer.name!r}]`) or use an unstructured method for it."
        )
    check_groups(tuple(layer.raw_kernel.shape), axis, m, layer.name)
    return axis
