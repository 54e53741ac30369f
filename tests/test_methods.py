import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_str
from tests.backend_utils import BACKEND
from tests.backend_utils import gradients
from tests.backend_utils import slow_on
from tests.backend_utils import to_numpy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def mlp(units=(32, 16), num_classes=3, input_dim=10):
    layers = [keras.Input((input_dim,))]
    for i, width in enumerate(units):
        layers.append(keras.layers.Dense(width, activation="relu", name=f"h{i}"))
    layers.append(keras.layers.Dense(num_classes, name="logits"))
    return keras.Sequential(layers)


def toy_data(n=256, input_dim=10, num_classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, input_dim)).astype("float32")
    y = (x[:, :num_classes].argmax(axis=1)).astype("int32")
    return x, y


def kernels(model):
    return {
        layer.name: to_numpy(layer.thresholded_kernel())
        for layer in model.layers
        if isinstance(layer, keras_str.SparseKernelLayer)
    }


def overall_sparsity(model):
    values = np.concatenate([k.ravel() for k in kernels(model).values()])
    return float(np.mean(values == 0))


def sparse_layers(model):
    return [l for l in model.layers if isinstance(l, keras_str.SparseKernelLayer)]


def step_tensor(step):
    return keras.ops.convert_to_tensor(step, dtype="int32")


def train(model, steps, batch_size=16, lr=0.05, callbacks=None):
    x, y = toy_data(steps * batch_size)
    model.compile(
        keras.optimizers.SGD(lr, momentum=0.9),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0, callbacks=callbacks)
    return model


# Schedules.


def test_polynomial_schedule_is_cubic_and_clamped():
    schedule = keras_str.PolynomialSchedule(100, 200)
    assert schedule(0) == 0.0
    assert schedule(100) == 0.0
    assert schedule(150) == pytest.approx(1 - 0.5**3)
    assert schedule(200) == 1.0
    assert schedule(10_000) == 1.0
    values = [schedule(s) for s in range(100, 201)]
    assert values == sorted(values)


