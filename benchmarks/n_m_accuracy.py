"""Accuracy at 2:4 N:M sparsity against 50 % unstructured sparsity and dense, on Fashion-MNIST.

    python -m benchmarks.n_m_accuracy [--models lenet_300_100,small_cnn]
        [--seeds 0,1,2] [--lenet_epochs 10] [--cnn_epochs 5] [--resume]

Trains each model seven ways with the same epochs, optimizer, learning-rate
schedule, weight decay and seeds (`examples.training.run_training`):
`dense`; `gmp` at 50 % (unstructured, uniform per layer) and `gmp_n_m` at
2:4 (each group of 4 inputs keeps its 2 largest, scheduled from 4 to 2);
`st3` at 50 % (one global threshold) and `st3_n_m` at 2:4 (a threshold per
group); targeted `str` at 50 % and `str_n_m` at 2:4 (the larger of the
learned threshold and the group's). Every sparse row keeps the same layers dense: the small CNN's first
convolution (one input channel: no group of 4). Each run's row goes to
`benchmarks/results/n_m_accuracy.jsonl` as it finishes, with command, commit
and machine; `--resume` keeps the rows already there. The table (`.md`)
is generated from the rows: mean and spread over seeds.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

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


def define_flags():
    # Defined when run, not when imported: tests import `table` beside other
    # benchmarks' flags.
    flags.DEFINE_list("models", ["lenet_300_100", "small_cnn"], "Models to train.")
    flags.DEFINE_list(
        "methods", ["dense", "gmp", "gmp_n_m", "st3", "st3_n_m", "str", "str_n_m"],
        "Rows: dense; GMP, ST-3 and targeted STR at 1 - N/M unstructured and at N:M.",
    )
    flags.DEFINE_list("seeds", ["0", "1", "2"], "Random seeds.")
    flags.DEFINE_integer("lenet_epochs", 10, "Epochs for lenet_300_100.")
    flags.DEFINE_integer("cnn_epochs", 5, "Epochs for small_cnn.")
    flags.DEFINE_string("n_m", "2:4", "The N:M pattern of the `_n_m` rows.")
    flags.DEFINE_bool("resume", False, "Keep the rows already in the results file.")
    flags.DEFINE_string("out_dir", "benchmarks/results", "Where rows and table go.")


RESULTS = "n_m_accuracy"
# Layers whose input axis holds no group of M, kept dense in every sparse row.
KEEP_DENSE = {"small_cnn": ("conv1",), "lenet_300_100": ()}


def config_for(model, method, seed):
    from examples.training import TrainConfig

    n, m = (int(v) for v in FLAGS.n_m.split(":"))
    return TrainConfig(
        model=model,
        method=method,
        target_sparsity=1.0 - n / m if method in ("gmp", "st3", "str") else None,
        epochs=FLAGS.lenet_epochs if model == "lenet_300_100" else FLAGS.cnn_epochs,
        keep_dense=KEEP_DENSE.get(model, ()) if method != "dense" else (),
        n_m=FLAGS.n_m,
        seed=seed,
    )


def run(config, data):
    import keras_str
    from examples.training import run_training

    result = run_training(config, data)
    check = keras_str.check_n_m(result.stripped, FLAGS.n_m)
    return {
        "model": config.model,
        "method": config.method,
        "seed": config.seed,
        "epochs": config.epochs,
        "test_accuracy": result.test_accuracy,
        "sparsity": result.report.totals["sparsity"],
        "n_m_layers_held": sum(layer.satisfied for layer in check.layers),
        "n_m_layers_checked": len(check.layers),
        "train_seconds": result.train_seconds,
    }


def table(rows, n_m):
    lines = [
        f"Test accuracy (%) on Fashion-MNIST, mean +- std over seeds: dense; GMP, "
        f"ST-3 and targeted STR at {n_m} N:M (`_n_m`) and at the same sparsity "
        "unstructured. "
        "`held` counts the layers whose stripped kernel holds the pattern.",
        "",
    ]
    body = []
    groups = {}
    for r in rows:
        groups.setdefault((r["model"], r["method"]), []).append(r)
    for (model, method), found in sorted(groups.items()):
        accuracy = 100 * np.array([r["test_accuracy"] for r in found])
        held = f"{found[-1]['n_m_layers_held']}/{found[-1]['n_m_layers_checked']}"
        body.append([
            model, method, str(len(found)),
            f"{accuracy.mean():.2f} +- {accuracy.std():.2f}",
            f"{100 * np.mean([r['sparsity'] for r in found]):.1f} %",
            held, str(found[-1]["epochs"]), found[-1]["commit"], found[-1]["machine"],
        ])
    header = ["model", "method", "seeds", "accuracy", "sparsity", "held", "epochs", "commit", "machine"]
    return "\n".join(lines + [markdown_table(header, body), "", commands_line(rows)])


def main(argv):
    del argv
    from examples.data import load_image_classification
    from examples.data import normalize_images

    if FLAGS.tables_only:
        write_table(FLAGS.out_dir, RESULTS, table(rows_for_tables(FLAGS.out_dir, RESULTS), FLAGS.n_m))
        return
    path, rows = open_rows(FLAGS.out_dir, RESULTS, FLAGS.resume)
    done = {(r["model"], r["method"], r["seed"]) for r in rows}
    (x_train, y_train), (x_test, y_test) = load_image_classification("fashion_mnist")
    data = ((normalize_images(x_train), y_train), (normalize_images(x_test), y_test))
    stamp = provenance("benchmarks.n_m_accuracy")
    for seed in (int(s) for s in FLAGS.seeds):
        for model in FLAGS.models:
            for method in FLAGS.methods:
                if (model, method, seed) in done:
                    continue
                row = run(config_for(model, method, seed), data)
                row.update(stamp)
                keep_row(path, rows, row)
                write_table(FLAGS.out_dir, RESULTS, table(rows, FLAGS.n_m))
    write_table(FLAGS.out_dir, RESULTS, table(rows, FLAGS.n_m))


if __name__ == "__main__":
    define_flags()
    app.run(main)
