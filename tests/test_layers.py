import re

import keras
import numpy as np
import pytest
from absl.testing import parameterized
from keras.src import testing

import keras_str
from keras_str.core.kernel_specs import raw_kernel_variable
from tests import numpy_reference
from tests.backend_utils import BACKEND
from tests.backend_utils import gradients
from tests.backend_utils import to_numpy

# (name, STR class, Keras parent, init kwargs, input shape, output shape)
LAYERS = [
    (
        "dense",
        keras_str.STRDense,
        keras.layers.Dense,
        {"units": 4},
        (2, 3),
        (2, 4),
    ),
    (
        "conv1d",
        keras_str.STRConv1D,
        keras.layers.Conv1D,
        {"filters": 4, "kernel_size": 3},
        (2, 8, 3),
        (2, 6, 4),
    ),
    (
        "conv2d",
        keras_str.STRConv2D,
        keras.layers.Conv2D,
        {"filters": 4, "kernel_size": 3, "strides": 2, "padding": "same"},
        (2, 8, 8, 3),
        (2, 4, 4, 4),
    ),
    (
        "depthwise_conv2d",
        keras_str.STRDepthwiseConv2D,
        keras.layers.DepthwiseConv2D,
        {"kernel_size": 3, "depth_multiplier": 2},
        (2, 8, 8, 3),
        (2, 6, 6, 6),
    ),
    (
        "depthwise_conv1d",
        keras_str.STRDepthwiseConv1D,
        keras.layers.DepthwiseConv1D,
        {"kernel_size": 3, "depth_multiplier": 2},
        (2, 8, 3),
        (2, 6, 6),
    ),
    (
        "conv3d",
        keras_str.STRConv3D,
        keras.layers.Conv3D,
        {"filters": 4, "kernel_size": 2},
        (2, 4, 4, 4, 3),
        (2, 3, 3, 3, 4),
    ),
    (
        "conv1d_transpose",
        keras_str.STRConv1DTranspose,
        keras.layers.Conv1DTranspose,
        {"filters": 4, "kernel_size": 3, "strides": 2, "padding": "same"},
        (2, 5, 3),
        (2, 10, 4),
    ),
    (
        "conv2d_transpose",
        keras_str.STRConv2DTranspose,
        keras.layers.Conv2DTranspose,
        {"filters": 4, "kernel_size": 3, "strides": 2},
        (2, 4, 4, 3),
        (2, 9, 9, 4),
    ),
    (
        "einsum_dense",
        keras_str.STREinsumDense,
        keras.layers.EinsumDense,
        {"equation": "abc,cde->abde", "output_shape": (5, 2, 4), "bias_axes": "de"},
        (2, 5, 3),
        (2, 5, 2, 4),
    ),
]


def has_bias(layer):
    return getattr(layer, "bias", None) is not None
GRANULARITIES = ("layer", "channel", "weight")


# Keras's run_layer_test is the slow one: every granularity on these, only
# "channel" (the one with layer-specific threshold shapes) on the others.
ALL_GRANULARITY_CHECKS = ("dense", "conv2d", "depthwise_conv2d")


def layer_granularity_cases(keras_checks=False):
    for name, cls, parent, kwargs, in_shape, out_shape in LAYERS:
        for granularity in GRANULARITIES:
            if (keras_checks and name not in ALL_GRANULARITY_CHECKS
                    and granularity != "channel"):
                continue
            yield {
                "testcase_name": f"{name}_{granularity}",
                "cls": cls,
                "parent": parent,
                "kwargs": kwargs,
                "input_shape": in_shape,
                "output_shape": out_shape,
                "granularity": granularity,
            }


def layer_cases():
    for name, cls, parent, kwargs, in_shape, out_shape in LAYERS:
        yield {
            "testcase_name": name,
            "cls": cls,
            "parent": parent,
            "kwargs": kwargs,
            "input_shape": in_shape,
            "output_shape": out_shape,
        }


def built_layer(cls, kwargs, input_shape, **str_kwargs):
    layer = cls(**kwargs, **str_kwargs)
    layer.build(input_shape)
    return layer


def randomize(layer, threshold, seed=0):
    """Gives the layer a random kernel and bias and a fixed raw threshold."""
    rng = np.random.default_rng(seed)
    layer._kernel.assign(rng.normal(size=layer._kernel.shape).astype("float32"))
    if has_bias(layer):
        layer.bias.assign(rng.normal(size=layer.bias.shape).astype("float32"))
    s = np.broadcast_to(
        np.asarray(threshold, "float32"), layer.threshold_param.shape
    )
    layer.threshold_param.assign(s + rng.uniform(-0.3, 0.3, s.shape))
    return layer


