"""Channel STR through BatchNormalization: the layer, sparsify's routing, strip and shrink."""

import warnings

import keras
import numpy as np
import pytest
from keras.src import testing

import keras_str
from tests.backend_utils import to_numpy


def channel_method(target=None, **kwargs):
    if target is None:
        return keras_str.StructuredSTR("channel", **kwargs)
    return keras_str.StructuredSTR(
        "channel", target_sparsity=target, schedule=keras_str.ConstantSchedule(), **kwargs
    )


def numpy_batch_norm(x, gamma, beta, mean, variance, epsilon):
    return gamma * (x - mean) / np.sqrt(variance + epsilon) + beta


class STRBatchNormalizationTest(testing.TestCase):
    def test_keras_layer_checks(self):
        self.run_layer_test(
            keras_str.STRBatchNormalization,
            init_kwargs={"method": channel_method()},
            input_shape=(2, 4, 4, 3),
            expected_output_shape=(2, 4, 4, 3),
            # gamma, beta, s; the moving statistics, the step and
            # non-finite counters.
            expected_num_trainable_weights=3,
            expected_num_non_trainable_weights=4,
            expected_num_seed_generators=0,
            expected_num_losses=0,
            supports_masking=True,
        )


def built_batch_norm(gamma, beta, threshold):
    layer = keras_str.STRBatchNormalization(method=channel_method(threshold_init=np.log(threshold)))
    layer.build((None, 4, 4, len(gamma)))
    layer._gamma.assign(np.asarray(gamma, "float32"))
    layer._beta.assign(np.asarray(beta, "float32"))
    rng = np.random.default_rng(0)
    layer.moving_mean.assign(rng.normal(size=len(gamma)).astype("float32"))
    layer.moving_variance.assign(rng.uniform(0.5, 2.0, len(gamma)).astype("float32"))
    return layer


def test_a_channel_at_or_below_the_threshold_outputs_exactly_zero():
    gamma = np.array([2.0, -0.3, 0.1, 1.0], "float32")
    beta = np.array([0.5, 0.7, -0.4, -1.0], "float32")
    layer = built_batch_norm(gamma, beta, threshold=0.5)
    x = np.random.default_rng(1).normal(size=(3, 4, 4, 4)).astype("float32")
    factors = np.maximum(1.0 - 0.5 / np.abs(gamma), 0.0)  # [0.75, 0, 0, 0.5]
    expected = factors * numpy_batch_norm(
        x, gamma, beta, to_numpy(layer.moving_mean), to_numpy(layer.moving_variance),
        layer.epsilon,
    )
    np.testing.assert_allclose(to_numpy(layer(x)), expected, rtol=1e-5, atol=1e-5)
    # In training too (batch statistics): the pruned channels are exactly 0.
    trained = to_numpy(layer(x, training=True))
    assert np.all(trained[..., 1:3] == 0)
    assert np.all(np.any(trained[..., [0, 3]] != 0, axis=(0, 1, 2)))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="scale=False"):
        keras_str.STRBatchNormalization(scale=False)
    layer = keras_str.STRBatchNormalization(axis=1, method=channel_method())
    with pytest.raises(ValueError, match="axis=1"):
        layer.build((None, 3, 8, 8))


def conv_net(extra_consumer=False):
    inputs = keras.Input((8, 8, 2))
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="conv")(inputs)
    normalized = keras.layers.BatchNormalization(name="conv_bn")(x)
    x = keras.layers.ReLU()(normalized)
    x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(x)
    x = keras.layers.BatchNormalization(name="dw_bn")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(8, 1, use_bias=False, name="pw")(x)
    if extra_consumer:
        pointwise = x
        x = keras.layers.BatchNormalization(name="pw_bn")(x)
        x = keras.layers.Add()([x, pointwise])
    else:
        x = keras.layers.BatchNormalization(name="pw_bn")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(x))


def layer_types(model):
    return {layer.name: type(layer).__name__ for layer in model.layers}


def test_sparsify_thresholds_the_batch_norm_a_layer_feeds():
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        sparse = keras_str.sparsify(conv_net(), method=channel_method(0.5), keep_dense=["logits"])
    types = layer_types(sparse)
    for name in ("conv_bn", "dw_bn", "pw_bn"):
        assert types[name] == "STRBatchNormalization"
    for name, kind in (("conv", "Conv2D"), ("dw", "DepthwiseConv2D"), ("pw", "Conv2D")):
        assert types[name] == kind
    rows = {row.name: row for row in keras_str.sparsity_report(sparse).rows}
    assert rows["conv"].note == "channels thresholded by conv_bn"
    assert rows["conv_bn"].dense_macs == 0


