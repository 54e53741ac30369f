"""Keras's own layer tests, run with keras-str's sparse layers in place of Keras's.

A user who swaps `keras.layers.Dense` for `keras_str.STRDense` expects what
Keras's layer does to keep working. Keras ships its layer tests in the
installed package; here each runs with `keras.src.layers.<Name>` bound to a
drop-in twin of the sparse class (plain STR at a threshold of
`sigmoid(-100)`, so the kernel is the raw kernel and Keras's expected values
hold). The cases keras-str differs in on purpose are skipped with their
reason (`DELIBERATE_DIFFERENCES`, listed in docs/guide/sparsify.md); every other case
must pass.
"""

import re
from unittest import mock

import keras
import pytest

# Keras's test modules, imported as modules so that pytest collects only the
# sparse subclasses below, not Keras's own classes; `run_layer_test`'s input
# helper, to build a layer as Keras's test does.
from keras.src import layers as keras_src_layers
from keras.src import tree
from keras.src.layers.attention import multi_head_attention_test
from keras.src.layers.convolutional import conv_test
from keras.src.layers.convolutional import conv_transpose_test
from keras.src.layers.convolutional import depthwise_conv_test
from keras.src.layers.core import dense_test
from keras.src.layers.core import einsum_dense_test
from keras.src.layers.core import embedding_test
from keras.src.layers.core import reversible_embedding_test
from keras.src.layers.normalization import batch_normalization_test
from keras.src.layers.rnn import gru_test
from keras.src.layers.rnn import lstm_test
from keras.src.layers.rnn import simple_rnn_test
from keras.src.testing.test_case import create_eager_tensors

import keras_str
from keras_str.layers.base import is_sparse_layer

# The cases keras-str does not pass on purpose: reason -> pattern, searched
# in "<Keras's test class>.<test name>". docs/guide/sparsify.md lists the same reasons.
DELIBERATE_DIFFERENCES = {
    "quantization: a sparse layer refuses it while training (a quantized "
    "kernel would hide the zeros the method computes); strip the model, "
    "then quantize the plain layers": (
        r"quantiz|int4|int8|float8|gptq|awq|legacy_load_own_variables"
    ),
    "LoRA: the low-rank update would bypass the threshold": r"lora",
    "the kernel is computed from `raw_kernel` at each access, a tensor "
    "without `assign`, `constraint` or `numpy` (use `layer.raw_kernel`)": (
        r"^(Dense|EinsumDense|Embedding|Conv|MultiHeadAttention)\w*Test\.test_\w*constraints"
        r"|^DenseTest\.test_dense_sparse"
        r"|^(Embedding|ReversibleEmbedding)Test\.test_correctness"
        r"|^EmbeddingTest\.test_weights_constructor_arg"
        r"|^(Conv|ConvTranspose|DepthwiseConv)CorrectnessTest\.test_(conv|depthwise)"
        r"|^BatchNormalizationTest\.test_renorm_(inference|correctness)"
    ),
    "STRBatchNormalization thresholds `gamma` over the last axis, so it "
    "needs `scale=True` and channels last": (
        r"^BatchNormalizationTest\.test_(bn_basics|correctness|input_fully_masked)"
    ),
    "a sparse layer has more variables than Keras counts by hand (the "
    "method's threshold and step counters; `run_layer_test`'s counts are "
    "adjusted for them)": r"^BatchNormalizationTest\.test_trainable_behavior",
}


def _drop_in(name, sparse_class):
    """`sparse_class` under Keras's class name, its kernel left unchanged."""

    def __init__(self, *args, method=None, **kwargs):
        if method is None:
            method = keras_str.STR(threshold_init=-100.0)
        sparse_class.__init__(self, *args, method=method, **kwargs)

    twin = type(name, (sparse_class,), {"__init__": __init__, "__module__": __name__})
    return keras.saving.register_keras_serializable(
        package="keras_str_drop_in", name=name
    )(twin)


DROP_INS = {
    name: _drop_in(name, sparse_class)
    for name, sparse_class in (
        ("Dense", keras_str.STRDense),
        ("EinsumDense", keras_str.STREinsumDense),
        ("Embedding", keras_str.STREmbedding),
        ("ReversibleEmbedding", keras_str.STRReversibleEmbedding),
        ("Conv1D", keras_str.STRConv1D),
        ("Conv2D", keras_str.STRConv2D),
        ("Conv3D", keras_str.STRConv3D),
        ("Conv1DTranspose", keras_str.STRConv1DTranspose),
        ("Conv2DTranspose", keras_str.STRConv2DTranspose),
        ("Conv3DTranspose", keras_str.STRConv3DTranspose),
        ("DepthwiseConv1D", keras_str.STRDepthwiseConv1D),
        ("DepthwiseConv2D", keras_str.STRDepthwiseConv2D),
        ("BatchNormalization", keras_str.STRBatchNormalization),
        ("SimpleRNN", keras_str.STRSimpleRNN),
        ("GRU", keras_str.STRGRU),
        ("LSTM", keras_str.STRLSTM),
        ("MultiHeadAttention", keras_str.STRMultiHeadAttention),
    )
}


