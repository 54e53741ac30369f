"""LiteRT latency of a transformer whose feed-forward layers are 1x4-block sparse, against dense.

    python -m benchmarks.transformer_ffn_block [--layers 4] [--hidden 256]
        [--intermediate 1024] [--sequence_length 64] [--target 0.9] [--rounds 7]

A GPT-2-style keras-hub backbone (random weights, built offline) has its
feed-forward `Dense` layers pruned to `--target` zeros, by
`keras_str.StructuredSTR("block", block_size=4)` (zeros in blocks of 4
consecutive inputs: TFLite's sparse FULLY_CONNECTED kernel) and, for
comparison, by unstructured GMP (LiteRT densifies those weights at load);
attention, embeddings and norms stay dense. Each model is stripped and
exported at `--sequence_length` as float32 `.tflite` (`keras_str.export_tflite`),
along with the dense model. The three files are timed in turn for
`--rounds` rounds in LiteRT's default interpreter (XNNPACK, one thread,
`keras_str.time_tflite`); a file's latency is the median over rounds of its
per-round median, and each ratio is the median of the per-round ratios to
the dense file. Pruning is one training call at the final target (timing
does not depend on which weights are zero, only on how many and where).
Rows go to `benchmarks/results/transformer_ffn_block.jsonl` with command,
commit and machine; the table (`.md`) is generated from them.
"""

import json
import os
import statistics
import tempfile
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from benchmarks.harness import commands_line  # noqa: E402
from benchmarks.harness import litert_rounds  # noqa: E402
from benchmarks.harness import markdown_table  # noqa: E402
from benchmarks.harness import per_round_ratios  # noqa: E402
from benchmarks.harness import provenance  # noqa: E402
from benchmarks.harness import read_rows  # noqa: E402
from benchmarks.harness import rows_for_tables  # noqa: E402
from benchmarks.harness import write_table  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("layers", 4, "Transformer layers.")
flags.DEFINE_integer("hidden", 256, "Hidden size.")
flags.DEFINE_integer("intermediate", 1024, "Feed-forward size.")
flags.DEFINE_integer("sequence_length", 64, "Tokens per inference.")
flags.DEFINE_float("target", 0.9, "Share of zeros in the feed-forward kernels.")
flags.DEFINE_integer("rounds", 7, "Alternating timing rounds.")
flags.DEFINE_integer("runs", 30, "Timed invocations per file per round.")
flags.DEFINE_string("out_dir", "benchmarks/results", "Where rows and table go.")

RESULTS = "transformer_ffn_block"


def backbone():
    import keras_hub

    return keras_hub.models.GPT2Backbone(
        vocabulary_size=1000, num_layers=FLAGS.layers, num_heads=4,
        hidden_dim=FLAGS.hidden, intermediate_dim=FLAGS.intermediate,
        max_sequence_length=max(64, FLAGS.sequence_length),
    )


def pruned(method):
    """A backbone whose feed-forward Dense layers `method` pruned, stripped."""
    import keras
    import numpy as np

    import keras_str

    keras.utils.set_random_seed(0)
    model = backbone()
    if method is None:
        return model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        keras_str.sparsify(
            model, method=method, in_place=True,
            keep_dense=lambda layer: type(layer) is not keras.layers.Dense,
        )
        inputs = {name: np.ones((1, FLAGS.sequence_length), "int32")
                  for name in model._inputs_struct}
        model(inputs, training=True)
        return keras_str.strip(model, in_place=True)


def table(rows):
    lines = [
        "LiteRT float32 latency of a GPT-2-style backbone whose feed-forward Dense "
        "layers are pruned (attention, embeddings, norms dense), against the dense "
        "file; XNNPACK, one thread, single sequence; medians over alternating rounds.",
        "",
    ]
    header = ["model", "tokens", "FFN zeros", "variant", "FFN weights in the file", "size",
              "latency ms", "vs dense", "commit", "machine"]
    body = [
        [f"{r['layers']}x{r['hidden']}/{r['intermediate']}", str(r["sequence_length"]),
         f"{r['target']:.0%}", r["variant"], r["ffn_runtime"], f"{r['size_bytes']:,} B",
         f"{r['latency_ms']:.2f}", f"{r['ratio']:.2f}x", r["commit"], r["machine"]]
        for r in rows
    ]
    return "\n".join(lines + [markdown_table(header, body), "", commands_line(rows)])


def main(argv):
    del argv
    import keras_str
    from keras_str.core.io_utils import write_text_atomic

    if FLAGS.tables_only:
        write_table(FLAGS.out_dir, RESULTS, table(rows_for_tables(FLAGS.out_dir, RESULTS)))
        return
    schedule = keras_str.ConstantSchedule()
    variants = {
        "dense": None,
        "1x4 block STR": keras_str.StructuredSTR(
            "block", block_size=4, target_sparsity=FLAGS.target, schedule=schedule
        ),
        "unstructured GMP": keras_str.GMP(FLAGS.target, schedule),
    }
    stamp = provenance("benchmarks.transformer_ffn_block")
    with tempfile.TemporaryDirectory() as directory:
        files = {}
        for name, method in variants.items():
            path = os.path.join(directory, f"{len(files)}.tflite")
            report = keras_str.export_tflite(
                pruned(method), path, sequence_length=FLAGS.sequence_length,
                sparse=method is not None,
            )
            ffn = sorted({
                statement.split(": ", 1)[-1]
                for layer, statement in report.layer_runtime.items()
                if layer.startswith("feedforward")
            })
            files[name] = (path, report.size_bytes, "; ".join(ffn) or "-")
            print(f"{name}: {report.size_bytes:,} bytes; FFN: {files[name][2]}", flush=True)
        times = litert_rounds(
            {name: path for name, (path, _, _) in files.items()}, FLAGS.rounds, FLAGS.runs
        )
        ratios = per_round_ratios(times, "dense")
    rows = []
    for name, (_, size, ffn) in files.items():
        rows.append({
            "variant": name, "layers": FLAGS.layers, "hidden": FLAGS.hidden,
            "intermediate": FLAGS.intermediate, "sequence_length": FLAGS.sequence_length,
            "target": FLAGS.target, "size_bytes": size, "ffn_runtime": ffn,
            "latency_ms": statistics.median(times[name]),
            "ratio": statistics.median(ratios[name]),
            "rounds": FLAGS.rounds, **stamp,
        })
    os.makedirs(FLAGS.out_dir, exist_ok=True)
    path = os.path.join(FLAGS.out_dir, f"{RESULTS}.jsonl")
    previous = read_rows(path)
    # A rerun of the same configuration replaces its rows.
    key = lambda r: (r["layers"], r["hidden"], r["intermediate"], r["sequence_length"],
                     r["target"], r["variant"])
    fresh = {key(r) for r in rows}
    rows = [r for r in previous if key(r) not in fresh] + rows
    write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in rows))
    write_table(FLAGS.out_dir, RESULTS, table(rows))


if __name__ == "__main__":
    app.run(main)
