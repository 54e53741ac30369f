"""Channel STR against uniform L1 filter pruning: accuracy vs real latency.

    python -m benchmarks.channel_pruning [--model small_cnn] [--str_targets 0.5,0.75]
        [--l1_targets 0.3,0.5] [--l1_channel_multiples 1,8]
        [--epochs 8] [--seeds 0] [--rounds 7] [--armsim] [--scratch]
        [--out benchmarks/results/channel_pruning_small_cnn.md] [--resume]

Trains the model on Fashion-MNIST (Debian's offline copy) dense, with
targeted channel STR (`keras_str.StructuredSTR("channel", scope=...,
budget="macs")`: filters and units thresholded by their RMS relative to
their initial scale (`--str_scope sigma`, the default) or the layer's current
kernel RMS (`layer`), and channels feeding a BatchNormalization by its
`gamma` (`keras_str.STRBatchNormalization`); a global target in multiply-adds) and with uniform L1-norm filter pruning
(`keras_str.GMP(..., structure="channel")`: every layer loses the same share
of its filters, smallest L1 norm first, gradually), pairs of targets chosen to
land near the same MACs, same recipe and seeds (`examples.training`); the
classifier stays dense. `keras_str.strip` then removes the dead channels
(`keras_str.shrink_channels`), so each model is a smaller *dense* model.
Each is exported as float32 `.tflite` and timed in LiteRT on this CPU (one
thread, batch 1), all files in turn for `--rounds` rounds; latency is the
median over rounds of each file's median, the ratio taken to the dense
file's time in the same round. With `--armsim`, also instructions per
inference on an emulated Cortex-A76 (`../shared/armsim`). Writes the table
(`--out`), each seed's results beside it as JSON (`--resume` picks up from
there) and plots of accuracy against the latency and instruction ratios
(`*_latency.png`, `*_arm.png`). With `--scratch`,
each pruned row is followed by its stripped architecture trained dense from
fresh weights with the same recipe (the baseline of Liu et al., 2019,
"Rethinking the value of network pruning"): what the widths alone give.
"""

import json
import os
import statistics
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from benchmarks.harness import litert_rounds  # noqa: E402
from benchmarks.harness import per_round_ratios  # noqa: E402
from benchmarks.harness import read_json  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "small_cnn", "Example model (a CNN).")
flags.DEFINE_list(
    "str_targets", ["0.5", "0.75"],
    "Channel STR targets: shares of the dense MACs to remove (budget='macs').")
flags.DEFINE_enum(
    "str_scope", "sigma", ["global", "sigma", "layer"],
    "StructuredSTR scope: what each filter's RMS is measured against.")
flags.DEFINE_list(
    "l1_targets", ["0.3", "0.5"],
    "Uniform L1 filter pruning: share of each layer's channels (0.3 keeps ~49 % of a "
    "conv's MACs, 0.5 ~25 %).")
flags.DEFINE_list(
    "l1_channel_multiples", ["1"],
    "L1 filter pruning rows for each of these: every layer keeps a multiple of "
    "this many channels (`GMP(channel_multiple=)`; 1: no rounding).")
flags.DEFINE_integer("epochs", 8, "Training epochs.")
flags.DEFINE_list("seeds", ["0"], "Seeds (accuracy: mean over seeds).")
flags.DEFINE_integer("rounds", 7, "Alternating latency rounds.")
flags.DEFINE_integer("runs", 200, "Timed invocations per file per round.")
flags.DEFINE_boolean("armsim", False, "Also count instructions on an emulated ARM core.")
flags.DEFINE_string("armsim_dir", None, "Folder of armsim (default ../shared/armsim).")
flags.DEFINE_boolean(
    "scratch", False,
    "After each pruned row, its stripped architecture trained from fresh weights.")
flags.DEFINE_string(
    "out", None,
    "Markdown output (default by model); each seed's results go beside it as JSON.")
