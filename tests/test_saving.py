import shutil
import zipfile

import keras
import numpy as np
import pytest

import keras_str
from tests.backend_utils import to_numpy


@pytest.fixture
def saved_model(tmp_path):
    model = keras.Sequential([keras.Input((4,)), keras_str.STRDense(3)])
    path = tmp_path / "model.keras"
    model.save(path)
    return path


def test_loads_a_good_file(saved_model):
    model = keras_str.load_model(saved_model)
    assert isinstance(model.layers[0], keras_str.STRDense)


def test_missing_file(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        keras_str.load_model(tmp_path / "nope.keras")


def test_truncated_file(saved_model, tmp_path):
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(saved_model.read_bytes()[:500])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        keras_str.load_model(truncated)


def test_corrupt_member(saved_model, tmp_path):
    damaged = tmp_path / "damaged.keras"
    shutil.copy(saved_model, damaged)
    data = bytearray(damaged.read_bytes())
    with zipfile.ZipFile(saved_model) as archive:
        info = archive.getinfo("model.weights.h5")
    offset = info.header_offset + 30 + len(info.filename) + len(info.extra) + 64
    data[offset] ^= 0xFF
    damaged.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupt"):
        keras_str.load_model(damaged)


def test_zip_that_is_not_a_model(tmp_path):
    path = tmp_path / "other.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("hello.txt", "hi")
    with pytest.raises(ValueError, match="config.json"):
        keras_str.load_model(path)


def test_wrong_extension(saved_model, tmp_path):
    other = tmp_path / "model.h5x"
    shutil.copy(saved_model, other)
    with pytest.raises(ValueError, match="'.keras'"):
        keras_str.load_model(other)


def test_sparse_layers_save_their_variables_by_name():
    method = keras_str.ST3(0.5, keras_str.PolynomialSchedule(0, 4))
    layer = keras_str.STRDense(3, method=method)
    layer.build((None, 4))
    store = {}
    layer.save_own_variables(store)
    assert sorted(store) == ["bias", "finite_steps", "kernel", "sparsity_step", "threshold"]
    twin = keras_str.STRDense(3, method=keras_str.ST3(0.5, keras_str.PolynomialSchedule(0, 4)))
    twin.build((None, 4))
    # Keys in any order load by name.
    twin.load_own_variables(dict(reversed(list(store.items()))))
    for a, b in zip(layer.variables, twin.variables):
        np.testing.assert_array_equal(
            to_numpy(a), to_numpy(b))


def test_files_without_step_counters_load():
    # Files saved before the layers counted plain STR's steps and faults.
    layer = keras_str.STRDense(3)
    layer.build((None, 4))
    store = {}
    layer.save_own_variables(store)
    del store["sparsity_step"], store["finite_steps"]
    # The fault counter of the version before (never read again).
    store["nonfinite_step"] = np.array(-1, "int32")
    twin = keras_str.STRDense(3)
    twin.build((None, 4))
    twin.load_own_variables(store)
    np.testing.assert_array_equal(
        to_numpy(twin.raw_kernel), to_numpy(layer.raw_kernel))
    assert int(to_numpy(twin.finite_steps)) == 0


def test_schedules_saved_under_their_old_module_still_load():
    # Files saved by keras-str 0.2 name `keras_str.methods.schedules`.
    config = {
        "module": "keras_str.methods.schedules",
        "class_name": "PolynomialSchedule",
        "config": {"begin_step": 0, "end_step": 10, "power": 3},
        "registered_name": "keras_str>PolynomialSchedule",
    }
    schedule = keras.saving.deserialize_keras_object(config)
    assert isinstance(schedule, keras_str.PolynomialSchedule)
    assert schedule.get_config() == {"begin_step": 0, "end_step": 10, "power": 3}