class DropInCase:
    """Mixin for a Keras layer test case: binds the drop-ins, skips the deliberate cases."""

    def setUp(self):
        keras_case = f"{type(self).__bases__[-1].__name__}.{self._testMethodName}"
        for reason, pattern in DELIBERATE_DIFFERENCES.items():
            if re.search(pattern, keras_case):
                self.skipTest(f"deliberate difference: {reason}")
        for name, twin in DROP_INS.items():
            patcher = mock.patch.object(keras_src_layers, name, twin)
            patcher.start()
            self.addCleanup(patcher.stop)
        super().setUp()

    def run_layer_test(self, layer_cls, init_kwargs, **kwargs):
        # Keras's counts of its own variables, plus those the sparse layers
        # add, measured on a layer built as Keras builds its own.
        counts = (
            "expected_num_trainable_weights",
            "expected_num_non_trainable_weights",
            "expected_num_non_trainable_variables",
        )
        if layer_cls in DROP_INS.values() and any(
            kwargs.get(key) is not None for key in counts
        ):
            extra_trainable, extra_non_trainable = _added_variable_counts(
                _built_like_keras(layer_cls, init_kwargs, kwargs)
            )
            for key, extra in zip(
                counts, (extra_trainable, extra_non_trainable, extra_non_trainable)
            ):
                if kwargs.get(key) is not None:
                    kwargs[key] += extra
        return super().run_layer_test(layer_cls, init_kwargs, **kwargs)


def _built_like_keras(layer_cls, init_kwargs, kwargs):
    input_data = kwargs.get("input_data")
    if input_data is None:
        input_shape = kwargs["input_shape"]
        input_dtype = kwargs.get("input_dtype") or tree.map_shape_structure(
            lambda _: "float32", input_shape
        )
        input_data = create_eager_tensors(
            input_shape,
            input_dtype,
            kwargs.get("input_sparse", False),
            kwargs.get("input_ragged", False),
        )
    layer = layer_cls(**(init_kwargs or {}))
    call_kwargs = kwargs.get("call_kwargs") or {}
    if isinstance(input_data, dict):
        layer(**input_data, **call_kwargs)
    else:
        layer(input_data, **call_kwargs)
    return layer


def _added_variable_counts(layer):
    """(trainable, non-trainable) variables of `layer`'s sparse layers that their plain parents lack."""
    trainable = non_trainable = 0
    for sublayer in layer._flatten_layers(include_self=True):
        if not is_sparse_layer(sublayer):
            continue
        plain = {id(v) for v in sublayer.plain_variables()}
        trainable += sum(id(v) not in plain for v in sublayer._trainable_variables)
        non_trainable += sum(
            id(v) not in plain for v in sublayer._non_trainable_variables
        )
    return trainable, non_trainable


class SparseDenseTest(DropInCase, dense_test.DenseTest):
    pass


class SparseEinsumDenseTest(DropInCase, einsum_dense_test.EinsumDenseTest):
    pass


# Keras's test feeds int64 token ids, which JAX truncates to int32, with a warning.
@pytest.mark.filterwarnings("ignore:Explicitly requested dtype int64:UserWarning")
class SparseEmbeddingTest(DropInCase, embedding_test.EmbeddingTest):
    pass


# Keras's test trains an untied layer's lookup only; its own layer warns the same.
@pytest.mark.filterwarnings("ignore:Gradients do not exist for variables:UserWarning")
class SparseReversibleEmbeddingTest(
    DropInCase, reversible_embedding_test.ReversibleEmbeddingTest
):
    pass


class SparseConvBasicTest(DropInCase, conv_test.ConvBasicTest):
    pass


class SparseConvCorrectnessTest(DropInCase, conv_test.ConvCorrectnessTest):
    pass


class SparseConvTransposeBasicTest(
    DropInCase, conv_transpose_test.ConvTransposeBasicTest
):
    pass


class SparseConvTransposeCorrectnessTest(
    DropInCase, conv_transpose_test.ConvTransposeCorrectnessTest
):
    pass


class SparseDepthwiseConvBasicTest(
    DropInCase, depthwise_conv_test.DepthwiseConvBasicTest
):
    pass


class SparseDepthwiseConvCorrectnessTest(
    DropInCase, depthwise_conv_test.DepthwiseConvCorrectnessTest
):
    pass


class SparseBatchNormalizationTest(
    DropInCase, batch_normalization_test.BatchNormalizationTest
):
    pass


class SparseSimpleRNNTest(DropInCase, simple_rnn_test.SimpleRNNTest):
    pass


class SparseGRUTest(DropInCase, gru_test.GRUTest):
    pass


class SparseLSTMTest(DropInCase, lstm_test.LSTMTest):
    pass


class SparseMultiHeadAttentionTest(
    DropInCase, multi_head_attention_test.MultiHeadAttentionTest
):
    pass
