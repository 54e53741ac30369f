"""Export and LiteRT for models beyond one float input: token ids, several
inputs, mixed precision, recurrent layers, TFLite-style representative data,
and `predict_tflite`'s input checks (issue 10, item 4)."""

import keras
import numpy as np
import pytest

import keras_str
from keras_str.core.layer_walk import iter_layers
from keras_str.transforms.strip import as_float32
from tests.backend_utils import to_numpy

VOCABULARY = 50


def token_classifier():
    """Token ids -> Embedding -> average pooling -> Dense, sparse."""
    inputs = keras.Input((16,), dtype="int32")
    x = keras.layers.Embedding(
        VOCABULARY,
        8,
        embeddings_initializer=keras.initializers.RandomUniform(-1.0, 1.0),
    )(inputs)
    x = keras.layers.GlobalAveragePooling1D()(x)
    x = keras_str.STRDense(32, activation="relu")(x)
    outputs = keras_str.STRDense(4)(x)
    return keras.Model(inputs, outputs)


def token_ids(n=128, seed=0):
    return np.random.default_rng(seed).integers(0, VOCABULARY, size=(n, 16))


def interpreter_inputs(path):
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_path=str(path)).get_input_details()


@pytest.mark.tensorflow
def test_int8_embedding_model_calibrates_on_integer_token_ids(tmp_path):
    model = token_classifier()
    ids = token_ids()
    path = tmp_path / "tokens.tflite"
    keras_str.export_tflite(model, path, precision="int8", representative_data=ids)
    (detail,) = interpreter_inputs(path)
    assert np.dtype(detail["dtype"]) == np.int32
    expected = to_numpy(model(ids))
    actual = keras_str.predict_tflite(path, ids)
    assert actual.shape == expected.shape
    # Within the calibrated ranges: a few int8 steps.
    scale = np.max(np.abs(expected))
    assert np.max(np.abs(actual - expected)) <= 0.05 * scale
    unseen = token_ids(256, seed=1)
    expected = to_numpy(model(unseen))
    actual = keras_str.predict_tflite(path, unseen)
    assert np.mean(actual.argmax(1) == expected.argmax(1)) >= 0.9


@pytest.mark.tensorflow
def test_float32_export_checks_integer_inputs_with_valid_ids(tmp_path):
    # Without representative data the file is checked on random inputs:
    # ids inside every Embedding's vocabulary, not floats cast to 0.
    from keras_str.export.inputs import input_specs
    from keras_str.export.inputs import inputs_to_check

    model = token_classifier()
    ids = inputs_to_check(model, None, input_specs(model))
    assert ids.dtype == np.int32 and ids.shape == (8, 16)
    assert ids.min() >= 0 and ids.max() < VOCABULARY and len(np.unique(ids)) > 2
    path = tmp_path / "tokens.tflite"
    report = keras_str.export_tflite(model, path)
    assert report.max_difference <= 1e-4
    ids = token_ids(40, seed=1)
    np.testing.assert_allclose(
        keras_str.predict_tflite(path, ids),
        to_numpy(model(ids)),
        atol=1e-4,
    )


