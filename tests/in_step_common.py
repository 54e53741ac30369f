"""A small MLP, data and the four scheduled methods, shared by the in-step tests and their subprocesses."""

import keras
import numpy as np

import keras_str
from tests.backend_utils import to_numpy

TARGET = 0.9
STEPS = 64
BATCH_SIZE = 16
METHOD_NAMES = ("st3", "st3_sigma_rescale", "gmp", "str_target")


def make_method(name, end_step=48):
    schedule = keras_str.PolynomialSchedule(0, end_step)
    if name == "st3":
        return keras_str.ST3(TARGET, schedule)
    if name == "st3_sigma_rescale":
        return keras_str.ST3(TARGET, schedule, scope="sigma", rescale=True)
    if name == "gmp":
        return keras_str.GMP(TARGET, schedule, frequency=4)
    if name == "str_target":
        return keras_str.STR(TARGET, schedule, threshold_init=-5.0)
    if name == "str":
        return keras_str.STR(threshold_init=-3.0)
    raise ValueError(name)


def mlp(input_dim=10, num_classes=3):
    return keras.Sequential(
        [
            keras.Input((input_dim,)),
            keras.layers.Dense(32, activation="relu", name="h0"),
            keras.layers.Dense(16, activation="relu", name="h1"),
            keras.layers.Dense(num_classes, name="logits"),
        ]
    )


def toy_data(n=STEPS * BATCH_SIZE, input_dim=10, num_classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, input_dim)).astype("float32")
    y = x[:, :num_classes].argmax(axis=1).astype("int32")
    return x, y


def sparse_mlp(method_name, seed=0):
    keras.utils.set_random_seed(seed)
    weight_decay = 5e-3 if method_name == "str" else None
    return keras_str.sparsify(
        mlp(), method=make_method(method_name), weight_decay=weight_decay
    )


def compile_for_test(model, steps_per_execution=1, jit_compile=False):
    model.compile(
        keras.optimizers.SGD(0.05, momentum=0.9),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        steps_per_execution=steps_per_execution,
        jit_compile=jit_compile,
    )
    return model


def overall_sparsity(model):
    kernels = [
        np.asarray(to_numpy(layer.thresholded_kernel()))
        for layer in model.layers
        if isinstance(layer, keras_str.SparseKernelLayer)
    ]
    return float(np.mean(np.concatenate([k.ravel() for k in kernels]) == 0))


def step_counters(model):
    return [
        int(to_numpy(layer.sparsity_step))
        for layer in model.layers
        if hasattr(layer, "sparsity_step")
    ]
