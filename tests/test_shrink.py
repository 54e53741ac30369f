"""Removing dead channels: a narrower model with the same outputs, or a clear reason."""

import warnings

import keras
import numpy as np
import pytest

import keras_str
from keras_str.transforms.shrink import removed_channels
from tests.backend_utils import to_numpy

layers = keras.layers

# The graph rewrite itself is backend-agnostic; JAX runs these small models
# eagerly (seconds each), so there only the depthwise chain and the
# train -> strip checks run by default.
graph_only = pytest.mark.slow if keras.backend.backend() == "jax" else lambda f: f


def randomize(model, seed=0):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape) for w in layer.get_weights()])
        elif layer.weights:
            layer.set_weights([rng.normal(scale=0.5, size=w.shape) for w in layer.get_weights()])


def kill(model, name, channels, axis=-1, bias=None):
    """Zeroes `channels` of a layer's kernel along `axis` (outputs by default)."""
    layer = model.get_layer(name)
    kernel = to_numpy(layer.kernel).copy()
    index = [slice(None)] * kernel.ndim
    index[axis] = channels
    kernel[tuple(index)] = 0
    layer.kernel.assign(kernel)
    if bias is not None:
        values = to_numpy(layer.bias).copy()
        values[channels] = bias
        layer.bias.assign(values)


def assert_same_outputs(model, shrunk, shape, atol=1e-4):
    x = np.random.default_rng(1).normal(size=(3,) + shape).astype("float32")
    np.testing.assert_allclose(to_numpy(shrunk(x)), to_numpy(model(x)), atol=atol, rtol=1e-4)


def widths(model):
    return {
        layer.name: (layer.units if hasattr(layer, "units") else layer.filters)
        for layer in model.layers
        if isinstance(layer, (layers.Dense, layers.Conv2D)) and not isinstance(
            layer, layers.DepthwiseConv2D
        )
    }


@graph_only
def test_channel_multiple_rounds_kept_widths_up_with_dead_channels_as_zeros():
    model = keras.Sequential([
        keras.Input((8, 8, 3)),
        layers.Conv2D(16, 3, activation="relu", name="conv1"),
        layers.Conv2D(16, 1, activation="relu", name="conv2"),
        layers.Flatten(),
        layers.Dense(12, activation="relu", name="fc1"),
        layers.Dense(3, name="out"),
    ])
    randomize(model)
    kill(model, "conv1", list(range(11)), bias=-1.0)  # 5 kept: 8 with a multiple of 4
    kill(model, "conv2", list(range(7)), bias=-1.0)  # 9 kept: 12
    kill(model, "fc1", list(range(5)), bias=-1.0)  # 7 kept: 8
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        shrunk = keras_str.shrink_channels(model, channel_multiple=4)
    # Channels kept to round a width are what was asked: no warning.
    assert not [w for w in caught if "kept these" in str(w.message)]
    assert widths(shrunk) == {"conv1": 8, "conv2": 12, "fc1": 8, "out": 3}
    assert_same_outputs(model, shrunk, (8, 8, 3))
    assert removed_channels(model, channel_multiple=4) == {"conv1": 8, "conv2": 4, "fc1": 4}
    assert widths(keras_str.shrink_channels(model)) == {"conv1": 5, "conv2": 9, "fc1": 7, "out": 3}
    # No layer grows past its width: rounding 5, 9 and 7 up to 32 keeps them whole.
    assert keras_str.shrink_channels(model, channel_multiple=32) is model


@graph_only
def test_channel_multiple_rounds_channels_tied_by_a_residual_add_alike():
    inputs = keras.Input((6, 6, 8))
    a = layers.Conv2D(12, 1, name="a")(inputs)
    b = layers.Conv2D(12, 1, name="b")(inputs)
    x = layers.ReLU()(layers.Add()([a, b]))
    model = keras.Model(inputs, layers.Conv2D(5, 1, name="c")(x))
    randomize(model)
    kill(model, "a", list(range(7)), bias=0.0)
    kill(model, "b", list(range(1, 9)), bias=0.0)  # 0 stays in b: 1-6 go from both
    shrunk = keras_str.shrink_channels(model, channel_multiple=4)
    assert widths(shrunk) == {"a": 8, "b": 8, "c": 5}
    assert_same_outputs(model, shrunk, (6, 6, 8))


