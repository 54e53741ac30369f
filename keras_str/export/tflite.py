"""Sparse TensorFlow Lite export, verified in LiteRT before the file is kept."""

import contextlib
import dataclasses
import io
import os

import numpy as np

from keras_str.io_utils import atomic_path
from keras_str.layers.registry import is_sparse_layer as is_str_layer
from keras_str.export.litert import LiteRTError
from keras_str.export.litert import run_tflite
from keras_str.layers.registry import iter_layers
from keras_str.export.flatbuffer import inspect_tflite
from keras_str.export.flatbuffer import store_dense
from keras_str.export.xnnpack_rules import check_xnnpack_sparse

# A file is checked on this many inputs against the same model converted
# without sparse encoding.
CHECK_EXAMPLES = 8

PRECISIONS = ("float32", "float16", "int8", "dynamic_int8")

PRECISION_NOTES = {
    "float32": "float32 weights and activations.",
    "float16": "float16 weights (dequantized to float32 at load), float32 "
    "activations.",
    "int8": "full-integer int8 weights and activations, calibrated on "
    "representative_data; float32 input and output.",
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
        return "\n".join(lines)


def export_tflite(
    model,
    path,
    precision="float32",
    representative_data=None,
    sparse=True,
    per_channel=True,
):
    """Writes a sparse-encoded `.tflite` of `model` and reports on it.

    STR layers are stripped first (`keras_str.strip`), so an STR model and
    its stripped twin give the same file. Weights with enough exact zeros
    are stored in TFLite's sparse format (`EXPERIMENTAL_SPARSITY`). The file
    is written atomically and only after it loaded and ran in
    `ai_edge_litert`'s default interpreter (XNNPACK delegate): a file that
    would not load is never left behind.

    Args:
        model: A built Keras model (STR or plain).
        path: Destination, ending in `.tflite`; its folder must exist.
        precision: `"float32"`, `"float16"`, `"int8"` (full-integer; needs
            `representative_data`) or `"dynamic_int8"` (int8 weights, float
            activations).
        representative_data: For `"int8"`: a numpy array of model inputs
            (first axis = examples; 100-500 is plenty) or an iterable of
            single-example batches.
        sparse: `False` writes the plain (non-sparse) file, the baseline
            for size and latency comparisons.
        per_channel: For the int8 precisions, one quantization scale per
            output channel (default). `False` uses one scale per weight
            tensor: smaller files (a float32 scale and an int64 zero point
            per channel add up in MobileNet-sized models) at some cost in
            accuracy, notably for depthwise convolutions.

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
    if any(is_str_layer(layer) for layer in iter_layers(model)):
        from keras_str.transforms.strip import strip

        model = strip(model)
    samples = (
        None
        if representative_data is None
        else _representative_samples(model, representative_data)
    )
    check_inputs = _check_inputs(model, samples)
    dense_bytes = _convert(model, precision, samples, sparse=False, per_channel=per_channel)
    try:
        reference = run_tflite(dense_bytes, check_inputs)
    except LiteRTError as error:
        raise RuntimeError(
            f"The model converted to {precision} does not run in LiteRT's "
            f"default interpreter even without sparse weights: {error}"
        ) from error
    if sparse:
        content, stored_dense, difference = _loadable_sparse(
            _convert(model, precision, samples, sparse=True, per_channel=per_channel),
            reference,
            check_inputs,
            precision,
        )
    else:
        content, stored_dense, difference = dense_bytes, {}, 0.0
    verdict = check_xnnpack_sparse(
        content, precision, [layer.name for layer in iter_layers(model)]
    )
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
    )


def _tolerance(precision, reference):
    scale = float(np.max(np.abs(reference))) if reference.size else 0.0
    relative = 1e-4 if precision in ("float32", "float16") else 2e-2
    return relative * max(scale, 1.0)


def _loadable_sparse(content, reference, check_inputs, precision):
    """Stores dense whatever LiteRT cannot load or computes wrongly.

    Returns `(content, {tensor name: reason}, max |sparse - non-sparse|)`.
    """
    stored_dense = {}
    for _ in range(4):
        try:
            outputs = run_tflite(content, check_inputs)
        except LiteRTError as error:
            op_name = error.op_name
            if op_name is None:
                raise RuntimeError(
                    f"The sparse {precision} .tflite does not load in LiteRT: "
                    f"{error}"
                ) from error
            reason = (
                f"XNNPACK cannot prepare {op_name} with sparse {precision} "
                "weights"
            )
            pick = lambda row, op=op_name: op in row.consumer.split(",")
        else:
            difference = float(np.max(np.abs(outputs - reference)))
            if difference <= _tolerance(precision, reference):
                return content, stored_dense, difference
            reason = (
                f"TFLite's sparse kernel gave outputs {difference:.3g} away "
                "from the non-sparse file"
            )
            pick = lambda row: not row.densified
        content, names = store_dense(content, pick)
        if not names:
            raise RuntimeError(
                f"The sparse {precision} .tflite cannot be made to run "
                f"correctly in LiteRT ({reason}); no file was written."
            )
        stored_dense.update({name: reason for name in names})
    raise RuntimeError(
        f"The sparse {precision} .tflite still fails in LiteRT after storing "
        f"{len(stored_dense)} tensors dense; no file was written."
    )


def _check_inputs(model, samples):
    if samples is not None:
        return np.concatenate(samples[:CHECK_EXAMPLES])
    shape = (CHECK_EXAMPLES,) + tuple(model.inputs[0].shape[1:])
    if any(dim is None for dim in shape):
        raise ValueError(
            "Export needs a fixed input shape (no None besides the batch). "
            f"Received: model input shape {tuple(model.inputs[0].shape)}"
        )
    return np.random.default_rng(0).uniform(size=shape).astype("float32")


def _representative_samples(model, representative_data):
    input_shape = tuple(model.inputs[0].shape[1:])
    if isinstance(representative_data, np.ndarray):
        if tuple(representative_data.shape[1:]) != input_shape:
            raise ValueError(
                "`representative_data` must be model inputs of shape "
                f"(N,) + {input_shape}. Received: representative_data with "
                f"shape {representative_data.shape}"
            )
        if len(representative_data) == 0:
            raise ValueError(
                "`representative_data` is empty. Received: "
                f"representative_data with shape {representative_data.shape}"
            )
        return [
            representative_data[i : i + 1].astype("float32")
            for i in range(len(representative_data))
        ]
    samples = [np.asarray(sample, "float32") for sample in representative_data]
    if not samples:
        raise ValueError("`representative_data` yielded no examples.")
    return samples


def _convert(model, precision, samples, sparse, per_channel=True):
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    optimizations = []
    if precision != "float32":
        optimizations.append(tf.lite.Optimize.DEFAULT)
    if sparse:
        optimizations.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
    converter.optimizations = optimizations
    if precision == "float16":
        converter.target_spec.supported_types = [tf.float16]
    # The converter's only switch for per-tensor weight scales.
    converter._experimental_disable_per_channel = not per_channel
    if precision == "int8":
        converter.representative_dataset = lambda: ([s] for s in samples)
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
        raise ValueError(
            "The TFLite converter cannot handle this model (an op with no "
            f"TFLite builtin?): {str(error).strip()[:600]}"
        ) from error
