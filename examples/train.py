"""Train any example model with any method, then strip, export and report.

    python -m examples.train --model lenet_300_100 --method st3 \
        --target_sparsity 0.95 --epochs 10 --out_dir runs/lenet_st3_95

Methods: `dense`, `str` (plain STR; with `--target_sparsity`, STR whose
thresholds follow a cubic schedule to exactly that sparsity), `st3`, `gmp`
(Keras 3) and `gmp_tfmot` (tensorflow-model-optimization on tf_keras).
`--budget_from` hands the per-layer sparsity of an earlier run (its
`report.json`) to `gmp` as layer targets (budget transfer).

Writes to `--out_dir`: `model.keras` (sparse-trainable), `model_stripped.keras`
(plain Keras, exact zeros), `model.tflite` (sparse float32, checked in
LiteRT), `report.json` (per-layer sparsity and MACs), `summary.json`,
`layer_sparsity.png` and `training.png`.
"""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

import keras_str  # noqa: E402
from examples.data import load_image_classification  # noqa: E402
from examples.data import normalize_images  # noqa: E402
from examples.models import MODELS  # noqa: E402
from examples.training import METHODS  # noqa: E402
from examples.training import TrainConfig  # noqa: E402
from examples.training import run_training  # noqa: E402
from keras_str.analysis.plots import plot_layer_sparsity  # noqa: E402
from keras_str.analysis.plots import plot_training_history  # noqa: E402
from keras_str.core.file_checks import check_input_file  # noqa: E402
from keras_str.core.io_utils import save_model_atomic  # noqa: E402
from keras_str.core.io_utils import write_text_atomic  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "dataset", "fashion_mnist",
    "tensorflow-datasets image classification name (offline: fashion_mnist).",
)
flags.DEFINE_string("data_dir", None, "tensorflow-datasets data folder.")
flags.DEFINE_enum("model", "lenet_300_100", sorted(MODELS), "Architecture.")
flags.DEFINE_enum("method", "str", list(METHODS), "Sparsity method.")
flags.DEFINE_float(
    "target_sparsity", None,
    "Final fraction of zero kernel weights (required for st3/gmp/gmp_tfmot; "
    "optional for str).",
)
flags.DEFINE_integer("epochs", 10, "Training epochs.")
flags.DEFINE_integer("batch_size", 128, "Batch size.")
flags.DEFINE_float("lr", 0.1, "Peak learning rate (SGD + Nesterov momentum, cosine).")
flags.DEFINE_float("warmup_epochs", 0.0, "Linear learning-rate warm-up, in epochs.")
flags.DEFINE_float("momentum", 0.9, "SGD momentum.")
flags.DEFINE_float(
    "weight_decay", 5e-4,
    "PyTorch-style coupled weight decay lambda on kernels (and STR thresholds).",
)
flags.DEFINE_float("threshold_init", -5.0, "STR's initial raw threshold s.")
flags.DEFINE_float("label_smoothing", 0.0, "Label smoothing.")
flags.DEFINE_float(
    "pruning_start", 0.0, "Fraction of training at which the sparsity schedule starts."
)
flags.DEFINE_float(
    "pruning_end", 0.75,
    "Fraction of training at which the target is reached; the rest fine-tunes.",
)
flags.DEFINE_integer(
    "block_size", 4,
    "block_str: weights per block (4: TFLite's float sparse FC blocks; 16: int8).",
)
flags.DEFINE_enum(
    "block_axis", "input", ["input", "output"],
    "block_str: blocks of consecutive inputs (FC) or output channels (1x1 convs).",
)
flags.DEFINE_enum(
    "st3_scope", "global", ["global", "sigma", "layer"],
    "Threshold scope of st3 and block_str/channel_str ('layer': the structured "
    "methods only; each filter against its layer's kernel RMS, for CNNs without "
    "BatchNorm: it empties the early layers of BatchNorm nets, use 'sigma' there).",
)
flags.DEFINE_enum(
    "budget", "weights", ["weights", "macs"],
    "What --target_sparsity is a share of: weights, or the dense model's "
    "multiply-adds (str, st3, channel_str).",
)
flags.DEFINE_integer(
    "channel_multiple", 1,
    "gmp_channel: each layer keeps a multiple of this many channels (8 suits "
    "XNNPACK's and GPU kernels' channel tiles).",
)
flags.DEFINE_boolean("st3_rescale", False, "ST-3 per-channel rescaling.")
flags.DEFINE_integer("gmp_frequency", 100, "Steps between GMP mask updates.")
flags.DEFINE_integer(
    "update_frequency", 1,
    "Steps between ST-3 threshold / targeted-STR updates (1: every step).",
)
flags.DEFINE_string(
    "budget_from", None,
    "report.json of an earlier run whose per-layer sparsity becomes gmp's "
    "layer targets.",
)
flags.DEFINE_integer(
    "max_train_examples", None, "Train on the first N examples only (quick runs)."
)
flags.DEFINE_string(
    "n_m", "2:4", "The N:M pattern of gmp_n_m, st3_n_m and str_n_m: N nonzeros in every M inputs."
)
flags.DEFINE_list(
    "keep_dense", [],
    "Layers to keep dense, by name (e.g. conv1, whose one input channel holds no N:M).",
)
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.DEFINE_string("out_dir", "train_output", "Where the outputs are written.")


