"""Faults that used to pass without a word: each now says what went wrong, and where."""

import keras
import numpy as np
import pytest

import keras_str


def mlp(name="mlp"):
    return keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(16, activation="relu", name="hidden"),
            keras.layers.BatchNormalization(name="norm"),
            keras.layers.Dense(3, name="logits"),
        ],
        name=name,
    )


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.hidden = keras.layers.Dense(8, name="hidden")
        self.logits = keras.layers.Dense(2, name="logits")

    def call(self, inputs, training=None):
        return self.logits(self.hidden(inputs))


# sparsify refuses what it cannot rewrite sensibly.


def test_sparsify_refuses_a_model_sparsified_before():
    sparse = keras_str.sparsify(mlp(), weight_decay=1e-4)
    with pytest.raises(ValueError, match=r"already has 2 sparse layers \(hidden, logits\)"):
        keras_str.sparsify(sparse, method=keras_str.ST3(0.9, keras_str.PolynomialSchedule(0, 10)))
    # Stripped, it is a plain model again.
    keras_str.sparsify(keras_str.strip(sparse), weight_decay=1e-4)


def test_sparsify_refuses_a_subclassed_model_rewritten_before():
    model = Subclassed()
    model(np.zeros((1, 4), "float32"))
    keras_str.sparsify(model, in_place=True, weight_decay=1e-4)
    with pytest.raises(ValueError, match="already has 2 sparse layers"):
        keras_str.sparsify(model, in_place=True, weight_decay=1e-4)


def test_sparsify_refuses_a_model_built_from_sparse_layers():
    model = keras.Sequential([keras.Input((4,)), keras_str.STRDense(3, name="mine")])
    with pytest.raises(ValueError, match=r"already has 1 sparse layers \(mine\)"):
        keras_str.sparsify(model, weight_decay=1e-4)


@pytest.mark.parametrize(
    "layer, weight, value, counts",
    [
        ("hidden", 0, np.nan, "1 NaN, 0 inf"),
        ("logits", 1, np.inf, "0 NaN, 1 inf"),
        ("norm", 3, -np.inf, "0 NaN, 1 inf"),
    ],
)
def test_sparsify_refuses_non_finite_weights_naming_layer_and_weight(layer, weight, value, counts):
    model = mlp()
    variable = model.get_layer(layer).weights[weight]
    values = keras.ops.convert_to_numpy(variable).copy()
    values.flat[0] = value
    variable.assign(values)
    with pytest.raises(ValueError, match=f"Layer '{layer}' holds non-finite values in its weight '{variable.name}' \\({counts}"):
        keras_str.sparsify(model, weight_decay=1e-4)