@pytest.mark.parametrize("value", [0, -4, 2.5, True, "8"])
def test_a_bad_channel_multiple_is_named(value):
    model = keras.Sequential([keras.Input((4,)), layers.Dense(3)])
    with pytest.raises(ValueError, match=f"channel_multiple={value!r}"):
        keras_str.shrink_channels(model, channel_multiple=value)
    with pytest.raises(ValueError, match=f"channel_multiple={value!r}"):
        keras_str.strip(model, channel_multiple=value)


@graph_only
def test_dead_dense_units_go_and_their_constant_folds_into_the_next_bias():
    model = keras.Sequential([
        keras.Input((6,)),
        layers.Dense(8, activation="relu", name="fc1"),
        layers.Dense(5, activation="tanh", name="fc2"),
        layers.Dense(3, name="out"),
    ])
    randomize(model)
    # Dead units output relu(bias): 0.7 for unit 1 (a constant to fold), 0 for 4.
    kill(model, "fc1", [1, 4], bias=[0.7, -0.2])
    kill(model, "fc2", [2])
    shrunk = keras_str.shrink_channels(model)
    assert isinstance(shrunk, keras.Sequential)
    assert widths(shrunk) == {"fc1": 6, "fc2": 4, "out": 3}
    assert_same_outputs(model, shrunk, (6,))
    assert shrunk.count_params() < model.count_params()
    # The model it was given is not changed.
    assert widths(model) == {"fc1": 8, "fc2": 5, "out": 3}


@graph_only
def test_a_softmax_classifier_absorbs_dead_inputs_and_keeps_its_outputs():
    # keras.applications classifiers end in Dense(softmax): the softmax mixes
    # the outputs, but the channels read by the layer can still go.
    inputs = keras.Input((6, 6, 2))
    x = layers.Conv2D(8, 3, activation="relu", name="conv")(inputs)
    x = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, layers.Dense(4, activation="softmax", name="predictions")(x))
    randomize(model)
    kill(model, "conv", [0, 3, 5], bias=[0.4, -1.0, 0.0])
    kill(model, "predictions", [1])  # a dead class stays: the softmax needs it
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        shrunk = keras_str.shrink_channels(model)
    assert widths(shrunk) == {"conv": 5, "predictions": 4}
    assert_same_outputs(model, shrunk, (6, 6, 2))
    kept = [str(w.message) for w in caught if "kept these all-zero" in str(w.message)]
    assert len(kept) == 1 and "predictions: 1 of 1" in kept[0]


