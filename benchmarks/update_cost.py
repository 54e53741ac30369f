"""Cost of one sparsity update on a 25 M-weight model (ResNet-50), before and after in-step updates.

    python -m benchmarks.update_cost [--backends tensorflow,jax] [--rounds 5] [--steps 2]
        [--batch_size 8] [--image_size 224] [--old_tree /tmp/keras_str_old]
        [--quantiles auto,exact]

The model is `keras.applications.ResNet50(weights=None)` (25.5 M kernel
weights in 54 Conv2D/Dense layers), sparsified with `keras_str.sparsify` for
ST-3, targeted STR (`STR(0.9, schedule)`) and GMP (`frequency=1`), all
updating every step; `--methods channel_weights,channel_macs` times channel
STR on the BatchNorm gammas with a weights budget against a MACs budget
(whose update counts the stripped model's MACs about log2(channels) times).

After (this tree; methods advance inside the compiled train step), once per
`--quantiles` value (the methods' `quantile` argument: `auto` samples 16,384
of the 25.5 M weights, `exact` runs radix select over all of them):
- `step`: a `jit_compile=True` fit step of the sparsified model against the
  same plain Keras ResNet-50, the models alternating within each round
  (every other round in reverse order; median of per-round ratios). Its
  excess over dense is the update plus the method's effective-kernel work in
  the forward and backward passes; at 224x224 it is within the run-to-run
  noise of a ~10 s step on 2 shared cores, so `update` is the number to read.
- `update`: the method's `update(layers, step)` alone, compiled the same way
  (TF: `tf.function(jit_compile=True)`; JAX: `jax.jit` of a stateless call),
  the cost of one update inside the step.

Before (git commit 1c532fd, the host-side `UpdateSparsity` callback; run in
its own process with that tree first on `PYTHONPATH`, TF only): the
callback's per-batch work (`method.update(layers, step)` for each group with
NumPy on the host, then the step counters), timed against the same dense
fit step in the same process. Create the tree with
`git worktree add /tmp/keras_str_old 1c532fd`; without it the "before" rows
are skipped.
"""

import json
import math
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("backends", ["tensorflow"], "Backends for the 'after' rows.")
flags.DEFINE_list("methods", ["st3", "str_target", "gmp"], "Methods to time.")
flags.DEFINE_integer("rounds", 5, "Alternating rounds (median over rounds).")
flags.DEFINE_integer("steps", 2, "Train steps (or updates) per model per round.")
flags.DEFINE_integer("batch_size", 8, "Batch size of the train step.")
flags.DEFINE_integer("image_size", 224, "Input height and width.")
flags.DEFINE_string("old_tree", "/tmp/keras_str_old", "Worktree of commit 1c532fd.")
flags.DEFINE_bool("before", True, "Time the old host-side callback too.")
flags.DEFINE_list("quantiles", ["auto", "exact"], "The methods' `quantile` settings to time.")
flags.DEFINE_string("out_dir", "benchmarks/results", "Where the table goes.")
flags.DEFINE_string("worker", None, "Internal: 'after' or 'before'.")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
END_STEP = 100_000  # The schedule runs through the whole benchmark.


def _methods(keras_str, quantile=None):
    schedule = keras_str.PolynomialSchedule(0, END_STEP)
    # The old tree (the "before" rows) has no `quantile` argument.
    extra = {} if quantile is None else {"quantile": quantile}
    return {
        "st3": lambda: keras_str.ST3(0.9, schedule, **extra),
        "str_target": lambda: keras_str.STR(0.9, schedule, **extra),
        "gmp": lambda: keras_str.GMP(0.9, schedule, frequency=1, **extra),
        # Channel STR (BatchNorm gammas on ResNet-50): the MACs budget runs
        # the graph count (`keras_str.methods.channel_macs`) log2(channels)
        # times an update; the weights budget is one quantile.
        "channel_weights": lambda: keras_str.StructuredSTR(
            "channel", target_sparsity=0.5, schedule=schedule, **extra),
        "channel_macs": lambda: keras_str.StructuredSTR(
            "channel", target_sparsity=0.5, schedule=schedule, budget="macs", **extra),
    }


def _resnet50(keras):
    return keras.applications.ResNet50(
        weights=None,
        input_shape=(FLAGS.image_size, FLAGS.image_size, 3),
        classifier_activation=None,
    )


def _compiled(keras, model):
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    return model


def _data(np):
    rng = np.random.default_rng(0)
    n = FLAGS.steps * FLAGS.batch_size
    x = rng.uniform(size=(n, FLAGS.image_size, FLAGS.image_size, 3)).astype("float32")
    return x, rng.integers(0, 1000, size=(n,))


def _seconds_per_step(model, x, y, callbacks=()):
    start = time.perf_counter()
    model.fit(x, y, batch_size=FLAGS.batch_size, epochs=1, verbose=0,
              shuffle=False, callbacks=list(callbacks))
    return (time.perf_counter() - start) / FLAGS.steps


