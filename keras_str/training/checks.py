"""Saying, during and after `fit`, what went wrong in sparse training."""

import functools
import inspect
import math
import warnings

import keras

from keras_str.analysis.health import nonfinite_layers
from keras_str.analysis.health import unfinished_schedules

# Where `fit` takes `callbacks` when it is passed by position.
_CALLBACKS_POSITION = list(inspect.signature(keras.Model.fit).parameters).index("callbacks") - 1


class SparsityChecks(keras.callbacks.Callback):
    """Warns when sparse layers go NaN or inf, and when a schedule cannot finish.

    Sparse layers note in-step, without a host read, the step at which
    their trained values (kernel, threshold, scheduled quantile) first held
    NaN or inf. At each epoch end this callback reads the notes: a layer
    gone non-finite gets a `RuntimeWarning` naming it and the step, and
    training stops (`model.stop_training`; the model's weights are lost
    anyway). At the end of `fit`, it checks the last step's values too,
    and warns about every scheduled method (`ST3`, `GMP`, targeted `STR`)
    whose schedule has not reached its end step, with the steps trained and
    the sparsity reached against the target.

    Models from `keras_str.sparsify` and `keras_str.load_model` run it in
    every `fit` by themselves; pass it to `fit` for models built from
    keras-str layers directly.

    Example:

    >>> model = keras.Sequential([keras.Input((16,)), keras_str.STRDense(4)])
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> _ = model.fit(np.random.rand(32, 16), np.random.rand(32, 4), verbose=0,
    ...               callbacks=[keras_str.SparsityChecks()])
    """

    def __init__(self):
        super().__init__()
        self._reported = set()

    def on_train_begin(self, logs=None):
        self._reported = set()

    def on_epoch_end(self, epoch, logs=None):
        self._report_nonfinite(nonfinite_layers(self.model), f"after epoch {epoch + 1}", logs)

    def on_train_end(self, logs=None):
        self._report_nonfinite(
            nonfinite_layers(self.model, check_values=True), "at the end of training", logs
        )
        for unfinished in unfinished_schedules(self.model):
            warnings.warn(unfinished.describe(), stacklevel=2)

    def _report_nonfinite(self, layers, when, logs):
        new = [layer for layer in layers if layer.name not in self._reported]
        if not new:
            return
        self._reported.update(layer.name for layer in new)
        loss = (logs or {}).get("loss")
        loss_note = ""
        if isinstance(loss, (int, float)) and not math.isfinite(loss):
            loss_note = f" The loss is {loss}."
        listed = "; ".join(layer.describe() for layer in new[:5])
        more = f"; and {len(new) - 5} more layers" if len(new) > 5 else ""
        warnings.warn(
            f"{len(new)} sparse layers hold NaN or inf {when}: {listed}{more}."
            f"{loss_note} Training stops here: lower the learning rate, clip "
            "gradients (`clipnorm=`), or check the data for NaN.",
            RuntimeWarning,
            stacklevel=2,
        )
        self.model.stop_training = True


def check_during_fit(model):
    """Makes `model.fit` run `SparsityChecks` unless the call passes one.

    Set on this model object only; Keras saves layers and variables, not
    it, so models loaded back get it from `keras_str.load_model`. On a
    model stripped in place the checks find no sparse layer and say nothing.
    """
    if "_keras_str_plain_fit" in vars(model):
        return
    plain_fit = model.fit

    @functools.wraps(plain_fit)
    def fit(*args, **kwargs):
        args = list(args)
        if len(args) > _CALLBACKS_POSITION:
            args[_CALLBACKS_POSITION] = _with_checks(args[_CALLBACKS_POSITION], model)
        else:
            kwargs["callbacks"] = _with_checks(kwargs.get("callbacks"), model)
        return plain_fit(*args, **kwargs)

    # Plain attributes: Keras tracks layers and variables, not functions.
    object.__setattr__(model, "fit", fit)
    object.__setattr__(model, "_keras_str_plain_fit", plain_fit)


def _with_checks(callbacks, model):
    if isinstance(callbacks, keras.callbacks.CallbackList):
        # Used by `fit` as it is: the new callback needs the model now.
        if not any(isinstance(c, SparsityChecks) for c in callbacks.callbacks):
            checks = SparsityChecks()
            checks.set_model(model)
            callbacks.callbacks.append(checks)
        return callbacks
    callbacks = list(callbacks or [])
    if not any(isinstance(c, SparsityChecks) for c in callbacks):
        callbacks.append(SparsityChecks())
    return callbacks