@graph_only
def test_conv_batch_norm_pool_flatten_dense_chain():
    inputs = keras.Input((10, 10, 2))
    x = layers.Conv2D(6, 3, name="c1")(inputs)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.ReLU(6.0)(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(5, 1, name="c2")(x)  # 1x1 'valid': folds any constant
    x = layers.Flatten()(x)
    x = layers.Dense(4, name="fc")(x)
    model = keras.Model(inputs, x)
    randomize(model)
    kill(model, "c1", [0, 3])
    kill(model, "c2", [2])
    shrunk = keras_str.shrink_channels(model)
    assert widths(shrunk) == {"c1": 4, "c2": 4, "fc": 4}
    assert shrunk.get_layer("bn").gamma.shape == (4,)
    assert_same_outputs(model, shrunk, (10, 10, 2))


@graph_only
def test_same_padding_keeps_a_nonzero_constant_and_says_why():
    inputs = keras.Input((8, 8, 2))
    x = layers.Conv2D(4, 3, padding="same", activation="relu", name="c1")(inputs)
    x = layers.Conv2D(3, 3, padding="same", name="c2")(x)
    model = keras.Model(inputs, layers.GlobalAveragePooling2D()(x))
    randomize(model)
    # Dead filter 0 outputs relu(0.5) = 0.5: a 'same' conv sees it vary at
    # the borders (zero padding), so it stays. Filter 2 outputs relu(-1) = 0.
    kill(model, "c1", [0, 2], bias=[0.5, -1.0])
    with pytest.warns(UserWarning, match=r"c1: 1 of 2 .*'c2' \(Conv2D, padding 'same'\)"):
        shrunk = keras_str.shrink_channels(model)
    assert widths(shrunk) == {"c1": 3, "c2": 3}
    assert_same_outputs(model, shrunk, (8, 8, 2))


def test_a_dead_depthwise_filter_removes_its_channel_all_the_way_back():
    # MobileNet's pattern: pw -> BN -> ReLU6 -> dw ('same') -> BN -> ReLU6 -> pw.
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(6, 1, use_bias=False, name="pw1")(inputs)
    x = layers.BatchNormalization(name="pw1_bn")(x)
    x = layers.ReLU(6.0)(x)
    x = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(x)
    x = layers.BatchNormalization(name="dw_bn")(x)
    x = layers.ReLU(6.0)(x)
    x = layers.Conv2D(4, 1, use_bias=False, name="pw2")(x)
    model = keras.Model(inputs, layers.GlobalAveragePooling2D()(x))
    randomize(model)
    kill(model, "dw", [1, 4], axis=-2)  # pw1's filters 1 and 4 are alive
    shrunk = keras_str.shrink_channels(model)
    assert widths(shrunk) == {"pw1": 4, "pw2": 4}
    assert shrunk.get_layer("dw").kernel.shape == (3, 3, 4, 1)
    # The dead channels' constant went into pw2's new bias.
    assert shrunk.get_layer("pw2").use_bias
    assert_same_outputs(model, shrunk, (8, 8, 3))


@graph_only
def test_residual_add_removes_a_channel_only_where_every_branch_can_lose_it():
    inputs = keras.Input((6, 6, 2))
    a = layers.Conv2D(5, 1, name="a")(inputs)
    b = layers.Conv2D(5, 1, name="b")(inputs)
    x = layers.Add()([a, b])
    x = layers.Conv2D(3, 1, name="head")(x)
    model = keras.Model(inputs, layers.Flatten()(x))
    randomize(model)
    kill(model, "a", [0, 1])
    kill(model, "b", [1, 3])  # channel 1 is dead on both branches
    shrunk = keras_str.shrink_channels(model)
    assert widths(shrunk) == {"a": 4, "b": 4, "head": 3}
    assert_same_outputs(model, shrunk, (6, 6, 2))


@graph_only
def test_concatenate_keeps_each_input_offset():
    inputs = keras.Input((5,))
    a = layers.Dense(4, name="a")(inputs)
    b = layers.Dense(3, name="b")(inputs)
    x = layers.Concatenate()([a, b])
    model = keras.Model(inputs, layers.Dense(2, name="head")(x))
    randomize(model)
    kill(model, "a", [3])
    kill(model, "b", [0, 2])
    shrunk = keras_str.shrink_channels(model)
    assert widths(shrunk) == {"a": 3, "b": 1, "head": 2}
    assert_same_outputs(model, shrunk, (5,))


@graph_only
def test_outputs_unknown_layers_and_inputs_keep_their_channels():
    inputs = keras.Input((6,))
    x = layers.Dense(4, name="a")(inputs)
    x = layers.Reshape((2, 2))(x)
    x = layers.Flatten()(x)
    model = keras.Model(inputs, layers.Dense(3, name="out")(x))
    randomize(model)
    kill(model, "a", [1])
    kill(model, "out", [0])
    with pytest.warns(UserWarning, match="Reshape layer"):
        shrunk = keras_str.shrink_channels(model)
    assert shrunk is model
    assert removed_channels(model) == {}


@graph_only
def test_a_layer_keeps_at_least_one_channel():
    model = keras.Sequential([
        keras.Input((4,)),
        layers.Dense(3, activation="relu", name="fc"),
        layers.Dense(2, name="out"),
    ])
    randomize(model)
    kill(model, "fc", [0, 1, 2])
    shrunk = keras_str.shrink_channels(model)
    assert widths(shrunk)["fc"] == 1
    assert_same_outputs(model, shrunk, (4,))


def test_strip_shrinks_channel_structured_models_by_default():
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        layers.Conv2D(8, 3, activation="relu", name="conv"),
        layers.MaxPooling2D(),
        layers.Flatten(),
        layers.Dense(16, activation="relu", name="fc"),
        layers.Dense(3, name="out"),
    ])
    method = keras_str.StructuredSTR(
        "channel", target_sparsity=0.5, schedule=keras_str.PolynomialSchedule(0, 4)
    )
    sparse = keras_str.sparsify(model, method=method, keep_dense=["out"])
    x = np.random.default_rng(0).normal(size=(32, 8, 8, 1)).astype("float32")
    y = np.random.default_rng(1).integers(0, 3, size=(32,))
    sparse.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    sparse.fit(x, y, batch_size=8, epochs=2, verbose=0)
    plain = keras_str.strip(sparse, shrink=False)
    shrunk = keras_str.strip(sparse)
    assert widths(plain) == {"conv": 8, "fc": 16, "out": 3}
    alive = {
        name: int(np.any(to_numpy(plain.get_layer(name).kernel) != 0, axis=(0, 1, 2)[: len(
            plain.get_layer(name).kernel.shape) - 1]).sum())
        for name in ("conv", "fc")
    }
    assert alive["conv"] + alive["fc"] < 8 + 16
    assert widths(shrunk) == {**alive, "out": 3}
    np.testing.assert_allclose(to_numpy(shrunk(x)), to_numpy(sparse(x)), atol=1e-4)
    # Weight-level methods keep the architecture.
    unstructured = keras_str.sparsify(
        model, method=keras_str.ST3(0.5, keras_str.PolynomialSchedule(0, 4))
    )
    assert widths(keras_str.strip(unstructured)) == widths(plain)


