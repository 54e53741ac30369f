"""Budget transfer: a layer-wise sparsity budget learned by one method, given to another."""

from keras_str.analysis.report import SparsityReport
from keras_str.core.arguments import check_number
from keras_str.analysis.report import sparsity_report


def layer_budget(model_or_report, min_params=0):
    """Returns `{layer_name: sparsity}` of a trained sparse model.

    STR learns how sparse each layer should be; this reads that budget so
    that another method can use it as its per-layer targets, e.g.
    `keras_str.GMP(..., layer_targets=layer_budget(str_model))` (the STR
    paper's budget transfer). Layer names survive `sparsify` and `strip`, so
    the budget applies to a fresh sparsified copy of the same dense model.

    Args:
        model_or_report: A built model (STR or stripped) or a
            `SparsityReport` of one.
        min_params: Leave out layers with fewer kernel weights than this.

    Returns:
        A dict from layer name to its fraction of zero kernel weights.

    Raises:
        ValueError: If `model_or_report` is neither a Keras model nor a
            `SparsityReport`, or `min_params` is not a non-negative integer.

    Example:

    >>> dense = keras.Sequential([keras.Input((16,)),
    ...     keras.layers.Dense(32, name="hidden"), keras.layers.Dense(4, name="logits")])
    >>> str_model = keras_str.sparsify(dense, threshold_init=-2.0, weight_decay=5e-4)
    >>> budget = keras_str.layer_budget(str_model)
    >>> sorted(budget)
    ['hidden', 'logits']
    >>> gmp = keras_str.GMP(0.9, keras_str.PolynomialSchedule(0, 100), layer_targets=budget)
    """
    min_params = check_number("min_params", min_params, integer=True, minimum=0)
    if isinstance(model_or_report, SparsityReport):
        report = model_or_report
    elif hasattr(model_or_report, "layers") or hasattr(model_or_report, "built"):
        report = sparsity_report(model_or_report)
    else:
        raise ValueError(
            "Expected a Keras model or a `keras_str.SparsityReport`. "
            f"Received: model_or_report={model_or_report!r}"
        )
    return {
        row.name: float(row.sparsity)
        for row in report.rows
        if row.params >= min_params
    }
