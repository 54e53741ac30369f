"""keras-hub transformers: sparsify in place, train sparse on every backend.

Small random-weight backbones built offline (no presets, no downloads):
one encoder (BERT) and one decoder LM (GPT-2) run by default.
"""

import json
import os
import subprocess
import sys
import textwrap
import warnings

import keras
import numpy as np
import pytest

import keras_str
from keras_str.core.kernel_specs import raw_kernel_variable
from keras_str.layers.base import is_kernel_layer
from keras_str.layers.base import is_sparse_layer
from tests.backend_utils import slow_on
from tests.backend_utils import to_numpy

keras_hub = pytest.importorskip("keras_hub")

VOCABULARY = 1000
SEQUENCE = 16
BATCH = 8
STEPS = 8
TARGET = 0.9


def small_bert():
    return keras_hub.models.BertBackbone(
        vocabulary_size=VOCABULARY, num_layers=2, num_heads=2, hidden_dim=64,
        intermediate_dim=128, max_sequence_length=32,
    )


def small_gpt2():
    return keras_hub.models.GPT2Backbone(
        vocabulary_size=VOCABULARY, num_layers=2, num_heads=2, hidden_dim=64,
        intermediate_dim=128, max_sequence_length=32,
    )


BACKBONES = {"bert": small_bert, "gpt2": small_gpt2}


def token_inputs(model, n=BATCH * STEPS, seed=0):
    rng = np.random.default_rng(seed)
    inputs = {
        "token_ids": rng.integers(0, VOCABULARY, (n, SEQUENCE)).astype("int32"),
        "padding_mask": np.ones((n, SEQUENCE), "int32"),
    }
    if "segment_ids" in model._inputs_struct:
        inputs["segment_ids"] = np.zeros((n, SEQUENCE), "int32")
    return inputs


def sparse_layers(model):
    return [layer for layer in model._flatten_layers() if is_sparse_layer(layer)]


def graph_operations(model):
    return [node.operation for nodes in model._nodes_by_depth.values() for node in nodes]


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_backbone_trains_sparse_in_place(name):
    keras.utils.set_random_seed(0)
    model = BACKBONES[name]()
    dense_kernels = [
        layer for layer in model._flatten_layers()
        if type(layer) in (keras.layers.Dense, keras.layers.EinsumDense)
    ]
    method = keras_str.ST3(TARGET, keras_str.PolynomialSchedule(0, STEPS - 2))
    sparse = keras_str.sparsify(model, method=method, in_place=True)

    assert sparse is model
    layers = sparse_layers(model)
    # Every attention and feed-forward kernel of every block is sparse.
    projections = [l for l in layers if isinstance(l, (keras_str.STRDense, keras_str.STREinsumDense))]
    assert len(projections) == len(dense_kernels)
    # The token, segment and position tables too: only biases and norms
    # stay dense.
    assert parameter_share(layers, model) > 0.98
    # The backbone's own graph runs the sparse layers, not the dense ones.
    operations = graph_operations(model)
    assert not any(any(op is old for op in operations) for old in dense_kernels)

    x = token_inputs(model)
    outputs = model(keras.tree.map_structure(lambda v: v[:2], x))
    y = keras.tree.map_structure(lambda t: np.zeros(t.shape, "float32"), outputs)
    y = keras.tree.map_structure(lambda t: np.repeat(t[:1], BATCH * STEPS, 0), y)
    model.compile(keras.optimizers.Adam(1e-3), "mse")
    model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)

    assert [int(to_numpy(l.sparsity_step)) for l in layers] == [STEPS] * len(layers)
    kernels = [to_numpy(l.thresholded_kernel()) for l in layers]
    overall = np.mean(np.concatenate([k.ravel() for k in kernels]) == 0)
    assert abs(overall - TARGET) < 0.01
    for layer, kernel in zip(layers, kernels):
        assert np.mean(kernel == 0) > 0.5, layer.path


