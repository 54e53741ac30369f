"""Sparse vs dense .tflite at 90 % sparsity: file size, LiteRT latency, ARM cost.

    python -m benchmarks.tflite_sparse [--runs 50] [--armsim] [--out_dir benchmarks/results]

Models (weights zeroed at random, as STR leaves them, unless noted):
- `mobilenet`: MobileNetV1 built to XNNPACK's sparse rules (128x128, alpha 0.5,
  explicit padding, GAP + Dense), 90 % zeros in every 1x1 conv and the
  classifier; entry and depthwise convs dense (STR keeps them dense too).
- `mobilenet_same_pad`: the same with padding="same" on stride-2 layers
  (keras.applications style): the control whose XNNPACK verdict is "no".
- `mlp`: 2048-2048-2048-2048-1000, 90 % random zeros.
- `mlp_blocks`: the same with zeros in blocks of 16 consecutive inputs,
  the pattern TFLite's sparse FullyConnected kernels need.

Every file is exported and timed in the same run (LiteRT default
interpreter, one thread; dense and sparse alternate in 5 rounds of
--runs/5 invocations, median of the round medians), so ratios are like for
like.
With --armsim, the float32 MobileNets also run on an emulated Cortex-A76
(../shared/armsim, instructions per inference), where XNNPACK's sparse
convolutions are switched on as on a phone.
"""

import contextlib
import io
import json
import os

from benchmarks.armsim import armsim_instructions
from benchmarks.armsim import check_armsim
from benchmarks.harness import litert_rounds

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

