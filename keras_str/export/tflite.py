"""Sparse TensorFlow Lite export, verified in LiteRT before the file is kept."""

import contextlib
import dataclasses
import functools
import io
import os
import re
import tempfile

import keras
import numpy as np

from keras_str.core.kernel_specs import raw_kernel_variable
from keras_str.core.layer_walk import iter_layers
from keras_str.export.flatbuffer import inspect_tflite
from keras_str.export.flatbuffer import node_outputs
from keras_str.export.flatbuffer import store_dense
from keras_str.export.litert import LiteRTError
from keras_str.export.litert import run_tflite
from keras_str.export.runtime import layer_runtime
from keras_str.export.sparsifier import sparsify
from keras_str.export.xnnpack_rules import check_xnnpack_sparse
from keras_str.io_utils import atomic_path
from keras_str.layers.base import is_kernel_layer
from keras_str.layers.base import is_sparse_layer
from keras_str.transforms.cloning import clone_with
from keras_str.transforms.cloning import copy_all_weights
from keras_str.transforms.cloning import has_layer_graph
from keras_str.transforms.cloning import is_clonable
from keras_str.transforms.strip import as_float32

# A file is checked on this many inputs against the same model converted
# without sparse encoding.
CHECK_EXAMPLES = 8

PRECISIONS = ("float32", "float16", "int8", "dynamic_int8")

PRECISION_NOTES = {
    "float32": "float32 weights and activations.",
    "float16": "float16 weights (dequantized to float32 at load), float32 "
    "activations.",
    "int8": "full-integer int8 weights and activations, calibrated on "
    "representative_data; float32 output, inputs in the model's own dtypes "
    "(float32, or integers such as token ids).",
    "dynamic_int8": "int8 weights, float32 activations (dynamic range).",
}


