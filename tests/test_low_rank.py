"""Low-rank STR: a kernel as `U diag(sigma) V^T` with a learned threshold on `sigma`."""

import math

import keras
import numpy as np
import pytest

import keras_str
from tests.backend_utils import to_numpy


def low_rank_dense(units, method, **kwargs):
    return keras_str.STRDense(units, method=method, **kwargs)


def set_factors(layer, u, sigma, v):
    for name, value in (("u", u), ("sigma", sigma), ("v", v)):
        layer.sparsity_state[name].assign(np.asarray(value, "float32"))


def random_dense_model(rng):
    """A Dense + GRU model whose weights are not the ones its initializers draw."""
    model = keras.Sequential([
        keras.Input((5, 6)),
        keras.layers.GRU(8, return_sequences=True),
        keras.layers.Dense(12, activation="relu"),
        keras.layers.GlobalAveragePooling1D(),
        keras.layers.Dense(4),
    ])
    model.set_weights([
        (w + rng.normal(scale=0.2, size=w.shape)).astype("float32")
        for w in model.get_weights()
    ])
    return model


def test_effective_kernel_is_u_times_soft_thresholded_sigma_times_v_transposed():
    method = keras_str.LowRankSTR(threshold_init=math.log(0.5))
    layer = low_rank_dense(5, method)
    layer.build((None, 7))
    rng = np.random.default_rng(0)
    u, v = rng.normal(size=(7, 5)), rng.normal(size=(5, 5))
    sigma = np.array([2.0, -1.5, 0.4, 0.5, 0.8])
    set_factors(layer, u, sigma, v)
    kept = np.sign(sigma) * np.maximum(np.abs(sigma) - 0.5, 0.0)
    expected = u @ np.diag(kept) @ v.T
    np.testing.assert_allclose(to_numpy(layer.thresholded_kernel()), expected, atol=1e-5)
    np.testing.assert_allclose(to_numpy(layer.threshold), 0.5, rtol=1e-6)
    assert method.rank(layer) == 3
    left, right = method.factors(layer)
    assert left.shape == (7, 3) and right.shape == (3, 5)
    np.testing.assert_allclose(left @ right, expected, atol=1e-5)


def test_factors_start_from_the_kernel_by_svd():
    layer = low_rank_dense(6, keras_str.LowRankSTR(threshold_init=-100.0))
    layer.build((None, 10))
    kernel = to_numpy(layer.raw_kernel)
    np.testing.assert_allclose(to_numpy(layer.thresholded_kernel()), kernel, atol=1e-5)
    assert layer.method.full_rank(layer) == 6

    truncated = low_rank_dense(6, keras_str.LowRankSTR(max_rank=2, threshold_init=-100.0))
    truncated.build((None, 10))
    u, sigma, vh = np.linalg.svd(to_numpy(truncated.raw_kernel), full_matrices=False)
    best = u[:, :2] @ np.diag(sigma[:2]) @ vh[:2]
    np.testing.assert_allclose(to_numpy(truncated.thresholded_kernel()), best, atol=1e-5)
    assert truncated.sparsity_state["u"].shape == (10, 2)


def test_a_sparsified_model_predicts_what_the_dense_one_does():
    rng = np.random.default_rng(0)
    dense = random_dense_model(rng)
    sparse = keras_str.sparsify(
        dense, method=keras_str.LowRankSTR(), weight_decay=1e-4)
    assert all(isinstance(layer.method, keras_str.LowRankSTR) for layer in sparse.layers
               if isinstance(layer, keras_str.STRDense))
    x = rng.normal(size=(8, 5, 6)).astype("float32")
    # g(s) ~ 4.5e-5 shrinks each singular value by that much.
    np.testing.assert_allclose(to_numpy(sparse(x)), to_numpy(dense(x)), atol=1e-4)
    gru = sparse.layers[0]
    np.testing.assert_allclose(
        to_numpy(gru.cell.kernel_layer.thresholded_kernel()),
        to_numpy(dense.layers[0].cell.kernel), atol=1e-4)


def test_the_raw_kernel_is_not_trained_and_the_factors_take_the_weight_decay():
    model = keras.Sequential([
        keras.Input((8,)), low_rank_dense(4, keras_str.LowRankSTR(), name="lr")])
    keras_str.apply_weight_decay(model, 1e-3)
    layer = model.layers[0]
    assert sorted(v.name for v in layer.trainable_weights) == [
        "bias", "sigma", "threshold", "u", "v"]
    # Unfreezing the layer does not bring the raw kernel back.
    layer.trainable = False
    layer.trainable = True
    assert not layer.raw_kernel.trainable
    decayed = [v.name for v in layer.trainable_weights if v.regularizer is not None]
    assert sorted(decayed) == ["sigma", "threshold", "u", "v"]
    assert len(model.losses) == 4
    assert layer.method.threshold_regularizer.l2 == pytest.approx(5e-4)


