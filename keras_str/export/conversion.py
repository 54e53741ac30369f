"""Keras model to `.tflite` through the TFLite converter, and what its failures mean."""

import contextlib
import functools
import io
import re
import tempfile

import keras

from keras_str.core.layer_walk import iter_layers
from keras_str.export.flatbuffer import node_outputs
from keras_str.transforms.cloning import clone_with
from keras_str.transforms.cloning import copy_all_weights


def plain_file_failure(error, plain_content, precision):
    """Says that the converter's own file fails, where, and what to try instead."""
    message = (
        f"The model converted to {precision} does not run in LiteRT's "
        f"default interpreter even without sparse weights (so `sparse=False` "
        f"fails the same way): {error}"
    )
    match = re.search(r"Node number (\d+) \((\w+)\) failed", str(error))
    failing = match and node_outputs(plain_content, int(match.group(1)))
    if failing and failing[0] == match.group(2) and failing[1]:
        message += (
            f" LiteRT's node {match.group(1)} is the {failing[0]} that computes "
            f"{failing[1][0]!r} (named after the Keras layer that makes it)."
        )
    if precision == "int8":
        message += (
            " This is the converter's full-integer graph: try "
            "precision='dynamic_int8' (int8 weights, float activations) or "
            "'float16'."
        )
    return message


def _recurrent(layer):
    return isinstance(layer, keras.layers.RNN) and not layer.unroll


def unrolled(model):
    """`model` with its recurrent layers rebuilt with `unroll=True`.

    Here the converter turns a rolled Keras 3 RNN (a TensorList loop) into
    TFLite builtins only at a fixed batch size, as a WHILE loop that
    full-integer quantization crashes on; unrolled, every precision and
    batch size converts to FULLY_CONNECTED and elementwise ops.
    """
    recurrent = [layer for layer in iter_layers(model) if _recurrent(layer)]
    if not recurrent:
        return model
    for layer in recurrent:
        try:
            timesteps = layer.input.shape[1]
        except (AttributeError, ValueError, IndexError):
            continue  # a wrapped layer (Bidirectional): checked at conversion
        if timesteps is None:
            raise ValueError(
                f"Layer {layer.name!r} ({type(layer).__name__}) runs over a "
                "variable number of timesteps: TFLite needs it unrolled, "
                "which needs a fixed sequence length. Give the model's Input "
                "a fixed number of timesteps (e.g. `keras.Input((16, 8))`, "
                "padding sequences to 16). Received: input shape "
                f"{tuple(layer.input.shape)}"
            )
    if not (
        isinstance(model, keras.Sequential)
        or type(model).__name__ == "Functional"
    ):
        raise ValueError(
            f"Layer {recurrent[0].name!r} ({type(recurrent[0]).__name__}) "
            "converts to TFLite builtin ops only unrolled, and subclassed "
            f"model {model.name!r} cannot be rebuilt: create its recurrent "
            "layers with `unroll=True`. Received: "
            f"{recurrent[0].name}.unroll=False"
        )

    def replace(layer):
        if not any(_recurrent(sublayer) for sublayer in [layer, *iter_layers(layer)]):
            return None
        config = _set_unroll(layer.get_config())
        return layer.__class__.from_config(config), copy_all_weights

    return clone_with(model, replace)


def _set_unroll(config):
    if isinstance(config, dict):
        return {
            key: True if key == "unroll" else _set_unroll(value)
            for key, value in config.items()
        }
    if isinstance(config, list):
        return [_set_unroll(value) for value in config]
    return config