def two_input_model():
    """Token ids and float features in, two heads out (functional)."""
    features = keras.Input((3,), name="features")
    tokens = keras.Input((16,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(VOCABULARY, 8)(tokens)
    x = keras.layers.GlobalAveragePooling1D()(x)
    x = keras.layers.Concatenate()([x, features])
    x = keras_str.STRDense(16, activation="relu")(x)
    return keras.Model(
        [features, tokens], [keras.layers.Dense(4)(x), keras.layers.Dense(2)(x)]
    )


@pytest.mark.tensorflow
def test_several_inputs_and_outputs_are_matched_by_name(tmp_path):
    # The .tflite orders its inputs and outputs its own way (here: tokens
    # first, the second head first); data is matched by input name (also
    # after strip rebuilt the model) and outputs come back in the Keras
    # model's order.
    model = two_input_model()
    rng = np.random.default_rng(0)
    data = {
        "features": rng.normal(size=(64, 3)).astype("float32"),
        "tokens": token_ids(64),
    }
    expected = [to_numpy(y) for y in model(data)]
    import tensorflow as tf

    for name, precision, representative_data in [
        ("float32", "float32", None),
        ("list", "int8", [data["features"], data["tokens"]]),  # inputs order
        ("dataset", "int8", tf.data.Dataset.from_tensor_slices(data).batch(16)),
    ]:
        path = tmp_path / f"{name}.tflite"
        keras_str.export_tflite(
            model,
            path,
            precision=precision,
            representative_data=representative_data,
        )
        actual = keras_str.predict_tflite(path, data, batch_size=16)
        assert [a.shape for a in actual] == [e.shape for e in expected]
        tolerance = 1e-4 if precision == "float32" else 0.05
        for a, e in zip(actual, expected):
            assert np.max(np.abs(a - e)) <= tolerance * max(1.0, np.max(np.abs(e)))
    with pytest.raises(ValueError, match="dict keyed by input name"):
        keras_str.predict_tflite(path, [data["features"], data["tokens"]])
    with pytest.raises(ValueError, match="'features'.*'tokens'"):
        keras_str.predict_tflite(path, {"features": data["features"]})


@pytest.mark.tensorflow
def test_tflite_style_representative_dataset_is_accepted(tmp_path):
    model = token_classifier()
    ids = token_ids(64).astype("int32")
    reference = tmp_path / "array.tflite"
    keras_str.export_tflite(
        model, reference, precision="int8", representative_data=ids
    )

    def representative_dataset():
        # Exactly what `converter.representative_dataset` takes.
        for i in range(len(ids)):
            yield [ids[i : i + 1]]

    import tensorflow as tf

    for name, data in [
        ("callable", representative_dataset),
        ("dataset", tf.data.Dataset.from_tensor_slices((ids, ids[:, 0])).batch(8)),
    ]:
        path = tmp_path / f"{name}.tflite"
        keras_str.export_tflite(
            model, path, precision="int8", representative_data=data
        )
        # The same calibration data: the same file.
        assert path.read_bytes() == reference.read_bytes(), name


@pytest.mark.tensorflow
def test_mixed_float16_model_exports_at_every_precision(tmp_path):
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = keras.Sequential(
            [
                keras.Input((12, 12, 1)),
                keras_str.STRConv2D(8, 3, activation="relu"),
                keras.layers.MaxPooling2D(),
                keras.layers.Flatten(),
                keras_str.STRDense(32, activation="relu"),
                keras_str.STRDense(4),
                keras.layers.Activation("linear", dtype="float32"),
            ]
        )
        x = np.random.default_rng(0).uniform(size=(64, 12, 12, 1)).astype("float32")
        model.compile(optimizer="sgd", loss="mse")
        model.fit(x, np.zeros((64, 4)), epochs=1, verbose=0)
        expected = to_numpy(model(x))
        for precision, tolerance in [
            ("float32", 1e-2),
            ("float16", 1e-2),
            ("int8", 5e-2),
        ]:
            path = tmp_path / f"{precision}.tflite"
            keras_str.export_tflite(
                model, path, precision=precision, representative_data=x
            )
            actual = keras_str.predict_tflite(path, x)
            relative = np.max(np.abs(actual - expected)) / np.max(np.abs(expected))
            assert relative <= tolerance, precision
        # The user's model is left as it was.
        assert model.layers[0].dtype_policy.name == "mixed_float16"
    finally:
        keras.config.set_dtype_policy("float32")


def test_as_float32_rebuilds_half_precision_layers_only():
    keras.config.set_dtype_policy("mixed_float16")
    try:
        inputs = keras.Input((5, 3))
        x = keras.layers.Bidirectional(keras.layers.LSTM(4))(inputs)
        x = keras.layers.Dense(2)(x)
        outputs = keras.layers.Activation("linear", dtype="float32")(x)
        model = keras.Model(inputs, outputs)
    finally:
        keras.config.set_dtype_policy("float32")
    rebuilt = as_float32(model)
    policies = {
        layer.name: layer.dtype_policy.name
        for layer in iter_layers(rebuilt)
        if not isinstance(layer, keras.layers.InputLayer)
    }
    assert set(policies.values()) == {"float32"}, policies
    x = np.random.default_rng(0).normal(size=(4, 5, 3)).astype("float32")
    np.testing.assert_allclose(
        to_numpy(rebuilt(x)),
        to_numpy(model(x)),
        atol=2e-2,
    )
    assert as_float32(rebuilt) is rebuilt


@pytest.fixture(scope="module")
def dense_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("predict") / "dense.tflite"
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    keras_str.export_tflite(model, path)
    return path


@pytest.mark.tensorflow
@pytest.mark.parametrize(
    "shape, dtype, message",
    [
        ((3, 16), "float32", r"shape \(N, 8\) float32.*shape \(3, 16\)"),
        ((3, 8, 1), "float32", r"\(N, 8\).*shape \(3, 8, 1\)"),
        ((8,), "float32", r"\(N, 8\).*shape \(8,\)"),
    ],
)
def test_predict_tflite_rejects_wrong_shapes(dense_file, shape, dtype, message):
    with pytest.raises(ValueError, match=r"`inputs`.*" + message):
        keras_str.predict_tflite(dense_file, np.zeros(shape, dtype))


@pytest.mark.tensorflow
def test_predict_tflite_checks_dtype_kind(dense_file, tmp_path):
    # Integers into a float input are fine, as in Keras.
    assert keras_str.predict_tflite(dense_file, np.ones((3, 8), "int64")).shape == (3, 4)
    assert keras_str.predict_tflite(dense_file, [np.ones((3, 8))]).shape == (3, 4)
    path = tmp_path / "tokens.tflite"
    keras_str.export_tflite(token_classifier(), path)
    with pytest.raises(ValueError, match=r"`inputs`.*int32.*float32"):
        keras_str.predict_tflite(path, token_ids(3).astype("float32"))
    assert keras_str.predict_tflite(path, token_ids(3)).shape == (3, 4)


def recurrent_classifier(layer, batch_size=None):
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((10, 4), batch_size=batch_size),
            layer,
            keras_str.STRDense(3),
        ]
    )


