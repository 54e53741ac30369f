"""keras-hub transformers to sparse LiteRT files: size, parity and input dtypes per model and precision.

    python -m benchmarks.keras_hub_export [--models gpt2_backbone,...]
        [--precisions float32,float16,int8] [--target 0.9] [--resume]

The zoo of `tests/test_keras_hub.py` (small random-weight keras-hub 0.32
models built offline: BERT, GPT-2, Gemma, Gemma 3, Llama 3, ViT, backbones
and task models): each is sparsified in place with GMP at `--target` on
every layer keras-str covers (one training call sets the masks), then
exported by `keras_str.export_tflite` at `--sequence_length` tokens (ViT at
its image size) in each precision (int8 calibrated on 32 token sequences or
images). Per row: sparse and plain file sizes, sparse tensors and DENSIFY
ops, what was stored dense and why, the file's input dtypes, and the max
|LiteRT - Keras| over every output of 4 examples, one at a time. TensorFlow
backend. Rows go to `benchmarks/results/keras_hub_export.jsonl` as they
finish, with command, commit and machine; `--resume` keeps the rows there
and runs only missing ones; the table (`.md`) is generated from the rows.
"""

import os
import sys
import tempfile
import time
import traceback
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["KERAS_BACKEND"] = "tensorflow"

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from benchmarks.harness import commands_line  # noqa: E402
from benchmarks.harness import keep_row  # noqa: E402
from benchmarks.harness import markdown_table  # noqa: E402
from benchmarks.harness import provenance  # noqa: E402
from benchmarks.harness import read_rows  # noqa: E402
from benchmarks.harness import rows_for_tables  # noqa: E402
from benchmarks.harness import write_table  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("models", None, "Zoo models (default: all).")
flags.DEFINE_list("precisions", ["float32", "float16", "int8"], "Export precisions.")
flags.DEFINE_float("target", 0.9, "GMP's share of zeros.")
flags.DEFINE_integer("sequence_length", 16, "Tokens per inference.")
flags.DEFINE_bool("resume", False, "Keep the rows already in the results file.")
flags.DEFINE_string("out_dir", "benchmarks/results", "Where rows and table go.")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = "keras_hub_export"


def sparse_model(name):
    import keras

    import keras_str
    from tests import test_keras_hub as zoo

    keras.utils.set_random_seed(0)
    model = zoo.zoo()[name]()
    method = keras_str.GMP(FLAGS.target, keras_str.ConstantSchedule())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        keras_str.sparsify(model, method=method, in_place=True)
        model(keras.tree.map_structure(lambda v: v[:1], inputs(model, 1)), training=True)
    return model


def inputs(model, n, seed=0):
    import numpy as np

    from tests import test_keras_hub as zoo

    x = zoo.zoo_inputs(model, n)
    if isinstance(x, dict):
        rng = np.random.default_rng(seed)
        x = dict(x)
        x["token_ids"] = rng.integers(0, zoo.VOCABULARY, x["token_ids"].shape).astype("int32")
    return x


def max_difference(path, model, x):
    """Max |LiteRT - Keras| over every output, one example at a time."""
    import keras
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=path).get_signature_runner()
    names = list(runner.get_input_details())
    expected = model(x)
    if not isinstance(expected, dict):
        expected = {"output_0": expected}
    worst = 0.0
    count = len(next(iter(x.values()))) if isinstance(x, dict) else len(x)
    for i in range(count):
        one = ({k: v[i:i + 1] for k, v in x.items()} if isinstance(x, dict)
               else {names[0]: x[i:i + 1]})
        outputs = runner(**one)
        for key, value in expected.items():
            reference = keras.ops.convert_to_numpy(value)[i:i + 1]
            worst = max(worst, float(np.max(np.abs(outputs[key] - reference))))
    return worst


def run_row(name, precision):
    import keras_str
    from ai_edge_litert.interpreter import Interpreter

    start = time.time()
    model = sparse_model(name)
    x = inputs(model, 4)
    token_model = isinstance(x, dict)
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "model.tflite")
        report = keras_str.export_tflite(
            model, path, precision=precision,
            sequence_length=FLAGS.sequence_length if token_model else None,
            representative_data=inputs(model, 32, seed=1) if precision == "int8" else None,
        )
        details = Interpreter(model_path=path).get_signature_runner().get_input_details()
        difference = max_difference(path, model, x)
    return {
        "model": name, "precision": precision, "size_bytes": report.size_bytes,
        "dense_size_bytes": report.dense_size_bytes,
        "sparse_tensors": len(report.sparse_tensors), "densify_ops": report.densify_ops,
        "stored_dense": report.stored_dense,
        "input_dtypes": {k: d["dtype"].__name__ for k, d in sorted(details.items())},
        "max_difference": difference, "seconds": time.time() - start,
    }


def table(rows):
    lines = [
        "keras-hub models (small, random weights) at 90 % zeros (GMP on every layer "
        "keras-str covers), exported by `keras_str.export_tflite`: the traced-call "
        "route (SavedModel), builtins only. `max |diff|`: LiteRT against Keras over "
        "every output of 4 examples.",
        "",
    ]
    header = ["model", "precision", "size / plain", "sparse tensors", "DENSIFY", "stored dense",
              "inputs", "max abs diff", "commit"]
    body = []
    for r in rows:
        if "error" in r:
            body.append([r["model"], r["precision"], f"error: {r['error']}"] + [""] * 5 + [r["commit"]])
            continue
        dense = "; ".join(f"{k}: {v}" for k, v in r["stored_dense"].items()) or "-"
        dtypes = ", ".join(f"{k} {v}" for k, v in r["input_dtypes"].items())
        body.append([
            r["model"], r["precision"],
            f"{r['size_bytes']:,} / {r['dense_size_bytes']:,} "
            f"({r['size_bytes'] / r['dense_size_bytes']:.2f}x)",
            str(r["sparse_tensors"]), str(r["densify_ops"]), dense, dtypes,
            f"{r['max_difference']:.1e}", r["commit"],
        ])
    machines = sorted({r["machine"] for r in rows})
    return "\n".join(lines + [markdown_table(header, body), "", "Machine: " + "; ".join(machines),
                              commands_line(rows)])


def main(argv):
    del argv
    sys.path.insert(0, ROOT)
    from tests import test_keras_hub as zoo

    if FLAGS.tables_only:
        write_table(FLAGS.out_dir, RESULTS, table(rows_for_tables(FLAGS.out_dir, RESULTS)))
        return
    names = FLAGS.models or sorted(zoo.zoo())
    os.makedirs(FLAGS.out_dir, exist_ok=True)
    path = os.path.join(FLAGS.out_dir, f"{RESULTS}.jsonl")
    rows = read_rows(path) if FLAGS.resume else []
    if not FLAGS.resume and os.path.exists(path):
        os.remove(path)
    done = {(r["model"], r["precision"]) for r in rows}
    stamp = provenance("benchmarks.keras_hub_export")
    for name in names:
        for precision in FLAGS.precisions:
            if (name, precision) in done:
                continue
            try:
                row = run_row(name, precision)
            except Exception as error:  # A row per failure, with its cause.
                traceback.print_exc()
                row = {"model": name, "precision": precision,
                       "error": f"{type(error).__name__}: {str(error)[:200]}"}
            row.update(stamp)
            keep_row(path, rows, row)
    write_table(FLAGS.out_dir, RESULTS, table(rows))


if __name__ == "__main__":
    app.run(main)
