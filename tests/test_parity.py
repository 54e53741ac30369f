"""LiteRT predicts what Keras predicts, for a model trained on real Fashion-MNIST."""

import os

import keras
import numpy as np
import pytest

import keras_str
from examples import data
from examples.models import lenet_300_100

pytestmark = [
    pytest.mark.tensorflow,
    pytest.mark.skipif(
        not os.path.isdir(data.DEBIAN_FASHION_MNIST_DIR),
        reason="Debian's dataset-fashion-mnist is not installed",
    ),
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    keras.utils.set_random_seed(0)
    (x_train, y_train), (x_test, y_test) = data.load_debian_fashion_mnist()
    x_train = data.normalize_images(x_train[:20000])
    x_test = data.normalize_images(x_test)
    model = keras_str.sparsify(lenet_300_100(), threshold_init=-5.0, weight_decay=1e-2)
    model.compile(
        optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x_train, y_train[:20000], epochs=2, batch_size=128, verbose=0)
    return model, x_train, x_test, y_test, tmp_path_factory.mktemp("parity")


def test_trained_model_is_sparse_and_accurate(trained):
    model, _, x_test, y_test, _ = trained
    assert keras_str.sparsity_report(model).totals["sparsity"] > 0.5
    assert model.evaluate(x_test, y_test, verbose=0)[1] > 0.8


def test_float32_parity(trained):
    model, _, x_test, _, folder = trained
    path = folder / "f32.tflite"
    keras_str.export_tflite(model, path)
    expected = model.predict(x_test, batch_size=1000, verbose=0)
    assert np.max(np.abs(keras_str.predict_tflite(path, x_test) - expected)) <= 1e-4


def test_float16_parity(trained):
    model, _, x_test, _, folder = trained
    path = folder / "f16.tflite"
    keras_str.export_tflite(model, path, precision="float16")
    expected = model.predict(x_test, batch_size=1000, verbose=0)
    actual = keras_str.predict_tflite(path, x_test)
    assert np.max(np.abs(actual - expected)) <= 1e-2 * np.max(np.abs(expected))


def test_int8_top1_agreement(trained):
    model, x_train, x_test, _, folder = trained
    path = folder / "int8.tflite"
    report = keras_str.export_tflite(
        model, path, precision="int8", representative_data=x_train[:300]
    )
    expected = np.argmax(model.predict(x_test, batch_size=1000, verbose=0), axis=1)
    actual = np.argmax(keras_str.predict_tflite(path, x_test), axis=1)
    agreement = np.mean(actual == expected)
    # Randomly sparse FullyConnected int8 weights are stored dense to load.
    assert report.stored_dense and not report.sparse_tensors
    print(f"int8 top-1 agreement: {agreement:.4f}")
    assert agreement >= 0.98


def test_int8_per_tensor_is_smaller_and_still_agrees(trained):
    model, x_train, x_test, _, folder = trained
    per_channel = keras_str.export_tflite(
        model, folder / "pc.tflite", precision="int8", representative_data=x_train[:300]
    )
    per_tensor = keras_str.export_tflite(
        model, folder / "pt.tflite", precision="int8",
        representative_data=x_train[:300], per_channel=False,
    )
    assert per_tensor.size_bytes < per_channel.size_bytes
    expected = np.argmax(model.predict(x_test, batch_size=1000, verbose=0), axis=1)
    actual = np.argmax(keras_str.predict_tflite(folder / "pt.tflite", x_test), axis=1)
    assert np.mean(actual == expected) >= 0.98