def sequences(n=24):
    return np.random.default_rng(0).normal(size=(n, 10, 4)).astype("float32")


@pytest.mark.tensorflow
@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_lstm_classifier_exports_unrolled(tmp_path, precision):
    # Rolled, this converter cannot lower Keras 3's LSTM loop at a dynamic
    # batch size (tf.TensorListReserve); export converts it unrolled.
    model = recurrent_classifier(keras.layers.LSTM(16))
    x = sequences()
    path = tmp_path / "lstm.tflite"
    report = keras_str.export_tflite(
        model, path, precision=precision, representative_data=x
    )
    assert "WHILE" not in report.op_counts
    expected = to_numpy(model(x))
    actual = keras_str.predict_tflite(path, x)
    tolerance = 1e-4 if precision == "float32" else 0.05
    assert np.max(np.abs(actual - expected)) <= tolerance * max(
        1.0, np.max(np.abs(expected))
    )
    assert not model.layers[0].unroll  # the user's layer is unchanged


@pytest.mark.tensorflow
def test_fixed_batch_size_is_checked_and_run_at_that_batch_size(tmp_path):
    # A model built for batch 1: the parity check and predict_tflite feed
    # it one example at a time.
    model = recurrent_classifier(keras.layers.GRU(8), batch_size=1)
    path = tmp_path / "gru.tflite"
    keras_str.export_tflite(model, path)
    (detail,) = interpreter_inputs(path)
    assert list(detail["shape_signature"]) == [1, 10, 4]
    x = sequences(5)
    expected = model.predict(x, batch_size=1, verbose=0)
    actual = keras_str.predict_tflite(path, x, batch_size=4)
    np.testing.assert_allclose(actual, expected, atol=1e-4)


@pytest.mark.tensorflow
def test_recurrent_layer_without_fixed_timesteps_is_named(tmp_path):
    model = keras.Sequential([keras.Input((None, 4)), keras.layers.LSTM(3)])
    with pytest.raises(ValueError, match=r"'lstm' \(LSTM\).*fixed"):
        keras_str.export_tflite(model, tmp_path / "m.tflite")
    assert list(tmp_path.iterdir()) == []
