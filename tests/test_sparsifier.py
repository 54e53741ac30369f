"""TFLite's sparsifier on the plain file: tied and lookup-only embedding tables stored sparse, once."""

import keras
import numpy as np
import pytest

import keras_str
from keras_str.export.conversion import convert
from keras_str.export.flatbuffer import buffer_values
from keras_str.export.flatbuffer import op_name
from keras_str.export.flatbuffer import parse
from keras_str.export.sparsifier import LENT
from keras_str.export.sparsifier import retie
from keras_str.export.sparsifier import sparsify
from keras_str.export.sparsifier import untie
from tests.test_export import sparse_cnn
from tests.backend_utils import to_numpy

pytestmark = pytest.mark.tensorflow

VOCABULARY, WIDTH, LENGTH = 64, 16, 8


def zero_out(model, names, zeros, seed):
    """Sets the share `zeros` of the named layers' first weight to 0."""
    rng = np.random.default_rng(seed)
    for name in names:
        variable = model.get_layer(name).weights[0]
        values = to_numpy(variable)
        values[rng.random(values.shape) < zeros] = 0.0
        variable.assign(values)
    return model


def untied_encoder(zeros=0.9, seed=0):
    """Token ids -> Embedding (a table only the lookup reads) -> Dense, mostly zeros."""
    keras.utils.set_random_seed(seed)
    ids = keras.Input((LENGTH,), dtype="int32", name="token_ids")
    embedding = keras.layers.Embedding(VOCABULARY, WIDTH, name="token_embedding")
    model = keras.Model(ids, keras.layers.Dense(WIDTH, name="hidden")(embedding(ids)))
    return zero_out(model, ["token_embedding", "hidden"], zeros, seed)


def tied_lm(zeros=0.9, seed=0):
    """Token ids -> tied embedding -> Dense -> logits through the same table, mostly zeros."""
    keras.utils.set_random_seed(seed)
    ids = keras.Input((LENGTH,), dtype="int32", name="token_ids")
    embedding = keras.layers.ReversibleEmbedding(VOCABULARY, WIDTH, name="token_embedding")
    hidden = keras.layers.Dense(WIDTH, activation="relu", name="hidden")(embedding(ids))
    model = keras.Model(ids, embedding(hidden, reverse=True), name="tied_lm")
    return zero_out(model, ["token_embedding", "hidden"], zeros, seed)


def token_ids(n=4, seed=1):
    return np.random.default_rng(seed).integers(0, VOCABULARY, (n, LENGTH)).astype("int32")


def constants_shaped(content, shape):
    """(dense, sparse) counts of constant tensors of `shape` that some op reads."""
    model = parse(content)
    dense = sparse = 0
    for subgraph in model.subgraphs:
        read = {int(i) for op in subgraph.operators if op.inputs is not None for i in op.inputs}
        for index, tensor in enumerate(subgraph.tensors):
            if index not in read or buffer_values(model, tensor) is None:
                continue
            if tensor.sparsity is not None and list(tensor.shape) == list(shape):
                sparse += 1
            elif tensor.sparsity is None and list(tensor.shape) == list(shape):
                dense += 1
    return dense, sparse


def readers_of_table(content):
    model = parse(content)
    subgraph = model.subgraphs[0]
    names = []
    for op in subgraph.operators:
        for index in op.inputs if op.inputs is not None else []:
            tensor = subgraph.tensors[int(index)]
            if index >= 0 and list(tensor.shape) == [VOCABULARY, WIDTH]:
                names.append(op_name(model, op))
    return sorted(names)


def test_the_plain_file_reads_the_tied_table_in_two_ops():
    plain = convert(tied_lm(), "float32", None)
    assert readers_of_table(plain) == ["FULLY_CONNECTED", "GATHER"]
    assert constants_shaped(plain, (VOCABULARY, WIDTH)) == (1, 0)


def test_untie_gives_each_reader_its_own_copy_and_keeps_the_outputs():
    from keras_str.export.litert import run_tflite

    plain = convert(tied_lm(), "float32", None)
    untied, copies = untie(plain)
    assert copies == 1
    assert constants_shaped(untied, (VOCABULARY, WIDTH)) == (2, 0)
    x = token_ids()
    np.testing.assert_array_equal(run_tflite(untied, x), run_tflite(plain, x))


