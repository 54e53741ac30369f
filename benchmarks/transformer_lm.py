"""Sparse GPT-2-style byte-level language models against dense: validation perplexity and step time.

    python -m benchmarks.transformer_lm
        [--methods dense,dense_2x,st3,st3_sigma,st3_sigma_rescale,str,gmp,gmp_n_m]
        [--sparsities 0.5,0.75,0.9,0.95] [--seeds 0] [--steps 1500] [--embeddings dense]
        [--resume]

A keras-hub `GPT2CausalLM` (4 blocks, hidden 128, 4 heads, feed-forward 512,
about 0.85 M parameters, tied byte embedding) learns the next byte of
Python 3.11's standard library sources (`benchmarks.stdlib_corpus`: 2.95 MB
of modules for training, 0.35 MB of others for validation). Every row has
the same token budget (`--steps` x 32 windows of 128 bytes), optimizer
(Adam, cosine learning rate after a 5 % warm-up) and seed; `dense_2x`
trains twice as long, to show whether dense is under-trained. Sparse rows
prune the transformer blocks' kernels (attention and feed-forward) to the
target on a cubic schedule from 10 % to 70 % of training; the embeddings
are kept dense (`--embeddings dense`) or sparse like the rest
(`--embeddings sparse`); N:M rows (`_n_m`) hold 2:4. ST-3 runs with one
global threshold (`st3`), scaled per layer by its initializer's sigma
(`st3_sigma`), and with the per-channel rescaling too (`st3_sigma_rescale`,
the recipe recommended on CNNs). The train step is
compiled (`jit_compile=True`); step time is the median over the steps
after the first ten. Each run's row goes to
`benchmarks/results/transformer_lm.jsonl` as it finishes, with command,
commit and machine; `--resume` keeps the rows already there. The table
(`.md`) and the plot (`.png`: perplexity against sparsity, one line per
method) are generated from the rows.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import math  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from benchmarks.harness import commands_line  # noqa: E402
from benchmarks.harness import keep_row  # noqa: E402
from benchmarks.harness import markdown_table  # noqa: E402
from benchmarks.harness import provenance  # noqa: E402
from benchmarks.harness import rows_for_tables  # noqa: E402
from benchmarks.harness import open_rows  # noqa: E402
from benchmarks.harness import write_table  # noqa: E402

FLAGS = flags.FLAGS
RESULTS = "transformer_lm"
SEQUENCE_LENGTH = 128
BATCH_SIZE = 32
EMBEDDING_LAYERS = ("token_embedding", "position_embedding")
# Rows at their method's own sparsity (2:4 is 50 %), not the sweep's.
N_M_METHODS = ("gmp_n_m", "st3_n_m", "str_n_m")
DENSE_METHODS = ("dense", "dense_2x")


def define_flags():
    # Defined when run, not when imported: tests import `table` beside other
    # benchmarks' flags.
    flags.DEFINE_list(
        "methods",
        ["dense", "dense_2x", "st3", "st3_sigma", "st3_sigma_rescale", "str", "gmp", "gmp_n_m"],
        "Rows: dense, dense on twice the steps, and the sparse methods.",
    )
    flags.DEFINE_list("sparsities", ["0.5", "0.75", "0.9", "0.95"], "Targets of the sparse rows.")
    flags.DEFINE_list("seeds", ["0"], "Random seeds.")
    flags.DEFINE_integer("steps", 1500, "Training steps of every row (dense_2x: twice).")
    flags.DEFINE_float("lr", 2e-3, "Peak learning rate.")
    flags.DEFINE_enum("embeddings", "dense", ["dense", "sparse"], "The embeddings in sparse rows.")
    flags.DEFINE_bool("resume", False, "Keep the rows already in the results file.")
    flags.DEFINE_string("out_dir", "benchmarks/results", "Where rows and table go.")


def build_model(seed):
    import keras
    import keras_hub

    from benchmarks.stdlib_corpus import VOCABULARY_SIZE

    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=VOCABULARY_SIZE, num_layers=4, num_heads=4, hidden_dim=128,
        intermediate_dim=512, dropout=0.0, max_sequence_length=SEQUENCE_LENGTH,
    )
    return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)


def sparsity_method(name, sparsity, steps):
    """The keras-str method of a row, as `examples.training` makes it (one example a step)."""
    from examples.training import TrainConfig
    from examples.training import sparsity_method as training_method

    config = TrainConfig(
        method="st3" if name.startswith("st3_sigma") else name,
        st3_scope="sigma" if name.startswith("st3_sigma") else "global",
        st3_rescale=name == "st3_sigma_rescale",
        target_sparsity=None if name in N_M_METHODS else sparsity,
        epochs=1,
        batch_size=1,
        pruning_start_fraction=0.1,
        pruning_end_fraction=0.7,
        n_m="2:4",
    )
    return training_method(config, num_examples=steps)


class StepTimes:
    """Seconds between the ends of consecutive train steps."""

    def __init__(self):
        import keras

        class Callback(keras.callbacks.Callback):
            def on_train_batch_end(inner, batch, logs=None):
                self.ends.append(time.perf_counter())

        self.ends = []
        self.callback = Callback()

    def seconds(self, skip=10):
        return np.diff(self.ends)[skip:]


def run(method, sparsity, seed, data):
    import keras

    import keras_str
    from keras_str.layers.base import is_sparse_layer

    train, validation = data
    steps = FLAGS.steps * (2 if method == "dense_2x" else 1)
    model = build_model(seed)
    if method not in DENSE_METHODS:
        keras_str.sparsify(
            model,
            method=sparsity_method(method, sparsity, steps),
            keep_dense=list(EMBEDDING_LAYERS) if FLAGS.embeddings == "dense" else None,
            in_place=True,
        )
    from benchmarks.stdlib_corpus import training_windows
    from benchmarks.stdlib_corpus import validation_windows

    windows = training_windows(train, SEQUENCE_LENGTH, steps * BATCH_SIZE, seed)
    learning_rate = keras.optimizers.schedules.CosineDecay(
        0.0, steps - steps // 20, warmup_target=FLAGS.lr, warmup_steps=steps // 20
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    times = StepTimes()
    start = time.perf_counter()
    model.fit(
        _inputs(windows), windows[:, 1:], batch_size=BATCH_SIZE, epochs=1,
        shuffle=False, verbose=0, callbacks=[times.callback],
    )
    train_seconds = time.perf_counter() - start
    held_out = validation_windows(validation, SEQUENCE_LENGTH)
    validation_loss = float(
        model.evaluate(
            _inputs(held_out), held_out[:, 1:], batch_size=64, verbose=0, return_dict=True
        )["loss"]
    )
    block, embedding = _zeros(
        [layer for layer in model._flatten_layers() if is_sparse_layer(layer)]
    )
    step_seconds = times.seconds()
    return {
        "method": method,
        "target_sparsity": 0.5 if method in N_M_METHODS else (
            None if method in DENSE_METHODS else sparsity),
        "embeddings": FLAGS.embeddings if method not in DENSE_METHODS else "dense",
        "seed": seed,
        "steps": steps,
        "tokens": steps * BATCH_SIZE * SEQUENCE_LENGTH,
        "parameters": model.count_params(),
        "validation_loss": validation_loss,
        "validation_perplexity": math.exp(validation_loss),
        "block_sparsity": block,
        "embedding_sparsity": embedding,
        "step_ms_median": 1000 * float(np.median(step_seconds)),
        "step_ms_p10": 1000 * float(np.percentile(step_seconds, 10)),
        "step_ms_p90": 1000 * float(np.percentile(step_seconds, 90)),
        "train_seconds": train_seconds,
        "backend": keras.backend.backend(),
    }


def _inputs(windows):
    tokens = windows[:, :-1]
    return {"token_ids": tokens, "padding_mask": np.ones_like(tokens)}


def _zeros(layers):
    """Zero fractions of the transformer blocks' kernels and of the embeddings (None: dense)."""
    from keras_str.core.host import to_numpy

    counts = {"block": [0, 0], "embedding": [0, 0]}
    for layer in layers:
        kernel = to_numpy(layer.thresholded_kernel())
        part = "embedding" if layer.name in EMBEDDING_LAYERS else "block"
        counts[part][0] += int(np.sum(kernel == 0))
        counts[part][1] += kernel.size
    return tuple(zeros / size if size else None for zeros, size in counts.values())


