"""Per-layer sparsity, thresholds, parameters and multiply-adds, as data."""

import dataclasses
import json
import math

import keras
import numpy as np

from keras_str.analysis.health import NEVER_TRAINED
from keras_str.analysis.health import never_trained
from keras_str.analysis.health import nonfinite_layers
from keras_str.analysis.health import unfinished_schedules
from keras_str.core.host import to_numpy
from keras_str.core.io_utils import write_text_atomic
from keras_str.core.kernel_specs import raw_kernel_variable
from keras_str.core.layer_walk import in_plain_blocks
from keras_str.core.layer_walk import iter_layers
from keras_str.core.layer_walk import weight_matrices
from keras_str.core.macs import has_unknown_positions
from keras_str.core.macs import uses_per_weight
from keras_str.layers.base import SparseKernelLayer
from keras_str.layers.base import is_kernel_layer
from keras_str.layers.batch_norm import STRBatchNormalization


@dataclasses.dataclass
class LayerSparsity:
    """One row of a `SparsityReport`.

    Attributes:
        name: The layer's path inside the model (`hidden`,
            `transformer_layer_0/self_attention/query`), unique in it.
        layer_class: The layer's class name.
        params: Kernel weights (the prunable ones; biases and normalization
            are not counted, as in the STR paper).
        nonzeros: Kernel weights that are not zero. For a low-rank layer
            (`keras_str.LowRankSTR`), what `strip` deploys: the two thin
            factors' weights when they are cheaper than the product.
        sparsity: `1 - nonzeros / params`.
        threshold: The mean current threshold of a sparse layer (`g(s)` for
            STR, `t` for ST-3); `None` for plain layers and GMP.
        dense_macs: Multiply-adds for the layer's input shape, per example
            (or per position, see `macs_per`); `None` when the input has
            unknown spatial dimensions.
        sparse_macs: `nonzeros * (dense_macs / params)`: density times the
            dense MACs.
        note: Why a layer is dense: `"kept dense"` (sparsifiable, left
            plain), `"no sparse version"` (its matrices, e.g. a generic RNN
            cell's, cannot be sparsified; `params` counts its weights of rank
            2 or more) or `"channels thresholded by <name>"` (the
            `keras_str.STRBatchNormalization` it feeds zeroes whole channels;
            `strip` removes the filters).
        rank: Singular values a low-rank layer keeps; otherwise `None`.
        full_rank: That layer's full rank; otherwise `None`.
        macs_per: `"example"`, or `"position"` where the layer's input has
            dimensions known only at run time (a transformer's sequence):
            its MACs are then per token, each unknown dimension counted as 1.

    Example:

    >>> model = keras.Sequential([keras.Input((8,)), keras_str.STRDense(4, name="hidden")])
    >>> row = keras_str.sparsity_report(model).rows[0]
    >>> row.name, row.params, row.dense_macs
    ('hidden', 32, 32)
    """

    name: str
    layer_class: str
    params: int
    nonzeros: int
    sparsity: float
    threshold: float | None
    dense_macs: int | None
    sparse_macs: int | None
    note: str = ""
    rank: int | None = None
    full_rank: int | None = None
    macs_per: str = "example"


@dataclasses.dataclass
class SparsityReport:
    """Per-layer rows, model totals and warnings; render with `table()` or `to_json()`.

    Attributes:
        rows: A `LayerSparsity` per kernel layer, sparse or dense.
        totals: Model totals: `params`, `nonzeros`, `sparsity`,
            `dense_macs`, `sparse_macs`, and the same over all parameters
            (biases and normalization included).
        warnings: What makes the numbers misleading: sparse layers holding
            NaN or inf, a schedule that has not reached its end step,
            sparse layers that never trained.

    Example:

    >>> model = keras.Sequential([keras.Input((8,)), keras_str.STRDense(4)])
    >>> report = keras_str.sparsity_report(model)
    >>> [row.name for row in report.rows], report.totals["sparsity"]
    (['str_dense'], 0.0)
    >>> report.to_json("report.json")
    """

    rows: list
    totals: dict
    warnings: list = dataclasses.field(default_factory=list)

    def to_dict(self):
        return {
            "layers": [dataclasses.asdict(row) for row in self.rows],
            "totals": dict(self.totals),
            "warnings": list(self.warnings),
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
            "note",
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
                    _note(row),
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
                "",
            )
        )
        lines.append(
            (
                "all parameters",
                "",
                f"{totals['all_params']:,}",
                f"{totals['all_nonzeros']:,}",
                f"{100 * totals['all_sparsity']:.2f}%",
                "",
                "",
                "",
                f"{100 * totals['dense_share']:.1f}% outside sparse kernels",
            )
        )
        widths = [
            max(len(str(line[i])) for line in [header] + lines)
            for i in range(len(header))
        ]

        def render(line):
            cells = [
                str(cell).ljust(width) if i < 2 or i == len(header) - 1
                else str(cell).rjust(width)
                for i, (cell, width) in enumerate(zip(line, widths))
            ]
            return "  ".join(cells).rstrip()

        rule = "-" * len(render(header))
        body = [render(line) for line in lines]
        warned = [f"warning: {warning}" for warning in self.warnings]
        return "\n".join([render(header), rule] + body[:-2] + [rule] + body[-2:] + warned)

    def __str__(self):
        return self.table()