def variable_paths(model):
    # Dropout's random-seed state is named by a global counter, not a path.
    return {v.path for v in model.variables if "seed_generator" not in v.path}


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_sparsify_and_strip_in_place_keep_variable_paths(name):
    keras.utils.set_random_seed(0)
    model = BACKBONES[name]()
    dense_paths = variable_paths(model)
    assert any(path.count("/") >= 3 for path in dense_paths)

    keras_str.sparsify(
        model, method=keras_str.ST3(TARGET, keras_str.ConstantSchedule()), in_place=True
    )
    assert dense_paths <= variable_paths(model)
    for layer in sparse_layers(model):
        assert layer.raw_kernel.path.startswith(layer.path + "/")
        assert layer.threshold_param.path == layer.path + "/threshold"

    x = keras.tree.map_structure(lambda v: v[:2], token_inputs(model))
    model(x, training=True)
    sparse_outputs = keras.tree.map_structure(to_numpy, model(x))

    plain = keras_str.strip(model, in_place=True)
    assert variable_paths(plain) == dense_paths
    assert not sparse_layers(plain)
    plain_outputs = keras.tree.map_structure(to_numpy, plain(x))
    keras.tree.map_structure(
        lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), sparse_outputs, plain_outputs
    )
    kernels = [
        to_numpy(raw_kernel_variable(layer)) for layer in plain._flatten_layers()
        if is_kernel_layer(layer)
    ]
    assert np.mean(np.concatenate([k.ravel() for k in kernels]) == 0) == pytest.approx(
        TARGET, abs=0.01
    )


def causal_lm():
    return keras_hub.models.GPT2CausalLM(backbone=small_gpt2(), preprocessor=None)


def text_classifier():
    return keras_hub.models.BertTextClassifier(
        backbone=small_bert(), num_classes=3, preprocessor=None
    )


def small_llama3_lm():
    # Llama 3 unties its output projection: `reverse_embeddings`.
    backbone = keras_hub.models.Llama3Backbone(
        vocabulary_size=VOCABULARY, num_layers=2, num_query_heads=2,
        num_key_value_heads=1, hidden_dim=64, intermediate_dim=128,
    )
    return keras_hub.models.Llama3CausalLM(backbone=backbone, preprocessor=None)


TASKS = {"gpt2_causal_lm": causal_lm, "bert_text_classifier": text_classifier}


def parameter_share(layers, model):
    return sum(int(np.prod(l.raw_kernel.shape)) for l in layers) / model.count_params()


