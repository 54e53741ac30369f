import pytest
import numpy as np

from keras_str.export.conversion import convert
from keras_str.export.flatbuffer import inspect_tflite
from keras_str.export.flatbuffer import store_dense
from keras_str.export.sparse_encoding import sparsified
from tests.test_export import block_sparse_mlp
from tests.test_export import sparse_cnn

pytestmark = pytest.mark.tensorflow


def plain_file(model):
    return convert(model, "float32", None)


def sparse_file(model):
    return sparsified(plain_file(model))


def run(content, x):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content)
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def test_store_dense_decodes_element_wise_sparse_weights_exactly():
    model = sparse_cnn()
    content = sparse_file(model)
    plain = plain_file(model)
    assert inspect_tflite(content).densify_ops == 4
    rewritten, names = store_dense(content, lambda row: True)
    assert len(names) == 4
    inspection = inspect_tflite(rewritten)
    assert inspection.densify_ops == 0 and inspection.sparse_tensors == []
    x = np.random.default_rng(0).uniform(size=(4, 12, 12, 1)).astype("float32")
    np.testing.assert_array_equal(run(rewritten, x), run(plain, x))


def test_store_dense_decodes_block_sparse_weights_exactly():
    model = block_sparse_mlp(4)
    content = sparse_file(model)
    assert {t.encoding for t in inspect_tflite(content).sparse_tensors} == {"blocks 4"}
    rewritten, names = store_dense(content, lambda row: True)
    assert len(names) == 3
    x = np.random.default_rng(0).normal(size=(4, 64)).astype("float32")
    # The converter folds block-sparse constants slightly differently: 1 ulp.
    np.testing.assert_allclose(
        run(rewritten, x), run(plain_file(model), x),
        atol=1e-6,
    )


def test_store_dense_only_touches_picked_tensors():
    content = sparse_file(sparse_cnn())
    rewritten, names = store_dense(
        content, lambda row: row.consumer == "FULLY_CONNECTED"
    )
    assert len(names) == 2
    remaining = inspect_tflite(rewritten).sparse_tensors
    assert [t.consumer for t in remaining] == ["CONV_2D", "CONV_2D"]
    unchanged, none = store_dense(content, lambda row: False)
    assert unchanged == content and none == []


def test_inspection_reports_density_of_each_stored_tensor():
    model = sparse_cnn(sparsity=0.8)
    inspection = inspect_tflite(sparse_file(model))
    for tensor in inspection.sparse_tensors:
        assert abs(tensor.density - 0.2) < 0.01
        assert tensor.densified


def test_store_dense_keeps_a_sparse_twin_that_shares_the_buffer():
    import keras

    rng = np.random.default_rng(0)
    inputs = keras.Input((16,))
    hidden = keras.layers.Dense(16, name="a")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(16, name="b")(hidden))
    # Zeros in 1x4 blocks: FULLY_CONNECTED reads them sparse (no DENSIFY to merge).
    keep = np.repeat(rng.random((4, 16)) < 0.2, 4, axis=0)
    kernel = rng.normal(size=(16, 16)).astype("float32") * keep
    for name in "ab":
        model.get_layer(name).set_weights([kernel, np.zeros(16, "float32")])
    content = sparse_file(model)
    # Equal weights: both sparse tensors read one buffer.
    first, second = inspect_tflite(content).sparse_tensors
    rewritten, names = store_dense(content, lambda row: row.name == first.name)
    assert names == [first.name]
    assert [t.name for t in inspect_tflite(rewritten).sparse_tensors] == [second.name]
    x = rng.normal(size=(4, 16)).astype("float32")
    np.testing.assert_allclose(run(rewritten, x), run(plain_file(model), x), atol=1e-5)
