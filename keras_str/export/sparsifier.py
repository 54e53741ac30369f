"""TFLite's sparsifier on a plain .tflite file, with the weights it cannot encode by itself.

The converter's sparsifier (TF 2.21) encodes the exact zeros of the
weights that convolutions and FULLY_CONNECTED read, and
- fails ("operand does not dominate this use") on a weight two ops read,
  such as a tied embedding's table, read by the token lookup (GATHER) and
  by the projection to logits (FULLY_CONNECTED);
- leaves a table that only a lookup reads (an untied token embedding)
  dense, however many zeros it has.
`sparsify` runs it on a copy of the plain file in which every reader of a
weight has its own copy and every lookup table is also read by a lent
FULLY_CONNECTED; it then drops the lent readers and lets every copy the
sparsifier left dense read the expanded (DENSIFY) one instead, so the file
holds each weight once, sparse where it has the zeros.
"""

import copy
import hashlib

import numpy as np

from keras_str.export.flatbuffer import buffer_values
from keras_str.export.flatbuffer import decode_sparse
from keras_str.export.flatbuffer import op_name
from keras_str.export.flatbuffer import parse
from keras_str.export.flatbuffer import schema
from keras_str.export.flatbuffer import serialize

# Names the lent readers' tensors start with.
LENT = b"keras_str/lent_reader"


def _is_constant(model, tensor):
    data = model.buffers[tensor.buffer].data
    return data is not None and len(data) > 0


def _is_weight(model, tensor):
    """A constant of rank 2 or more: what the sparsifier may encode (not shapes or axes)."""
    return (
        tensor.sparsity is None
        and tensor.shape is not None
        and len(tensor.shape) >= 2
        and _is_constant(model, tensor)
    )


def _readers(subgraph, model):
    """`{tensor index: [(op name, input slot), ...]}` over the subgraph's ops."""
    readers = {}
    for op in subgraph.operators:
        for slot, index in enumerate(op.inputs if op.inputs is not None else []):
            if index >= 0:
                readers.setdefault(int(index), []).append((op_name(model, op), slot))
    return readers


def _opcode(model, builtin):
    """The index of `builtin`'s operator code in `model`, added if missing."""
    fb = schema()
    for index, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
            return index
    code = fb.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = builtin
    code.version = 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _new_tensor(model, subgraph, shape, name, data=None):
    fb = schema()
    buffer = fb.BufferT()
    buffer.data = data
    model.buffers.append(buffer)
    tensor = fb.TensorT()
    tensor.shape = list(shape)
    tensor.type = fb.TensorType.FLOAT32
    tensor.buffer = len(model.buffers) - 1
    tensor.name = name
    subgraph.tensors.append(tensor)
    return len(subgraph.tensors) - 1


def lend_readers(model_content):
    """Adds a FULLY_CONNECTED, read by nothing, to each float32 table only lookups read.

    The sparsifier then encodes the table's zeros for it; `retie` drops it.
    Returns `(new_content, count)`.
    """
    fb = schema()
    model = parse(model_content)
    lent = 0
    for subgraph in model.subgraphs:
        readers = _readers(subgraph, model)
        for index, tensor in enumerate(list(subgraph.tensors)):
            uses = readers.get(index)
            if (
                not uses
                or any(use != ("GATHER", 0) for use in uses)
                or tensor.type != fb.TensorType.FLOAT32
                or not _is_weight(model, tensor)
                or len(tensor.shape) != 2
            ):
                continue
            rows, width = (int(d) for d in tensor.shape)
            zeros = np.zeros(4 * width, dtype=np.uint8)
            source = _new_tensor(model, subgraph, (1, width), LENT + b"/input", zeros)
            output = _new_tensor(model, subgraph, (1, rows), LENT)
            op = fb.OperatorT()
            op.opcodeIndex = _opcode(model, fb.BuiltinOperator.FULLY_CONNECTED)
            op.inputs = np.asarray([source, index, -1], dtype=np.int32)
            op.outputs = np.asarray([output], dtype=np.int32)
            op.builtinOptionsType = fb.BuiltinOptions.FullyConnectedOptions
            op.builtinOptions = fb.FullyConnectedOptionsT()
            subgraph.operators.append(op)
            lent += 1
    if not lent:
        return model_content, 0
    return serialize(model, len(model_content)), lent


