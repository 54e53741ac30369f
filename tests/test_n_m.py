"""N:M sparsity: the in-step mask, the layers that hold it, GMP reaching it, and `check_n_m`."""

import keras
import numpy as np
import pytest

import keras_str
from keras_str.core.n_m import group_nonzeros
from keras_str.core.n_m import n_m_mask
from keras_str.core.n_m import parse_n_m
from tests.backend_utils import gradients
from tests.backend_utils import to_numpy


def test_the_mask_keeps_the_largest_of_each_group_ties_first():
    magnitude = np.array([3.0, 1.0, 2.0, 0.5, 1.0, 1.0, 1.0, 1.0])[:, None]
    mask = to_numpy(n_m_mask(magnitude, 2, 4, 0))[:, 0]
    np.testing.assert_array_equal(mask, [1, 0, 1, 0, 1, 1, 0, 0])
    # `kept` may be a tensor, as a schedule gives it.
    mask = to_numpy(n_m_mask(magnitude, keras.ops.convert_to_tensor(3), 4, 0))[:, 0]
    np.testing.assert_array_equal(mask, [1, 1, 1, 0, 1, 1, 1, 0])


@pytest.mark.parametrize("n, m", [(2, 4), (1, 4), (4, 8)])
def test_every_group_keeps_exactly_n_along_the_input_axis(n, m):
    kernel = np.random.default_rng(0).normal(size=(3, 3, 16, 5))
    mask = to_numpy(n_m_mask(np.abs(kernel), n, m, -2))
    counts = group_nonzeros(mask, m, -2)
    assert counts.shape == (3, 3, 5, 16 // m) and np.all(counts == n)
    # The kept entries are the group's largest.
    grouped = np.moveaxis(np.abs(kernel), -2, -1).reshape(3, 3, 5, 16 // m, m)
    kept = np.moveaxis(mask, -2, -1).reshape(grouped.shape).astype(bool)
    assert np.all(grouped[kept].reshape(-1, n).min(axis=-1) >= 0)
    smallest_kept = np.where(kept, grouped, np.inf).min(axis=-1)
    largest_dropped = np.where(kept, -np.inf, grouped).max(axis=-1)
    assert np.all(smallest_kept >= largest_dropped)


@pytest.mark.parametrize("value", [(4, 4), (0, 4), (3, 2), "2/4", "2:4:8", True, (2.0, 4), 2])
def test_bad_patterns_are_named(value):
    with pytest.raises(ValueError, match="n_m="):
        parse_n_m(value)
    assert parse_n_m("2:4") == parse_n_m([2, 4]) == (2, 4)


def small_cnn():
    inputs = keras.Input((8, 8, 4))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(16, activation="relu", name="hidden")(x)
    return keras.Model(inputs, keras.layers.Dense(4, name="logits")(x))


def two_four(end_step=6, method="gmp"):
    schedule = keras_str.PolynomialSchedule(0, end_step)
    if method == "gmp":
        return keras_str.GMP(None, schedule, frequency=1, n_m="2:4")
    if method == "str":
        return keras_str.STR(None, schedule, n_m="2:4")
    scope = method.removeprefix("st3_")
    return keras_str.ST3(None, schedule, scope=scope, n_m="2:4")


def train(model, steps):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8 * steps, 8, 8, 4)).astype("float32")
    y = rng.integers(0, 4, 8 * steps)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)


def most_nonzeros(model):
    return {layer.name: layer.most_nonzeros for layer in keras_str.check_n_m(model).layers}


@pytest.mark.parametrize("method", ["gmp", "st3_global", "st3_sigma", "str"])
def test_methods_move_from_dense_to_two_four_inside_the_train_step(method):
    # Cubic schedule over 4 steps: 0, 0.58, 0.88, 0.98, 1 of the way; each
    # group keeps 4 - round(2 * fraction) weights.
    model = keras_str.sparsify(
        small_cnn(), method=two_four(end_step=4, method=method), keep_dense=[]
    )
    with pytest.warns(UserWarning, match="schedule ends at step 4"):
        train(model, 1)  # step 0: nothing pruned yet
    weights_before = to_numpy(model.get_layer("hidden").raw_kernel)
    assert set(most_nonzeros(model).values()) == {4}
    with pytest.warns(UserWarning, match="schedule ends at step 4"):
        train(model, 1)  # step 1
    assert set(most_nonzeros(model).values()) == {3}
    train(model, 3)  # steps 2 to 4: 2:4
    if method.startswith("st3"):
        # Straight-through: the weights ST-3 zeroes still train.
        zeroed = to_numpy(model.get_layer("hidden").kernel) == 0
        moved = to_numpy(model.get_layer("hidden").raw_kernel) != weights_before
        assert np.mean(moved[zeroed]) > 0.9
    result = keras_str.check_n_m(model, "2:4")
    assert result.satisfied and [layer.name for layer in result.layers] == ["conv", "hidden", "logits"]
    plain = keras_str.strip(model)
    assert keras_str.check_n_m(plain, (2, 4)).satisfied
    np.testing.assert_allclose(
        to_numpy(plain.get_layer("hidden").kernel),
        to_numpy(model.get_layer("hidden").kernel),
    )