@dataclasses.dataclass
class ExportReport:
    """What `export_tflite` wrote and what LiteRT will do with its zeros."""

    path: str
    precision: str
    size_bytes: int
    dense_size_bytes: int
    sparse_tensors: list
    densify_ops: int
    op_counts: dict
    stored_dense: dict
    xnnpack: object
    max_difference: float
    layer_runtime: dict = dataclasses.field(default_factory=dict)

    @property
    def size_ratio(self):
        """This file's size over the same model exported without sparsity."""
        return self.size_bytes / self.dense_size_bytes

    @property
    def runtime_note(self):
        kept_sparse = [t for t in self.sparse_tensors if not t.densified]
        notes = []
        if not self.sparse_tensors and self.stored_dense:
            notes.append(
                "No weight could stay sparse in this LiteRT (see "
                "stored_dense): this is a plain, loadable "
                f"{self.precision} file, no smaller than one exported with "
                "sparse=False."
            )
        elif not self.sparse_tensors:
            notes.append(
                "No tensor is stored sparse (none had the >= 30 % exact "
                "zeros the converter asks for): the file is as large and as "
                "fast as the dense one."
            )
        if any(
            "FULLY_CONNECTED" in reason for reason in self.stored_dense.values()
        ):
            notes.append(
                "Sparse int8 FullyConnected weights load only when their "
                "zeros come in blocks of 16 consecutive inputs (they then "
                "run TFLite's sparse kernel)."
            )
        if self.densify_ops:
            notes.append(
                f"{self.densify_ops} sparse tensors are expanded to dense "
                "when the model loads (DENSIFY): the file is smaller, but "
                "unless XNNPACK's sparse inference applies (below) they are "
                "computed densely, so latency and runtime memory match the "
                "dense model."
            )
        if kept_sparse:
            notes.append(
                f"{len(kept_sparse)} sparse tensors stay sparse at run time "
                "(FullyConnected with 1x4 float / 1x16 int8 blocks) and use "
                "TFLite's sparse kernels: faster on every CPU."
            )
        if self.stored_dense:
            notes.append(
                f"{len(self.stored_dense)} tensors had to be stored dense so "
                "that the file loads and computes correctly in LiteRT (see "
                "stored_dense)."
            )
        return " ".join(notes)

    def to_dict(self):
        return {
            "path": self.path,
            "precision": self.precision,
            "size_bytes": self.size_bytes,
            "dense_size_bytes": self.dense_size_bytes,
            "size_ratio": self.size_ratio,
            "densify_ops": self.densify_ops,
            "op_counts": dict(self.op_counts),
            "sparse_tensors": [
                dataclasses.asdict(t) for t in self.sparse_tensors
            ],
            "stored_dense": dict(self.stored_dense),
            "xnnpack_sparse_inference": {
                "eligible": self.xnnpack.eligible,
                "reasons": list(self.xnnpack.reasons),
                "pointwise_zero_fraction": self.xnnpack.pointwise_zero_fraction,
            },
            "max_difference_vs_non_sparse_file": self.max_difference,
            "runtime_note": self.runtime_note,
            "layer_runtime": dict(self.layer_runtime),
        }

    def summary(self):
        lines = [
            f"{self.path}: {self.precision}, {self.size_bytes:,} bytes "
            f"({self.size_ratio:.3f}x the {self.dense_size_bytes:,}-byte "
            "file without sparse encoding)",
            f"sparse tensors: {len(self.sparse_tensors)}, "
            f"DENSIFY ops: {self.densify_ops}",
        ]
        for tensor in self.sparse_tensors:
            lines.append(
                f"  {tensor.name[:48]:48s} {str(tensor.shape):18s} "
                f"{tensor.dtype:8s} {tensor.encoding:12s} "
                f"density {tensor.density:.3f} -> {tensor.consumer}"
                + (" (densified at load)" if tensor.densified else "")
            )
        for name, reason in self.stored_dense.items():
            lines.append(f"  stored dense: {name[:48]} ({reason})")
        lines.append(self.runtime_note)
        lines.append(self.xnnpack.summary())
        if self.layer_runtime:
            lines.append("per layer:")
            width = max(len(name) for name in self.layer_runtime)
            lines.extend(
                f"  {name:{width}s}  {text}" for name, text in self.layer_runtime.items()
            )
        return "\n".join(lines)


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

    Example:

    >>> report = keras_str.export_tflite(model, "model.tflite")
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
    model = _with_input_graph(model, representative_data)
    specs = _input_specs(model, sequence_length)
    # Read against the user's model: its input names, as the user knows them.
    samples = (
        None
        if representative_data is None
        else _representative_samples(model, representative_data, specs)
    )
    removed_channels = {}
    if any(is_sparse_layer(layer) for layer in iter_layers(model)):
        from keras_str.transforms.strip import strip

        before = _output_widths(model)
        model = strip(model)
        after = _output_widths(model)
        removed_channels = {
            name: (width - after[name], width)
            for name, width in before.items()
            if name in after and after[name] < width
        }
    model = _unrolled(as_float32(model))
    _check_fixed(model, specs)
    check_inputs = _check_inputs(model, samples, specs)
    samples = None if samples is None else _calibration_batches(model, samples)
    # Keras's own graph conversion where it works; otherwise (keras-hub's
    # models, inputs whose length the caller fixed) the model's call traced
    # at fixed input shapes, through a SavedModel, as `model.export` does.
    by_signature = not is_clonable(model) or sequence_length is not None

    dense_bytes = _convert(
        model, precision, samples, per_channel=per_channel,
        specs=specs if by_signature else None,
    )
    try:
        reference = run_tflite(dense_bytes, check_inputs)
    except LiteRTError as error:
        raise RuntimeError(_plain_file_failure(error, dense_bytes, precision)) from error
    sparse_bytes = _sparsified(dense_bytes) if sparse else None
    if isinstance(sparse_bytes, str):
        # The converter could not encode this model's zeros at all.
        content, stored_dense, difference = dense_bytes, {"(every tensor)": sparse_bytes}, 0.0
    elif sparse:
        content, stored_dense, difference = _loadable_sparse(
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


def _plain_file_failure(error, plain_content, precision):
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


def _sparsified(plain_content):
    """The plain file with its exact zeros sparse-encoded, or why that failed (a str).

    This is what the converter's `EXPERIMENTAL_SPARSITY` does after
    converting, except that a constant several ops read (a tied embedding's
    table, read by the token lookup and by the projection to logits) is
    encoded once instead of failing (`sparsifier`).
    """
    try:
        return sparsify(plain_content)[0]
    except RuntimeError as error:  # The sparsifier's only error type.
        return f"TFLite's sparsifier failed: {type(error).__name__}: {str(error)[:300]}"


def _output_widths(model):
    """Output channels (filters, units) of each kernel layer, by name."""
    return {
        layer.name: getattr(layer, "filters", None) or getattr(layer, "units", None)
        for layer in iter_layers(model)
        if isinstance(getattr(layer, "filters", None) or getattr(layer, "units", None), int)
    }


def _with_input_graph(model, representative_data):
    """A subclassed model wrapped as a functional one (the converter needs inputs).

    Its input comes from the shape it was built with; integer token ids keep
    their dtype when the representative data has it.
    """
    if not isinstance(model, keras.Model) or is_clonable(model) or has_layer_graph(model):
        return model
    shapes = getattr(model, "_build_shapes_dict", None) or {}
    shape = next(iter(shapes.values()), None) if len(shapes) == 1 else None
    if not isinstance(shape, (tuple, list)):
        raise ValueError(
            f"Cannot export subclassed model {model.name!r}: it has no input "
            "graph and was not built on one input shape. Call it once on a "
            "batch of inputs first, or wrap it: `inputs = keras.Input(shape); "
            "keras.Model(inputs, model(inputs))`."
        )
    dtype = "float32"
    if isinstance(representative_data, np.ndarray) and np.issubdtype(
        representative_data.dtype, np.integer
    ):
        dtype = "int32"
    inputs = keras.Input(tuple(shape[1:]), dtype=dtype, name="inputs")
    return keras.Model(inputs, model(inputs), name=model.name)


def _tolerance(precision, reference):
    """How far the sparse file's outputs may be from the plain file's: rounding, not a wrong kernel.

    Relative to the outputs' own scale (small logits get no absolute slack).
    """
    scale = float(np.max(np.abs(reference))) if reference.size else 0.0
    relative = 1e-4 if precision in ("float32", "float16") else 2e-2
    return relative * scale + 1e-6


def _loadable_sparse(content, reference, check_inputs, precision):
    """Stores dense whatever LiteRT cannot load or computes wrongly.

    Returns `(content, {tensor name: reason}, max |sparse - non-sparse|)`;
    `content` is `None` when no sparse file runs correctly (the caller
    keeps the plain file, which did, and reports the reason).
    """
    tolerance = _tolerance(precision, reference)

    def difference(candidate):
        try:
            return float(np.max(np.abs(run_tflite(candidate, check_inputs) - reference)))
        except LiteRTError:
            return float("inf")

    stored_dense = {}
    for _ in range(4):
        try:
            outputs = run_tflite(content, check_inputs)
        except LiteRTError as error:
            op_name = error.op_name
            if op_name is None:
                return None, {"(every tensor)": f"the sparse file does not load in LiteRT: {error}"}, 0.0
            reason = (
                f"XNNPACK cannot prepare {op_name} with sparse {precision} "
                "weights"
            )
            content, names = store_dense(
                content, lambda row, op=op_name: op in row.consumer.split(",")
            )
        else:
            away = float(np.max(np.abs(outputs - reference)))
            if away <= tolerance:
                return content, stored_dense, away
            reason = (
                f"stored sparse, LiteRT's outputs were {away:.3g} away "
                "from the non-sparse file's"
            )
            names = _culprits(
                content,
                [row.name for row in inspect_tflite(content).sparse_tensors],
                lambda candidate: difference(candidate) <= tolerance,
            )
            if names:
                content, names = store_dense(content, lambda row, picked=set(names): row.name in picked)
        if not names:
            return None, {"(every tensor)": f"{reason}, in no tensor it could store dense"}, 0.0
        stored_dense.update({name: reason for name in names})
    return None, {"(every tensor)": f"{reason} after storing {len(stored_dense)} tensors dense"}, 0.0


def _culprits(content, names, correct):
    """A small set of the sparse tensors `names` that, stored dense, make `correct(file)` hold.

    Halves the candidates (delta debugging), so a few culprits among many
    tensors cost a few dozen LiteRT runs. Returns `[]` when storing all of
    them dense does not help either.
    """

    def fixed(picked):
        return correct(store_dense(content, lambda row: row.name in picked)[0])

    def minimal(candidates, base):
        if len(candidates) == 1:
            return set(candidates)
        half = len(candidates) // 2
        first, second = candidates[:half], candidates[half:]
        if fixed(base | set(first)):
            return minimal(first, base)
        if fixed(base | set(second)):
            return minimal(second, base)
        needed = minimal(first, base | set(second))
        return needed | minimal(second, base | needed)

    if not names or not fixed(set(names)):
        return []
    found = minimal(list(names), set())
    return [name for name in names if name in found]


def _input_specs(model, sequence_length=None):
    """`(name, shape without the batch axis, dtype)` for each model input.

    An unknown sequence axis (axis 1) takes `sequence_length`; other
    unknown dimensions stay `None` (`_check_fixed` refuses them).
    """
    if sequence_length is not None and (
        isinstance(sequence_length, bool)
        or not isinstance(sequence_length, int)
        or sequence_length < 1
    ):
        raise ValueError(
            "Invalid value for argument `sequence_length`. Expected a positive "
            f"integer. Received: sequence_length={sequence_length!r}"
        )
    specs, filled = [], False
    for tensor in model.inputs:
        shape = list(tensor.shape[1:])
        if sequence_length is not None and shape and shape[0] is None:
            shape[0], filled = sequence_length, True
        specs.append(
            (tensor.name, tuple(shape), keras.backend.standardize_dtype(tensor.dtype))
        )
    if sequence_length is not None and not filled:
        raise ValueError(
            "`sequence_length` fixes an input's unknown sequence axis, but "
            f"every input of model {model.name!r} has a fixed shape: "
            f"{[tuple(t.shape) for t in model.inputs]}. Received: "
            f"sequence_length={sequence_length}"
        )
    return specs


def _check_fixed(model, specs):
    """Refuses inputs with unknown dimensions besides the batch, naming the input."""
    for tensor, (name, shape, _) in zip(model.inputs, specs):
        if not any(dim is None for dim in shape):
            continue
        which = f" for input {name!r}" if len(model.inputs) > 1 else ""
        hint = (
            " Pass `sequence_length=` (the token length the file is built "
            "for) or build the model on a fixed shape."
            if shape[0] is None and all(dim is not None for dim in shape[1:])
            else ""
        )
        raise ValueError(
            "Export needs a fixed input shape (no None besides the batch)."
            f"{hint} Received: model input shape {tuple(tensor.shape)}{which}"
        )


def _model_batch_size(model):
    """The batch size the model is built for, or `None` for any."""
    return model.inputs[0].shape[0]


def _named(model, arrays):
    """Arrays in `model.inputs` order as `run_tflite` and the converter take
    them: the bare array for one input, else `{input name: array}` (the
    file's signature names)."""
    if len(arrays) == 1:
        return arrays[0]
    return {tensor.name: array for tensor, array in zip(model.inputs, arrays)}


def _check_inputs(model, samples, specs):
    """The inputs a converted file is checked on (see `_named`)."""
    if samples is not None:
        return _named(model, [array[:CHECK_EXAMPLES] for array in samples])
    rng = np.random.default_rng(0)
    bounds = _token_bounds(model)
    arrays = []
    for tensor, (name, shape, dtype) in zip(model.inputs, specs):
        shape = (CHECK_EXAMPLES,) + shape
        kind = np.dtype(dtype).kind
        if kind == "f":
            arrays.append(rng.uniform(size=shape).astype(dtype))
        elif kind in "iu" and id(tensor) in bounds:
            # Valid ids for the Embedding that reads them.
            arrays.append(rng.integers(0, bounds[id(tensor)], size=shape).astype(dtype))
        elif kind in "iu" and not bounds:
            # Valid ids for every Embedding in the model.
            bound = _integer_input_bound(model)
            arrays.append(rng.integers(0, bound, size=shape).astype(dtype))
        elif kind in "iu":
            # An integer input no Embedding reads (a padding mask): all ones.
            arrays.append(np.ones(shape, dtype))
        else:
            arrays.append((rng.uniform(size=shape) < 0.5).astype(dtype))
    return _named(model, arrays)


def _token_bounds(model):
    """`{id(input tensor): vocabulary size}` for inputs an Embedding reads directly."""
    bounds = {}
    for tensor in model.inputs:
        history = getattr(tensor, "_keras_history", None)
        if history is None:
            continue
        for node in getattr(history.operation, "_outbound_nodes", ()):
            if isinstance(node.operation, keras.layers.Embedding):
                size = node.operation.input_dim
                bounds[id(tensor)] = min(bounds.get(id(tensor), size), size)
    return bounds


def _integer_input_bound(model):
    sizes = [
        layer.input_dim
        for layer in iter_layers(model)
        if isinstance(layer, keras.layers.Embedding)
    ]
    return max(1, min(sizes, default=2))


def _representative_samples(model, representative_data, specs):
    """Checks `representative_data`; returns all its examples, one array per input.

    Each input is cast to its own dtype (integer inputs stay integers).
    """
    data = representative_data
    if callable(data):
        # TFLite's convention: a function returning an iterable of lists.
        data = data()
    if _is_array(data) or isinstance(data, dict) or (
        len(specs) > 1
        and isinstance(data, (list, tuple))
        and len(data) == len(specs)
        and all(_is_array(value) for value in data)
    ):
        batches = [data]
    else:
        try:
            batches = iter(data)
        except TypeError:
            raise ValueError(
                "`representative_data` must be an array of model inputs, an "
                "iterable of input batches (e.g. a `tf.data.Dataset`) or a "
                "zero-argument function returning one. Received: "
                f"representative_data of type {type(representative_data).__name__}"
            ) from None
    parts = [[] for _ in specs]
    for batch in batches:
        for part, array in zip(parts, _batch_arrays(batch, specs)):
            part.append(array)
    if not parts[0]:
        raise ValueError("`representative_data` yielded no examples.")
    examples = [np.concatenate(part) for part in parts]
    count = {len(array) for array in examples}
    if count == {0}:
        shapes = [array.shape for array in examples]
        raise ValueError(
            "`representative_data` is empty. Received: "
            f"representative_data with shape {shapes[0] if len(shapes) == 1 else shapes}"
        )
    if len(count) > 1:
        raise ValueError(
            "Every input in `representative_data` needs the same number of "
            "examples. Received: "
            + ", ".join(
                f"{name}: {len(array)}"
                for (name, _, _), array in zip(specs, examples)
            )
        )
    return examples


def _is_array(value):
    """A numpy array or a backend tensor (not an iterable of batches)."""
    return hasattr(value, "shape") and hasattr(value, "dtype")


def _batch_arrays(batch, specs):
    """One batch of `representative_data` as checked arrays, one per input."""
    if (
        isinstance(batch, tuple)
        and len(batch) == 2
        and isinstance(batch[0], str)
        and isinstance(batch[1], dict)
    ):
        batch = batch[1]  # TFLite's (signature key, {name: array})
    names = [name for name, _, _ in specs]
    if isinstance(batch, dict):
        missing = [name for name in names if name not in batch]
        if missing:
            raise ValueError(
                "`representative_data` is keyed by input name; it lacks "
                f"{missing}. Expected keys: {names}. Received: keys "
                f"{sorted(batch)}"
            )
        values = [batch[name] for name in names]
    elif isinstance(batch, (list, tuple)):
        if len(specs) == 1:
            # `[x]` (TFLite's convention) or `(x, y)` (a `fit` dataset).
            return _batch_arrays(batch[0], specs)
        if len(batch) == len(specs) and not any(
            isinstance(value, (list, tuple, dict)) for value in batch
        ):
            values = list(batch)
        elif batch and isinstance(batch[0], (list, tuple, dict)):
            return _batch_arrays(batch[0], specs)  # ((x1, x2), y)
        else:
            raise ValueError(
                f"The model has {len(specs)} inputs ({names}): each "
                "`representative_data` batch must hold one array per input, "
                "in `model.inputs` order or as a dict keyed by input name. "
                f"Received: a batch of {len(batch)} values"
            )
    elif len(specs) == 1:
        values = [batch]
    else:
        raise ValueError(
            f"The model has {len(specs)} inputs ({names}): each "
            "`representative_data` batch must hold one array per input, in "
            "`model.inputs` order or as a dict keyed by input name. "
            f"Received: a batch of type {type(batch).__name__}"
        )
    arrays = []
    for (name, shape, dtype), value in zip(specs, values):
        array = np.asarray(value)
        label = f" for input {name!r}" if len(specs) > 1 else ""
        if array.ndim == len(shape) and all(
            dim is None or dim == size for dim, size in zip(shape, array.shape)
        ):
            array = array[None]  # one example (an unbatched dataset)
        if array.ndim != len(shape) + 1 or any(
            dim is not None and dim != size
            for dim, size in zip(shape, array.shape[1:])
        ):
            raise ValueError(
                "`representative_data` must be model inputs of shape "
                f"(N,) + {shape}{label}. Received: representative_data with "
                f"shape {array.shape}"
            )
        kind = np.dtype(dtype).kind
        if kind in "iub" and array.dtype.kind not in "iub":
            raise ValueError(
                f"The model's input{label or ''} is {dtype} (e.g. token ids "
                f"for an Embedding): `representative_data` must hold "
                f"integers there. Received: representative_data with dtype "
                f"{array.dtype.name}"
            )
        arrays.append(array.astype(dtype, copy=False))
    return arrays


def _calibration_batches(model, examples):
    """`examples` cut into the batches the converter calibrates on.

    Single examples for a model with any batch size; batches of the model's
    own batch size otherwise, the last one completed by wrapping around.
    """
    size = _model_batch_size(model) or 1
    count = len(examples[0])
    batches = []
    for start in range(0, count, size):
        indices = np.arange(start, start + size) % count
        batches.append(_named(model, [array[indices] for array in examples]))
    return batches


def _recurrent(layer):
    return isinstance(layer, keras.layers.RNN) and not layer.unroll


def _unrolled(model):
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

    With `specs` (`_input_specs`), the model's `call` is traced at those
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


def _convert(model, precision, samples, per_channel=True, specs=None):
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