def test_strip_shrink_argument_is_checked():
    model = keras.Sequential([keras.Input((3,)), keras_str.STRDense(2)])
    with pytest.raises(ValueError, match="shrink='yes'"):
        keras_str.strip(model, shrink="yes")


def conv_then_dense():
    return keras.Sequential([
        keras.Input((6, 6, 2)),
        layers.Conv2D(10, 3, name="conv"),
        layers.Flatten(),
        layers.Dense(3, name="out"),
    ])


def test_gmp_channel_structure_prunes_whole_filters_uniformly():
    model = conv_then_dense()
    method = keras_str.GMP(
        0.6, keras_str.PolynomialSchedule(0, 2), frequency=1, structure="channel"
    )
    sparse = keras_str.sparsify(model, method=method, keep_dense=["out"])
    x = np.random.default_rng(0).normal(size=(8, 6, 6, 2)).astype("float32")
    sparse.compile("sgd", "mse")
    sparse.fit(x, np.zeros((8, 3)), batch_size=4, epochs=2, verbose=0)
    kernel = to_numpy(sparse.get_layer("conv").thresholded_kernel())
    alive = np.any(kernel != 0, axis=(0, 1, 2))
    assert alive.sum() == 4
    # The kept filters are the largest by L1 norm of the raw kernel.
    norms = np.abs(to_numpy(sparse.get_layer("conv").raw_kernel)).sum(axis=(0, 1, 2))
    assert set(np.flatnonzero(alive)) == set(np.argsort(norms)[-4:])
    assert widths(keras_str.strip(sparse))["conv"] == 4
    config = method.get_config()
    assert config["structure"] == "channel"
    assert keras_str.GMP.from_config(config).structure == "channel"
    with pytest.raises(ValueError, match="structure='filter'"):
        keras_str.GMP(0.5, keras_str.PolynomialSchedule(0, 2), structure="filter")


@pytest.mark.parametrize("target, multiple, kept", [
    (0.6, 4, 4),  # 4 of 10 kept: already a multiple
    (0.5, 4, 4),  # 5 kept: the nearest multiple is 4
    (0.3, 4, 8),  # 7 kept: 8
    (0.2, 8, 8),  # 8 kept
    (0.9, 4, 4),  # 1 kept: at least one multiple
    (0.5, 16, 10),  # never past the layer's width
])
def test_gmp_channel_multiple_keeps_a_multiple_of_channels(target, multiple, kept):
    model = conv_then_dense()
    method = keras_str.GMP(
        target, keras_str.ConstantSchedule(), structure="channel", channel_multiple=multiple
    )
    sparse = keras_str.sparsify(model, method=method, keep_dense=["out"])
    conv = sparse.get_layer("conv")
    method = conv.method  # sparsify's copy, which holds the layers
    method.update(method.layers, keras.ops.convert_to_tensor(0, "int32"))
    alive = np.any(to_numpy(conv.thresholded_kernel()) != 0, axis=(0, 1, 2))
    assert alive.sum() == kept
    assert method.final_layer_sparsity(method.layers) == {"conv": pytest.approx(1 - kept / 10)}
    assert widths(keras_str.strip(sparse))["conv"] == kept
    assert keras_str.GMP.from_config(method.get_config()).channel_multiple == multiple