def test_einsum_dense_groups_run_along_the_summed_axis():
    inputs = keras.Input((5, 16))
    outputs = keras.layers.EinsumDense("abc,cde->abde", (5, 2, 4), name="proj")(inputs)
    model = keras_str.sparsify(keras.Model(inputs, outputs), method=two_four(end_step=1))
    layer = model.get_layer("proj")
    assert layer.kernel_spec.input_axis(layer) == 0
    model.compile("sgd", "mse")
    model.fit(np.ones((16, 5, 16)), np.ones((16, 5, 2, 4)), batch_size=8, verbose=0)
    assert np.all(group_nonzeros(to_numpy(layer.kernel), 4, 0) <= 2)


def test_layers_that_cannot_hold_the_pattern_are_refused_by_name():
    depthwise = keras.Sequential([keras.Input((8, 8, 4)), keras.layers.DepthwiseConv2D(3, name="dw")])
    with pytest.raises(ValueError, match=r"'dw' \(STRDepthwiseConv2D\) cannot hold N:M"):
        keras_str.sparsify(depthwise, method=two_four())
    narrow = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3, name="narrow")])
    with pytest.raises(ValueError, match=r"'narrow'.*6 inputs along axis 0, not a multiple of 4"):
        keras_str.sparsify(narrow, method=two_four())


def test_st3_keeps_each_group_s_largest_shrunk_by_the_largest_dropped():
    layer = keras_str.STRDense(1, method=two_four(method="st3_global", end_step=4))
    layer.build((None, 8))
    layer.raw_kernel.assign(np.array([[3.0], [-1.0], [2.0], [0.5], [1.0], [4.0], [-2.0], [0.0]]))
    layer.method.update([layer], keras.ops.convert_to_tensor(4))  # the schedule's end: 2:4
    assert int(to_numpy(layer.sparsity_state["kept"])) == 2
    # Group 1 drops 1 and 0.5 (threshold 1); group 2 drops 1 and 0 (threshold 1).
    expected = [2.0, 0.0, 1.0, 0.0, 0.0, 3.0, -1.0, 0.0]
    np.testing.assert_allclose(to_numpy(layer.kernel)[:, 0], expected)
    assert layer.threshold is None
    # The pattern is the step's: the weights the optimizer then moves are
    # shrunk by the same thresholds, and a dropped weight stays out until
    # the next update however large it grew.
    layer.raw_kernel.assign(np.array([[3.0], [-5.0], [2.0], [0.5], [1.0], [4.0], [-2.0], [0.0]]))
    np.testing.assert_allclose(to_numpy(layer.kernel)[:, 0], expected)
    layer.method.update([layer], keras.ops.convert_to_tensor(5))
    np.testing.assert_allclose(
        to_numpy(layer.kernel)[:, 0], [1.0, -3.0, 0.0, 0.0, 0.0, 3.0, -1.0, 0.0]
    )


def test_str_shrinks_by_its_learned_threshold_where_it_is_the_larger():
    method = keras_str.STR(
        None, keras_str.PolynomialSchedule(0, 4), n_m="2:4", threshold_init=0.0
    )  # g(s) = sigmoid(0) = 0.5
    layer = keras_str.STRDense(1, method=method)
    layer.build((None, 8))
    layer.raw_kernel.assign(np.array([[3.0], [-1.0], [2.0], [0.5], [0.2], [0.9], [-0.1], [0.0]]))
    method.update([layer], keras.ops.convert_to_tensor(4))
    # Group 1 drops 1 and 0.5: its threshold, 1, is above g(s), so the
    # kept shrink by 1 and s gets no gradient from them. Group 2 drops 0.1
    # and 0: g(s) = 0.5 shrinks 0.9 to 0.4 and zeroes 0.2 (1 nonzero of 4).
    np.testing.assert_allclose(
        to_numpy(layer.kernel)[:, 0], [2.0, 0.0, 1.0, 0.0, 0.0, 0.4, 0.0, 0.0], atol=1e-6
    )
    (grad,) = gradients(lambda: keras.ops.sum(layer.kernel), [layer.sparsity_state["threshold"]])
    # d/ds of 0.9 - sigmoid(s) at 0 is -0.25; the first group's weights add nothing.
    np.testing.assert_allclose(to_numpy(grad), -0.25, atol=1e-6)


