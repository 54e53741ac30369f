import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_str
from examples import data as example_data
from examples.models import resnet20
from examples.training import TrainConfig
from examples.training import run_training
from keras_str.analysis.plots import plot_layer_sparsity
from keras_str.analysis.plots import plot_training_history
from keras_str.analysis.plots import plot_tradeoff

pytestmark = pytest.mark.tensorflow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HAVE_FASHION_MNIST = os.path.isdir(example_data.DEBIAN_FASHION_MNIST_DIR)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def tiny_data(n=512, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(n, 28, 28, 1)).astype("float32")
    y = rng.integers(0, 10, size=n)
    # Learnable: the label brightens one patch.
    for i, label in enumerate(y):
        x[i, 2 * label : 2 * label + 3, :6] += 1.0
    return (x[: n * 3 // 4], y[: n * 3 // 4]), (x[n * 3 // 4 :], y[n * 3 // 4 :])


@pytest.mark.parametrize(
    "method, target",
    [("dense", None), ("str", None), ("str", 0.8), ("st3", 0.8), ("gmp", 0.8)],
)
def test_run_training_reaches_target_and_strips(method, target):
    config = TrainConfig(model="lenet_300_100", method=method, target_sparsity=target,
                         epochs=2, batch_size=64, lr=0.05, warmup_epochs=0.5)
    result = run_training(config, tiny_data())
    assert len(result.history["val_accuracy"]) == 2
    assert not any(isinstance(l, keras_str.SparseKernelLayer) for l in result.stripped.layers)
    if target is not None:
        assert result.report.totals["sparsity"] == pytest.approx(target, abs=0.01)
        assert result.history["sparsity"][-1] == pytest.approx(target, abs=0.01)
    summary = result.summary()
    assert summary["sparse_mflops"] <= summary["dense_mflops"]
    assert 0.0 <= summary["test_accuracy"] <= 1.0


@pytest.mark.parametrize("method", ["gmp_n_m", "st3_n_m", "str_n_m"])
def test_run_training_reaches_two_four(method):
    config = TrainConfig(model="lenet_300_100", method=method, epochs=2, batch_size=64,
                         lr=0.05, gmp_frequency=5)
    result = run_training(config, tiny_data())
    assert result.report.totals["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert keras_str.check_n_m(result.stripped, "2:4").satisfied


def test_run_training_trains_a_given_model_from_its_own_weights():
    # The benchmarks' "from scratch" rows: a stripped architecture, re-initialized.
    config = TrainConfig(model="lenet_300_100", method="dense", epochs=1, batch_size=64)
    narrow = keras.Sequential(
        [keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(7),
         keras.layers.Dense(10)]
    )
    before = [w.copy() for w in narrow.get_weights()]
    result = run_training(config, tiny_data(), model=narrow)
    assert result.model is narrow
    assert result.stripped.count_params() == narrow.count_params()
    assert not all(np.array_equal(a, b) for a, b in zip(before, narrow.get_weights()))
    with pytest.raises(ValueError, match="gmp_tfmot"):
        run_training(
            TrainConfig(model="lenet_300_100", method="gmp_tfmot", target_sparsity=0.5),
            tiny_data(), model=narrow,
        )


@pytest.mark.parametrize(
    "changes, argument",
    [
        ({"method": "st3"}, "target_sparsity"),
        ({"method": "dense", "target_sparsity": 0.5}, "dense"),
        ({"method": "gmp", "target_sparsity": 1.0}, "target_sparsity"),
        ({"model": "vgg"}, "model"),
        ({"method": "magnitude"}, "method"),
        ({"method": "gmp_tfmot", "model": "resnet20", "target_sparsity": 0.5}, "resnet20"),
        ({"epochs": 0}, "epochs"),
        ({"pruning_end_fraction": 0.0}, "pruning_end_fraction"),
        ({"budget": "flops"}, "budget='flops'"),
        ({"method": "gmp", "target_sparsity": 0.5, "budget": "macs"}, "method='gmp'"),
        ({"method": "str", "channel_multiple": 8}, "channel_multiple=8"),
        ({"method": "gmp_channel", "target_sparsity": 0.5, "channel_multiple": 0},
         "channel_multiple=0"),
        ({"method": "gmp_n_m", "target_sparsity": 0.5}, "pattern sets"),
        ({"method": "st3_n_m", "target_sparsity": 0.5}, "pattern sets"),
        ({"method": "str_n_m", "target_sparsity": 0.5}, "pattern sets"),
    ],
)
def test_train_config_rejects_bad_values(changes, argument):
    with pytest.raises(ValueError, match=argument):
        TrainConfig(**changes).validate()


def test_budget_transfer_through_training():
    data = tiny_data()
    source = run_training(
        TrainConfig(method="str", target_sparsity=0.85, epochs=2, batch_size=64), data
    )
    budget = keras_str.layer_budget(source.stripped)
    transferred = run_training(
        TrainConfig(method="gmp", target_sparsity=0.85, epochs=2, batch_size=64,
                    layer_targets=budget),
        data,
    )
    for name, sparsity in budget.items():
        assert transferred.summary()["layer_sparsity"][name] == pytest.approx(
            sparsity, abs=0.01)


def test_resnet20_sparsifies_and_trains():
    model = resnet20(input_shape=(16, 16, 1), width=4)
    assert sum(isinstance(l, keras.layers.Add) for l in model.layers) == 9
    # The target is reached at step 3; the 4th step trains at it.
    method = keras_str.ST3(0.7, keras_str.PolynomialSchedule(0, 3))
    sparse = keras_str.sparsify(model, method=method, keep_dense=["logits"])
    sparse.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(0).uniform(size=(32, 16, 16, 1)).astype("float32")
    sparse.fit(x, np.arange(32) % 10, batch_size=8, epochs=1, verbose=0)
    report = keras_str.sparsity_report(keras_str.strip(sparse))
    sparse_rows = [r for r in report.rows if r.name != "logits"]
    zeros = sum(r.params - r.nonzeros for r in sparse_rows)
    assert zeros / sum(r.params for r in sparse_rows) == pytest.approx(0.7, abs=0.01)


def test_plots_write_png_files(tmp_path):
    model = keras_str.sparsify(
        keras.Sequential([keras.Input((8,)), keras.layers.Dense(6),
                          keras.layers.Dense(3)]), threshold_init=-1.0)
    report = keras_str.sparsity_report(model)
    plot_layer_sparsity(report, tmp_path / "layers.png")
    plot_training_history(
        {"accuracy": [0.5, 0.6], "val_accuracy": [0.4, 0.5], "sparsity": [0.1, 0.5]},
        tmp_path / "history.png",
    )
    rows = [{"method": m, "sparsity": s, "accuracy": a}
            for m, s, a in [("a", 90, 80.0), ("a", 95, 78.0), ("b", 90, 81.0)]]
    plot_tradeoff(rows, tmp_path / "tradeoff.png", x_key="sparsity")
    for name in ("layers.png", "history.png", "tradeoff.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG_MAGIC
    assert sorted(os.listdir(tmp_path)) == ["history.png", "layers.png", "tradeoff.png"]
    with pytest.raises(ValueError, match="history"):
        plot_training_history({"loss": [1.0]}, tmp_path / "bad.png")
    with pytest.raises(ValueError, match="does not exist"):
        plot_layer_sparsity(report, tmp_path / "missing" / "layers.png")


def run_script(module, *args, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True, text=True, cwd=ROOT, timeout=timeout,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )


@pytest.mark.skipif(not HAVE_FASHION_MNIST, reason="needs Debian's Fashion-MNIST")
def test_train_script_writes_every_output(tmp_path):
    train_script_run(tmp_path)


def train_script_run(tmp_path):
    out = tmp_path / "run"
    result = run_script(
        "examples.train", "--model", "lenet_300_100", "--method", "st3",
        "--target_sparsity", "0.9", "--epochs", "1", "--max_train_examples", "4096",
        "--out_dir", str(out),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(os.listdir(out)) == [
        "layer_sparsity.png", "model.keras", "model.tflite", "model_stripped.keras",
        "report.json", "summary.json", "training.png",
    ]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sparsity"] == pytest.approx(0.9, abs=0.01)
    assert summary["tflite_max_difference"] < 1e-4
    report = json.loads((out / "report.json").read_text())
    assert report["totals"]["sparsity"] == pytest.approx(summary["sparsity"])
    reloaded = keras_str.load_model(str(out / "model.keras"))
    assert isinstance(reloaded.layers[1].method, keras_str.ST3)
    assert "test accuracy" in result.stdout
    return out, report


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_FASHION_MNIST, reason="needs Debian's Fashion-MNIST")
def test_train_script_transfers_a_budget_from_a_report(tmp_path):
    # The same transfer runs in-process by default
    # (test_budget_transfer_through_training); this is the --budget_from flag.
    out, report = train_script_run(tmp_path)
    budget_run = tmp_path / "budget"
    result = run_script(
        "examples.train", "--method", "gmp", "--target_sparsity", "0.9",
        "--epochs", "1", "--max_train_examples", "2048",
        "--budget_from", str(out / "report.json"), "--out_dir", str(budget_run),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    transferred = json.loads((budget_run / "summary.json").read_text())
    for row in report["layers"]:
        assert transferred["layer_sparsity"][row["name"]] == pytest.approx(
            row["sparsity"], abs=0.01)


def test_train_script_rejects_bad_flags(tmp_path):
    result = run_script("examples.train", "--method", "st3",
                        "--out_dir", str(tmp_path / "x"))
    assert result.returncode != 0
    assert "target_sparsity" in result.stderr
    assert not (tmp_path / "x").exists()
    result = run_script("examples.train", "--method", "st3", "--target_sparsity",
                        "0.5", "--budget_from", str(tmp_path / "none.json"))
    assert result.returncode != 0 and "budget_from" in result.stderr


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_FASHION_MNIST, reason="needs Debian's Fashion-MNIST")
def test_train_script_tfmot_baseline(tmp_path):
    out = tmp_path / "tfmot"
    result = run_script(
        "examples.train", "--method", "gmp_tfmot", "--target_sparsity", "0.8",
        "--epochs", "1", "--max_train_examples", "4096", "--out_dir", str(out),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sparsity"] == pytest.approx(0.8, abs=0.01)
