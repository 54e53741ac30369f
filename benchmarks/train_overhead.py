"""Train step time of every sparsity method, updating every step, relative to the dense model.

    python -m benchmarks.train_overhead [--backends tensorflow,jax] [--models ...]
        [--methods ...] [--rounds 7] [--seconds_per_epoch 1.0] [--batch_size 128]

For each example model (LeNet-300-100, the small CNN, a MobileNetV1-style
model at 32x32, alpha 0.25), the dense model and its sparsified versions
(`keras_str.sparsify`) are compiled identically (SGD with momentum, weight
decay 5e-4 everywhere, `jit_compile=True`). Scheduled methods update inside
the compiled step at every step (no callback): ST-3 (global), ST-3-sigma
with rescaling, targeted STR and GMP with `frequency=1`; plain STR has no
update. Each backend runs in its own process. Every round fits each variant
for one epoch of the same steps, in turn; a step's time is the wall time
between the end of the first and of the last batch (both synchronised)
divided by the steps between, so `fit`'s set-up is left out. Each method
is reported with the median over rounds of its ratio to the dense model's
time in the same round. The number of steps per epoch is chosen per model
so that a dense epoch lasts about `--seconds_per_epoch`. Data is random
(step time does not depend on its values), so no download is needed.
"""

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from benchmarks.harness import emit  # noqa: E402
from benchmarks.harness import run_worker  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("backends", ["tensorflow", "jax"], "Keras backends, one process each.")
flags.DEFINE_list("models", None, "Models to time (default: all).")
flags.DEFINE_list("methods", None, "Methods to time (default: all).")
flags.DEFINE_integer("rounds", 7, "Alternating rounds (median over rounds).")
flags.DEFINE_float("seconds_per_epoch", 1.0, "Target length of one dense timed epoch.")
flags.DEFINE_integer("min_steps", 6, "Fewest steps per timed epoch.")
flags.DEFINE_integer("max_steps", 60, "Most steps per timed epoch.")
flags.DEFINE_integer("batch_size", 128, "Batch size.")
flags.DEFINE_float("weight_decay", 5e-4, "Weight decay on every variant.")
flags.DEFINE_string("out_dir", "benchmarks/results", "Where the table goes.")
flags.DEFINE_string("worker", None, "Internal: time one backend.")

MODEL_NAMES = ("lenet_300_100", "small_cnn", "mobilenet_v1_xnnpack_32px")
METHOD_NAMES = ("st3", "st3_sigma_rescale", "str_target", "gmp", "str")
DESCRIPTIONS = {
    "st3": "ST-3 (global)",
    "st3_sigma_rescale": "ST-3-sigma + rescale",
    "str_target": "targeted STR",
    "gmp": "GMP, frequency=1",
    "str": "plain STR (no update)",
}
END_STEP = 1_000_000  # Schedules run, so every method updates every timed step.


def _models():
    from examples.models import lenet_300_100
    from examples.models import mobilenet_v1_xnnpack
    from examples.models import small_cnn

    return {
        "lenet_300_100": (lenet_300_100, (28, 28, 1)),
        "small_cnn": (small_cnn, (28, 28, 1)),
        "mobilenet_v1_xnnpack_32px": (
            lambda: mobilenet_v1_xnnpack(input_shape=(32, 32, 3), alpha=0.25),
            (32, 32, 3),
        ),
    }


def _methods():
    import keras_str

    schedule = keras_str.PolynomialSchedule(0, END_STEP)
    return {
        "st3": lambda: keras_str.ST3(0.9, schedule),
        "st3_sigma_rescale": lambda: keras_str.ST3(
            0.9, schedule, scope="sigma", rescale=True
        ),
        "str_target": lambda: keras_str.STR(0.9, schedule),
        "gmp": lambda: keras_str.GMP(0.9, schedule, frequency=1),
        "str": lambda: None,
    }


