"""One training run of any method, shared by `examples/train.py` and the benchmarks.

`run_training(config, data)` builds an example model, makes it sparse with the
requested method (dense, plain STR, STR with a target, block STR, ST-3, GMP on Keras 3,
or tfmot's GMP on tf_keras), trains it with SGD + momentum, a cosine learning
rate with warm-up and optional label smoothing, and returns the trained and
stripped models with their test accuracy and sparsity report.
"""

import dataclasses
import math
import time

import keras
import numpy as np

import keras_str
from examples.models import MODELS

METHODS = (
    "dense", "str", "str_n_m", "block_str", "channel_str", "st3", "st3_n_m", "gmp",
    "gmp_channel", "gmp_n_m", "gmp_tfmot",
)
TFMOT_MODELS = ("lenet_300_100", "small_cnn")


@dataclasses.dataclass
class TrainConfig:
    """What one run trains; every field has the meaning of its train.py flag."""

    model: str = "lenet_300_100"
    method: str = "str"
    target_sparsity: float | None = None
    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.1
    warmup_epochs: float = 0.0
    momentum: float = 0.9
    weight_decay: float = 5e-4
    threshold_init: float = -5.0
    label_smoothing: float = 0.0
    pruning_start_fraction: float = 0.0
    pruning_end_fraction: float = 0.75
    block_size: int = 4
    block_axis: str = "input"
    st3_scope: str = "global"
    budget: str = "weights"
    channel_multiple: int = 1
    st3_rescale: bool = False
    gmp_frequency: int = 100
    update_frequency: int = 1
    layer_targets: dict | None = None
    keep_dense: tuple = ()
    n_m: str = "2:4"
    seed: int = 0

    def validate(self):
        if self.model not in MODELS:
            raise ValueError(
                f"Unknown model. Expected one of {sorted(MODELS)}. "
                f"Received: model={self.model!r}"
            )
        if self.method not in METHODS:
            raise ValueError(
                f"Unknown method. Expected one of {METHODS}. "
                f"Received: method={self.method!r}"
            )
        scheduled = self.method in ("st3", "gmp", "gmp_channel", "gmp_tfmot")
        if scheduled and self.target_sparsity is None:
            raise ValueError(
                f"Method {self.method!r} needs a target sparsity. "
                f"Received: target_sparsity=None"
            )
        if self.method.endswith("_n_m") and self.target_sparsity is not None:
            raise ValueError(
                f"{self.method}'s target is the one its N:M pattern sets. Received: "
                f"method={self.method!r}, target_sparsity={self.target_sparsity}, "
                f"n_m={self.n_m!r}"
            )
        if self.method == "dense" and self.target_sparsity is not None:
            raise ValueError(
                "The dense method trains no sparsity. Received: "
                f"method='dense', target_sparsity={self.target_sparsity}"
            )
        if self.target_sparsity is not None and not (
            0.0 < self.target_sparsity < 1.0
        ):
            raise ValueError(
                "Expected `target_sparsity` in (0, 1). "
                f"Received: target_sparsity={self.target_sparsity}"
            )
        if self.method == "gmp_tfmot" and self.model not in TFMOT_MODELS:
            raise ValueError(
                f"gmp_tfmot builds tf_keras copies of {TFMOT_MODELS} only. "
                f"Received: model={self.model!r}"
            )
        if self.budget not in ("weights", "macs"):
            raise ValueError(
                "Expected `budget` to be 'weights' or 'macs'. "
                f"Received: budget={self.budget!r}"
            )
        if self.budget == "macs" and self.method not in ("str", "st3", "block_str", "channel_str"):
            raise ValueError(
                "A MACs budget is for str, st3, block_str and channel_str; GMP "
                "prunes each layer to its own target. Received: "
                f"method={self.method!r}, budget='macs'"
            )
        if self.channel_multiple != 1 and self.method != "gmp_channel":
            raise ValueError(
                "`channel_multiple` sizes the layers of uniform filter pruning "
                "(gmp_channel). Received: "
                f"method={self.method!r}, channel_multiple={self.channel_multiple!r}"
            )
        for name in ("epochs", "batch_size", "channel_multiple"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"Expected `{name}` to be a positive integer. "
                    f"Received: {name}={value!r}"
                )
        if not 0.0 <= self.pruning_start_fraction < self.pruning_end_fraction <= 1.0:
            raise ValueError(
                "Expected 0 <= pruning_start_fraction < pruning_end_fraction "
                "<= 1. Received: "
                f"pruning_start_fraction={self.pruning_start_fraction}, "
                f"pruning_end_fraction={self.pruning_end_fraction}"
            )