def thresholded_layers(cls, kwargs, input_shape, granularity):
    """Yields (layer, threshold_fn, W, s, numpy soft-thresholded kernel)."""
    for threshold_fn, s in (("sigmoid", -0.5), ("exp", -1.0)):
        layer = built_layer(
            cls,
            kwargs,
            input_shape,
            threshold_granularity=granularity,
            threshold_fn=threshold_fn,
        )
        randomize(layer, s)
        w = to_numpy(layer._kernel)
        s_value = to_numpy(layer.threshold_param)
        g, _ = numpy_reference.THRESHOLD_FNS[threshold_fn]
        yield layer, threshold_fn, w, s_value, numpy_reference.soft_threshold(w, g(s_value))


def parent_twin(layer, parent, kwargs, input_shape, kernel):
    """The Keras parent layer with the given kernel and the same bias."""
    twin = parent(**kwargs)
    twin.build(input_shape)
    twin_kernel = raw_kernel_variable(twin)
    twin_kernel.assign(kernel)
    if has_bias(layer):
        twin.bias.assign(layer.bias)
    return twin


class STRLayerTest(testing.TestCase):
    @parameterized.named_parameters(*layer_granularity_cases(keras_checks=True))
    def test_keras_layer_checks(
        self, cls, parent, kwargs, input_shape, output_shape, granularity
    ):
        # Keras's own bar: build shapes, weight counts, config round-trip,
        # a training step, serialization and mixed precision.
        self.run_layer_test(
            cls,
            init_kwargs={**kwargs, "threshold_granularity": granularity},
            input_shape=input_shape,
            expected_output_shape=output_shape,
            expected_num_trainable_weights=3,
            # The step and non-finite counters.
            expected_num_non_trainable_weights=2,
            expected_num_seed_generators=0,
            expected_num_losses=0,
            supports_masking=cls is keras_str.STRDense,
        )

    @parameterized.named_parameters(*layer_cases())
    def test_regularizers_add_losses(
        self, cls, parent, kwargs, input_shape, output_shape
    ):
        self.run_layer_test(
            cls,
            init_kwargs={
                **kwargs,
                "threshold_regularizer": "l2",
                "bias_regularizer": "l1",
            },
            input_shape=input_shape,
            expected_output_shape=output_shape,
            expected_num_trainable_weights=3,
            expected_num_losses=2,
            supports_masking=cls is keras_str.STRDense,
        )

    @parameterized.named_parameters(*layer_granularity_cases())
    def test_threshold_shape(
        self, cls, parent, kwargs, input_shape, output_shape, granularity
    ):
        layer = built_layer(
            cls, kwargs, input_shape, threshold_granularity=granularity
        )
        kernel_shape = tuple(layer._kernel.shape)
        expected = {
            "layer": (),
            "channel": layer.kernel_spec.channel_shape(layer),
            "weight": kernel_shape,
        }[granularity]
        self.assertEqual(tuple(layer.threshold_param.shape), expected)
        self.assertIn("threshold", layer.threshold_param.path)
        self.assertEqual(
            [w.name for w in layer.trainable_weights],
            ["kernel", "bias", "threshold"],
        )

    @parameterized.named_parameters(*layer_granularity_cases())
    def test_forward_matches_numpy_formula(
        self, cls, parent, kwargs, input_shape, output_shape, granularity
    ):
        for layer, _, _, _, expected_kernel in thresholded_layers(
            cls, kwargs, input_shape, granularity
        ):
            self.assertAllClose(layer.kernel, expected_kernel, atol=1e-6)
            sparsity = np.mean(expected_kernel == 0)
            self.assertGreater(sparsity, 0.1)
            self.assertEqual(
                np.mean(to_numpy(layer.kernel) == 0),
                sparsity,
            )
            x = np.random.default_rng(1).normal(size=input_shape)
            twin = parent_twin(layer, parent, kwargs, input_shape, expected_kernel)
            self.assertAllClose(layer(x), twin(x), atol=1e-5)

    @parameterized.named_parameters(*layer_granularity_cases())
    def test_gradients_match_numpy_formula(
        self, cls, parent, kwargs, input_shape, output_shape, granularity
    ):
        for layer, threshold_fn, w, s_value, kernel in thresholded_layers(
            cls, kwargs, input_shape, granularity
        ):
            rng = np.random.default_rng(2)
            x = rng.normal(size=input_shape).astype("float32")
            upstream = rng.normal(size=output_shape).astype("float32")
            grad_w, grad_s = gradients(
                lambda: keras.ops.sum(layer(x) * keras.ops.convert_to_tensor(upstream)),
                [layer._kernel, layer.threshold_param],
            )
            # d loss / d effective kernel, from the parent layer at that kernel.
            twin = parent_twin(layer, parent, kwargs, input_shape, kernel)
            twin_kernel = raw_kernel_variable(twin)
            (grad_kernel,) = gradients(
                lambda: keras.ops.sum(twin(x) * keras.ops.convert_to_tensor(upstream)),
                [twin_kernel],
            )
            expected_w, expected_s = numpy_reference.soft_threshold_grads(
                w, s_value, grad_kernel, threshold_fn
            )
            self.assertAllClose(grad_w, expected_w, atol=1e-4, rtol=1e-4)
            self.assertAllClose(grad_s, expected_s, atol=1e-4, rtol=1e-4)
            # Pruned weights get no gradient from the loss (no straight-through).
            self.assertTrue(np.all(grad_w[kernel == 0] == 0))

    @parameterized.named_parameters(*layer_cases())
    def test_config_extends_parent_config(
        self, cls, parent, kwargs, input_shape, output_shape
    ):
        layer = cls(**kwargs, threshold_fn="exp", threshold_init=-4.0)
        config = layer.get_config()
        parent_keys = set(parent(**kwargs).get_config())
        # The threshold shortcuts become the method's settings.
        self.assertEqual(set(config) - parent_keys, {"method"})
        self.assertEqual(config["method"]["config"]["threshold_fn"], "exp")
        self.assertEqual(config["method"]["config"]["threshold_init"], -4.0)
        restored = cls.from_config(config)
        self.assertEqual(restored.get_config(), config)

    @parameterized.named_parameters(*layer_cases())
    def test_mixed_precision_keeps_threshold_math_in_float32(
        self, cls, parent, kwargs, input_shape, output_shape
    ):
        layer = cls(**kwargs, dtype="mixed_float16", threshold_init=-3.0)
        y = layer(np.ones(input_shape, "float32"))
        self.assertEqual(keras.backend.standardize_dtype(y.dtype), "float16")
        self.assertEqual(layer._kernel.dtype, "float32")
        self.assertEqual(layer.threshold_param.dtype, "float32")
        self.assertEqual(
            keras.backend.standardize_dtype(layer.thresholded_kernel().dtype),
            "float32",
        )
        self.assertFalse(np.any(np.isnan(to_numpy(y))))

    def test_mixed_precision_threshold_resolution(self):
        # |W| - g(s) = 2e-5 in float32; float16 would round W and g(s) to
        # values 6.1e-5 apart. The layer must give the float32 answer.
        threshold = 0.1
        layer = keras_str.STRDense(
            1,
            use_bias=False,
            dtype="mixed_float16",
            threshold_init=float(np.log(threshold / (1 - threshold))),
        )
        layer.build((1, 1))
        g = float(to_numpy(layer.threshold))
        layer._kernel.assign([[g + 2e-5]])
        y = float(to_numpy(layer(np.ones((1, 1)))).item())
        self.assertAllClose(y, 2e-5, rtol=0.02)

    def test_conv_channels_first(self):
        if not _channels_first_conv_runs():
            self.skipTest(
                "this TensorFlow CPU build (no oneDNN) has no channels_first "
                "Conv2D kernel; a plain keras.layers.Conv2D fails the same way"
            )
        layer = keras_str.STRConv2D(
            4, 3, data_format="channels_first", threshold_granularity="channel"
        )
        y = layer(np.ones((2, 3, 8, 8), "float32"))
        self.assertEqual(tuple(y.shape), (2, 4, 6, 6))
        self.assertEqual(tuple(layer.threshold_param.shape), (4,))

    def test_callable_threshold_fn_serializes(self):
        @keras.saving.register_keras_serializable(package="keras_str_tests")
        def softplus_threshold(s):
            return keras.ops.softplus(s)

        layer = keras_str.STRDense(3, threshold_fn=softplus_threshold)
        layer.build((2, 4))
        restored = keras_str.STRDense.from_config(layer.get_config())
        restored.build((2, 4))
        self.assertAllClose(
            restored.threshold, keras.ops.softplus(restored.threshold_param)
        )

    def test_lora_and_quantization_are_refused(self):
        with self.assertRaisesRegex(ValueError, "lora_rank=2"):
            keras_str.STRDense(4, lora_rank=2)
        layer = keras_str.STRDense(4)
        layer.build((2, 3))
        with self.assertRaises(NotImplementedError):
            layer.enable_lora(2)
        with self.assertRaisesRegex(ValueError, "strip.*mode='int8'"):
            layer.quantize("int8")


