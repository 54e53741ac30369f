"""Block STR for Dense layers: accuracy against unstructured STR, and LiteRT speed.

    python -m benchmarks.block_sparse_fc [--model lenet_300_100] [--target 0.9]
        [--epochs 10] [--seeds 0,1] [--rounds 7] [--out benchmarks/results/block_sparse_fc.md]

Trains the model on Fashion-MNIST (Debian's offline copy) dense, with
targeted STR (unstructured zeros) and with targeted block STR
(`keras_str.StructuredSTR("block", block_size=4)`: zeros in the 1x4 blocks
of consecutive inputs that TFLite's sparse FULLY_CONNECTED kernel runs), same
recipe and seeds (`examples.training`). Then exports each stripped model as
float32 `.tflite` and times single-example inference in LiteRT (one thread,
the default XNNPACK delegate), the three files in turn for `--rounds`
rounds; latency is the median over rounds of each file's median, and the
ratio is taken to the dense file's time in the same round. With `--int8`,
block size 16 and full-integer int8 export (TFLite's int8 sparse FC blocks).
"""

import os
import statistics
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from benchmarks.harness import litert_rounds  # noqa: E402
from benchmarks.harness import per_round_ratios  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "lenet_300_100", "Example model (an MLP).")
flags.DEFINE_float("target", 0.9, "Target sparsity of both sparse methods.")
flags.DEFINE_integer("epochs", 10, "Training epochs.")
flags.DEFINE_list("seeds", ["0", "1"], "Seeds (accuracy: mean over seeds).")
flags.DEFINE_integer("rounds", 7, "Alternating latency rounds.")
flags.DEFINE_integer("runs", 300, "Timed invocations per file per round.")
flags.DEFINE_boolean("int8", False, "1x16 blocks and full-integer int8 export.")
flags.DEFINE_string("out", "benchmarks/results/block_sparse_fc.md", "Markdown output.")

VARIANTS = ("dense", "str", "block_str")


def train(variant, seed, data):
    from examples.training import TrainConfig
    from examples.training import run_training

    config = TrainConfig(
        model=FLAGS.model,
        method=variant,
        target_sparsity=None if variant == "dense" else FLAGS.target,
        epochs=FLAGS.epochs,
        block_size=16 if FLAGS.int8 else 4,
        seed=seed,
    )
    return run_training(config, data)


def main(argv):
    del argv
    import numpy as np

    import keras_str
    from examples.data import load_image_classification
    from examples.data import normalize_images
    from keras_str.core.io_utils import write_text_atomic

    (x_train, y_train), (x_test, y_test) = load_image_classification("fashion_mnist")
    data = ((normalize_images(x_train), y_train), (normalize_images(x_test), y_test))
    x_calibration = data[0][0][:256]
    precision = "int8" if FLAGS.int8 else "float32"
    accuracy = {v: [] for v in VARIANTS}
    sparsity = {v: [] for v in VARIANTS}
    ratios = {v: [] for v in VARIANTS}
    latencies = {v: [] for v in VARIANTS}
    encodings = {}
    with tempfile.TemporaryDirectory() as workdir:
        for seed in (int(s) for s in FLAGS.seeds):
            paths = {}
            for variant in VARIANTS:
                result = train(variant, seed, data)
                accuracy[variant].append(100 * result.test_accuracy)
                sparsity[variant].append(100 * result.report.totals["sparsity"])
                path = os.path.join(workdir, f"{variant}_{seed}.tflite")
                exported = keras_str.export_tflite(
                    result.stripped, path, precision=precision,
                    representative_data=x_calibration if FLAGS.int8 else None)
                paths[variant] = path
                encodings[variant] = sorted({
                    f"{t.encoding}{' (densified)' if t.densified else ''}"
                    for t in exported.sparse_tensors}) or ["dense"]
                print(f"seed {seed} {variant}: {accuracy[variant][-1]:.2f} % at "
                      f"{sparsity[variant][-1]:.1f} % zeros; {encodings[variant]}", flush=True)
            times = litert_rounds(paths, FLAGS.rounds, FLAGS.runs)
            round_ratios = per_round_ratios(times, "dense")
            for variant in VARIANTS:
                latencies[variant] += times[variant]
                ratios[variant] += round_ratios[variant]

    lines = [
        f"| variant | test accuracy % (mean over {len(FLAGS.seeds)} seeds) | zeros % | "
        "LiteRT ms / example (median) | latency / dense (median of per-round ratios) | "
        "weights in the file |",
        "|---|---|---|---|---|---|",
    ]
    for variant in VARIANTS:
        lines.append(
            f"| {variant} | {np.mean(accuracy[variant]):.2f} "
            f"({', '.join(f'{a:.2f}' for a in accuracy[variant])}) | "
            f"{np.mean(sparsity[variant]):.1f} | "
            f"{statistics.median(latencies[variant]):.4f} | "
            f"{statistics.median(ratios[variant]):.3f} | {', '.join(encodings[variant])} |")
    gap = np.mean(accuracy["block_str"]) - np.mean(accuracy["str"])
    speedup = 1.0 / statistics.median(ratios["block_str"])
    header = (
        "# Block STR for Dense layers (`benchmarks/block_sparse_fc.py`)\n\n"
        f"{FLAGS.model} on Fashion-MNIST, {FLAGS.epochs} epochs, target "
        f"{FLAGS.target:.0%}, {precision} export, blocks of "
        f"{16 if FLAGS.int8 else 4} consecutive inputs; LiteRT one thread, batch 1, "
        f"{FLAGS.rounds} alternating rounds of {FLAGS.runs} runs.\n\n"
        f"Block STR vs unstructured STR: {gap:+.2f} points; block STR runs "
        f"{speedup:.2f}x faster than dense in LiteRT.\n\n"
    )
    table = header + "\n".join(lines) + "\n"
    write_text_atomic(FLAGS.out, table)
    print(table)


if __name__ == "__main__":
    app.run(main)
