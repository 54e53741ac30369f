import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import keras_str
from examples.models import small_cnn
from tests.backend_utils import slow_on
from tests.backend_utils import to_numpy


def trained_like_sparse_model():
    """An STR model with high thresholds, as after training."""
    inputs = keras.Input((10, 10, 3))
    x = keras.layers.ZeroPadding2D(1)(inputs)
    x = keras_str.STRConv2D(8, 3, strides=2, threshold_init=-2.0, name="conv")(x)
    x = keras_str.STRDepthwiseConv2D(
        3, padding="same", threshold_granularity="channel", threshold_init=-2.5, name="dw"
    )(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras_str.STRConv2D(6, 1, threshold_granularity="weight", threshold_init=-2.0)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    seq_layer = keras_str.STRConv1D(4, 1, threshold_init=-2.0, threshold_fn="exp")
    seq = seq_layer(keras.layers.Reshape((6, 1))(x))
    x = keras.layers.Flatten()(seq)
    outputs = keras_str.STRDense(5, threshold_init=-1.5, name="head")(x)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(0)
    # Four weights only: set them, so that some fall under exp(-2) ~ 0.135
    # whatever the backend's random initialiser drew.
    seq_layer.raw_kernel.assign(np.array([[[0.05, -0.6, -0.1, 0.9]]], "float32"))
    bn = model.layers[4]
    bn.moving_mean.assign(rng.normal(size=bn.moving_mean.shape))
    bn.moving_variance.assign(rng.uniform(0.5, 2, size=bn.moving_variance.shape))
    return model


def test_strip_gives_plain_layers_with_exact_zeros_and_same_predictions():
    model = trained_like_sparse_model()
    plain = keras_str.strip(model)
    x = np.random.default_rng(1).normal(size=(8, 10, 10, 3)).astype("float32")
    np.testing.assert_allclose(
        to_numpy(plain(x)),
        to_numpy(model(x)),
        atol=1e-5,
    )
    str_layers = [l for l in model.layers if isinstance(l, keras_str.SparseKernelLayer)]
    plain_layers = {l.name: l for l in plain.layers}
    for layer in str_layers:
        twin = plain_layers[layer.name]
        assert type(twin) in (
            keras.layers.Dense,
            keras.layers.Conv1D,
            keras.layers.Conv2D,
            keras.layers.DepthwiseConv2D,
        )
        assert isinstance(layer, type(twin))
        expected = to_numpy(layer.thresholded_kernel())
        actual = to_numpy(
            twin._kernel if hasattr(twin, "_kernel") else twin.kernel
        )
        np.testing.assert_array_equal(actual, expected)
        assert np.mean(actual == 0) > 0.1
        # Same config as the parent would have, minus the STR arguments.
        config = twin.get_config()
        for key in keras_str.layers.base.SPARSE_CONFIG_KEYS:
            assert key not in config
    report_str = keras_str.sparsity_report(model)
    report_plain = keras_str.sparsity_report(plain)
    assert report_plain.totals["nonzeros"] == report_str.totals["nonzeros"]


def test_strip_leaves_model_unchanged_and_copies_other_weights():
    model = trained_like_sparse_model()
    before = [to_numpy(w).copy() for w in model.weights]
    plain = keras_str.strip(model)
    after = [to_numpy(w) for w in model.weights]
    for b, a in zip(before, after):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(
        to_numpy(plain.layers[4].moving_variance),
        to_numpy(model.layers[4].moving_variance),
    )


def test_plain_model_without_str_layers_strips_to_a_copy():
    dense = small_cnn()
    plain = keras_str.strip(dense)
    x = np.ones((1, 28, 28, 1), "float32")
    np.testing.assert_array_equal(
        to_numpy(plain(x)), to_numpy(dense(x))
    )


# A fresh process imports a backend (10-25 s off TensorFlow); the saved file
# is the same on every backend, so the others run it under `slow`.
@slow_on("jax", "torch")
def test_stripped_model_loads_without_keras_str(tmp_path):
    model = trained_like_sparse_model()
    plain = keras_str.strip(model)
    path = tmp_path / "plain.keras"
    plain.save(path)
    x = np.random.default_rng(2).normal(size=(2, 10, 10, 3)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", to_numpy(model(x)))
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["keras_str"] = None  # importing keras_str would fail
        import numpy as np, keras
        model = keras.saving.load_model({str(path)!r})
        x = np.load({str(tmp_path / "x.npy")!r})
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(model(x)),
            np.load({str(tmp_path / "y.npy")!r}), atol=1e-5)
        print("plain ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        cwd=str(tmp_path),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "plain ok" in result.stdout


def test_strip_refuses_unbuilt_model():
    with pytest.raises(ValueError, match="not built"):
        keras_str.strip(keras.Sequential([keras_str.STRDense(2)]))
