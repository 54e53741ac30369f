"""The k-th smallest value over several tensors, on the device, with `keras.ops`.

ST-3, targeted STR and GMP choose thresholds as order statistics of
(normalized) kernel magnitudes every training step. This runs inside the
compiled train step on every backend, with no copy to the host.

Three exact algorithms, all on float32 order keys (the float32 bit
pattern, remapped so that int32 order is float order):

- `"radix"`: radix select. One histogram of the top 16 key bits over all
  entries (a scatter-add into 2^16 bins) gives the bin that holds the k-th
  entry; a second histogram of the low 16 bits of the entries in that bin
  gives the entry. Two passes over the values, whatever their count.
- `"bisect"`: 32 counting passes, bisecting the 2^32 keys.
- `"sort"`: one sort of all entries.

And one estimate, `"sample"`, the default (`"auto"`) above `SAMPLE_ABOVE`
entries: the exact selection among `SAMPLE_SIZE` entries drawn once at
fixed random positions (each tensor its share), each sampled entry counting
for the entries it stands for. Its result is an entry of the values whose
rank is off by a standard deviation of `sqrt(p (1 - p) / SAMPLE_SIZE)` of
all entries at quantile `p` (0.23 % of the entries at p = 0.9, 0.08 % at
0.99), whatever their count; its cost does not grow with the model. An exact
pass costs 2 ms for LeNet-300-100's 266k weights on 2 x86 cores, a fifth of
its train step, and 0.16 s for ResNet-50's 25.5M.

`benchmarks/quantile_cost.py` times them on TF (XLA), JAX (jit), PyTorch
(eager) and TF without XLA; `benchmarks/results/quantile_cost.md` holds the
table behind `method="auto"`. On 2 x86 cores, 90 % quantile of a model's
kernels: LeNet-300-100 (266k) 2.9 ms (TF/XLA) / 2.1 ms (JAX) / 8.8 ms
(torch), against 7.5 / 5.5 / 38 ms for bisection and 63 / 71 / 32 ms for a
sort; ResNet-50 (25.5M) 0.16 / 0.28 / 0.45 s, against 1.3 / 1.3 / 3.7 s
(bisection) and 11 / 13 / 3.8 s (sort). XLA's CPU sort costs about 50 ns an
entry, a scatter-add pass a few ns, a counting pass about 1 ns; radix select
is the fastest exact algorithm (or tied) at every size measured, 10k to
25.5M entries, but on PyTorch below `SORT_LIMIT` entries, where one native
sort beats its few dozen small eager ops. Rejected: `ops.top_k` (on XLA's
CPU it sorts: 90 ms for 64 of 266k entries; it also needs a static k), and
three 11-bit radix passes (within 10 % below 1M entries, 1.4x slower at
25M: scatter-adds cost per entry, so fewer, wider passes win).
"""

import functools

import keras
import numpy as np
from keras import ops

# Measured (benchmarks/quantile_cost.py): on PyTorch, which runs eagerly, one
# native sort beats radix select's few dozen small ops up to about this many
# entries. Under XLA (TF with jit_compile, JAX) sorting is the slowest
# algorithm at every size measured, so `"auto"` never sorts there.
SORT_LIMIT = 1 << 15

METHODS = ("auto", "exact", "sample", "radix", "bisect", "sort")
# What a sparsity method's `quantile` argument may be.
SELECTIONS = ("auto", "exact", "sample")

# Above this many entries "auto" selects from a fixed random sample of
# `SAMPLE_SIZE` entries (`"sample"`): an exact selection costs a pass over
# every entry each step (2 ms for 266k on 2 x86 cores, more than a tenth of
# LeNet-300-100's train step), while the sample's error depends on its size
# only (see `kth_smallest`).
SAMPLE_ABOVE = 1 << 17
SAMPLE_SIZE = 1 << 14

_INT32_MIN = -(2**31)
_INT32_MAX = 2**31 - 1

# Radix select: bits a pass, from the top. Scatter-adds cost per entry, so
# fewer, wider passes win (two of 16 bits beat three of 11 measured); 2^16
# int32 bins still fit in L2, and two-level scans keep their prefix sums cheap.
RADIX_BITS = (16, 16)


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


def _histogram(ids, bins, where=None, weights=None):
    """int32 counts of `ids` (in `[0, bins)`), counting only where `where` is true.

    With `weights` (float32, the shape of `ids`), float32 sums of the
    weights instead. PyTorch runs its native `bincount`; TF and JAX a
    scatter-add (`segment_sum`), which compiles under XLA with static shapes
    (Keras's `bincount` does not: its output size depends on the values).
    """
    if keras.backend.backend() == "torch":
        if where is not None:
            ids = ops.where(where, ids, bins)
        counts = ops.bincount(ids, weights=weights, minlength=bins + 1)[:bins]
    else:
        if weights is None:
            ones = ops.ones_like(ids) if where is None else ops.cast(where, "int32")
        else:
            ones = weights if where is None else ops.where(where, weights, 0.0)
        counts = ops.segment_sum(ones, ids, num_segments=bins)
    return ops.cast(counts, "int32" if weights is None else "float32")