@contextlib.contextmanager
def _converter_for(model, specs):
    """A TFLite converter of `model`: from Keras's graph, or from its call traced at `specs`.

    With `specs` (`input_specs`), the model's `call` is traced at those
    input shapes and dtypes and written as a SavedModel, which the
    converter reads (Keras's `model.export(format="litert")` route; it
    converts keras-hub models, whose graphs `from_keras_model` cannot).
    """
    import tensorflow as tf

    if specs is None:
        yield tf.lite.TFLiteConverter.from_keras_model(model)
        return
    by_name = {
        name: tf.TensorSpec((tensor.shape[0],) + shape, dtype, name=name)
        for tensor, (name, shape, dtype) in zip(model.inputs, specs)
    }
    # The structure `call` takes: keras-hub's backbones take a dict.
    structure = getattr(model, "_inputs_struct", None)
    if structure is None:
        structure = model.inputs[0] if len(model.inputs) == 1 else list(model.inputs)
    signature = keras.tree.map_structure(lambda tensor: by_name[tensor.name], structure)
    with tempfile.TemporaryDirectory() as directory:
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint(
            "serve",
            functools.partial(model.__call__, training=False),
            input_signature=[signature],
        )
        with contextlib.redirect_stdout(io.StringIO()):
            archive.write_out(directory, verbose=False)
        yield tf.lite.TFLiteConverter.from_saved_model(directory)


def convert(model, precision, samples, per_channel=True, specs=None):
    """The model as a plain (not sparse-encoded) `.tflite` file's bytes."""
    with _converter_for(model, specs) as converter:
        return _configured_conversion(converter, model, precision, samples, per_channel)


def _configured_conversion(converter, model, precision, samples, per_channel):
    import tensorflow as tf

    optimizations = []
    if precision != "float32":
        optimizations.append(tf.lite.Optimize.DEFAULT)
    converter.optimizations = optimizations
    if precision == "float16":
        converter.target_spec.supported_types = [tf.float16]
    # The converter's only switch for per-tensor weight scales.
    converter._experimental_disable_per_channel = not per_channel
    if precision == "int8":
        # A list (the graph's input order) for one input; by name otherwise.
        converter.representative_dataset = lambda: (
            batch if isinstance(batch, dict) else [batch] for batch in samples
        )
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS_INT8
        ]
    # The converter prints SavedModel chatter to stdout; keep the user's clean.
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return converter.convert()
    except Exception as error:
        if "ConverterError" not in type(error).__name__:
            raise
        raise ValueError(_converter_failure(str(error), model)) from error


def _converter_failure(message, model):
    """Says which layer and op the converter failed on, and what to do."""
    message = message.strip()
    ops = list(dict.fromkeys(re.findall(r"'(tf\.\w+)' op", message)))
    select = re.search(r"TF Select ops: ([\w, ]+)", message)
    if select:
        ops += [f"tf.{op.strip()}" for op in select.group(1).split(",")]
        ops = list(dict.fromkeys(ops))
    layers = {layer.name: layer for layer in iter_layers(model)}
    culprits = []
    for path in re.findall(r'fused\["[^"]*", "([^"@]+)@', message):
        found = None
        for part in path.split("/"):
            for name in layers:
                if re.fullmatch(re.escape(name) + r"(_\d+)*", part) and (
                    found is None or len(name) > len(found)
                ):
                    found = name
        if found is not None and found not in culprits:
            culprits.append(found)
    what = "this model"
    if culprits:
        what = ", ".join(
            f"layer {name!r} ({type(layers[name]).__name__})" for name in culprits
        )
    text = f"The TFLite converter cannot handle {what}"
    if ops:
        plural = "s" if len(ops) > 1 else ""
        text += f" (op{plural} {', '.join(ops)}: no TFLite builtin form)"
    text += ". "
    if any(isinstance(layers[name], keras.layers.RNN) for name in culprits):
        text += (
            "Recurrent layers convert only unrolled, with a fixed number of "
            "timesteps. "
        )
    if re.search(r"\bf16\b|bf16", message):
        text += (
            "The graph computes in float16: build the model under the "
            "'float32' dtype policy for export. "
        )
    text += (
        "Replace the layer by Keras layers whose ops TFLite supports, or keep "
        "it out of the exported model: this LiteRT runs TFLite builtin ops "
        "only (TensorFlow ops through SELECT_TF_OPS / Flex are not "
        "available). No file was written. Converter message: "
        f"{message[:600]}"
    )
    return text
