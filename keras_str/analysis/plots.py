"""PNG plots of a sparse model: layer-wise sparsity bars and training curves."""

import math

from keras_str.core.io_utils import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path):
    plt = _pyplot()
    with atomic_path(path) as tmp_path:
        figure.savefig(tmp_path, format="png", dpi=120, bbox_inches="tight")
    plt.close(figure)


def plot_layer_sparsity(report, path, title=None):
    """Bar chart of each layer's sparsity, with its share of the model's MACs.

    Args:
        report: A `keras_str.SparsityReport`.
        path: Where to write the PNG (written atomically).
        title: Optional figure title.

    Example:

    >>> keras_str.plot_layer_sparsity(keras_str.sparsity_report(model), "layers.png")
    """
    plt = _pyplot()
    names = [row.name for row in report.rows]
    sparsity = [100 * row.sparsity for row in report.rows]
    figure, axis = plt.subplots(figsize=(max(4.0, 0.45 * len(names) + 2), 3.6))
    bars = axis.bar(range(len(names)), sparsity, color="tab:blue")
    axis.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    axis.set_ylabel("sparsity (%)")
    axis.set_ylim(0, 105)
    for bar, row in zip(bars, report.rows):
        axis.annotate(
            f"{row.params:,}",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=6,
            rotation=90 if len(names) > 8 else 0,
        )
    totals = report.totals
    axis.set_title(
        title
        or f"overall {100 * totals['sparsity']:.2f}% sparse "
        f"(labels: weights per layer)"
    )
    _save(figure, path)


def plot_training_history(history, path, title=None):
    """Sparsity and accuracy per epoch, from a `History.history`-style dict.

    Uses the keys `sparsity` (as logged by `keras_str.SparsityMonitor`),
    `accuracy` and `val_accuracy` where present.

    Args:
        history: Dict of per-epoch lists (e.g. `model.fit(...).history`).
        path: Where to write the PNG (written atomically).
        title: Optional figure title.
    """
    if not isinstance(history, dict) or not any(
        key in history for key in ("sparsity", "accuracy", "val_accuracy")
    ):
        raise ValueError(
            "Expected a dict with per-epoch `sparsity`, `accuracy` or "
            f"`val_accuracy` lists. Received: history with keys "
            f"{sorted(history) if isinstance(history, dict) else history!r}"
        )
    plt = _pyplot()
    figure, left = plt.subplots(figsize=(5.5, 3.6))
    epochs = None
    for key, style in (("accuracy", "tab:green"), ("val_accuracy", "tab:olive")):
        if key in history:
            values = [100 * v for v in history[key]]
            epochs = range(1, len(values) + 1)
            left.plot(epochs, values, color=style, marker="o", label=key)
    left.set_xlabel("epoch")
    from matplotlib.ticker import MaxNLocator

    left.xaxis.set_major_locator(MaxNLocator(integer=True))
    left.set_ylabel("accuracy (%)")
    if "sparsity" in history:
        right = left.twinx()
        values = [100 * v for v in history["sparsity"]]
        right.plot(range(1, len(values) + 1), values, color="tab:red",
                   marker="s", label="sparsity")
        right.set_ylabel("sparsity (%)", color="tab:red")
        right.set_ylim(0, 100)
        right.legend(loc="lower right")
    left.legend(loc="lower left")
    if title:
        left.set_title(title)
    _save(figure, path)


def plot_tradeoff(rows, path, x_key, y_key="accuracy", group_key="method",
                  x_label=None, y_label="test accuracy (%)", title=None,
                  log_x=False, reference_lines=None):
    """One line per group of result rows, e.g. accuracy vs sparsity per method.

    Args:
        rows: List of dicts with `group_key`, `x_key` and `y_key`.
        path: Where to write the PNG (written atomically).
        x_key, y_key, group_key: The dict keys to plot and to group by.
        log_x: Plot x on a log scale (useful for MFLOPs).
        reference_lines: Optional `{label: y}` drawn as dashed horizontal
            lines (e.g. the dense model's accuracy).
    """
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(5.5, 3.8))
    groups = {}
    for row in rows:
        groups.setdefault(row[group_key], []).append(row)
    for group, members in groups.items():
        members = sorted(members, key=lambda r: r[x_key])
        xs = [r[x_key] for r in members if not math.isnan(r[y_key])]
        ys = [r[y_key] for r in members if not math.isnan(r[y_key])]
        axis.plot(xs, ys, marker="o", label=str(group))
    for label, value in (reference_lines or {}).items():
        axis.axhline(value, color="black", linestyle="--", linewidth=1, label=label)
    if log_x:
        from matplotlib.ticker import NullFormatter

        axis.set_xscale("log")
        axis.xaxis.set_minor_formatter(NullFormatter())
    axis.set_xlabel(x_label or x_key)
    axis.set_ylabel(y_label)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    if title:
        axis.set_title(title)
    _save(figure, path)