def test_other_methods_and_ambiguous_pairs_keep_filter_thresholds():
    # Other methods never touch BatchNormalization, nor warn about it.
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        for method in (
            keras_str.STR(target_sparsity=0.5, schedule=keras_str.ConstantSchedule()),
            keras_str.GMP(0.5, keras_str.ConstantSchedule(), structure="channel"),
        ):
            sparse = keras_str.sparsify(conv_net(), method=method, keep_dense=["logits"])
            assert "STRBatchNormalization" not in layer_types(sparse).values()
    # A layer whose output also goes elsewhere keeps its filter threshold, with the warning.
    with pytest.warns(UserWarning, match=r"feed BatchNormalization \(\['pw'\]\)"):
        sparse = keras_str.sparsify(
            conv_net(extra_consumer=True), method=channel_method(0.5), keep_dense=["logits"]
        )
    types = layer_types(sparse)
    assert types["pw"] == "STRConv2D" and types["pw_bn"] == "BatchNormalization"
    assert types["conv_bn"] == "STRBatchNormalization"
    # Keeping the BatchNormalization dense keeps its producer's filters thresholded.
    with pytest.warns(UserWarning, match="feed BatchNormalization"):
        sparse = keras_str.sparsify(
            conv_net(), method=channel_method(0.5), keep_dense=["logits", "dw_bn"]
        )
    assert layer_types(sparse)["dw"] == "STRDepthwiseConv2D"


def test_trained_channels_are_removed_with_their_filters():
    keras.utils.set_random_seed(0)
    model = conv_net()
    method = keras_str.StructuredSTR(
        "channel", target_sparsity=0.5, schedule=keras_str.PolynomialSchedule(0, 8),
        budget="macs",
    )
    sparse = keras_str.sparsify(model, method=method, keep_dense=["logits"])
    sparse.compile(
        keras.optimizers.SGD(0.05),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8, 8, 2)).astype("float32")
    y = rng.integers(0, 3, 64)
    sparse.fit(x, y, epochs=2, batch_size=8, verbose=0)
    dead = {
        layer.name: set(np.flatnonzero(to_numpy(layer.thresholded_kernel()) == 0))
        for layer in sparse.layers
        if isinstance(layer, keras_str.STRBatchNormalization)
    }
    assert any(dead.values()), dead
    stripped = keras_str.strip(sparse)
    widths = {layer.name: layer.output.shape[-1] for layer in stripped.layers}
    # Each dead channel took its filter along; the depthwise chain ties the
    # channels of conv_bn and dw_bn (a channel dead in either goes from both).
    assert widths["conv"] == widths["dw"] == 8 - len(dead["conv_bn"] | dead["dw_bn"])
    assert widths["pw"] == 8 - len(dead["pw_bn"])
    np.testing.assert_allclose(
        to_numpy(stripped(x[:8])), to_numpy(sparse(x[:8])), rtol=1e-4, atol=1e-5
    )
    # The MACs budget weighs each channel by its filter's multiply-adds.
    report = keras_str.sparsity_report(stripped)
    dense_macs = keras_str.sparsity_report(model).totals["dense_macs"]
    assert report.totals["dense_macs"] < 0.75 * dense_macs


def test_macs_per_channel_are_the_producing_filters():
    from keras_str.core.macs import uses_per_weight

    sparse = keras_str.sparsify(conv_net(), method=channel_method(0.5), keep_dense=["logits"])
    layers = {layer.name: layer for layer in sparse.layers}
    # conv: 3x3x2 taps at 8x8 outputs; dw: 3x3 taps; pw: 8 inputs.
    assert uses_per_weight(layers["conv_bn"]) == 18 * 64
    assert uses_per_weight(layers["dw_bn"]) == 9 * 64
    assert uses_per_weight(layers["pw_bn"]) == 8 * 64


def test_save_and_reload_keeps_the_thresholded_channels(tmp_path):
    sparse = keras_str.sparsify(conv_net(), method=channel_method(0.5), keep_dense=["logits"])
    layer = sparse.get_layer("conv_bn")
    layer._gamma.assign(np.linspace(-1.0, 1.0, 8).astype("float32"))
    path = str(tmp_path / "bn.keras")
    sparse.save(path)
    loaded = keras_str.load_model(path)
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 2)).astype("float32")
    np.testing.assert_allclose(to_numpy(loaded(x)), to_numpy(sparse(x)), rtol=1e-5, atol=1e-6)
    assert isinstance(loaded.get_layer("conv_bn"), keras_str.STRBatchNormalization)


def test_with_a_target_only_the_global_offset_moves_the_threshold():
    targeted = keras_str.STRBatchNormalization(method=channel_method(0.5))
    targeted.build((None, 4, 4, 3))
    assert not targeted.threshold_param.trainable
    assert all(w is not targeted.threshold_param for w in targeted.trainable_weights)
    # Plain STR learns `s` (with weight decay): there it stays trainable.
    learned = keras_str.STRBatchNormalization(method=channel_method())
    learned.build((None, 4, 4, 3))
    assert learned.threshold_param.trainable