def read_budget(path):
    """`{layer: sparsity}` from a report.json written by this script."""
    check_input_file(path, "--budget_from report")
    try:
        with open(path) as f:
            layers = json.load(f)["layers"]
        return {row["name"]: float(row["sparsity"]) for row in layers}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(
            "Expected `budget_from` to be a report.json written by "
            f"examples.train. Received: budget_from={path!r} ({error})"
        ) from error


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    layer_targets = None
    if FLAGS.budget_from:
        if FLAGS.method != "gmp":
            raise app.UsageError("--budget_from applies to --method gmp only.")
        layer_targets = read_budget(FLAGS.budget_from)
    config = TrainConfig(
        model=FLAGS.model,
        method=FLAGS.method,
        target_sparsity=FLAGS.target_sparsity,
        epochs=FLAGS.epochs,
        batch_size=FLAGS.batch_size,
        lr=FLAGS.lr,
        warmup_epochs=FLAGS.warmup_epochs,
        momentum=FLAGS.momentum,
        weight_decay=FLAGS.weight_decay,
        threshold_init=FLAGS.threshold_init,
        label_smoothing=FLAGS.label_smoothing,
        pruning_start_fraction=FLAGS.pruning_start,
        pruning_end_fraction=FLAGS.pruning_end,
        block_size=FLAGS.block_size,
        block_axis=FLAGS.block_axis,
        st3_scope=FLAGS.st3_scope,
        budget=FLAGS.budget,
        channel_multiple=FLAGS.channel_multiple,
        st3_rescale=FLAGS.st3_rescale,
        gmp_frequency=FLAGS.gmp_frequency,
        update_frequency=FLAGS.update_frequency,
        layer_targets=layer_targets,
        keep_dense=tuple(FLAGS.keep_dense),
        n_m=FLAGS.n_m,
        seed=FLAGS.seed,
    )
    config.validate()
    os.makedirs(FLAGS.out_dir, exist_ok=True)
    (x_train, y_train), (x_test, y_test) = load_image_classification(
        FLAGS.dataset, FLAGS.data_dir
    )
    if FLAGS.max_train_examples:
        x_train = x_train[: FLAGS.max_train_examples]
        y_train = y_train[: FLAGS.max_train_examples]
    data = (
        (normalize_images(x_train), y_train),
        (normalize_images(x_test), y_test),
    )
    result = run_training(config, data, verbose=2)

    def out(name):
        return os.path.join(FLAGS.out_dir, name)

    save_model_atomic(result.model, out("model.keras"))
    save_model_atomic(result.stripped, out("model_stripped.keras"))
    export = keras_str.export_tflite(result.stripped, out("model.tflite"))
    result.report.to_json(out("report.json"))
    summary = result.summary()
    summary["tflite_bytes"] = export.size_bytes
    summary["tflite_max_difference"] = export.max_difference
    write_text_atomic(out("summary.json"), json.dumps(summary, indent=2) + "\n")
    plot_layer_sparsity(result.report, out("layer_sparsity.png"))
    plot_training_history(result.history, out("training.png"),
                          title=f"{config.model} / {config.method}")

    print(result.report.table())
    print(
        f"test accuracy: {result.test_accuracy:.4f}   "
        f"sparsity: {100 * result.report.totals['sparsity']:.2f}%   "
        f"sparse MFLOPs: {summary['sparse_mflops']:.3f} "
        f"(dense {summary['dense_mflops']:.3f})   "
        f"train time: {result.train_seconds:.0f} s"
    )
    print(f"outputs in {FLAGS.out_dir}/")


if __name__ == "__main__":
    app.run(main)
