r"""Per-tensor sparsity and encoding, op counts and the XNNPACK verdict of a .tflite.

    keras-str-inspect --tflite m.tflite [--json inspect.json]
"""

import dataclasses
import sys

from absl import flags

from keras_str_cli import common

TOOL = "keras-str-inspect"

FLAGS = flags.FLAGS
flags.DEFINE_string("tflite", None, "The .tflite file.", required=True)
flags.DEFINE_string("json", None, "Also write the inspection as JSON here.")


def inspect_file(path):
    from keras_str.export.flatbuffer import inspect_tflite
    from keras_str.export.xnnpack_rules import check_xnnpack_sparse

    from keras_str.core.file_checks import check_tflite_file

    with open(check_tflite_file(path), "rb") as f:
        content = f.read()
    try:
        inspection = inspect_tflite(content)
    except Exception as error:
        raise ValueError(
            f"{path!r} looks like a .tflite file but cannot be read: truncated "
            f"or corrupt ({len(content):,} bytes): {error}"
        ) from error
    dtypes = {t.dtype for t in inspection.sparse_tensors}
    precision = "int8" if "int8" in dtypes else "float32"
    if "QUANTIZE" in inspection.op_counts:
        precision = "int8"
    verdict = check_xnnpack_sparse(content, precision)
    return inspection, verdict


def main(argv):
    del argv
    common.require_export_extra(TOOL, modules=("tensorflow",))
    common.quiet()
    try:
        inspection, verdict = inspect_file(FLAGS.tflite)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{FLAGS.tflite}: {inspection.size_bytes:,} bytes\n")
    print(common.table(
        ("sparse tensor", "shape", "dtype", "encoding", "density", "runs as"),
        [
            (t.name[:56], "x".join(map(str, t.shape)), t.dtype, t.encoding,
             f"{t.density:.3f}",
             f"dense ({t.consumer} after DENSIFY)" if t.densified else f"sparse ({t.consumer})")
            for t in inspection.sparse_tensors
        ],
    ))
    print()
    print(common.table(("op", "count"), sorted(inspection.op_counts.items())))
    print()
    print(verdict.summary())
    common.write_json(FLAGS.json, {
        "path": FLAGS.tflite,
        "size_bytes": inspection.size_bytes,
        "op_counts": inspection.op_counts,
        "sparse_tensors": [dataclasses.asdict(t) for t in inspection.sparse_tensors],
        "xnnpack_sparse_inference": {
            "eligible": verdict.eligible, "reasons": verdict.reasons,
        },
    })
    return 0


def run():
    """The `keras-str-inspect` console script."""
    common.run_tool(main, sys.modules[__name__])


if __name__ == "__main__":
    run()
