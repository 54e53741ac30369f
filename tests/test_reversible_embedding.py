"""Tied embeddings: one sparse table for the token lookup and the logits projection."""

import keras
import numpy as np
import pytest

import keras_str
from keras_str.layers.base import is_sparse_layer
from tests import numpy_reference
from tests.backend_utils import to_numpy

VOCABULARY = 20
HIDDEN = 8


def tied_lm(embedding_class=keras.layers.ReversibleEmbedding):
    """Token ids -> tied embedding -> Dense -> logits through the same table."""
    inputs = keras.Input((5,), dtype="int32")
    embedding = embedding_class(VOCABULARY, HIDDEN, name="token_embedding")
    hidden = keras.layers.Dense(HIDDEN, activation="tanh", name="mixer")(embedding(inputs))
    logits = embedding(hidden, reverse=True)
    return keras.Model(inputs, logits)


def token_data(n=48, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, VOCABULARY, (n, 5)).astype("int32")
    return x, x


def test_both_directions_use_the_thresholded_table():
    layer = keras_str.STRReversibleEmbedding(VOCABULARY, HIDDEN, threshold_init=-2.0)
    layer.build()
    rng = np.random.default_rng(0)
    layer.raw_kernel.assign(rng.normal(scale=0.2, size=(VOCABULARY, HIDDEN)).astype("float32"))
    table = numpy_reference.soft_threshold(
        to_numpy(layer.raw_kernel), 1 / (1 + np.exp(2.0))
    )
    assert 0 < np.mean(table == 0) < 1

    ids = np.array([[1, 2, 3]])
    np.testing.assert_allclose(to_numpy(layer(ids)), table[ids], atol=1e-6)
    hidden = rng.normal(size=(1, 3, HIDDEN)).astype("float32")
    np.testing.assert_allclose(
        to_numpy(layer(hidden, reverse=True)), hidden @ table.T, rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("embedding_class", ["keras", "keras_hub"])
def test_tied_table_trains_sparse_and_strips_exactly(embedding_class, tmp_path):
    if embedding_class == "keras_hub":
        keras_hub = pytest.importorskip("keras_hub")
        embedding_class = keras_hub.layers.ReversibleEmbedding
    else:
        embedding_class = keras.layers.ReversibleEmbedding
    keras.utils.set_random_seed(0)
    steps = 6
    model = keras_str.sparsify(
        tied_lm(embedding_class),
        method=keras_str.ST3(0.5, keras_str.PolynomialSchedule(0, steps - 2)),
    )
    embedding = model.get_layer("token_embedding")
    assert isinstance(embedding, keras_str.STRReversibleEmbedding)
    model.compile(
        keras.optimizers.Adam(1e-2),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    x, y = token_data(n=8 * steps)
    model.fit(x, y, batch_size=8, verbose=0)

    # Called twice a step (lookup, logits), counted once.
    assert int(to_numpy(embedding.sparsity_step)) == steps
    table = to_numpy(embedding.thresholded_kernel())
    assert np.mean(table == 0) > 0.3

    path = str(tmp_path / "sparse.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_allclose(to_numpy(reloaded(x)), to_numpy(model(x)), atol=1e-6)

    plain = keras_str.strip(model)
    stripped = plain.get_layer("token_embedding")
    assert type(stripped) is keras.layers.ReversibleEmbedding
    assert not any(is_sparse_layer(layer) for layer in plain.layers)
    np.testing.assert_array_equal(to_numpy(stripped.embeddings), table)
    np.testing.assert_allclose(to_numpy(plain(x)), to_numpy(model(x)), atol=1e-5)


def test_untied_output_projection_is_a_sparse_kernel_of_its_own(tmp_path):
    method = keras_str.ST3(0.5, keras_str.ConstantSchedule())
    layer = keras_str.STRReversibleEmbedding(VOCABULARY, HIDDEN, tie_weights=False, method=method)
    layer.build()
    projection = layer.reverse_projection
    assert isinstance(projection, keras_str.layers.STRKernelWeight)
    assert projection.raw_kernel.path == f"{layer.path}/reverse_embeddings"
    # Saved once, by its sublayer.
    assert sum(v is projection.raw_kernel for v in layer.weights) == 1

    hidden = np.random.default_rng(0).normal(size=(1, 3, HIDDEN)).astype("float32")
    layer(np.array([[1, 2, 3]]), training=True)
    reverse = to_numpy(layer.reverse_embeddings)
    assert np.mean(reverse == 0) == pytest.approx(0.5, abs=0.05)
    np.testing.assert_allclose(
        to_numpy(layer(hidden, reverse=True)), hidden @ reverse, rtol=1e-5, atol=1e-6
    )
    assert int(to_numpy(projection.sparsity_step)) == 1

    restored = keras_str.STRReversibleEmbedding.from_config(layer.get_config())
    assert restored.tie_weights is False

    inputs = keras.Input((3,), dtype="int32")
    model = keras.Model(inputs, layer(layer(inputs), reverse=True))
    path = str(tmp_path / "untied.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    ids = np.array([[4, 5, 6]])
    np.testing.assert_allclose(to_numpy(reloaded(ids)), to_numpy(model(ids)), atol=1e-6)
    plain = keras_str.strip(model)
    np.testing.assert_array_equal(
        to_numpy(plain.layers[1].reverse_embeddings), reverse
    )
    np.testing.assert_allclose(to_numpy(plain(ids)), to_numpy(model(ids)), atol=1e-5)
