"""SimpleRNN / GRU / LSTM with sparse input and recurrent kernels."""

import warnings

import keras
import numpy as np
import pytest
from absl.testing import parameterized
from keras.src import testing

import keras_str
from tests import numpy_reference
from tests.backend_utils import to_numpy
from tests.test_model_coverage import recurrent_model

# (name, sparse class, Keras parent, gates: kernel width / units)
RECURRENT = [
    ("simple_rnn", keras_str.STRSimpleRNN, keras.layers.SimpleRNN, 1),
    ("gru", keras_str.STRGRU, keras.layers.GRU, 3),
    ("lstm", keras_str.STRLSTM, keras.layers.LSTM, 4),
]
CASES = [
    {"testcase_name": name, "cls": cls, "parent": parent, "gates": gates}
    for name, cls, parent, gates in RECURRENT
]


def soft_thresholded(layer):
    """The numpy soft-thresholded kernels of a sparse RNN under plain STR."""
    kernels = []
    for weight in layer.sparse_sublayers():
        w = to_numpy(weight.raw_kernel)
        g, _ = numpy_reference.THRESHOLD_FNS["sigmoid"]
        kernels.append(numpy_reference.soft_threshold(w, g(to_numpy(weight.threshold_param))))
    return kernels


class SparseRecurrentTest(testing.TestCase):
    @parameterized.named_parameters(*CASES)
    def test_keras_layer_checks(self, cls, parent, gates):
        # Keras's own bar: build, config round-trip, a training step,
        # serialization and mixed precision.
        self.run_layer_test(
            cls,
            init_kwargs={"units": 3, "threshold_granularity": "channel"},
            input_shape=(2, 5, 4),
            expected_output_shape=(2, 3),
            # Bias, and a kernel and a threshold for each of the two kernels.
            expected_num_trainable_weights=5,
            # Each kernel's step and non-finite counters.
            expected_num_non_trainable_weights=4,
            supports_masking=True,
        )

    @parameterized.named_parameters(*CASES)
    def test_each_kernel_is_a_sparse_layer_with_its_own_threshold(self, cls, parent, gates):
        layer = cls(6, name="rnn", threshold_granularity="channel")
        layer.build((None, 5, 4))
        kernel, recurrent = layer.sparse_sublayers()
        self.assertEqual([kernel.name, recurrent.name], ["rnn_kernel", "rnn_recurrent_kernel"])
        self.assertEqual(tuple(kernel.raw_kernel.shape), (4, 6 * gates))
        self.assertEqual(tuple(recurrent.raw_kernel.shape), (6, 6 * gates))
        self.assertEqual(tuple(kernel.threshold_param.shape), (6 * gates,))
        self.assertIs(kernel.method, layer.method)
        # Orthogonal recurrent init: rows of length gates * units.
        self.assertAllClose(
            recurrent.kernel_spec.scale(recurrent), 1.0 / np.sqrt(6 * gates))

    @parameterized.named_parameters(*CASES)
    def test_output_is_the_parent_with_thresholded_kernels(self, cls, parent, gates):
        keras.utils.set_random_seed(0)
        layer = cls(5, threshold_init=-2.0, return_sequences=True)
        x = np.random.default_rng(0).normal(size=(3, 7, 4)).astype("float32")
        layer.build(x.shape)
        for weight in layer.sparse_sublayers():
            weight.raw_kernel.assign(
                np.random.default_rng(1).normal(scale=0.3, size=weight.raw_kernel.shape))
        kernel, recurrent = soft_thresholded(layer)
        self.assertGreater(np.mean(kernel == 0), 0.1)
        twin = parent(5, return_sequences=True)
        twin.build(x.shape)
        twin.cell.kernel.assign(kernel)
        twin.cell.recurrent_kernel.assign(recurrent)
        twin.cell.bias.assign(layer.cell.bias)
        self.assertAllClose(to_numpy(layer(x)), to_numpy(twin(x)), atol=1e-5)

    @parameterized.named_parameters(*CASES)
    def test_a_scheduled_method_advances_once_per_sequence(self, cls, parent, gates):
        method = keras_str.GMP(0.5, keras_str.PolynomialSchedule(0, 4), frequency=1)
        layer = cls(4, method=method)
        x = np.ones((2, 6, 3), "float32")
        for _ in range(3):
            layer(x, training=True)
        layer(x, training=False)
        steps = [int(to_numpy(w.sparsity_step)) for w in layer.sparse_sublayers()]
        self.assertEqual(steps, [3, 3])

    def test_weight_decay_lands_in_the_saved_config(self):
        layer = keras_str.STRLSTM(4)
        model = keras.Sequential([keras.Input((5, 3)), layer])
        keras_str.apply_weight_decay(model, 1e-4)
        config = layer.get_config()
        for key in ("kernel_regularizer", "recurrent_regularizer"):
            regularizer = keras.regularizers.deserialize(config[key])
            self.assertAllClose(regularizer.l2, 5e-5)
        # The STR thresholds and both kernels decay: four loss terms.
        model(np.ones((1, 5, 3)))
        self.assertLen(model.losses, 4)