def _kernel_count(keras, model):
    kernel_layers = (keras.layers.Conv2D, keras.layers.Dense)
    return sum(
        math.prod(layer.kernel.shape)
        for layer in model.layers
        if isinstance(layer, kernel_layers)
    )


def _standalone_update(keras, backend, method):
    """One call of `method.update(layers, step)`, compiled as the train step compiles it."""
    from keras import ops

    layers = method.layers
    if backend == "tensorflow":
        import tensorflow as tf

        function = tf.function(lambda step: method.update(layers, step), jit_compile=True)

        def call(step):
            function(ops.convert_to_tensor(step, "int32"))
            # Reading one state variable waits for the update to finish.
            ops.convert_to_numpy(next(iter(layers[0].sparsity_state.values())))

        return call
    import jax

    variables = [v for layer in layers for v in layer.variables]
    state = [v for layer in layers for v in layer.sparsity_state.values()]

    def pure(values, step):
        with keras.StatelessScope(state_mapping=list(zip(variables, values))) as scope:
            method.update(layers, step)
        return [scope.get_current_value(v) for v in state]

    jitted = jax.jit(pure)

    def call(step):
        # Read now: fit donates the variables' buffers, so held arrays die.
        values = [v.value for v in variables]
        jax.block_until_ready(jitted(values, ops.convert_to_tensor(step, "int32")))

    return call


def worker_after(backend):
    from benchmarks.harness import emit

    import keras
    import numpy as np

    import keras_str

    assert keras.backend.backend() == backend
    keras.utils.set_random_seed(0)
    models = {"dense": _compiled(keras, _resnet50(keras))}
    variants = [(name, quantile) for quantile in FLAGS.quantiles for name in FLAGS.methods]
    for name, quantile in variants:
        method = _methods(keras_str, quantile)[name]()
        models[name, quantile] = _compiled(
            keras, keras_str.sparsify(_resnet50(keras), method=method)
        )
    x, y = _data(np)
    for model in models.values():  # compile outside the timing
        _seconds_per_step(model, x, y)
    updates = {}
    for variant in variants:
        layer = next(l for l in models[variant].layers if hasattr(l, "sparsity_state"))
        updates[variant] = _standalone_update(keras, backend, layer.method)
        updates[variant](1)
    step_times = {name: [] for name in models}
    update_times = {name: [] for name in updates}
    for round_ in range(FLAGS.rounds):
        # Every other round in reverse order: no model always runs first.
        order = list(models) if round_ % 2 == 0 else list(models)[::-1]
        for name in order:
            step_times[name].append(_seconds_per_step(models[name], x, y))
        for name, call in updates.items():
            start = time.perf_counter()
            for i in range(FLAGS.steps):
                call(100 + round_ * FLAGS.steps + i)
            update_times[name].append((time.perf_counter() - start) / FLAGS.steps)
    dense = np.array(step_times["dense"])
    rows = []
    for name, quantile in variants:
        steps = np.array(step_times[name, quantile])
        update = np.array(update_times[name, quantile])
        rows.append({
            "when": f"after, quantile={quantile!r}", "backend": backend, "method": name,
            "dense_ms": 1000 * float(np.median(dense)),
            "method_step_ms": 1000 * float(np.median(steps)),
            "step_ratio": float(np.median(steps / dense)),
            "update_ms": 1000 * float(np.median(update)),
            "update_ratio": float(np.median(update / dense)),
        })
    weights = _kernel_count(keras, models["dense"])
    for row in rows:
        row["weights"] = weights
        emit(row)


def worker_before():
    import keras
    import numpy as np

    import keras_str

    old = os.path.realpath(FLAGS.old_tree)
    if not os.path.realpath(keras_str.__file__).startswith(old):
        raise RuntimeError(f"keras_str comes from {keras_str.__file__}, not {old}")
    methods = _methods(keras_str)
    keras.utils.set_random_seed(0)
    dense = _compiled(keras, _resnet50(keras))
    callbacks = {}
    for name in FLAGS.methods:
        model = keras_str.sparsify(_resnet50(keras), method=methods[name]())
        callback = keras_str.UpdateSparsity()
        callback.set_model(model)
        callback.on_train_begin()
        callback.on_train_batch_begin(0)  # first-call costs outside the timing
        callbacks[name] = callback
    x, y = _data(np)
    _seconds_per_step(dense, x, y)
    dense_times = []
    update_times = {name: [] for name in callbacks}
    for round_ in range(FLAGS.rounds):
        if round_ % 2 == 0:
            dense_times.append(_seconds_per_step(dense, x, y))
        for name, callback in callbacks.items():
            start = time.perf_counter()
            for batch in range(FLAGS.steps):
                callback.on_train_batch_begin(batch)
            update_times[name].append((time.perf_counter() - start) / FLAGS.steps)
        if round_ % 2 == 1:
            dense_times.append(_seconds_per_step(dense, x, y))
    dense_times = np.array(dense_times)
    weights = _kernel_count(keras, dense)
    for name, times in update_times.items():
        times = np.array(times)
        # Run as a script with the old tree first on the path, where
        # benchmarks.harness does not exist: the row goes out as
        # benchmarks.harness.emit would send it.
        print("RESULT " + json.dumps({
            "when": "before", "backend": "tensorflow", "method": name,
            "dense_ms": 1000 * float(np.median(dense_times)),
            "update_ms": 1000 * float(np.median(times)),
            "update_ratio": float(np.median(times / dense_times)),
            "weights": weights,
        }), flush=True)