def _drop_lent_readers(model, subgraph):
    """Removes the lent readers, then any DENSIFY whose output nothing reads any more.

    A lent reader is a FULLY_CONNECTED whose output nothing reads (the
    converter leaves no such op).
    """

    def read():
        return set(_readers(subgraph, model)) | {int(i) for i in subgraph.outputs}

    outputs = read()
    subgraph.operators = [
        op for op in subgraph.operators
        if op_name(model, op) != "FULLY_CONNECTED" or int(op.outputs[0]) in outputs
    ]
    outputs = read()
    subgraph.operators = [
        op for op in subgraph.operators
        if op_name(model, op) != "DENSIFY" or int(op.outputs[0]) in outputs
    ]


def untie(model_content):
    """Gives every op reading a shared constant its own copy of it.

    Returns `(new_content, count)`: the rewritten bytes and how many copies
    were added (0: the bytes are returned unchanged).
    """
    model = parse(model_content)
    copies = 0
    for subgraph in model.subgraphs:
        readers = {}
        for op in subgraph.operators:
            if op.inputs is None:
                continue
            for slot, index in enumerate(op.inputs):
                index = int(index)
                if index >= 0 and _is_weight(model, subgraph.tensors[index]):
                    readers.setdefault(index, []).append((op, slot))
        for index, uses in readers.items():
            for op, slot in uses[1:]:
                tensor = copy.deepcopy(subgraph.tensors[index])
                buffer = copy.deepcopy(model.buffers[tensor.buffer])
                model.buffers.append(buffer)
                tensor.buffer = len(model.buffers) - 1
                subgraph.tensors.append(tensor)
                inputs = np.array(op.inputs, dtype=np.int32)  # Parsed arrays are read-only.
                inputs[slot] = len(subgraph.tensors) - 1
                op.inputs = inputs
                copies += 1
    if not copies:
        return model_content, 0
    return serialize(model, len(model_content)), copies


def _key(values, tensor):
    """Identifies a weight by dtype, shape, quantization and values, with -0.0 counted as 0.0.

    A pruned weight is often -0.0 where the sparse encoding keeps no sign.
    """
    values = np.where(values == 0, np.zeros((), values.dtype), values)
    quantization = tensor.quantization
    scales = ()
    if quantization is not None and quantization.scale is not None and len(quantization.scale):
        scales = tuple(
            tuple(np.asarray(v).ravel().tolist()) if v is not None else None
            for v in (quantization.scale, quantization.zeroPoint)
        ) + (quantization.quantizedDimension,)
    return (
        values.dtype.str,
        tuple(int(d) for d in tensor.shape),
        scales,
        hashlib.sha1(values.tobytes()).hexdigest(),
    )


def _live_tensors(subgraph):
    """Indices of the tensors an op or the subgraph's signature uses."""
    live = set()
    for op in subgraph.operators:
        for indices in (op.inputs, op.outputs, op.intermediates):
            live.update(int(i) for i in (indices if indices is not None else []) if i >= 0)
    for indices in (subgraph.inputs, subgraph.outputs):
        live.update(int(i) for i in (indices if indices is not None else []))
    return live


