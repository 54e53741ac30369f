"""Loaders say what is wrong with a file, naming it; writers leave no half-written file."""

import os

import keras
import numpy as np
import pytest

import keras_str
from benchmarks.harness import append_row
from benchmarks.harness import read_json
from benchmarks.harness import read_rows
from keras_str.core.file_checks import check_input_file
from keras_str.core.io_utils import NEW_FILE_MODE
from keras_str.core.io_utils import save_model_atomic
from keras_str.core.io_utils import write_text_atomic
from keras_str_cli.common import load_representative_data


@pytest.fixture
def bad_files(tmp_path):
    """A missing path, a folder, an empty file and a text file, by name."""
    (tmp_path / "folder.tflite").mkdir()
    (tmp_path / "empty.tflite").write_bytes(b"")
    (tmp_path / "text.tflite").write_text("hello, not a model")
    (tmp_path / "folder.keras").mkdir()
    (tmp_path / "empty.keras").write_bytes(b"")
    (tmp_path / "text.keras").write_text("hello, not a model")
    return tmp_path


PROBLEMS = [
    ("missing", "does not exist"),
    ("folder", "is a folder, not a file"),
    ("empty", r"is empty \(0 bytes\)"),
]


@pytest.mark.parametrize("name, problem", PROBLEMS + [("text", "lacks the TFL3 identifier")])
@pytest.mark.parametrize("load", [
    lambda path: keras_str.predict_tflite(path, np.ones((1, 4), "float32")),
    lambda path: keras_str.time_tflite(path, runs=1),
], ids=["predict_tflite", "time_tflite"])
def test_tflite_loaders_name_the_file_and_its_problem(bad_files, name, problem, load):
    path = str(bad_files / f"{name}.tflite")
    with pytest.raises(ValueError, match=f"{path!r}.*{problem}"):
        load(path)


@pytest.mark.parametrize("name, problem", PROBLEMS + [("text", "not a zip archive")])
def test_keras_loader_names_the_file_and_its_problem(bad_files, name, problem):
    path = str(bad_files / f"{name}.keras")
    with pytest.raises(ValueError, match=f"{path!r}.*{problem}"):
        keras_str.load_model(path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_an_unreadable_file_is_named(tmp_path):
    path = tmp_path / "secret.keras"
    path.write_bytes(b"PK")
    path.chmod(0)
    with pytest.raises(ValueError, match="cannot be read"):
        check_input_file(path)


def test_a_path_that_is_no_path_is_an_argument_error():
    with pytest.raises(ValueError, match="Received: path=3"):
        check_input_file(3)


@pytest.mark.tensorflow
def test_a_truncated_tflite_is_called_truncated(tmp_path):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    path = tmp_path / "model.tflite"
    keras_str.export_tflite(model, path)
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match=f"{str(cut)!r} looks like a .tflite file.*truncated"):
        keras_str.predict_tflite(cut, np.ones((1, 4), "float32"))


def test_representative_data_says_what_the_file_is_not(tmp_path):
    with pytest.raises(ValueError, match="does not exist.*'fashion_mnist'"):
        load_representative_data(str(tmp_path / "missing.npy"))
    text = tmp_path / "inputs.npy"
    text.write_text("not numpy")
    with pytest.raises(ValueError, match="not a readable .npy array"):
        load_representative_data(str(text))
    strings = tmp_path / "strings.npy"
    np.save(strings, np.array(["a", "b"]))
    with pytest.raises(ValueError, match="one numeric array"):
        load_representative_data(str(strings))
    good = tmp_path / "good.npy"
    np.save(good, np.ones((5, 4), "float64"))
    assert load_representative_data(str(good)).dtype == np.float32


def test_results_rows_survive_a_run_stopped_mid_write(tmp_path, capsys):
    path = str(tmp_path / "rows.jsonl")
    append_row(path, {"seed": 0})
    with open(path, "a") as file:
        file.write('{"seed": 1, "acc')  # the process was stopped here
    assert read_rows(path) == [{"seed": 0}]
    assert "line 2 is incomplete" in capsys.readouterr().err
    append_row(path, {"seed": 1})
    with open(path) as file:
        assert file.read().splitlines()[-1] == '{"seed": 1}'


def test_a_damaged_results_row_is_named_with_its_line(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"seed": 0}\nnot json\n{"seed": 2}\n')
    with pytest.raises(ValueError, match=r"rows.jsonl', line 2, is not a JSON row"):
        read_rows(str(path))
    path.write_text('{"seed": 0}\n[1, 2]\n')
    with pytest.raises(ValueError, match="line 2, is not a JSON object"):
        read_rows(str(path))


class _FailingSave:
    def save(self, path):
        with open(path, "wb") as file:
            file.write(b"PK half")
        raise OSError("disk full")


def test_a_failed_save_leaves_nothing_behind(tmp_path):
    path = tmp_path / "model.keras"
    with pytest.raises(OSError, match="disk full"):
        save_model_atomic(_FailingSave(), path)
    assert os.listdir(tmp_path) == []
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    save_model_atomic(model, path)
    assert os.listdir(tmp_path) == ["model.keras"]
    assert keras_str.load_model(path).count_params() == model.count_params()


def test_a_damaged_results_json_is_named(tmp_path):
    path = tmp_path / "results.json"
    path.write_text('{"runs": {"a": 1}')
    with pytest.raises(ValueError, match=r"results.json' is not valid JSON \(truncated"):
        read_json(str(path))
    path.write_text('{"runs": {}}')
    assert read_json(str(path)) == {"runs": {}}


def test_atomic_writes_give_the_permissions_of_a_plain_write(tmp_path):
    # mkstemp's temporary file is private (0600); renamed as it was, tables,
    # models and .tflite files could not be read by anyone else.
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    atomic = tmp_path / "atomic.md"
    write_text_atomic(atomic, "x")
    assert os.stat(atomic).st_mode & 0o777 == os.stat(plain).st_mode & 0o777 == NEW_FILE_MODE
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    save_model_atomic(model, tmp_path / "model.keras")
    assert os.stat(tmp_path / "model.keras").st_mode & 0o777 == NEW_FILE_MODE
