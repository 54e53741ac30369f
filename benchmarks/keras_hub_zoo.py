"""keras-hub transformers through sparsify, training, strip and reload: one row per model and method.

    KERAS_BACKEND=torch python -m benchmarks.keras_hub_zoo [--models gpt2_causal_lm,...]
        [--methods st3,st3_sigma,gmp,str_target,str] [--steps 16] [--resume]
        [--out benchmarks/results/keras_hub_zoo]

Small random-weight keras-hub 0.32 models built offline (the zoo of
`tests/test_keras_hub.py`: BERT, GPT-2, Gemma, Gemma 3, Llama 3, ViT;
backbones and task models). Each row: `sparsify(in_place=True)` with the
method (targets 90 % over `--steps` steps, cubic schedule ending 4 steps
before; plain STR with `threshold_init=-6`, weight decay 5e-3), `--steps`
Adam steps on random data, then
- the share of the model's deployed parameters (not the methods' state)
  in sparse kernels,
- the reached sparsity over those kernels and its per-layer min / max,
- strip parity (max |stripped - sparse|) and save + `keras_str.load_model`
  parity (max |reloaded - sparse|, same process).
Rows go to `<out>_<backend>.jsonl` as they finish, each with its command,
commit and machine (`--resume` skips the rows there; otherwise the rows asked
for are measured again and the others kept); `<out>_<backend>.md` is
generated from it.
"""

import json
import os
import tempfile
import time
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from benchmarks.harness import append_row  # noqa: E402
from benchmarks.harness import markdown_table  # noqa: E402
from benchmarks.harness import provenance  # noqa: E402
from benchmarks.harness import read_rows  # noqa: E402

METHODS = ("st3", "st3_sigma", "gmp", "str_target", "str")

FLAGS = flags.FLAGS
flags.DEFINE_list("models", None, "Models to run (default: all of the zoo).")
flags.DEFINE_list("methods", list(METHODS), f"Methods, of {METHODS}.")
flags.DEFINE_integer("steps", 16, "Training steps.")
flags.DEFINE_bool("resume", False, "Skip rows already in the results file.")
flags.DEFINE_string("out", "benchmarks/results/keras_hub_zoo", "Output prefix.")

TARGET = 0.9
BATCH = 8


def method_for(name, steps):
    import keras_str

    schedule = keras_str.PolynomialSchedule(0, steps - 4)
    if name == "st3":
        return keras_str.ST3(TARGET, schedule), None
    if name == "st3_sigma":
        return keras_str.ST3(TARGET, schedule, scope="sigma"), None
    if name == "gmp":
        return keras_str.GMP(TARGET, schedule), None
    if name == "str_target":
        return keras_str.STR(TARGET, schedule, threshold_init=-5.0), None
    if name == "str":
        return keras_str.STR(threshold_init=-6.0), 5e-3
    raise ValueError(f"Unknown method {name!r}; known: {METHODS}")


def run_row(model_name, method_name, steps, workdir):
    import keras
    import numpy as np

    import keras_str
    from keras_str.core.host import to_numpy
    from tests import test_keras_hub as zoo

    keras.utils.set_random_seed(0)
    model = zoo.zoo()[model_name]()
    method, weight_decay = method_for(method_name, steps)
    start = time.time()
    keras_str.sparsify(model, method=method, weight_decay=weight_decay, in_place=True)
    layers = zoo.sparse_layers(model)
    # Over the deployed parameters: not the methods' state (GMP's masks).
    deployed = keras_str.sparsity_report(model).totals["all_params"]
    share = sum(int(np.prod(l.raw_kernel.shape)) for l in layers) / deployed
    x = zoo.zoo_inputs(model, BATCH * steps)
    y, loss = zoo.zoo_targets(model, x, BATCH * steps)
    model.compile(keras.optimizers.Adam(1e-3), loss)
    model.fit(x, y, batch_size=BATCH, verbose=0)
    fractions = [float(np.mean(to_numpy(l.thresholded_kernel()) == 0)) for l in layers]
    sizes = [int(np.prod(l.raw_kernel.shape)) for l in layers]

    def max_diff(a, b):
        diffs = keras.tree.map_structure(
            lambda u, v: float(np.max(np.abs(to_numpy(u) - to_numpy(v)))), a, b
        )
        return max(keras.tree.flatten(diffs))

    sample = keras.tree.map_structure(lambda v: v[:2], x)
    sparse_out = model(sample)
    path = os.path.join(workdir, f"{model_name}_{method_name}.keras")
    model.save(path)
    reload_diff = max_diff(keras_str.load_model(path)(sample), sparse_out)
    plain = keras_str.strip(model, in_place=True)
    strip_diff = max_diff(plain(sample), sparse_out)
    return {
        "model": model_name,
        "method": method_name,
        "sparse_share": share,
        "sparsity": float(np.average(fractions, weights=sizes)),
        "layer_min": min(fractions),
        "layer_max": max(fractions),
        "strip_diff": strip_diff,
        "reload_diff": reload_diff,
        "seconds": time.time() - start,
    }