def test_str_n_m_needs_a_schedule():
    with pytest.raises(ValueError, match="needs a `schedule`"):
        keras_str.STR(None, n_m="2:4")
    with pytest.raises(ValueError, match="target of 0.5"):
        keras_str.STR(0.9, keras_str.PolynomialSchedule(0, 4), n_m="2:4")


def test_gmp_arguments_that_contradict_the_pattern_are_refused():
    schedule = keras_str.PolynomialSchedule(0, 10)
    assert keras_str.GMP(0.5, schedule, n_m="2:4").target_sparsity == 0.5
    assert keras_str.GMP(None, schedule, n_m="1:4").target_sparsity == 0.75
    with pytest.raises(ValueError, match="target of 0.5"):
        keras_str.GMP(0.9, schedule, n_m="2:4")
    with pytest.raises(ValueError, match="structure='channel'"):
        keras_str.GMP(None, schedule, structure="channel", n_m="2:4")
    with pytest.raises(ValueError, match="target_sparsity=None"):
        keras_str.GMP(None, schedule)
    assert keras_str.ST3(None, schedule, n_m=(2, 4)).target_sparsity == 0.5
    with pytest.raises(ValueError, match="budget='macs'"):
        keras_str.ST3(None, schedule, budget="macs", n_m="2:4")
    with pytest.raises(ValueError, match="target of 0.5"):
        keras_str.ST3(0.9, schedule, n_m="2:4")


@pytest.mark.parametrize("method", ["gmp", "st3_global", "str"])
def test_the_pattern_is_saved_with_the_method(method):
    method = two_four(method=method)
    config = method.get_config()
    assert config["n_m"] == [2, 4]
    assert type(method).from_config(config).n_m == (2, 4)
    del config["n_m"]  # saved before N:M existed
    config["target_sparsity"] = 0.5
    assert type(method).from_config(config).n_m is None


def test_a_two_four_model_saves_and_reloads(tmp_path):
    model = keras_str.sparsify(small_cnn(), method=two_four(end_step=2, method="st3_global"),
                               keep_dense=[])
    train(model, 3)
    path = str(tmp_path / "two_four.keras")
    model.save(path)
    reloaded = keras_str.load_model(path)
    assert reloaded.get_layer("hidden").method.n_m == (2, 4)
    x = np.random.default_rng(1).normal(size=(4, 8, 8, 4)).astype("float32")
    np.testing.assert_allclose(to_numpy(reloaded(x)), to_numpy(model(x)), rtol=1e-5, atol=1e-6)
    assert keras_str.check_n_m(reloaded).satisfied


def test_check_n_m_says_where_a_kernel_fails():
    kernel = np.zeros((8, 3))
    kernel[4:7, 1] = 1.0  # group starting at row 4 of column 1: 3 nonzeros
    result = keras_str.check_n_m(kernel, "2:4")
    assert not result.satisfied
    (layer,) = result.layers
    assert (layer.groups, layer.failing_groups, layer.most_nonzeros) == (6, 1, 3)
    assert layer.failing == [(4, 1)]
    assert "1 of 6 groups hold more than 2 (up to 3); groups starting at (4, 1)" in str(result)
    with pytest.raises(ValueError, match=r"shape \(6, 3\)"):
        keras_str.check_n_m(np.zeros((6, 3)), "2:4")


def test_check_n_m_lists_the_layers_it_cannot_check():
    model = keras.Sequential([
        keras.Input((8, 8, 4)),
        keras.layers.DepthwiseConv2D(3, name="dw"),
        keras.layers.Flatten(),
        keras.layers.Dense(3, name="head"),
    ])
    result = keras_str.check_n_m(model)
    assert [layer.name for layer in result.layers] == ["head"]
    assert result.unchecked == {"dw": "DepthwiseConv2D has no input axis to group"}
    assert not result.satisfied
