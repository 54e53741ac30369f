"""Faults that used to pass without a word: each now says what went wrong, and where."""

import warnings

import keras
import numpy as np
import pytest

import keras_str
from keras_str.analysis.health import NEVER_TRAINED
from tests.backend_utils import to_numpy


def mlp(name="mlp"):
    return keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(16, activation="relu", name="hidden"),
            keras.layers.BatchNormalization(name="norm"),
            keras.layers.Dense(3, name="logits"),
        ],
        name=name,
    )


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.hidden = keras.layers.Dense(8, name="hidden")
        self.logits = keras.layers.Dense(2, name="logits")

    def call(self, inputs, training=None):
        return self.logits(self.hidden(inputs))


# sparsify refuses what it cannot rewrite sensibly.


def test_sparsify_refuses_a_model_sparsified_before():
    sparse = keras_str.sparsify(mlp(), weight_decay=1e-4)
    with pytest.raises(ValueError, match=r"already has 2 sparse layers \(hidden, logits\)"):
        keras_str.sparsify(sparse, method=keras_str.ST3(0.9, keras_str.PolynomialSchedule(0, 10)))
    # Stripped, it is a plain model again.
    keras_str.sparsify(keras_str.strip(sparse), weight_decay=1e-4)


def test_sparsify_refuses_a_subclassed_model_rewritten_before():
    model = Subclassed()
    model(np.zeros((1, 4), "float32"))
    keras_str.sparsify(model, in_place=True, weight_decay=1e-4)
    with pytest.raises(ValueError, match="already has 2 sparse layers"):
        keras_str.sparsify(model, in_place=True, weight_decay=1e-4)


def test_sparsify_refuses_a_model_built_from_sparse_layers():
    model = keras.Sequential([keras.Input((4,)), keras_str.STRDense(3, name="mine")])
    with pytest.raises(ValueError, match=r"already has 1 sparse layers \(mine\)"):
        keras_str.sparsify(model, weight_decay=1e-4)


@pytest.mark.parametrize(
    "layer, weight, value, counts",
    [
        ("hidden", 0, np.nan, "1 NaN, 0 inf"),
        ("logits", 1, np.inf, "0 NaN, 1 inf"),
        ("norm", 3, -np.inf, "0 NaN, 1 inf"),
    ],
)
def test_sparsify_refuses_non_finite_weights_naming_layer_and_weight(layer, weight, value, counts):
    model = mlp()
    variable = model.get_layer(layer).weights[weight]
    values = to_numpy(variable).copy()
    values.flat[0] = value
    variable.assign(values)
    with pytest.raises(ValueError, match=f"Layer '{layer}' holds non-finite values in its weight '{variable.name}' \\({counts}"):
        keras_str.sparsify(model, weight_decay=1e-4)


# Non-finite values are caught in-step and named.

X = np.random.default_rng(0).normal(size=(64, 6)).astype("float32")
Y = np.random.default_rng(1).integers(0, 3, 64)
ST3_LONG = keras_str.ST3(0.9, keras_str.PolynomialSchedule(0, 10_000))


def with_nan(row=20):
    x = X.copy()
    x[row, 2] = np.nan
    return x


def compiled(model):
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    return model