def _first_reaching(counts, k):
    """The first index `i` with `sum(counts[: i + 1]) >= k`, and `k - sum(counts[:i])`."""
    cumulative = ops.cumsum(counts)
    below = cumulative < k
    index = ops.sum(ops.cast(below, "int32"))
    return index, k - ops.sum(ops.where(below, counts, 0))


def _select_bin(histogram, k, bits):
    """`_first_reaching` over 2^bits bins, as two scans of about 2^(bits/2).

    One cumulative sum over 2^16 entries costs about 1 ms on XLA's CPU;
    row totals, then one row, cost a few microseconds.
    """
    rows, columns = 1 << (bits // 2), 1 << (bits - bits // 2)
    table = ops.reshape(histogram, (rows, columns))
    row, k = _first_reaching(ops.sum(table, axis=1), k)
    column, k = _first_reaching(ops.take(table, row, axis=0), k)
    return row * columns + column, k


def _group_small(keys, size):
    """`keys` with those under `size` entries concatenated into one tensor.

    Each tensor costs a histogram of its own (bins to clear and add), each
    concatenated entry a copy: big tensors are read in place, small ones
    share a histogram.
    """
    small = [key for key in keys if key.shape[0] < size]
    big = [key for key in keys if key.shape[0] >= size]
    if len(small) > 1:
        small = [ops.concatenate(small)]
    return big + small


def _kth_radix(keys, k, bits=RADIX_BITS, weights=None):
    """The k-th smallest key, one histogram pass per digit of `bits`.

    With `weights` (one float32 tensor per key tensor), `k` is a weight:
    the smallest key whose entries at or below it weigh at least `k`.
    """
    if sum(bits) != 32:
        raise ValueError(f"Radix digits must cover 32 bits. Received: bits={bits}")
    if weights is None:
        keys = _group_small(keys, 1 << max(bits))
        weights = [None] * len(keys)
    prefix = None  # The chosen high digits: the k-th key >> (bits still to go).
    shift = 32
    for width in bits:
        higher, shift = shift, shift - width
        bins = 1 << width
        histogram = None
        for key, weight in zip(keys, weights):
            digit = ops.right_shift(key, shift) if shift else key
            if prefix is None:
                # Arithmetic shift: the top digit is signed; offset it to 0..bins-1.
                counts = _histogram(digit + bins // 2, bins, weights=weight)
            else:
                counts = _histogram(
                    ops.bitwise_and(digit, bins - 1),
                    bins,
                    where=ops.right_shift(key, higher) == prefix,
                    weights=weight,
                )
            histogram = counts if histogram is None else histogram + counts
        chosen, k = _select_bin(histogram, k, width)
        # prefix * bins stays within int32: prefix < 2^(31 - width) in size.
        prefix = chosen - bins // 2 if prefix is None else prefix * bins + chosen
    return prefix


def _kth_bisect(keys, k):
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
    return low


def auto_method(total, exact=False):
    """The algorithm `kth_smallest(method="auto")` (or `"exact"`) runs for `total` entries."""
    if total > SAMPLE_ABOVE and not exact:
        return "sample"
    if keras.backend.backend() == "torch" and total <= SORT_LIMIT:
        return "sort"
    return "radix"


@functools.lru_cache(maxsize=None)
def _sample_positions(size, count, index):
    """`count` distinct positions in `[0, size)`, the same in every process."""
    rng = np.random.default_rng([size, count, index])
    return np.sort(rng.choice(size, count, replace=False)).astype("int32")


def _sample(flat, weights, size):
    """About `size` entries of the 1-D tensors `flat`, and what each weighs.

    Each tensor gives a share of the sample proportional to its size, at
    fixed random positions; a sampled entry weighs its tensor's weight times
    the entries it stands for. Tensors no bigger than their share are kept
    whole.
    """
    total = sum(int(v.shape[0]) for v in flat)
    sampled, sampled_weights = [], []
    for index, (values, weight) in enumerate(zip(flat, weights)):
        entries = int(values.shape[0])
        count = min(entries, max(1, round(size * entries / total)))
        if count < entries:
            positions = _sample_positions(entries, count, index)
            values = ops.take(values, ops.convert_to_tensor(positions))
        sampled.append(values)
        sampled_weights.append(float(weight) * entries / count)
    return sampled, sampled_weights


def _weighted_select(flat, weights, target):
    """Smallest entry of the 1-D `flat` whose entries at or below it weigh `target`."""
    entry_weights = [
        ops.full((int(v.shape[0]),), float(w), dtype="float32")
        for v, w in zip(flat, weights)
    ]
    total = sum(int(v.shape[0]) for v in flat)
    if keras.backend.backend() == "torch" and total <= SORT_LIMIT:
        values_flat = ops.concatenate(flat) if len(flat) > 1 else flat[0]
        weights_flat = ops.concatenate(entry_weights) if len(flat) > 1 else entry_weights[0]
        order = ops.argsort(values_flat)
        cumulative = ops.cumsum(ops.take(weights_flat, order))
        index = ops.sum(ops.cast(cumulative < target, "int32"))
        index = ops.minimum(index, total - 1)
        return ops.take(values_flat, ops.take(order, index))
    keys = [_order_keys(v) for v in flat]
    return _key_to_value(_kth_radix(keys, target, weights=entry_weights))


def kth_smallest(values, k, method="auto"):
    """Returns the `k`-th smallest entry (1-based) of all `values`.

    Exact with `"radix"`, `"bisect"` and `"sort"`, and with `"auto"` up to
    `SAMPLE_ABOVE` entries: the result is an entry of `values` (in float32),
    the one `np.partition(all_values, k - 1)[k - 1]` gives. `"sample"` (and
    `"auto"` above `SAMPLE_ABOVE`) returns an entry whose rank is off by
    `sqrt(p (1 - p) / SAMPLE_SIZE)` of all entries (one standard deviation,
    `p = k / total`; see the module docstring). `-0.0` orders just below
    `0.0`.

    Args:
        values: A list of float tensors of any shapes; NaN-free (+-inf are
            fine). Each is read in place; only `"sort"` concatenates them.
        k: Integer scalar (Python or int tensor) in `[1, total size]`;
            clipped into that range.
        method: `"radix"` (radix select: two histogram passes of 16 bits
            over the float32 bit patterns), `"bisect"` (32 counting passes),
            `"sort"` (one sort of all entries), `"sample"` (the exact
            selection among `SAMPLE_SIZE` fixed random entries), `"exact"`
            (radix select, except a sort up to `SORT_LIMIT` entries on
            PyTorch: the fastest exact algorithm measured, see
            `benchmarks/results/quantile_cost.md`), or `"auto"` (`"sample"`
            above `SAMPLE_ABOVE` entries, else `"exact"`).

    Returns:
        A float32 scalar tensor.

    Example:

    >>> float(kth_smallest([np.array([3.0, 1.0]), np.array([2.0])], 2))
    2.0
    """
    _check_method(method, METHODS)
    values = [ops.reshape(ops.cast(v, "float32"), (-1,)) for v in values]
    total = sum(int(v.shape[0]) for v in values)
    k = ops.clip(ops.cast(k, "int32"), 1, total)
    if method in ("auto", "exact"):
        method = auto_method(total, exact=method == "exact")
    if method == "sample":
        sampled, weights = _sample(values, [1.0] * len(values), SAMPLE_SIZE)
        return _weighted_select(sampled, weights, ops.cast(k, "float32"))
    if method == "sort":
        flat = values[0] if len(values) == 1 else ops.concatenate(values)
        return ops.take(ops.sort(flat), k - 1)
    keys = [_order_keys(v) for v in values]
    if method == "radix":
        return _key_to_value(_kth_radix(keys, k))
    return _key_to_value(_kth_bisect(keys, k))


def _check_method(method, allowed):
    if method not in allowed:
        raise ValueError(
            f"Invalid value for argument `method`. Expected one of {allowed}. "
            f"Received: method={method!r}"
        )


def weighted_kth_smallest(values, weights, target, method="auto"):
    """The smallest entry of `values` whose entries at or below it weigh `target`.

    Every entry of `values[i]` weighs `weights[i]` (e.g. the multiply-adds
    one weight of layer i costs per example): the result `v` is the
    smallest entry with `sum(weight of entries <= v) >= target`. With unit
    weights this is `kth_smallest(values, target)`. Radix select (two
    weighted histogram passes; a sort up to `SORT_LIMIT` entries on
    PyTorch), on the device, in float32: weight sums are rounded to float32
    (relative error about 1e-7 of the total weight), entries are exact.

    Args:
        values: A list of float tensors; NaN-free.
        weights: One non-negative Python number per tensor.
        target: Float scalar (Python or tensor), clipped into
            `(0, total weight]`.
        method: `"exact"`, `"sample"` (from `SAMPLE_SIZE` entries, each
            weighing the entries it stands for; error as in
            `kth_smallest`), or `"auto"` (sampled above `SAMPLE_ABOVE`
            entries).

    Returns:
        A float32 scalar tensor, an entry of `values`.

    Example:

    >>> float(weighted_kth_smallest(
    ...     [np.array([1.0, 3.0]), np.array([2.0])], [1.0, 10.0], 5.0))
    2.0
    """
    if len(weights) != len(values):
        raise ValueError(
            "Expected one weight per tensor. Received: "
            f"{len(values)} tensors, weights={list(weights)!r}"
        )
    _check_method(method, SELECTIONS)
    flat = [ops.reshape(ops.cast(v, "float32"), (-1,)) for v in values]
    total_weight = sum(float(w) * int(v.shape[0]) for v, w in zip(flat, weights))
    target = ops.clip(ops.cast(target, "float32"), 1e-30, total_weight)
    total = sum(int(v.shape[0]) for v in flat)
    if method == "sample" or (method == "auto" and auto_method(total) == "sample"):
        flat, weights = _sample(flat, weights, SAMPLE_SIZE)
    return _weighted_select(flat, weights, target)
