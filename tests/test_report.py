import json

import keras
import numpy as np
import pytest

import keras_str


def report_model():
    inputs = keras.Input((10, 10, 3))
    x = keras_str.STRConv2D(8, 3, strides=2, padding="same", name="conv")(inputs)
    x = keras_str.STRDepthwiseConv2D(3, padding="same", name="dw")(x)
    x = keras.layers.Conv2D(4, 1, name="plain_pointwise")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.BatchNormalization()(x)
    outputs = keras_str.STRDense(5, name="head")(x)
    return keras.Model(inputs, outputs)


def set_kernel_zeros(layer, fraction, seed=0):
    kernel = layer._kernel
    rng = np.random.default_rng(seed)
    values = rng.uniform(0.5, 1.0, size=kernel.shape) * rng.choice([-1, 1], kernel.shape)
    values[rng.random(kernel.shape) < fraction] = 0.0
    kernel.assign(values.astype("float32"))
    return int(np.count_nonzero(values))


def test_rows_count_params_nonzeros_and_macs():
    model = report_model()
    nonzeros = {
        name: set_kernel_zeros(model.get_layer(name), 0.5, seed)
        for seed, name in enumerate(["conv", "dw", "plain_pointwise", "head"])
    }
    report = keras_str.sparsity_report(model)
    rows = {row.name: row for row in report.rows}
    assert list(rows) == ["conv", "dw", "plain_pointwise", "head"]
    # conv: 3x3x3x8 kernel used at 5x5 output positions
    assert rows["conv"].params == 216
    assert rows["conv"].dense_macs == 216 * 25
    assert rows["dw"].params == 72 and rows["dw"].dense_macs == 72 * 25
    assert rows["plain_pointwise"].dense_macs == 32 * 25
    assert rows["head"].dense_macs == 20
    for name, row in rows.items():
        assert row.nonzeros == nonzeros[name]
        assert row.sparsity == pytest.approx(1 - nonzeros[name] / row.params)
        assert row.sparse_macs == row.nonzeros * (row.dense_macs // row.params)
    assert rows["plain_pointwise"].threshold is None
    assert rows["conv"].threshold == pytest.approx(1 / (1 + np.exp(10.0)), rel=1e-5)
    totals = report.totals
    assert totals["params"] == 216 + 72 + 32 + 20
    assert totals["nonzeros"] == sum(nonzeros.values())
    assert totals["dense_macs"] == sum(r.dense_macs for r in report.rows)
    assert totals["model_params"] == model.count_params()


def test_threshold_zeros_are_counted():
    model = report_model()
    head = model.get_layer("head")
    head._kernel.assign(np.full(head._kernel.shape, 0.3, "float32"))
    head.threshold_param.assign(0.0)  # g = 0.5 > 0.3: every weight pruned
    row = keras_str.sparsity_report(model).rows[-1]
    assert row.nonzeros == 0 and row.sparsity == 1.0 and row.sparse_macs == 0


def test_dense_on_sequences_counts_every_timestep():
    model = keras.Sequential([keras.Input((7, 4)), keras_str.STRDense(3)])
    row = keras_str.sparsity_report(model).rows[0]
    assert row.dense_macs == 7 * 12


def test_unknown_spatial_size_gives_no_macs():
    model = keras.Sequential([keras.Input((None, None, 3)), keras_str.STRConv2D(2, 3)])
    report = keras_str.sparsity_report(model)
    assert report.rows[0].dense_macs is None
    assert report.totals["dense_macs"] is None
    assert "?" in report.table()


def test_table_and_json_render_the_same_data(tmp_path):
    model = report_model()
    report = keras_str.sparsity_report(model)
    table = report.table()
    for row in report.rows:
        assert row.name in table
    # An untrained sparse model: the report says so below the totals.
    assert len(report.warnings) == 1
    lines = table.splitlines()
    assert lines[-3].startswith("total")
    assert lines[-2].startswith("all parameters")
    assert lines[-1] == f"warning: {report.warnings[0]}"
    path = tmp_path / "report.json"
    text = report.to_json(path)
    data = json.loads(path.read_text())
    assert data == json.loads(text)
    assert [layer["name"] for layer in data["layers"]] == [r.name for r in report.rows]
    assert data["totals"]["params"] == report.totals["params"]
    assert data["warnings"] == report.warnings
    assert list(tmp_path.iterdir()) == [path]


def test_json_to_missing_folder_is_a_clear_error(tmp_path):
    report = keras_str.sparsity_report(report_model())
    with pytest.raises(ValueError, match="does not exist"):
        report.to_json(tmp_path / "missing" / "report.json")


def test_unbuilt_model_is_refused():
    model = keras.Sequential([keras_str.STRDense(3)])
    with pytest.raises(ValueError, match="built"):
        keras_str.sparsity_report(model)


def test_nested_models_are_walked():
    inner = keras.Sequential([keras.Input((4,)), keras_str.STRDense(3, name="inner_dense")])
    outer = keras.Sequential([keras.Input((4,)), inner, keras.layers.Dense(2, name="outer")])
    names = [row.name for row in keras_str.sparsity_report(outer).rows]
    # Named by path inside `outer`.
    assert names == [f"{inner.name}/inner_dense", "outer"]
