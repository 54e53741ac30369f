"""keras.applications models, built offline (`weights=None`): all kernels become sparse."""

import warnings

import keras
import numpy as np
import pytest

import keras_str
from tests.backend_utils import to_numpy

# Small inputs keep them fast; these are the sizes each architecture accepts.
MIN_INPUT_SIZE = {
    "InceptionResNetV2": 75,
    "InceptionV3": 75,
    "NASNetLarge": 331,
    "NASNetMobile": 224,
    "Xception": 71,
}
ALL_MODELS = sorted(
    name for name in dir(keras.applications)
    if name[0].isupper() and callable(getattr(keras.applications, name))
)
# Operation nodes (MobileNetV3's hard-swish adds) and SeparableConv2D.
FAST_SAMPLE = ("MobileNetV3Small", "Xception")


def build(name):
    size = MIN_INPUT_SIZE.get(name, 32)
    kwargs = {"weights": None, "input_shape": (size, size, 3), "classes": 10}
    keras.utils.set_random_seed(0)
    try:
        return getattr(keras.applications, name)(**kwargs)
    except ValueError as error:
        # Keras itself refuses some models on some backends (NASNetMobile on
        # PyTorch: "not available with the torch backend").
        if "is not available with the" in str(error):
            pytest.skip(str(error))
        raise


def check_sparsified(name):
    dense = build(name)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # nothing left dense
        sparse = keras_str.sparsify(dense, threshold_init=-100.0, weight_decay=1e-5)
    report = keras_str.sparsity_report(sparse)
    covered = sum(row.params for row in report.rows if row.note == "")
    assert covered / report.totals["params"] >= 0.99, report.table()
    size = dense.input_shape[1]
    x = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype("float32")
    np.testing.assert_allclose(
        to_numpy(sparse(x, training=False)), to_numpy(dense(x, training=False)),
        rtol=1e-4, atol=1e-5,
    )


# On JAX, eager calls compile every new op shape (a minute per model here);
# the fast sample runs on TensorFlow, the rest of the zoo on every backend
# as a slow test.
@pytest.mark.tensorflow
@pytest.mark.parametrize("name", FAST_SAMPLE)
def test_application_is_fully_sparsified(name):
    check_sparsified(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in ALL_MODELS if n not in FAST_SAMPLE])
def test_every_application_is_fully_sparsified(name):
    check_sparsified(name)


def check_channel_macs_budget(name, target=0.5):
    """A channel MACs budget's count equals what `strip` leaves of the model."""
    from keras_str.methods.channel_macs import ChannelMacs
    from tests.test_channel_macs import dead_channels
    from tests.test_channel_macs import total_macs

    dense = build(name)
    rng = np.random.default_rng(0)
    for layer in dense.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            # Trained statistics: a dead channel's constant is rarely 0.
            for variable in (layer.beta, layer.moving_mean):
                if variable is not None:
                    variable.assign(rng.normal(0.0, 0.1, variable.shape).astype("float32"))
    method = keras_str.StructuredSTR(
        "channel", target_sparsity=target, schedule=keras_str.ConstantSchedule(),
        budget="macs", scope="sigma")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sparse = keras_str.sparsify(dense, method=method, keep_dense=("predictions",))
    method = next(layer.method for layer in sparse.layers if hasattr(layer, "method"))
    for layer in method.layers:
        raw = layer.raw_kernel
        shape = tuple(raw.shape)
        channels = shape[-2:] if isinstance(layer, keras.layers.DepthwiseConv2D) else shape[-1:]
        scales = rng.uniform(0.2, 2.0, channels)
        values = scales if len(shape) == 1 else rng.normal(size=shape) * scales
        raw.assign(values.astype("float32"))
    method.update(method.layers, keras.ops.convert_to_tensor(1, "int32"))
    counter = ChannelMacs(method.layers)
    dead = [keras.ops.convert_to_tensor(dead_channels(layer)) for layer in method.layers]
    removed = counter.total_macs - float(counter.kept_macs(dead))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stripped = keras_str.strip(sparse)
    assert total_macs(stripped) == pytest.approx(total_macs(dense) - removed, rel=1e-6)
    # The target is a share of the MACs the channels reach.
    assert removed / counter.total_macs == pytest.approx(target, abs=0.02)


# Slow (37 s for InceptionV3 on TF); the default run has the same graph
# shapes in tests/test_channel_macs.py (inception_like, densenet_like,
# unscaled_batch_norm).
@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["DenseNet121", "EfficientNetB0", "InceptionV3", "MobileNetV2", "ResNet50"])
def test_channel_macs_budget_lands_on_applications(name):
    check_channel_macs_budget(name)