@dataclasses.dataclass
class TrainResult:
    config: TrainConfig
    model: keras.Model
    stripped: keras.Model
    report: keras_str.SparsityReport
    history: dict
    test_accuracy: float
    train_seconds: float

    def summary(self):
        totals = self.report.totals
        return {
            **dataclasses.asdict(self.config),
            "test_accuracy": self.test_accuracy,
            "sparsity": totals["sparsity"],
            "dense_mflops": totals["dense_macs"] / 1e6,
            "sparse_mflops": totals["sparse_macs"] / 1e6,
            "nonzeros": totals["nonzeros"],
            "layer_sparsity": {r.name: r.sparsity for r in self.report.rows},
            "train_seconds": self.train_seconds,
        }


def build_model(config, input_shape, num_classes, keras_module=keras):
    build = MODELS[config.model]
    if keras_module is not keras:
        return build(input_shape, num_classes, keras_module=keras_module)
    return build(input_shape=input_shape, num_classes=num_classes)


def steps_per_epoch(config, num_examples):
    return math.ceil(num_examples / config.batch_size)


def sparsity_schedule(config, num_examples):
    """The cubic schedule over the configured fraction of training."""
    steps = config.epochs * steps_per_epoch(config, num_examples)
    begin = int(config.pruning_start_fraction * steps)
    end = max(int(config.pruning_end_fraction * steps), begin + 1)
    return keras_str.PolynomialSchedule(begin, end)


def sparsity_method(config, num_examples):
    """The keras-str method object for a config (`None` for dense)."""
    if config.method == "dense":
        return None
    if config.method == "str":
        if config.target_sparsity is None:
            return keras_str.STR(threshold_init=config.threshold_init)
        return keras_str.STR(
            config.target_sparsity,
            sparsity_schedule(config, num_examples),
            frequency=config.update_frequency,
            threshold_init=config.threshold_init,
            budget=config.budget,
        )
    if config.method in ("block_str", "channel_str"):
        targeted = config.target_sparsity is not None
        return keras_str.StructuredSTR(
            config.method.removesuffix("_str"),
            block_size=config.block_size,
            block_axis=config.block_axis,
            target_sparsity=config.target_sparsity,
            schedule=sparsity_schedule(config, num_examples) if targeted else None,
            frequency=config.update_frequency,
            threshold_init=config.threshold_init,
            scope=config.st3_scope,
            budget=config.budget,
        )
    if config.method == "st3":
        return keras_str.ST3(
            config.target_sparsity,
            sparsity_schedule(config, num_examples),
            scope=config.st3_scope,
            rescale=config.st3_rescale,
            frequency=config.update_frequency,
            budget=config.budget,
        )
    if config.method == "gmp":
        return keras_str.GMP(
            config.target_sparsity,
            sparsity_schedule(config, num_examples),
            frequency=gmp_frequency(config, num_examples),
            layer_targets=config.layer_targets,
        )
    if config.method == "str_n_m":
        return keras_str.STR(
            None,
            sparsity_schedule(config, num_examples),
            frequency=config.update_frequency,
            threshold_init=config.threshold_init,
            n_m=config.n_m,
        )
    if config.method == "st3_n_m":
        return keras_str.ST3(
            None,
            sparsity_schedule(config, num_examples),
            scope=config.st3_scope,
            frequency=config.update_frequency,
            n_m=config.n_m,
        )
    if config.method == "gmp_n_m":
        return keras_str.GMP(
            None,
            sparsity_schedule(config, num_examples),
            frequency=gmp_frequency(config, num_examples),
            n_m=config.n_m,
        )
    if config.method == "gmp_channel":
        # Uniform L1-norm filter pruning (Li et al., 2017), applied gradually.
        return keras_str.GMP(
            config.target_sparsity,
            sparsity_schedule(config, num_examples),
            frequency=gmp_frequency(config, num_examples),
            layer_targets=config.layer_targets,
            structure="channel",
            channel_multiple=config.channel_multiple,
        )
    raise ValueError(f"No keras-str method for method={config.method!r}")


