"""The plain file with its zeros sparse-encoded, and dense again wherever LiteRT cannot run that right."""

import numpy as np

from keras_str.export.flatbuffer import inspect_tflite
from keras_str.export.flatbuffer import store_dense
from keras_str.export.litert import LiteRTError
from keras_str.export.litert import run_tflite
from keras_str.export.sparsifier import sparsify


def sparsified(plain_content):
    """The plain file with its exact zeros sparse-encoded, or why that failed (a str).

    This is what the converter's `EXPERIMENTAL_SPARSITY` does after
    converting, except that a constant several ops read (a tied embedding's
    table, read by the token lookup and by the projection to logits) is
    encoded once instead of failing (`sparsifier`).
    """
    try:
        return sparsify(plain_content)[0]
    except RuntimeError as error:  # The sparsifier's only error type.
        return f"TFLite's sparsifier failed: {type(error).__name__}: {str(error)[:300]}"


def _tolerance(precision, reference):
    """How far the sparse file's outputs may be from the plain file's: rounding, not a wrong kernel.

    Relative to the outputs' own scale (small logits get no absolute slack).
    """
    scale = float(np.max(np.abs(reference))) if reference.size else 0.0
    relative = 1e-4 if precision in ("float32", "float16") else 2e-2
    return relative * scale + 1e-6


def loadable_sparse(content, reference, check_inputs, precision):
    """Stores dense whatever LiteRT cannot load or computes wrongly.

    Returns `(content, {tensor name: reason}, max |sparse - non-sparse|)`;
    `content` is `None` when no sparse file runs correctly (the caller
    keeps the plain file, which did, and reports the reason).
    """
    tolerance = _tolerance(precision, reference)

    def difference(candidate):
        try:
            return float(np.max(np.abs(run_tflite(candidate, check_inputs) - reference)))
        except LiteRTError:
            return float("inf")

    stored_dense = {}
    for _ in range(4):
        try:
            outputs = run_tflite(content, check_inputs)
        except LiteRTError as error:
            op_name = error.op_name
            if op_name is None:
                return None, {"(every tensor)": f"the sparse file does not load in LiteRT: {error}"}, 0.0
            reason = (
                f"XNNPACK cannot prepare {op_name} with sparse {precision} "
                "weights"
            )
            content, names = store_dense(
                content, lambda row, op=op_name: op in row.consumer.split(",")
            )
        else:
            away = float(np.max(np.abs(outputs - reference)))
            if away <= tolerance:
                return content, stored_dense, away
            reason = (
                f"stored sparse, LiteRT's outputs were {away:.3g} away "
                "from the non-sparse file's"
            )
            names = _culprits(
                content,
                [row.name for row in inspect_tflite(content).sparse_tensors],
                lambda candidate: difference(candidate) <= tolerance,
            )
            if names:
                content, names = store_dense(content, lambda row, picked=set(names): row.name in picked)
        if not names:
            return None, {"(every tensor)": f"{reason}, in no tensor it could store dense"}, 0.0
        stored_dense.update({name: reason for name in names})
    return None, {"(every tensor)": f"{reason} after storing {len(stored_dense)} tensors dense"}, 0.0


def _culprits(content, names, correct):
    """A small set of the sparse tensors `names` that, stored dense, make `correct(file)` hold.

    Halves the candidates (delta debugging), so a few culprits among many
    tensors cost a few dozen LiteRT runs. Returns `[]` when storing all of
    them dense does not help either.
    """

    def fixed(picked):
        return correct(store_dense(content, lambda row: row.name in picked)[0])

    def minimal(candidates, base):
        if len(candidates) == 1:
            return set(candidates)
        half = len(candidates) // 2
        first, second = candidates[:half], candidates[half:]
        if fixed(base | set(first)):
            return minimal(first, base)
        if fixed(base | set(second)):
            return minimal(second, base)
        needed = minimal(first, base | set(second))
        return needed | minimal(second, base | needed)

    if not names or not fixed(set(names)):
        return []
    found = minimal(list(names), set())
    return [name for name in names if name in found]
