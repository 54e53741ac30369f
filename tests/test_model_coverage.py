"""Every model users bring: attention, embeddings, separable / transposed / 3-D convs, RNNs."""

import warnings

import keras
import numpy as np
import pytest

import keras_str
from keras_str.core.layer_walk import iter_layers
from keras_str.layers.base import is_sparse_layer
from tests.backend_utils import to_numpy


def transformer_classifier(vocab=50, length=12, width=16):
    tokens = keras.Input((length,), dtype="int32")
    x = keras.layers.Embedding(vocab, width, name="tokens")(tokens)
    attended = keras.layers.MultiHeadAttention(2, 8, name="attention")(x, x)
    x = keras.layers.LayerNormalization()(x + attended)
    x = keras.layers.Dense(32, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(tokens, keras.layers.Dense(3, name="logits")(x))


def conv_zoo_model():
    images = keras.Input((12, 12, 3))
    x = keras.layers.SeparableConv2D(
        8, 3, strides=2, padding="same", depth_multiplier=2, activation="relu",
        name="separable",
    )(images)
    x = keras.layers.Conv2DTranspose(4, 3, strides=2, padding="same", name="up")(x)
    x = keras.layers.Reshape((12, 12, 4, 1))(x)
    x = keras.layers.Conv3D(2, 3, padding="same", name="conv3d")(x)
    x = keras.layers.Reshape((12 * 12, 8))(x)
    x = keras.layers.SeparableConv1D(4, 3, name="separable1d")(x)
    x = keras.layers.Conv1DTranspose(4, 3, name="up1d")(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(images, keras.layers.Dense(3, name="logits")(x))


def recurrent_model():
    tokens = keras.Input((9,), dtype="int32")
    x = keras.layers.Embedding(40, 8, name="tokens")(tokens)
    x = keras.layers.Bidirectional(keras.layers.LSTM(6, return_sequences=True), name="bi")(x)
    x = keras.layers.TimeDistributed(keras.layers.Dense(5), name="per_step")(x)
    x = keras.layers.GRU(6, return_sequences=True, name="gru")(x)
    x = keras.layers.SimpleRNN(4, name="simple")(x)
    return keras.Model(tokens, keras.layers.Dense(3, name="logits")(x))


MODELS = {
    "recurrent": (
        recurrent_model,
        lambda rng: rng.integers(0, 40, size=(8, 9)).astype("int32"),
    ),
    "transformer": (
        transformer_classifier,
        lambda rng: rng.integers(0, 50, size=(8, 12)).astype("int32"),
    ),
    "conv_zoo": (
        conv_zoo_model,
        lambda rng: rng.normal(size=(8, 12, 12, 3)).astype("float32"),
    ),
}


def sparse_classes(model):
    return sorted({type(l).__name__ for l in iter_layers(model) if is_sparse_layer(l)})


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_kernel_becomes_sparse_and_outputs_are_kept(name):
    build, data = MODELS[name]
    keras.utils.set_random_seed(0)
    dense = build()
    x = data(np.random.default_rng(0))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # nothing is left dense
        sparse = keras_str.sparsify(dense, threshold_init=-100.0, weight_decay=1e-4)
    report = keras_str.sparsity_report(sparse)
    assert all(row.note == "" for row in report.rows), report.table()
    kernel_names = (
        "kernel", "recurrent_kernel", "embeddings", "depthwise_kernel", "pointwise_kernel")
    assert report.totals["params"] == sum(
        int(np.prod(w.shape)) for w in dense.weights if w.name in kernel_names
    )
    np.testing.assert_allclose(forward(sparse, x), forward(dense, x), atol=1e-5)


def forward(model, x):
    # One compiled call on JAX, where each eager op shape compiles on its own.
    if keras.backend.backend() == "jax":
        return model.predict(x, batch_size=len(x), verbose=0)
    return to_numpy(model(x))


def models_by_default(default):
    # On JAX every eager op shape compiles (15-20 s a model here): one model
    # trains there by default, the others under `slow`. On TensorFlow XLA
    # takes ~30 s to compile the recurrent model's step: JAX and torch run it.
    backend = keras.backend.backend()
    for name in sorted(MODELS):
        slow = (backend == "jax" and name != default) or (
            backend == "tensorflow" and name == "recurrent")
        yield pytest.param(name, marks=(pytest.mark.slow,) if slow else ())


@pytest.mark.parametrize("name", list(models_by_default("recurrent")))
def test_train_strip_and_reload(name, tmp_path):
    build, data = MODELS[name]
    keras.utils.set_random_seed(1)
    rng = np.random.default_rng(1)
    x, y = data(rng), rng.integers(0, 3, size=(8,))
    method = keras_str.ST3(0.7, keras_str.ConstantSchedule())
    sparse = keras_str.sparsify(build(), method=method)
    sparse.compile(
        keras.optimizers.Adam(1e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        # torch.compile costs minutes here; the in-step tests cover it.
        jit_compile=keras.backend.backend() != "torch",
    )
    sparse.fit(x, y, batch_size=4, epochs=1, verbose=0)
    report = keras_str.sparsity_report(sparse)
    assert report.totals["sparsity"] == pytest.approx(0.7, abs=0.02)
    expected = to_numpy(sparse(x))

    plain = keras_str.strip(sparse)
    assert not any(is_sparse_layer(l) for l in iter_layers(plain))
    np.testing.assert_allclose(to_numpy(plain(x)), expected, atol=1e-5)
    assert keras_str.sparsity_report(plain).totals["nonzeros"] == report.totals["nonzeros"]

    path = str(tmp_path / "model.keras")
    sparse.save(path)
    reloaded = keras_str.load_model(path)
    assert sparse_classes(reloaded) == sparse_classes(sparse)
    np.testing.assert_allclose(to_numpy(reloaded(x)), expected, atol=1e-6)
    # One method again (Bidirectional rebuilds its forward layer on load).
    assert len({id(l.method) for l in iter_layers(reloaded) if is_sparse_layer(l)}) == 1


def test_attention_projections_share_the_model_method():
    sparse = keras_str.sparsify(
        transformer_classifier(),
        method=keras_str.GMP(0.5, keras_str.ConstantSchedule(), frequency=1),
    )
    attention = sparse.get_layer("attention")
    assert isinstance(attention, keras_str.STRMultiHeadAttention)
    methods = {id(l.method) for l in iter_layers(sparse) if is_sparse_layer(l)}
    assert len(methods) == 1
    assert [l.name for l in attention.sparse_sublayers()] == [
        "query", "key", "value", "attention_output"]


def test_separable_conv_becomes_depthwise_then_pointwise():
    sparse = keras_str.sparsify(conv_zoo_model(), threshold_init=-100.0, weight_decay=1e-4)
    pair = sparse.get_layer("separable")
    assert [type(l) for l in pair.layers] == [
        keras_str.STRDepthwiseConv2D, keras_str.STRConv2D]
    assert pair.layers[1].activation is keras.activations.relu


def generic_rnn_classifier():
    # `keras.layers.RNN` around a cell: no sparse version (only LSTM, GRU
    # and SimpleRNN layers have one).
    inputs = keras.Input((6, 4))
    x = keras.layers.RNN(keras.layers.LSTMCell(32), name="rnn")(inputs)
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(x))


def test_layers_without_sparse_version_are_named_and_counted():
    with pytest.warns(UserWarning, match=r"lstm_cell \(LSTMCell\): 9[0-9]\.[0-9] %"):
        sparse = keras_str.sparsify(generic_rnn_classifier(), weight_decay=1e-4)
    report = keras_str.sparsity_report(sparse)
    rows = {row.name: row for row in report.rows}
    assert rows["lstm_cell"].note == "no sparse version"
    assert rows["lstm_cell"].params == 4 * 32 * (4 + 32)
    assert rows["logits"].note == ""
    # The totals cover the dense matrices too, and the table says where they are.
    assert report.totals["params"] == rows["lstm_cell"].params + 32 * 3
    assert report.totals["dense_share"] > 0.9
    assert "no sparse version" in report.table()
    assert "all parameters" in report.table()


def test_kept_dense_layers_are_marked():
    sparse = keras_str.sparsify(
        transformer_classifier(), keep_dense=["logits"], weight_decay=1e-4)
    rows = {row.name: row for row in keras_str.sparsity_report(sparse).rows}
    assert rows["logits"].note == "kept dense"
    assert rows["attention/query"].note == ""


def test_embedding_sigma_scale_is_its_initializer_std():
    layer = keras_str.STREmbedding(100, 8)
    layer.build((None, 4))
    # Keras's default: uniform in [-0.05, 0.05].
    assert layer.kernel_spec.scale(layer) == pytest.approx(0.1 / np.sqrt(12.0))


def test_einsum_fans_follow_keras_initializer():
    layer = keras_str.STREinsumDense("abc,cde->abde", (None, 2, 8))
    layer.build((None, 5, 16))
    assert layer.kernel_spec.fans(layer) == (16, 16)
    assert layer.kernel_spec.channel_shape(layer) == (2, 8)


def two_scale_mlp():
    inputs = keras.Input((32,))
    x = keras.layers.Dense(
        64, kernel_initializer=keras.initializers.RandomNormal(stddev=1.0), name="wide")(inputs)
    x = keras.layers.Dense(
        8, kernel_initializer=keras.initializers.RandomNormal(stddev=1e-3), name="tiny")(x)
    return keras.Model(inputs, x)


def test_a_method_that_would_empty_a_layer_warns_by_name():
    keras.utils.set_random_seed(0)
    schedule = keras_str.PolynomialSchedule(0, 100)
    with pytest.warns(UserWarning, match=r"every weight of 1 of its 2 layers.*'tiny'"):
        keras_str.sparsify(two_scale_mlp(), method=keras_str.ST3(0.5, schedule))
    # Relative to each layer's initialisation scale, neither is emptied.
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        keras_str.sparsify(two_scale_mlp(), method=keras_str.ST3(0.5, schedule, scope="sigma"))


def test_sigma_is_the_std_of_each_layers_initializer():
    he = keras_str.STRConv2D(16, 3, kernel_initializer="he_normal")
    he.build((None, 8, 8, 4))
    assert he.kernel_spec.scale(he) == pytest.approx(np.sqrt(2.0 / (9 * 4)))
    glorot = keras_str.STRDense(8)
    glorot.build((None, 24))
    assert glorot.kernel_spec.scale(glorot) == pytest.approx(np.sqrt(2.0 / (24 + 8)))
    depthwise = keras_str.STRDepthwiseConv2D(3, depthwise_initializer="he_normal")
    depthwise.build((None, 8, 8, 32))
    # Keras's fans for a (3, 3, 32, 1) kernel: fan_in 288.
    assert depthwise.kernel_spec.scale(depthwise) == pytest.approx(np.sqrt(2.0 / 288))


def test_strip_warns_about_an_all_zero_kernel():
    model = keras.Sequential([
        keras.Input((4,)),
        keras_str.STRDense(3, threshold_init=100.0, name="emptied"),
        keras_str.STRDense(2, threshold_init=-100.0),
    ])
    with pytest.warns(UserWarning, match=r"\['emptied'\] have no nonzero weights"):
        keras_str.strip(model)
