r"""Dense vs sparse .tflite of one .keras model: file sizes and LiteRT latency, side by side.

    keras-str-benchmark --model m.keras \
        [--precisions float32,int8] [--representative_data fashion_mnist] \
        [--runs 50] [--warmup 5] [--threads 1] [--json bench.json]

Both files are exported and timed in the same run (median of --runs
single-example invocations after --warmup), so their ratio is meaningful on
a noisy machine. Each time is shown with its spread (10th-90th percentile);
where the spread of the ratio covers 1 the speed-up reads "no measurable
difference".
"""

import os
import sys
import tempfile

from absl import flags

from keras_str_cli import common

TOOL = "keras-str-benchmark"

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "The .keras model.", required=True)
flags.DEFINE_list("precisions", ["float32"], "Precisions to compare.")
flags.DEFINE_string(
    "representative_data", None, "For int8: a .npy of inputs, or 'fashion_mnist'."
)
flags.DEFINE_integer("runs", 50, "Timed invocations per file.")
flags.DEFINE_integer("warmup", 5, "Untimed invocations first.")
flags.DEFINE_integer("threads", 1, "Interpreter threads.")
flags.DEFINE_string("json", None, "Also write the results as JSON here.")


def benchmark(model, precisions, representative_data, runs, warmup, threads):
    import keras_str

    results = []
    with tempfile.TemporaryDirectory() as folder:
        for precision in precisions:
            row = {"precision": precision}
            for kind in ("dense", "sparse"):
                path = os.path.join(folder, f"{precision}_{kind}.tflite")
                report = keras_str.export_tflite(
                    model, path, precision=precision,
                    representative_data=representative_data,
                    sparse=kind == "sparse",
                )
                timing = keras_str.time_tflite(path, runs, warmup, threads)
                row[f"{kind}_bytes"] = report.size_bytes
                row[f"{kind}_median_ms"] = timing["median_ms"]
                row[f"{kind}_p10_ms"] = timing["p10_ms"]
                row[f"{kind}_p90_ms"] = timing["p90_ms"]
                if kind == "sparse":
                    row["densify_ops"] = report.densify_ops
                    row["xnnpack_sparse_eligible"] = report.xnnpack.eligible
            row["size_ratio"] = row["sparse_bytes"] / row["dense_bytes"]
            row["speedup"] = row["dense_median_ms"] / row["sparse_median_ms"]
            # The slowest dense run against the fastest sparse one, and back.
            row["speedup_low"] = row["dense_p10_ms"] / row["sparse_p90_ms"]
            row["speedup_high"] = row["dense_p90_ms"] / row["sparse_p10_ms"]
            row["measurable"] = not row["speedup_low"] <= 1.0 <= row["speedup_high"]
            results.append(row)
    return results


def _time(row, kind):
    return (
        f"{row[f'{kind}_median_ms']:.3f} "
        f"({row[f'{kind}_p10_ms']:.3f}-{row[f'{kind}_p90_ms']:.3f})"
    )


def speedup_text(row):
    """The median ratio, or "no measurable difference" where its spread covers 1."""
    spread = f"{row['speedup_low']:.2f}-{row['speedup_high']:.2f}x"
    if not row["measurable"]:
        return f"no measurable difference ({row['speedup']:.2f}x, spread {spread})"
    return f"{row['speedup']:.2f}x ({spread})"


def main(argv):
    del argv
    common.require_export_extra(TOOL)
    common.quiet()
    import keras_str

    try:
        model = keras_str.load_model(FLAGS.model)
        results = benchmark(
            model, FLAGS.precisions,
            common.load_representative_data(FLAGS.representative_data),
            FLAGS.runs, FLAGS.warmup, FLAGS.threads,
        )
    except (ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(
        f"{FLAGS.model}: median (10th-90th percentile) of {FLAGS.runs} runs, "
        f"{FLAGS.threads} thread(s)\n"
    )
    print(common.table(
        ("precision", "dense bytes", "sparse bytes", "size ratio",
         "dense ms", "sparse ms", "speed-up", "DENSIFY", "XNNPACK sparse"),
        [
            (r["precision"], f"{r['dense_bytes']:,}", f"{r['sparse_bytes']:,}",
             f"{r['size_ratio']:.3f}", _time(r, "dense"), _time(r, "sparse"),
             speedup_text(r), r["densify_ops"],
             "yes" if r["xnnpack_sparse_eligible"] else "no")
            for r in results
        ],
    ))
    common.write_json(FLAGS.json, results)
    return 0


def run():
    """The `keras-str-benchmark` console script."""
    common.run_tool(main, sys.modules[__name__])


if __name__ == "__main__":
    run()