def _run_worker(kind, backend, env_extra=None, cwd=ROOT, module=True):
    flags_ = [f"--worker={kind}", f"--methods={','.join(FLAGS.methods)}",
              f"--rounds={FLAGS.rounds}", f"--steps={FLAGS.steps}",
              f"--batch_size={FLAGS.batch_size}", f"--image_size={FLAGS.image_size}",
              f"--old_tree={FLAGS.old_tree}", f"--quantiles={','.join(FLAGS.quantiles)}"]
    if module:
        command = ["-m", "benchmarks.update_cost"] + flags_
    else:
        # Run as a script from the old tree, so that its keras_str comes first.
        command = [os.path.abspath(__file__)] + flags_
    from benchmarks.harness import run_worker

    rows = run_worker(command, backend, env=env_extra, cwd=cwd)
    for row in rows:
        print(row, flush=True)
    return rows


NAMES = {
    "st3": "ST-3 (global)",
    "str_target": "targeted STR",
    "gmp": "GMP, frequency=1",
    "channel_weights": "channel STR 50 %, weights budget",
    "channel_macs": "channel STR 50 %, MACs budget (graph count)",
}


def table(rows):
    weights = rows[0]["weights"] if rows else 0
    lines = [
        f"One sparsity update on ResNet-50 ({weights / 1e6:.1f} M kernel weights), "
        f"batch {FLAGS.batch_size}, {FLAGS.image_size}x{FLAGS.image_size} inputs, "
        f"2 shared x86 cores; medians of {FLAGS.rounds} alternating rounds of "
        f"{FLAGS.steps} steps (updates). Ratios are medians of per-round ratios to the "
        "dense `jit_compile=True` fit step timed in the same process.",
        "",
        "- before: commit 1c532fd, `UpdateSparsity` callback, NumPy on the host "
        "(`np.partition` / `np.argpartition` of all kernels, copies to and from the "
        "device), every batch.",
        "- after: in-step update inside the compiled step; `quantile='auto'` (the "
        "default) selects among 16,384 fixed random weights, `quantile='exact'` "
        "runs radix select over all of them. `update` is the method's update "
        "alone, compiled; `step` is the whole sparsified train step (update + "
        "effective kernels).",
        "",
        "| method | when | backend | dense step ms | update ms | update / dense step "
        "| sparse step ms | sparse step / dense step |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        step_ms = f"{row['method_step_ms']:.0f}" if "method_step_ms" in row else "-"
        step_ratio = f"{row['step_ratio']:.2f}x" if "step_ratio" in row else "-"
        lines.append(
            f"| {NAMES[row['method']]} | {row['when']} | {row['backend']} | "
            f"{row['dense_ms']:.0f} | {row['update_ms']:.0f} | "
            f"{row['update_ratio']:.3f} | {step_ms} | {step_ratio} |"
        )
    return "\n".join(lines)


def main(argv):
    del argv
    if FLAGS.worker == "after":
        import keras

        worker_after(keras.backend.backend())
        return
    if FLAGS.worker == "before":
        worker_before()
        return
    rows = []
    if FLAGS.before:
        if os.path.isdir(FLAGS.old_tree):
            rows += _run_worker(
                "before", "tensorflow",
                env_extra={"PYTHONPATH": os.path.abspath(FLAGS.old_tree)},
                cwd=FLAGS.old_tree, module=False,
            )
        else:
            print(f"No {FLAGS.old_tree}: skipping 'before' "
                  f"(git worktree add {FLAGS.old_tree} 1c532fd).", flush=True)
    for backend in FLAGS.backends:
        rows += _run_worker("after", backend)
    rows.sort(key=lambda r: (list(NAMES).index(r["method"]), r["when"] != "before"))  # stable
    text = table(rows)
    print("\n" + text)
    os.makedirs(FLAGS.out_dir, exist_ok=True)
    sys.path.insert(0, ROOT)
    from keras_str.core.io_utils import write_text_atomic

    write_text_atomic(os.path.join(FLAGS.out_dir, "update_cost.md"), text + "\n")


if __name__ == "__main__":
    app.run(main)