def gmp_frequency(config, num_examples):
    """Mask updates every `gmp_frequency` steps, at least ten per run (as tfmot)."""
    steps = config.epochs * steps_per_epoch(config, num_examples)
    return min(config.gmp_frequency, max(steps // 10, 1))


def learning_rate(config, num_examples):
    """Cosine decay to zero, after a linear warm-up from 0 when asked."""
    per_epoch = steps_per_epoch(config, num_examples)
    total = config.epochs * per_epoch
    warmup = int(config.warmup_epochs * per_epoch)
    if warmup:
        return keras.optimizers.schedules.CosineDecay(
            0.0, max(total - warmup, 1), warmup_target=config.lr,
            warmup_steps=warmup,
        )
    return keras.optimizers.schedules.CosineDecay(config.lr, total)


def run_training(config, data, verbose=0, callbacks=(), model=None):
    """Trains one configuration; returns a `TrainResult`.

    Args:
        config: A `TrainConfig`.
        data: `((x_train, y_train), (x_test, y_test))`, images as float32.
        verbose: Keras `fit` verbosity.
        callbacks: Extra Keras callbacks.
        model: A Keras model to train, as it is, in place of a new
            `config.model` (e.g. a stripped architecture with fresh weights,
            to train a pruned model's widths from scratch). Not with
            `gmp_tfmot`, which builds tf_keras copies of its own.
    """
    config.validate()
    if model is not None and config.method == "gmp_tfmot":
        raise ValueError(
            "gmp_tfmot trains tf_keras copies of the example models, not a "
            f"given model. Received: method='gmp_tfmot', model={model.name!r}"
        )
    (x_train, y_train), (x_test, y_test) = data
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    keras.utils.set_random_seed(config.seed)
    if config.method == "gmp_tfmot":
        return _run_tfmot(config, data, num_classes, verbose)

    start = time.perf_counter()
    if model is None:
        model = build_model(config, x_train.shape[1:], num_classes)
    method = sparsity_method(config, len(x_train))
    if method is None:
        keras_str.apply_weight_decay(model, config.weight_decay)
    else:
        model = keras_str.sparsify(
            model,
            method=method,
            weight_decay=config.weight_decay,
            keep_dense=list(config.keep_dense) or None,
        )
    model.compile(
        optimizer=keras.optimizers.SGD(
            learning_rate(config, len(x_train)),
            momentum=config.momentum,
            nesterov=True,
        ),
        loss=keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=config.label_smoothing
        ),
        metrics=["accuracy"],
    )
    fit_callbacks = [keras_str.SparsityMonitor(per_layer=False), *callbacks]
    history = model.fit(
        x_train,
        keras.utils.to_categorical(y_train, num_classes),
        batch_size=config.batch_size,
        epochs=config.epochs,
        validation_data=(x_test, keras.utils.to_categorical(y_test, num_classes)),
        verbose=verbose,
        callbacks=fit_callbacks,
    )
    train_seconds = time.perf_counter() - start
    stripped = keras_str.strip(model) if method is not None else model
    return TrainResult(
        config=config,
        model=model,
        stripped=stripped,
        report=keras_str.sparsity_report(stripped),
        history=_final_history(history.history, model),
        test_accuracy=evaluate_accuracy(stripped, x_test, y_test),
        train_seconds=train_seconds,
    )


def _final_history(history, model):
    # The last entry describes the model as saved (the same numbers as the
    # epoch-end log, recomputed for safety).
    history = {k: [float(v) for v in values] for k, values in history.items()}
    if "sparsity" in history:
        history["sparsity"][-1] = keras_str.sparsity_report(model).totals["sparsity"]
    return history


def evaluate_accuracy(model, x, y, batch_size=1000):
    logits = model.predict(x, batch_size=batch_size, verbose=0)
    return float(np.mean(np.argmax(logits, axis=-1) == y))


def _run_tfmot(config, data, num_classes, verbose):
    from examples.tfmot_baseline import train_gmp_tfmot

    (x_train, y_train), (x_test, y_test) = data
    start = time.perf_counter()
    pruned, history = train_gmp_tfmot(
        lambda keras_module: build_model(
            config, x_train.shape[1:], num_classes, keras_module
        ),
        x_train,
        y_train,
        target_sparsity=config.target_sparsity,
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        warmup_epochs=config.warmup_epochs,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        label_smoothing=config.label_smoothing,
        pruning_start_fraction=config.pruning_start_fraction,
        pruning_end_fraction=config.pruning_end_fraction,
        frequency=config.gmp_frequency,
        validation_data=(x_test, y_test),
        verbose=verbose,
    )
    train_seconds = time.perf_counter() - start
    # The same weights in the Keras 3 architecture: one report, one export
    # path and one evaluation for every method.
    model = build_model(config, x_train.shape[1:], num_classes)
    for layer in model.layers:
        if layer.weights:
            layer.set_weights(pruned.get_layer(layer.name).get_weights())
    return TrainResult(
        config=config,
        model=model,
        stripped=model,
        report=keras_str.sparsity_report(model),
        history={k: [float(v) for v in vs] for k, vs in history.history.items()},
        test_accuracy=evaluate_accuracy(model, x_test, y_test),
        train_seconds=train_seconds,
    )
