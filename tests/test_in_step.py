"""Scheduled methods advance inside the compiled train step, on every backend and setup.

Each test trains the same small MLP for 64 optimizer steps toward 90 % zeros
(the schedule ends at step 48) and checks the reached sparsity and the step
counters: a schedule advanced once per `steps_per_execution`, or not at all,
would miss both.
"""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import keras_str
from tests.backend_utils import BACKEND
from tests.backend_utils import to_numpy
from tests.in_step_common import BATCH_SIZE
from tests.in_step_common import METHOD_NAMES
from tests.in_step_common import STEPS
from tests.in_step_common import TARGET
from tests.in_step_common import compile_for_test
from tests.in_step_common import overall_sparsity
from tests.in_step_common import sparse_mlp
from tests.in_step_common import step_counters
from tests.in_step_common import toy_data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fit(model, steps_per_execution=1, jit_compile=False, epochs=1):
    compile_for_test(model, steps_per_execution, jit_compile)
    x, y = toy_data()
    return model.fit(x, y, batch_size=BATCH_SIZE, epochs=epochs, verbose=0,
                     shuffle=False)


def setups():
    # The corners (eager one step at a time; compiled, many steps per call)
    # run by default, the mixed setups under `slow` (`make test-all`;
    # benchmarks/in_step_matrix.py reports all of them on every backend).
    for steps_per_execution in (1, 16):
        for jit_compile in (False, True):
            corner = (steps_per_execution, jit_compile) in ((1, False), (16, True))
            marks = () if corner else (pytest.mark.slow,)
            yield steps_per_execution, jit_compile, marks


def setups_and_methods():
    # Op-by-op JAX costs 10-20 s a method here: there one method runs
    # eagerly by default, the others under `slow`.
    for steps_per_execution, jit_compile, marks in setups():
        for method_name in METHOD_NAMES:
            eager_jax = BACKEND == "jax" and not jit_compile and method_name != "st3"
            yield pytest.param(
                method_name, steps_per_execution, jit_compile,
                marks=(pytest.mark.slow,) if eager_jax else marks,
                id=f"{steps_per_execution}-{jit_compile}-{method_name}",
            )


def one_method_by_default(names, default):
    # JAX compiles each eager op shape (tens of seconds a model here): one
    # method runs by default there, the others under `slow`; the in-step
    # matrix benchmark runs them all.
    for name in names:
        slow = BACKEND == "jax" and name != default
        yield pytest.param(name, marks=(pytest.mark.slow,) if slow else ())


@pytest.mark.parametrize(
    "method_name, steps_per_execution, jit_compile", list(setups_and_methods())
)
def test_scheduled_methods_reach_their_target(method_name, steps_per_execution,
                                              jit_compile):
    if BACKEND == "torch" and steps_per_execution > 1:
        pytest.skip("Keras's PyTorch trainer runs one step per execution")
    if BACKEND == "torch" and jit_compile and method_name != "st3":
        pytest.skip("torch.compile costs ~20 s a model; one method covers it")
    model = sparse_mlp(method_name)
    fit(model, steps_per_execution, jit_compile)
    assert step_counters(model) == [STEPS] * 3
    assert overall_sparsity(model) == pytest.approx(TARGET, abs=0.01)


def test_plain_str_learns_its_sparsity():
    model = sparse_mlp("str")
    history = fit(model, epochs=2)
    assert overall_sparsity(model) > 0.15
    assert history.history["loss"][-1] < history.history["loss"][0]
    thresholds = [float(to_numpy(l.threshold)) for l in model.layers]
    assert min(thresholds) > keras_str.STR().threshold_init  # decay raised s


@pytest.mark.skipif(BACKEND == "torch", reason="one step per execution on torch")
@pytest.mark.parametrize(
    "method_name", list(one_method_by_default(["st3", "gmp", "str_target"], "str_target"))
)
def test_steps_per_execution_gives_the_same_training(method_name):
    one = sparse_mlp(method_name)
    fit(one, steps_per_execution=1)
    sixteen = sparse_mlp(method_name)
    fit(sixteen, steps_per_execution=16)
    for a, b in zip(one.layers, sixteen.layers):
        np.testing.assert_allclose(
            to_numpy(a.thresholded_kernel()), to_numpy(b.thresholded_kernel()),
            atol=1e-5,
        )


