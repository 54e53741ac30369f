r"""Exports a .keras model (STR or plain) to a sparse .tflite.

    keras-str-export --model m.keras --output m.tflite \
        [--precision float32|float16|int8|dynamic_int8] \
        [--representative_data fashion_mnist|inputs.npy] [--json report.json]
"""

import sys

from absl import flags

from keras_str_cli import common

TOOL = "keras-str-export"

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "The .keras model to export.", required=True)
flags.DEFINE_string("output", None, "The .tflite file to write.", required=True)
flags.DEFINE_enum(
    "precision", "float32", ["float32", "float16", "int8", "dynamic_int8"],
    "Export precision.",
)
flags.DEFINE_string(
    "representative_data", None,
    "For int8: a .npy of model inputs, or 'fashion_mnist'.",
)
flags.DEFINE_bool("sparse", True, "Store weights with exact zeros sparse.")
flags.DEFINE_bool(
    "per_channel", True, "int8: one scale per output channel (else per tensor)."
)
flags.DEFINE_integer(
    "sequence_length", None,
    "For inputs of unknown length (a transformer's token ids): the length to build the file for.",
)
flags.DEFINE_string("json", None, "Also write the export report as JSON here.")


def main(argv):
    del argv
    common.require_export_extra(TOOL)
    common.quiet()
    import keras_str

    try:
        model = keras_str.load_model(FLAGS.model)
        report = keras_str.export_tflite(
            model,
            FLAGS.output,
            precision=FLAGS.precision,
            representative_data=common.load_representative_data(
                FLAGS.representative_data
            ),
            sparse=FLAGS.sparse,
            per_channel=FLAGS.per_channel,
            sequence_length=FLAGS.sequence_length,
        )
    except (ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(report.summary())
    common.write_json(FLAGS.json, report.to_dict())
    return 0


def run():
    """The `keras-str-export` console script."""
    common.run_tool(main, sys.modules[__name__])


if __name__ == "__main__":
    run()
