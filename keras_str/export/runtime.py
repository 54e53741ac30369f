"""What LiteRT does with each layer's zeros: the per-layer statement of `export_tflite`."""

from keras_str.export.flatbuffer import buffer_values
from keras_str.export.flatbuffer import sparse_encoding
from keras_str.export.xnnpack_rules import _Graph


def layer_runtime(model_content, layer_names, verdict, removed_channels=None, kernel_layers=()):
    """`{layer name: what the runtime does with its weights}` for a `.tflite`.

    Reads the file: a weight tensor consumed in TFLite's sparse format runs
    a sparse kernel (FULLY_CONNECTED with 1x4 / 1x16 blocks); one expanded
    by DENSIFY at load is computed densely, except 1x1 convolutions of a
    model XNNPACK's sparse inference accepts, which run sparse on ARM CPUs
    (never on x86 with AVX); other weights are dense. Channels removed by
    `keras_str.strip` (`removed_channels`, `{name: (removed, before)}`) are
    named first: they cost nothing anywhere.

    Args:
        model_content: The `.tflite` bytes.
        layer_names: The exported Keras model's layer names.
        verdict: `check_xnnpack_sparse`'s verdict on the file.
        removed_channels: Optional `{layer name: (removed, original)}`.
        kernel_layers: `(name, kernel shape)` of the model's kernel layers,
            in model order, to tell which op computes which layer.

    Returns:
        A dict, in the order the ops run.
    """
    graph = _Graph(model_content, layer_names, kernel_layers)
    statements = {}
    for name, op in graph.weighted_ops:
        layer = graph.label(op)
        weights = int(op.inputs[1])
        producer = graph.producer.get(weights)
        densified = producer is not None and producer[0] == "DENSIFY"
        tensor = graph.tensor(producer[1].inputs[0] if densified else weights)
        zeros = _zero_fraction(graph, tensor)
        kernel_shape = [int(d) for d in graph.tensor(weights).shape]
        pointwise = name == "CONV_2D" and kernel_shape[1:3] == [1, 1]
        if densified:
            if pointwise and verdict.eligible:
                text = (
                    "stored sparse; on ARM, XNNPACK's sparse 1x1 convolution "
                    "(SpMM) skips the zeros; on x86 (AVX) it is densified at "
                    "load and runs dense"
                )
            else:
                text = "stored sparse, densified at load: computed dense (smaller file, same speed)"
        elif tensor.sparsity is not None:
            encoding = sparse_encoding(tensor)
            text = f"sparse {name} kernel ({encoding}): the zeros are skipped on every CPU"
        elif zeros is not None and zeros > 0:
            text = f"dense ({100 * zeros:.0f} % zeros stored and computed)"
        else:
            text = "dense"
        statements.setdefault(layer, f"{name}: {text}")
    for layer, (removed, before) in (removed_channels or {}).items():
        if removed:
            prefix = f"{removed} of {before} output channels removed by strip"
            statements[layer] = (
                f"{prefix}; {statements[layer]}" if layer in statements else prefix
            )
    return statements


def _zero_fraction(graph, tensor):
    if tensor.sparsity is not None:
        return None
    values = buffer_values(graph.model, tensor)
    if values is None or values.size == 0:
        return None
    return float((values == 0).mean())

