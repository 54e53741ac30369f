"""Running .tflite files in LiteRT's default interpreter: predictions and latency."""

import os
import re
import statistics
import time

import numpy as np


class LiteRTError(RuntimeError):
    """A .tflite that LiteRT cannot load or run; `op_name` names the failing op."""

    def __init__(self, message, op_name=None):
        super().__init__(message)
        self.op_name = op_name


def _interpreter(model, num_threads=None):
    from ai_edge_litert.interpreter import Interpreter

    if isinstance(model, bytes):
        return Interpreter(model_content=model, num_threads=num_threads)
    return Interpreter(model_path=os.fspath(model), num_threads=num_threads)


def run_tflite(model, inputs):
    """Runs a `.tflite` (path or bytes) on a batch in the default interpreter."""
    try:
        interpreter = _interpreter(model)
        detail = interpreter.get_input_details()[0]
        interpreter.resize_tensor_input(detail["index"], inputs.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(detail["index"], inputs.astype(detail["dtype"]))
        interpreter.invoke()
        output = interpreter.get_output_details()[0]["index"]
        return interpreter.get_tensor(output).astype("float32")
    except (RuntimeError, ValueError) as error:
        message = str(error).strip()
        match = re.search(r"failed to delegate (\w+) node", message)
        raise LiteRTError(message[:300], match.group(1) if match else None) from error


def predict_tflite(path, inputs, batch_size=256):
    """Runs a single-input `.tflite` on `inputs` in LiteRT's default interpreter.

    Args:
        path: The `.tflite` file.
        inputs: Numpy array of model inputs, first axis = examples.
        batch_size: Examples per `invoke()`.

    Returns:
        The model's outputs for all examples, as one numpy array.
    """
    inputs = np.asarray(inputs)
    interpreter = _interpreter(path)
    input_index = interpreter.get_input_details()[0]["index"]
    input_dtype = interpreter.get_input_details()[0]["dtype"]
    outputs = []
    allocated = None
    for start in range(0, len(inputs), batch_size):
        batch = inputs[start : start + batch_size].astype(input_dtype)
        if allocated != batch.shape:
            interpreter.resize_tensor_input(input_index, batch.shape)
            interpreter.allocate_tensors()
            allocated = batch.shape
        interpreter.set_tensor(input_index, batch)
        interpreter.invoke()
        output_index = interpreter.get_output_details()[0]["index"]
        outputs.append(interpreter.get_tensor(output_index).copy())
    return np.concatenate(outputs)


def time_tflite(path, runs=50, warmup=5, num_threads=1):
    """Times single-example `invoke()` calls of a `.tflite` file.

    Args:
        path: The `.tflite` file.
        runs: Timed invocations (median reported).
        warmup: Untimed invocations first.
        num_threads: Interpreter threads.

    Returns:
        A dict: `median_ms`, `p10_ms`, `p90_ms`, `runs`, `num_threads`.
    """
    for name, value in (("runs", runs), ("warmup", warmup), ("num_threads", num_threads)):
        if isinstance(value, bool) or not isinstance(value, int) or value < (1 if name != "warmup" else 0):
            raise ValueError(f"Invalid value for argument `{name}`. Received: {name}={value!r}")
    interpreter = _interpreter(path, num_threads=num_threads)
    interpreter.allocate_tensors()
    rng = np.random.default_rng(0)
    for detail in interpreter.get_input_details():
        values = rng.uniform(size=detail["shape"])
        if np.issubdtype(detail["dtype"], np.integer):
            values = values * 100
        interpreter.set_tensor(detail["index"], values.astype(detail["dtype"]))
    for _ in range(warmup):
        interpreter.invoke()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        interpreter.invoke()
        times.append(1000.0 * (time.perf_counter() - start))
    times.sort()
    return {
        "median_ms": statistics.median(times),
        "p10_ms": times[int(0.1 * (len(times) - 1))],
        "p90_ms": times[int(0.9 * (len(times) - 1))],
        "runs": runs,
        "num_threads": num_threads,
    }
