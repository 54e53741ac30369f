import keras
import numpy as np
import pytest

from keras_str.export.conversion import convert
from keras_str.export.sparse_encoding import sparsified
from keras_str.export.xnnpack_rules import check_xnnpack_sparse
from tests.backend_utils import to_numpy

pytestmark = pytest.mark.tensorflow

layers = keras.layers


def mobilenet_like(explicit_padding=True, head="dense", input_size=64):
    """MobileNetV1-style graph; explicit padding is what XNNPACK needs."""
    inputs = keras.Input((input_size, input_size, 3))
    if explicit_padding:
        x = layers.ZeroPadding2D(1)(inputs)
        x = layers.Conv2D(16, 3, strides=2, name="entry")(x)
    else:
        x = layers.Conv2D(16, 3, strides=2, padding="same", name="entry")(inputs)
    x = layers.ReLU(6.0)(x)
    for i, (filters, stride) in enumerate([(32, 1), (64, 2), (64, 1)]):
        if stride == 2:
            x = layers.ZeroPadding2D(1)(x)
            x = layers.DepthwiseConv2D(3, strides=2, name=f"dw{i}")(x)
        else:
            x = layers.DepthwiseConv2D(3, padding="same", name=f"dw{i}")(x)
        x = layers.ReLU(6.0)(x)
        x = layers.Conv2D(filters, 1, name=f"pw{i}")(x)
        x = layers.ReLU(6.0)(x)
    if head == "dense":
        x = layers.GlobalAveragePooling2D()(x)
        x = layers.Dense(10, name="logits")(x)
    elif head == "conv":
        x = layers.GlobalAveragePooling2D(keepdims=True)(x)
        x = layers.Conv2D(10, 1, name="conv_head")(x)
    else:
        x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, x)


def zero_pointwise(model, fraction, seed=0):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if layer.name.startswith("pw"):
            kernel = to_numpy(layer.kernel)
            kernel[rng.random(kernel.shape) < fraction] = 0.0
            layer.kernel.assign(kernel)
    return model


def verdict(model, precision="float32"):
    return check_xnnpack_sparse(
        sparsified(convert(model, precision, None)),
        precision,
        [layer.name for layer in model.layers],
        [(layer.name, tuple(layer.kernel.shape)) for layer in model.layers
         if hasattr(layer, "kernel")],
    )


def test_a_shared_layers_second_call_is_named_after_the_layer():
    # TensorFlow names the second call of "mid" "mid_1/...", which is also
    # the name of another layer: the weight tensor, not its name, decides.
    inputs = keras.Input((32, 32, 3))
    x = layers.ZeroPadding2D(1)(inputs)
    x = layers.Conv2D(16, 3, strides=2, name="entry")(x)
    mid = layers.Conv2D(16, 1, strides=2, name="mid")
    x = mid(mid(x))
    x = layers.Conv2D(24, 1, name="mid_1")(x)
    x = layers.GlobalAveragePooling2D()(x)
    result = verdict(zero_pointwise(keras.Model(inputs, x), 0.9))
    strided = [r for r in result.reasons if "stride 2" in r]
    assert len(strided) == 2 and all("'mid'" in r for r in strided), result.reasons


@pytest.mark.parametrize("head", ["dense", "none"])
def test_mobilenet_rules_with_sparse_pointwise_are_eligible(head):
    result = verdict(zero_pointwise(mobilenet_like(head=head), 0.9))
    assert result.eligible, result.reasons
    assert result.pointwise_zero_fraction == pytest.approx(0.9, abs=0.02)
    assert "eligible" in result.summary()


def test_too_few_zeros():
    result = verdict(zero_pointwise(mobilenet_like(), 0.5))
    assert not result.eligible
    assert "zeros" in result.reasons[0] and "66.7%" in result.reasons[0]


def test_same_padding_on_even_input_is_asymmetric():
    result = verdict(zero_pointwise(mobilenet_like(explicit_padding=False), 0.9))
    assert not result.eligible
    assert "entry" in result.reasons[0] and "padding [0, 1, 0, 1]" in result.reasons[0]


def conv_head_model(classes, sparse_head):
    base = mobilenet_like(head="none")
    features = base.layers[-2].output
    x = layers.GlobalAveragePooling2D(keepdims=True)(features)
    x = layers.Conv2D(classes, 1, name="conv_head")(x)
    model = keras.Model(base.inputs, layers.Flatten()(x))
    zero_pointwise(model, 0.9)
    if sparse_head:
        head = model.get_layer("conv_head")
        kernel = to_numpy(head.kernel)
        kernel[np.random.default_rng(1).random(kernel.shape) < 0.9] = 0.0
        head.kernel.assign(kernel)
    return model


@pytest.mark.parametrize("sparse_head", [True, False])
def test_small_conv_head_after_keepdims_pooling_fails_on_arm(sparse_head):
    # Seen on the emulated Cortex-A76: "XNNPack delegate failed to reshape
    # runtime", with the head sparse or dense.
    result = verdict(conv_head_model(10, sparse_head))
    assert not result.eligible and result.fails_on_arm
    assert "conv_head" in result.reasons[0] and "fails to load" in result.reasons[0]


def test_large_dense_conv_head_keeps_the_model_dense():
    # A big dense head pulls the 1x1 zeros under 2/3: XNNPACK stays dense
    # and the model loads (the emulated core counts the dense cost).
    result = verdict(conv_head_model(1000, sparse_head=False))
    assert not result.eligible and not result.fails_on_arm
    assert result.pointwise_zero_fraction < 2 / 3
    assert any("runs dense" in r for r in result.reasons)


def test_export_refuses_a_graph_that_fails_on_arm(tmp_path):
    import keras_str

    with pytest.raises(ValueError, match="fail to load on ARM"):
        keras_str.export_tflite(conv_head_model(10, True), tmp_path / "m.tflite")
    assert list(tmp_path.iterdir()) == []
    report = keras_str.export_tflite(
        conv_head_model(10, True), tmp_path / "plain.tflite", sparse=False
    )
    assert report.sparse_tensors == []


def test_float16_can_qualify_and_int8_cannot():
    model = zero_pointwise(mobilenet_like(), 0.9)
    assert verdict(model, "float16").eligible
    assert not verdict(model, "dynamic_int8").eligible


def test_not_a_mobilenet():
    model = keras.Sequential(
        [keras.Input((16,)), layers.Dense(8), layers.Dense(2)]
    )
    result = verdict(model)
    assert not result.eligible
    assert any("before the first convolution" in r for r in result.reasons)