def depthwise_chain_with_a_residual():
    inputs = keras.Input((6, 6, 3))
    x = layers.Conv2D(12, 1, name="expand")(inputs)
    x = layers.BatchNormalization(name="expand_bn")(x)
    x = layers.DepthwiseConv2D(3, padding="same", name="depthwise")(x)
    y = layers.Conv2D(12, 1, name="branch")(inputs)
    x = layers.Add(name="add")([x, y])
    x = layers.ReLU(name="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(2, name="out")(x))


@graph_only
@pytest.mark.parametrize("multiple, kept", [(1, 7), (4, 8)])
def test_gmp_channel_prunes_the_channels_strip_removes_together_as_one(multiple, kept):
    model = depthwise_chain_with_a_residual()
    randomize(model)
    method = keras_str.GMP(
        0.4, keras_str.ConstantSchedule(), structure="channel", channel_multiple=multiple
    )
    sparse = keras_str.sparsify(model, method=method, keep_dense=["out"])
    method = sparse.get_layer("expand").method
    method.update(method.layers, keras.ops.convert_to_tensor(0, "int32"))
    alive = {
        name: np.any(to_numpy(sparse.get_layer(name).thresholded_kernel()) != 0, axis=(0, 1, 2))
        for name in ("expand", "branch")
    }
    alive["depthwise"] = np.any(
        to_numpy(sparse.get_layer("depthwise").thresholded_kernel()) != 0, axis=(0, 1, 3)
    )
    # One set of channels in all three layers, so strip removes the target's
    # share, not the union of three layers' choices.
    assert alive["expand"].sum() == kept
    np.testing.assert_array_equal(alive["expand"], alive["depthwise"])
    np.testing.assert_array_equal(alive["expand"], alive["branch"])
    expected = {name: pytest.approx(1 - kept / 12) for name in ("expand", "depthwise", "branch")}
    assert method.final_layer_sparsity(method.layers) == expected
    stripped = keras_str.strip(sparse)
    assert widths(stripped) == {"expand": kept, "branch": kept, "out": 2}
    assert_same_outputs(sparse, stripped, (6, 6, 3))


@graph_only
def test_gmp_channel_group_takes_its_largest_layer_target():
    model = depthwise_chain_with_a_residual()
    randomize(model)
    method = keras_str.GMP(
        0.25, keras_str.ConstantSchedule(), structure="channel",
        layer_targets={"depthwise": 0.5},
    )
    sparse = keras_str.sparsify(model, method=method, keep_dense=["out"])
    method = sparse.get_layer("expand").method
    assert method.final_layer_sparsity(method.layers) == {
        "expand": 0.5, "depthwise": 0.5, "branch": 0.5
    }


def test_gmp_channel_multiple_needs_channel_structure():
    with pytest.raises(ValueError, match="channel_multiple=4"):
        keras_str.GMP(0.5, keras_str.ConstantSchedule(), channel_multiple=4)
    with pytest.raises(ValueError, match="channel_multiple=0"):
        keras_str.GMP(0.5, keras_str.ConstantSchedule(), structure="channel", channel_multiple=0)


def test_gmp_channel_structure_removes_a_pruned_filter_with_its_bias():
    # relu(bias) > 0 of a filter the mask zeroed would be a constant channel
    # the "same"-padded conv after it cannot fold: the filter would stay.
    inputs = keras.Input((6, 6, 2))
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="conv")(inputs)
    x = layers.Conv2D(4, 3, padding="same", name="next")(x)
    model = keras.Model(inputs, layers.GlobalAveragePooling2D()(x))
    model.get_layer("conv").bias.assign(np.linspace(0.5, 1.0, 8).astype("float32"))
    method = keras_str.GMP(0.5, keras_str.ConstantSchedule(), frequency=1, structure="channel")
    sparse = keras_str.sparsify(model, method=method, keep_dense=["next"])
    x = np.random.default_rng(0).normal(size=(4, 6, 6, 2)).astype("float32")
    sparse.compile(keras.optimizers.SGD(0.0), "mse")
    sparse.fit(x, np.zeros((4, 4)), batch_size=4, epochs=1, verbose=0)
    layer = sparse.get_layer("conv")
    alive = np.any(to_numpy(layer.thresholded_kernel()) != 0, axis=(0, 1, 2))
    assert alive.sum() == 4
    np.testing.assert_array_equal(to_numpy(layer.bias) != 0, alive)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*kept these all-zero channels")
        stripped = keras_str.strip(sparse)
    assert widths(stripped)["conv"] == 4
    np.testing.assert_allclose(to_numpy(stripped(x)), to_numpy(sparse(x)), rtol=1e-5, atol=1e-5)