import keras_str  # noqa: E402
from examples.models import mlp  # noqa: E402
from examples.models import mobilenet_v1_xnnpack  # noqa: E402
from keras_str.core.io_utils import atomic_path  # noqa: E402
from keras_str.core.io_utils import write_text_atomic  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("runs", 50, "Timed invocations per file (median), split among the rounds.")
flags.DEFINE_integer("rounds", 5, "Alternating timing rounds of the dense and sparse files.")
flags.DEFINE_bool("armsim", False, "Also count instructions on an emulated ARM core.")
flags.DEFINE_string("armsim_dir", None, "Folder of armsim (default ../shared/armsim).")
flags.DEFINE_string("out_dir", "benchmarks/results", "Where files and tables go.")
flags.DEFINE_float("sparsity", 0.9, "Fraction of zeros in the pruned kernels.")
flags.DEFINE_bool(
    "only_verdicts", False,
    "Only check the XNNPACK verdict against the emulated ARM core (needs --armsim).",
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def zero_random(layer, fraction, rng):
    kernel = keras.ops.convert_to_numpy(layer.kernel)
    kernel[rng.random(kernel.shape) < fraction] = 0.0
    layer.kernel.assign(kernel)


def zero_blocks(layer, fraction, rng, block=16):
    kernel = keras.ops.convert_to_numpy(layer.kernel)
    mask = rng.random((kernel.shape[0] // block, kernel.shape[1])) < fraction
    kernel[np.repeat(mask, block, axis=0)] = 0.0
    layer.kernel.assign(kernel)


def build(name, sparsity, rng):
    if name.startswith("mobilenet"):
        model = mobilenet_v1_xnnpack(explicit_padding=name == "mobilenet")
        for layer in model.layers:
            if layer.name.startswith("pw") and isinstance(layer, keras.layers.Conv2D) or layer.name == "logits":
                zero_random(layer, sparsity, rng)
        return model
    model = mlp()
    for layer in model.layers:
        (zero_blocks if name == "mlp_blocks" else zero_random)(layer, sparsity, rng)
    return model


def conv_head_mobilenet(classes, sparse_head, sparsity, rng):
    """GlobalAveragePooling2D(keepdims=True) + 1x1 conv head, the risky shape."""
    base = mobilenet_v1_xnnpack(head=False)
    x = keras.layers.GlobalAveragePooling2D(keepdims=True)(base.layers[-2].output)
    x = keras.layers.Conv2D(classes, 1, name="conv_head")(x)
    model = keras.Model(base.inputs, keras.layers.Flatten()(x))
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D) and (
            layer.name.startswith("pw") or (layer.name == "conv_head" and sparse_head)
        ):
            zero_random(layer, sparsity, rng)
    return model


def verdict_cases(sparsity, rng):
    """(name, model, sparse encoding) whose verdicts the ARM core must confirm."""
    return [
        ("mobilenet, sparse", build("mobilenet", sparsity, rng), True),
        ("mobilenet, same padding", build("mobilenet_same_pad", sparsity, rng), True),
        ("mobilenet, zeros stored dense", build("mobilenet", sparsity, rng), False),
        ("conv head x10 after GAP(keepdims), sparse head",
         conv_head_mobilenet(10, True, sparsity, rng), True),
        ("conv head x10 after GAP(keepdims), dense head",
         conv_head_mobilenet(10, False, sparsity, rng), True),
        ("conv head x1000 after GAP(keepdims), dense head",
         conv_head_mobilenet(1000, False, sparsity, rng), True),
    ]


def check_verdicts(out_dir, armsim_dir, sparsity, rng):
    """Converts each case as is (no repair), then runs it on the emulated core."""
    import tensorflow as tf

    from keras_str.export.xnnpack_rules import check_xnnpack_sparse

    rows = []
    for index, (name, model, sparse) in enumerate(verdict_cases(sparsity, rng)):
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        if sparse:
            converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
        with contextlib.redirect_stdout(io.StringIO()):
            content = converter.convert()
        path = os.path.join(out_dir, f"verdict_{index}.tflite")
        with atomic_path(path) as tmp_path, open(tmp_path, "wb") as f:
            f.write(content)
        verdict = check_xnnpack_sparse(
            content, "float32", [layer.name for layer in model.layers]
        )
        rows.append({"case": name, "path": path, "eligible": verdict.eligible,
                     "fails_on_arm": verdict.fails_on_arm, "reasons": verdict.reasons})
        keras.utils.clear_session()
    dense_path = rows[0]["path"].replace("verdict_0", "verdict_dense")
    dense = build("mobilenet", 0.0, rng)
    with contextlib.redirect_stdout(io.StringIO()):
        dense_content = tf.lite.TFLiteConverter.from_keras_model(dense).convert()
    with atomic_path(dense_path) as tmp_path, open(tmp_path, "wb") as f:
        f.write(dense_content)
    counts = armsim_instructions([dense_path] + [r["path"] for r in rows], armsim_dir)
    dense_count = counts[os.path.basename(dense_path)]
    lines = [
        "| case | verdict | emulated Cortex-A76 | agrees |",
        "|---|---|---|---|",
    ]
    for row in rows:
        measured = counts.get(os.path.basename(row["path"]))
        if isinstance(measured, int):
            ratio = measured / dense_count
            observed = f"{measured / 1e6:.2f} M insns ({ratio:.2f}x dense)"
            agrees = (ratio < 0.9) == row["eligible"] and not row["fails_on_arm"]
        else:
            observed = "fails to load"
            agrees = row["fails_on_arm"]
        predicted = ("sparse" if row["eligible"]
                     else "fails on ARM" if row["fails_on_arm"] else "dense")
        row.update({"arm": observed, "agrees": agrees})
        lines.append(f"| {row['case']} | {predicted} | {observed} | {'yes' if agrees else 'NO'} |")
    return rows, "\n".join(lines)


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    os.makedirs(FLAGS.out_dir, exist_ok=True)
    rng = np.random.default_rng(0)
    armsim_dir = FLAGS.armsim_dir or os.path.join(ROOT, "..", "shared", "armsim")
    if FLAGS.armsim:
        check_armsim(armsim_dir)
        verdicts, verdict_table = check_verdicts(
            FLAGS.out_dir, armsim_dir, FLAGS.sparsity, rng
        )
        print("\n" + verdict_table + "\n", flush=True)
        write_text_atomic(
            os.path.join(FLAGS.out_dir, "xnnpack_verdicts.md"), verdict_table + "\n"
        )
        write_text_atomic(
            os.path.join(FLAGS.out_dir, "xnnpack_verdicts.json"),
            json.dumps(verdicts, indent=2) + "\n",
        )
        if FLAGS.only_verdicts:
            return
    rows = []
    names = ["mobilenet", "mobilenet_same_pad", "mlp", "mlp_blocks"]
    for name in names:
        model = build(name, FLAGS.sparsity, rng)
        shape = (64,) + tuple(model.inputs[0].shape[1:])
        representative = rng.uniform(size=shape).astype("float32")
        report = keras_str.sparsity_report(model)
        dense_float32 = None
        for label, precision, per_channel in (
            ("float32", "float32", True),
            ("int8", "int8", True),
            ("int8 per-tensor", "int8", False),
        ):
            row = {"model": name, "precision": label,
                   "kernel_sparsity": report.totals["sparsity"]}
            paths = {}
            for kind in ("dense", "sparse"):
                path = os.path.join(
                    FLAGS.out_dir, f"{name}_{label.replace(' ', '_')}_{kind}.tflite"
                )
                export = keras_str.export_tflite(
                    model, path, precision=precision,
                    representative_data=representative if precision == "int8" else None,
                    sparse=kind == "sparse",
                    per_channel=per_channel,
                )
                paths[kind] = path
                row[f"{kind}_bytes"] = export.size_bytes
                row[f"{kind}_path"] = path
                if kind == "sparse":
                    row["densify_ops"] = export.densify_ops
                    row["sparse_tensors"] = len(export.sparse_tensors)
                    row["stored_dense"] = len(export.stored_dense)
                    row["xnnpack_eligible"] = export.xnnpack.eligible
                    row["xnnpack_reasons"] = export.xnnpack.reasons
            times = litert_rounds(paths, FLAGS.rounds, max(FLAGS.runs // FLAGS.rounds, 1), warmup=3)
            row["dense_ms"] = float(np.median(times["dense"]))
            row["sparse_ms"] = float(np.median(times["sparse"]))
            if precision == "float32":
                dense_float32 = row["dense_bytes"]
            row["size_vs_own_dense"] = row["sparse_bytes"] / row["dense_bytes"]
            row["size_vs_dense_float32"] = row["sparse_bytes"] / dense_float32
            row["latency_ratio"] = row["sparse_ms"] / row["dense_ms"]
            rows.append(row)
            print(f"{name} {label}: sparse/dense size {row['size_vs_own_dense']:.3f}, "
                  f"vs dense float32 {row['size_vs_dense_float32']:.3f}, "
                  f"latency {row['dense_ms']:.3f} -> {row['sparse_ms']:.3f} ms", flush=True)
        keras.utils.clear_session()

    if FLAGS.armsim:
        for row in rows:
            if row["precision"] != "float32" or not row["model"].startswith("mobilenet"):
                continue
            counts = armsim_instructions([row["dense_path"], row["sparse_path"]], armsim_dir)
            row["arm_dense_insns"] = counts.get(os.path.basename(row["dense_path"]))
            row["arm_sparse_insns"] = counts.get(os.path.basename(row["sparse_path"]))
            if isinstance(row["arm_dense_insns"], int) and isinstance(row["arm_sparse_insns"], int):
                row["arm_ratio"] = row["arm_sparse_insns"] / row["arm_dense_insns"]
            print(f"armsim {row['model']}: {row.get('arm_dense_insns')} -> "
                  f"{row.get('arm_sparse_insns')} instructions per inference", flush=True)

    lines = [
        "| model | precision | sparse / dense file | sparse / dense float32 file | "
        "dense ms | sparse ms | sparse / dense latency | DENSIFY | stored dense | "
        "XNNPACK verdict | ARM A76 insns dense -> sparse |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        arm = ""
        if "arm_ratio" in r:
            arm = f"{r['arm_dense_insns'] / 1e6:.2f} M -> {r['arm_sparse_insns'] / 1e6:.2f} M ({r['arm_ratio']:.2f}x)"
        elif "arm_sparse_insns" in r:
            arm = f"{r.get('arm_dense_insns')} -> {r.get('arm_sparse_insns')}"
        lines.append(
            f"| {r['model']} | {r['precision']} | {r['size_vs_own_dense']:.3f} "
            f"({r['sparse_bytes']:,} / {r['dense_bytes']:,} B) | {r['size_vs_dense_float32']:.3f} | "
            f"{r['dense_ms']:.3f} | {r['sparse_ms']:.3f} | {r['latency_ratio']:.2f} | "
            f"{r['densify_ops']} | {r['stored_dense']} | "
            f"{'eligible' if r['xnnpack_eligible'] else 'no'} | {arm} |"
        )
    table = "\n".join(lines)
    print("\n" + table)
    write_text_atomic(os.path.join(FLAGS.out_dir, "tflite_sparse.md"), table + "\n")
    write_text_atomic(os.path.join(FLAGS.out_dir, "tflite_sparse.json"), json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    app.run(main)
