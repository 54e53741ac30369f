"""The k-th smallest value over several tensors, on the device, with `keras.ops`.

ST-3, targeted STR and GMP choose thresholds as order statistics of
(normalized) kernel magnitudes every training step. This runs inside the
compiled train step on every backend, with no copy to the host.
"""

from keras import ops

# Measured on 2 x86 cores (benchmarks/quantile_cost.py): a full sort is the
# cheaper exact method up to about this many values; past it, 32 counting
# passes over the values cost less than the sort.
SORT_LIMIT = 1 << 18

_INT32_MIN = -(2**31)
_INT32_MAX = 2**31 - 1


def _order_keys(values):
    """int32 keys that sort like the float32 `values` (IEEE-754 bit trick)."""
    bits = ops.view(ops.cast(values, "float32"), "int32")
    return ops.where(bits < 0, ops.bitwise_xor(bits, _INT32_MAX), bits)


def _key_to_value(key):
    bits = ops.where(key < 0, ops.bitwise_xor(key, _INT32_MAX), key)
    return ops.view(bits, "float32")


def _floor_average(low, high):
    # (low + high) // 2 without int32 overflow.
    return (
        ops.right_shift(low, 1)
        + ops.right_shift(high, 1)
        + ops.bitwise_and(ops.bitwise_and(low, high), 1)
    )


def kth_smallest(values, k, method="auto"):
    """Returns the exact `k`-th smallest entry (1-based) of all `values`.

    Args:
        values: A list of float tensors of any shapes; NaN-free.
        k: Integer scalar (Python or tensor) in `[1, total size]`; clipped
            into that range.
        method: `"sort"` (one sort of all entries), `"bisect"` (32 counting
            passes over the entries, bisecting the float32 bit patterns; no
            concatenated copy) or `"auto"` (sort up to `SORT_LIMIT` entries).
            Both are exact: the result is an entry of `values`, in float32.

    Returns:
        A float32 scalar tensor.

    Example:

    >>> float(kth_smallest([np.array([3.0, 1.0]), np.array([2.0])], 2))
    2.0
    """
    values = [ops.reshape(ops.cast(v, "float32"), (-1,)) for v in values]
    total = sum(int(v.shape[0]) for v in values)
    k = ops.clip(ops.cast(k, "int32"), 1, total)
    if method == "auto":
        method = "sort" if total <= SORT_LIMIT else "bisect"
    if method == "sort":
        flat = values[0] if len(values) == 1 else ops.concatenate(values)
        return ops.take(ops.sort(flat), k - 1)
    if method != "bisect":
        raise ValueError(
            "Invalid value for argument `method`. Expected 'auto', 'sort' or "
            f"'bisect'. Received: method={method!r}"
        )
    keys = [_order_keys(v) for v in values]

    def count_at_most(key):
        return sum(ops.sum(ops.cast(k_ <= key, "int32")) for k_ in keys)

    def step(_, bounds):
        low, high = bounds
        middle = _floor_average(low, high)
        enough = count_at_most(middle) >= k
        return (
            ops.where(enough, low, middle + 1),
            ops.where(enough, middle, high),
        )

    low = ops.convert_to_tensor(_INT32_MIN, dtype="int32")
    high = ops.convert_to_tensor(_INT32_MAX, dtype="int32")
    # 32 halvings take the 2^32 keys down to one: the smallest key with at
    # least k entries at or below it, i.e. the k-th smallest entry.
    low, _ = ops.fori_loop(0, 32, step, (low, high))
    return _key_to_value(low)
