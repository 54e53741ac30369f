"""The .tflite flatbuffer: its operators, its sparse weights, and rewriting them dense."""

import dataclasses
import functools

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


def schema():
    """TFLite's generated flatbuffer schema module (from TensorFlow)."""
    from tensorflow.lite.python import schema_py_generated

    return schema_py_generated


def parse(model_content):
    """The `.tflite` bytes as the schema's mutable object tree (`ModelT`)."""
    fb = schema()
    return fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(model_content, 0))


def serialize(model, size_hint=0):
    """The `.tflite` bytes of a `ModelT` tree (`parse`'s inverse)."""
    import flatbuffers

    builder = flatbuffers.Builder(size_hint + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


@functools.cache
def _builtin_names():
    return {
        value: name
        for name, value in vars(schema().BuiltinOperator).items()
        if not name.startswith("_")
    }


def op_name(model, op):
    """The builtin operator name of `op` ("CONV_2D", "DENSIFY", ...)."""
    code = model.operatorCodes[op.opcodeIndex]
    return _builtin_names().get(
        max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM"
    )


def node_outputs(model_content, node):
    """`(op name, [output tensor names])` of LiteRT's node `node` in the main subgraph, or None.

    LiteRT numbers a model's nodes as its first subgraph's operators.
    """
    model = parse(model_content)
    operators = model.subgraphs[0].operators if model.subgraphs else []
    if not 0 <= node < len(operators):
        return None
    op = operators[node]
    tensors = model.subgraphs[0].tensors
    names = [
        (tensors[int(i)].name or b"").decode(errors="replace")
        for i in (op.outputs if op.outputs is not None else [])
    ]
    return op_name(model, op), names


@functools.cache
def _tensor_dtypes():
    types = schema().TensorType
    return {
        types.FLOAT32: np.float32,
        types.FLOAT16: np.float16,
        types.INT8: np.int8,
        types.INT32: np.int32,
        types.INT64: np.int64,
    }


def tensor_dtype(tensor):
    """The numpy dtype of a tensor's stored values, or None if unsupported."""
    return _tensor_dtypes().get(tensor.type)


def _dtype_name(tensor):
    dtype = tensor_dtype(tensor)
    return np.dtype(dtype).name if dtype is not None else f"type{tensor.type}"


def buffer_values(model, tensor):
    """A constant tensor's stored values as a 1-D numpy array, or None."""
    data = model.buffers[tensor.buffer].data
    dtype = tensor_dtype(tensor)
    if data is None or len(data) == 0 or dtype is None:
        return None
    return np.frombuffer(bytes(bytearray(data)), dtype=dtype)


def sparse_encoding(tensor):
    """How a sparse tensor is stored: `"element-wise"` or `"blocks RxC"`."""
    block_map = tensor.sparsity.blockMap
    if block_map is None or len(block_map) == 0:
        return "element-wise"
    dims = tensor.sparsity.dimMetadata[-len(block_map):]
    return "blocks " + "x".join(str(d.denseSize) for d in dims)


def inspect_tflite(model_content):
    """Lists the operators and sparse tensors of a `.tflite` model (bytes)."""
    model = parse(model_content)
    op_counts = {}
    sparse_tensors = []
    for subgraph in model.subgraphs:
        consumers = {}
        for op in subgraph.operators:
            name = op_name(model, op)
            op_counts[name] = op_counts.get(name, 0) + 1
            for index in op.inputs if op.inputs is not None else []:
                consumers.setdefault(int(index), []).append((name, op))
        for index, tensor in enumerate(subgraph.tensors):
            if tensor.sparsity is None:
                continue
            values = buffer_values(model, tensor)
            stored = 0 if values is None else values.size
            size = int(np.prod(tensor.shape))
            encoding = sparse_encoding(tensor)
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
                    dtype=_dtype_name(tensor),
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


def _index_vector(vector):
    """The values of a DimensionMetadata segments/indices union."""
    if vector is None:
        return None
    return np.asarray(vector.values, dtype=np.int64)


def decode_sparse(tensor, values):
    """Expands TFLite's sparse encoding of `tensor` into a dense numpy array.

    Args:
        tensor: A `TensorT` with `sparsity` set.
        values: The stored values (numpy, 1-D), in traversal order, or
            `None` for a tensor with no nonzero (its buffer is empty).

    Returns:
        The dense array, shaped `tensor.shape`.
    """
    if values is None:
        values = np.zeros(0, dtype=tensor_dtype(tensor) or np.float32)
    sparsity = tensor.sparsity
    shape = [int(d) for d in tensor.shape]
    rank = len(shape)
    traversal = [int(d) for d in sparsity.traversalOrder]
    block_map = [int(d) for d in (sparsity.blockMap if sparsity.blockMap is not None else [])]
    metadata = sparsity.dimMetadata
    dense_format = schema().DimensionType.DENSE
    block_sizes = {
        dim: int(metadata[traversal.index(rank + j)].denseSize)
        for j, dim in enumerate(block_map)
    }
    # Walk the levels breadth-first with one row per node, so that the
    # nodes stay in traversal order (the order of `values`).
    coordinates = np.zeros((1, 0), dtype=np.int64)
    positions = np.zeros((1,), dtype=np.int64)
    for meta in metadata:
        if meta.format == dense_format:
            size = int(meta.denseSize)
            children = np.tile(np.arange(size, dtype=np.int64), len(positions))
            parents = np.repeat(np.arange(len(positions)), size)
            positions = positions[parents] * size + children
        else:
            segments = _index_vector(meta.arraySegments)
            indices = _index_vector(meta.arrayIndices)
            starts = segments[positions]
            counts = segments[positions + 1] - starts
            parents = np.repeat(np.arange(len(positions)), counts)
            offsets = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
            positions = starts[parents] + offsets
            children = indices[positions]
        coordinates = np.concatenate([coordinates[parents], children[:, None]], axis=1)
    index = []
    for dim in range(rank):
        outer = coordinates[:, traversal.index(dim)]
        if dim in block_sizes:
            inner = coordinates[:, traversal.index(rank + block_map.index(dim))]
            outer = outer * block_sizes[dim] + inner
        index.append(outer)
    dense = np.zeros(shape, dtype=values.dtype)
    dense[tuple(index)] = values
    return dense




def store_dense(model_content, should_store_dense):
    """Rewrites the sparse weights that `should_store_dense(row)` picks as dense.

    Each picked tensor gets its decoded values in place of the sparse
    buffer; if a DENSIFY op expanded it, that op is removed and its
    consumers read the dense constant directly.

    Args:
        model_content: The `.tflite` bytes.
        should_store_dense: `fn(SparseTensor) -> bool`, given the inspection
            row of each sparse tensor.

    Returns:
        `(new_content, names)`: the rewritten bytes and the names of the
        tensors now stored dense.
    """
    rows = {t.name: t for t in inspect_tflite(model_content).sparse_tensors}
    model = parse(model_content)
    readers = {}
    for subgraph in model.subgraphs:
        for tensor in subgraph.tensors:
            readers[tensor.buffer] = readers.get(tensor.buffer, 0) + 1
    stored_dense = []
    for subgraph in model.subgraphs:
        for index, tensor in enumerate(subgraph.tensors):
            name = tensor.name.decode() if tensor.name else str(index)
            row = rows.get(name)
            if tensor.sparsity is None or row is None or not should_store_dense(row):
                continue
            dense = decode_sparse(tensor, buffer_values(model, tensor))
            data = np.frombuffer(dense.tobytes(), dtype=np.uint8)
            if readers[tensor.buffer] > 1:
                # Another tensor keeps reading the sparse values.
                model.buffers.append(schema().BufferT())
                tensor.buffer = len(model.buffers) - 1
                readers[tensor.buffer] = 1
            model.buffers[tensor.buffer].data = data
            tensor.sparsity = None
            stored_dense.append(name)
        renamed = {}
        kept_ops = []
        for op in subgraph.operators:
            source = int(op.inputs[0]) if op.inputs is not None else -1
            if (
                op_name(model, op) == "DENSIFY"
                and subgraph.tensors[source].sparsity is None
            ):
                renamed[int(op.outputs[0])] = source
                continue
            kept_ops.append(op)
        for op in kept_ops:
            if op.inputs is not None:
                op.inputs = np.asarray(
                    [renamed.get(int(i), int(i)) for i in op.inputs],
                    dtype=np.int32,
                )
        subgraph.operators = kept_ops
        if subgraph.outputs is not None:
            subgraph.outputs = np.asarray(
                [renamed.get(int(i), int(i)) for i in subgraph.outputs],
                dtype=np.int32,
            )
    if not stored_dense:
        return model_content, []
    return serialize(model, len(model_content)), stored_dense