@pytest.mark.tensorflow
def test_shrunk_model_exports_smaller_with_the_same_outputs(tmp_path):
    inputs = keras.Input((12, 12, 1))
    x = layers.Conv2D(16, 3, activation="relu", name="c1")(inputs)
    x = layers.Conv2D(16, 3, activation="relu", name="c2")(x)
    x = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, layers.Dense(4, name="out")(x))
    randomize(model)
    kill(model, "c1", list(range(8)))
    kill(model, "c2", list(range(0, 16, 2)))
    shrunk = keras_str.shrink_channels(model)
    before = keras_str.export_tflite(model, tmp_path / "before.tflite")
    after = keras_str.export_tflite(shrunk, tmp_path / "after.tflite")
    assert after.size_bytes < before.size_bytes
    x = np.random.default_rng(0).normal(size=(2, 12, 12, 1)).astype("float32")
    np.testing.assert_allclose(
        keras_str.predict_tflite(tmp_path / "after.tflite", x), to_numpy(model(x)), atol=1e-4
    )
    reloaded_path = tmp_path / "shrunk.keras"
    shrunk.save(reloaded_path)
    reloaded = keras.saving.load_model(reloaded_path)
    np.testing.assert_allclose(to_numpy(reloaded(x)), to_numpy(model(x)), atol=1e-4)


APPLICATIONS = {
    "MobileNet": lambda: keras.applications.MobileNet(
        weights=None, input_shape=(96, 96, 3), alpha=0.25),
    "MobileNetV2": lambda: keras.applications.MobileNetV2(
        weights=None, input_shape=(96, 96, 3), alpha=0.35),
    "ResNet50": lambda: keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3)),
    "DenseNet121": lambda: keras.applications.DenseNet121(weights=None, input_shape=(64, 64, 3)),
    "EfficientNetB0": lambda: keras.applications.EfficientNetB0(
        weights=None, input_shape=(64, 64, 3)),
}


# JAX runs the models eagerly, op by op (about a minute for MobileNet here).
@pytest.mark.parametrize("name", [
    pytest.param(
        name,
        marks=() if name == "MobileNet" and keras.backend.backend() != "jax"
        else pytest.mark.slow,
    )
    for name in APPLICATIONS
])
def test_applications_shrink_exactly(name):
    # 30 % of every conv's filters (depthwise: channels) dead at random:
    # whatever can go goes, and the outputs do not change.
    model = APPLICATIONS[name]()
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if type(layer) in (layers.Conv2D, layers.DepthwiseConv2D):
            axis = -2 if isinstance(layer, layers.DepthwiseConv2D) else -1
            dead = rng.random(layer.kernel.shape[axis]) < 0.3
            kill(model, layer.name, dead, axis=axis)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the kept channels are listed
        shrunk = keras_str.shrink_channels(model, check=False)
    assert shrunk.count_params() < 0.95 * model.count_params()
    x = rng.normal(size=(2,) + model.input_shape[1:]).astype("float32")
    np.testing.assert_allclose(to_numpy(shrunk(x)), to_numpy(model(x)), atol=1e-6)
