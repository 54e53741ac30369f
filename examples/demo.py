"""keras-str end to end on Fashion-MNIST: train, strip, export, report.

    python -m examples.demo [--recipe st3_sigma_rescale] [--target_sparsity 0.95]
                            [--epochs 6] [--out_dir demo_output]

Trains the small CNN of `examples/models.py` with the recipe the results
table recommends: ST-3 with the sigma-normalized global threshold and
per-channel rescaling, on a cubic schedule to `--target_sparsity` over the
first 75 % of training (SGD with Nesterov momentum, a cosine learning rate,
coupled weight decay). The schedule advances inside the train step; no
callback is needed. `--recipe str` trains plain STR instead (sparsity set by
the weight decay alone). Then prints the per-layer sparsity table and the
test accuracy, and writes the sparse-trainable model, its stripped (plain
Keras, exact zeros) twin and a sparse float32 `.tflite`, whose predictions
are checked in LiteRT.
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

import keras_str  # noqa: E402
from examples.data import load_image_classification  # noqa: E402
from examples.data import normalize_images  # noqa: E402
from keras_str.core.io_utils import save_model_atomic  # noqa: E402
from examples.models import small_cnn  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_enum(
    "recipe", "st3_sigma_rescale", ["st3_sigma_rescale", "str"],
    "st3_sigma_rescale: the recommended recipe; str: plain STR.",
)
flags.DEFINE_float("target_sparsity", 0.95, "Final fraction of zeros (ST-3).")
flags.DEFINE_integer("epochs", 6, "Training epochs.")
flags.DEFINE_integer("batch_size", 128, "Batch size.")
flags.DEFINE_float("lr", 0.1, "Peak learning rate (SGD, Nesterov momentum 0.9, cosine).")
flags.DEFINE_float(
    "weight_decay", None,
    "Coupled weight decay lambda (default: 5e-4 for ST-3, 5e-3 for STR).",
)
flags.DEFINE_float("threshold_init", -5.0, "STR's initial raw threshold s.")
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.DEFINE_string("out_dir", "demo_output", "Where the models are written.")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    start = time.time()
    keras.utils.set_random_seed(FLAGS.seed)
    (x_train, y_train), (x_test, y_test) = load_image_classification(
        "fashion_mnist"
    )
    x_train, x_test = normalize_images(x_train), normalize_images(x_test)

    steps_per_epoch = int(np.ceil(len(x_train) / FLAGS.batch_size))
    steps = FLAGS.epochs * steps_per_epoch
    if FLAGS.recipe == "str":
        method = keras_str.STR(threshold_init=FLAGS.threshold_init)
        weight_decay = 5e-3 if FLAGS.weight_decay is None else FLAGS.weight_decay
    else:
        schedule = keras_str.PolynomialSchedule.from_epochs(
            steps_per_epoch, 0, 0.75 * FLAGS.epochs
        )
        method = keras_str.ST3(
            FLAGS.target_sparsity, schedule, scope="sigma", rescale=True
        )
        weight_decay = 5e-4 if FLAGS.weight_decay is None else FLAGS.weight_decay
    model = keras_str.sparsify(small_cnn(), method=method, weight_decay=weight_decay)
    model.compile(
        optimizer=keras.optimizers.SGD(
            keras.optimizers.schedules.CosineDecay(FLAGS.lr, steps),
            momentum=0.9,
            nesterov=True,
        ),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(
        x_train,
        y_train,
        batch_size=FLAGS.batch_size,
        epochs=FLAGS.epochs,
        verbose=2,
        callbacks=[keras_str.SparsityMonitor(per_layer=False)],
    )

    os.makedirs(FLAGS.out_dir, exist_ok=True)
    model_path = os.path.join(FLAGS.out_dir, "sparse_model.keras")
    save_model_atomic(model, model_path)
    stripped = keras_str.strip(model)
    stripped_path = os.path.join(FLAGS.out_dir, "stripped_model.keras")
    save_model_atomic(stripped, stripped_path)
    report = keras_str.sparsity_report(model)
    report.to_json(os.path.join(FLAGS.out_dir, "sparsity_report.json"))
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    _, stripped_accuracy = stripped.evaluate(x_test, y_test, verbose=0)

    tflite_path = os.path.join(FLAGS.out_dir, "model.tflite")
    export = keras_str.export_tflite(stripped, tflite_path)
    keras_logits = stripped.predict(x_test, batch_size=1000, verbose=0)
    tflite_logits = keras_str.predict_tflite(tflite_path, x_test)
    tflite_accuracy = np.mean(np.argmax(tflite_logits, axis=1) == y_test)
    max_difference = np.max(np.abs(tflite_logits - keras_logits))

    print("\nSparse TFLite export:")
    print(export.summary())
    print("\nPer-layer sparsity of the trained model:")
    print(report.table())
    print(f"\nrecipe:          {method!r}")
    print(f"sparse model:    {model_path}")
    print(f"stripped model:  {stripped_path}")
    print(f"tflite model:    {tflite_path}")
    print(
        f"test accuracy:   {accuracy:.4f} (stripped: {stripped_accuracy:.4f}, "
        f"LiteRT: {tflite_accuracy:.4f}, max |LiteRT - Keras| "
        f"{max_difference:.1e})"
    )
    print(f"overall sparsity: {100 * report.totals['sparsity']:.2f}%")
    print(f"total time:      {time.time() - start:.0f} s")


if __name__ == "__main__":
    app.run(main)
