import json
import os
import subprocess
import sys
import tempfile

import keras
import numpy as np
import pytest

import keras_str
from keras_str_cli import common
from tests.test_export import sparse_cnn

# The console scripts setup.py installs, beside this interpreter.
TOOLS = {
    "export_tflite": "keras-str-export",
    "inspect_tflite": "keras-str-inspect",
    "benchmark_tflite": "keras-str-benchmark",
}


def tool_path(name):
    return os.path.join(os.path.dirname(sys.executable), TOOLS[name])


def run_tool(name, *args):
    """Runs the installed entry point (from a folder outside the repository)."""
    return subprocess.run(
        [tool_path(name), *args],
        capture_output=True,
        text=True,
        cwd=tempfile.gettempdir(),
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        timeout=300,
    )


def test_entry_points_are_installed():
    for name in TOOLS:
        assert os.access(tool_path(name), os.X_OK), (
            f"{tool_path(name)} is missing: pip install -e . installs it"
        )


@pytest.mark.parametrize("missing", [("ai_edge_litert",), ("tensorflow", "ai_edge_litert")])
def test_tools_name_the_extra_when_tensorflow_or_litert_is_missing(
    monkeypatch, capsys, missing
):
    find_spec = common.importlib.util.find_spec
    monkeypatch.setattr(
        common.importlib.util, "find_spec",
        lambda name, *a: None if name in missing else find_spec(name, *a),
    )
    with pytest.raises(SystemExit) as exit_info:
        common.require_export_extra("keras-str-export")
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "pip install 'keras-str[export]'" in err
    assert ("tensorflow and ai-edge-litert, which are" in err) == (len(missing) == 2)
    common.require_export_extra("keras-str-inspect", modules=("numpy",))  # present: no exit


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tools")
    keras.utils.set_random_seed(0)
    model = sparse_cnn()
    path = folder / "model.keras"
    model.save(path)
    np.save(folder / "inputs.npy", np.random.default_rng(0).uniform(size=(32, 12, 12, 1)))
    return path


@pytest.mark.tensorflow
def test_export_then_inspect(saved_model):
    folder = saved_model.parent
    out = folder / "m.tflite"
    result = run_tool(
        "export_tflite", "--model", str(saved_model), "--output", str(out),
        "--precision", "float32", "--json", str(folder / "export.json"),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "float32" in result.stdout
    data = json.loads((folder / "export.json").read_text())
    assert data["precision"] == "float32" and data["size_bytes"] == out.stat().st_size
    result = run_tool(
        "inspect_tflite", "--tflite", str(out), "--json", str(folder / "inspect.json")
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "CONV_2D after DENSIFY" in result.stdout
    inspect = json.loads((folder / "inspect.json").read_text())
    # float32: both conv kernels and both FullyConnected kernels stay sparse.
    assert len(inspect["sparse_tensors"]) == 4
    assert inspect["xnnpack_sparse_inference"]["eligible"] is False


# A fresh TensorFlow process (~11 s); time_tflite itself is tested in-process
# below, and test_entry_points_are_installed checks the entry point exists.
@pytest.mark.slow
@pytest.mark.tensorflow
def test_benchmark_dense_and_sparse_side_by_side(saved_model):
    out = saved_model.parent / "bench.json"
    result = run_tool(
        "benchmark_tflite", "--model", str(saved_model), "--runs", "5",
        "--warmup", "1", "--json", str(out),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (row,) = json.loads(out.read_text())
    assert row["precision"] == "float32"
    assert row["sparse_bytes"] < row["dense_bytes"]
    assert row["dense_median_ms"] > 0 and row["sparse_median_ms"] > 0
    assert "speed-up" in result.stdout


@pytest.mark.tensorflow
def test_tools_fail_clearly_on_bad_files(tmp_path):
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip")
    result = run_tool("export_tflite", "--model", str(bad), "--output", str(tmp_path / "x.tflite"))
    assert result.returncode == 1
    assert "not a valid .keras file" in result.stderr
    assert not (tmp_path / "x.tflite").exists()
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"\x00" * 64)
    result = run_tool("inspect_tflite", "--tflite", str(junk))
    assert result.returncode == 1 and "not a .tflite file" in result.stderr


@pytest.mark.tensorflow
def test_time_tflite_validates_arguments(tmp_path):
    path = tmp_path / "m.tflite"
    keras_str.export_tflite(sparse_cnn(), path)
    timing = keras_str.time_tflite(path, runs=3, warmup=0)
    assert timing["runs"] == 3 and timing["median_ms"] > 0
    with pytest.raises(ValueError, match="runs=0"):
        keras_str.time_tflite(path, runs=0)


@pytest.mark.tensorflow  # no backend involved: run once
@pytest.mark.parametrize("name", sorted(TOOLS))
def test_help_lists_the_tool_s_own_flags_and_usage(name):
    result = run_tool(name, "--help")
    assert result.returncode == 0, result.stderr
    assert f"{TOOLS[name]} --" in result.stdout  # the usage example
    assert "--json: Also write" in result.stdout
    assert "--helpfull" in result.stdout and "logtostderr" not in result.stdout
    assert "--[no]logtostderr" in run_tool(name, "--helpfull").stdout


@pytest.mark.tensorflow
@pytest.mark.parametrize("args, message", [
    (["--modle", "m.keras"], "Unknown command line flag 'modle'"),
    ([], "Flag --model must have a value"),
])
def test_a_wrong_or_missing_flag_is_one_line_and_status_2(args, message):
    result = run_tool("export_tflite", *args, *(["--output", "x.tflite"] if args else []))
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("keras-str-export: error:") and message in line


def test_a_speed_up_inside_the_timer_spread_is_no_difference():
    from keras_str_cli.benchmark_tflite import speedup_text

    noise = {"speedup": 0.67, "speedup_low": 0.4, "speedup_high": 1.3, "measurable": False}
    assert speedup_text(noise) == "no measurable difference (0.67x, spread 0.40-1.30x)"
    real = {"speedup": 2.0, "speedup_low": 1.7, "speedup_high": 2.4, "measurable": True}
    assert speedup_text(real) == "2.00x (1.70-2.40x)"
