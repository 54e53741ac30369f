"""Accuracy vs sparsity and vs sparse MFLOPs: dense, STR, ST-3, GMP and tfmot GMP.

    python -m benchmarks.accuracy_vs_sparsity            # default sweep, ~1 h on 2 cores
    python -m benchmarks.accuracy_vs_sparsity --seeds 0,1,2 --lenet_epochs 30

Trains every method at every target sparsity on Fashion-MNIST with the same
epochs, optimizer, learning-rate schedule, weight decay and seeds, and writes
`accuracy_vs_sparsity.{json,md}` and one accuracy-vs-sparsity and one
accuracy-vs-MFLOPs plot per model to `--out_dir`. Finished runs are kept in
the JSON as they complete; `--resume` skips them.

Rows:
- `dense`: the model without sparsity.
- `str_plain`: the STR paper's recipe (coupled decay lambda on W and s, no
  target); lambda per target comes from `PLAIN_STR_LAMBDA`, so the reached
  sparsity is whatever that lambda gives.
- `str`: STR whose thresholds follow a cubic schedule to the target.
- `st3`: ST-3, one global threshold, straight-through gradients.
- `gmp`: keras-str's gradual magnitude pruning, uniform per layer.
- `gmp_tfmot`: tfmot's `prune_low_magnitude` + `PolynomialDecay` on tf_keras.
- `str_budget_gmp`: GMP with the per-layer budget learned by the `str` run
  at the same target and seed (budget transfer).
- `st3_sigma_rescale`: ST-3 with the sigma-normalized global threshold and
  per-channel rescaling (the recipe docs/guide/methods.md recommends).
- `gmp_tfmot_nowd`: tfmot's GMP without weight decay (how tfmot is commonly
  run; not part of the default sweep).
- `st3_rescale`: ST-3's one global magnitude threshold with per-channel
  rescaling (the paper's more accurate variant; not part of the default sweep).
- `st3_sigma_rescale_macs`, `st3_rescale_macs`, `str_macs`: the same methods
  with a MACs budget (`budget="macs"`): the target is the share of the dense
  multiply-adds removed, not of the weights (not part of the default sweep).
"""

import json
import math
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

from benchmarks.harness import read_json  # noqa: E402
from examples.data import load_image_classification  # noqa: E402
from examples.data import normalize_images  # noqa: E402
from examples.training import TrainConfig  # noqa: E402
from examples.training import run_training  # noqa: E402
from keras_str.analysis.plots import plot_tradeoff  # noqa: E402
from keras_str.core.io_utils import write_text_atomic  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["lenet_300_100", "small_cnn"], "Models to sweep.")
flags.DEFINE_list(
    "methods",
    ["dense", "str_plain", "str", "st3", "st3_sigma_rescale", "gmp", "gmp_tfmot",
     "str_budget_gmp"],
    "Rows of the table.",
)
flags.DEFINE_list("sparsities", ["0.9", "0.95", "0.98", "0.99"], "Target sparsities.")
flags.DEFINE_list("seeds", ["0"], "Random seeds; results are averaged.")
flags.DEFINE_integer("lenet_epochs", 10, "Epochs for lenet_300_100.")
flags.DEFINE_integer("cnn_epochs", 5, "Epochs for small_cnn.")
flags.DEFINE_float("lr", 0.1, "Peak learning rate.")
flags.DEFINE_float("weight_decay", 5e-4, "Weight decay for every method but str_plain.")
flags.DEFINE_string("recommended", "st3_sigma_rescale", "The row the docs recommend.")
flags.DEFINE_string("out_dir", "benchmarks/results", "Where results are written.")
flags.DEFINE_boolean("resume", False, "Keep finished runs found in the JSON.")
flags.DEFINE_boolean(
    "report_only", False,
    "Train nothing: rewrite the table and plots from the runs in the JSON.",
)

# Plain STR reaches a sparsity through lambda only. These values were read
# off LeNet-300-100 runs (8 epochs: 3e-3 -> 88 %, 1e-2 -> 99.2 %),
# interpolating log(density) linearly in log(lambda).
PLAIN_STR_LAMBDA = {0.9: 3.3e-3, 0.95: 4.4e-3, 0.98: 6.6e-3, 0.99: 9.1e-3}

