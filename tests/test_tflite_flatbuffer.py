import pytest
import numpy as np

from keras_str.export.tflite import _convert
from keras_str.export.flatbuffer import inspect_tflite
from keras_str.export.flatbuffer import store_dense
from tests.test_export import block_sparse_mlp
from tests.test_export import sparse_cnn

pytestmark = pytest.mark.tensorflow


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
    content = _convert(model, "float32", None, sparse=True)
    plain = _convert(model, "float32", None, sparse=False)
    assert inspect_tflite(content).densify_ops == 4
    rewritten, names = store_dense(content, lambda row: True)
    assert len(names) == 4
    inspection = inspect_tflite(rewritten)
    assert inspection.densify_ops == 0 and inspection.sparse_tensors == []
    x = np.random.default_rng(0).uniform(size=(4, 12, 12, 1)).astype("float32")
    np.testing.assert_array_equal(run(rewritten, x), run(plain, x))


def test_store_dense_decodes_block_sparse_weights_exactly():
    model = block_sparse_mlp(4)
    content = _convert(model, "float32", None, sparse=True)
    assert {t.encoding for t in inspect_tflite(content).sparse_tensors} == {"blocks 4"}
    rewritten, names = store_dense(content, lambda row: True)
    assert len(names) == 3
    x = np.random.default_rng(0).normal(size=(4, 64)).astype("float32")
    # The converter folds block-sparse constants slightly differently: 1 ulp.
    np.testing.assert_allclose(
        run(rewritten, x), run(_convert(model, "float32", None, sparse=False), x),
        atol=1e-6,
    )


def test_store_dense_only_touches_picked_tensors():
    content = _convert(sparse_cnn(), "float32", None, sparse=True)
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
    inspection = inspect_tflite(_convert(model, "float32", None, sparse=True))
    for tensor in inspection.sparse_tensors:
        assert abs(tensor.density - 0.2) < 0.01
        assert tensor.densified
