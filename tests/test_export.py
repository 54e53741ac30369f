import os

import keras
import numpy as np
import pytest

import keras_str
from keras_str.export.flatbuffer import inspect_tflite
from tests.backend_utils import to_numpy

pytestmark = pytest.mark.tensorflow


def sparse_cnn(sparsity=0.8):
    """A small STR CNN whose thresholds zero `sparsity` of each kernel."""
    model = keras.Sequential(
        [
            keras.Input((12, 12, 1)),
            keras_str.STRConv2D(8, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras_str.STRConv2D(16, 3, activation="relu"),
            keras.layers.Flatten(),
            keras_str.STRDense(32, activation="relu"),
            keras_str.STRDense(4),
        ]
    )
    for layer in model.layers:
        if isinstance(layer, keras_str.SparseKernelLayer):
            magnitudes = np.abs(to_numpy(layer._kernel))
            threshold = np.quantile(magnitudes, sparsity)
            layer.threshold_param.assign(np.log(threshold / (1 - threshold)))
    return model


def inputs(n=64, seed=0):
    return np.random.default_rng(seed).uniform(size=(n, 12, 12, 1)).astype("float32")


def test_float32_export_is_sparse_and_matches_keras(tmp_path):
    model = sparse_cnn()
    assert keras_str.sparsity_report(model).totals["sparsity"] > 0.75
    path = tmp_path / "model.tflite"
    report = keras_str.export_tflite(model, path)
    assert path.is_file() and os.path.getsize(path) == report.size_bytes
    assert report.size_bytes < 0.6 * report.dense_size_bytes
    assert len(report.sparse_tensors) == 4
    assert all(t.encoding == "element-wise" for t in report.sparse_tensors)
    assert report.densify_ops == 4
    assert "DENSIFY" in report.runtime_note and "densely" in report.runtime_note
    x = inputs()
    expected = to_numpy(model(x))
    actual = keras_str.predict_tflite(path, x, batch_size=16)
    assert np.max(np.abs(actual - expected)) <= 1e-4
    # Stripped first: the plain model gives the same file.
    plain_path = tmp_path / "plain.tflite"
    plain_report = keras_str.export_tflite(keras_str.strip(model), plain_path)
    assert plain_report.size_bytes == report.size_bytes
    assert list(sorted(p.name for p in tmp_path.iterdir())) == ["model.tflite", "plain.tflite"]


def test_float16_export_matches_keras(tmp_path):
    model = sparse_cnn()
    path = tmp_path / "model16.tflite"
    report = keras_str.export_tflite(model, path, precision="float16")
    float32 = keras_str.export_tflite(model, tmp_path / "model32.tflite")
    assert report.size_bytes < float32.size_bytes
    assert {t.dtype for t in report.sparse_tensors} == {"float16"}
    x = inputs()
    expected = to_numpy(model(x))
    actual = keras_str.predict_tflite(path, x)
    relative = np.max(np.abs(actual - expected)) / np.max(np.abs(expected))
    assert relative <= 1e-2


def test_inspection_counts_match_the_stripped_kernels(tmp_path):
    model = sparse_cnn()
    path = tmp_path / "m.tflite"
    keras_str.export_tflite(model, path)
    inspection = inspect_tflite(path.read_bytes())
    rows = keras_str.sparsity_report(model).rows
    densities = sorted(round(r.nonzeros / r.params, 4) for r in rows)
    assert sorted(round(t.density, 4) for t in inspection.sparse_tensors) == densities


def test_int8_needs_representative_data(tmp_path):
    with pytest.raises(ValueError, match="representative_data=None"):
        keras_str.export_tflite(sparse_cnn(), tmp_path / "m.tflite", precision="int8")
    assert list(tmp_path.iterdir()) == []


def test_int8_export_loads_keeps_conv_weights_sparse_and_agrees(tmp_path):
    model = sparse_cnn()
    path = tmp_path / "m.tflite"
    x = inputs(128)
    report = keras_str.export_tflite(
        model, path, precision="int8", representative_data=x[:64]
    )
    if "(every tensor)" in report.stored_dense:
        # This small model's sparse int8 file (loadable sparse convolutions,
        # FullyConnected weights stored dense) is no smaller than the plain
        # one, so the plain file is written.
        assert report.size_bytes == report.dense_size_bytes
        assert not report.sparse_tensors
    else:
        # Sparse int8 convolutions load; FullyConnected ones are stored
        # dense, each with its reason: XNNPACK cannot prepare them here.
        consumers = {t.consumer for t in report.sparse_tensors}
        assert consumers == {"CONV_2D"}
        assert len(report.stored_dense) == 2
        assert all("FULLY_CONNECTED" in r for r in report.stored_dense.values())
    assert not report.xnnpack.eligible
    expected = np.argmax(to_numpy(model(x)), axis=1)
    actual = np.argmax(keras_str.predict_tflite(path, x), axis=1)
    assert np.mean(actual == expected) >= 0.9


def block_sparse_mlp(block, sparsity=0.9, seed=0):
    """An MLP whose zeros come in blocks of `block` input features."""
    rng = np.random.default_rng(seed)
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10),
        ]
    )
    for layer in model.layers:
        kernel = to_numpy(layer.kernel)
        mask = rng.random((kernel.shape[0] // block, kernel.shape[1])) < sparsity
        kernel[np.repeat(mask, block, axis=0)] = 0.0
        layer.kernel.assign(kernel)
    return model


def test_block_sparse_fully_connected_stays_sparse_at_run_time(tmp_path):
    x = np.random.default_rng(0).normal(size=(32, 64)).astype("float32")
    model = block_sparse_mlp(16)
    f32 = keras_str.export_tflite(model, tmp_path / "f32.tflite")
    assert f32.densify_ops == 0
    assert {t.encoding for t in f32.sparse_tensors} == {"blocks 4"}
    assert "stay sparse at run time" in f32.runtime_note
    np.testing.assert_allclose(
        keras_str.predict_tflite(tmp_path / "f32.tflite", x),
        to_numpy(model(x)),
        atol=1e-4,
    )
    int8 = keras_str.export_tflite(
        model, tmp_path / "int8.tflite", precision="int8", representative_data=x
    )
    assert int8.densify_ops == 0
    assert {t.encoding for t in int8.sparse_tensors} == {"blocks 16"}
    assert int8.size_bytes < 0.5 * int8.dense_size_bytes


def test_dynamic_int8_is_never_wrong(tmp_path):
    # Here, sparse dynamic-range weights either fail to load (densified
    # conv/FC) or, for 1x16 FC blocks, compute wrong outputs: export must
    # repair or refuse, never write a file that disagrees with Keras.
    x = np.random.default_rng(0).normal(size=(32, 64)).astype("float32")
    model = block_sparse_mlp(16)
    path = tmp_path / "dyn.tflite"
    report = keras_str.export_tflite(model, path, precision="dynamic_int8")
    expected = to_numpy(model(x))
    actual = keras_str.predict_tflite(path, x)
    assert np.max(np.abs(actual - expected)) < 0.05 * np.max(np.abs(expected))
    if report.stored_dense:
        assert not report.sparse_tensors  # here: the 1x16 blocks compute wrong
        assert "plain, loadable dynamic_int8 file" in report.runtime_note
        assert all(
            "away from the non-sparse file" in r or "not smaller than the plain" in r
            for r in report.stored_dense.values()
        )


def test_unsupported_op_is_a_clear_error(tmp_path):
    inputs_ = keras.Input((4,))
    outputs = keras.layers.Lambda(
        lambda t: keras.ops.real(keras.ops.fft((t, t))[0]), name="spectrum"
    )(inputs_)
    # The error names the layer and the op, and says what to do.
    with pytest.raises(
        ValueError,
        match=r"converter cannot handle layer 'spectrum' \(Lambda\) "
        r"\(ops tf\.Complex, tf\.FFT.*Replace the layer",
    ):
        keras_str.export_tflite(keras.Model(inputs_, outputs), tmp_path / "m.tflite")
    assert list(tmp_path.iterdir()) == []


def test_report_json_carries_the_verdict(tmp_path):
    report = keras_str.export_tflite(sparse_cnn(), tmp_path / "m.tflite")
    data = report.to_dict()
    assert data["xnnpack_sparse_inference"]["eligible"] is False
    assert "first convolution" in data["xnnpack_sparse_inference"]["reasons"][0]
    assert data["max_difference_vs_non_sparse_file"] <= 1e-4
    assert data["size_ratio"] == pytest.approx(report.size_bytes / report.dense_size_bytes)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"precision": "int4"}, "precision='int4'"),
        ({"precision": None}, "precision=None"),
        ({"per_channel": False}, "per_channel=False"),
        ({"precision": "float16", "per_channel": False}, "int8 precisions only"),
        ({"per_channel": "yes"}, "per_channel='yes'"),
    ],
)
def test_bad_precision(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        keras_str.export_tflite(sparse_cnn(), tmp_path / "m.tflite", **kwargs)


def test_bad_paths(tmp_path):
    model = sparse_cnn()
    with pytest.raises(ValueError, match="tflite"):
        keras_str.export_tflite(model, tmp_path / "m.bin")
    with pytest.raises(ValueError, match="does not exist"):
        keras_str.export_tflite(model, tmp_path / "missing" / "m.tflite")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    with pytest.raises(ValueError, match="Cannot write"):
        keras_str.export_tflite(sparse_cnn(), folder / "m.tflite")


def test_bad_representative_data(tmp_path):
    with pytest.raises(ValueError, match="shape"):
        keras_str.export_tflite(
            sparse_cnn(),
            tmp_path / "m.tflite",
            precision="int8",
            representative_data=np.zeros((4, 10, 10, 1)),
        )
    assert list(tmp_path.iterdir()) == []


def test_a_sparse_file_is_never_larger_than_the_plain_one(tmp_path):
    # An unrolled LSTM's int8 graph: the sparse encoding's index arrays
    # outweigh the zeros saved (3.3x the plain file before this check).
    keras.utils.set_random_seed(0)
    tokens = keras.Input((12,), dtype="int32")
    x = keras_str.STREmbedding(50, 16, threshold_init=-3.0)(tokens)
    x = keras.layers.LSTM(16)(x)
    model = keras.Model(tokens, keras_str.STRDense(4, threshold_init=-1.5)(x))
    ids = np.random.default_rng(0).integers(0, 50, size=(32, 12)).astype("int32")
    path = str(tmp_path / "m.tflite")
    report = keras_str.export_tflite(
        model, path, precision="int8", representative_data=ids)
    assert report.size_bytes <= report.dense_size_bytes
    assert os.path.getsize(path) == report.size_bytes
    assert "(every tensor)" in report.stored_dense
    assert keras_str.predict_tflite(path, ids[:8]).shape == (8, 4)


def test_each_layer_says_what_the_runtime_does_with_its_zeros(tmp_path):
    # Blocks stay sparse; random zeros are densified (or stored dense).
    blocks = keras_str.export_tflite(block_sparse_mlp(16), tmp_path / "blocks.tflite")
    assert blocks.layer_runtime
    assert all("sparse FULLY_CONNECTED kernel (blocks 4)" in text
               for text in blocks.layer_runtime.values()), blocks.layer_runtime
    cnn = sparse_cnn(0.8)
    report = keras_str.export_tflite(cnn, tmp_path / "cnn.tflite")
    kernel_layers = [layer.name for layer in cnn.layers if layer.weights]
    assert list(report.layer_runtime) == kernel_layers
    assert not any("skipped" in text for text in report.layer_runtime.values())
    assert "per layer:" in report.summary()
    assert report.to_dict()["layer_runtime"] == report.layer_runtime


def test_channels_removed_by_strip_are_named_per_layer(tmp_path):
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(8, 3, activation="relu", name="conv"),
        keras.layers.Flatten(),
        keras.layers.Dense(32, activation="relu", name="fc"),
        keras.layers.Dense(4, name="out"),
    ])
    method = keras_str.StructuredSTR(
        "channel", target_sparsity=0.5, schedule=keras_str.PolynomialSchedule(0, 2))
    sparse = keras_str.sparsify(model, method=method, keep_dense=["out"])
    sparse.compile("adam", "mse")
    x = np.random.default_rng(0).normal(size=(16, 8, 8, 1)).astype("float32")
    sparse.fit(x, np.zeros((16, 4)), batch_size=4, verbose=0)
    report = keras_str.export_tflite(sparse, tmp_path / "shrunk.tflite")
    removed = [text for text in report.layer_runtime.values() if "removed by strip" in text]
    assert removed, report.layer_runtime
    np.testing.assert_allclose(
        keras_str.predict_tflite(tmp_path / "shrunk.tflite", x),
        to_numpy(sparse(x)), atol=1e-4)
