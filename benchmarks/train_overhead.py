"""Training step time of STR models relative to the same dense model.

    python -m benchmarks.train_overhead [--steps 60] [--rounds 5] [--batch_size 128]

For each example model, the dense model and its STR, targeted-STR, ST-3 and
GMP versions (`keras_str.sparsify`), all with the same weight decay, are
compiled identically (SGD with momentum, jit_compile as given) and timed with
`fit` epochs over the same in-memory data, every variant once per round; for
LeNet and the small CNN, tfmot's pruned tf_keras model is timed against the
same tf_keras dense model. Each method's step time is reported with the
median of its per-round ratio to its baseline. Data is random (step time
does not depend on its values), so the benchmark needs no download.
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
flags.DEFINE_integer("rounds", 9, "Alternating rounds (median over rounds).")
flags.DEFINE_integer("batch_size", 128, "Batch size.")
flags.DEFINE_bool("jit_compile", True, "Compile the train step with XLA.")
flags.DEFINE_string("out_dir", "benchmarks/results", "Where the table goes.")
flags.DEFINE_list("models", None, "Models to time (default: all).")

TFMOT_MODELS = {"lenet_300_100": lenet_300_100, "small_cnn": small_cnn}

MODELS = {
    "lenet_300_100": (lenet_300_100, (28, 28, 1)),
    "small_cnn": (small_cnn, (28, 28, 1)),
    "mobilenet_v1_xnnpack_32px": (
        lambda: mobilenet_v1_xnnpack(input_shape=(32, 32, 3), alpha=0.25),
        (32, 32, 3),
    ),
}


def compiled(model, keras_module=keras):
    """Compiles a Keras 3 or tf_keras model the same way."""
    model.compile(
        optimizer=keras_module.optimizers.SGD(0.01, momentum=0.9),
        loss=keras_module.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=FLAGS.jit_compile,
    )
    return model


def keras3_variants(build, steps):
    """Every keras-str method on the same architecture, with the same decay."""
    schedule = keras_str.PolynomialSchedule(0, steps)

    def sparse(method):
        return compiled(keras_str.sparsify(build(), method=method, weight_decay=5e-4))

    def scheduled(method):
        return sparse(method), [keras_str.UpdateSparsity()]

    return {
        "dense": (compiled(keras_str.apply_weight_decay(build(), 5e-4)), []),
        "str": (sparse(None), []),
        "str_target": scheduled(keras_str.STR(0.9, schedule)),
        "st3": scheduled(keras_str.ST3(0.9, schedule)),
        "str_target_every10": scheduled(keras_str.STR(0.9, schedule, frequency=10)),
        "st3_every10": scheduled(keras_str.ST3(0.9, schedule, frequency=10)),
        "gmp": scheduled(keras_str.GMP(0.9, schedule)),
    }


def tfmot_variants(build, steps):
    """tf_keras dense and tfmot-pruned copies (tfmot's own baseline)."""
    from examples.tfmot_baseline import import_tfmot
    from examples.tfmot_baseline import with_weight_decay

    tfmot = import_tfmot()
    import tf_keras

    def dense():
        return with_weight_decay(build(keras_module=tf_keras), 5e-4)

    sparsity = tfmot.sparsity.keras
    pruned = sparsity.prune_low_magnitude(
        dense(),
        pruning_schedule=sparsity.PolynomialDecay(0.0, 0.9, 0, steps),
    )
    return {
        "tf_keras_dense": (compiled(dense(), tf_keras), []),
        "gmp_tfmot": (compiled(pruned, tf_keras), [sparsity.UpdatePruningStep()]),
    }


def seconds_per_step(model, callbacks, x, y, batch_size):
    """Seconds per step of one `fit` epoch over in-memory data."""
    start = time.perf_counter()
    model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0, shuffle=False,
              callbacks=callbacks)
    return (time.perf_counter() - start) / (len(x) // batch_size)


# (variant, the baseline it is compared with)
RATIOS = (
    ("str", "dense"),
    ("str_target", "dense"),
    ("st3", "dense"),
    ("str_target_every10", "dense"),
    ("st3_every10", "dense"),
    ("gmp", "dense"),
    ("gmp_tfmot", "tf_keras_dense"),
)


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    rng = np.random.default_rng(0)
    rows = []
    total_steps = (FLAGS.rounds + 1) * FLAGS.steps
    names = FLAGS.models or list(MODELS)
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        raise app.UsageError(f"Unknown --models {unknown}; expected some of {sorted(MODELS)}.")
    for name in names:
        build, shape = MODELS[name]
        keras.utils.set_random_seed(0)
        variants = keras3_variants(build, total_steps)
        if name in TFMOT_MODELS:
            variants.update(tfmot_variants(TFMOT_MODELS[name], total_steps))
        x = rng.uniform(size=(FLAGS.steps * FLAGS.batch_size,) + shape).astype("float32")
        y = rng.integers(0, 10, size=(FLAGS.steps * FLAGS.batch_size,))
        for model, callbacks in variants.values():  # trace outside the timing
            model.fit(x[: 2 * FLAGS.batch_size], y[: 2 * FLAGS.batch_size],
                      batch_size=FLAGS.batch_size, epochs=1, verbose=0,
                      callbacks=callbacks)
        times = {key: [] for key in variants}
        for _ in range(FLAGS.rounds):
            for key, (model, callbacks) in variants.items():
                times[key].append(
                    seconds_per_step(model, callbacks, x, y, FLAGS.batch_size)
                )
        for variant, baseline in RATIOS:
            if variant not in times:
                continue
            # Each round's epochs ran back to back, under the same machine
            # load: paired ratios are steadier than ratios of medians.
            ratios = np.array(times[variant]) / np.array(times[baseline])
            low, high = np.percentile(ratios, [25, 75])
            row = (name, variant, baseline, 1000 * float(np.median(times[baseline])),
                   1000 * float(np.median(times[variant])), float(np.median(ratios)),
                   low, high)
            rows.append(row)
            print(f"{name} {variant}: {row[4]:.2f} ms/step vs {baseline} "
                  f"{row[3]:.2f}: {row[5]:.2f}x (IQR {low:.2f}-{high:.2f})", flush=True)
        keras.utils.clear_session()
    lines = [
        f"Step time, batch {FLAGS.batch_size}, jit_compile={FLAGS.jit_compile}, "
        f"median of {FLAGS.rounds} rounds of {FLAGS.steps}-step fit epochs, every "
        "variant once per round; weight decay 5e-4 everywhere; scheduled methods "
        "with their callback (ST-3 and targeted STR update every step, or "
        "every 10 steps in the `_every10` rows; GMP every 100 steps).",
        "",
        "| model | method | baseline | baseline ms/step | method ms/step | "
        "method / baseline (median of paired rounds) | IQR |",
        "|---|---|---|---|---|---|---|",
    ] + [
        f"| {n} | {v} | {b} | {bm:.2f} | {vm:.2f} | {r:.2f}x | {lo:.2f}-{hi:.2f} |"
        for n, v, b, bm, vm, r, lo, hi in rows
    ]
    table = "\n".join(lines)
    print("\n" + table)
    os.makedirs(FLAGS.out_dir, exist_ok=True)
    write_text_atomic(os.path.join(FLAGS.out_dir, "train_overhead.md"), table + "\n")


if __name__ == "__main__":
    app.run(main)
