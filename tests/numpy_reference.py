"""The STR formula and its gradients written in numpy, as the tests' oracle."""

import numpy as np


def sigmoid(s):
    return 1.0 / (1.0 + np.exp(-s))


THRESHOLD_FNS = {
    "sigmoid": (sigmoid, lambda s: sigmoid(s) * (1.0 - sigmoid(s))),
    "exp": (np.exp, np.exp),
}


def soft_threshold(w, threshold):
    return np.sign(w) * np.maximum(np.abs(w) - threshold, 0.0)


def soft_threshold_grads(w, s, upstream, threshold_fn="sigmoid"):
    """Gradients of sum(upstream * soft_threshold(w, g(s))) w.r.t. w and s."""
    g, g_prime = THRESHOLD_FNS[threshold_fn]
    kept = (np.abs(w) > g(s)).astype(w.dtype)
    grad_w = upstream * kept
    grad_threshold = -upstream * np.sign(w) * kept
    # Sum over the axes that s was broadcast along.
    extra = grad_threshold.ndim - np.ndim(s)
    grad_threshold = grad_threshold.sum(axis=tuple(range(extra)))
    # ... and along its own axes of size 1 (full-rank per-channel shapes).
    ones = tuple(i for i, d in enumerate(np.shape(s)) if d == 1)
    grad_threshold = grad_threshold.sum(axis=ones, keepdims=True)
    return grad_w, grad_threshold * g_prime(s)
