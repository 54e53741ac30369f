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


def train_gmp_tfmot(
    build,
    x_train,
    y_train,
    *,
    target_sparsity,
    epochs,
    batch_size=128,
    lr=0.1,
    momentum=0.9,
    weight_decay=0.0,
    label_smoothing=0.0,
    pruning_end_fraction=0.75,
    frequency=100,
    verbose=0,
):
    """Trains `build(keras_module=tf_keras)` with `prune_low_magnitude`.

    The sparsity rises from 0 to `target_sparsity` on tfmot's cubic
    `PolynomialDecay` over the first `pruning_end_fraction` of the steps;
    SGD with momentum and a cosine learning rate, as the keras-str scripts.

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
    steps = epochs * math.ceil(len(x_train) / batch_size)
    model = build(keras_module=tf_keras)
    if weight_decay:
        for layer in model.layers:
            if hasattr(layer, "kernel_regularizer"):
                layer.kernel_regularizer = tf_keras.regularizers.L2(weight_decay / 2)
        model = tf_keras.models.model_from_json(model.to_json())
    schedule = sparsity.PolynomialDecay(
        initial_sparsity=0.0,
        final_sparsity=target_sparsity,
        begin_step=0,
        end_step=max(int(steps * pruning_end_fraction), 1),
        frequency=min(frequency, max(steps // 10, 1)),
    )
    pruned = sparsity.prune_low_magnitude(model, pruning_schedule=schedule)
    pruned.compile(
        optimizer=tf_keras.optimizers.SGD(
            tf_keras.optimizers.schedules.CosineDecay(lr, steps), momentum=momentum
        ),
        loss=tf_keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=label_smoothing
        ),
        metrics=["accuracy"],
    )
    y_onehot = tf_keras.utils.to_categorical(y_train, model.output_shape[-1])
    history = pruned.fit(
        x_train,
        y_onehot,
        batch_size=batch_size,
        epochs=epochs,
        verbose=verbose,
        callbacks=[sparsity.UpdatePruningStep()],
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