@pytest.mark.parametrize(
    "method_name",
    list(one_method_by_default(["st3_sigma_rescale", "gmp", "str_target"], "st3_sigma_rescale")),
)
def test_mixed_precision_training_reaches_the_target(method_name):
    keras.config.set_dtype_policy("mixed_float16")
    model = sparse_mlp(method_name)
    # Compiled on JAX, as users run it there: op-by-op float16 costs ~45 s.
    fit(model, jit_compile=BACKEND == "jax")
    assert overall_sparsity(model) == pytest.approx(TARGET, abs=0.01)
    for layer in model.layers:
        for variable in layer.sparsity_state.values():
            assert variable.dtype == "float32"


# Custom training loops: the forward pass with training=True is the one call
# that advances the methods.


def test_custom_training_loop_advances_the_methods():
    model = sparse_mlp("st3")
    optimizer = keras.optimizers.SGD(0.05, momentum=0.9)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    x, y = toy_data()
    batches = [(x[i:i + BATCH_SIZE], y[i:i + BATCH_SIZE])
               for i in range(0, len(x), BATCH_SIZE)]
    optimizer.build(model.trainable_variables)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        @tf.function(jit_compile=True)
        def train_step(x, y):
            with tf.GradientTape() as tape:
                loss = loss_fn(y, model(x, training=True))
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply(grads, model.trainable_variables)

        for xb, yb in batches:
            train_step(xb, yb)
    elif BACKEND == "jax":
        import jax

        def compute_loss(trainable, non_trainable, x, y):
            logits, non_trainable = model.stateless_call(
                trainable, non_trainable, x, training=True
            )
            return loss_fn(y, logits), non_trainable

        @jax.jit
        def train_step(state, x, y):
            trainable, non_trainable, optimizer_variables = state
            (_, non_trainable), grads = jax.value_and_grad(
                compute_loss, has_aux=True
            )(trainable, non_trainable, x, y)
            trainable, optimizer_variables = optimizer.stateless_apply(
                optimizer_variables, grads, trainable
            )
            return trainable, non_trainable, optimizer_variables

        state = (
            [v.value for v in model.trainable_variables],
            [v.value for v in model.non_trainable_variables],
            [v.value for v in optimizer.variables],
        )
        for xb, yb in batches:
            state = train_step(state, xb, yb)
        for variable, value in zip(model.trainable_variables, state[0]):
            variable.assign(value)
        for variable, value in zip(model.non_trainable_variables, state[1]):
            variable.assign(value)
    else:
        import torch

        for xb, yb in batches:
            loss = loss_fn(torch.as_tensor(yb), model(torch.as_tensor(xb), training=True))
            model.zero_grad()
            loss.backward()
            grads = [v.value.grad for v in model.trainable_variables]
            with torch.no_grad():
                optimizer.apply(grads, model.trainable_variables)
    assert step_counters(model) == [STEPS] * 3
    assert overall_sparsity(model) == pytest.approx(TARGET, abs=0.01)


# Several devices, each in its own process (two strategies in one process
# can abort).