def retie(model_content):
    """Undoes `untie` and `lend_readers` once the sparsifier ran: every weight is stored once again.

    A dense weight equal to a sparse one that a DENSIFY op expands reads
    that op's output instead, and so do the readers of an equal sparse copy
    (its DENSIFY goes); a dense weight equal to another dense one shares
    its buffer (the plain file may already hold one weight as two tensors
    on one buffer, which the sparsifier reads as two weights). The lent
    readers go, with a DENSIFY only they read; then the tensors and
    buffers nothing uses. DENSIFY ops move to the front of their subgraph
    (their inputs are constants), so that every reader runs after them:
    the sparsifier places one before the reader it saw, which need not be
    the first. Returns `(new_content, count)` with the number of weights no
    longer stored twice.
    """
    model = parse(model_content)
    merged = 0
    changed = False
    for subgraph in model.subgraphs:
        expanded = {}
        twins = {}
        for op in subgraph.operators:
            if op_name(model, op) == "DENSIFY":
                source = subgraph.tensors[int(op.inputs[0])]
                output = subgraph.tensors[int(op.outputs[0])]
                dense = decode_sparse(source, buffer_values(model, source))
                key = _key(dense.reshape(-1), output)
                if key in expanded:
                    # Copies `untie` made, each encoded: the first serves all.
                    twins[int(op.outputs[0])] = expanded[key]
                else:
                    expanded[key] = op
        renamed = {}
        stored = {}
        for index, tensor in enumerate(subgraph.tensors):
            if not _is_weight(model, tensor):
                continue
            values = buffer_values(model, tensor)
            if values is None:  # A dtype keras-str does not read.
                continue
            key = _key(values, tensor)
            if key in expanded:
                densify = expanded[key]
                renamed[index] = int(densify.outputs[0])
                source = subgraph.tensors[int(densify.inputs[0])]
                if (source.name or b"").startswith(LENT):
                    # The sparsifier named the copy after the lent reader.
                    source.name = tensor.name
                    subgraph.tensors[renamed[index]].name = (tensor.name or b"") + b"/densified"
                merged += 1
            elif key in stored and stored[key] != tensor.buffer:
                tensor.buffer = stored[key]
                merged += 1
            else:
                stored[key] = tensor.buffer
        renamed.update({output: int(first.outputs[0]) for output, first in twins.items()})
        merged += len(twins)
        if renamed:
            for op in subgraph.operators:
                if op.inputs is not None:
                    op.inputs = np.asarray(
                        [renamed.get(int(i), int(i)) for i in op.inputs], dtype=np.int32
                    )
        count = len(subgraph.operators)
        _drop_lent_readers(model, subgraph)
        order = sorted(subgraph.operators, key=lambda op: op_name(model, op) != "DENSIFY")
        changed = (
            changed
            or len(order) != count
            or any(a is not b for a, b in zip(order, subgraph.operators))
        )
        subgraph.operators = order
    if not merged and not changed:
        return model_content, 0
    _compact(model)
    return serialize(model, len(model_content)), merged


def _compact(model):
    """Removes the tensors no op or signature uses, and the buffers no tensor or metadata does."""
    for position, subgraph in enumerate(model.subgraphs):
        live = sorted(_live_tensors(subgraph))
        index = {old: new for new, old in enumerate(live)}

        def renumber(indices):
            if indices is None:
                return None
            return np.asarray([index[int(i)] if i >= 0 else -1 for i in indices], dtype=np.int32)

        for op in subgraph.operators:
            op.inputs, op.outputs = renumber(op.inputs), renumber(op.outputs)
            if op.intermediates is not None and len(op.intermediates):
                op.intermediates = renumber(op.intermediates)
        subgraph.inputs, subgraph.outputs = renumber(subgraph.inputs), renumber(subgraph.outputs)
        for signature in model.signatureDefs or []:
            if signature.subgraphIndex == position:
                for entry in list(signature.inputs or []) + list(signature.outputs or []):
                    entry.tensorIndex = index[int(entry.tensorIndex)]
        subgraph.tensors = [subgraph.tensors[i] for i in live]
    used = [0]  # Buffer 0 is the schema's empty sentinel.
    used += [entry.buffer for entry in model.metadata or []]
    used += [int(i) for i in (model.metadataBuffer if model.metadataBuffer is not None else [])]
    used += [t.buffer for subgraph in model.subgraphs for t in subgraph.tensors]
    kept = sorted(set(used))
    index = {old: new for new, old in enumerate(kept)}
    model.buffers = [model.buffers[i] for i in kept]
    for entry in model.metadata or []:
        entry.buffer = index[entry.buffer]
    if model.metadataBuffer is not None:
        model.metadataBuffer = [index[int(i)] for i in model.metadataBuffer]
    for subgraph in model.subgraphs:
        for tensor in subgraph.tensors:
            tensor.buffer = index[tensor.buffer]


def sparsify(plain_content):
    """The plain `.tflite` bytes with the exact zeros of every weight sparse-encoded.

    Returns `(content, lent)`: the sparse-encoded bytes and the number of
    lookup tables that were lent a reader for the sparsifier.
    """
    from tensorflow.lite.python.convert import mlir_sparsify

    lent, count = lend_readers(plain_content)
    untied, _ = untie(lent)
    content, _ = retie(bytes(mlir_sparsify(untied)))
    return content, count