SPARSE_METHODS = ("str_plain", "str", "st3", "st3_sigma_rescale", "gmp", "gmp_tfmot",
                  "gmp_tfmot_nowd", "str_budget_gmp", "st3_sigma_rescale_macs", "str_macs",
                  "st3_rescale", "st3_rescale_macs")


def run_key(model, method, target, seed):
    return f"{model}/{method}/{target}/{seed}"


def make_config(model, method, target, seed, epochs, budget=None):
    common = dict(model=model, epochs=epochs, lr=FLAGS.lr, seed=seed,
                  weight_decay=FLAGS.weight_decay)
    if method == "dense":
        return TrainConfig(method="dense", **common)
    if method == "str_plain":
        common["weight_decay"] = PLAIN_STR_LAMBDA[target]
        return TrainConfig(method="str", **common)
    if method == "str_budget_gmp":
        return TrainConfig(method="gmp", target_sparsity=target,
                           layer_targets=budget, **common)
    if method == "st3_sigma_rescale":
        return TrainConfig(method="st3", target_sparsity=target, st3_scope="sigma",
                           st3_rescale=True, **common)
    if method == "st3_rescale":
        return TrainConfig(method="st3", target_sparsity=target, st3_rescale=True,
                           **common)
    if method == "st3_rescale_macs":
        return TrainConfig(method="st3", target_sparsity=target, st3_rescale=True,
                           budget="macs", **common)
    if method == "st3_sigma_rescale_macs":
        return TrainConfig(method="st3", target_sparsity=target, st3_scope="sigma",
                           st3_rescale=True, budget="macs", **common)
    if method == "str_macs":
        return TrainConfig(method="str", target_sparsity=target, budget="macs", **common)
    if method == "gmp_tfmot_nowd":
        common["weight_decay"] = 0.0
        return TrainConfig(method="gmp_tfmot", target_sparsity=target, **common)
    return TrainConfig(method=method, target_sparsity=target, **common)


def stored_budgets(runs):
    """{model: (epochs, lr)} of stored runs; raises if one model mixes budgets."""
    budgets = {}
    for key, run in runs.items():
        budget = (run["epochs"], run["lr"])
        if budgets.setdefault(run["model"], budget) != budget:
            raise app.UsageError(
                f"The stored runs of {run['model']} mix budgets: {key} has "
                f"epochs={run['epochs']}, lr={run['lr']}, others "
                f"epochs={budgets[run['model']][0]}, lr={budgets[run['model']][1]}."
            )
    return budgets


def check_resumable(runs, epochs, lr, out_dir):
    """Refuses to resume runs trained with another budget than the flags'."""
    for model, (stored, stored_lr) in stored_budgets(runs).items():
        if model in epochs and (stored, stored_lr) != (epochs[model], lr):
            raise app.UsageError(
                f"{out_dir} holds {model} runs with epochs={stored}, lr={stored_lr}; "
                f"the flags ask for epochs={epochs[model]}, lr={lr}. Pass the "
                "same budget, or another --out_dir for a new one."
            )


def aggregate(runs):
    """Mean and std over seeds, per (model, method, target)."""
    groups = {}
    for run in runs.values():
        key = (run["model"], run["label"], run["target"])
        groups.setdefault(key, []).append(run)
    rows = []
    for (model, label, target), members in sorted(groups.items(), key=str):
        accuracy = [100 * m["test_accuracy"] for m in members]
        rows.append(
            {
                "model": model,
                "method": label,
                "target": target,
                "seeds": len(members),
                "accuracy": float(np.mean(accuracy)),
                "accuracy_std": float(np.std(accuracy)),
                "sparsity": 100 * float(np.mean([m["sparsity"] for m in members])),
                "sparse_mflops": float(np.mean([m["sparse_mflops"] for m in members])),
                "dense_mflops": members[0]["dense_mflops"],
                "train_seconds": float(np.mean([m["train_seconds"] for m in members])),
            }
        )
    return rows


def mflops_at_accuracy(curve, accuracy):
    """Fewest MFLOPs where a measured (MFLOPs, accuracy) curve reaches `accuracy`.

    Between neighbouring points the curve is linear in log MFLOPs; returns
    `None` when no point reaches `accuracy`.
    """
    best = None
    for i, (mflops, value) in enumerate(curve):
        if value >= accuracy:
            best = mflops if best is None else min(best, mflops)
            if i > 0 and curve[i - 1][1] < accuracy:
                low_m, low_a = curve[i - 1]
                fraction = (accuracy - low_a) / (value - low_a)
                crossing = math.exp(
                    math.log(low_m) + fraction * (math.log(mflops) - math.log(low_m))
                )
                best = min(best, crossing)
    return best


