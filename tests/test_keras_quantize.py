"""Keras's own quantization (`Model.quantize`) on keras-str models: refused while sparse, every zero kept after strip."""

import warnings

import keras
import numpy as np
import pytest

import keras_str
from tests.backend_utils import to_numpy

# Each sparse layer with a threshold that zeroes a good part of its kernel
# (Glorot-uniform kernels spread wider than Embedding's +-0.05 table).
LAYERS = {
    "dense": (lambda: keras_str.STRDense(8, threshold_init=-1.5), "float32"),
    "einsum_dense": (
        lambda: keras_str.STREinsumDense("ab,bc->ac", (8,), bias_axes="c", threshold_init=-1.5),
        "float32",
    ),
    "embedding": (lambda: keras_str.STREmbedding(16, 8, threshold_init=-3.5), "int32"),
}
SIZE = 16  # the kernels' input axis (the embedding's vocabulary)


def _model(name):
    make, dtype = LAYERS[name]
    return keras.Sequential([keras.Input((SIZE,) if dtype == "float32" else (1,), dtype=dtype),
                             make()])


def _computed_kernel(layer, name):
    """The (16, 8) matrix the layer computes with, read through its call."""
    if name == "embedding":
        return to_numpy(layer(np.arange(SIZE)[:, None]))[:, 0, :]
    bias = 0.0 if layer.bias is None else to_numpy(layer.bias)
    return to_numpy(layer(np.eye(SIZE, dtype="float32"))) - bias


def test_a_sparse_model_refuses_keras_quantization_loudly():
    model = _model("dense")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ValueError, match=r"str_dense.*keras_str.strip\(model\)"):
            model.quantize("int8")
    # Keras turns a layer's NotImplementedError into a warning and goes on,
    # leaving the layer in float: keras-str's refusal must not be one.
    assert not [w for w in caught if "str_dense" in str(w.message)]


@pytest.mark.parametrize("mode", ["int8", "int4"])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_a_stripped_model_quantizes_keeping_every_zero(name, mode):
    keras.utils.set_random_seed(0)
    plain = keras_str.strip(_model(name), shrink=False)
    layer = plain.layers[-1]
    before = _computed_kernel(layer, name)
    zeros = before == 0.0
    assert 0.2 < zeros.mean() < 0.9
    plain.quantize(mode)
    assert layer.dtype_policy.quantization_mode == mode
    after = _computed_kernel(layer, name)
    assert not np.allclose(after, before, atol=1e-7)  # quantized: values moved
    np.testing.assert_array_equal(after[zeros], 0.0)
