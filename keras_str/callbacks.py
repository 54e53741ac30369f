"""Keras callbacks that advance scheduled sparsity and follow it while training."""

import json
import warnings

import keras

from keras_str.layers.str_layer import STRLayer
from keras_str.model_utils import iter_layers
from keras_str.report import sparsity_report


def scheduled_layer_groups(model):
    """Groups a model's layers whose methods are scheduled, by method config.

    Returns a list of `(method, layers)`: one group per distinct method
    (class and config), so that global choices are made across exactly the
    layers that share a method.
    """
    groups = {}
    for layer in iter_layers(model):
        if isinstance(layer, STRLayer) and layer.method.scheduled:
            key = (
                type(layer.method).__name__,
                json.dumps(layer.method.get_config(), sort_keys=True),
            )
            groups.setdefault(key, (layer.method, []))[1].append(layer)
    return list(groups.values())


def stalled_schedule_layers(model):
    """Names of layers whose scheduled method has never been advanced.

    A scheduled method (`ST3`, `GMP`, targeted `STR`) only sparsifies when
    `UpdateSparsity` runs during `fit`; without it the step counter stays
    at 0 and the layer trains dense.
    """
    return [
        layer.name
        for _, layers in scheduled_layer_groups(model)
        for layer in layers
        if int(keras.ops.convert_to_numpy(layer.sparsity_step)) == 0
    ]


def warn_if_stalled(model, when):
    """Warns, naming the layers, when scheduled methods never advanced."""
    stalled = stalled_schedule_layers(model)
    if stalled:
        warnings.warn(
            f"{when}: layers {stalled} of model {model.name!r} use a scheduled "
            "sparsity method whose schedule never advanced (sparsity_step=0), "
            "so they are as dense as they started. Pass "
            "`callbacks=[keras_str.UpdateSparsity()]` to every `fit()` of this model.",
            stacklevel=3,
        )


class UpdateSparsity(keras.callbacks.Callback):
    """Advances scheduled sparsity methods (`ST3`, `GMP`, targeted `STR`).

    Before every training batch, each group of layers sharing a scheduled
    method is updated for the current step (ST-3's global threshold, GMP's
    masks, the STR offset), then the layers' step counters (saved with the
    model, like the masks and thresholds) advance by one. A last update at
    the end of training leaves the model exactly at its scheduled sparsity. Resuming from a
    saved model resumes the schedule. Like tfmot's `UpdatePruningStep`, it
    must be passed to every `fit()` of a model with scheduled methods; it
    raises if the model has none, so a misconfigured run fails at once.

    Example:

    >>> method = keras_str.ST3(0.9, keras_str.PolynomialSchedule(0, 1000))
    >>> model = keras_str.sparsify(dense_model, method=method)
    >>> model.compile("sgd", "mse")
    >>> model.fit(x, y, callbacks=[keras_str.UpdateSparsity()])
    """

    def __init__(self):
        super().__init__()
        self._groups = None

    def on_train_begin(self, logs=None):
        self._groups = scheduled_layer_groups(self.model)
        if not self._groups:
            raise ValueError(
                "`UpdateSparsity` found no layer with a scheduled sparsity "
                "method (ST3, GMP, or STR with target_sparsity) in model "
                f"{self.model.name!r}. Received: model={self.model.name!r}"
            )
        self._layers = [layer for _, layers in self._groups for layer in layers]

    @property
    def step(self):
        """The schedule step the next batch trains at."""
        return int(keras.ops.convert_to_numpy(self._layers[0].sparsity_step))

    def on_train_batch_begin(self, batch, logs=None):
        step = self.step
        for method, layers in self._groups:
            if method.due(step):
                method.update(layers, step)
        for layer in self._layers:
            layer.sparsity_step.assign(step + 1)

    def on_train_end(self, logs=None):
        # The last optimizer step moved weights (and STR's s) after the last
        # update; one more leaves the saved model exactly on schedule.
        step = self.step
        for method, layers in self._groups:
            method.update(layers, step)


class SparsityMonitor(keras.callbacks.Callback):
    """Logs overall and per-layer sparsity and thresholds after each epoch.

    Adds `sparsity` (overall kernel sparsity), `sparsity/<layer>` and, for
    STR layers, `threshold/<layer>` (mean `g(s)`) to the epoch logs, so they
    land in `History.history` and in every callback after this one. With a
    `log_dir`, also writes them as TensorBoard scalars (TensorFlow's summary
    writer, imported only then). After the first epoch it warns if a
    scheduled method never advanced (no `UpdateSparsity` in `fit`).

    Args:
        log_dir: Optional folder for TensorBoard event files.
        per_layer: Whether to log each layer, not just the total.

    Example:

    >>> history = model.fit(x, y, callbacks=[keras_str.SparsityMonitor()])
    >>> history.history["sparsity"]
    """

    def __init__(self, log_dir=None, per_layer=True):
        super().__init__()
        self.log_dir = log_dir
        self.per_layer = per_layer
        self._writer = None
        self._stall_checked = False

    def _sparsity_logs(self):
        report = sparsity_report(self.model)
        values = {"sparsity": report.totals["sparsity"]}
        if self.per_layer:
            for row in report.rows:
                values[f"sparsity/{row.name}"] = row.sparsity
                if row.threshold is not None:
                    values[f"threshold/{row.name}"] = row.threshold
        return values

    def on_epoch_end(self, epoch, logs=None):
        if not self._stall_checked:
            # After a whole epoch, a zero step counter means no UpdateSparsity.
            warn_if_stalled(self.model, "SparsityMonitor after one epoch")
            self._stall_checked = True
        values = self._sparsity_logs()
        if logs is not None:
            logs.update(values)
        if self.log_dir is not None:
            self._write_summaries(values, step=epoch)

    def _write_summaries(self, values, step):
        import tensorflow as tf

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        with self._writer.as_default():
            for name, value in values.items():
                tf.summary.scalar(name, value, step=step)
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
