"""Keras callbacks for following sparsity while training (logging only)."""

import os

import keras

from keras_str.analysis.report import sparsity_report


class SparsityMonitor(keras.callbacks.Callback):
    """Logs overall and per-layer sparsity and thresholds after each epoch.

    Adds `sparsity` (overall kernel sparsity), `sparsity/<layer>` and, for
    layers with a threshold, `threshold/<layer>` (mean threshold) to the
    epoch logs, so they land in `History.history` and in every callback
    after this one. With a `log_dir`, also writes them as TensorBoard
    scalars (TensorFlow's summary writer, imported only then; needs the
    `tensorboard` extra). It reads the model only at epoch ends, through
    `self.model`, so it works on every backend.

    Args:
        log_dir: Optional folder for TensorBoard event files.
        per_layer: Whether to log each layer, not just the total.

    Raises:
        ValueError: If `log_dir` is not a path or None, or `per_layer` is
            not a bool.
        ImportError: At the first epoch end with a `log_dir`, if TensorFlow
            (the `tensorboard` extra) is not installed.

    Example:

    >>> dense = keras.Sequential([keras.Input((16,)),
    ...     keras.layers.Dense(32, name="hidden"), keras.layers.Dense(4, name="logits")])
    >>> sparse = keras_str.sparsify(dense, threshold_init=-3.0, weight_decay=5e-4)
    >>> sparse.compile(optimizer="sgd", loss="mse")
    >>> history = sparse.fit(np.random.rand(64, 16), np.random.rand(64, 4), verbose=0,
    ...                      callbacks=[keras_str.SparsityMonitor()])
    >>> sorted(key for key in history.history if key.startswith("sparsity"))
    ['sparsity', 'sparsity/hidden', 'sparsity/logits']
    """

    def __init__(self, log_dir=None, per_layer=True):
        super().__init__()
        if log_dir is not None and not isinstance(log_dir, (str, os.PathLike)):
            raise ValueError(
                "Invalid value for argument `log_dir`. Expected a folder path "
                f"or None. Received: log_dir={log_dir!r}"
            )
        if not isinstance(per_layer, bool):
            raise ValueError(
                "Invalid value for argument `per_layer`. Expected a bool. "
                f"Received: per_layer={per_layer!r}"
            )
        self.log_dir = None if log_dir is None else os.fspath(log_dir)
        self.per_layer = per_layer
        self._writer = None

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
        values = self._sparsity_logs()
        if logs is not None:
            logs.update(values)
        if self.log_dir is not None:
            self._write_summaries(values, step=epoch)

    def _write_summaries(self, values, step):
        try:
            import tensorflow as tf
        except ImportError as error:
            raise ImportError(
                "SparsityMonitor(log_dir=...) writes TensorBoard summaries with "
                "TensorFlow; install it (`pip install keras-str[tensorboard]`) "
                "or leave `log_dir` unset."
            ) from error

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
