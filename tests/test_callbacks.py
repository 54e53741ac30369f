import glob

import keras
import numpy as np
import pytest

import keras_str


def test_monitor_logs_sparsity_and_thresholds_into_history(tmp_path):
    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras_str.STRDense(16, activation="relu", name="hidden"),
            keras.layers.Dense(2, name="plain"),
        ]
    )
    keras_str.apply_weight_decay(model, 0.05)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="mse")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 8)).astype("float32")
    y = x[:, :2]
    history = model.fit(
        x,
        y,
        epochs=8,
        batch_size=16,
        verbose=0,
        callbacks=[keras_str.SparsityMonitor(log_dir=str(tmp_path))],
    )
    logs = history.history
    assert len(logs["sparsity"]) == 8
    assert len(logs["sparsity/hidden"]) == 8
    assert len(logs["threshold/hidden"]) == 8
    assert "threshold/plain" not in logs
    # The decay raises the threshold epoch after epoch.
    assert logs["threshold/hidden"][-1] > logs["threshold/hidden"][0]
    final = keras_str.sparsity_report(model)
    assert logs["sparsity"][-1] == final.totals["sparsity"]
    assert glob.glob(str(tmp_path / "events.out.tfevents.*"))


def test_monitor_total_only():
    model = keras.Sequential([keras.Input((4,)), keras_str.STRDense(2)])
    model.compile(optimizer="sgd", loss="mse")
    history = model.fit(
        np.zeros((8, 4)),
        np.zeros((8, 2)),
        epochs=1,
        verbose=0,
        callbacks=[keras_str.SparsityMonitor(per_layer=False)],
    )
    assert set(history.history) == {"loss", "sparsity"}


def test_the_no_op_update_callback_of_0_2_is_gone():
    # Scheduled methods advance in the train step (CHANGELOG.md, 0.3.0).
    assert not hasattr(keras_str, "UpdateSparsity")
    assert not hasattr(keras_str, "STRLayer")



@pytest.mark.parametrize(
    "kwargs, argument",
    [({"log_dir": 3}, "log_dir"), ({"per_layer": "yes"}, "per_layer")],
)
def test_monitor_refuses_bad_arguments(kwargs, argument):
    with pytest.raises(ValueError, match=f"argument `{argument}`.*Received"):
        keras_str.SparsityMonitor(**kwargs)
