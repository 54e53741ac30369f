"""Per-layer sparsity, thresholds, parameters and multiply-adds, as data."""

import dataclasses
import json
import math

import keras
import numpy as np

from keras_str.io_utils import write_text_atomic
from keras_str.layers.base import SparseKernelLayer
from keras_str.layers.registry import is_kernel_layer
from keras_str.layers.registry import iter_layers
from keras_str.layers.registry import raw_kernel_variable


@dataclasses.dataclass
class LayerSparsity:
    """One row of a `SparsityReport`.

    `params` and `nonzeros` count kernel weights (the prunable ones; biases
    and normalization are not counted, as in the STR paper). Multiply-adds
    are per example for the layer's input shape; `sparse_macs` is
    `nonzeros * (dense_macs / params)`, i.e. density times dense MACs. Both
    are `None` when the input shape has unknown spatial dimensions.
    `threshold` is the mean current threshold of a sparse layer (`g(s)` for
    STR, `t` for ST-3) and `None` for plain layers and GMP.
    """

    name: str
    layer_class: str
    params: int
    nonzeros: int
    sparsity: float
    threshold: float | None
    dense_macs: int | None
    sparse_macs: int | None


@dataclasses.dataclass
class SparsityReport:
    """Per-layer rows and model totals; render with `table()` or `to_json()`."""

    rows: list
    totals: dict

    def to_dict(self):
        return {
            "layers": [dataclasses.asdict(row) for row in self.rows],
            "totals": dict(self.totals),
        }

    def to_json(self, path=None, indent=2):
        """Returns the report as JSON text; also writes it to `path` if given."""
        text = json.dumps(self.to_dict(), indent=indent)
        if path is not None:
            write_text_atomic(path, text + "\n")
        return text

    def table(self):
        """Returns the report as a fixed-width text table."""
        header = (
            "layer",
            "class",
            "params",
            "nonzeros",
            "sparsity",
            "threshold",
            "dense MACs",
            "sparse MACs",
        )
        lines = []
        for row in self.rows:
            lines.append(
                (
                    row.name,
                    row.layer_class,
                    f"{row.params:,}",
                    f"{row.nonzeros:,}",
                    f"{100 * row.sparsity:.2f}%",
                    "-" if row.threshold is None else f"{row.threshold:.4g}",
                    _format_count(row.dense_macs),
                    _format_count(row.sparse_macs),
                )
            )
        totals = self.totals
        lines.append(
            (
                "total",
                "",
                f"{totals['params']:,}",
                f"{totals['nonzeros']:,}",
                f"{100 * totals['sparsity']:.2f}%",
                "",
                _format_count(totals["dense_macs"]),
                _format_count(totals["sparse_macs"]),
            )
        )
        widths = [
            max(len(str(line[i])) for line in [header] + lines)
            for i in range(len(header))
        ]

        def render(line):
            cells = [
                str(cell).ljust(width) if i < 2 else str(cell).rjust(width)
                for i, (cell, width) in enumerate(zip(line, widths))
            ]
            return "  ".join(cells).rstrip()

        rule = "-" * len(render(header))
        body = [render(line) for line in lines]
        return "\n".join([render(header), rule] + body[:-1] + [rule, body[-1]])

    def __str__(self):
        return self.table()


def _format_count(count):
    if count is None:
        return "?"
    return f"{count:,}"


def sparsity_report(model):
    """Measures per-layer and total sparsity of a model's kernels.

    Covers every Dense, Conv1D, Conv2D and DepthwiseConv2D layer, STR or
    plain (so it also describes stripped models and layers kept dense),
    descending into nested models.

    Args:
        model: A built Keras model (or a single built layer).

    Returns:
        A `SparsityReport`: `rows` (one `LayerSparsity` per kernel layer) and
        `totals` (`params`, `nonzeros`, `sparsity`, `dense_macs`,
        `sparse_macs`, `model_params`: every weight of the model).

    Example:

    >>> model = keras.Sequential([keras.Input((8,)), keras_str.STRDense(4)])
    >>> report = keras_str.sparsity_report(model)
    >>> print(report.table())
    >>> report.totals["sparsity"]
    0.0
    """
    if not getattr(model, "built", False):
        raise ValueError(
            "The model must be built before its sparsity can be measured; "
            "call it on data or create it with `keras.Input`. "
            f"Received: model={model.name!r} (not built)"
        )
    rows = [_layer_row(layer) for layer in iter_layers(model)
            if is_kernel_layer(layer)]
    params = sum(row.params for row in rows)
    nonzeros = sum(row.nonzeros for row in rows)
    known_macs = all(row.dense_macs is not None for row in rows)
    totals = {
        "params": params,
        "nonzeros": nonzeros,
        "sparsity": 1.0 - nonzeros / params if params else 0.0,
        "dense_macs": sum(r.dense_macs for r in rows) if known_macs else None,
        "sparse_macs": (
            sum(r.sparse_macs for r in rows) if known_macs else None
        ),
        "model_params": int(model.count_params()),
    }
    return SparsityReport(rows=rows, totals=totals)


def _layer_row(layer):
    if isinstance(layer, SparseKernelLayer):
        kernel = keras.ops.convert_to_numpy(layer.thresholded_kernel())
        threshold = layer.threshold
        if threshold is not None:
            threshold = float(np.mean(keras.ops.convert_to_numpy(threshold)))
    else:
        kernel = keras.ops.convert_to_numpy(raw_kernel_variable(layer))
        threshold = None
    params = int(kernel.size)
    nonzeros = int(np.count_nonzero(kernel))
    positions = _output_positions(layer)
    return LayerSparsity(
        name=layer.name,
        layer_class=layer.__class__.__name__,
        params=params,
        nonzeros=nonzeros,
        sparsity=1.0 - nonzeros / params if params else 0.0,
        threshold=threshold,
        dense_macs=None if positions is None else params * positions,
        sparse_macs=None if positions is None else nonzeros * positions,
    )


def _input_shape(layer):
    try:
        return tuple(layer.input.shape)
    except (AttributeError, ValueError):
        pass
    # Layers called outside a functional graph remember their build shape.
    shapes = getattr(layer, "_build_shapes_dict", None) or {}
    if len(shapes) == 1:
        return tuple(next(iter(shapes.values())))
    return None


def _output_positions(layer):
    """How many times each kernel weight is used per example."""
    input_shape = _input_shape(layer)
    if input_shape is None:
        return None
    if isinstance(layer, keras.layers.Dense):
        spatial = input_shape[1:-1]
    else:
        output_shape = layer.compute_output_shape(input_shape)
        if layer.data_format == "channels_first":
            spatial = output_shape[2:]
        else:
            spatial = output_shape[1:-1]
    if any(dim is None for dim in spatial):
        return None
    return int(math.prod(spatial))