def test_weight_decay_lowers_the_rank():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    target = (rng.normal(size=(16, 2)) @ rng.normal(size=(2, 16)) / 4).astype("float32")
    x = rng.normal(size=(256, 16)).astype("float32")
    method = keras_str.LowRankSTR(threshold_init=-3.0)
    model = keras.Sequential([
        keras.Input((16,)), low_rank_dense(16, method, use_bias=False)])
    keras_str.apply_weight_decay(model, 3e-2)
    layer = model.layers[0]
    before = method.rank(layer)
    model.compile(keras.optimizers.Adam(0.03), "mse")
    model.fit(x, x @ target, batch_size=32, epochs=40, verbose=0)
    assert before >= 15
    # The target has rank 2; the decay drops the other singular values.
    assert 2 <= method.rank(layer) <= 3
    assert float(to_numpy(layer.threshold)) > math.exp(-3.0)


def test_save_and_reload_keep_the_factors(tmp_path):
    method = keras_str.LowRankSTR(max_rank={"lr": 3}, threshold_init=-2.0,
                                  threshold_regularizer="l2")
    model = keras.Sequential([
        keras.Input((10,)),
        low_rank_dense(8, method, name="lr", activation="relu"),
        low_rank_dense(2, method, name="full"),
    ])
    x = np.random.default_rng(0).normal(size=(16, 10)).astype("float32")
    model.compile("adam", "mse")
    model.fit(x, np.zeros((16, 2)), epochs=1, verbose=0)
    path = str(tmp_path / "low_rank.keras")
    model.save(path)
    reloaded = keras_str.load_model(path)
    again = reloaded.layers[0].method
    assert isinstance(again, keras_str.LowRankSTR)
    assert again.get_config() == method.get_config()
    assert reloaded.layers[0].sparsity_state["u"].shape == (10, 3)
    assert reloaded.layers[1].sparsity_state["u"].shape == (8, 2)
    for old, new in zip(model.layers, reloaded.layers):
        assert new.method.rank(new) == old.method.rank(old)
    np.testing.assert_allclose(to_numpy(reloaded(x)), to_numpy(model(x)), atol=1e-6)


@pytest.mark.parametrize("rank,thin", [(3, True), (10, False)])
def test_strip_gives_two_thin_layers_when_cheaper(tmp_path, rank, thin):
    # 12 x 16: rank r costs r * 28 weights as two layers, 192 as one.
    method = keras_str.LowRankSTR(threshold_init=math.log(0.1))
    inputs = keras.Input((12,))
    hidden = low_rank_dense(16, method, name="lr", activation="relu")(inputs)
    outputs = keras.layers.Dense(3, name="head")(hidden)
    model = keras.Model(inputs, outputs)
    layer = model.get_layer("lr")
    rng = np.random.default_rng(0)
    sigma = np.where(np.arange(12) < rank, 1.0 + np.arange(12), 0.05)
    set_factors(layer, rng.normal(size=(12, 12)) / 4, sigma, rng.normal(size=(16, 12)) / 4)
    layer.bias.assign(rng.normal(size=16).astype("float32"))
    assert layer.method.rank(layer) == rank

    plain = keras_str.strip(model)
    x = rng.normal(size=(8, 12)).astype("float32")
    np.testing.assert_allclose(to_numpy(plain(x)), to_numpy(model(x)), rtol=1e-5, atol=1e-5)
    stripped = plain.get_layer("lr")
    if thin:
        assert isinstance(stripped, keras.Sequential)
        down, up = stripped.layers
        assert (down.units, down.use_bias) == (rank, False)
        assert (up.units, up.activation.__name__) == (16, "relu")
        assert down.kernel.shape == (12, rank) and up.kernel.shape == (rank, 16)
    else:
        assert type(stripped) is keras.layers.Dense
        assert np.linalg.matrix_rank(to_numpy(stripped.kernel), tol=1e-4) == rank
    path = str(tmp_path / "plain.keras")
    plain.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_allclose(to_numpy(reloaded(x)), to_numpy(plain(x)), atol=1e-6)


