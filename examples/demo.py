"""keras-str end to end on Fashion-MNIST: train STR, strip, export, report.

    python -m examples.demo [--epochs 6] [--weight_decay 5e-3] [--out_dir demo_output]

Trains the small CNN of `examples/models.py` with STR (the paper's coupled
weight decay on weights and thresholds, SGD with momentum and a cosine
schedule), prints the per-layer sparsity table and the test accuracy, and
writes the STR model, its stripped (plain Keras, exact zeros) twin and a
sparse float32 `.tflite`, whose predictions are checked in LiteRT.
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
from examples.models import small_cnn  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("epochs", 6, "Training epochs.")
flags.DEFINE_integer("batch_size", 128, "Batch size.")
flags.DEFINE_float("lr", 0.05, "Peak learning rate (SGD, momentum 0.9, cosine).")
flags.DEFINE_float(
    "weight_decay", 5e-3, "STR's coupled weight decay lambda on W and s."
)
flags.DEFINE_float("threshold_init", -5.0, "Initial raw threshold s.")
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

    model = keras_str.sparsify(
        small_cnn(),
        threshold_init=FLAGS.threshold_init,
        weight_decay=FLAGS.weight_decay,
    )
    steps = FLAGS.epochs * int(np.ceil(len(x_train) / FLAGS.batch_size))
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
    model_path = os.path.join(FLAGS.out_dir, "str_model.keras")
    model.save(model_path)
    stripped = keras_str.strip(model)
    stripped_path = os.path.join(FLAGS.out_dir, "stripped_model.keras")
    stripped.save(stripped_path)
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
    print(f"\nSTR model:       {model_path}")
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