flags.DEFINE_boolean(
    "resume", False,
    "Reuse the seeds found in the JSON beside --out (same settings only).")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def variants():
    """(row name, method, target, channel multiple), STR and L1 rows interleaved.

    With `--scratch`, each pruned row is followed by `(name + ", from
    scratch", "scratch", pruned row's name, 1)`.
    """
    for row in _pruning_variants():
        yield row
        if FLAGS.scratch and row[1] != "dense":
            yield f"{row[0]}, from scratch", "scratch", row[0], 1


def _pruning_variants():
    yield "dense", "dense", None, 1
    str_rows = [
        (f"channel_str@{float(t):.0%} MACs", "channel_str", float(t), 1) for t in FLAGS.str_targets
    ]
    l1_rows = [
        [
            (
                f"l1_filters@{float(t):.0%}" + (f", x{m}" if int(m) > 1 else ""),
                "gmp_channel", float(t), int(m),
            )
            for m in FLAGS.l1_channel_multiples
        ]
        for t in FLAGS.l1_targets
    ]
    for index in range(max(len(str_rows), len(l1_rows))):
        if index < len(str_rows):
            yield str_rows[index]
        if index < len(l1_rows):
            yield from l1_rows[index]


def train(method, target, multiple, seed, data, model=None):
    """One run; `model`: an architecture to train dense as it is (`method="dense"`)."""
    from examples.training import TrainConfig
    from examples.training import run_training

    config = TrainConfig(
        model=FLAGS.model,
        method=method,
        target_sparsity=target,
        epochs=FLAGS.epochs,
        keep_dense=() if method == "dense" else ("logits",),
        st3_scope=FLAGS.str_scope if method == "channel_str" else "global",
        budget="macs" if method == "channel_str" else "weights",
        channel_multiple=multiple,
        seed=seed,
    )
    return run_training(config, data, model=model)


def widths(model):
    import keras

    return [
        layer.filters if hasattr(layer, "filters") else layer.units
        for layer in model.layers
        if type(layer) in (keras.layers.Conv2D, keras.layers.Dense)
    ]


def run_settings():
    """What a stored seed's results depend on: `--resume` reuses them only when equal."""
    return {
        "model": FLAGS.model,
        "epochs": FLAGS.epochs,
        "str_targets": list(FLAGS.str_targets),
        "str_scope": FLAGS.str_scope,
        "l1_targets": list(FLAGS.l1_targets),
        "l1_channel_multiples": list(FLAGS.l1_channel_multiples),
        "scratch": FLAGS.scratch,
        "armsim": FLAGS.armsim,
        "rounds": FLAGS.rounds,
        "runs": FLAGS.runs,
    }


def load_finished_seeds(json_path):
    """`{seed: {row: result}}` from an earlier run with the same settings.

    Raises:
        ValueError: the file holds results of other settings.
    """
    if not os.path.exists(json_path):
        return {}
    stored = read_json(json_path)
    if stored["settings"] != run_settings():
        raise ValueError(
            f"{json_path} holds results of other settings; --resume would mix "
            "them. Use another --out, or leave out --resume to start again. "
            f"Received: {run_settings()}, stored: {stored['settings']}"
        )
    return stored["seeds"]