def fit_recording(model, x, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(x, Y, batch_size=8, shuffle=False, verbose=0, **kwargs)
    return history, [w for w in caught if not issubclass(w.category, DeprecationWarning)]


def messages(caught, category):
    return [str(w.message) for w in caught if issubclass(w.category, category)]


@pytest.mark.parametrize("method", [None, ST3_LONG], ids=["str", "st3"])
def test_nan_in_the_data_names_the_layer_and_step_and_stops_training(method):
    model = compiled(keras_str.sparsify(mlp(), weight_decay=1e-4, method=method))
    # Row 20 is in batch 3: its update makes the weights NaN.
    history, caught = fit_recording(model, with_nan(20), epochs=3)
    assert len(history.history["loss"]) == 1  # stopped after the first epoch
    [message] = messages(caught, RuntimeWarning)
    assert "hidden: NaN or inf in kernel" in message
    assert "first seen after 3 training steps" in message
    assert "The loss is nan" in message
    report = keras_str.sparsity_report(model)
    assert "NaN or inf" in {row.name: row.note for row in report.rows}["hidden"]
    assert any(w.startswith("hidden: NaN or inf") for w in report.warnings)


def test_a_nan_threshold_is_named():
    model = compiled(keras_str.sparsify(mlp(), weight_decay=1e-4))
    history, caught = fit_recording(model, with_nan(0), epochs=1)
    [message] = messages(caught, RuntimeWarning)
    # STR's threshold s gets the NaN gradient too.
    assert "hidden: NaN or inf in kernel, threshold, first seen after 1 training step " in message


def test_an_inf_weight_before_training_is_named():
    model = compiled(keras_str.sparsify(mlp(), method=keras_str.ST3(0.5, keras_str.PolynomialSchedule(0, 8))))
    layer = model.get_layer("logits")
    kernel = to_numpy(layer.raw_kernel).copy()
    kernel[0, 0] = np.inf
    layer.raw_kernel.assign(kernel)
    _, caught = fit_recording(model, X, epochs=2)
    [message] = messages(caught, RuntimeWarning)
    assert "logits: NaN or inf in kernel" in message
    assert "before its first training step" in message


def test_terminate_on_nan_still_stops_at_the_batch_and_the_last_update_is_named():
    model = compiled(keras_str.sparsify(mlp(), weight_decay=1e-4))
    history, caught = fit_recording(
        model, with_nan(20), epochs=3, callbacks=[keras.callbacks.TerminateOnNaN()]
    )
    assert model.stop_training
    assert len(history.history["loss"]) <= 1
    [message] = messages(caught, RuntimeWarning)
    # Keras runs the step after the NaN loss before TerminateOnNaN reads
    # it; that step saw the NaN weights.
    assert "hidden: NaN or inf in kernel, threshold" in message


def test_finite_training_says_nothing():
    model = compiled(keras_str.sparsify(mlp(), method=keras_str.ST3(0.5, keras_str.PolynomialSchedule(0, 8))))
    history, caught = fit_recording(model, X, epochs=2)
    assert len(history.history["loss"]) == 2
    assert messages(caught, Warning) == []
    assert keras_str.sparsity_report(model).warnings == []
    hidden = model.get_layer("hidden")
    assert int(to_numpy(hidden.finite_steps)) == 16
    assert int(to_numpy(hidden.sparsity_step)) == 16


def test_checks_run_once_when_passed_explicitly():
    model = compiled(keras_str.sparsify(mlp(), weight_decay=1e-4))
    _, caught = fit_recording(model, with_nan(20), epochs=1, callbacks=[keras_str.SparsityChecks()])
    assert len(messages(caught, RuntimeWarning)) == 1


def test_models_of_sparse_layers_are_checked_with_the_callback():
    model = compiled(
        keras.Sequential([keras.Input((6,)), keras_str.STRDense(3, name="only")])
    )
    _, caught = fit_recording(model, with_nan(20), epochs=1, callbacks=[keras_str.SparsityChecks()])
    [message] = messages(caught, RuntimeWarning)
    assert "only: NaN or inf in kernel, threshold, first seen after 3 training steps" in message


def test_loaded_models_are_checked(tmp_path):
    path = str(tmp_path / "model.keras")
    compiled(keras_str.sparsify(mlp(), weight_decay=1e-4)).save(path)
    model = keras_str.load_model(path)
    _, caught = fit_recording(model, with_nan(20), epochs=1)
    assert len(messages(caught, RuntimeWarning)) == 1


# Schedules that cannot finish say so.


def test_a_schedule_that_cannot_finish_warns_at_the_end_of_fit_and_in_the_report():
    model = compiled(keras_str.sparsify(mlp(), method=ST3_LONG))
    _, caught = fit_recording(model, X, epochs=1)
    [message] = messages(caught, UserWarning)
    assert message.startswith(
        "ST3's schedule ends at step 10000, but its layers trained 8 steps: 0.0 % zeros "
        "against its target of 90.0 %. Train 9993 more steps"
    )
    assert keras_str.sparsity_report(model).warnings == [message]
    assert f"warning: {message}" in keras_str.sparsity_report(model).table()


def test_a_schedule_that_finished_says_nothing():
    # Eight steps, 0 to 7: the update of step 7 sets the final mask.
    method = keras_str.GMP(0.5, keras_str.PolynomialSchedule(0, 7))
    model = compiled(keras_str.sparsify(mlp(), method=method))
    _, caught = fit_recording(model, X, epochs=1)
    assert messages(caught, UserWarning) == []
    assert keras_str.sparsity_report(model).totals["sparsity"] == pytest.approx(0.5, abs=0.01)


def test_a_schedule_one_step_short_says_so():
    method = keras_str.GMP(0.5, keras_str.PolynomialSchedule(0, 8))
    model = compiled(keras_str.sparsify(mlp(), method=method))
    _, caught = fit_recording(model, X, epochs=1)
    [message] = messages(caught, UserWarning)
    assert "GMP's schedule ends at step 8, but its layers trained 8 steps" in message
    assert "Train 1 more step," in message


# Fitting the wrong model.


def test_the_report_says_when_sparse_layers_never_trained():
    dense = compiled(mlp())
    sparse = keras_str.sparsify(dense, weight_decay=1e-4)
    dense.fit(X, Y, verbose=0)  # the wrong model
    report = keras_str.sparsity_report(sparse)
    assert report.warnings == [NEVER_TRAINED]
    assert "fit the one it returns" in report.table()
    compiled(sparse).fit(X, Y, verbose=0)
    assert keras_str.sparsity_report(sparse).warnings == []