@pytest.mark.parametrize(
    "argument, value",
    [
        ("threshold_fn", "relu"),
        ("threshold_fn", 3),
        ("threshold_init", "low"),
        ("threshold_init", float("nan")),
        ("threshold_init", float("-inf")),
        ("threshold_init", True),
        ("threshold_granularity", "row"),
    ],
)
@pytest.mark.parametrize("cls, kwargs", [(c, k) for _, c, _, k, _, _ in LAYERS])
def test_bad_arguments_name_argument_and_value(cls, kwargs, argument, value):
    with pytest.raises(ValueError, match=re.escape(f"{argument}={value!r}")):
        cls(**kwargs, **{argument: value})


def test_bad_regularizer_is_refused():
    with pytest.raises(ValueError):
        keras_str.STRDense(3, threshold_regularizer="not_a_regularizer")


def test_parent_argument_validation_still_applies():
    with pytest.raises(ValueError, match="units=0"):
        keras_str.STRDense(0)
    with pytest.raises(ValueError):
        keras_str.STRConv2D(4, 0)


def test_positional_parent_arguments_keep_their_meaning():
    layer = keras_str.STRDense(4, "relu")
    assert layer.activation is keras.activations.relu
    conv = keras_str.STRConv2D(8, 3, 2)
    assert conv.strides == (2, 2)


