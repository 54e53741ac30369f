"""Output-channel blocks for XNNPACK's sparse 1x1 convolutions, on an emulated ARM core.

    python -m benchmarks.xnnpack_blocks [--epochs 3] [--target 0.9] [--block_size 4]
        [--block_targets 0.8,0.9] [--out benchmarks/results/xnnpack_blocks.md]

XNNPACK runs the 1x1 convolutions of a sparse MobileNet with sparse kernels
on ARM CPUs (never on x86 with AVX), and has kernels for nonzeros that come
in blocks of 2 or 4 consecutive output channels sharing an input. Trains
the XNNPACK-shaped MobileNetV1 (`examples.models.mobilenet_v1_xnnpack`,
alpha 0.5, 32x32x3: Fashion-MNIST padded and repeated to three channels)
dense, with ST-3-sigma + rescale (unstructured zeros, the recommended recipe)
and with targeted block STR (`StructuredSTR("block", block_size,
block_axis="output", scope="sigma")`) on the 1x1 convolutions only (entry, depthwise and classifier stay dense, as XNNPACK's
sparse path wants), same recipe and seed (`examples.training`); block STR
also at other targets (`--block_targets`), to compare at equal accuracy. Each
stripped model is exported as float32 `.tflite` and counted on an emulated
Cortex-A76 (`../shared/armsim`, instructions per inference, one thread).
"""

import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("epochs", 3, "Training epochs.")
flags.DEFINE_float("target", 0.9, "Target sparsity of the 1x1 convolutions.")
flags.DEFINE_integer("block_size", 4, "Output channels per block (2 or 4).")
flags.DEFINE_list(
    "block_targets", None, "Block STR targets (default: --target); ST-3 runs at --target."
)
flags.DEFINE_integer("seed", 0, "Seed.")
flags.DEFINE_string("armsim_dir", None, "Folder of armsim (default ../shared/armsim).")
flags.DEFINE_string("out", "benchmarks/results/xnnpack_blocks.md", "Markdown output.")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def variants():
    """`(row name, method, target)`: dense, ST-3 at --target, block STR at each block target."""
    yield "dense", "dense", None
    yield "st3", "st3", FLAGS.target
    targets = [float(t) for t in FLAGS.block_targets or [FLAGS.target]]
    for target in targets:
        name = "block_str" if targets == [FLAGS.target] else f"block_str@{target:.0%}"
        yield name, "block_str", target


def as_rgb_32(images):
    import numpy as np

    padded = np.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0)))
    return np.repeat(padded, 3, axis=-1)


def main(argv):
    del argv
    bad = [t for t in FLAGS.block_targets or () if not _is_fraction(t)]
    if bad:
        raise ValueError(
            "Expected fractions in (0, 1) in --block_targets. "
            f"Received: block_targets={FLAGS.block_targets}"
        )
    import keras
    import numpy as np

    import keras_str
    from benchmarks.armsim import armsim_instructions
    from benchmarks.armsim import check_armsim
    from examples.data import load_image_classification
    from examples.data import normalize_images
    from examples.models import mobilenet_v1_xnnpack
    from examples.training import TrainConfig
    from examples.training import run_training
    from keras_str.core.io_utils import write_text_atomic

    armsim_dir = FLAGS.armsim_dir or os.path.join(ROOT, "..", "shared", "armsim")
    check_armsim(armsim_dir)
    (x_train, y_train), (x_test, y_test) = load_image_classification("fashion_mnist")
    data = (
        (as_rgb_32(normalize_images(x_train)), y_train),
        (as_rgb_32(normalize_images(x_test)), y_test),
    )
    probe = mobilenet_v1_xnnpack(input_shape=(32, 32, 3))
    keep_dense = tuple(
        layer.name for layer in probe.layers
        if layer.weights and not layer.name.startswith("pw")
        and not isinstance(layer, keras.layers.BatchNormalization)
    )
    names = [name for name, _, _ in variants()]
    rows = {}
    with tempfile.TemporaryDirectory() as workdir:
        paths = {}
        for variant, method, target in variants():
            config = TrainConfig(
                model="mobilenet_v1_xnnpack",
                method=method,
                target_sparsity=target,
                epochs=FLAGS.epochs,
                block_size=FLAGS.block_size,
                block_axis="output",
                # Layers initialised at different scales (64 to 512 inputs)
                # share one target: judge them against their sigma.
                st3_scope="sigma",
                st3_rescale=True,
                keep_dense=() if method == "dense" else keep_dense,
                seed=FLAGS.seed,
            )
            result = run_training(config, data)
            path = os.path.join(workdir, f"{method}_{target}.tflite")
            report = keras_str.export_tflite(result.stripped, path)
            pointwise = [r for r in result.report.rows if r.name.startswith("pw")]
            zeros = 1 - sum(r.nonzeros for r in pointwise) / sum(r.params for r in pointwise)
            rows[variant] = {
                "accuracy": 100 * result.test_accuracy,
                "pointwise_zeros": 100 * zeros,
                "eligible": report.xnnpack.eligible,
            }
            paths[variant] = path
            print(f"{variant}: {rows[variant]}", flush=True)
        counts = armsim_instructions([paths[v] for v in names], armsim_dir)
    counts = {name: counts.get(os.path.basename(paths[name])) for name in names}
    dense_count = counts["dense"]
    lines = [
        "| variant | test accuracy % | 1x1-conv zeros % | XNNPACK sparse path | "
        "A76 instructions / inference | / dense |",
        "|---|---|---|---|---|---|",
    ]
    for variant in names:
        count = counts[variant]
        ratio = (
            f"{count / dense_count:.3f}"
            if isinstance(count, int) and isinstance(dense_count, int) else "n/a"
        )
        row = rows[variant]
        lines.append(
            f"| {variant} | {row['accuracy']:.2f} | {row['pointwise_zeros']:.1f} | "
            f"{'yes' if row['eligible'] else 'no'} | {count} | {ratio} |"
        )
    table = (
        "# XNNPACK output-channel blocks (`benchmarks/xnnpack_blocks.py`)\n\n"
        f"MobileNetV1 (XNNPACK-shaped, alpha 0.5) on Fashion-MNIST at 32x32x3, "
        f"{FLAGS.epochs} epochs, seed {FLAGS.seed}; target {FLAGS.target:.0%} on the 1x1 "
        f"convolutions (block STR rows: their own target; blocks of {FLAGS.block_size} "
        "output channels); "
        "float32 `.tflite`, emulated Cortex-A76, one thread.\n\n"
        + "\n".join(lines) + "\n"
    )
    write_text_atomic(FLAGS.out, table)
    print(table)


def _is_fraction(text):
    try:
        return 0.0 < float(text) < 1.0
    except ValueError:
        return False


if __name__ == "__main__":
    app.run(main)