def run_seed(seed, data, workdir):
    """Trains, exports, times (and counts) every variant with one seed."""
    import keras

    import keras_str

    results = {}
    paths = {}
    stripped = {}
    for name, method, target, multiple in variants():
        if method == "scratch":
            # `target` names the pruned row; clone_model draws fresh weights.
            keras.utils.set_random_seed(seed)
            fresh = keras.models.clone_model(stripped[target])
            result = train("dense", None, 1, seed, data, model=fresh)
        else:
            result = train(method, target, multiple, seed, data)
        model = stripped[name] = result.stripped
        row = results[name] = {
            "accuracy": 100 * result.test_accuracy,
            "params": model.count_params(),
            "macs": result.report.totals["dense_macs"],
            "widths": widths(model),
            "latency": [],
            "ratio": [],
        }
        print(f"seed {seed} {name}: {row['accuracy']:.2f} %, "
              f"{row['params']} params, {row['macs'] / 1e6:.3f} MMACs, "
              f"widths {row['widths']}", flush=True)
        if method == "scratch":
            row["same_as"] = target  # the same architecture: timed there
            continue
        path = os.path.join(workdir, f"{len(paths)}_{seed}.tflite")
        try:
            keras_str.export_tflite(model, path)
        except (RuntimeError, ValueError) as error:
            # A model that cannot be exported (e.g. NaN outputs) is a
            # result: its row says why, the others are still timed.
            row["failed"] = str(error).split(";")[0]
            print(f"seed {seed} {name}: export failed: {row['failed']}", flush=True)
            continue
        paths[name] = path
    times = litert_rounds(paths, FLAGS.rounds, FLAGS.runs)
    ratios = per_round_ratios(times, "dense")
    for name in paths:
        results[name]["latency"] += times[name]
        results[name]["ratio"] += ratios[name]
    if FLAGS.armsim:
        from benchmarks.armsim import armsim_instructions

        counts = armsim_instructions(list(paths.values()), armsim_directory())
        for name, path in paths.items():
            count = counts.get(os.path.basename(path))
            results[name]["insns"] = count if isinstance(count, int) else None
    return results


def armsim_directory():
    return FLAGS.armsim_dir or os.path.join(ROOT, "..", "shared", "armsim")


