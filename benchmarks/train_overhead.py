"""Training step time of STR models relative to the same dense model.

    python -m benchmarks.train_overhead [--steps 60] [--rounds 5] [--batch_size 128]

For each example model, the dense and the STR (`keras_str.sparsify`) versions,
both with the same weight decay, are compiled identically (SGD with momentum,
jit_compile as given) and timed with `fit` epochs over the same in-memory
data in alternating rounds; the median step time of each is reported with
their ratio. Data is random (step time does not depend on its values), so the
benchmark needs no download. ST-3 and GMP rows follow with those methods.
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
from examples.models import lenet_300_100  # noqa: E402
from examples.models import mobilenet_v1_xnnpack  # noqa: E402
from examples.models import small_cnn  # noqa: E402
from keras_str.io_utils import write_text_atomic  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("steps", 20, "Training steps per timed epoch.")
flags.DEFINE_integer("rounds", 15, "Alternating rounds (median over rounds).")
flags.DEFINE_integer("batch_size", 128, "Batch size.")
flags.DEFINE_bool("jit_compile", True, "Compile the train step with XLA.")
flags.DEFINE_string("out_dir", "benchmarks/results", "Where the table goes.")

MODELS = {
    "lenet_300_100": (lenet_300_100, (28, 28, 1)),
    "small_cnn": (small_cnn, (28, 28, 1)),
    "mobilenet_v1_xnnpack_32px": (
        lambda: mobilenet_v1_xnnpack(input_shape=(32, 32, 3), alpha=0.25),
        (32, 32, 3),
    ),
}


def compiled(model):
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=FLAGS.jit_compile,
    )
    return model


def seconds_per_step(model, x, y, batch_size):
    """Seconds per step of one `fit` epoch over in-memory data."""
    start = time.perf_counter()
    model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0, shuffle=False)
    return (time.perf_counter() - start) / (len(x) // batch_size)


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    rng = np.random.default_rng(0)
    rows = []
    for name, (build, shape) in MODELS.items():
        keras.utils.set_random_seed(0)
        # Both with the same weight decay: the difference is STR's own cost.
        dense = compiled(keras_str.apply_weight_decay(build(), 5e-4))
        sparse = compiled(keras_str.sparsify(build(), weight_decay=5e-4))
        x = rng.uniform(size=(FLAGS.steps * FLAGS.batch_size,) + shape).astype("float32")
        y = rng.integers(0, 10, size=(FLAGS.steps * FLAGS.batch_size,))
        for model in (dense, sparse):  # trace and compile outside the timing
            model.fit(x[: 2 * FLAGS.batch_size], y[: 2 * FLAGS.batch_size],
                      batch_size=FLAGS.batch_size, epochs=1, verbose=0)
        times = {"dense": [], "str": []}
        for _ in range(FLAGS.rounds):
            times["dense"].append(seconds_per_step(dense, x, y, FLAGS.batch_size))
            times["str"].append(seconds_per_step(sparse, x, y, FLAGS.batch_size))
        dense_ms = 1000 * float(np.median(times["dense"]))
        str_ms = 1000 * float(np.median(times["str"]))
        # Each round's two epochs ran back to back, under the same machine
        # load: their ratio is steadier than the ratio of overall medians.
        ratios = np.array(times["str"]) / np.array(times["dense"])
        low, high = np.percentile(ratios, [25, 75])
        rows.append((name, dense_ms, str_ms, float(np.median(ratios)), low, high))
        print(f"{name}: dense {dense_ms:.2f} ms/step, STR {str_ms:.2f} ms/step, "
              f"paired ratio {np.median(ratios):.2f}x (IQR {low:.2f}-{high:.2f})",
              flush=True)
        keras.utils.clear_session()
    lines = [
        f"Step time, batch {FLAGS.batch_size}, jit_compile={FLAGS.jit_compile}, "
        f"median of {FLAGS.rounds} alternating fit epochs of {FLAGS.steps} steps",
        "",
        "| model | dense ms/step | STR ms/step | STR / dense (median of paired rounds) | IQR |",
        "|---|---|---|---|---|",
    ] + [
        f"| {n} | {d:.2f} | {s:.2f} | {r:.2f}x | {lo:.2f}-{hi:.2f} |"
        for n, d, s, r, lo, hi in rows
    ]
    table = "\n".join(lines)
    print("\n" + table)
    os.makedirs(FLAGS.out_dir, exist_ok=True)
    write_text_atomic(os.path.join(FLAGS.out_dir, "train_overhead.md"), table + "\n")


if __name__ == "__main__":
    app.run(main)
