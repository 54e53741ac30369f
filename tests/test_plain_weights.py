"""A plain layer's weights load into its sparse counterpart: `set_weights`, saved variables, `Embedding(weights=)`; quantized dtypes are refused."""

import keras
import numpy as np
import pytest

import keras_str
from tests.backend_utils import to_numpy

# (plain layer, sparse layer, input shape): the sparse one thresholds at
# g(-100) = 0, so it computes what the plain one does.
PAIRS = {
    "dense": (lambda: keras.layers.Dense(4), lambda **k: keras_str.STRDense(4, **k), (None, 6)),
    "conv2d": (lambda: keras.layers.Conv2D(3, 2), lambda **k: keras_str.STRConv2D(3, 2, **k),
               (None, 5, 5, 2)),
    "einsum_dense": (lambda: keras.layers.EinsumDense("ab,bc->ac", (4,), bias_axes="c"),
                     lambda **k: keras_str.STREinsumDense("ab,bc->ac", (4,), bias_axes="c", **k),
                     (None, 6)),
    "embedding": (lambda: keras.layers.Embedding(7, 3), lambda **k: keras_str.STREmbedding(7, 3, **k),
                  (None, 2)),
}


def _inputs(shape):
    if len(shape) == 2 and shape[1] == 2:  # token ids
        return np.array([[1, 6], [0, 3]])
    return np.random.default_rng(0).normal(size=(2,) + shape[1:]).astype("float32")


def _built(make, shape):
    layer = make()
    layer.build(shape)
    return layer


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_set_weights_takes_the_plain_layer_s_weights(name):
    make_plain, make_sparse, shape = PAIRS[name]
    plain = _built(make_plain, shape)
    sparse = _built(lambda: make_sparse(threshold_init=-100.0), shape)
    threshold_before = to_numpy(sparse.threshold_param)
    sparse.set_weights(plain.get_weights())
    x = _inputs(shape)
    np.testing.assert_allclose(to_numpy(sparse(x)), to_numpy(plain(x)), atol=1e-6)
    # The method's state is as `build` made it, as `sparsify` leaves it.
    np.testing.assert_array_equal(to_numpy(sparse.threshold_param), threshold_before)
    # A sparse layer's own weights still round-trip.
    copy = _built(lambda: make_sparse(threshold_init=-100.0), shape)
    copy.set_weights(sparse.get_weights())
    np.testing.assert_allclose(to_numpy(copy(x)), to_numpy(sparse(x)), atol=1e-6)


def test_a_plain_layer_s_saved_variables_load():
    plain = _built(lambda: keras.layers.Dense(4), (None, 6))
    store = {}
    plain.save_own_variables(store)
    assert sorted(store) == ["0", "1"]
    sparse = _built(lambda: keras_str.STRDense(4, threshold_init=-100.0), (None, 6))
    sparse.load_own_variables(store)
    np.testing.assert_array_equal(to_numpy(sparse.raw_kernel), to_numpy(plain.kernel))
    np.testing.assert_array_equal(to_numpy(sparse.bias), to_numpy(plain.bias))


def test_embedding_takes_weights_in_its_constructor():
    table = np.arange(21, dtype="float32").reshape(7, 3)
    layer = keras_str.STREmbedding(7, 3, weights=[table], threshold_init=-100.0)
    np.testing.assert_allclose(to_numpy(layer(np.array([[2]])))[0, 0], table[2])
    assert isinstance(layer.method, keras_str.STR)


def test_low_rank_factors_follow_the_loaded_kernel():
    plain = _built(lambda: keras.layers.Dense(4), (None, 6))
    sparse = _built(
        lambda: keras_str.STRDense(4, method=keras_str.LowRankSTR(threshold_init=-100.0)), (None, 6)
    )
    sparse.set_weights(plain.get_weights())
    np.testing.assert_allclose(to_numpy(sparse.kernel), to_numpy(plain.kernel), atol=1e-5)