@pytest.mark.parametrize("name", sorted(TASKS))
def test_task_model_trains_sparse_with_its_tied_embedding(name):
    keras.utils.set_random_seed(0)
    model = TASKS[name]()
    method = keras_str.ST3(TARGET, keras_str.PolynomialSchedule(0, STEPS - 2))
    keras_str.sparsify(model, method=method, in_place=True)
    layers = sparse_layers(model)
    token_embedding = model.backbone.token_embedding
    assert isinstance(token_embedding, keras_str.STRReversibleEmbedding)
    # All but the position embedding and the norms' scales.
    assert parameter_share(layers, model) > 0.97

    x = token_inputs(model.backbone)
    if name == "gpt2_causal_lm":
        y = x["token_ids"]
    else:
        y = np.arange(BATCH * STEPS) % 3
    model.compile(
        keras.optimizers.Adam(1e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(x, y, batch_size=BATCH, verbose=0)

    # The causal LM calls its tied embedding twice a step; it counts once.
    assert [int(to_numpy(l.sparsity_step)) for l in layers] == [STEPS] * len(layers)
    kernels = [to_numpy(l.thresholded_kernel()) for l in layers]
    overall = np.mean(np.concatenate([k.ravel() for k in kernels]) == 0)
    assert abs(overall - TARGET) < 0.01

    sample = keras.tree.map_structure(lambda v: v[:2], x)
    sparse_outputs = to_numpy(model(sample))
    plain = keras_str.strip(model, in_place=True)
    assert not sparse_layers(plain)
    assert type(plain.backbone.token_embedding) is keras.layers.ReversibleEmbedding
    np.testing.assert_allclose(to_numpy(plain(sample)), sparse_outputs, atol=1e-5)


def test_untied_output_projection_is_sparse_and_copied():
    keras.utils.set_random_seed(0)
    model = small_llama3_lm()
    sample = {k: v[:2] for k, v in token_inputs(model.backbone).items()}
    dense_outputs = to_numpy(model(sample))
    dense_paths = variable_paths(model)

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # nothing is left dense
        keras_str.sparsify(
            model, method=keras_str.ST3(0.0, keras_str.ConstantSchedule()), in_place=True
        )
    embedding = model.backbone.token_embedding
    assert is_sparse_layer(embedding.reverse_projection)
    assert parameter_share(sparse_layers(model), model) > 0.95
    assert dense_paths <= variable_paths(model)
    # Nothing pruned yet: the copied model (reverse_embeddings included)
    # computes what the dense one did.
    np.testing.assert_allclose(to_numpy(model(sample)), dense_outputs, atol=1e-5)
    plain = keras_str.strip(model, in_place=True)
    assert variable_paths(plain) == dense_paths
    np.testing.assert_allclose(to_numpy(plain(sample)), dense_outputs, atol=1e-5)


def scheduled_method(name, end_step):
    schedule = keras_str.PolynomialSchedule(0, end_step)
    if name == "st3_sigma":
        return keras_str.ST3(TARGET, schedule, scope="sigma")
    if name == "gmp":
        return keras_str.GMP(TARGET, schedule)
    if name == "str_target":
        return keras_str.STR(TARGET, schedule, threshold_init=-5.0)
    raise ValueError(name)


def method_cases():
    # ST-3's global scope runs in every backbone test above. The others run
    # by default where a step is cheap (PyTorch), under `slow` elsewhere.
    for backbone in sorted(BACKBONES):
        for method in ("st3_sigma", "gmp", "str_target", "str"):
            yield pytest.param(
                backbone, method, marks=slow_on("tensorflow", "jax"),
                id=f"{backbone}-{method}",
            )


@pytest.mark.parametrize("backbone, method_name", list(method_cases()))
def test_every_method_trains_the_backbone_sparse(backbone, method_name):
    keras.utils.set_random_seed(0)
    model = BACKBONES[backbone]()
    steps = 16
    if method_name == "str":
        # Plain STR: the decay on W and s sets the sparsity.
        keras_str.sparsify(
            model, method=keras_str.STR(threshold_init=-6.0), weight_decay=5e-3,
            in_place=True,
        )
    else:
        keras_str.sparsify(
            model, method=scheduled_method(method_name, steps - 4), in_place=True
        )
    layers = sparse_layers(model)
    x = token_inputs(model, n=BATCH * steps)
    outputs = model(keras.tree.map_structure(lambda v: v[:1], x))
    y = keras.tree.map_structure(
        lambda t: np.zeros((BATCH * steps,) + tuple(t.shape[1:]), "float32"), outputs
    )
    model.compile(keras.optimizers.Adam(1e-3), "mse")
    model.fit(x, y, batch_size=BATCH, verbose=0)

    fractions = [np.mean(to_numpy(l.thresholded_kernel()) == 0) for l in layers]
    sizes = [int(np.prod(l.raw_kernel.shape)) for l in layers]
    overall = np.average(fractions, weights=sizes)
    if method_name == "str":
        assert 0.05 < overall < 0.99
        assert min(fractions) > 0
    elif method_name == "gmp":
        # GMP's target is per layer.
        assert max(abs(f - TARGET) for f in fractions) < 0.01
    else:
        assert abs(overall - TARGET) < 0.01
        # One global threshold: layers differ, none is left dense.
        assert min(fractions) > 0.3


def test_no_deprecation_warnings_from_sparsify_strip_and_report():
    model = small_bert()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        keras_str.sparsify(
            model, method=keras_str.ST3(TARGET, keras_str.ConstantSchedule()), in_place=True
        )
        keras_str.sparsity_report(model)
        keras_str.strip(model, in_place=True)
    assert [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)] == []


def test_report_names_layers_by_path_and_counts_macs_per_token():
    model = causal_lm()
    keras_str.sparsify(
        model, method=keras_str.ST3(TARGET, keras_str.ConstantSchedule()), in_place=True
    )
    report = keras_str.sparsity_report(model)
    names = [row.name for row in report.rows]
    assert len(names) == len(set(names))
    rows = {row.name: row for row in report.rows}
    query = rows["transformer_layer_0/self_attention/query"]
    assert query.layer_class == "STREinsumDense"
    # hidden 64 -> 2 heads x 32: one multiply-add per weight per token.
    assert (query.params, query.dense_macs, query.macs_per) == (4096, 4096, "position")
    # The tied table: no MACs for the lookup, one per weight per token for
    # the logits; counted once although the task and its backbone hold it.
    embedding = rows["token_embedding"]
    assert embedding.dense_macs == VOCABULARY * 64
    assert names.count("token_embedding") == 1
    assert report.totals["params"] <= model.count_params()
    assert "MACs per position" in report.table()


def test_position_embedding_is_sparse_and_strips_to_keras_hubs_layer():
    keras.utils.set_random_seed(0)
    model = small_gpt2()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # nothing is left dense
        keras_str.sparsify(
            model, method=keras_str.ST3(TARGET, keras_str.ConstantSchedule()), in_place=True
        )
    sample = {k: v[:2] for k, v in token_inputs(model).items()}
    model(sample, training=True)
    position = model.get_layer("position_embedding")
    assert type(position).__name__ == "STRPositionEmbedding"
    table = to_numpy(position.thresholded_kernel())
    assert np.mean(table == 0) > 0.5
    report = keras_str.sparsity_report(model)
    # A position table is added, not multiplied: no MACs, and the totals
    # are known.
    rows = {row.name: row for row in report.rows}
    assert rows["position_embedding"].dense_macs == 0
    assert report.totals["dense_macs"] is not None
    expected = to_numpy(model(sample))

    plain = keras_str.strip(model, in_place=True)
    stripped = plain.get_layer("position_embedding")
    assert type(stripped) is keras_hub.layers.PositionEmbedding
    np.testing.assert_array_equal(to_numpy(stripped.position_embeddings), table)
    np.testing.assert_allclose(to_numpy(plain(sample)), expected, atol=1e-5)


def test_report_names_an_untied_output_projection():
    model = small_llama3_lm()
    keras_str.sparsify(
        model, method=keras_str.ST3(TARGET, keras_str.ConstantSchedule()), in_place=True
    )
    model(keras.tree.map_structure(lambda v: v[:1], token_inputs(model.backbone)), training=True)
    rows = {row.name: row for row in keras_str.sparsity_report(model).rows}
    row = rows["token_embedding/reverse_embeddings"]
    assert row.layer_class == "STRKernelWeight"
    assert row.params == VOCABULARY * 64 and row.sparsity > 0.5


def trained_causal_lm(steps=4):
    keras.utils.set_random_seed(0)
    model = causal_lm()
    keras_str.sparsify(
        model,
        method=keras_str.ST3(TARGET, keras_str.PolynomialSchedule(0, steps - 2)),
        keep_dense=lambda layer: layer.name == "attention_output",
        in_place=True,
    )
    x = token_inputs(model.backbone, n=BATCH * steps)
    x.pop("segment_ids", None)
    model.compile(
        keras.optimizers.Adam(1e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(x, x["token_ids"], batch_size=BATCH, verbose=0)
    return model, {k: v[:2] for k, v in x.items()}


def test_a_model_sparsified_in_place_saves_and_reloads(tmp_path):
    model, sample = trained_causal_lm()
    path = tmp_path / "sparse.keras"
    model.save(path)

    reloaded = keras_str.load_model(path)

    assert type(reloaded) is type(model)
    assert variable_paths(reloaded) == variable_paths(model)
    assert [type(l).__name__ for l in sparse_layers(reloaded)] == [
        type(l).__name__ for l in sparse_layers(model)
    ]
    # keep_dense was replayed: the attention output projections stay plain.
    assert not any(l.name == "attention_output" for l in sparse_layers(reloaded))
    np.testing.assert_allclose(to_numpy(reloaded(sample)), to_numpy(model(sample)), atol=1e-6)
    np.testing.assert_array_equal(
        to_numpy(reloaded.backbone.token_embedding.sparsity_step),
        to_numpy(model.backbone.token_embedding.sparsity_step),
    )
    # Training goes on from the saved optimizer state.
    reloaded.fit(sample, sample["token_ids"], verbose=0)


# A fresh process imports Keras, keras-hub and keras-str again: ~20 s, run
# by default where that is cheapest.
@slow_on("tensorflow", "jax")
def test_saved_sparse_and_stripped_models_reload_in_a_fresh_process(tmp_path):
    model, sample = trained_causal_lm()
    expected = to_numpy(model(sample))
    model.save(tmp_path / "sparse.keras")
    keras_str.strip(model, in_place=True)
    np.testing.assert_allclose(to_numpy(model(sample)), expected, atol=1e-5)
    model.save(tmp_path / "stripped.keras")
    np.savez(tmp_path / "sample.npz", **sample)

    # The stripped model loads with Keras and keras-hub alone.
    script = textwrap.dedent(
        f"""
        import json, sys
        import keras, numpy as np
        sample = dict(np.load({str(tmp_path / "sample.npz")!r}))
        stripped = keras.saving.load_model({str(tmp_path / "stripped.keras")!r})
        plain = "keras_str" not in sys.modules
        import keras_str
        sparse = keras_str.load_model({str(tmp_path / "sparse.keras")!r})
        out = {{
            "class": type(stripped).__name__,
            "plain": plain,
            "stripped": keras.ops.convert_to_numpy(stripped(sample)).tolist(),
            "sparse": keras.ops.convert_to_numpy(sparse(sample)).tolist(),
        }}
        print(json.dumps(out))
        """
    )
    env = {**os.environ, "KERAS_BACKEND": keras.backend.backend()}
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert run.returncode == 0, run.stderr[-4000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["class"] == "GPT2CausalLM" and out["plain"]
    np.testing.assert_allclose(np.array(out["sparse"]), expected, atol=1e-6)
    np.testing.assert_allclose(np.array(out["stripped"]), expected, atol=1e-5)


def zoo():
    """Every model family of the issue, small and random (built offline)."""
    gemma = dict(
        vocabulary_size=VOCABULARY, num_layers=2, num_query_heads=2,
        num_key_value_heads=1, hidden_dim=64, intermediate_dim=128, head_dim=32,
    )
    vit = dict(
        image_shape=(32, 32, 3), patch_size=8, num_layers=2, num_heads=2,
        hidden_dim=64, mlp_dim=128,
    )
    return {
        "bert_backbone": small_bert,
        "bert_text_classifier": text_classifier,
        "gpt2_backbone": small_gpt2,
        "gpt2_causal_lm": causal_lm,
        "gemma_backbone": lambda: keras_hub.models.GemmaBackbone(**gemma),
        "gemma_causal_lm": lambda: keras_hub.models.GemmaCausalLM(
            backbone=keras_hub.models.GemmaBackbone(**gemma), preprocessor=None
        ),
        "gemma3_backbone": lambda: keras_hub.models.Gemma3Backbone(
            **gemma, image_size=None, vision_encoder=None
        ),
        "llama3_causal_lm": small_llama3_lm,
        "vit_backbone": lambda: keras_hub.models.ViTBackbone(**vit),
        "vit_image_classifier": lambda: keras_hub.models.ViTImageClassifier(
            backbone=keras_hub.models.ViTBackbone(**vit), num_classes=3,
            preprocessor=None,
        ),
    }


def zoo_inputs(model, n):
    backbone = getattr(model, "backbone", model)
    if isinstance(backbone, keras_hub.models.ViTBackbone):
        return np.random.default_rng(0).normal(size=(n, 32, 32, 3)).astype("float32")
    inputs = token_inputs(backbone, n=n)
    return {k: v for k, v in inputs.items() if k in backbone._inputs_struct}


def zoo_targets(model, x, n):
    """Targets and a loss that keras-hub's task models accept (they add their metrics)."""
    if isinstance(model, keras_hub.models.CausalLM):
        return x["token_ids"], keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if isinstance(model, keras_hub.models.Task):
        # The classifiers: 3 classes.
        return np.arange(n) % 3, keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    outputs = model(keras.tree.map_structure(lambda v: v[:1], x))
    y = keras.tree.map_structure(
        lambda t: np.zeros((n,) + tuple(t.shape[1:]), "float32"), outputs
    )
    return y, "mse"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(zoo()))
def test_zoo_trains_sparse_strips_and_reloads(name, tmp_path):
    keras.utils.set_random_seed(0)
    model = zoo()[name]()
    steps = 6
    keras_str.sparsify(
        model, method=keras_str.ST3(TARGET, keras_str.PolynomialSchedule(0, steps - 2)),
        in_place=True,
    )
    layers = sparse_layers(model)
    x = zoo_inputs(model, BATCH * steps)
    y, loss = zoo_targets(model, x, BATCH * steps)
    model.compile(keras.optimizers.Adam(1e-3), loss)
    model.fit(x, y, batch_size=BATCH, verbose=0)

    assert {int(to_numpy(l.sparsity_step)) for l in layers} == {steps}
    fractions = [np.mean(to_numpy(l.thresholded_kernel()) == 0) for l in layers]
    sizes = [int(np.prod(l.raw_kernel.shape)) for l in layers]
    assert abs(np.average(fractions, weights=sizes) - TARGET) < 0.01

    sample = keras.tree.map_structure(lambda v: v[:2], x)
    expected = keras.tree.map_structure(to_numpy, model(sample))
    model.save(tmp_path / "sparse.keras")
    reloaded = keras_str.load_model(tmp_path / "sparse.keras")
    keras.tree.map_structure(
        lambda a, b: np.testing.assert_allclose(to_numpy(a), b, atol=1e-6),
        reloaded(sample), expected,
    )
    plain = keras_str.strip(model, in_place=True)
    assert not sparse_layers(plain)
    keras.tree.map_structure(
        lambda a, b: np.testing.assert_allclose(to_numpy(a), b, atol=1e-5),
        plain(sample), expected,
    )


def test_strip_without_in_place_copies_a_model_sparsified_in_place():
    model = small_gpt2()
    method = keras_str.GMP(0.8, keras_str.ConstantSchedule())
    keras_str.sparsify(model, method=method, in_place=True)
    x = token_inputs(model, n=2)
    model(x, training=True)
    plain = keras_str.strip(model)
    assert plain is not model
    assert not sparse_layers(plain)
    assert sparse_layers(model)
    np.testing.assert_allclose(to_numpy(plain(x)), to_numpy(model(x)), atol=1e-5)
    assert keras_str.sparsity_report(plain).totals["sparsity"] == pytest.approx(0.8, abs=0.01)