def run_script(code, env_overrides, timeout=600):
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3",
               **env_overrides)
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                         capture_output=True, text=True, env=env, timeout=timeout)
    assert out.returncode == 0, out.stderr[-4000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow  # two fresh TensorFlow processes: 30 s
@pytest.mark.tensorflow
def test_mirrored_strategy_on_two_devices_matches_one_device():
    result = run_script(
        """
        import json
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from tests.in_step_common import *

        def train(method_name, strategy, steps_per_execution):
            with strategy.scope():
                model = compile_for_test(sparse_mlp(method_name), steps_per_execution)
            x, y = toy_data()
            history = model.fit(x, y, batch_size=BATCH_SIZE, epochs=1, verbose=0,
                                shuffle=False)
            return {"sparsity": overall_sparsity(model), "steps": step_counters(model),
                    "loss": history.history["loss"][-1]}

        mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        results = {}
        for name in METHOD_NAMES:
            # steps_per_execution > 1 under MirroredStrategy fails in Keras
            # 3.15 / TF 2.21 for plain Keras models too ("You must feed a
            # value for placeholder tensor .../while/cond/Placeholder").
            for spe in (1,):
                results[f"{name}/{spe}"] = {
                    "mirrored": train(name, mirrored, spe),
                    "one": train(name, tf.distribute.get_strategy(), spe)}
        print(json.dumps(results))
        """,
        {"KERAS_BACKEND": "tensorflow"},
    )
    for key, runs in result.items():
        assert runs["mirrored"]["steps"] == [STEPS] * 3, key
        assert runs["mirrored"]["sparsity"] == pytest.approx(TARGET, abs=0.01), key
        # Two replicas sum gradients in another order: on CPUs where TF runs
        # without oneDNN a rescaled method's loss moved 0.3 % (one weight
        # crossing the threshold); a replica-local update would move it far more.
        assert runs["mirrored"]["loss"] == pytest.approx(runs["one"]["loss"], rel=1e-2), key


@pytest.mark.slow  # two fresh JAX processes: 17 s
@pytest.mark.skipif(BACKEND != "jax", reason="runs in the JAX pass of the suite")
def test_jax_data_parallel_on_two_host_devices():
    result = run_script(
        """
        import json
        import jax
        import keras
        assert len(jax.devices()) == 2, jax.devices()
        keras.distribution.set_distribution(
            keras.distribution.DataParallel(devices=jax.devices()))
        from tests.in_step_common import *

        results = {}
        for name in METHOD_NAMES:
            for spe in (16,):
                model = compile_for_test(sparse_mlp(name), spe, jit_compile=True)
                x, y = toy_data()
                model.fit(x, y, batch_size=BATCH_SIZE, epochs=1, verbose=0)
                results[f"{name}/{spe}"] = {
                    "sparsity": overall_sparsity(model), "steps": step_counters(model)}
        print(json.dumps(results))
        """,
        {"KERAS_BACKEND": "jax",
         "XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
    )
    for key, run in result.items():
        assert run["steps"] == [STEPS] * 3, key
        assert run["sparsity"] == pytest.approx(TARGET, abs=0.01), key


# Resuming.


@pytest.mark.tensorflow
@pytest.mark.parametrize("method_name", [
    # The resume path is the same for every method's state: one by default.
    pytest.param("st3", marks=pytest.mark.slow),
    pytest.param("gmp", marks=pytest.mark.slow),
    "str_target",
])
def test_backup_and_restore_mid_epoch_resumes_bit_identically(method_name, tmp_path):
    x, y = toy_data()

    class Interrupt(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 24:
                raise RuntimeError("interrupted")

    def fit_model(model, x, y, epochs, callbacks=()):
        model.fit(x, y, batch_size=BATCH_SIZE, epochs=epochs, verbose=0,
                  shuffle=False, callbacks=list(callbacks))
        return model

    backup_dir = str(tmp_path / "backup")
    with pytest.raises(RuntimeError, match="interrupted"):
        fit_model(compile_for_test(sparse_mlp(method_name)), x, y, 2,
                  [keras.callbacks.BackupAndRestore(backup_dir, save_freq=10),
                   Interrupt()])
    resumed = fit_model(
        compile_for_test(sparse_mlp(method_name, seed=1)), x, y, 2,
        [keras.callbacks.BackupAndRestore(backup_dir, save_freq=10)],
    )
    # Keras restores the state saved after 20 steps and replays the
    # interrupted epoch from its first batch: the same as training 20
    # batches, then two full epochs.
    reference = compile_for_test(sparse_mlp(method_name))
    fit_model(reference, x[: 20 * BATCH_SIZE], y[: 20 * BATCH_SIZE], 1)
    fit_model(reference, x, y, 2)
    assert step_counters(resumed) == [20 + 2 * STEPS] * 3
    for a, b in zip(reference.weights, resumed.weights):
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b), err_msg=a.path)


def test_any_layer_of_the_group_makes_its_update():
    # The update must not wait for one particular layer: here the layer the
    # method met first is not called at all in this forward pass.
    method = keras_str.ST3(0.5, keras_str.ConstantSchedule())
    first = keras_str.STRDense(4, method=method)
    second = keras_str.STRDense(4, method=method)
    x = np.random.default_rng(0).normal(size=(2, 8)).astype("float32")
    first.build((None, 8))
    second.build((None, 8))
    assert method.layers[0] is first

    second(x, training=True)

    assert float(to_numpy(first.threshold)) > 0
    assert np.mean(to_numpy(first.thresholded_kernel()) == 0) == pytest.approx(0.5, abs=0.1)
    assert int(to_numpy(second.sparsity_step)) == 1


def test_a_layer_called_twice_in_a_step_counts_it_once():
    # A shared layer (a tied embedding is one) must not run the schedule
    # twice as fast.
    shared = keras.layers.Dense(10, name="shared")
    inputs = keras.Input((10,))
    outputs = keras.layers.Dense(3, name="logits")(shared(shared(inputs)))
    keras.utils.set_random_seed(0)
    model = keras_str.sparsify(
        keras.Model(inputs, outputs),
        method=keras_str.ST3(TARGET, keras_str.PolynomialSchedule(0, STEPS)),
    )
    compile_for_test(model)
    x, y = toy_data(n=8 * BATCH_SIZE)
    model.fit(x, y, batch_size=BATCH_SIZE, verbose=0)

    assert step_counters(model) == [8, 8]
