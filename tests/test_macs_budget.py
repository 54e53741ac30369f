"""A target in multiply-adds instead of weights: `budget="macs"`."""

import keras
import numpy as np
import pytest

import keras_str


def two_resolution_cnn(width=8):
    # An early conv at 16x16 (256 MACs a weight), a late one at 4x4 (16),
    # and Dense layers (1): weights differ 256-fold in cost.
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.MaxPooling2D(4)(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(32, activation="relu")(x)
    return keras.Model(inputs, keras.layers.Dense(4)(x))


METHODS = {
    "st3": lambda s: keras_str.ST3(0.8, s, budget="macs"),
    "st3_sigma": lambda s: keras_str.ST3(0.8, s, scope="sigma", budget="macs"),
    "str": lambda s: keras_str.STR(0.8, s, budget="macs"),
    "channel_str": lambda s: keras_str.StructuredSTR(
        "channel", target_sparsity=0.8, schedule=s, budget="macs"),
}


def slow_here(name):
    # On JAX each case compiles its own step (10-20 s): one runs by default
    # there. Elsewhere ST-3's global scope runs under `slow`: its sigma scope
    # takes the same MACs-budget path.
    if keras.backend.backend() == "jax":
        return name != "str"
    return name == "st3"


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=pytest.mark.slow if slow_here(name) else ())
    for name in sorted(METHODS)
])
def test_the_macs_target_is_met_in_the_train_step(name):
    keras.utils.set_random_seed(0)
    schedule = keras_str.PolynomialSchedule(0, 8)
    # Channels go whole: with 64 early filters one is 1.2 % of the MACs
    # (with 8, one would be 8 %, more than the 2 % asked).
    width = 64 if name == "channel_str" else 8
    sparse = keras_str.sparsify(two_resolution_cnn(width), method=METHODS[name](schedule))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 16, 16, 3)).astype("float32")
    y = rng.normal(size=(80, 4)).astype("float32")
    torch = keras.backend.backend() == "torch"
    # The learning rate decays to ~0, as in real recipes: the optimizer's last
    # step (after the last update) cannot carry groups across the threshold.
    learning_rate = keras.optimizers.schedules.CosineDecay(1e-3, 10)
    sparse.compile(keras.optimizers.Adam(learning_rate), "mse", jit_compile=not torch)
    sparse.fit(x, y, batch_size=8, epochs=1, verbose=0)
    if name == "channel_str":
        # What the target counts: the MACs left once strip removes the
        # channels (filters, and the next layers' inputs they feed).
        dense_macs = keras_str.sparsity_report(sparse).totals["dense_macs"]
        stripped = keras_str.sparsity_report(keras_str.strip(sparse))
        kept = stripped.totals["dense_macs"] / dense_macs
    else:
        totals = keras_str.sparsity_report(sparse).totals
        kept = totals["sparse_macs"] / totals["dense_macs"]
    # Within 2 % of the dense MACs (one early weight is 256 MACs).
    assert kept == pytest.approx(0.2, abs=0.02), (name, kept)


def test_a_weights_budget_leaves_more_macs():
    keras.utils.set_random_seed(0)
    model = keras_str.sparsify(
        two_resolution_cnn(),
        method=keras_str.ST3(0.8, keras_str.ConstantSchedule()))
    model.compile("adam", "mse")
    x = np.random.default_rng(0).normal(size=(8, 16, 16, 3)).astype("float32")
    model.fit(x, np.zeros((8, 4)), batch_size=8, verbose=0)
    totals = keras_str.sparsity_report(model).totals
    assert totals["sparsity"] == pytest.approx(0.8, abs=0.01)
    assert totals["sparse_macs"] / totals["dense_macs"] > 0.2


def test_unknown_spatial_size_is_named_before_training():
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    with pytest.raises(ValueError, match=r"'conv'.*unknown spatial"):
        keras_str.sparsify(
            keras.Model(inputs, x),
            method=keras_str.ST3(0.5, keras_str.ConstantSchedule(), budget="macs"))


def test_bad_budget_is_named():
    with pytest.raises(ValueError, match="budget"):
        keras_str.ST3(0.5, keras_str.ConstantSchedule(), budget="flops")
    with pytest.raises(ValueError, match="target_sparsity"):
        keras_str.STR(budget="macs")
    config = keras_str.ST3(0.5, keras_str.ConstantSchedule(), budget="macs").get_config()
    assert keras_str.ST3.from_config(config).budget == "macs"