def test_schedule_from_epochs_and_serialization():
    schedule = keras_str.PolynomialSchedule.from_epochs(50, 1, 3.5)
    assert (schedule.begin_step, schedule.end_step) == (50, 175)
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(schedule)
    )
    assert restored.get_config() == schedule.get_config()
    assert keras_str.ConstantSchedule(5)(4) == 0.0
    assert keras_str.ConstantSchedule(5)(5) == 1.0


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"begin_step": -1, "end_step": 10}, "begin_step"),
        ({"begin_step": 10, "end_step": 10}, "end_step"),
        ({"begin_step": 0, "end_step": 1.5}, "end_step"),
        ({"begin_step": 0, "end_step": 10, "power": 0}, "power"),
    ],
)
def test_schedule_rejects_bad_arguments(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        keras_str.PolynomialSchedule(**kwargs)


# Method objects.


@pytest.mark.parametrize(
    "build, argument",
    [
        (lambda: keras_str.ST3(1.0, keras_str.PolynomialSchedule(0, 5)), "target_sparsity"),
        (lambda: keras_str.ST3(0.5, "cubic"), "schedule"),
        (lambda: keras_str.ST3(0.5, keras_str.ConstantSchedule(), scope="layer"), "scope"),
        (lambda: keras_str.GMP(-0.1, keras_str.ConstantSchedule()), "target_sparsity"),
        (lambda: keras_str.GMP(0.5, keras_str.ConstantSchedule(), frequency=0), "frequency"),
        (lambda: keras_str.GMP(0.5, keras_str.ConstantSchedule(), layer_targets={"a": 2}), "layer_targets"),
        (lambda: keras_str.STR(0.5), "schedule"),
        (lambda: keras_str.ST3(0.5, keras_str.ConstantSchedule(), quantile="median"), "quantile"),
        (lambda: keras_str.GMP(0.5, keras_str.ConstantSchedule(), quantile=None), "quantile"),
        (lambda: keras_str.STR(schedule=keras_str.ConstantSchedule()), "target_sparsity"),
        (lambda: keras_str.STRDense(4, method="st3"), "method"),
    ],
)
def test_methods_reject_bad_arguments(build, argument):
    with pytest.raises(ValueError, match=argument):
        build()


def test_default_method_is_plain_str_and_keeps_its_variables():
    layer = keras_str.STRDense(4)
    layer.build((None, 3))
    assert isinstance(layer.method, keras_str.STR)
    assert not layer.method.scheduled
    assert [v.name for v in layer.variables] == [
        "kernel", "bias", "threshold", "sparsity_step", "finite_steps"]
    assert [v.name for v in layer.trainable_variables] == ["kernel", "bias", "threshold"]


def test_st3_forward_is_soft_threshold_and_gradient_is_straight_through():
    method = keras_str.ST3(0.5, keras_str.ConstantSchedule())
    layer = keras_str.STRDense(2, use_bias=False, method=method)
    layer.build((None, 2))
    kernel = np.array([[0.1, -0.5], [0.3, -0.05]], dtype="float32")
    layer._kernel.assign(kernel)
    layer.threshold_param.assign(0.2)
    expected = np.sign(kernel) * np.maximum(np.abs(kernel) - 0.2, 0)
    np.testing.assert_allclose(
        to_numpy(layer.thresholded_kernel()), expected, atol=1e-7
    )
    assert np.sum(to_numpy(layer.thresholded_kernel()) == 0) == 2

    x = np.array([[1.0, 2.0]], dtype="float32")
    (gradient,) = gradients(lambda: keras.ops.sum(layer(x)), [layer._kernel])
    # Straight-through: pruned weights get the same gradient as kept ones.
    np.testing.assert_allclose(gradient, [[1.0, 1.0], [2.0, 2.0]])


def test_st3_rescale_divides_by_kept_share_of_channel_magnitude():
    method = keras_str.ST3(0.5, keras_str.ConstantSchedule(), rescale=True)
    layer = keras_str.STRDense(3, use_bias=False, method=method)
    layer.build((None, 4))
    kernel = np.random.default_rng(0).normal(size=(4, 3)).astype("float32")
    layer._kernel.assign(kernel)
    layer.threshold_param.assign(0.3)
    effective = to_numpy(layer.thresholded_kernel())
    mask = np.abs(kernel) > 0.3
    rho = (np.abs(kernel) * mask).sum(axis=0) / np.abs(kernel).sum(axis=0)
    soft = np.sign(kernel) * np.maximum(np.abs(kernel) - 0.3, 0)
    np.testing.assert_allclose(effective, soft / rho, rtol=1e-5, atol=1e-7)
    assert np.array_equal(effective == 0, ~mask)
    # A channel whose weights are all pruned stays zero (no division by 0).
    layer.threshold_param.assign(10.0)
    assert np.all(to_numpy(layer.thresholded_kernel()) == 0)


def test_gmp_mask_zeroes_smallest_weights_per_layer():
    method = keras_str.GMP(0.75, keras_str.ConstantSchedule(), frequency=1)
    model = keras_str.sparsify(mlp(), method=method)
    layers = sparse_layers(model)
    method = layers[0].method
    raw = {l.name: np.abs(to_numpy(l._kernel)) for l in layers}
    method.update(layers, step_tensor(0))
    for layer in layers:
        effective = to_numpy(layer.thresholded_kernel())
        zeros = effective == 0
        assert zeros.mean() == pytest.approx(0.75, abs=1.0 / zeros.size)
        # Every pruned weight was smaller than every kept one.
        assert raw[layer.name][zeros].max() <= raw[layer.name][~zeros].min()
        assert np.array_equal(to_numpy(layer.sparsity_state["mask"]) == 0, zeros)
        assert layer.threshold is None


@pytest.mark.parametrize("scope", ["global", "sigma"])
def test_st3_update_is_one_global_quantile(scope):
    method = keras_str.ST3(0.8, keras_str.ConstantSchedule(), scope=scope)
    model = keras_str.sparsify(mlp(), method=method)
    layers = sparse_layers(model)
    layers[0].method.update(layers, step_tensor(0))
    assert overall_sparsity(model) == pytest.approx(0.8, abs=1e-3)
    thresholds = [float(to_numpy(l.threshold_param)) for l in layers]
    if scope == "global":
        assert len(set(thresholds)) == 1
    else:
        # Larger layers (smaller Glorot scale) get smaller thresholds.
        assert thresholds[0] < thresholds[-1]


# Training: the methods advance inside the train step, with no callback.


@pytest.mark.parametrize(
    "method",
    [
        keras_str.STR(0.7, keras_str.PolynomialSchedule(0, 12), threshold_init=-5.0),
        keras_str.ST3(0.7, keras_str.PolynomialSchedule(0, 12)),
        keras_str.ST3(0.7, keras_str.PolynomialSchedule(0, 12), scope="sigma", rescale=True),
        keras_str.GMP(0.7, keras_str.PolynomialSchedule(0, 12), frequency=4),
    ],
    ids=["str_target", "st3", "st3_sigma_rescale", "gmp"],
)
def test_scheduled_methods_reach_their_target_through_fit(method):
    model = keras_str.sparsify(mlp(), method=method)
    train(model, steps=16)
    assert overall_sparsity(model) == pytest.approx(0.7, abs=0.01)
    for layer in model.layers:
        assert int(to_numpy(layer.sparsity_step)) == 16
    report = keras_str.sparsity_report(model)
    assert report.totals["sparsity"] == pytest.approx(0.7, abs=0.01)


def test_schedule_is_followed_step_by_step():
    schedule = keras_str.PolynomialSchedule(2, 10)
    model = keras_str.sparsify(mlp(), method=keras_str.ST3(0.6, schedule))
    seen = []

    x, y = toy_data(12 * 16)
    model.compile(
        keras.optimizers.SGD(0.05, momentum=0.9),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    for step in range(12):
        batch = slice(16 * step, 16 * (step + 1))
        model.train_on_batch(x[batch], y[batch])
        seen.append(overall_sparsity(model))
    expected = [0.6 * schedule(step) for step in range(12)]
    # Measured after the optimizer step, so allow for weights that moved.
    np.testing.assert_allclose(seen, expected, atol=0.03)


def test_str_target_keeps_a_learned_non_uniform_budget():
    method = keras_str.STR(0.8, keras_str.PolynomialSchedule(0, 20))
    model = keras_str.sparsify(mlp(units=(64, 8)), method=method, threshold_init=-4.0)
    train(model, steps=24)
    layers = sparse_layers(model)
    assert [v.name for v in layers[0].variables] == [
        "kernel", "bias", "threshold", "threshold_offset", "threshold_value",
        "sparsity_step", "finite_steps"]
    sparsities = [float(np.mean(k == 0)) for k in kernels(model).values()]
    assert max(sparsities) - min(sparsities) > 0.05  # per-layer budgets differ
    # The loss and decay moved the layers' s apart: a learned budget, not
    # only the common offset.
    s = [float(to_numpy(l.threshold_param)) for l in layers]
    assert max(s) - min(s) > 1e-3


def test_str_target_offset_stays_finite_and_in_range():
    # Long runs must not push s + offset out of float range: the offset is
    # recomputed from the weights every step, never accumulated.
    method = keras_str.STR(0.9, keras_str.PolynomialSchedule(0, 40), threshold_init=-5.0)
    model = keras_str.sparsify(mlp(), method=method)
    train(model, steps=120, lr=0.2)
    assert overall_sparsity(model) == pytest.approx(0.9, abs=0.01)
    for layer in model.layers:
        s = float(to_numpy(layer.threshold_param))
        offset = float(to_numpy(layer.sparsity_state["threshold_offset"]))
        # Bounded by the weights' own range: |logit| of a float32 in (0, 1)
        # stays under ~17 for thresholds the network can reach.
        assert -30 < s + offset < 30


def test_inference_does_not_advance_the_schedule():
    method = keras_str.ST3(0.5, keras_str.PolynomialSchedule(0, 8))
    model = train(keras_str.sparsify(mlp(), method=method), steps=4)
    x, y = toy_data(64)
    model.predict(x, verbose=0)
    model.evaluate(x, y, verbose=0)
    model(x)
    assert [int(to_numpy(l.sparsity_step)) for l in model.layers] == [4, 4, 4]


def test_methods_group_by_object():
    schedule = keras_str.PolynomialSchedule(0, 5)
    shared = keras_str.ST3(0.5, schedule)
    inputs = keras.Input((4,))
    x = keras_str.STRDense(8, method=shared, name="a")(inputs)
    x = keras_str.STRDense(8, method=shared, name="b")(x)
    # Same settings, another object: another group.
    x = keras_str.STRDense(3, method=keras_str.ST3(0.5, schedule), name="c")(x)
    x = keras_str.STRDense(3, name="d")(x)
    model = keras.Model(inputs, x)
    assert [l.name for l in shared.layers] == ["a", "b"]
    assert [l.name for l in model.get_layer("c").method.layers] == ["c"]
    # sparsify gives each new model its own copy of the method.
    first = keras_str.sparsify(mlp(), method=shared)
    second = keras_str.sparsify(mlp(), method=shared)
    assert first.layers[0].method is first.layers[2].method
    assert first.layers[0].method is not second.layers[0].method
    assert len(first.layers[0].method.layers) == 3


def test_gmp_refuses_unknown_layer_targets():
    method = keras_str.GMP(0.5, keras_str.ConstantSchedule(), frequency=1,
                           layer_targets={"h0": 0.5, "typo": 0.9})
    model = keras_str.sparsify(mlp(), method=method)
    with pytest.raises(ValueError, match=r"\['typo'\]"):
        train(model, steps=1)


# State is saved with the model and the schedule resumes.


@pytest.mark.parametrize(
    "method",
    [
        keras_str.STR(0.6, keras_str.PolynomialSchedule(0, 30), threshold_init=-5.0),
        keras_str.ST3(0.6, keras_str.PolynomialSchedule(0, 30)),
        keras_str.GMP(0.6, keras_str.PolynomialSchedule(0, 30), frequency=5),
    ],
    ids=["str_target", "st3", "gmp"],
)
def test_state_is_saved_and_training_resumes(method, tmp_path):
    model = keras_str.sparsify(mlp(), method=method)
    train(model, steps=10)
    path = str(tmp_path / "model.keras")
    model.save(path)
    x, _ = toy_data(8)
    restored = keras_str.load_model(path)
    np.testing.assert_array_equal(
        to_numpy(restored(x)), to_numpy(model(x))
    )
    for a, b in zip(model.layers, restored.layers):
        assert type(a.method) is type(b.method)
        assert a.method.get_config() == b.method.get_config()
        for va, vb in zip(a.variables, b.variables):
            np.testing.assert_array_equal(to_numpy(va), to_numpy(vb))
    # The layers share one method object again after loading.
    assert len({id(layer.method) for layer in restored.layers}) == 1
    assert int(to_numpy(restored.layers[0].sparsity_step)) == 10
    train(restored, steps=25)
    assert int(to_numpy(restored.layers[0].sparsity_step)) == 35
    assert overall_sparsity(restored) == pytest.approx(0.6, abs=0.01)


def test_strip_bakes_in_scheduled_methods():
    method = keras_str.ST3(0.5, keras_str.PolynomialSchedule(0, 8), rescale=True)
    model = train(keras_str.sparsify(mlp(), method=method), steps=8)
    plain = keras_str.strip(model)
    assert not any(isinstance(l, keras_str.SparseKernelLayer) for l in plain.layers)
    assert "method" not in plain.layers[0].get_config()
    x, _ = toy_data(16)
    np.testing.assert_allclose(
        to_numpy(plain(x)),
        to_numpy(model(x)),
        atol=1e-6,
    )
    assert keras_str.sparsity_report(plain).totals["sparsity"] == pytest.approx(
        0.5, abs=0.01
    )


# Budget transfer.


def test_layer_budget_transfers_str_budget_to_gmp():
    str_model = keras_str.sparsify(
        mlp(), method=keras_str.STR(0.7, keras_str.PolynomialSchedule(0, 10)),
        threshold_init=-4.0,
    )
    train(str_model, steps=12)
    budget = keras_str.layer_budget(str_model)
    assert set(budget) == {"h0", "h1", "logits"}
    assert budget == keras_str.layer_budget(keras_str.sparsity_report(str_model))

    gmp = keras_str.GMP(0.7, keras_str.PolynomialSchedule(0, 6), frequency=2,
                        layer_targets=budget)
    gmp_model = train(keras_str.sparsify(mlp(), method=gmp), steps=8)
    got = keras_str.layer_budget(gmp_model)
    for name, target in budget.items():
        assert got[name] == pytest.approx(target, abs=0.02)
    with pytest.raises(ValueError, match="model_or_report"):
        keras_str.layer_budget("model.keras")


# torch.compile of a mixed-precision model takes ~100 s here: on torch the
# default run trains it eagerly (as torch users do by default), `slow` compiled.
@pytest.mark.parametrize(
    "jit_compile",
    [False, pytest.param(True, marks=pytest.mark.slow)] if BACKEND == "torch" else [True],
)
def test_scheduled_methods_train_under_jit_and_mixed_precision(jit_compile):
    keras.config.set_dtype_policy("mixed_float16")
    method = keras_str.ST3(0.5, keras_str.PolynomialSchedule(0, 6))
    model = keras_str.sparsify(mlp(), method=method)
    x, y = toy_data(128)
    model.compile(
        keras.optimizers.SGD(0.05),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit_compile,
    )
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert overall_sparsity(model) == pytest.approx(0.5, abs=0.02)
    assert model.layers[0].threshold_param.dtype == "float32"


# A fresh process imports a backend (10-25 s off TensorFlow); the files are
# the same on every backend, so the others run it under `slow`.
@slow_on("jax", "torch")
def test_method_models_reload_in_a_fresh_process(tmp_path):
    # One fresh process loads two files: a
    # scheduled method's model with keras_str.load_model, and STR layers of
    # every threshold granularity with plain keras.saving.load_model.
    method = keras_str.GMP(0.5, keras_str.ConstantSchedule(), frequency=1)
    model = train(keras_str.sparsify(mlp(), method=method), steps=3)
    path = str(tmp_path / "gmp.keras")
    model.save(path)
    x, _ = toy_data(4)
    np.save(tmp_path / "x.npy", x)
    expected = to_numpy(model(x))
    layers_model = keras.Sequential([
        keras.Input((8, 8, 2)),
        keras_str.STRConv2D(4, 3, activation="relu", threshold_init=-2.0),
        keras_str.STRDepthwiseConv2D(3, threshold_granularity="channel", threshold_init=-2.0),
        keras.layers.Flatten(),
        keras_str.STRDense(3, threshold_granularity="weight", threshold_init=-3.0),
    ])
    layers_path = str(tmp_path / "layers.keras")
    layers_model.save(layers_path)
    images = np.random.default_rng(0).normal(size=(4, 8, 8, 2)).astype("float32")
    np.save(tmp_path / "images.npy", images)
    layers_expected = to_numpy(layers_model(images))
    code = (
        "import json, sys, numpy as np, keras, keras_str\n"
        f"m = keras_str.load_model({path!r})\n"
        f"x = np.load({str(tmp_path / 'x.npy')!r})\n"
        f"layers = keras.saving.load_model({layers_path!r})\n"
        f"images = np.load({str(tmp_path / 'images.npy')!r})\n"
        "print(json.dumps({'out': keras.ops.convert_to_numpy(m(x)).tolist(),"
        " 'method': type(m.layers[0].method).__name__,"
        " 'layers_out': keras.ops.convert_to_numpy(layers(images)).tolist(),"
        " 'layer_types': [type(l).__name__ for l in layers.layers],"
        " 'thresholds': [keras.ops.convert_to_numpy(l.threshold_param).tolist()"
        " for l in layers.layers if hasattr(l, 'threshold_param')]}))\n"
    )
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, env=env, check=True, timeout=300)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["method"] == "GMP"
    np.testing.assert_allclose(result["out"], expected, atol=1e-6)
    assert result["layer_types"] == ["STRConv2D", "STRDepthwiseConv2D", "Flatten", "STRDense"]
    np.testing.assert_allclose(result["layers_out"], layers_expected, atol=1e-6)
    saved_thresholds = [
        to_numpy(l.threshold_param).tolist()
        for l in layers_model.layers if hasattr(l, "threshold_param")
    ]
    for got, want in zip(result["thresholds"], saved_thresholds, strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("method_name", ["st3", "gmp"])
def test_weight_decay_on_scheduled_methods_leaves_their_state_alone(method_name):
    schedule = keras_str.ConstantSchedule()
    method = (keras_str.ST3(0.5, schedule) if method_name == "st3"
              else keras_str.GMP(0.5, schedule))
    model = keras_str.sparsify(mlp(), method=method, weight_decay=1e-3)
    for layer in model.layers:
        assert layer.kernel_regularizer.l2 == pytest.approx(5e-4)
        assert all(v.regularizer is None for v in layer.variables
                   if v.name in ("threshold", "mask"))
    # The decay counts kernels only: three layers, no threshold terms.
    model(np.zeros((1, 10), "float32"))
    assert len(model.losses) == 3


@pytest.mark.parametrize("kind", ["st3", "str"])
def test_update_frequency_skips_steps_and_still_ends_on_target(kind):
    schedule = keras_str.PolynomialSchedule(0, 12)
    method = (keras_str.ST3(0.7, schedule, frequency=4) if kind == "st3"
              else keras_str.STR(0.7, schedule, frequency=4, threshold_init=-5.0))
    model = keras_str.sparsify(mlp(), method=method)
    state_name = "threshold" if kind == "st3" else "threshold_offset"
    x, y = toy_data(14 * 16)
    model.compile(
        keras.optimizers.SGD(0.05, momentum=0.9),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    values = []
    for step in range(14):
        batch = slice(16 * step, 16 * (step + 1))
        model.train_on_batch(x[batch], y[batch])
        values.append(float(to_numpy(model.layers[0].sparsity_state[state_name])))
    changed_at = [step for step in range(1, 14) if values[step] != values[step - 1]]
    # Recomputed at steps 0, 4, 8 and 12 (also end_step), kept in between.
    assert changed_at == [4, 8, 12]
    assert overall_sparsity(model) == pytest.approx(0.7, abs=0.01)
    assert model.layers[0].method.get_config()["frequency"] == 4
    with pytest.raises(ValueError, match="frequency"):
        keras_str.ST3(0.5, schedule, frequency=0)


@pytest.mark.parametrize("quantile", ["exact", "sample", "auto"])
def test_threshold_quantile_is_exact_or_sampled_as_asked(quantile):
    from keras_str.core import quantile as selection

    # LeNet-300-100's 266k weights: above the size where "auto" samples.
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(300),
                              keras.layers.Dense(100), keras.layers.Dense(10)])
    method = keras_str.ST3(0.9, keras_str.ConstantSchedule(), quantile=quantile)
    sparse = keras_str.sparsify(model, method=method)
    sparse(np.zeros((1, 784), "float32"), training=True)  # one in-step update
    kernels = [np.abs(to_numpy(l.raw_kernel)) for l in sparse.layers]
    threshold = float(to_numpy(sparse.layers[0].threshold))
    zeros = sum(int(np.sum(k <= threshold)) for k in kernels)
    total = sum(k.size for k in kernels)
    assert total > selection.SAMPLE_ABOVE
    if quantile == "exact":
        assert zeros == round(0.9 * total)
    else:
        # The stated error: one standard deviation is sqrt(p (1 - p) / SAMPLE_SIZE).
        assert abs(zeros / total - 0.9) <= 4 * np.sqrt(0.09 / selection.SAMPLE_SIZE)
        assert zeros != round(0.9 * total)  # an estimate, not the exact count
    config = method.get_config()
    assert config["quantile"] == quantile
    assert keras_str.ST3.from_config(config).quantile == quantile


@pytest.mark.parametrize("structured", [False, True])
def test_targeted_str_computes_with_raw_weights_before_its_schedule_starts(structured):
    schedule = keras_str.PolynomialSchedule(5, 10)
    method = (keras_str.StructuredSTR("channel", target_sparsity=0.5, schedule=schedule)
              if structured else keras_str.STR(0.5, schedule))
    model = keras_str.sparsify(mlp(), method=method)
    model(np.zeros((1, 10), "float32"), training=True)  # step 0: nothing to prune
    for layer in model.layers:
        np.testing.assert_array_equal(
            to_numpy(layer.thresholded_kernel()), to_numpy(layer.raw_kernel)
        )


def test_methods_say_whether_they_remove_channels():
    schedule = keras_str.ConstantSchedule()
    cases = [
        (keras_str.STR(), False, False),
        (keras_str.ST3(0.5, schedule), False, False),
        (keras_str.GMP(0.5, schedule), False, False),
        (keras_str.GMP(0.5, schedule, structure="channel"), True, False),
        (keras_str.StructuredSTR("channel"), True, True),
        (keras_str.StructuredSTR("block", block_size=4), False, False),
        (keras_str.LowRankSTR(), False, False),
    ]
    for method, removes, at_batch_norm in cases:
        assert method.removes_channels is removes, method
        assert method.thresholds_batch_norm_scales is at_batch_norm, method