def _note(row):
    notes = [row.note] if row.note else []
    if row.rank is not None:
        notes.insert(0, f"rank {row.rank}/{row.full_rank}")
    if row.macs_per == "position" and row.dense_macs is not None:
        notes.append("MACs per position")
    return "; ".join(notes)


def _format_count(count):
    if count is None:
        return "?"
    return f"{count:,}"


def sparsity_report(model):
    """Measures per-layer and total sparsity of a model's kernels.

    Covers every kernel layer keras-str can sparsify (the registry's:
    Dense, EinsumDense, convolutions, Embedding, ...), sparse or plain (so it
    also describes stripped models), descending into nested models and
    layers' sublayers; and, as rows noted `"no sparse version"`, every other
    layer holding matrices (LSTM/GRU cells, custom layers), so that the
    totals cover the model's matrices. The `"all parameters"` line adds
    biases and normalization weights (not the methods' training state).

    Args:
        model: A built Keras model (or a single built layer).

    Returns:
        A `SparsityReport`: `rows` (one `LayerSparsity` per layer with
        matrices) and `totals`: `params`, `nonzeros`, `sparsity`,
        `dense_macs`, `sparse_macs` over the rows; `all_params`,
        `all_nonzeros`, `all_sparsity` over every deployed weight;
        `dense_share` (the share of those outside sparse kernels: layers kept
        dense or without a sparse version, biases, normalization);
        `model_params` (every variable, training state included).

    Raises:
        ValueError: If the model is not built.

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
    layers = list(iter_layers(model))
    has_sparse = any(isinstance(layer, SparseKernelLayer) for layer in layers)
    in_dense_block = in_plain_blocks(layers)
    scaled_by = _batch_norms_by_producer(layers)
    rows, counted = [], set()
    for layer in layers:
        if is_kernel_layer(layer):
            row = _layer_row(layer)
            if id(layer) in scaled_by:
                row.note = f"channels thresholded by {scaled_by[id(layer)]}"
            elif has_sparse and not isinstance(layer, SparseKernelLayer):
                row.note = "kept dense"
            rows.append(row)
            counted.add(id(raw_kernel_variable(layer)))
            state = _method_state(layer)
            for variable in weight_matrices(layer):
                if id(variable) in counted or any(variable is v for v in state):
                    continue
                # A matrix beside the kernel (an untied output projection).
                extra = _unsupported_row(layer, [variable])
                extra.name = f"{extra.name}.{variable.name}"
                extra.note = "beside the sparse kernel: no sparse version"
                rows.append(extra)
                counted.add(id(variable))
        else:
            matrices = weight_matrices(layer)
            if matrices:
                row = _unsupported_row(layer, matrices)
                if has_sparse and id(layer) in in_dense_block:
                    row.note = "kept dense"
                rows.append(row)
                counted.update(id(v) for v in matrices)
    _relative_names(rows, model)
    warnings = _health_warnings(model, rows)
    params = sum(row.params for row in rows)
    nonzeros = sum(row.nonzeros for row in rows)
    known_macs = all(row.dense_macs is not None for row in rows)
    # Every other weight the deployed model keeps (biases, normalization),
    # not the methods' training state (thresholds, masks, step counters).
    state = {id(v) for layer in layers for v in _method_state(layer)}
    others = {
        id(v): v for v in model.weights if id(v) not in counted and id(v) not in state
    }
    other_params = sum(int(math.prod(v.shape)) for v in others.values())
    other_nonzeros = sum(
        int(np.count_nonzero(to_numpy(v))) for v in others.values()
    )
    all_params = params + other_params
    all_nonzeros = nonzeros + other_nonzeros
    dense_params = sum(row.params for row in rows if row.note) + other_params
    totals = {
        "params": params,
        "nonzeros": nonzeros,
        "sparsity": 1.0 - nonzeros / params if params else 0.0,
        "dense_macs": sum(r.dense_macs for r in rows) if known_macs else None,
        "sparse_macs": (
            sum(r.sparse_macs for r in rows) if known_macs else None
        ),
        "model_params": int(model.count_params()),
        "all_params": all_params,
        "all_nonzeros": all_nonzeros,
        "all_sparsity": 1.0 - all_nonzeros / all_params if all_params else 0.0,
        "dense_share": dense_params / all_params if all_params else 0.0,
        "macs_per": (
            "position" if any(row.macs_per == "position" for row in rows) else "example"
        ),
    }
    return SparsityReport(rows=rows, totals=totals, warnings=warnings)


def _health_warnings(model, rows):
    """What makes the rows misleading; non-finite rows get a note too."""
    nonfinite = nonfinite_layers(model, check_values=True)
    by_name = {row.name: row for row in rows}
    for layer in nonfinite:
        row = by_name.get(layer.name)
        if row is not None:
            row.note = "; ".join(filter(None, [row.note, "NaN or inf"]))
    warnings = [layer.describe() for layer in nonfinite]
    if never_trained(model):
        warnings.append(NEVER_TRAINED)
    else:
        warnings.extend(unfinished.describe() for unfinished in unfinished_schedules(model))
    return warnings


def _relative_names(rows, model):
    """Names rows by their layer's path inside `model` (unique; `hidden`, `block_0/attention/query`)."""
    prefix = f"{getattr(model, 'path', None) or model.name}/"
    for row in rows:
        if row.name.startswith(prefix):
            row.name = row.name[len(prefix):]