def test_attention_takes_a_plain_attention_layer_s_weights():
    x = _inputs((None, 5, 6))
    plain = keras.layers.MultiHeadAttention(num_heads=2, key_dim=3)
    plain(x, x)
    sparse = keras_str.STRMultiHeadAttention(num_heads=2, key_dim=3, threshold_init=-100.0)
    sparse(x, x)
    assert len(sparse.weights) > len(plain.weights)
    sparse.set_weights(plain.get_weights())
    np.testing.assert_allclose(to_numpy(sparse(x, x)), to_numpy(plain(x, x)), atol=1e-5)


@pytest.mark.parametrize("name", ["SimpleRNN", "GRU", "LSTM"])
def test_recurrent_layers_take_the_plain_layer_s_weights(name):
    x = _inputs((None, 5, 3))
    plain = getattr(keras.layers, name)(4)
    plain(x)
    sparse = getattr(keras_str, "STR" + name)(4, threshold_init=-100.0)
    sparse(x)
    assert len(sparse.weights) > len(plain.weights)
    sparse.set_weights(plain.get_weights())
    np.testing.assert_allclose(to_numpy(sparse(x)), to_numpy(plain(x)), atol=1e-5)


@pytest.mark.parametrize("dtype", ["int8_from_float32", "int4_from_float32"])
def test_a_quantized_dtype_policy_is_refused(dtype):
    with pytest.raises(ValueError, match=f"strip the model first.*dtype='{dtype}'"):
        keras_str.STRDense(4, dtype=dtype)


def test_a_weight_of_the_wrong_shape_is_named():
    sparse = _built(lambda: keras_str.STRDense(4), (None, 6))
    with pytest.raises(ValueError, match=r"'str_dense.*\(5, 4\) value for its 'kernel' of shape \(6, 4\)"):
        sparse.set_weights([np.ones((5, 4)), np.zeros(4)])
    with pytest.raises(ValueError, match="expecting"):
        sparse.set_weights([np.ones((6, 4))])  # neither the plain nor the sparse count


def _cnn(seed):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((6, 6, 2)),
        keras.layers.Conv2D(4, 3, name="conv"),
        keras.layers.BatchNormalization(name="bn"),
        keras.layers.Flatten(),
        keras.layers.Dense(3, name="logits"),
    ])


def test_a_dense_model_s_weights_file_loads_into_its_sparse_twin(tmp_path):
    dense = _cnn(0)
    x = np.random.default_rng(1).normal(size=(2, 6, 6, 2)).astype("float32")
    dense.layers[1].moving_mean.assign(np.full((4,), 0.5, "float32"))  # a non-trainable too
    path = tmp_path / "dense.weights.h5"
    dense.save_weights(path)
    sparse = keras_str.sparsify(_cnn(1), threshold_init=-100.0, weight_decay=0.0)
    with pytest.raises(ValueError, match="expected"):
        sparse.load_weights(path)  # Keras looks for `str_conv2d`, the file holds `conv2d`
    keras_str.load_dense_weights(sparse, path)
    np.testing.assert_allclose(to_numpy(sparse(x)), to_numpy(dense(x)), atol=1e-5)
    other = tmp_path / "other.weights.h5"
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]).save_weights(other)
    with pytest.raises(ValueError, match="does not hold the weights of a dense model like"):
        keras_str.load_dense_weights(sparse, other)


def test_a_stripped_model_s_weights_file_loads_into_the_dense_network(tmp_path):
    x = np.random.default_rng(1).normal(size=(2, 6, 6, 2)).astype("float32")
    sparse = keras_str.sparsify(_cnn(0), threshold_init=-2.0, weight_decay=0.0)
    sparse.layers[1].moving_mean.assign(np.full((4,), 0.5, "float32"))
    path = tmp_path / "stripped.weights.h5"
    keras_str.strip(sparse, shrink=False).save_weights(path)
    dense = _cnn(1)
    dense.load_weights(path)
    np.testing.assert_allclose(to_numpy(dense(x)), to_numpy(sparse(x)), atol=1e-5)
    kernel = to_numpy(dense.layers[0].kernel)
    assert 0.0 < np.mean(kernel == 0.0) < 1.0  # the zeros came along
    np.testing.assert_array_equal(kernel == 0.0, to_numpy(sparse.layers[0].kernel) == 0.0)
