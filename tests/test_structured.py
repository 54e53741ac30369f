"""Structured STR: group soft-thresholding by channel and by block."""

import keras
import numpy as np
import pytest

import keras_str
from keras_str.ops import group_soft_threshold
from tests.backend_utils import gradients
from tests.backend_utils import to_numpy


def numpy_block_norms(kernel, size, axis):
    """Each entry's block RMS, blocks of `size` along `axis` (last one shorter)."""
    moved = np.moveaxis(kernel, axis, 0)
    norms = np.zeros_like(moved)
    for start in range(0, moved.shape[0], size):
        block = moved[start:start + size]
        norms[start:start + size] = np.sqrt(np.mean(block**2, axis=0, keepdims=True))
    return np.moveaxis(norms, 0, axis)


def test_group_soft_threshold_is_the_group_lasso_proximal_step():
    x = np.array([[3.0, 4.0], [0.3, 0.4], [-1.0, 0.0]], "float32")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    out = to_numpy(group_soft_threshold(x, 1.0, norms))
    np.testing.assert_allclose(out, [[2.4, 3.2], [0.0, 0.0], [0.0, 0.0]], atol=1e-6)
    # A group of one entry is the plain soft threshold.
    single = to_numpy(group_soft_threshold(x, 0.5, np.abs(x) + 1e-30))
    np.testing.assert_allclose(single, to_numpy(keras_str.ops.soft_threshold(x, 0.5)), atol=1e-6)


@pytest.mark.parametrize("block_axis,axis", [("input", 0), ("output", 1)])
@pytest.mark.parametrize("size", [4, 3])
def test_block_kernel_matches_numpy(block_axis, axis, size):
    method = keras_str.StructuredSTR("block", block_size=size, block_axis=block_axis,
                                     threshold_init=np.log(0.4))
    layer = keras_str.STRDense(10, method=method)
    layer.build((None, 14))
    w = np.random.default_rng(0).normal(scale=0.5, size=(14, 10)).astype("float32")
    layer.raw_kernel.assign(w)
    norms = numpy_block_norms(w, size, axis)
    expected = w * np.maximum(1.0 - 0.4 / norms, 0.0)
    actual = to_numpy(layer.thresholded_kernel())
    np.testing.assert_allclose(actual, expected, atol=1e-5)
    zero = expected == 0
    assert 0.1 < zero.mean() < 0.9
    # Zeros come in whole blocks.
    np.testing.assert_array_equal(zero, numpy_block_norms((~zero).astype("float32"), size, axis) == 0)


def test_channel_structure_zeroes_whole_filters():
    method = keras_str.StructuredSTR("channel", threshold_init=np.log(0.3))
    layer = keras_str.STRConv2D(8, 3, method=method)
    layer.build((None, 6, 6, 4))
    rng = np.random.default_rng(0)
    scales = np.array([0.05, 1.0] * 4, "float32")
    layer.raw_kernel.assign((rng.normal(size=(3, 3, 4, 8)) * scales).astype("float32"))
    kernel = to_numpy(layer.thresholded_kernel())
    alive = np.any(kernel != 0, axis=(0, 1, 2))
    np.testing.assert_array_equal(alive, scales > 0.5)


@pytest.mark.parametrize("structure", ["block", "channel"])
def test_a_target_is_reached_in_the_train_step(structure):
    keras.utils.set_random_seed(0)
    method = keras_str.StructuredSTR(
        structure, target_sparsity=0.75,
        schedule=keras_str.PolynomialSchedule(0, 6))
    model = keras.Sequential([
        keras.Input((16,)),
        keras_str.STRDense(32, method=method, activation="relu"),
        keras_str.STRDense(8, method=method),
    ])
    torch = keras.backend.backend() == "torch"  # one step per execution there
    model.compile(keras.optimizers.Adam(1e-3), "mse",
                  steps_per_execution=1 if torch else 4, jit_compile=not torch)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 16)).astype("float32"), rng.normal(size=(64, 8)).astype("float32")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    sparsity = keras_str.sparsity_report(model).totals["sparsity"]
    # Exact up to one group (a unit of 16 or 32 weights, a block of 4) at the
    # last selection; the optimizer's last step (Adam's momentum) may move
    # one more group across its stored threshold.
    assert sparsity == pytest.approx(0.75, abs=2 * 32 / (16 * 32 + 32 * 8))
    kernel = to_numpy(model.layers[0].thresholded_kernel())
    if structure == "block":
        blocks = np.abs(kernel).reshape(4, 4, 32).sum(axis=1)
        assert np.array_equal(np.repeat(blocks == 0, 4, axis=0), kernel == 0)
    else:
        units = np.all(kernel == 0, axis=0)
        assert np.array_equal(np.broadcast_to(units, kernel.shape), kernel == 0)


