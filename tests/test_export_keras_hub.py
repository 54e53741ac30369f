"""keras-hub transformers to LiteRT: sparse `.tflite` files whose outputs match Keras."""

import re
import warnings

import keras
import numpy as np
import pytest

import keras_str

keras_hub = pytest.importorskip("keras_hub")
from tests.test_keras_hub import VOCABULARY  # noqa: E402
from tests.test_keras_hub import small_bert  # noqa: E402
from tests.test_keras_hub import small_gpt2  # noqa: E402
from tests.backend_utils import to_numpy

pytestmark = pytest.mark.tensorflow

SEQUENCE = 16


def token_inputs(model, n=4, length=SEQUENCE, seed=0):
    rng = np.random.default_rng(seed)
    inputs = {
        "token_ids": rng.integers(0, VOCABULARY, (n, length)).astype("int32"),
        "padding_mask": np.ones((n, length), "int32"),
    }
    if "segment_ids" in model._inputs_struct:
        inputs["segment_ids"] = rng.integers(0, 2, (n, length)).astype("int32")
    return inputs


def max_litert_difference(path, model, x):
    """Max |LiteRT - Keras| over every output, batch by batch of one (the file's batch)."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path)).get_signature_runner()
    expected = model(x)
    if not isinstance(expected, dict):
        expected = {"output_0": expected}
    worst = 0.0
    for i in range(len(x["token_ids"])):
        outputs = runner(**{name: value[i : i + 1] for name, value in x.items()})
        assert sorted(outputs) == sorted(expected)
        for name, value in expected.items():
            reference = to_numpy(value)[i : i + 1]
            worst = max(worst, float(np.max(np.abs(outputs[name] - reference))))
    return worst


def stripped_sparse(build, target=0.9):
    """A keras-hub backbone pruned to `target` (one GMP step), stripped in place."""
    model = build()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        keras_str.sparsify(
            model, method=keras_str.GMP(target, keras_str.ConstantSchedule()), in_place=True
        )
        model(token_inputs(model, n=2), training=True)
        return keras_str.strip(model, in_place=True)


@pytest.mark.parametrize("build", [small_bert, small_gpt2], ids=["bert", "gpt2"])
def test_stripped_backbone_exports_sparse_with_parity(build, tmp_path):
    model = stripped_sparse(build)
    path = tmp_path / "model.tflite"
    report = keras_str.export_tflite(model, path, sequence_length=SEQUENCE)
    # Every attention and feed-forward kernel is stored sparse, and every
    # embedding table (token, segment) the lookup reads.
    layers = list(model._flatten_layers())
    kernels = [layer for layer in layers if isinstance(layer, keras.layers.EinsumDense)]
    kernels += [layer for layer in layers if type(layer) is keras.layers.Dense]
    tables = [layer for layer in layers if isinstance(layer, keras.layers.Embedding)]
    assert len(report.sparse_tensors) == len(kernels) + len(tables)
    lookups = [t for t in report.sparse_tensors if t.consumer == "GATHER"]
    assert sorted(t.shape[0] for t in lookups) == sorted(layer.input_dim for layer in tables)
    assert report.size_bytes < 0.4 * report.dense_size_bytes
    assert max_litert_difference(path, model, token_inputs(model)) <= 1e-4


def test_dense_backbone_exports_and_keeps_integer_inputs(tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    model = small_gpt2()
    path = tmp_path / "dense.tflite"
    keras_str.export_tflite(model, path, sequence_length=8, sparse=False)
    runner = Interpreter(model_path=str(path)).get_signature_runner()
    inputs = runner.get_input_details()
    assert sorted(inputs) == ["padding_mask", "token_ids"]
    assert {d["dtype"].__name__ for d in inputs.values()} == {"int32"}
    assert {int(d["shape"][-1]) for d in inputs.values()} == {8}
    assert max_litert_difference(path, model, token_inputs(model, n=2, length=8)) <= 1e-4


def test_unknown_sequence_length_asks_for_it(tmp_path):
    with pytest.raises(ValueError, match="Pass `sequence_length=`"):
        keras_str.export_tflite(small_gpt2(), tmp_path / "model.tflite")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "16"])
def test_bad_sequence_length_is_refused(bad, tmp_path):
    with pytest.raises(ValueError, match="sequence_length"):
        keras_str.export_tflite(small_gpt2(), tmp_path / "model.tflite", sequence_length=bad)


def test_sequence_length_on_a_fixed_shape_model_is_refused(tmp_path):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="every input of model .* has a fixed shape"):
        keras_str.export_tflite(model, tmp_path / "model.tflite", sequence_length=8)


def test_sparse_backbone_exports_without_changing_the_model(tmp_path):
    model = small_gpt2()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        keras_str.sparsify(
            model, method=keras_str.GMP(0.9, keras_str.ConstantSchedule()), in_place=True
        )
        model(token_inputs(model, n=2), training=True)
    path = tmp_path / "model.tflite"
    report = keras_str.export_tflite(model, path, sequence_length=SEQUENCE)
    # 12 kernels and the token embedding's table.
    assert len(report.sparse_tensors) == 13
    assert max_litert_difference(path, model, token_inputs(model)) <= 1e-4
    # The model is still the sparse one.
    assert any(isinstance(layer, keras_str.SparseKernelLayer) for layer in model._flatten_layers())


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["float16", "int8", "dynamic_int8"])
def test_token_ids_stay_integer_in_every_precision(precision, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    model = stripped_sparse(small_gpt2)
    calibration = token_inputs(model, n=32, seed=1)
    path = tmp_path / "model.tflite"
    keras_str.export_tflite(
        model, path, precision=precision, sequence_length=SEQUENCE,
        representative_data=calibration if precision == "int8" else None,
    )
    details = Interpreter(model_path=str(path)).get_signature_runner().get_input_details()
    assert {d["dtype"].__name__ for d in details.values()} == {"int32"}
    scale = float(np.max(np.abs(to_numpy(model(token_inputs(model))))))
    tolerance = 1e-2 if precision == "float16" else 0.25
    assert max_litert_difference(path, model, token_inputs(model)) <= tolerance * scale


def small_bert_classifier():
    return keras_hub.models.BertTextClassifier(
        backbone=small_bert(), num_classes=3, preprocessor=None
    )


def small_gpt2_lm():
    return keras_hub.models.GPT2CausalLM(backbone=small_gpt2(), preprocessor=None)


@pytest.mark.slow
def test_task_model_exports_sparse_with_parity(tmp_path):
    model = stripped_sparse(small_bert_classifier)
    path = tmp_path / "model.tflite"
    report = keras_str.export_tflite(model, path, sequence_length=SEQUENCE)
    # The backbone's 13 kernels, the classifier head and the token and
    # segment embeddings' tables.
    assert len(report.sparse_tensors) == 16
    assert max_litert_difference(path, model, token_inputs(model.backbone)) <= 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["float32", "float16"])
def test_a_tied_causal_lm_exports_sparse_with_its_table_stored_once(precision, tmp_path):
    model = stripped_sparse(small_gpt2_lm)
    report = keras_str.export_tflite(
        model, tmp_path / "model.tflite", precision=precision, sequence_length=SEQUENCE
    )
    tables = [t for t in report.sparse_tensors if t.shape == [VOCABULARY, 64]]
    if precision == "float32":
        # One sparse table, expanded once for the lookup and the logits.
        assert report.stored_dense == {}
        [table] = tables
        assert sorted(table.consumer.split(",")) == ["FULLY_CONNECTED", "GATHER"]
        assert report.size_bytes < 0.3 * report.dense_size_bytes
    else:
        # XNNPACK computes the lookup of a sparse float16 table wrong (NaN,
        # or off by tenths, depending on the weights): it alone is stored
        # dense, the other weights stay sparse.
        assert tables == []
        [reason] = report.stored_dense.values()
        assert re.search(r"outputs were (nan|[0-9.e+-]+) away from the non-sparse file", reason)
        assert len(report.sparse_tensors) == 12
        assert report.size_bytes < 0.7 * report.dense_size_bytes
    scale = float(np.max(np.abs(to_numpy(model(token_inputs(model.backbone))))))
    tolerance = 1e-4 if precision == "float32" else 1e-2 * scale
    assert max_litert_difference(
        tmp_path / "model.tflite", model, token_inputs(model.backbone)) <= tolerance


def test_functional_encoder_of_unknown_length_exports_at_the_given_length(tmp_path):
    ids = keras.Input((None,), dtype="int32", name="ids")
    hidden = keras.layers.Embedding(100, 32)(ids)
    attended = keras.layers.MultiHeadAttention(2, 16)(hidden, hidden)
    hidden = keras.layers.LayerNormalization()(hidden + attended)
    hidden = keras.layers.Dense(64, activation="relu")(hidden)
    outputs = keras.layers.Dense(5)(keras.layers.GlobalAveragePooling1D()(hidden))
    model = keras_str.sparsify(
        keras.Model(ids, outputs), method=keras_str.GMP(0.9, keras_str.ConstantSchedule())
    )
    x = np.random.default_rng(0).integers(0, 100, (4, 12)).astype("int32")
    model(x, training=True)
    path = tmp_path / "model.tflite"
    report = keras_str.export_tflite(model, path, sequence_length=12)
    assert report.sparse_tensors
    expected = to_numpy(model(x))
    np.testing.assert_allclose(keras_str.predict_tflite(str(path), x), expected, atol=1e-4)


def test_block_sparse_feed_forward_keeps_the_sparse_kernel(tmp_path):
    model = small_gpt2()
    method = keras_str.StructuredSTR(
        "block", block_size=4, target_sparsity=0.9, schedule=keras_str.ConstantSchedule()
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        keras_str.sparsify(
            model, method=method, in_place=True,
            keep_dense=lambda layer: type(layer) is not keras.layers.Dense,
        )
        model(token_inputs(model, n=2), training=True)
    path = tmp_path / "model.tflite"
    report = keras_str.export_tflite(model, path, sequence_length=SEQUENCE)
    # Both feed-forward layers of both blocks: 1x4 blocks, no DENSIFY.
    assert len(report.sparse_tensors) == 4 and report.densify_ops == 0
    feed_forward = {
        name: statement for name, statement in report.layer_runtime.items()
        if name.startswith("feedforward")
    }
    assert feed_forward and all(
        "sparse FULLY_CONNECTED kernel (blocks 4)" in statement
        for statement in feed_forward.values()
    )
    assert max_litert_difference(path, model, token_inputs(model)) <= 1e-4


def test_an_int8_graph_litert_cannot_run_even_dense_is_named(tmp_path):
    from tests.test_keras_hub import zoo
    from tests.test_keras_hub import zoo_inputs

    keras.utils.set_random_seed(0)
    model = stripped_sparse(zoo()["gemma_backbone"])
    samples = dict(zoo_inputs(model, 32))
    samples["token_ids"] = np.random.default_rng(1).integers(
        0, VOCABULARY, samples["token_ids"].shape).astype("int32")
    with pytest.raises(RuntimeError) as caught:
        keras_str.export_tflite(
            model, tmp_path / "model.tflite", precision="int8",
            representative_data=samples, sequence_length=SEQUENCE,
        )
    message = str(caught.value)
    assert "even without sparse weights (so `sparse=False` fails the same way)" in message
    # The failing op and the tensor it computes, named after its layer.
    assert "node 12 is the DIV that computes 'gemma_backbone" in message
    assert "precision='dynamic_int8'" in message
    assert not (tmp_path / "model.tflite").exists()
