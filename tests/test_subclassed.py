"""Subclassed models: sparsify and strip rewrite them in place."""

import keras
import numpy as np
import pytest

import keras_str
from keras_str.core.layer_walk import iter_layers
from keras_str.layers.base import is_sparse_layer
from tests.backend_utils import BACKEND
from tests.backend_utils import to_numpy


class Block(keras.layers.Layer):
    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.projection = keras.layers.Dense(units, activation="relu")
        self.norm = keras.layers.LayerNormalization()

    def call(self, x):
        # Called through `__call__`: `training` reaches these layers from the
        # call context, whether or not this call() takes it.
        return self.norm(self.projection(x))


class Net(keras.Model):
    def __init__(self, pass_training=True, **kwargs):
        super().__init__(**kwargs)
        self.conv = keras.layers.Conv2D(8, 3, activation="relu")
        self.pool = keras.layers.GlobalAveragePooling2D()
        self.blocks = [Block(16), Block(16)]
        self.head = keras.layers.Dense(3)
        self.pass_training = pass_training

    def call(self, x, training=None):
        kwargs = {"training": training} if self.pass_training else {}
        x = self.pool(self.conv(x, **kwargs))
        for block in self.blocks:
            x = block(x, **kwargs)
        return self.head(x, **kwargs)


def data(n=32, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 10, 10, 3)).astype("float32"), rng.integers(0, 3, n)


def built_net(**kwargs):
    keras.utils.set_random_seed(0)
    net = Net(**kwargs)
    net(data(2)[0])
    return net


def test_subclassed_model_needs_in_place():
    with pytest.raises(ValueError, match="in_place=True"):
        keras_str.sparsify(built_net())
    with pytest.raises(ValueError, match="in_place=True` is for subclassed"):
        keras_str.sparsify(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]),
                           in_place=True)


def test_in_place_sparsify_train_strip():
    net = built_net()
    x, y = data()
    expected = to_numpy(net(x))
    method = keras_str.ST3(0.8, keras_str.ConstantSchedule())
    sparse = keras_str.sparsify(net, method=method, in_place=True)
    assert sparse is net
    names = sorted(type(l).__name__ for l in iter_layers(net) if is_sparse_layer(l))
    assert names == ["STRConv2D", "STRDense", "STRDense", "STRDense"]
    # The same function before training: weights copied, threshold starts at 0.
    np.testing.assert_allclose(to_numpy(net(x)), expected, atol=1e-5)
    net.compile(keras.optimizers.Adam(1e-3),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    net.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert keras_str.sparsity_report(net).totals["sparsity"] == pytest.approx(0.8, abs=0.02)
    trained = to_numpy(net(x))
    plain = keras_str.strip(net, in_place=True)
    assert plain is net and not any(is_sparse_layer(l) for l in iter_layers(net))
    np.testing.assert_allclose(to_numpy(net(x)), trained, atol=1e-5)


def test_training_that_does_not_reach_a_layer_is_refused_or_works():
    net = built_net(pass_training=False)
    method = keras_str.ST3(0.8, keras_str.ConstantSchedule())
    if BACKEND == "jax":
        # JAX's trainer runs model.call itself: it must pass `training` on.
        with pytest.raises(ValueError, match=r"does not reach the sparse layers"):
            keras_str.sparsify(net, method=method, in_place=True)
    else:
        keras_str.sparsify(net, method=method, in_place=True)
        x, y = data()
        net.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        net.fit(x, y, batch_size=8, epochs=1, verbose=0)
        assert keras_str.sparsity_report(net).totals["sparsity"] == pytest.approx(0.8, abs=0.02)


@pytest.mark.tensorflow
def test_stripped_subclassed_model_exports(tmp_path):
    net = built_net()
    x, y = data()
    keras_str.sparsify(net, method=keras_str.ST3(0.8, keras_str.ConstantSchedule()),
                       in_place=True)
    net.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    net.fit(x, y, batch_size=8, epochs=1, verbose=0)
    keras_str.strip(net, in_place=True)
    path = str(tmp_path / "net.tflite")
    report = keras_str.export_tflite(net, path)
    assert report.size_bytes < report.dense_size_bytes
    np.testing.assert_allclose(keras_str.predict_tflite(path, x), to_numpy(net(x)), atol=1e-4)


class FunctionalNet(keras.Model):
    """A subclassed functional model, as keras-hub's backbones and tasks are."""

    def __init__(self):
        inputs = keras.Input((8,))
        super().__init__(inputs, keras.layers.Dense(4)(keras.layers.Dense(8)(inputs)))


@pytest.mark.parametrize("n_m", [None, "2:4"])
def test_the_training_probe_runs_a_method_not_yet_due(n_m):
    # GMP's first update is at step 10: at the probe's step 0 its mask keeps
    # its value. On TensorFlow that value was assigned as the variable
    # itself inside the probe's StatelessScope: RecursionError.
    method = keras_str.GMP(
        None if n_m else 0.5, keras_str.PolynomialSchedule(10, 20), frequency=5, n_m=n_m
    )
    model = FunctionalNet()
    keras_str.sparsify(model, method=method, in_place=True)
    model.compile("adam", "mse")
    x = np.ones((4, 8), "float32")
    with pytest.warns(UserWarning, match="trained 2 steps"):  # the schedule runs to 20
        model.fit(x, np.zeros((4, 4), "float32"), batch_size=2, epochs=1, verbose=0)
    layers = [layer for layer in iter_layers(model) if is_sparse_layer(layer)]
    assert [int(to_numpy(layer.sparsity_step)) for layer in layers] == [2, 2]
