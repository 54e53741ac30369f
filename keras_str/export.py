"""Sparse TensorFlow Lite export, verified in LiteRT before the file is kept."""

import contextlib
import dataclasses
import io
import os

import numpy as np

from keras_str.io_utils import atomic_path
from keras_str.layers.mapping import is_str_layer
from keras_str.model_utils import iter_layers
from keras_str.tflite_inspect import inspect_tflite

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

    @property
    def size_ratio(self):
        """This file's size over the same model exported without sparsity."""
        return self.size_bytes / self.dense_size_bytes

    @property
    def runtime_note(self):
        kept_sparse = [t for t in self.sparse_tensors if not t.densified]
        notes = []
        if not self.sparse_tensors:
            notes.append(
                "No tensor is stored sparse (none had enough exact zeros): "
                "the file is as large and as fast as the dense one."
            )
        if self.densify_ops:
            notes.append(
                f"{self.densify_ops} sparse tensors are expanded to dense "
                "when the model loads (DENSIFY): the file is smaller, but "
                "the CPU kernels compute densely, so latency and runtime "
                "memory match the dense model. On ARM CPUs XNNPACK can run "
                "qualifying 1x1 convolutions sparse (see the README)."
            )
        if kept_sparse:
            notes.append(
                f"{len(kept_sparse)} sparse tensors stay sparse at run time "
                "(e.g. FullyConnected with 1x4 blocks) and use TFLite's "
                "sparse kernels."
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
        lines.append(self.runtime_note)
        return "\n".join(lines)


def export_tflite(
    model, path, precision="float32", representative_data=None
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
        from keras_str.strip import strip

        model = strip(model)
    samples = (
        None
        if representative_data is None
        else _representative_samples(model, representative_data)
    )
    sparse_bytes = _convert(model, precision, samples, sparse=True)
    dense_bytes = _convert(model, precision, samples, sparse=False)
    with atomic_path(path) as tmp_path:
        with open(tmp_path, "wb") as f:
            f.write(sparse_bytes)
        _check_loads(tmp_path, precision)
    inspection = inspect_tflite(sparse_bytes)
    return ExportReport(
        path=path,
        precision=precision,
        size_bytes=len(sparse_bytes),
        dense_size_bytes=len(dense_bytes),
        sparse_tensors=inspection.sparse_tensors,
        densify_ops=inspection.densify_ops,
        op_counts=inspection.op_counts,
    )


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


def _convert(model, precision, samples, sparse):
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
    if precision == "int8":
        converter.representative_dataset = lambda: ([s] for s in samples)
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS_INT8
        ]
    # The converter prints SavedModel chatter to stdout; keep the user's clean.
    with contextlib.redirect_stdout(io.StringIO()):
        return converter.convert()


def _check_loads(path, precision):
    from ai_edge_litert.interpreter import Interpreter

    try:
        interpreter = Interpreter(model_path=path)
        interpreter.allocate_tensors()
        for detail in interpreter.get_input_details():
            interpreter.set_tensor(
                detail["index"], np.zeros(detail["shape"], detail["dtype"])
            )
        interpreter.invoke()
    except (RuntimeError, ValueError) as error:
        raise RuntimeError(
            f"The sparse {precision} .tflite does not load in LiteRT's "
            f"default interpreter ({str(error).strip()[:300]}), so it was "
            "not written. This LiteRT's XNNPACK delegate cannot prepare "
            "convolution or fully-connected nodes whose sparse int8 weights "
            "are densified at load; use precision='float16' (half the size "
            "of float32) or 'float32'."
        ) from error


def predict_tflite(path, inputs, batch_size=256):
    """Runs a single-input `.tflite` on `inputs` in LiteRT's default interpreter.

    Args:
        path: The `.tflite` file.
        inputs: Numpy array of model inputs, first axis = examples.
        batch_size: Examples per `invoke()`.

    Returns:
        The model's outputs for all examples, as one numpy array.
    """
    from ai_edge_litert.interpreter import Interpreter

    inputs = np.asarray(inputs)
    interpreter = Interpreter(model_path=os.fspath(path))
    input_index = interpreter.get_input_details()[0]["index"]
    input_dtype = interpreter.get_input_details()[0]["dtype"]
    outputs = []
    allocated = None
    for start in range(0, len(inputs), batch_size):
        batch = inputs[start : start + batch_size].astype(input_dtype)
        if allocated != batch.shape:
            interpreter.resize_tensor_input(input_index, batch.shape)
            interpreter.allocate_tensors()
            allocated = batch.shape
        interpreter.set_tensor(input_index, batch)
        interpreter.invoke()
        output_index = interpreter.get_output_details()[0]["index"]
        outputs.append(interpreter.get_tensor(output_index).copy())
    return np.concatenate(outputs)