def table(seeds):
    """The markdown table: accuracy averaged over seeds, ratios the median over rounds and seeds."""
    import numpy as np

    names = [name for name, _, _, _ in variants()]
    dense_accuracy = np.mean([seeds[s]["dense"]["accuracy"] for s in seeds])
    lines = [
        f"| variant | test accuracy % (mean of {len(seeds)}) | per seed | vs dense | "
        "params | MMACs / example | conv/dense widths | LiteRT x86 ms (median) | "
        "latency / dense | ARM A76 instructions / dense |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        runs = [seeds[s][name] for s in seeds]
        last = runs[-1]
        accuracy = np.mean([run["accuracy"] for run in runs])
        insn_ratios = [
            run["insns"] / seeds[s]["dense"]["insns"]
            for s, run in zip(seeds, runs)
            if run.get("insns") and seeds[s]["dense"].get("insns")
        ]
        insn_ratio = f"{statistics.median(insn_ratios):.3f}" if insn_ratios else "not run"
        latencies = [value for run in runs for value in run["latency"]]
        ratios = [value for run in runs for value in run["ratio"]]
        if "same_as" in last:
            latency, insn_ratio = "as its pruned row | -", "-"
        elif latencies:
            latency = f"{statistics.median(latencies):.4f} | {statistics.median(ratios):.3f}"
        else:
            latency = f"export failed: {last.get('failed')} | -"
        per_seed = " / ".join(f"{run['accuracy']:.2f}" for run in runs)
        lines.append(
            f"| {name} | {accuracy:.2f} | {per_seed} | {accuracy - dense_accuracy:+.2f} | "
            f"{last['params']:,} | {last['macs'] / 1e6:.3f} | {last['widths']} | "
            f"{latency} | {insn_ratio} |"
        )
    header = (
        f"# Channel STR vs uniform L1 filter pruning (`benchmarks/channel_pruning.py`)\n\n"
        f"{FLAGS.model} on Fashion-MNIST, {FLAGS.epochs} epochs, seeds {list(seeds)}; "
        "L1 rows marked xN keep multiples of N channels per layer; "
        f"channel STR (scope={FLAGS.str_scope!r}) targets are shares of the dense MACs "
        "removed, L1 targets shares of each layer's channels, the same channels "
        "in layers strip removes together (a conv and the depthwise conv it feeds; "
        "the classifier stays dense); "
        "`strip` removed the dead channels, so every file is a smaller dense "
        f"model. LiteRT float32, one thread, batch 1, {FLAGS.rounds} alternating "
        f"rounds of {FLAGS.runs} runs per seed (ratios per round, then the median "
        "over rounds and seeds); params, MMACs and widths of the last seed"
        + ("; rows 'from scratch': the pruned row's stripped architecture "
           "trained dense from fresh weights, same recipe" if FLAGS.scratch else "")
        + ".\n\n"
    )
    return header + "\n".join(lines) + "\n"


def row_family(name):
    """The line a row belongs to in the plots: its method, multiple and origin."""
    family = name.split("@")[0]
    if ", x" in name:
        family += " x" + name.split(", x")[1].split(",")[0]
    if name.endswith("from scratch"):
        family += ", from scratch"
    return family


def plot(seeds, out):
    """Accuracy vs x86 latency (and ARM instructions) relative to dense, PNGs beside `out`."""
    import numpy as np

    from keras_str.analysis.plots import plot_tradeoff

    names = [name for name, _, _, _ in variants()]
    accuracy = {n: np.mean([seeds[s][n]["accuracy"] for s in seeds]) for n in names}
    source = {n: seeds[next(iter(seeds))][n].get("same_as", n) for n in names}
    ratios = {
        n: [r for s in seeds for r in seeds[s][source[n]]["ratio"]] for n in names
    }
    insns = {
        n: [seeds[s][source[n]]["insns"] / seeds[s]["dense"]["insns"] for s in seeds
            if seeds[s][source[n]].get("insns") and seeds[s]["dense"].get("insns")]
        for n in names
    }
    reference = {"dense - 1 point": accuracy["dense"] - 1.0}
    axes = [("latency", ratios, "LiteRT x86 latency / dense")]
    if all(insns[n] for n in names):
        axes.append(("arm", insns, "ARM A76 instructions / dense"))
    paths = []
    for suffix, values, label in axes:
        rows = [
            {"method": row_family(n), "x": statistics.median(values[n]), "accuracy": accuracy[n]}
            for n in names if n != "dense" and values[n]
        ] + [{"method": "dense", "x": 1.0, "accuracy": accuracy["dense"]}]
        path = f"{os.path.splitext(out)[0]}_{suffix}.png"
        plot_tradeoff(
            rows, path, "x", x_label=label,
            title=f"{FLAGS.model}, {FLAGS.epochs} epochs, {len(seeds)} seed(s)",
            reference_lines=reference,
        )
        paths.append(path)
    return paths


def main(argv):
    del argv
    bad = [m for m in FLAGS.l1_channel_multiples if not m.isdigit() or int(m) < 1]
    if bad:
        raise ValueError(
            "Expected positive integers in --l1_channel_multiples. "
            f"Received: l1_channel_multiples={FLAGS.l1_channel_multiples}"
        )
    if FLAGS.armsim:
        from benchmarks.armsim import check_armsim

        check_armsim(armsim_directory())
    from examples.data import load_image_classification
    from examples.data import normalize_images
    from keras_str.core.io_utils import write_text_atomic

    out = FLAGS.out or f"benchmarks/results/channel_pruning_{FLAGS.model}.md"
    json_path = os.path.splitext(out)[0] + ".json"
    finished = load_finished_seeds(json_path) if FLAGS.resume else {}
    (x_train, y_train), (x_test, y_test) = load_image_classification("fashion_mnist")
    data = ((normalize_images(x_train), y_train), (normalize_images(x_test), y_test))
    seeds = {}
    with tempfile.TemporaryDirectory() as workdir:
        for seed in FLAGS.seeds:
            seeds[seed] = finished.get(seed) or run_seed(int(seed), data, workdir)
            # After every seed, so that an interrupted sweep resumes there.
            write_text_atomic(
                json_path,
                json.dumps({"settings": run_settings(), "seeds": {**finished, **seeds}},
                           indent=1) + "\n",
            )
    markdown = table(seeds)
    write_text_atomic(out, markdown)
    print(markdown)
    if any(seeds[s][n].get("ratio") for s in seeds for n in seeds[s] if n != "dense"):
        print("plots:", ", ".join(plot(seeds, out)))


if __name__ == "__main__":
    app.run(main)
