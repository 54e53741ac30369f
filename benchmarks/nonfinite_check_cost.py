"""Train step time of the in-step NaN/inf check, against the same model without it and dense.

    python -m benchmarks.nonfinite_check_cost [--backends tensorflow,jax,torch]
        [--models lenet_300_100,small_cnn] [--rounds 9] [--resume]

Every sparse layer checks, at each training step, that its trained values
(kernel, threshold) are finite: one reduction per variable, counted in
`finite_steps`, read only at epoch ends. For each model this
times, in alternating rounds of one epoch each on the same random data: the
dense model; plain STR and ST-3 (updating every step), each with the check
and with it replaced by a no-op (a subclass of the method; nothing else
differs). Reported: the median over rounds of the per-round ratios
`(checked - unchecked) / dense` (the check's cost as a share of a dense
step) and `checked / dense`. One process per backend; rows go to
`benchmarks/results/nonfinite_check_cost.jsonl` as each finishes, with
command, commit and machine; `--resume` keeps the rows already there. The
table (`.md`) is generated from the rows.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from benchmarks.harness import commands_line  # noqa: E402
from benchmarks.harness import emit  # noqa: E402
from benchmarks.harness import keep_row  # noqa: E402
from benchmarks.harness import markdown_table  # noqa: E402
from benchmarks.harness import provenance  # noqa: E402
from benchmarks.harness import read_rows  # noqa: E402
from benchmarks.harness import rows_for_tables  # noqa: E402
from benchmarks.harness import run_worker  # noqa: E402
from benchmarks.harness import write_table  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("backends", ["tensorflow", "jax", "torch"], "Keras backends, one process each.")
flags.DEFINE_list("models", ["lenet_300_100", "small_cnn"], "Example models to time.")
flags.DEFINE_integer("rounds", 9, "Alternating rounds (median over rounds).")
flags.DEFINE_integer("steps", 30, "Steps per timed epoch.")
flags.DEFINE_integer("batch_size", 128, "Batch size.")
flags.DEFINE_bool("resume", False, "Keep the rows already in the results file.")
flags.DEFINE_string("out_dir", "benchmarks/results", "Where rows and table go.")
flags.DEFINE_string("worker", None, "Internal: time one backend and model.")

RESULTS = "nonfinite_check_cost"
END_STEP = 1_000_000  # The schedule runs: ST-3 updates at every timed step.


def unchecked(method):
    """`method` with the in-step check replaced by a no-op."""
    cls = type(method)
    without = type(f"Unchecked{cls.__name__}", (cls,), {"_count_finite": lambda *a: None})
    return without.from_config(method.get_config())


def seconds_per_step(keras, model, x, y, steps):
    """Seconds per step between the ends of the first and the last batch of one epoch."""
    import time

    marks = []

    class Timer(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch in (0, steps - 1):
                # Reading the loss waits for the step to finish.
                float(keras.ops.convert_to_numpy(logs["loss"]))
                marks.append(time.perf_counter())

    import keras_str

    # The same callbacks for every variant (sparse models add the checks by
    # themselves; their epoch-end read is outside the timer).
    model.fit(x, y, batch_size=len(x) // steps, epochs=1, verbose=0, shuffle=False,
              callbacks=[Timer(), keras_str.SparsityChecks()])
    return (marks[-1] - marks[0]) / (steps - 1)


def worker(backend, model_name):
    import keras
    import numpy as np

    import keras_str
    from examples import models

    assert keras.backend.backend() == backend
    build = getattr(models, model_name)
    shape = (28, 28, 1)

    def compiled(model):
        model.compile(
            optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=backend != "torch",
        )
        return model

    def sparse(method):
        return compiled(keras_str.sparsify(build(), method=method, weight_decay=5e-4))

    keras.utils.set_random_seed(0)
    st3 = keras_str.ST3(0.9, keras_str.PolynomialSchedule(0, END_STEP))
    variants = {
        "dense": compiled(keras_str.apply_weight_decay(build(), 5e-4)),
        "str": sparse(keras_str.STR()),
        "str_unchecked": sparse(unchecked(keras_str.STR())),
        "st3": sparse(st3),
        "st3_unchecked": sparse(unchecked(st3)),
    }
    rng = np.random.default_rng(0)
    n = FLAGS.steps * FLAGS.batch_size
    x = rng.uniform(size=(n,) + shape).astype("float32")
    y = rng.integers(0, 10, size=(n,))

    def epoch(model):
        return seconds_per_step(keras, model, x, y, FLAGS.steps)

    for model in variants.values():  # compile outside the timing
        epoch(model)
    times = {name: [] for name in variants}
    for _ in range(FLAGS.rounds):
        for name, model in variants.items():
            times[name].append(epoch(model))
    dense = np.array(times["dense"])
    row = {"backend": backend, "model": model_name, "steps": FLAGS.steps,
           "batch_size": FLAGS.batch_size, "rounds": FLAGS.rounds,
           "dense_ms": 1000 * float(np.median(dense))}
    for method in ("str", "st3"):
        checked = np.array(times[method])
        plain = np.array(times[f"{method}_unchecked"])
        row[f"{method}_ms"] = 1000 * float(np.median(checked))
        row[f"{method}_unchecked_ms"] = 1000 * float(np.median(plain))
        row[f"{method}_check_cost"] = float(np.median((checked - plain) / dense))
        row[f"{method}_vs_dense"] = float(np.median(checked / dense))
    emit(row)


def table(rows):
    lines = [
        "Cost of the in-step NaN/inf check: median over alternating rounds of "
        "`(checked - unchecked) / dense` step time (the check as a share of a dense "
        "step; goal <= 2 %), and the checked model's step time against dense. "
        "ST-3 updates every step; every variant has weight decay 5e-4.",
        "",
    ]
    header = ["backend", "model", "dense ms/step", "STR check cost", "STR / dense",
              "ST-3 check cost", "ST-3 / dense", "commit", "machine"]
    body = [
        [r["backend"], r["model"], f"{r['dense_ms']:.2f}",
         f"{100 * r['str_check_cost']:+.1f} %", f"{r['str_vs_dense']:.2f}x",
         f"{100 * r['st3_check_cost']:+.1f} %", f"{r['st3_vs_dense']:.2f}x",
         r["commit"], r["machine"]]
        for r in rows
    ]
    return "\n".join(lines + [markdown_table(header, body), "", commands_line(rows)])


def main(argv):
    del argv
    if FLAGS.worker:
        backend, model_name = FLAGS.worker.split(":")
        worker(backend, model_name)
        return
    if FLAGS.tables_only:
        write_table(FLAGS.out_dir, RESULTS, table(rows_for_tables(FLAGS.out_dir, RESULTS)))
        return
    os.makedirs(FLAGS.out_dir, exist_ok=True)
    path = os.path.join(FLAGS.out_dir, f"{RESULTS}.jsonl")
    rows = read_rows(path) if FLAGS.resume else []
    if not FLAGS.resume and os.path.exists(path):
        os.remove(path)
    done = {(r["backend"], r["model"]) for r in rows}
    stamp = provenance("benchmarks.nonfinite_check_cost")
    for backend in FLAGS.backends:
        for model_name in FLAGS.models:
            if (backend, model_name) in done:
                continue
            command = ["-m", "benchmarks.nonfinite_check_cost",
                       f"--worker={backend}:{model_name}", f"--rounds={FLAGS.rounds}",
                       f"--steps={FLAGS.steps}", f"--batch_size={FLAGS.batch_size}"]
            (row,) = run_worker(command, backend)
            row.update(stamp)
            keep_row(path, rows, row)
    write_table(FLAGS.out_dir, RESULTS, table(rows))


if __name__ == "__main__":
    app.run(main)