def table(rows):
    header = ["model", "method", "sparse share", "sparsity", "per-layer min / max",
              "strip diff", "reload diff", "s", "commit"]
    body = []
    for row in rows:
        if "error" in row:
            body.append([row["model"], row["method"], row["error"]] + [""] * 6)
            continue
        body.append([
            row["model"], row["method"], f"{row['sparse_share']:.1%}", f"{row['sparsity']:.1%}",
            f"{row['layer_min']:.1%} / {row['layer_max']:.1%}", f"{row['strip_diff']:.1e}",
            f"{row['reload_diff']:.1e}", f"{row['seconds']:.1f}", row["commit"],
        ])
    return markdown_table(header, body)


def write_tables(out, backend, known):
    """`<out>_<backend>.md` from the rows of `<out>_<backend>.jsonl`: the header from its last row."""
    from keras_str.core.io_utils import write_text_atomic

    jsonl = f"{out}_{backend}.jsonl"
    rows = read_rows(jsonl)
    if not rows:
        return
    latest = rows[-1]
    header = (
        f"# keras-hub zoo, {backend} backend (`benchmarks/keras_hub_zoo.py`)\n\n"
        f"Generated from `{os.path.basename(jsonl)}` (each row keeps its command, commit and machine). Last command: `{latest['command']}` "
        f"(KERAS_BACKEND={backend}); machine: {latest['machine']}. Targets {TARGET:.0%} "
        f"over {latest.get('steps', 16)} steps (plain STR: weight decay only). `sparse share`: "
        "parameters in sparse kernels over all parameters; `sparsity` over those "
        "kernels; diffs are max |x - sparse model|.\n\n"
    )
    order = {(m, method): i for i, (m, method) in enumerate(
        (m, method) for m in known for method in METHODS)}
    rows.sort(key=lambda r: order.get((r["model"], r["method"]), len(order)))
    write_text_atomic(f"{out}_{backend}.md", header + table(rows) + "\n")


def main(argv):
    del argv
    import keras

    from keras_str.core.io_utils import write_text_atomic
    from tests import test_keras_hub as zoo

    known = zoo.zoo()
    if FLAGS.tables_only:
        for backend in ("tensorflow", "jax", "torch"):
            write_tables(FLAGS.out, backend, known)
        return
    models = FLAGS.models or list(known)
    unknown = sorted(set(models) - set(known)) + sorted(set(FLAGS.methods) - set(METHODS))
    if unknown:
        raise ValueError(f"Unknown --models / --methods {unknown}; known: "
                         f"{sorted(known)}, {METHODS}")
    backend = keras.backend.backend()
    jsonl = f"{FLAGS.out}_{backend}.jsonl"
    # Before this run touches the results file (it would read as uncommitted).
    meta = provenance("benchmarks.keras_hub_zoo")
    asked = {(m, method) for m in models for method in FLAGS.methods}
    rows = read_rows(jsonl)
    if not FLAGS.resume:
        # Measured again: the rows asked for; the others are kept.
        rows = [r for r in rows if (r["model"], r["method"]) not in asked]
        write_text_atomic(jsonl, "".join(json.dumps(r) + "\n" for r in rows))
    done = {(r["model"], r["method"]) for r in rows}
    with tempfile.TemporaryDirectory() as workdir:
        for model_name in models:
            for method_name in FLAGS.methods:
                if (model_name, method_name) in done:
                    continue
                try:
                    row = run_row(model_name, method_name, FLAGS.steps, workdir)
                except Exception as error:  # noqa: BLE001 - the table reports it
                    traceback.print_exc()
                    row = {"model": model_name, "method": method_name,
                           "error": f"{type(error).__name__}: {str(error)[:100]}"}
                row.update(meta, steps=FLAGS.steps)
                rows.append(row)
                append_row(jsonl, row)
                print(table([row]).splitlines()[-1], flush=True)
    write_tables(FLAGS.out, backend, known)


if __name__ == "__main__":
    app.run(main)
