"""What `export_tflite` reports: the file, its sparse tensors, what LiteRT does with them."""

import dataclasses


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
    """What `export_tflite` wrote and what LiteRT will do with its zeros.

    Attributes:
        path: The `.tflite` file written.
        precision: `"float32"`, `"float16"`, `"int8"` or `"dynamic_int8"`.
        size_bytes: The file's size.
        dense_size_bytes: The size of the same model exported without
            sparse encoding (`size_ratio` is the one over the other).
        sparse_tensors: Each weight stored in TFLite's sparse format: its
            name, shape, density, the op reading it and whether LiteRT
            expands it at load (`densified`).
        densify_ops: How many DENSIFY ops the file holds (weights expanded
            to dense when LiteRT loads the file).
        op_counts: `{op name: count}` over the file's graph.
        stored_dense: `{weight: why}` for weights stored dense although
            sparse (LiteRT could not load or compute them right sparse).
        xnnpack: Whether XNNPACK's sparse inference applies, and if not,
            which layer breaks which rule.
        max_difference: The largest |LiteRT - Keras| on the inputs checked.
        layer_runtime: `{layer: what LiteRT does with its zeros}`.

    Example:

    >>> model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(8)])
    >>> report = keras_str.export_tflite(model, "model.tflite")
    >>> report.precision, report.densify_ops
    ('float32', 0)
    """

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