def accuracy_at_mflops(curve, mflops):
    """Accuracy of a measured (MFLOPs, accuracy) curve at `mflops`.

    Linear in log MFLOPs between the neighbouring points, as
    `mflops_at_accuracy`; `None` outside the measured range.
    """
    curve = sorted(curve)
    for (low_m, low_a), (high_m, high_a) in zip(curve, curve[1:]):
        if low_m <= mflops <= high_m:
            if high_m == low_m:
                return max(low_a, high_a)
            fraction = (math.log(mflops) - math.log(low_m)) / (
                math.log(high_m) - math.log(low_m))
            return low_a + fraction * (high_a - low_a)
    if len(curve) == 1 and math.isclose(curve[0][0], mflops, rel_tol=0.02):
        return curve[0][1]
    return None


def macs_budget_table(rows, methods):
    """Every method's accuracy at the MACs shares that `*_macs` methods asked for.

    A `*_macs` method's cell is its measured point at that share (mean over
    its n seeds); another method's is its curve interpolated at the same
    MFLOPs (in brackets), or "-" where its points do not reach. The best
    cell of each share is bold.
    """
    lines = []
    for model in sorted({r["model"] for r in rows}):
        members = [r for r in rows if r["model"] == model]
        shares = sorted({1 - r["target"] for r in members
                         if r["method"].endswith("_macs") and r["target"]}, reverse=True)
        present = [m for m in methods if m != "dense"
                   and any(r["method"] == m for r in members)]
        if not shares or not present:
            continue
        dense_mflops = members[0]["dense_mflops"]
        lines += [
            f"## {model}: accuracy at a share of the dense MACs",
            "",
            "Measured for `*_macs` methods (their target is that share removed; "
            "n seeds, reached sparsity); other methods interpolated in log MFLOPs "
            "between their measured points [in brackets], '-' outside them.",
            "",
            "| share of dense MACs | " + " | ".join(present) + " |",
            "|---|" + "---|" * len(present),
        ]
        for share in shares:
            values = {}
            for method in present:
                points = [r for r in members if r["method"] == method]
                if method.endswith("_macs"):
                    match = [r for r in points if math.isclose(1 - r["target"], share)]
                    if match:
                        r = match[0]
                        values[method] = (r["accuracy"], f"{r['accuracy']:.2f} "
                                          f"(n={r['seeds']}, {r['sparsity']:.1f} %)")
                    continue
                value = accuracy_at_mflops(
                    [(r["sparse_mflops"], r["accuracy"]) for r in points],
                    share * dense_mflops)
                if value is not None:
                    n = "/".join(str(k) for k in sorted({r["seeds"] for r in points}))
                    values[method] = (value, f"[{value:.2f}] (n={n})")
            best = max((v for v, _ in values.values()), default=None)
            cells = [
                ("**" + values[m][1] + "**" if values[m][0] == best else values[m][1])
                if m in values else "-"
                for m in present
            ]
            lines.append(f"| {100 * share:g} % | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def comparisons(rows, recommended):
    """The issue's targets, checked per model: one line each."""
    lines = []
    for model in sorted({r["model"] for r in rows}):
        by = {(r["method"], r["target"]): r for r in rows if r["model"] == model}
        dense = by.get(("dense", None))
        targets = sorted({r["target"] for r in rows if r["target"] is not None})
        lines.append(f"**{model}** (recommended: `{recommended}`)")
        for target in targets:
            rec = by.get((recommended, target))
            tfmot = by.get(("gmp_tfmot", target))
            if rec is None:
                continue
            parts = [f"- {100 * target:g} %: {recommended} {rec['accuracy']:.2f}"]
            if tfmot:
                parts.append(
                    f"vs tfmot GMP {tfmot['accuracy']:.2f} "
                    f"({rec['accuracy'] - tfmot['accuracy']:+.2f})"
                )
            if dense:
                parts.append(f"vs dense {dense['accuracy']:.2f} "
                             f"({rec['accuracy'] - dense['accuracy']:+.2f})")
            lines.append(", ".join(parts))
        # Fewer MFLOPs at equal accuracy: for each uniform-GMP point, the
        # fewest MFLOPs at which the recommended curve (measured points,
        # linear in log MFLOPs between them) is at least as accurate.
        curve = sorted(
            (r["sparse_mflops"], r["accuracy"])
            for (label, _), r in by.items() if label == recommended
        )
        for baseline in ("gmp_tfmot", "gmp"):
            for target in targets:
                gmp = by.get((baseline, target))
                if gmp is None:
                    continue
                needed = mflops_at_accuracy(curve, gmp["accuracy"])
                where = (f"- at uniform {baseline}'s {gmp['accuracy']:.2f} % "
                         f"({100 * target:g} %, {gmp['sparse_mflops']:.4f} MFLOPs): ")
                if needed is None:
                    lines.append(where + f"no {recommended} point is as accurate")
                elif needed == curve[0][0] and curve[0][1] > gmp["accuracy"]:
                    # Even the sparsest measured point is more accurate: the
                    # crossing lies beyond the sweep, so this is a bound.
                    lines.append(
                        where + f"{recommended}'s sparsest point is already "
                        f"more accurate ({curve[0][1]:.2f} %) at {needed:.4f} "
                        f"MFLOPs ({needed / gmp['sparse_mflops']:.2f}x; not measured lower)"
                    )
                else:
                    lines.append(
                        where + f"{recommended} needs {needed:.4f} MFLOPs "
                        f"({needed / gmp['sparse_mflops']:.2f}x)"
                    )
        lines.append("")
    return lines


def markdown(rows, meta):
    lines = [
        "# Accuracy vs sparsity on Fashion-MNIST",
        "",
        f"Command: `{meta['command']}`",
        "",
        f"Seeds: {meta['seeds']}; epochs: {meta['epochs']}; SGD + Nesterov "
        f"momentum 0.9, peak lr {meta['lr']}, cosine to 0; weight decay "
        f"{meta['weight_decay']} (str_plain: its own lambda); sparsity "
        "schedules ramp over the first 75 % of training (cubic), the rest "
        "fine-tunes. Cells: test accuracy % (mean ± std over the n seeds) / "
        "reached sparsity % / sparse MFLOPs (multiply-adds of nonzero weights, "
        "per example).",
        "",
    ]
    for model in sorted({r["model"] for r in rows}):
        members = [r for r in rows if r["model"] == model]
        targets = sorted({r["target"] for r in members if r["target"] is not None})
        lines.append(f"## {model}")
        lines.append("")
        lines.append("| method | " + " | ".join(f"{100 * t:g} %" for t in targets) + " |")
        lines.append("|---|" + "---|" * len(targets))
        dense = [r for r in members if r["method"] == "dense"]
        if dense:
            d = dense[0]
            lines.append(
                f"| dense (n={d['seeds']}) | {d['accuracy']:.2f} ± {d['accuracy_std']:.2f} / 0 % / "
                f"{d['sparse_mflops']:.3f} (all targets) |" + " |" * (len(targets) - 1)
            )
        for method in meta["methods"]:
            if method == "dense":
                continue
            cells = []
            for target in targets:
                match = [r for r in members if r["method"] == method and r["target"] == target]
                if match:
                    r = match[0]
                    cells.append(
                        f"{r['accuracy']:.2f} ± {r['accuracy_std']:.2f} / "
                        f"{r['sparsity']:.1f} % / {r['sparse_mflops']:.4f}"
                    )
                else:
                    cells.append("-")
            if any(c != "-" for c in cells):
                seeds = sorted({r["seeds"] for r in members if r["method"] == method})
                label = f"{method} (n={'/'.join(map(str, seeds))})"
                lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
        lines.append(f"![accuracy vs sparsity]({model}_accuracy_vs_sparsity.png)")
        lines.append(f"![accuracy vs MFLOPs]({model}_accuracy_vs_mflops.png)")
        lines.append("")
    lines.extend(macs_budget_table(rows, meta["methods"]))
    lines.append("## Against the targets")
    lines.append("")
    lines.extend(comparisons(rows, meta["recommended"]))
    return "\n".join(lines) + "\n"


def write_outputs(runs, meta):
    rows = aggregate(runs)
    base = os.path.join(FLAGS.out_dir, "accuracy_vs_sparsity")
    write_text_atomic(
        base + ".json",
        json.dumps({"meta": meta, "runs": runs, "rows": rows}, indent=1) + "\n",
    )
    write_text_atomic(base + ".md", markdown(rows, meta))
    for model in sorted({r["model"] for r in rows}):
        members = [r for r in rows if r["model"] == model and r["target"] is not None]
        dense = [r for r in rows if r["model"] == model and r["target"] is None]
        if not members:
            continue
        reference = {"dense": dense[0]["accuracy"]} if dense else None
        plot_tradeoff(members, os.path.join(FLAGS.out_dir, f"{model}_accuracy_vs_sparsity.png"),
                      x_key="sparsity", x_label="reached sparsity (%)",
                      title=f"{model}, Fashion-MNIST", reference_lines=reference)
        plot_tradeoff(members,
                      os.path.join(FLAGS.out_dir, f"{model}_accuracy_vs_mflops.png"),
                      x_key="sparse_mflops", x_label="sparse MFLOPs (log)",
                      log_x=True, title=f"{model}, Fashion-MNIST",
                      reference_lines=reference)
    return rows


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    targets = [float(s) for s in FLAGS.sparsities]
    unknown = sorted(set(targets) - set(PLAIN_STR_LAMBDA))
    if "str_plain" in FLAGS.methods and unknown:
        raise app.UsageError(f"No plain-STR lambda for sparsities {unknown}.")
    seeds = [int(s) for s in FLAGS.seeds]
    os.makedirs(FLAGS.out_dir, exist_ok=True)
    json_path = os.path.join(FLAGS.out_dir, "accuracy_vs_sparsity.json")
    runs = {}
    if (FLAGS.resume or FLAGS.report_only) and os.path.exists(json_path):
        runs = read_json(json_path)["runs"]
    epochs = {"lenet_300_100": FLAGS.lenet_epochs, "small_cnn": FLAGS.cnn_epochs}
    meta = {
        "command": "python -m benchmarks.accuracy_vs_sparsity "
        + " ".join(f"--{k}={getattr(FLAGS, k)}" for k in
                   ("models", "methods", "sparsities", "seeds", "lenet_epochs",
                    "cnn_epochs")).replace("[", "").replace("]", "").replace("'", "").replace(", ", ","),
        "seeds": seeds,
        "epochs": {m: epochs.get(m) for m in FLAGS.models},
        "lr": FLAGS.lr,
        "weight_decay": FLAGS.weight_decay,
        "methods": list(FLAGS.methods),
        "recommended": FLAGS.recommended,
    }
    if FLAGS.report_only:
        meta["command"] = "see the commands in docs/results/accuracy_vs_sparsity.md"
        meta["seeds"] = sorted({run["seed"] for run in runs.values()})
        meta["epochs"] = {m: e for m, (e, _) in stored_budgets(runs).items()}
        write_outputs(runs, meta)
        return
    check_resumable(runs, epochs, FLAGS.lr, FLAGS.out_dir)
    (x_train, y_train), (x_test, y_test) = load_image_classification("fashion_mnist")
    data = ((normalize_images(x_train), y_train), (normalize_images(x_test), y_test))
    start = time.time()
    for model in FLAGS.models:
        for seed in seeds:
            plan = [("dense", None)] if "dense" in FLAGS.methods else []
            plan += [(m, t) for t in targets for m in FLAGS.methods if m in SPARSE_METHODS]
            for method, target in plan:
                key = run_key(model, method, target, seed)
                if key in runs:
                    continue
                budget = None
                if method == "str_budget_gmp":
                    source = runs.get(run_key(model, "str", target, seed))
                    if source is None:
                        raise app.UsageError("str_budget_gmp needs the str row.")
                    budget = source["layer_sparsity"]
                config = make_config(model, method, target, seed,
                                     epochs.get(model, FLAGS.lenet_epochs), budget)
                result = run_training(config, data)
                summary = result.summary()
                summary.update(label=method, target=target)
                summary.pop("layer_targets", None)
                runs[key] = summary
                print(
                    f"[{time.time() - start:6.0f} s] {key}: accuracy "
                    f"{100 * summary['test_accuracy']:.2f} %, sparsity "
                    f"{100 * summary['sparsity']:.2f} %, "
                    f"{summary['sparse_mflops']:.4f} MFLOPs, "
                    f"{summary['train_seconds']:.0f} s",
                    flush=True,
                )
                write_outputs(runs, meta)
    write_outputs(runs, meta)
    with open(os.path.join(FLAGS.out_dir, "accuracy_vs_sparsity.md")) as f:
        print(f.read())


if __name__ == "__main__":
    app.run(main)
