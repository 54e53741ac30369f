"""Low-rank STR on a GRU: accuracy against parameters, vs the dense cell and fixed ranks.

    python -m benchmarks.low_rank_rnn [--units 64] [--pretrain_epochs 2] [--finetune_epochs 2]
        [--lambdas 1e-3,1e-2] [--out benchmarks/results/low_rank_rnn.md]

Row-sequential Fashion-MNIST (Debian's offline copy): each image is 28 time
steps of 28 pixels, read by a GRU whose last state feeds `Dense(10)`. The
lifecycle: a dense GRU is trained for `--pretrain_epochs`, then

- dense: trains on for `--finetune_epochs` more (the same total budget);
- low-rank STR, one run per `--lambdas` value: `keras_str.sparsify` with
  `keras_str.LowRankSTR` (each cell kernel `U diag(sigma) V^T`, initialised
  by SVD of the trained kernel; a learned threshold on `sigma`) and
  `keras_str.apply_weight_decay(gru, lambda)` (the paper's decay on the
  factors and thresholds, on the GRU only), fine-tuned `--finetune_epochs`;
- fixed rank (SVD), one per low-rank STR run: the trained kernels truncated
  to the ranks that run reached (`LowRankSTR(max_rank={kernel: r})` with the
  threshold frozen far below every singular value: plain
  `U diag(sigma) V^T` of rank r), fine-tuned the same way;
- fixed rank (scratch): the same factorised GRU trained from scratch for the
  whole budget (`--pretrain_epochs + --finetune_epochs`).

The fixed-rank models train without weight decay (nothing for it to find;
it only costs them accuracy): low-rank STR needs it to learn its ranks.

Adam throughout (`--lr` for training from scratch, `--finetune_lr` after
sparsify), batch `--batch_size`, one seed. Cell parameters count what a
factorised cell stores: per kernel `min(r * (in + out), in * out)` (two
thin matrices, or the product when that is smaller), plus the biases; the
dense cell stores `3 * (in * u + u * u)` plus its biases. `strip` writes
the product into a plain `GRU` (a Keras cell kernel is one matrix); its
predictions are checked equal to the trained model's.
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("units", 64, "GRU units.")
flags.DEFINE_integer("pretrain_epochs", 2, "Epochs of the dense GRU before sparsify.")
flags.DEFINE_integer("finetune_epochs", 2, "Epochs after sparsify (and of the dense GRU's continuation).")
flags.DEFINE_integer("batch_size", 128, "Batch size.")
flags.DEFINE_float("lr", 5e-3, "Adam learning rate from scratch.")
flags.DEFINE_float("finetune_lr", 2e-3, "Adam learning rate after sparsify.")
flags.DEFINE_list("lambdas", ["1e-3", "1e-2"], "Weight decay of each low-rank STR run.")
flags.DEFINE_float(
    "threshold_init", 0.0,
    "LowRankSTR's threshold_init (g = exp; g(0) = 1, the scale of the flat tail of "
    "singular values a trained GRU kernel keeps from its initialisation).")
flags.DEFINE_integer("train_examples", 60000, "Training images used (the first N).")
flags.DEFINE_integer("seed", 0, "Seed of every run.")
flags.DEFINE_string("out", "benchmarks/results/low_rank_rnn.md", "Markdown output.")

KERNELS = ("gru_kernel", "gru_recurrent_kernel")
# g(-30) = exp(-30) ~ 1e-13: below any singular value, so nothing is pruned.
NEVER_PRUNES = -30.0


def build_model(method=None):
    import keras

    import keras_str

    if method is None:
        rnn = keras.layers.GRU(FLAGS.units, name="gru")
    else:
        rnn = keras_str.STRGRU(FLAGS.units, method=method, name="gru")
    return keras.Sequential(
        [keras.Input((28, 28)), rnn, keras.layers.Dense(10, name="classifier")]
    )


def sparsify_gru(dense, method, weight_decay):
    """`dense` with its GRU (only) low-rank, decayed with `weight_decay`."""
    import warnings

    import keras_str

    with warnings.catch_warnings():
        # The decay is set on the GRU just below, not through sparsify.
        warnings.filterwarnings("ignore", message="Plain STR")
        model = keras_str.sparsify(dense, method=method, keep_dense=["classifier"])
    keras_str.apply_weight_decay(model.get_layer("gru"), weight_decay)
    return model


def fixed_rank_method(ranks):
    """Factors of rank `ranks[kernel]` whose threshold never prunes (freeze it after building)."""
    import keras_str

    return keras_str.LowRankSTR(max_rank=ranks, threshold_init=NEVER_PRUNES)


def freeze_thresholds(model):
    for layer in model.get_layer("gru").sparse_sublayers():
        layer.threshold_param.trainable = False


def compile_model(model, lr):
    import keras

    model.compile(
        keras.optimizers.Adam(lr),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def fit(model, data, epochs):
    (x_train, y_train), _ = data
    start = time.time()
    model.fit(x_train, y_train, batch_size=FLAGS.batch_size, epochs=epochs, verbose=0)
    return time.time() - start


def test_accuracy(model, data):
    _, (x_test, y_test) = data
    _, accuracy = model.evaluate(x_test, y_test, batch_size=1000, verbose=0)
    return 100 * accuracy


def cell_shapes(gru):
    """`{kernel name: (in, out)}` of a GRU's two cell kernels."""
    units = gru.units
    inputs = gru.cell.kernel.shape[0]
    return {KERNELS[0]: (inputs, 3 * units), KERNELS[1]: (units, 3 * units)}