class StepTimer:
    """A Keras callback: seconds per step between the first and last batch ends."""

    def __init__(self, keras, steps):
        timer = self

        class Callback(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                if batch in (0, steps - 1):
                    # Reading the loss waits for the step to finish.
                    float(keras.ops.convert_to_numpy(logs["loss"]))
                    timer.marks.append(time.perf_counter())

        self.callback = Callback()
        self.steps = steps
        self.marks = []

    def seconds_per_step(self):
        first, last = self.marks[-2:]
        return (last - first) / (self.steps - 1)


def worker(backend):
    import keras
    import numpy as np

    import keras_str

    assert keras.backend.backend() == backend
    models = _models()
    methods = _methods()
    rng = np.random.default_rng(0)

    def compiled(model):
        model.compile(
            optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=True,
        )
        return model

    for model_name in FLAGS.models or MODEL_NAMES:
        build, shape = models[model_name]
        keras.utils.set_random_seed(0)
        variants = {
            "dense": compiled(keras_str.apply_weight_decay(build(), FLAGS.weight_decay))
        }
        for name in FLAGS.methods or METHOD_NAMES:
            variants[name] = compiled(
                keras_str.sparsify(
                    build(), method=methods[name](), weight_decay=FLAGS.weight_decay
                )
            )
        n = FLAGS.max_steps * FLAGS.batch_size
        x = rng.uniform(size=(n,) + shape).astype("float32")
        y = rng.integers(0, 10, size=(n,))

        def epoch(model, steps):
            timer = StepTimer(keras, steps)
            model.fit(x[: steps * FLAGS.batch_size], y[: steps * FLAGS.batch_size],
                      batch_size=FLAGS.batch_size, epochs=1, verbose=0,
                      shuffle=False, callbacks=[timer.callback])
            return timer.seconds_per_step()

        for model in variants.values():  # compile outside the timing
            epoch(model, FLAGS.min_steps)
        dense_step = np.median([epoch(variants["dense"], FLAGS.min_steps) for _ in range(3)])
        steps = int(np.clip(round(FLAGS.seconds_per_epoch / dense_step),
                            FLAGS.min_steps, FLAGS.max_steps))
        times = {name: [] for name in variants}
        for _ in range(FLAGS.rounds):
            for name, model in variants.items():
                times[name].append(epoch(model, steps))
        dense = np.array(times["dense"])
        for name in variants:
            if name == "dense":
                continue
            ratios = np.array(times[name]) / dense
            low, high = np.percentile(ratios, [25, 75])
            row = {
                "backend": backend, "model": model_name, "method": name,
                "steps": steps, "dense_ms": 1000 * float(np.median(dense)),
                "method_ms": 1000 * float(np.median(times[name])),
                "ratio": float(np.median(ratios)), "iqr": [float(low), float(high)],
            }
            emit(row)
            print(f"{backend} {model_name} {name}: {row['method_ms']:.2f} ms/step vs "
                  f"dense {row['dense_ms']:.2f}: {row['ratio']:.3f}x "
                  f"(IQR {low:.3f}-{high:.3f})", file=sys.stderr, flush=True)
        keras.utils.clear_session()


def run_backend(backend):
    command = ["-m", "benchmarks.train_overhead", f"--worker={backend}",
               f"--rounds={FLAGS.rounds}", f"--seconds_per_epoch={FLAGS.seconds_per_epoch}",
               f"--min_steps={FLAGS.min_steps}", f"--max_steps={FLAGS.max_steps}",
               f"--batch_size={FLAGS.batch_size}", f"--weight_decay={FLAGS.weight_decay}"]
    if FLAGS.models:
        command.append(f"--models={','.join(FLAGS.models)}")
    if FLAGS.methods:
        command.append(f"--methods={','.join(FLAGS.methods)}")
    return run_worker(command, backend)


def table(rows):
    backends = [b for b in FLAGS.backends if any(r["backend"] == b for r in rows)]
    models = [m for m in MODEL_NAMES if any(r["model"] == m for r in rows)]
    methods = [m for m in METHOD_NAMES if any(r["method"] == m for r in rows)]
    by_key = {(r["model"], r["method"], r["backend"]): r for r in rows}
    lines = [
        f"Train step time relative to the dense model, batch {FLAGS.batch_size}, "
        "`jit_compile=True`, every scheduled method updating inside the step at every "
        f"step; weight decay {FLAGS.weight_decay:g} everywhere. Median over "
        f"{FLAGS.rounds} alternating rounds of the per-round ratio to the dense model "
        "(IQR in brackets); one process per backend; 2 shared x86 cores.",
        "",
        "| model | method | " + " | ".join(f"{b} ratio" for b in backends) + " |",
        "|---|---|" + "---|" * len(backends),
    ]
    for model in models:
        for method in methods:
            cells = []
            for backend in backends:
                row = by_key.get((model, method, backend))
                cells.append(
                    "-" if row is None else
                    f"{row['ratio']:.2f}x ({row['iqr'][0]:.2f}-{row['iqr'][1]:.2f})"
                )
            lines.append(f"| {model} | {DESCRIPTIONS[method]} | " + " | ".join(cells) + " |")
    lines += ["", "Dense step time (ms/step; steps per timed epoch):", "",
              "| model | " + " | ".join(backends) + " |",
              "|---|" + "---|" * len(backends)]
    for model in models:
        cells = []
        for backend in backends:
            row = next((r for r in rows if r["model"] == model and r["backend"] == backend),
                       None)
            cells.append("-" if row is None else f"{row['dense_ms']:.2f} ({row['steps']})")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv):
    del argv
    for name, values, known in (("models", FLAGS.models, MODEL_NAMES),
                                ("methods", FLAGS.methods, METHOD_NAMES)):
        unknown = sorted(set(values or ()) - set(known))
        if unknown:
            raise app.UsageError(f"Unknown --{name} {unknown}; expected some of {known}.")
    if FLAGS.worker:
        worker(FLAGS.worker)
        return
    rows = []
    for backend in FLAGS.backends:
        rows += run_backend(backend)
    text = table(rows)
    print("\n" + text)
    os.makedirs(FLAGS.out_dir, exist_ok=True)
    from keras_str.core.io_utils import write_text_atomic

    write_text_atomic(os.path.join(FLAGS.out_dir, "train_overhead.md"), text + "\n")


if __name__ == "__main__":
    app.run(main)