def test_a_low_rank_gru_trains_and_strips_to_a_plain_gru():
    keras.utils.set_random_seed(0)
    method = keras_str.LowRankSTR(threshold_init=math.log(0.8))
    model = keras.Sequential([
        keras.Input((6, 5)),
        keras_str.STRGRU(8, method=method, name="gru"),
        keras.layers.Dense(3),
    ])
    keras_str.apply_weight_decay(model, 1e-3)
    recurrent = model.layers[0].cell.recurrent_kernel_layer
    sigma = recurrent.sparsity_state["sigma"]
    # Two singular values below g(s) = 0.8: pruned ranks get no gradient.
    sigma.assign(np.concatenate([to_numpy(sigma)[:6], [0.1, 0.1]]).astype("float32"))
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 6, 5)).astype("float32"), rng.integers(0, 3, 32)
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    kernels = model.layers[0].sparse_sublayers()
    assert [k.name for k in kernels] == ["gru_kernel", "gru_recurrent_kernel"]
    ranks = [method.rank(k) for k in kernels]
    assert ranks[0] <= 5 and ranks[1] <= 6

    plain = keras_str.strip(model)
    gru = plain.layers[0]
    assert type(gru) is keras.layers.GRU
    # A cell kernel is one matrix: strip writes the product, of the kept rank.
    for matrix, rank in zip((gru.cell.kernel, gru.cell.recurrent_kernel), ranks):
        assert np.linalg.matrix_rank(to_numpy(matrix), tol=1e-5) == rank
    np.testing.assert_allclose(to_numpy(plain(x)), to_numpy(model(x)), atol=1e-5)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"max_rank": 0}, "max_rank=0"),
        ({"max_rank": 2.5}, "max_rank=2.5"),
        ({"max_rank": True}, "max_rank=True"),
        ({"max_rank": {"dense": -1}}, "max_rank="),
        ({"max_rank": {3: 2}}, "max_rank="),
        ({"threshold_init": float("nan")}, "threshold_init=nan"),
        ({"threshold_init": "low"}, "threshold_init='low'"),
        ({"threshold_fn": "relu"}, "threshold_fn='relu'"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        keras_str.LowRankSTR(**kwargs)


def test_kernels_that_are_not_matrices_are_refused_by_name():
    layer = keras_str.STRConv2D(8, 3, method=keras_str.LowRankSTR(), name="conv")
    with pytest.raises(ValueError, match=r"'conv'.*\(3, 3, 4, 8\)"):
        layer.build((None, 8, 8, 4))
    dense = keras.Sequential([
        keras.Input((8, 8, 4)), keras.layers.Conv2D(8, 3, name="conv"),
        keras.layers.Flatten(), keras.layers.Dense(2, name="head")])
    with pytest.raises(ValueError, match="keep_dense"):
        keras_str.sparsify(dense, method=keras_str.LowRankSTR(), weight_decay=1e-4)
    sparse = keras_str.sparsify(
        dense, method=keras_str.LowRankSTR(), keep_dense=["conv"], weight_decay=1e-4)
    assert isinstance(sparse.get_layer("head").method, keras_str.LowRankSTR)


def test_config_round_trip():
    method = keras_str.LowRankSTR(
        max_rank={"a": 4}, threshold_fn="sigmoid", threshold_init=-4.0,
        threshold_regularizer=keras.regularizers.L2(1e-4))
    again = keras_str.LowRankSTR.from_config(method.get_config())
    assert again.get_config() == method.get_config()
    copied = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(method))
    assert isinstance(copied, keras_str.LowRankSTR) and copied.max_rank == {"a": 4}


@pytest.mark.tensorflow
def test_thin_layers_export_to_tflite(tmp_path):
    method = keras_str.LowRankSTR(max_rank=4)
    model = keras.Sequential([
        keras.Input((32,)), low_rank_dense(32, method, activation="relu"),
        keras.layers.Dense(4)])
    plain = keras_str.strip(model)
    assert isinstance(plain.layers[0], keras.Sequential)
    path = tmp_path / "thin.tflite"
    keras_str.export_tflite(plain, path)
    x = np.random.default_rng(0).normal(size=(5, 32)).astype("float32")
    np.testing.assert_allclose(keras_str.predict_tflite(path, x), to_numpy(plain(x)), atol=1e-5)


def test_sparsify_shortcuts_keep_the_low_rank_method():
    dense = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    sparse = keras_str.sparsify(
        dense, method=keras_str.LowRankSTR(max_rank=2), threshold_init=-3.0,
        weight_decay=1e-4)
    method = sparse.layers[0].method
    assert isinstance(method, keras_str.LowRankSTR)
    assert (method.max_rank, method.threshold_init) == (2, -3.0)
    with pytest.raises(ValueError, match="threshold_granularity"):
        keras_str.sparsify(dense, method=keras_str.LowRankSTR(),
                           threshold_granularity="channel")


def test_report_shows_the_rank_and_what_strip_deploys():
    method = keras_str.LowRankSTR(max_rank=3)
    model = keras.Sequential([
        keras.Input((20,)),
        keras_str.STRDense(30, method=method, name="low"),
        keras.layers.Dense(2),
    ])
    row = keras_str.sparsity_report(model).rows[0]
    assert (row.rank, row.full_rank) == (3, 3)
    # Two thin layers: 3 x (20 + 30) weights instead of 20 x 30.
    assert row.params == 600 and row.nonzeros == 150
    assert "rank 3/3" in keras_str.sparsity_report(model).table()
    plain = keras_str.strip(model)
    assert plain.count_params() == 150 + 30 + 2 * 30 + 2
