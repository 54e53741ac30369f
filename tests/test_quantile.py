"""kth_smallest: the exact algorithms return np.partition's k-th entry on every backend; "sample" lands within its stated error."""

import keras
import numpy as np
import pytest

from keras_str.core import quantile
from keras_str.core.quantile import kth_smallest
from tests.backend_utils import BACKEND
from tests.backend_utils import to_numpy

ALGORITHMS = ("radix", "bisect", "sort", "auto")


def compiled(function):
    """`function` as the train step runs it: XLA on TF, jit on JAX, eager torch."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.function(function, jit_compile=True)
    if BACKEND == "jax":
        import jax

        return jax.jit(function)
    return function


def expected(arrays, k):
    flat = np.concatenate([np.asarray(a, "float32").ravel() for a in arrays])
    return np.partition(flat, k - 1)[k - 1]


def assert_same(got, want):
    got = np.float32(to_numpy(got))
    # -0.0 == 0.0: np.partition may return either of two tied zeros.
    assert got == want or (np.isnan(got) and np.isnan(want)), (got, want)


def ks_for(total, rng, count=2):
    fixed = {1, total // 2, total}
    return sorted(fixed | set(rng.integers(2, total, size=count).tolist()))


def mixed_arrays(rng):
    """Several shapes; ties, +-0, negatives, +-inf, subnormals, one big tensor."""
    shapes = [(7,), (3, 4, 5), (1,), (2, 2, 2, 2), (300, 250)]
    arrays = [rng.standard_normal(s).astype("float32") for s in shapes]
    arrays[0][:] = [0.0, -0.0, 0.0, np.inf, -np.inf, 1e-40, -1e-40]
    arrays[1] = np.round(arrays[1], 1)  # ties
    arrays[3][...] = 2.5  # all equal
    big = arrays[4]
    big[:100] = 0.0
    big[100:200] = -0.0
    big[200:210] = np.inf
    big[210:215] = -np.inf
    # Many entries sharing their top 16 bits: the second radix pass decides.
    big[1, :] = (1.0 + np.arange(250) * np.finfo(np.float32).eps).astype("float32")
    big[2, :] = big[1, ::-1]
    return arrays


def negative_arrays(rng):
    """All negative, huge magnitudes; the same shapes (JAX compiles ops per shape)."""
    return [-np.abs(a) * np.float32(1e30) for a in mixed_arrays(rng)]


CASES = {
    "mixed": mixed_arrays,
    "negatives": negative_arrays,
    "single": lambda rng: [np.abs(rng.standard_normal((300, 250))).astype("float32")],
}


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_eager_matches_np_partition(algorithm):
    rng = np.random.default_rng(0)
    for case in sorted(CASES):
        arrays = CASES[case](rng)
        tensors = [keras.ops.convert_to_tensor(a) for a in arrays]
        total = sum(a.size for a in arrays)
        # Op by op (bisection: 32 passes) is slow: the compiled test covers
        # more k's.
        for k in ks_for(total, rng, count=0 if algorithm == "bisect" else 1):
            got = kth_smallest(
                tensors, keras.ops.convert_to_tensor(k, "int32"), algorithm
            )
            assert_same(got, expected(arrays, k))


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_compiled_matches_np_partition(algorithm):
    if BACKEND == "torch":
        pytest.skip("PyTorch runs the train step eagerly: the eager test covers it")
    rng = np.random.default_rng(1)
    arrays = mixed_arrays(rng)
    tensors = [keras.ops.convert_to_tensor(a) for a in arrays]
    function = compiled(lambda values, k: kth_smallest(values, k, algorithm))
    total = sum(a.size for a in arrays)
    for k in ks_for(total, rng, count=3) + [2, total - 1]:
        got = function(tensors, keras.ops.convert_to_tensor(k, "int32"))
        assert_same(got, expected(arrays, k))


@pytest.mark.parametrize("algorithm", ["radix", "bisect"])
def test_key_ranges_at_the_extremes(algorithm):
    # Every float32 binade, both signs: each radix digit and bisection
    # bound is reached somewhere.
    magnitudes = np.float32(2.0) ** np.arange(-149, 128, dtype=np.float32)
    values = np.concatenate([magnitudes, -magnitudes, [np.float32(np.finfo("float32").max)],
                             [-np.float32(np.finfo("float32").max)]]).astype("float32")
    rng = np.random.default_rng(2)
    rng.shuffle(values)
    tensors = [keras.ops.convert_to_tensor(values)]
    for k in ks_for(values.size, rng):
        assert_same(kth_smallest(tensors, k, algorithm), expected([values], k))


def test_k_is_clipped_and_may_be_a_python_int():
    values = [np.array([3.0, 1.0], "float32"), np.array([[2.0]], "float32")]
    for algorithm in ALGORITHMS:
        assert_same(kth_smallest(values, 0, algorithm), np.float32(1.0))
        assert_same(kth_smallest(values, 2, algorithm), np.float32(2.0))
        assert_same(kth_smallest(values, 7, algorithm), np.float32(3.0))


def test_other_float_dtypes_are_compared_in_float32():
    for dtype in ("float16", "float64"):
        values = np.random.default_rng(3).standard_normal(1000).astype(dtype)
        want = expected([values.astype("float32")], 300)
        for algorithm in ALGORITHMS:
            got = kth_smallest([keras.ops.convert_to_tensor(values)], 300, algorithm)
            assert to_numpy(got).dtype == np.float32
            assert_same(got, want)


def test_auto_sorts_small_inputs_only_on_torch():
    assert quantile.auto_method(quantile.SORT_LIMIT + 1) == "radix"
    small = quantile.auto_method(100)
    assert small == ("sort" if BACKEND == "torch" and quantile.SORT_LIMIT >= 100 else "radix")


def test_invalid_method_raises():
    with pytest.raises(ValueError, match="method"):
        kth_smallest([np.ones(3, "float32")], 1, method="median")
    with pytest.raises(ValueError, match="32 bits"):
        quantile._kth_radix([keras.ops.convert_to_tensor(np.ones(3, "int32"))], 1, (16, 8))


def expected_weighted(arrays, weights, target):
    flat = np.concatenate([np.asarray(a, "float32").ravel() for a in arrays])
    per_entry = np.concatenate([np.full(np.size(a), w, "float64") for a, w in zip(arrays, weights)])
    order = np.argsort(flat, kind="stable")
    cumulative = np.cumsum(per_entry[order])
    return flat[order][np.searchsorted(cumulative, target)]


@pytest.mark.parametrize("size", [(40, 30), (300, 250)])  # sort and radix on torch
def test_weighted_selection_matches_numpy(size):
    from keras_str.core.quantile import weighted_kth_smallest

    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(size).astype("float32"),
              np.round(rng.standard_normal((9, 7)), 1).astype("float32"),
              rng.standard_normal((5,)).astype("float32")]
    weights = [1.0, 196.0, 37.0]
    total = sum(w * a.size for a, w in zip(arrays, weights))
    function = compiled(lambda values, target: weighted_kth_smallest(values, weights, target))
    for fraction in (0.01, 0.3, 0.5, 0.9, 1.0):
        target = np.float32(fraction * total)
        want = expected_weighted(arrays, weights, target)
        # Exact up to float32 rounding of the weight sums: the entry found
        # has the numpy answer's rank within a weight of one in 10^6.
        got = np.float32(to_numpy(function(arrays, target)))
        flat = np.concatenate([a.ravel() for a in arrays])
        per_entry = np.concatenate([np.full(a.size, w) for a, w in zip(arrays, weights)])
        weight_at_or_below = lambda v: per_entry[flat <= v].sum()
        assert got == want or abs(weight_at_or_below(got) - weight_at_or_below(want)) <= 1e-6 * total, (
            fraction, got, want)
    # Unit weights: the count-based k-th smallest.
    got = weighted_kth_smallest(arrays, [1.0, 1.0, 1.0], 100.0)
    assert_same(got, expected(arrays, 100))


def test_auto_samples_only_above_the_limit():
    assert quantile.auto_method(quantile.SAMPLE_ABOVE + 1) == "sample"
    assert quantile.auto_method(quantile.SAMPLE_ABOVE) != "sample"


def structured_kernels(rng):
    """A LeNet-sized set of kernels whose rows and columns differ in scale (as trained ones do)."""
    first = rng.standard_normal((784, 300)) * np.geomspace(1e-3, 1.0, 784)[:, None]
    second = rng.standard_normal((300, 100)) * np.geomspace(0.1, 1.0, 100)[None, :]
    return [np.abs(first).astype("float32"), np.abs(second).astype("float32"),
            np.abs(rng.standard_normal((100, 10))).astype("float32")]


@pytest.mark.parametrize("fraction", [0.5, 0.9, 0.99])
def test_sampled_selection_lands_within_its_stated_error(fraction):
    arrays = structured_kernels(np.random.default_rng(4))
    flat = np.concatenate([a.ravel() for a in arrays])
    k = int(round(fraction * flat.size))
    function = compiled(lambda values: kth_smallest(values, k, method="sample"))
    got = np.float32(to_numpy(function(arrays)))
    # The docstring's error: the rank's standard deviation is
    # sqrt(p (1 - p) / SAMPLE_SIZE) of all entries; allow four of them.
    reached = np.mean(flat <= got)
    allowed = 4 * np.sqrt(fraction * (1 - fraction) / quantile.SAMPLE_SIZE)
    assert abs(reached - fraction) <= allowed, (reached, fraction, allowed)
    assert got in set(flat.tolist())  # an entry, not an interpolation
    # The same fixed sample every call, eager or compiled.
    assert_same(kth_smallest(arrays, k, method="sample"), got)
    assert_same(kth_smallest(arrays, k), got)  # "auto" samples at this size


def test_sampled_weighted_selection_lands_within_its_stated_error():
    from keras_str.core.quantile import weighted_kth_smallest

    arrays = structured_kernels(np.random.default_rng(5))
    weights = [1.0, 3.0, 30.0]
    per_entry = np.concatenate([np.full(a.size, w) for a, w in zip(arrays, weights)])
    flat = np.concatenate([a.ravel() for a in arrays])
    target = 0.9 * per_entry.sum()
    function = compiled(lambda values: weighted_kth_smallest(values, weights, target))
    got = np.float32(to_numpy(function(arrays)))
    reached = per_entry[flat <= got].sum() / per_entry.sum()
    assert abs(reached - 0.9) <= 4 * np.sqrt(0.09 / quantile.SAMPLE_SIZE), reached
    exact = weighted_kth_smallest(arrays, weights, target, method="exact")
    assert_same(exact, expected_weighted(arrays, weights, np.float32(target)))
