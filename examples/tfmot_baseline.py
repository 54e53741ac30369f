"""The baseline users would otherwise pick: tfmot's gradual magnitude pruning.

tensorflow-model-optimization prunes tf_keras models only, and importing it
sets `TF_USE_LEGACY_KERAS=1`, which would turn `tf.keras` into tf_keras for
the rest of the process. `import_tfmot()` imports it without that leak; the
architectures come from `examples.models` built with `keras_module=tf_keras`.
"""

import math
import os


def import_tfmot():
    """Imports tfmot; `tf.keras` and `TF_USE_LEGACY_KERAS` stay as they were."""
    import tensorflow as tf

    # tf.keras resolves lazily, on first attribute access, from the
    # environment at that moment: pin it to the user's choice before tfmot
    # flips the variable.
    tf.keras.layers  # noqa: B018
    saved = os.environ.get("TF_USE_LEGACY_KERAS")
    try:
        import tensorflow_model_optimization as tfmot
    finally:
        if saved is None:
            os.environ.pop("TF_USE_LEGACY_KERAS", None)
        else:
            os.environ["TF_USE_LEGACY_KERAS"] = saved
    return tfmot


def with_weight_decay(model, weight_decay):
    """A tf_keras copy of `model` with PyTorch-style coupled decay on its kernels.

    The same `L2(weight_decay / 2)` that `keras_str.apply_weight_decay` sets on
    Keras 3 models; tf_keras reads regularizers at build time, so the model is
    rebuilt from its config (weights are not kept).
    """
    import tf_keras

    for layer in model.layers:
        if hasattr(layer, "kernel_regularizer"):
            layer.kernel_regularizer = tf_keras.regularizers.L2(weight_decay / 2)
    return tf_keras.models.model_from_json(model.to_json())


def train_gmp_tfmot(
    build,
    x_train,
    y_train,
    *,
    target_sparsity,
    epochs,
    batch_size=128,
    lr=0.1,
    warmup_epochs=0.0,
    momentum=0.9,
    weight_decay=0.0,
    label_smoothing=0.0,
    pruning_start_fraction=0.0,
    pruning_end_fraction=0.75,
    frequency=100,
    validation_data=None,
    verbose=0,
):
    """Trains `build(keras_module=tf_keras)` with `prune_low_magnitude`.

    The sparsity rises from 0 to `target_sparsity` on tfmot's cubic
    `PolynomialDecay` between `pruning_start_fraction` and
    `pruning_end_fraction` of the steps; SGD with Nesterov momentum and a
    cosine learning rate after an optional linear warm-up, as the keras-str
    scripts. The history has a per-epoch `sparsity` entry.

    Returns:
        `(stripped tf_keras model, History)`.
    """
    if not 0.0 < target_sparsity < 1.0:
        raise ValueError(
            "Expected `target_sparsity` in (0, 1). "
            f"Received: target_sparsity={target_sparsity}"
        )
    tfmot = import_tfmot()
    import tf_keras

    sparsity = tfmot.sparsity.keras
    steps_per_epoch = math.ceil(len(x_train) / batch_size)
    steps = epochs * steps_per_epoch
    warmup = int(warmup_epochs * steps_per_epoch)
    model = build(keras_module=tf_keras)
    if weight_decay:
        model = with_weight_decay(model, weight_decay)
    schedule = sparsity.PolynomialDecay(
        initial_sparsity=0.0,
        final_sparsity=target_sparsity,
        begin_step=int(steps * pruning_start_fraction),
        end_step=max(
            int(steps * pruning_end_fraction), int(steps * pruning_start_fraction) + 1
        ),
        frequency=min(frequency, max(steps // 10, 1)),
    )
    pruned = sparsity.prune_low_magnitude(model, pruning_schedule=schedule)
    if warmup:
        learning_rate = tf_keras.optimizers.schedules.CosineDecay(
            0.0, max(steps - warmup, 1), warmup_target=lr, warmup_steps=warmup
        )
    else:
        learning_rate = tf_keras.optimizers.schedules.CosineDecay(lr, steps)
    pruned.compile(
        optimizer=tf_keras.optimizers.SGD(
            learning_rate, momentum=momentum, nesterov=True
        ),
        loss=tf_keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=label_smoothing
        ),
        metrics=["accuracy"],
    )
    num_classes = model.output_shape[-1]
    y_onehot = tf_keras.utils.to_categorical(y_train, num_classes)
    if validation_data is not None:
        x_val, y_val = validation_data
        validation_data = (x_val, tf_keras.utils.to_categorical(y_val, num_classes))

    class LogSparsity(tf_keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if logs is not None:
                logs["sparsity"] = pruned_kernel_sparsity(pruned)

    history = pruned.fit(
        x_train,
        y_onehot,
        batch_size=batch_size,
        epochs=epochs,
        verbose=verbose,
        validation_data=validation_data,
        callbacks=[sparsity.UpdatePruningStep(), LogSparsity()],
    )
    return sparsity.strip_pruning(pruned), history


def kernel_sparsity(model):
    """Fraction of exact zeros over a tf_keras model's Dense/Conv kernels."""
    import numpy as np

    zeros = params = 0
    for layer in model.layers:
        kernel = getattr(layer, "kernel", None)
        if kernel is not None:
            values = kernel.numpy()
            zeros += int(np.sum(values == 0))
            params += values.size
    return zeros / params if params else 0.0


def pruned_kernel_sparsity(pruned_model):
    """Fraction of masked kernel weights of a model wrapped by tfmot."""
    import numpy as np

    zeros = params = 0
    for layer in pruned_model.layers:
        for _weight, mask, _threshold in getattr(layer, "pruning_vars", ()):
            values = mask.numpy()
            zeros += int(np.sum(values == 0))
            params += values.size
    return zeros / params if params else 0.0
