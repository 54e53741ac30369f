import keras
import numpy as np
import pytest

import keras_str
from tests.backend_utils import to_numpy
from examples.models import small_cnn


def functional_model():
    inputs = keras.Input((12, 3))
    x = keras.layers.Conv1D(8, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.LayerNormalization()(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    x = keras.layers.Dense(6, activation="relu", name="hidden")(x)
    outputs = keras.layers.Dense(3, name="logits")(x)
    return keras.Model(inputs, outputs)


def outputs(model, x):
    return to_numpy(model(x))


@pytest.mark.parametrize("build", [small_cnn, functional_model])
def test_sparsify_replaces_kernel_layers_and_keeps_outputs(build):
    dense = build()
    x = np.random.default_rng(0).normal(size=(4,) + dense.input_shape[1:]).astype("float32")
    sparse = keras_str.sparsify(dense, threshold_init=-100.0)
    kinds = [type(l).__name__ for l in sparse.layers]
    assert not any(k in ("Dense", "Conv1D", "Conv2D") for k in kinds)
    np.testing.assert_array_equal(outputs(sparse, x), outputs(dense, x))
    # The default threshold (g ~ 4.5e-5) changes outputs only slightly.
    default = keras_str.sparsify(dense)
    np.testing.assert_allclose(outputs(default, x), outputs(dense, x), atol=5e-3)
    # The original model is untouched.
    assert [type(l) for l in dense.layers] == [type(l) for l in build().layers]


def test_sparsify_forwards_str_options_and_weight_decay():
    sparse = keras_str.sparsify(
        small_cnn(),
        threshold_init=-7.0,
        threshold_fn="exp",
        threshold_granularity="channel",
        weight_decay=2e-4,
    )
    sparse_layers = [l for l in sparse.layers if isinstance(l, keras_str.SparseKernelLayer)]
    # One method object, shared by every layer of the new model.
    assert len({id(layer.method) for layer in sparse_layers}) == 1
    for layer in sparse_layers:
        if isinstance(layer, keras_str.SparseKernelLayer):
            assert layer.method.threshold_init == -7.0
            assert layer.method.threshold_fn == "exp"
            assert layer.method.threshold_granularity == "channel"
            assert layer.method.threshold_regularizer.l2 == pytest.approx(1e-4)
            assert layer.kernel_regularizer.l2 == pytest.approx(1e-4)


def test_keep_dense_by_name_and_predicate():
    by_name = keras_str.sparsify(small_cnn(), keep_dense=["conv1", "logits"])
    kinds = {l.name: type(l) for l in by_name.layers}
    assert kinds["conv1"] is keras.layers.Conv2D
    assert kinds["logits"] is keras.layers.Dense
    assert kinds["conv2"] is keras_str.STRConv2D
    by_predicate = keras_str.sparsify(
        small_cnn(), keep_dense=lambda layer: isinstance(layer, keras.layers.Dense)
    )
    kinds = {l.name: type(l) for l in by_predicate.layers}
    assert kinds["fc1"] is keras.layers.Dense and kinds["conv1"] is keras_str.STRConv2D


@pytest.mark.parametrize("bad", [["nope"], "conv1", [3]])
def test_keep_dense_bad_values(bad):
    with pytest.raises(ValueError, match="keep_dense"):
        keras_str.sparsify(small_cnn(), keep_dense=bad)


def test_subclassed_model_gets_a_clear_error():
    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    model = Subclassed()
    model(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="subclassed model.*in_place=True"):
        keras_str.sparsify(model)
    with pytest.raises(ValueError, match="subclassed model.*in_place=True"):
        keras_str.strip(model)


def test_not_a_model_is_refused():
    with pytest.raises(ValueError, match="model="):
        keras_str.sparsify(keras.layers.Dense(3))


# Eager JAX compiles every new op shape (minutes for these models here):
# slow on the other backends, by default on TensorFlow.
_APPLICATION_MARKS = () if keras.backend.backend() == "tensorflow" else (pytest.mark.slow,)


@pytest.mark.parametrize(
    "application, classifier",
    [
        pytest.param(keras.applications.MobileNet, "conv_preds", marks=_APPLICATION_MARKS),
        pytest.param(keras.applications.MobileNetV2, "predictions", marks=_APPLICATION_MARKS),
        pytest.param(keras.applications.ResNet50, "predictions", marks=_APPLICATION_MARKS),
    ],
)
def test_keras_applications_round_trip(application, classifier):
    dense = application(weights=None, input_shape=(64, 64, 3), classes=10)
    sparse = keras_str.sparsify(dense, threshold_init=-100.0, keep_dense=[classifier])
    n_str = sum(isinstance(l, keras_str.SparseKernelLayer) for l in sparse.layers)
    n_kernel = sum(
        type(l) in (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)
        for l in dense.layers
    )
    assert n_str == n_kernel - 1
    x = np.random.default_rng(0).uniform(size=(2, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(outputs(sparse, x), outputs(dense, x), atol=1e-6)
    plain = keras_str.strip(sparse)
    assert not any(isinstance(l, keras_str.SparseKernelLayer) for l in plain.layers)
    np.testing.assert_allclose(outputs(plain, x), outputs(sparse, x), atol=1e-5)


def test_functional_graph_with_keras_ops_calls_is_sparsified():
    inputs = keras.Input((8,))
    hidden = keras.layers.Dense(8, name="a")(inputs)
    hidden = keras.ops.relu(hidden + keras.ops.ones((8,)))
    outputs = keras.layers.Dense(2, name="b")(hidden)
    dense = keras.Model(inputs, outputs)
    sparse = keras_str.sparsify(dense, threshold_init=-100.0)
    assert [type(l).__name__ for l in sparse.layers[1:]] == ["STRDense", "STRDense"]
    x = np.random.default_rng(0).normal(size=(4, 8)).astype("float32")
    np.testing.assert_allclose(
        to_numpy(sparse(x)), to_numpy(dense(x)),
        atol=1e-6)


def test_plain_str_without_weight_decay_says_how_to_get_sparsity():
    with pytest.warns(UserWarning, match="weight_decay="):
        keras_str.sparsify(small_cnn())
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        keras_str.sparsify(small_cnn(), weight_decay=5e-4)
        keras_str.sparsify(small_cnn(), method=keras_str.ST3(
            0.5, keras_str.PolynomialSchedule(0, 10)))
