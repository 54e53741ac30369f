"""Sparse TensorFlow Lite export, verified in LiteRT before the file is kept."""

import os

from keras_str.core.io_utils import atomic_path
from keras_str.core.kernel_specs import raw_kernel_variable
from keras_str.core.layer_walk import iter_layers
from keras_str.export.conversion import convert
from keras_str.export.conversion import plain_file_failure
from keras_str.export.conversion import unrolled
from keras_str.export.flatbuffer import inspect_tflite
from keras_str.export.inputs import calibration_batches
from keras_str.export.inputs import check_fixed
from keras_str.export.inputs import inputs_to_check
from keras_str.export.inputs import input_specs
from keras_str.export.inputs import representative_samples
from keras_str.export.inputs import with_input_graph
from keras_str.export.litert import LiteRTError
from keras_str.export.litert import run_tflite
from keras_str.export.runtime import layer_runtime
from keras_str.export.sparse_encoding import loadable_sparse
from keras_str.export.sparse_encoding import sparsified
from keras_str.export.tflite_report import ExportReport
from keras_str.export.xnnpack_rules import check_xnnpack_sparse
from keras_str.layers.base import is_kernel_layer
from keras_str.layers.base import is_sparse_layer
from keras_str.transforms.cloning import is_clonable
from keras_str.transforms.strip import as_float32
from keras_str.transforms.strip import strip


PRECISIONS = ("float32", "float16", "int8", "dynamic_int8")