def test_plain_structured_str_learns_with_weight_decay():
    keras.utils.set_random_seed(0)
    method = keras_str.StructuredSTR("block", threshold_init=-4.0)
    model = keras.Sequential([keras.Input((16,)), keras_str.STRDense(16, method=method)])
    keras_str.apply_weight_decay(model, 0.05)
    model.compile(keras.optimizers.SGD(0.5), "mse")
    x = np.random.default_rng(0).normal(size=(64, 16)).astype("float32")
    before = float(to_numpy(model.layers[0].threshold))
    model.fit(x, np.zeros((64, 16)), batch_size=16, epochs=5, verbose=0)
    assert float(to_numpy(model.layers[0].threshold)) > before
    assert keras_str.sparsity_report(model).totals["sparsity"] > 0.2


def test_config_round_trip_and_reload(tmp_path):
    method = keras_str.StructuredSTR(
        "block", block_size=16, block_axis="output", target_sparsity=0.5,
        schedule=keras_str.PolynomialSchedule(0, 10), threshold_granularity="channel",
        scope="layer", max_layer_sparsity=0.75)
    again = keras_str.StructuredSTR.from_config(method.get_config())
    assert again.get_config() == method.get_config()
    model = keras.Sequential([keras.Input((32,)), keras_str.STRDense(16, method=method)])
    x = np.ones((2, 32), "float32")
    path = str(tmp_path / "m.keras")
    model.save(path)
    reloaded = keras_str.load_model(path)
    assert isinstance(reloaded.layers[0].method, keras_str.StructuredSTR)
    assert reloaded.layers[0].method.block_axis == "output"
    np.testing.assert_allclose(to_numpy(reloaded(x)), to_numpy(model(x)), atol=1e-6)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"structure": "filters"}, "structure"),
        ({"block_size": 0}, "block_size"),
        ({"block_axis": "rows"}, "block_axis"),
        ({"threshold_granularity": "weight"}, "threshold_granularity"),
        ({"max_layer_sparsity": 1.0}, "max_layer_sparsity=1.0"),
        ({"max_layer_sparsity": -0.1}, "max_layer_sparsity=-0.1"),
        ({"max_layer_sparsity": True}, "max_layer_sparsity=True"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        keras_str.StructuredSTR(**kwargs)


def test_blocks_on_a_depthwise_kernel_are_refused_by_name():
    layer = keras_str.STRDepthwiseConv2D(3, method=keras_str.StructuredSTR("block"), name="dw")
    with pytest.raises(ValueError, match=r"'dw'.*structure='channel'"):
        layer.build((None, 8, 8, 4))


@pytest.mark.tensorflow
def test_block_sparse_dense_layers_stay_sparse_in_litert(tmp_path):
    keras.utils.set_random_seed(0)
    method = keras_str.StructuredSTR(
        "block", target_sparsity=0.9, schedule=keras_str.ConstantSchedule())
    model = keras.Sequential([
        keras.Input((64,)),
        keras_str.STRDense(64, method=method, activation="relu"),
        keras_str.STRDense(64, method=method),
    ])
    x = np.random.default_rng(0).normal(size=(16, 64)).astype("float32")
    model.compile("adam", "mse")
    model.fit(x, x, epochs=1, verbose=0)
    path = tmp_path / "mlp.tflite"
    report = keras_str.export_tflite(model, path)
    kept = [t for t in report.sparse_tensors if not t.densified]
    assert len(kept) == 2, report.sparse_tensors
    assert all(t.encoding == "blocks 4" for t in kept), kept
    assert report.densify_ops == 0
    np.testing.assert_allclose(
        keras_str.predict_tflite(path, x), to_numpy(keras_str.strip(model)(x)), atol=1e-4)


@pytest.mark.parametrize("scope", ["global", "sigma"])
def test_sigma_scope_judges_each_layer_against_its_initial_scale(scope):
    method = keras_str.StructuredSTR(
        "channel", target_sparsity=0.5, schedule=keras_str.ConstantSchedule(), scope=scope)
    wide = keras_str.STRDense(32, method=method, kernel_initializer=keras.initializers.RandomNormal(stddev=1.0))
    narrow = keras_str.STRDense(32, method=method, kernel_initializer=keras.initializers.RandomNormal(stddev=0.01))
    wide.build((None, 16))
    narrow.build((None, 32))
    fractions = method.final_layer_sparsity(method.layers)
    if scope == "global":
        # One RMS scale: all the zeros land in the layer initialised 100x smaller.
        assert fractions[narrow.name] == 0.75 and fractions[wide.name] == 0.0
    else:
        assert 0.2 < fractions[narrow.name] < 0.8 and 0.2 < fractions[wide.name] < 0.8
        # The threshold a layer computes with is sigma_l * g(s).
        np.testing.assert_allclose(
            to_numpy(method.threshold(narrow)), 0.01 * np.exp(-10.0), rtol=1e-5)
    with pytest.raises(ValueError, match="scope='local'"):
        keras_str.StructuredSTR("channel", scope="local")


def test_rescale_keeps_each_layers_kept_magnitude():
    # Targeted methods rescale by default: a threshold at the target quantile
    # would otherwise shrink every kept group (group norms are much alike).
    targeted = keras_str.StructuredSTR(
        "channel", target_sparsity=0.5, schedule=keras_str.ConstantSchedule())
    assert targeted.rescale and not keras_str.StructuredSTR("channel").rescale
    layer = keras_str.STRDense(8, method=keras_str.StructuredSTR(
        "channel", threshold_init=np.log(0.9), rescale=True))
    layer.build((None, 16))
    rng = np.random.default_rng(0)
    w = (rng.normal(size=(16, 8)) * np.linspace(0.5, 1.5, 8)).astype("float32")
    layer.raw_kernel.assign(w)
    kernel = to_numpy(layer.thresholded_kernel())
    kept = np.any(kernel != 0, axis=0)
    assert 0 < kept.sum() < 8
    np.testing.assert_allclose(np.abs(kernel).sum(), np.abs(w[:, kept]).sum(), rtol=1e-5)
    # Within the layer, soft-thresholding's ordering stays: a kept unit's
    # factor grows with its RMS.
    rms = np.sqrt(np.mean(w**2, axis=0))
    factors = np.abs(kernel).sum(axis=0)[kept] / np.abs(w).sum(axis=0)[kept]
    assert np.all(np.diff(factors[np.argsort(rms[kept])]) > 0)
    with pytest.raises(ValueError, match="rescale='yes'"):
        keras_str.StructuredSTR("channel", rescale="yes")


def _dead_groups(layer):
    kernel = to_numpy(layer.thresholded_kernel())
    return np.all(kernel.reshape(-1, kernel.shape[-1]) == 0, axis=0)


def test_layer_scope_ignores_a_kernels_absolute_scale():
    # A BatchNorm after the layer divides out the kernel's scale: with
    # scope="layer" the same filters die whatever that scale has drifted to.
    rng = np.random.default_rng(0)
    w = (rng.normal(size=(3, 3, 4, 16)) * np.linspace(0.2, 2.0, 16)).astype("float32")
    dead = []
    for scale in (1.0, 0.01):
        method = keras_str.StructuredSTR("channel", threshold_init=np.log(0.8), scope="layer")
        layer = keras_str.STRConv2D(16, 3, method=method)
        layer.build((None, 8, 8, 4))
        layer.raw_kernel.assign(w * scale)
        dead.append(_dead_groups(layer))
        rms = np.sqrt(np.mean((w * scale) ** 2))
        np.testing.assert_allclose(to_numpy(layer.threshold), 0.8 * rms, rtol=1e-5)
    np.testing.assert_array_equal(dead[0], dead[1])
    assert 0 < dead[0].sum() < 16


def wide_and_narrow(method, narrow_kernel):
    """Two Dense layers sharing `method` (the narrow one's kernel mapped by `narrow_kernel`), updated once."""
    wide = keras_str.STRDense(32, method=method)
    narrow = keras_str.STRDense(8, method=method)
    wide.build((None, 16))
    narrow.build((None, 32))
    narrow.raw_kernel.assign(narrow_kernel(to_numpy(narrow.raw_kernel)))
    method.update(method.layers, keras.ops.convert_to_tensor(1))
    return wide, narrow


@pytest.mark.parametrize("scope", ["global", "sigma", "layer"])
def test_a_shared_target_never_empties_a_layer(scope):
    # A layer whose filters are all far smaller than the others' would be
    # emptied by a global threshold; it keeps one group (the default floor).
    method = keras_str.StructuredSTR(
        "channel", target_sparsity=0.9, schedule=keras_str.ConstantSchedule(), scope=scope)
    wide, narrow = wide_and_narrow(method, lambda kernel: kernel * 1e-3)
    fractions = method.final_layer_sparsity(method.layers)
    for layer in (wide, narrow):
        dead = _dead_groups(layer)
        assert 0 < (~dead).sum(), layer.name
        assert dead.mean() == pytest.approx(fractions[layer.name]), layer.name
    if scope == "global":
        assert (~_dead_groups(narrow)).sum() == 1
    # The kept group does not cost the target: the other layer makes it up.
    zeros = sum(int(np.sum(to_numpy(layer.thresholded_kernel()) == 0)) for layer in (wide, narrow))
    assert zeros / (16 * 32 + 32 * 8) == pytest.approx(0.9, abs=32 / 768)


@pytest.mark.parametrize("structure", ["channel", "block"])
def test_max_layer_sparsity_is_a_floor_on_each_layers_groups(structure):
    method = keras_str.StructuredSTR(
        structure, target_sparsity=0.9, schedule=keras_str.ConstantSchedule(),
        max_layer_sparsity=0.5)
    small = keras_str.STRDense(8, method=method)
    large = keras_str.STRDense(8, method=method)
    small.build((None, 16))
    large.build((None, 16))
    small.raw_kernel.assign(to_numpy(small.raw_kernel) * 1e-3)
    method.update(method.layers, keras.ops.convert_to_tensor(1))
    kernel = to_numpy(small.thresholded_kernel())
    if structure == "channel":
        zero_share = np.all(kernel == 0, axis=0).mean()
    else:
        zero_share = np.all(kernel.reshape(4, 4, 8) == 0, axis=1).mean()
    assert zero_share == 0.5
    fractions = method.final_layer_sparsity(method.layers)
    assert fractions[small.name] == pytest.approx(0.5)
    # The floor binds on every layer: the method reaches less than its target.
    assert fractions[large.name] == pytest.approx(0.5)


def test_groups_kept_by_the_floor_lose_at_most_half_their_norm():
    # Capping the threshold at the next group's norm would leave the kept
    # group a sliver (1 - n2 / n1) that rescale then multiplies back up, and
    # the gradient with it: training went NaN on MobileNet.
    method = keras_str.StructuredSTR(
        "channel", target_sparsity=0.9, schedule=keras_str.ConstantSchedule(), rescale=False)
    raw = np.ones((32, 8), "float32") * 1e-3 * np.linspace(1.0, 1.01, 8)
    _, narrow = wide_and_narrow(method, lambda kernel: raw)
    effective = to_numpy(narrow.thresholded_kernel())
    kept = ~_dead_groups(narrow)
    assert kept.sum() == 1 and kept[-1]
    assert np.linalg.norm(effective[:, kept]) == pytest.approx(
        0.5 * np.linalg.norm(raw[:, kept]), rel=1e-4)


def test_a_runaway_threshold_keeps_gradients_finite():
    # exp(s) overflows t / norm^2 for a zeroed group of tiny norm (0 * inf
    # = NaN in its gradient) unless the threshold stops at the layer's
    # largest group, past which it changes nothing.
    layer = keras_str.STRDense(4, method=keras_str.StructuredSTR("channel", threshold_init=80.0))
    layer.build((None, 3))
    kernel = np.ones((3, 4), "float32") * np.array([1.0, 1e-7, 2.0, 3.0], "float32")
    layer.raw_kernel.assign(kernel)
    (grad,) = gradients(lambda: keras.ops.sum(layer.thresholded_kernel()), [layer.raw_kernel])
    assert np.all(np.isfinite(grad)), grad
    assert np.count_nonzero(np.any(to_numpy(layer.thresholded_kernel()) != 0, axis=0)) == 1