def small_model():
    return keras.Sequential(
        [
            keras.Input((8, 8, 2)),
            keras_str.STRConv2D(4, 3, activation="relu", threshold_init=-2.0),
            keras_str.STRDepthwiseConv2D(
                3, threshold_granularity="channel", threshold_init=-2.0
            ),
            keras.layers.Flatten(),
            keras_str.STRDense(3, threshold_granularity="weight", threshold_init=-3.0),
        ]
    )


def test_saved_weights_are_raw_kernel_and_threshold(tmp_path):
    model = small_model()
    layer = model.layers[0]
    raw = to_numpy(layer._kernel).copy()
    path = tmp_path / "model.weights.h5"
    model.save_weights(path)
    layer._kernel.assign(np.zeros_like(raw))
    layer.threshold_param.assign(5.0)
    model.load_weights(path)
    np.testing.assert_array_equal(to_numpy(layer._kernel), raw)
    assert float(to_numpy(layer.threshold_param)) == -2.0


# torch.compile costs ~40 s a model here (test_methods covers it on torch,
# under `slow`); JAX users compile, so its op-by-op run is `slow` too.
@pytest.mark.parametrize(
    "jit_compile",
    [pytest.param(True, marks=(pytest.mark.slow,) if BACKEND == "torch" else ()),
     pytest.param(False, marks=(pytest.mark.slow,) if BACKEND == "jax" else ())],
)
def test_trains_without_nan(jit_compile):
    model = small_model()
    keras_str.apply_weight_decay(model, 1e-3)
    model.compile(
        optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit_compile,
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8, 8, 2)).astype("float32")
    y = rng.integers(0, 3, size=(64,))
    before = [to_numpy(v).copy() for v in model.trainable_weights]
    history = model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    after = [to_numpy(v) for v in model.trainable_weights]
    thresholds = [v for v in model.trainable_weights if v.name == "threshold"]
    assert len(thresholds) == 3
    for b, a, v in zip(before, after, model.trainable_weights):
        assert np.all(np.isfinite(a)), v.path
        assert not np.array_equal(b, a), f"{v.path} did not train"


def test_trains_under_mixed_float16_policy():
    keras.config.set_dtype_policy("mixed_float16")
    model = small_model()
    keras_str.apply_weight_decay(model, 1e-3)
    model.compile(
        optimizer=keras.optimizers.SGD(0.05),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        # torch.compile with float16 costs ~60 s here; test_methods covers
        # compiled mixed precision on torch.
        jit_compile=BACKEND != "torch",
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8, 8, 2)).astype("float32")
    y = rng.integers(0, 3, size=(64,))
    history = model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    for layer in model.layers:
        if isinstance(layer, keras_str.SparseKernelLayer):
            assert layer.compute_dtype == "float16"
            assert layer.threshold_param.dtype == "float32"
            s = to_numpy(layer.threshold_param)
            assert np.all(np.isfinite(s))


def _channels_first_conv_runs():
    """Whether the backend runs a plain channels_first Conv2D here."""
    layer = keras.layers.Conv2D(1, 1, data_format="channels_first")
    try:
        layer(np.ones((1, 1, 2, 2), "float32"))
    except Exception:  # TF's UnimplementedError on CPUs without oneDNN
        return False
    return True