def test_untie_and_retie_leave_a_file_without_shared_constants_unchanged():
    plain = convert(sparse_cnn(), "float32", None)
    assert untie(plain) == (plain, 0)
    assert retie(plain) == (plain, 0)


def test_the_tied_table_is_stored_sparse_once():
    from keras_str.export.litert import run_tflite

    model = tied_lm()
    plain = convert(model, "float32", None)
    content, lent = sparsify(plain)
    assert lent == 0  # The projection to logits reads the table already.
    # One sparse table, expanded once (DENSIFY) for both readers.
    assert constants_shaped(content, (VOCABULARY, WIDTH)) == (0, 1)
    x = token_ids()
    np.testing.assert_allclose(run_tflite(content, x), run_tflite(plain, x), atol=1e-6)


def test_export_stores_a_tied_embedding_sparse_with_parity(tmp_path):
    model = tied_lm()
    path = tmp_path / "tied.tflite"
    report = keras_str.export_tflite(model, path)
    assert report.stored_dense == {}
    [table] = [t for t in report.sparse_tensors if t.shape == [VOCABULARY, WIDTH]]
    assert table.densified
    assert sorted(table.consumer.split(",")) == ["FULLY_CONNECTED", "GATHER"]
    assert report.size_bytes < 0.8 * report.dense_size_bytes
    x = token_ids()
    expected = to_numpy(model(x))
    np.testing.assert_allclose(keras_str.predict_tflite(path, x), expected, atol=1e-5)


def op_names(content):
    model = parse(content)
    return sorted(op_name(model, op) for op in model.subgraphs[0].operators)


def tensor_names(content):
    return [t.name or b"" for t in parse(content).subgraphs[0].tensors]


def test_a_lookup_only_table_is_stored_sparse_once():
    from keras_str.export.litert import run_tflite

    plain = convert(untied_encoder(), "float32", None)
    assert readers_of_table(plain) == ["GATHER"]
    content, lent = sparsify(plain)
    assert lent == 1
    assert constants_shaped(content, (VOCABULARY, WIDTH)) == (0, 1)
    # The lent reader is gone; the lookup reads the expanded table.
    assert readers_of_table(content) == ["DENSIFY", "GATHER"]
    assert not any(name.startswith(LENT) for name in tensor_names(content))
    assert op_names(content).count("FULLY_CONNECTED") == op_names(plain).count("FULLY_CONNECTED")
    x = token_ids()
    np.testing.assert_allclose(run_tflite(content, x), run_tflite(plain, x), atol=1e-6)


def test_a_table_with_too_few_zeros_stays_dense_and_leaves_nothing_behind():
    plain = convert(untied_encoder(zeros=0.0), "float32", None)
    content, lent = sparsify(plain)
    assert lent == 1
    assert constants_shaped(content, (VOCABULARY, WIDTH)) == (1, 0)
    assert "DENSIFY" not in op_names(content)
    assert op_names(content) == op_names(plain)
    assert not any(name.startswith(LENT) for name in tensor_names(content))
    assert len(content) <= len(plain) + 512


def test_export_stores_an_untied_embedding_sparse_with_parity(tmp_path):
    model = untied_encoder()
    path = tmp_path / "encoder.tflite"
    report = keras_str.export_tflite(model, path)
    [table] = [t for t in report.sparse_tensors if t.shape == [VOCABULARY, WIDTH]]
    assert table.densified and table.consumer == "GATHER"
    x = token_ids()
    expected = to_numpy(model(x))
    np.testing.assert_allclose(keras_str.predict_tflite(path, x), expected, atol=1e-5)


def test_the_sparse_file_keeps_the_plain_files_metadata():
    def metadata(content):
        model = parse(content)
        return {
            entry.name: bytes(bytearray(model.buffers[entry.buffer].data))
            for entry in model.metadata or []
        }

    plain = convert(tied_lm(), "float32", None)
    content, _ = sparsify(plain)
    assert b"min_runtime_version" in metadata(plain)
    assert metadata(content)[b"min_runtime_version"] == metadata(plain)[b"min_runtime_version"]