def test_wrapped_and_stacked_rnns_become_sparse():
    keras.utils.set_random_seed(0)
    dense = recurrent_model()
    x = np.random.default_rng(0).integers(0, 40, size=(4, 9)).astype("int32")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # nothing is left dense
        sparse = keras_str.sparsify(dense, threshold_init=-100.0, weight_decay=1e-4)
    report = keras_str.sparsity_report(sparse)
    names = [row.name for row in report.rows]
    # Rows are named by path: unique where the cells' kernels share names.
    assert any(name.endswith("cell/forward_lstm_kernel") for name in names)
    assert any(name.endswith("cell/backward_lstm_recurrent_kernel") for name in names)
    assert all(row.note == "" for row in report.rows), report.table()
    assert report.totals["params"] == sum(
        int(np.prod(w.shape)) for w in dense.weights
        if w.name in ("kernel", "recurrent_kernel", "embeddings")
    )
    # A cell kernel is used once per time step.
    rows = {row.name: row for row in report.rows}
    assert rows["gru/gru_cell/gru_kernel"].dense_macs == 9 * 5 * 18
    np.testing.assert_allclose(to_numpy(sparse(x)), to_numpy(dense(x)), atol=1e-5)
    # The models own their weights: running one never invalidates the other
    # (JAX donates a jitted step's buffers).
    sparse.predict(x, verbose=0)
    dense.predict(x, verbose=0)


def test_a_plain_rnn_kept_dense_is_marked_not_reported_missing():
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        sparse = keras_str.sparsify(
            recurrent_model(), keep_dense=["gru"], weight_decay=1e-4)
    rows = {row.name: row for row in keras_str.sparsity_report(sparse).rows}
    assert rows["gru/gru_cell"].note == "kept dense"
    assert rows["simple/simple_cell/simple_kernel"].note == ""


@pytest.mark.tensorflow
def test_sparse_lstm_model_exports_with_parity(tmp_path):
    keras.utils.set_random_seed(2)
    inputs = keras.Input((10, 4))
    x = keras.layers.LSTM(32)(inputs)
    dense = keras.Model(inputs, keras.layers.Dense(3)(x))
    sparse = keras_str.sparsify(
        dense, method=keras_str.ST3(0.8, keras_str.ConstantSchedule()))
    x = np.random.default_rng(0).normal(size=(16, 10, 4)).astype("float32")
    sparse.compile("adam", "mse")
    sparse.fit(x, np.zeros((16, 3)), epochs=1, verbose=0)
    path = tmp_path / "lstm.tflite"
    report = keras_str.export_tflite(sparse, path, representative_data=x)
    assert report.size_bytes < report.dense_size_bytes
    # Both cell kernels are stored sparse (the unrolled graph reads each
    # through one FULLY_CONNECTED per time step).
    cell_tensors = [t for t in report.sparse_tensors if "lstm" in t.name]
    assert sorted(t.shape for t in cell_tensors) == [[128, 4], [128, 32]]
    assert all(t.density < 0.5 for t in cell_tensors)
    expected = to_numpy(keras_str.strip(sparse)(x))
    np.testing.assert_allclose(keras_str.predict_tflite(path, x), expected, atol=1e-4)
