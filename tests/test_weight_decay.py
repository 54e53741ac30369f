import re

import keras
import numpy as np
import pytest

import keras_str
from keras_str.core.kernel_specs import raw_kernel_variable
from tests.backend_utils import to_numpy


def mixed_model():
    return keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            keras_str.STRConv2D(3, 3, threshold_init=-30.0),
            keras_str.STRDepthwiseConv2D(3, threshold_init=-30.0),
            keras.layers.Flatten(),
            keras.layers.Dense(4),
            keras_str.STRDense(2, threshold_init=-30.0),
        ]
    )


def test_sets_half_lambda_l2_on_every_kernel_and_threshold():
    model = keras_str.apply_weight_decay(mixed_model(), 4e-4)
    conv, depthwise, _, dense, str_dense = model.layers
    assert conv.kernel_regularizer.l2 == pytest.approx(2e-4)
    assert depthwise.depthwise_regularizer.l2 == pytest.approx(2e-4)
    assert dense.kernel_regularizer.l2 == pytest.approx(2e-4)
    for layer in (conv, depthwise, str_dense):
        assert layer.method.threshold_regularizer.l2 == pytest.approx(2e-4)
        assert layer.threshold_param.regularizer is layer.method.threshold_regularizer
    # 4 kernels + 3 thresholds
    assert len(model.losses) == 7
    # Saved with the model: the configs carry the regularizers.
    config = str_dense.get_config()
    method_config = config["method"]["config"]
    assert method_config["threshold_regularizer"]["config"]["l2"] == pytest.approx(2e-4)


def test_zero_removes_decay():
    model = keras_str.apply_weight_decay(mixed_model(), 1e-3)
    keras_str.apply_weight_decay(model, 0.0)
    assert model.losses == []


def test_applies_before_build():
    layer = keras_str.STRDense(3)
    keras_str.apply_weight_decay(layer, 1e-2)
    layer.build((1, 4))
    assert len(layer.losses) == 2


def test_one_sgd_step_is_pytorch_coupled_weight_decay():
    """s_new = s - lr * lambda * s, W_new = W - lr * (grad + lambda * W)."""
    lam, lr = 0.1, 0.5
    model = keras.Sequential(
        [keras.Input((3,)), keras_str.STRDense(2, use_bias=False, threshold_init=-30.0)]
    )
    keras_str.apply_weight_decay(model, lam)
    layer = model.layers[0]
    w0 = to_numpy(layer._kernel).copy()
    s0 = float(to_numpy(layer.threshold_param))
    # Zero inputs: the data loss gives no gradient, only the decay acts.
    model.compile(optimizer=keras.optimizers.SGD(lr), loss="mse")
    model.train_on_batch(np.zeros((4, 3)), np.zeros((4, 2)))
    s1 = float(to_numpy(layer.threshold_param))
    w1 = to_numpy(layer._kernel)
    assert s1 == pytest.approx(s0 * (1 - lr * lam), rel=1e-6)
    np.testing.assert_allclose(w1, w0 * (1 - lr * lam), rtol=1e-6)
    assert s1 > s0  # the decay pulls the negative s toward 0: g(s) grows


def test_sparsity_rises_under_weight_decay_on_tiny_problem():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 16)).astype("float32")
    true_w = np.zeros((16, 1), "float32")
    true_w[:3] = [[1.5], [-2.0], [1.0]]
    y = x @ true_w
    model = keras.Sequential(
        [keras.Input((16,)), keras_str.STRDense(1, threshold_init=-6.0)]
    )
    keras_str.apply_weight_decay(model, 0.05)
    layer = model.layers[0]
    s_start = float(to_numpy(layer.threshold_param))
    start = keras_str.sparsity_report(model).totals["sparsity"]
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), loss="mse")
    model.fit(x, y, epochs=60, batch_size=32, verbose=0)
    end = keras_str.sparsity_report(model).totals["sparsity"]
    s_end = float(to_numpy(layer.threshold_param))
    assert start == 0.0
    assert s_end > s_start + 1.0
    # The 13 irrelevant inputs get pruned, the 3 informative ones survive.
    kernel = to_numpy(layer.kernel)[:, 0]
    assert end >= 12 / 16
    assert np.all(kernel[:3] != 0)


def test_decay_drives_the_threshold_beyond_what_the_loss_alone_does():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 16)).astype("float32")
    y = x[:, :1] * 2.0
    final = {}
    for weight_decay in (0.0, 0.05):
        keras.utils.set_random_seed(0)
        model = keras.Sequential(
            [keras.Input((16,)), keras_str.STRDense(1, threshold_init=-6.0)]
        )
        keras_str.apply_weight_decay(model, weight_decay)
        model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), loss="mse")
        model.fit(x, y, epochs=20, batch_size=32, verbose=0)
        final[weight_decay] = float(
            to_numpy(model.layers[0].threshold_param)
        )
    assert final[0.05] > final[0.0] + 1.0


@pytest.mark.parametrize("bad", [-1e-4, float("nan"), float("inf"), "1e-4", True, None])
def test_bad_weight_decay(bad):
    with pytest.raises(ValueError, match=re.escape(f"weight_decay={bad!r}")):
        keras_str.apply_weight_decay(mixed_model(), bad)


def test_raw_kernel_variable_for_plain_layers():
    model = mixed_model()
    assert raw_kernel_variable(model.layers[3]).path.endswith("kernel")