def _batch_norms_by_producer(layers):
    """`{id(layer): name}` of the thresholded BatchNormalization each layer feeds."""
    found = {}
    for layer in layers:
        producer = layer.producer() if isinstance(layer, STRBatchNormalization) else None
        if producer is not None:
            found[id(producer)] = layer.name
    return found


def _method_state(layer):
    if not isinstance(layer, SparseKernelLayer) or not layer.built:
        return []
    state = list((layer.sparsity_state or {}).values())
    step = getattr(layer, "sparsity_step", None)
    return state + ([step] if step is not None else [])


def _row(layer, params, nonzeros, threshold=None, positions=None, note="", rank=None,
         full_rank=None):
    return LayerSparsity(
        name=layer.path or layer.name,
        layer_class=layer.__class__.__name__,
        params=params,
        nonzeros=nonzeros,
        sparsity=1.0 - nonzeros / params if params else 0.0,
        threshold=threshold,
        dense_macs=None if positions is None else params * positions,
        sparse_macs=None if positions is None else nonzeros * positions,
        note=note,
        rank=rank,
        full_rank=full_rank,
    )


def _unsupported_row(layer, matrices):
    params = sum(int(math.prod(v.shape)) for v in matrices)
    nonzeros = sum(
        int(np.count_nonzero(to_numpy(v))) for v in matrices
    )
    return _row(layer, params, nonzeros, note="no sparse version")


def _layer_row(layer):
    rank = full_rank = None
    if isinstance(layer, SparseKernelLayer):
        kernel = to_numpy(layer.thresholded_kernel())
        nonzeros = int(np.count_nonzero(kernel))
        threshold = layer.threshold
        if threshold is not None:
            threshold = float(np.mean(to_numpy(threshold)))
        factors = layer.method.factors(layer)
        if factors is not None:
            left, right = factors
            rank, full_rank = int(left.shape[1]), int(layer.method.full_rank(layer))
            # What strip deploys: a Dense as two thin layers when cheaper.
            thin = left.size + right.size
            if layer.kernel_spec.keras_class is keras.layers.Dense and 0 < thin < kernel.size:
                nonzeros = int(thin)
    else:
        kernel = to_numpy(raw_kernel_variable(layer))
        nonzeros = int(np.count_nonzero(kernel))
        threshold = None
    # A BatchNormalization's channel scales cost no multiply-adds of their
    # own; the producing layer's row counts its filters.
    batch_norm = isinstance(layer, keras.layers.BatchNormalization)
    positions = 0 if batch_norm else uses_per_weight(layer)
    macs_per = "example"
    if positions is None and has_unknown_positions(layer):
        positions = uses_per_weight(layer, per_position=True)
        macs_per = "position"
    row = _row(
        layer,
        int(kernel.size),
        nonzeros,
        threshold=threshold,
        positions=positions,
        rank=rank,
        full_rank=full_rank,
    )
    row.macs_per = macs_per
    return row