def table(rows):
    lines = [
        "Validation perplexity of a byte-level GPT-2-style model (0.85 M parameters) on "
        "Python 3.11 standard library sources, mean over seeds; `vs dense`: against the "
        "dense row of the same steps. Sparsity: of the transformer blocks' kernels "
        "(embeddings: their own). Step time: median ms per compiled train step, and its "
        "ratio to dense.",
        "",
    ]
    body = []
    groups = {}
    for r in rows:
        key = (r["method"], r["target_sparsity"], r["embeddings"], r["steps"])
        groups.setdefault(key, []).append(r)

    def mean(found, key):
        values = [r[key] for r in found if r[key] is not None]
        return float(np.mean(values)) if values else None

    order = sorted(groups, key=lambda k: (k[0] not in DENSE_METHODS, k[0], k[1] or 0, k[2]))
    for key in order:
        found = groups[key]
        method, target, embeddings, steps = key
        perplexity = mean(found, "validation_perplexity")
        step_ms = mean(found, "step_ms_median")
        base = [r for r in rows if r["method"] == "dense" and r["steps"] == steps]
        base_perplexity = mean(base, "validation_perplexity") if base else None
        base_ms = mean(base, "step_ms_median") if base else None
        embedding_sparsity = mean(found, "embedding_sparsity")
        body.append([
            method, "-" if target is None else f"{100 * target:.0f} %", embeddings,
            str(len(found)), str(steps), f"{perplexity:.3f}",
            _ratio(perplexity, base_perplexity),
            _percent(mean(found, "block_sparsity")), _percent(embedding_sparsity),
            f"{step_ms:.1f}", _ratio(step_ms, base_ms),
            found[-1]["commit"], found[-1]["machine"],
        ])
    header = ["method", "target", "embeddings", "seeds", "steps", "perplexity", "vs dense",
              "block sparsity", "embedding sparsity", "step ms", "vs dense", "commit", "machine"]
    return "\n".join(lines + [markdown_table(header, body), "", commands_line(rows)])