def cell_parameters(gru, ranks=None):
    """What the cell stores: factorised kernels where that is smaller, and its biases."""
    import math

    biases = int(math.prod(gru.cell.bias.shape)) if gru.cell.use_bias else 0
    total = biases
    for name, (fan_in, fan_out) in cell_shapes(gru).items():
        dense = fan_in * fan_out
        total += dense if ranks is None else min(ranks[name] * (fan_in + fan_out), dense)
    return total


def kept_ranks(gru):
    return {layer.name: layer.method.rank(layer) for layer in gru.sparse_sublayers()}


def main(argv):
    del argv
    import keras
    import numpy as np

    import keras_str
    from examples.data import load_image_classification
    from examples.data import normalize_images
    from keras_str.core.io_utils import write_text_atomic

    (x_train, y_train), (x_test, y_test) = load_image_classification("fashion_mnist")
    # Row-sequential: 28 time steps of 28 pixels.
    x_train = normalize_images(x_train).reshape(-1, 28, 28)[: FLAGS.train_examples]
    y_train = y_train[: FLAGS.train_examples]
    x_test = normalize_images(x_test).reshape(-1, 28, 28)
    data = ((x_train, y_train), (x_test, y_test))
    total_epochs = FLAGS.pretrain_epochs + FLAGS.finetune_epochs
    start = time.time()
    rows = []

    def record(variant, model, seconds, ranks=None):
        gru = model.get_layer("gru")
        full = {name: min(shape) for name, shape in cell_shapes(gru).items()}
        rank_text = (
            "full" if ranks is None
            else ", ".join(f"{ranks[name]} / {full[name]}" for name in KERNELS)
        )
        accuracy = test_accuracy(model, data)
        rows.append((variant, accuracy, cell_parameters(gru, ranks), rank_text))
        print(f"{variant}: {accuracy:.2f} % test accuracy, "
              f"{rows[-1][2]:,} cell parameters, ranks {rank_text} ({seconds:.0f} s)",
              flush=True)

    keras.utils.set_random_seed(FLAGS.seed)
    dense = build_model()
    compile_model(dense, FLAGS.lr)
    seconds = fit(dense, data, FLAGS.pretrain_epochs)
    pretrained = keras.models.clone_model(dense)
    pretrained.set_weights(dense.get_weights())
    seconds += fit(dense, data, FLAGS.finetune_epochs)
    record(f"dense GRU, {total_epochs} epochs", dense, seconds)

    for text in FLAGS.lambdas:
        weight_decay = float(text)
        keras.utils.set_random_seed(FLAGS.seed)
        model = sparsify_gru(
            pretrained, keras_str.LowRankSTR(threshold_init=FLAGS.threshold_init),
            weight_decay)
        compile_model(model, FLAGS.finetune_lr)
        seconds = fit(model, data, FLAGS.finetune_epochs)
        ranks = kept_ranks(model.get_layer("gru"))
        record(f"low-rank STR, lambda {text}", model, seconds, ranks)
        # strip writes the product kernels into a plain GRU: same predictions.
        plain = keras_str.strip(model)
        probe = x_test[:500]
        np.testing.assert_allclose(
            plain.predict(probe, verbose=0), model.predict(probe, verbose=0), atol=1e-4)

        keras.utils.set_random_seed(FLAGS.seed)
        model = sparsify_gru(pretrained, fixed_rank_method(ranks), weight_decay=0)
        freeze_thresholds(model)
        compile_model(model, FLAGS.finetune_lr)
        seconds = fit(model, data, FLAGS.finetune_epochs)
        record("fixed rank, SVD of the dense GRU, same ranks", model, seconds, ranks)

        keras.utils.set_random_seed(FLAGS.seed)
        model = build_model(fixed_rank_method(ranks))
        freeze_thresholds(model)
        compile_model(model, FLAGS.lr)
        seconds = fit(model, data, total_epochs)
        record(f"fixed rank, from scratch ({total_epochs} epochs), same ranks",
               model, seconds, ranks)

    units, examples = FLAGS.units, len(x_train)
    header = (
        "# Low-rank STR on a GRU (`benchmarks/low_rank_rnn.py`)\n\n"
        f"Row-sequential Fashion-MNIST (28 steps of 28 pixels), GRU({units}) -> "
        f"Dense(10); {examples:,} training images, batch {FLAGS.batch_size}, "
        f"Adam, seed {FLAGS.seed}; test accuracy on the 10,000 test images. A "
        f"dense GRU trained {FLAGS.pretrain_epochs} epochs (lr {FLAGS.lr:g}) is "
        f"the start of every variant but the last: the dense one trains "
        f"{FLAGS.finetune_epochs} more; low-rank STR (`sparsify` with "
        f"`LowRankSTR(threshold_init={FLAGS.threshold_init:g})`, g = exp, SVD of "
        "the trained kernels; weight decay lambda on the GRU's factors and "
        "thresholds) and fixed rank, SVD (the trained kernels truncated to the "
        "ranks the low-rank STR row above reached, threshold frozen, no weight "
        "decay) are "
        f"fine-tuned {FLAGS.finetune_epochs} epochs (lr {FLAGS.finetune_lr:g}). "
        "Fixed rank, from scratch: the same factorised GRU at those ranks, "
        f"trained {total_epochs} epochs (lr {FLAGS.lr:g}, no weight decay). Cell "
        "parameters: per "
        "kernel min(r (in + out), in x out), plus biases. Ranks: input kernel, "
        "recurrent kernel (kept / full). Wall time "
        f"{(time.time() - start) / 60:.1f} min on this machine (2 CPU cores, "
        "TensorFlow).\n\n"
    )
    lines = [
        "| variant | test accuracy % | cell parameters | rank kept (input, recurrent) |",
        "|---|---|---|---|",
    ]
    for variant, accuracy, parameters, rank_text in rows:
        lines.append(f"| {variant} | {accuracy:.2f} | {parameters:,} | {rank_text} |")
    table = header + "\n".join(lines) + "\n"
    write_text_atomic(FLAGS.out, table)
    print(table)


if __name__ == "__main__":
    app.run(main)
