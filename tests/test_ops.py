import keras
import numpy as np
import pytest

from keras_str import ops as str_ops
from tests import numpy_reference
from tests.backend_utils import to_numpy


def test_soft_threshold_matches_formula():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(5, 7)).astype("float32")
    result = to_numpy(str_ops.soft_threshold(w, 0.4))
    np.testing.assert_allclose(
        result, numpy_reference.soft_threshold(w, 0.4), atol=1e-7
    )
    assert np.all(result[np.abs(w) <= 0.4] == 0.0)
    assert np.all(np.sign(result[np.abs(w) > 0.4]) == np.sign(w[np.abs(w) > 0.4]))


def test_soft_threshold_broadcasts_per_channel():
    w = np.array([[0.5, -0.5], [0.2, -0.9]], dtype="float32")
    result = to_numpy(
        str_ops.soft_threshold(w, np.array([0.3, 0.6], dtype="float32"))
    )
    np.testing.assert_allclose(result, [[0.2, 0.0], [0.0, -0.3]], atol=1e-6)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_soft_thresholds_keep_the_dtype_of_x(dtype):
    # A float64 array with a Python threshold failed to subtract on TensorFlow.
    w = np.array([[-0.3, 0.05], [0.2, 0.5]], dtype=dtype)
    # JAX without x64 holds float64 arrays as float32.
    dtype = keras.backend.standardize_dtype(keras.ops.convert_to_tensor(w).dtype)
    result = str_ops.soft_threshold(w, 0.1)
    assert keras.backend.standardize_dtype(result.dtype) == dtype
    np.testing.assert_allclose(to_numpy(result), [[-0.2, 0.0], [0.1, 0.4]], atol=1e-3)
    grouped = str_ops.group_soft_threshold(w, 0.1, np.full((2, 1), 0.5))
    assert keras.backend.standardize_dtype(grouped.dtype) == dtype
    np.testing.assert_allclose(to_numpy(grouped), 0.8 * w, atol=1e-3)


@pytest.mark.parametrize("name", ["sigmoid", "exp"])
def test_named_threshold_functions(name):
    s = np.array([-3.0, 0.0, 1.5], dtype="float32")
    g, _ = numpy_reference.THRESHOLD_FNS[name]
    np.testing.assert_allclose(
        to_numpy(str_ops.get_threshold_fn(name)(s)),
        g(s),
        rtol=1e-6,
    )


def test_callable_threshold_function_is_returned():
    fn = keras.ops.softplus
    assert str_ops.get_threshold_fn(fn) is fn


@pytest.mark.parametrize("bad", ["relu", "", 3, None])
def test_bad_threshold_function(bad):
    with pytest.raises(ValueError, match="threshold_fn"):
        str_ops.get_threshold_fn(bad)


def test_host_reads_are_snapshots_of_a_variable():
    from keras_str.core.host import to_numpy as host_to_numpy

    variable = keras.Variable(np.array([1.0, 2.0], "float32"))
    before = host_to_numpy(variable)
    variable.assign(np.array([3.0, 4.0], "float32"))
    np.testing.assert_array_equal(before, [1.0, 2.0])  # not a view of the variable
