"""Reading a .tflite flatbuffer: operators, and which weights are stored sparse."""

import dataclasses

import numpy as np


@dataclasses.dataclass
class SparseTensor:
    """A constant tensor stored in TFLite's sparse (CSR-like) format.

    `encoding` is `"element-wise"` or `"blocks RxC"`; `stored_values` counts
    the values kept in the file (nonzeros, or whole blocks); `densified` is
    whether a DENSIFY op expands it to a dense tensor when the model loads,
    i.e. whether the runtime computes with it densely.
    """

    name: str
    shape: list
    dtype: str
    encoding: str
    stored_values: int
    density: float
    densified: bool
    consumer: str


@dataclasses.dataclass
class TFLiteInspection:
    size_bytes: int
    op_counts: dict
    sparse_tensors: list

    @property
    def densify_ops(self):
        return self.op_counts.get("DENSIFY", 0)


def _schema():
    from tensorflow.lite.python import schema_py_generated

    return schema_py_generated


def inspect_tflite(model_content):
    """Lists the operators and sparse tensors of a `.tflite` model (bytes)."""
    fb = _schema()
    model = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(model_content, 0))
    op_names = {
        value: name
        for name, value in vars(fb.BuiltinOperator).items()
        if not name.startswith("_")
    }
    tensor_types = {
        value: name.lower()
        for name, value in vars(fb.TensorType).items()
        if not name.startswith("_")
    }
    op_counts = {}
    sparse_tensors = []
    for subgraph in model.subgraphs:
        consumers = {}
        for op in subgraph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            name = op_names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")
            op_counts[name] = op_counts.get(name, 0) + 1
            for index in op.inputs if op.inputs is not None else []:
                consumers.setdefault(int(index), []).append((name, op))
        for index, tensor in enumerate(subgraph.tensors):
            if tensor.sparsity is None:
                continue
            dtype = tensor_types.get(tensor.type, str(tensor.type))
            buffer = model.buffers[tensor.buffer].data
            itemsize = np.dtype(
                {"float16": "float16", "int8": "int8"}.get(dtype, "float32")
            ).itemsize
            stored = 0 if buffer is None else len(buffer) // itemsize
            size = int(np.prod(tensor.shape))
            block_map = tensor.sparsity.blockMap
            if block_map is None or len(block_map) == 0:
                encoding = "element-wise"
            else:
                dims = tensor.sparsity.dimMetadata[-len(block_map):]
                encoding = "blocks " + "x".join(
                    str(d.denseSize) for d in dims
                )
            users = consumers.get(index, [])
            densified = any(name == "DENSIFY" for name, _ in users)
            consumer = ",".join(name for name, _ in users)
            if densified:
                densify_op = next(op for name, op in users if name == "DENSIFY")
                consumer = ",".join(
                    name for name, _ in consumers.get(int(densify_op.outputs[0]), [])
                )
            sparse_tensors.append(
                SparseTensor(
                    name=tensor.name.decode() if tensor.name else str(index),
                    shape=[int(d) for d in tensor.shape],
                    dtype=dtype,
                    encoding=encoding,
                    stored_values=stored,
                    density=stored / size if size else 0.0,
                    densified=densified,
                    consumer=consumer,
                )
            )
    return TFLiteInspection(
        size_bytes=len(model_content),
        op_counts=op_counts,
        sparse_tensors=sparse_tensors,
    )