def plot(rows, path):
    """Perplexity against the blocks' sparsity, one line per sparse method, dense as dashed lines."""
    from keras_str.analysis.plots import plot_tradeoff

    points = {}
    for r in rows:
        if r["method"] in DENSE_METHODS:
            continue
        label = r["method"] + (" (sparse embeddings)" if r["embeddings"] == "sparse" else "")
        points.setdefault((label, r["target_sparsity"], r["steps"]), []).append(r)
    sweep_steps = max((r["steps"] for r in rows if r["method"] == "dense"), default=None)
    plotted = [
        {"method": label, "sparsity": 100 * target,
         "perplexity": float(np.mean([r["validation_perplexity"] for r in found]))}
        for (label, target, steps), found in sorted(points.items())
        if steps == sweep_steps
    ]
    references = {}
    for method, label in (("dense", "dense"), ("dense_2x", "dense, 2x steps")):
        found = [r["validation_perplexity"] for r in rows if r["method"] == method]
        if found:
            references[label] = float(np.mean(found))
    plot_tradeoff(
        plotted, path, "sparsity", y_key="perplexity", x_label="transformer block sparsity (%)",
        y_label="validation perplexity", reference_lines=references,
        title=f"Byte-level GPT-2-style LM, {sweep_steps} steps",
    )


def _ratio(value, base):
    return "-" if base is None or value is None else f"{value / base:.3f}x"


def _percent(value):
    return "-" if value is None else f"{100 * value:.1f} %"


def planned_rows(methods, sparsities, seeds):
    """(method, sparsity, seed) of every run asked for, seed by seed, in `methods`' order."""
    for seed in seeds:
        for method in methods:
            if method in DENSE_METHODS:
                yield method, None, seed
            elif method in N_M_METHODS:
                yield method, 0.5, seed
            else:
                for sparsity in sparsities:
                    yield method, sparsity, seed


def _row_key(row):
    return (row["method"], row["target_sparsity"], row["embeddings"], row["seed"], row["steps"])


def main(argv):
    del argv
    from benchmarks.stdlib_corpus import load_corpus

    if FLAGS.tables_only:
        rows = rows_for_tables(FLAGS.out_dir, RESULTS)
        write_table(FLAGS.out_dir, RESULTS, table(rows))
        plot(rows, os.path.join(FLAGS.out_dir, f"{RESULTS}.png"))
        return
    path, rows = open_rows(FLAGS.out_dir, RESULTS, FLAGS.resume)
    done = {_row_key(r) for r in rows}
    train, validation, corpus = load_corpus()
    stamp = provenance("benchmarks.transformer_lm")
    plan = planned_rows(
        FLAGS.methods, [float(s) for s in FLAGS.sparsities], [int(s) for s in FLAGS.seeds]
    )
    for method, sparsity, seed in plan:
        steps = FLAGS.steps * (2 if method == "dense_2x" else 1)
        target = 0.5 if method in N_M_METHODS else sparsity
        embeddings = "dense" if method in DENSE_METHODS else FLAGS.embeddings
        if (method, target, embeddings, seed, steps) in done:
            continue
        row = run(method, sparsity, seed, (train, validation))
        row.update(corpus)
        row.update(stamp)
        keep_row(path, rows, row)
        write_table(FLAGS.out_dir, RESULTS, table(rows))
        plot(rows, os.path.join(FLAGS.out_dir, f"{RESULTS}.png"))
        print(f"{method} {target} seed {seed}: perplexity {row['validation_perplexity']:.3f}, "
              f"block sparsity {row['block_sparsity']}, {row['step_ms_median']:.1f} ms/step",
              flush=True)
    write_table(FLAGS.out_dir, RESULTS, table(rows))
    if rows:
        plot(rows, os.path.join(FLAGS.out_dir, f"{RESULTS}.png"))


if __name__ == "__main__":
    define_flags()
    app.run(main)