def export_tflite(
    model,
    path,
    precision="float32",
    representative_data=None,
    sparse=True,
    per_channel=True,
    sequence_length=None,
):
    """Writes a sparse-encoded `.tflite` of `model` and reports on it.

    STR layers are stripped first (`keras_str.strip`), so an STR model and
    its stripped twin give the same file. A model that computes in float16
    (`keras.config.set_dtype_policy("mixed_float16")`) is converted through
    a float32 copy (`precision="float16"` then stores float16 weights).
    Recurrent layers (`LSTM`, `GRU`, `SimpleRNN`, `Bidirectional`, ...) are
    converted unrolled (`unroll=True`, same weights): the one form this
    converter turns into TFLite builtin ops for every precision and batch
    size; their inputs need a fixed number of timesteps. Weights with enough
    exact zeros are stored in TFLite's sparse format (the converter's
    sparsifier, run on the plain file); a weight several ops read, such as
    a tied embedding's table (the token lookup and the projection to
    logits), is stored once. The file is written atomically and only after
    it loaded and ran in `ai_edge_litert`'s default interpreter (XNNPACK
    delegate), in batches the model accepts (a model built with
    `keras.Input(..., batch_size=1)` is checked one example at a time): a
    file that would not load is never left behind.

    Args:
        model: A built Keras model (STR or plain).
        path: Destination, ending in `.tflite`; its folder must exist.
        precision: `"float32"`, `"float16"`, `"int8"` (full-integer; needs
            `representative_data`) or `"dynamic_int8"` (int8 weights, float
            activations).
        representative_data: For `"int8"`: model inputs to calibrate
            activation ranges on (100-500 examples is plenty), in any of
            these forms: a numpy array (first axis = examples); for a model
            with several inputs, a list of arrays in `model.inputs` order or
            a dict keyed by input name; an iterable of batches, such as a
            `tf.data.Dataset` (of input batches, or of `(inputs, targets)`
            pairs as for `fit`); or TFLite's own convention, a zero-argument
            callable returning an iterable of lists of input arrays (what
            `converter.representative_dataset` takes; with several inputs,
            each list follows `model.inputs`, or yield dicts keyed by input
            name). Each input keeps its own dtype: token ids for an
            `Embedding` stay integers. The first examples are also the
            inputs the file is checked on.
        sparse: `False` writes the plain (non-sparse) file, the baseline
            for size and latency comparisons.
        per_channel: For the int8 precisions, one quantization scale per
            output channel (default). `False` uses one scale per weight
            tensor: smaller files (a float32 scale and an int64 zero point
            per channel add up in MobileNet-sized models) at some cost in
            accuracy, notably for depthwise convolutions.
        sequence_length: For models whose inputs have a sequence axis of
            unknown length (a keras-hub transformer's `token_ids` and
            `padding_mask`, shape `(batch, None)`): the length the file is
            built for (LiteRT runs fixed shapes; pad shorter sequences).
            Integer inputs keep their dtype (int32 token ids) in every
            precision.

    Returns:
        An `ExportReport`.

    Raises:
        ValueError: If an argument is invalid (an unknown `precision`, a `path`
            not ending in `.tflite`, `per_channel=False` outside the int8
            precisions, `precision="int8"` without `representative_data`), the
            model is not built, or its inputs cannot be given fixed shapes.
        RuntimeError: If even the plain file fails to convert or to run in
            LiteRT (the reason from the converter or the interpreter). No file
            is written then: a file is renamed into place only once checked.

    Example:

    >>> dense = keras.Sequential([keras.Input((16,)),
    ...     keras.layers.Dense(32, name="hidden"), keras.layers.Dense(4, name="logits")])
    >>> sparse = keras_str.sparsify(dense, threshold_init=-2.0, weight_decay=5e-4)  # g(s) = 0.12
    >>> report = keras_str.export_tflite(sparse, "model.tflite")
    >>> report.size_bytes < report.dense_size_bytes
    True
    >>> print(report.summary())
    """
    if precision not in PRECISIONS:
        raise ValueError(
            f"Invalid value for argument `precision`. Expected one of "
            f"{PRECISIONS}. Received: precision={precision!r}"
        )
    path = os.fspath(path)
    if not path.endswith(".tflite"):
        raise ValueError(
            f"Expected `path` to end in '.tflite'. Received: path={path!r}"
        )
    if not isinstance(per_channel, bool):
        raise ValueError(
            f"Expected `per_channel` to be a bool. Received: per_channel={per_channel!r}"
        )
    if not per_channel and precision not in ("int8", "dynamic_int8"):
        raise ValueError(
            "`per_channel=False` applies to the int8 precisions only. "
            f"Received: precision={precision!r}, per_channel=False"
        )
    if precision == "int8" and representative_data is None:
        raise ValueError(
            "precision='int8' is full-integer quantization: it needs "
            "`representative_data` (a few hundred model inputs) to calibrate "
            "activation ranges. Pass it, or use precision='float16' or "
            "'dynamic_int8'. Received: representative_data=None"
        )
    if not getattr(model, "built", False):
        raise ValueError(
            "The model must be built before export. "
            f"Received: model={getattr(model, 'name', model)!r} (not built)"
        )
    model = with_input_graph(model, representative_data)
    specs = input_specs(model, sequence_length)
    # Read against the user's model: its input names, as the user knows them.
    samples = (
        None
        if representative_data is None
        else representative_samples(model, representative_data, specs)
    )
    removed_channels = {}
    if any(is_sparse_layer(layer) for layer in iter_layers(model)):
        before = _output_widths(model)
        model = strip(model)
        after = _output_widths(model)
        removed_channels = {
            name: (width - after[name], width)
            for name, width in before.items()
            if name in after and after[name] < width
        }
    model = unrolled(as_float32(model))
    check_fixed(model, specs)
    check_inputs = inputs_to_check(model, samples, specs)
    samples = None if samples is None else calibration_batches(model, samples)
    # Keras's own graph conversion where it works; otherwise (keras-hub's
    # models, inputs whose length the caller fixed) the model's call traced
    # at fixed input shapes, through a SavedModel, as `model.export` does.
    by_signature = not is_clonable(model) or sequence_length is not None

    dense_bytes = convert(
        model, precision, samples, per_channel=per_channel,
        specs=specs if by_signature else None,
    )
    try:
        reference = run_tflite(dense_bytes, check_inputs)
    except LiteRTError as error:
        raise RuntimeError(plain_file_failure(error, dense_bytes, precision)) from error
    sparse_bytes = sparsified(dense_bytes) if sparse else None
    if isinstance(sparse_bytes, str):
        # The converter could not encode this model's zeros at all.
        content, stored_dense, difference = dense_bytes, {"(every tensor)": sparse_bytes}, 0.0
    elif sparse:
        content, stored_dense, difference = loadable_sparse(
            sparse_bytes,
            reference,
            check_inputs,
            precision,
        )
        if content is None:
            content = dense_bytes
        elif len(content) >= len(dense_bytes):
            # Sparse encodings cost index arrays (int8 weights gain least):
            # never ship a file larger than the plain one.
            stored_dense = {
                "(every tensor)": (
                    f"the sparse encoding ({len(content):,} bytes) was not "
                    f"smaller than the plain file ({len(dense_bytes):,} bytes)"
                )
            }
            content, difference = dense_bytes, 0.0
    else:
        content, stored_dense, difference = dense_bytes, {}, 0.0
    layer_names = [layer.name for layer in iter_layers(model)]
    kernel_layers = [
        (layer.name, tuple(raw_kernel_variable(layer).shape))
        for layer in iter_layers(model)
        if is_kernel_layer(layer)
    ]
    verdict = check_xnnpack_sparse(content, precision, layer_names, kernel_layers)
    if verdict.fails_on_arm:
        # It loads here (XNNPACK's sparse path is off on x86), not on phones.
        raise ValueError(
            "This sparse .tflite would fail to load on ARM CPUs: "
            + " ".join(verdict.reasons)
            + ". Replace GlobalAveragePooling2D(keepdims=True) + Conv2D(1x1) "
            "by GlobalAveragePooling2D() + Dense, or export with sparse=False. "
            "No file was written."
        )
    with atomic_path(path) as tmp_path:
        with open(tmp_path, "wb") as f:
            f.write(content)
        run_tflite(tmp_path, check_inputs)
    inspection = inspect_tflite(content)
    return ExportReport(
        path=path,
        precision=precision,
        size_bytes=len(content),
        dense_size_bytes=len(dense_bytes),
        sparse_tensors=inspection.sparse_tensors,
        densify_ops=inspection.densify_ops,
        op_counts=inspection.op_counts,
        stored_dense=stored_dense,
        xnnpack=verdict,
        max_difference=difference,
        layer_runtime=layer_runtime(
            content, layer_names, verdict, removed_channels, kernel_layers
        ),
    )


def _output_widths(model):
    """Output channels (filters, units) of each kernel layer, by name."""
    return {
        layer.name: getattr(layer, "filters", None) or getattr(layer, "units", None)
        for layer in iter_layers(model)
        if isinstance(getattr(layer, "filters", None) or getattr(layer, "units", None), int)
    }
