"""Running .tflite files in LiteRT's default interpreter: predictions and latency."""

import re
import statistics
import time

import numpy as np

from keras_str.core.arguments import check_number
from keras_str.core.file_checks import check_tflite_file
from keras_str.core.file_checks import tflite_load_error


class LiteRTError(RuntimeError):
    """A .tflite that LiteRT cannot load or run; `op_name` names the failing op."""

    def __init__(self, message, op_name=None):
        super().__init__(message)
        self.op_name = op_name


def _interpreter(model, num_threads=None):
    from ai_edge_litert.interpreter import Interpreter

    if isinstance(model, bytes):
        return Interpreter(model_content=model, num_threads=num_threads)
    path = check_tflite_file(model)
    try:
        interpreter = Interpreter(model_path=path, num_threads=num_threads)
    except (ValueError, RuntimeError) as error:
        raise tflite_load_error(path, error) from error
    return interpreter


def _natural_key(name):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


class _TFLiteModel:
    """A `.tflite` file's named inputs and outputs, and one call to run them.

    Files written by the TFLite converter carry one signature whose input
    names are the Keras model's input names and whose outputs are
    `output_0`, `output_1`, ... in the Keras model's order; the graph's own
    input and output order is arbitrary. Files without such a signature are
    run through the interpreter's input and output lists.
    """

    def __init__(self, model, num_threads=None):
        self.interpreter = _interpreter(model, num_threads=num_threads)
        inputs = self.interpreter.get_input_details()
        outputs = self.interpreter.get_output_details()
        self.inputs = {detail["name"]: detail for detail in inputs}
        self.outputs = [detail["index"] for detail in outputs]
        signatures = self.interpreter.get_signature_list()
        if len(signatures) == 1:
            runner = self.interpreter.get_signature_runner(next(iter(signatures)))
            named_inputs = runner.get_input_details()
            named_outputs = runner.get_output_details()
            # The signature names the main graph's tensors.
            if {d["index"] for d in named_inputs.values()} == {
                d["index"] for d in inputs
            } and {d["index"] for d in named_outputs.values()} == set(self.outputs):
                self.inputs = named_inputs
                self.outputs = [
                    named_outputs[name]["index"]
                    for name in sorted(named_outputs, key=_natural_key)
                ]
        self._allocated = None

    @property
    def batch_size(self):
        """The file's fixed batch size, or `None` when any batch is accepted."""
        sizes = {
            int(detail["shape_signature"][0])
            for detail in self.inputs.values()
            if len(detail["shape_signature"])
        }
        if len(sizes) == 1 and min(sizes) > 0:
            return sizes.pop()
        return None

    def __call__(self, arrays):
        """Runs one batch, `{input name: array}`; returns the outputs in order."""
        shapes = {name: array.shape for name, array in arrays.items()}
        if shapes != self._allocated:
            for name, shape in shapes.items():
                self.interpreter.resize_tensor_input(
                    self.inputs[name]["index"], shape
                )
            self.interpreter.allocate_tensors()
            self._allocated = shapes
        for name, array in arrays.items():
            self.interpreter.set_tensor(self.inputs[name]["index"], array)
        self.interpreter.invoke()
        return [self.interpreter.get_tensor(index) for index in self.outputs]


def _shape_text(shape_signature):
    dims = ["N"] + [
        "None" if dim < 0 else str(int(dim)) for dim in shape_signature[1:]
    ]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def _accepts(file_dtype, given_dtype):
    """Whether values of `given_dtype` may be cast to the file's input dtype.

    Integers go into float inputs (as Keras casts them); floats never go
    into integer inputs (token ids, indices), where they would be truncated.
    """
    file_kind = np.dtype(file_dtype).kind
    given_kind = np.dtype(given_dtype).kind
    if file_kind == "f":
        return given_kind in "fiub"
    if file_kind in "iu":
        return given_kind in "iub"
    if file_kind == "b":
        return given_kind == "b"
    return np.dtype(file_dtype) == np.dtype(given_dtype)


def _input_arrays(tflite_model, inputs, argument="inputs"):
    """Checks `inputs` against the file's inputs; returns `{name: array}`.

    Each array is cast to its input's dtype. Raises a `ValueError` naming
    `argument` for a missing or unknown input, a wrong shape (any
    non-batch dimension) or a wrong dtype kind (floats for integers).
    """
    names = list(tflite_model.inputs)
    if isinstance(inputs, dict):
        if set(inputs) != set(names):
            raise ValueError(
                f"`{argument}` must hold one array for each input of the "
                f".tflite file, keyed by input name: {sorted(names)}. "
                f"Received: {argument} with keys {sorted(inputs)}"
            )
        given = dict(inputs)
    elif len(names) == 1:
        if (
            isinstance(inputs, (list, tuple))
            and len(inputs) == 1
            and hasattr(inputs[0], "shape")
        ):
            inputs = inputs[0]  # `[x]`, as Keras takes it
        given = {names[0]: inputs}
    else:
        raise ValueError(
            f"This .tflite file has {len(names)} inputs: pass `{argument}` "
            "as a dict keyed by input name "
            f"({', '.join(repr(name) for name in sorted(names))}); the file "
            "does not record the Keras model's order of its inputs. "
            f"Received: {argument} of type {type(inputs).__name__}"
        )
    arrays = {}
    for name in names:
        detail = tflite_model.inputs[name]
        array = np.asarray(given[name])
        signature = detail["shape_signature"]
        label = f"input {name!r}" if len(names) > 1 else "the input"
        expected = (
            f"{_shape_text(signature)} {np.dtype(detail['dtype']).name}"
        )
        if array.ndim != len(signature) or any(
            dim >= 0 and dim != size
            for dim, size in zip(signature[1:], array.shape[1:])
        ):
            raise ValueError(
                f"Invalid shape for argument `{argument}`: {label} of the "
                f".tflite file has shape {expected} (N examples). Received: "
                f"{argument} with shape {array.shape} and dtype "
                f"{array.dtype.name}"
            )
        if not _accepts(detail["dtype"], array.dtype):
            raise ValueError(
                f"Invalid dtype for argument `{argument}`: {label} of the "
                f".tflite file is {np.dtype(detail['dtype']).name}, shape "
                f"{_shape_text(signature)}; {array.dtype.name} values would "
                "be truncated or misread. Cast them to that dtype first. "
                f"Received: {argument} with shape {array.shape} and dtype "
                f"{array.dtype.name}"
            )
        arrays[name] = array.astype(detail["dtype"], copy=False)
    sizes = {len(array) for array in arrays.values()}
    if len(sizes) > 1:
        raise ValueError(
            f"Every input in `{argument}` needs the same number of examples. "
            f"Received: {argument} with shapes "
            + ", ".join(f"{n}: {a.shape}" for n, a in arrays.items())
        )
    return arrays


def _predict(tflite_model, arrays, batch_size):
    """Runs `arrays` in batches; returns one array per output.

    A file with a fixed batch size gets batches of exactly that size; the
    last one is completed with copies of its last example, whose outputs
    are dropped.
    """
    count = len(next(iter(arrays.values())))
    fixed = tflite_model.batch_size
    step = fixed or batch_size
    outputs = []
    for start in range(0, count, step):
        batch = {name: array[start : start + step] for name, array in arrays.items()}
        size = len(next(iter(batch.values())))
        if fixed and size < fixed:
            batch = {
                name: np.concatenate(
                    [array, np.repeat(array[-1:], fixed - size, axis=0)]
                )
                for name, array in batch.items()
            }
        outputs.append([output[:size].copy() for output in tflite_model(batch)])
    return [np.concatenate(parts) for parts in zip(*outputs)]


def run_tflite(model, inputs):
    """Runs a `.tflite` (path or bytes) on a batch in the default interpreter.

    `inputs` is an array (one-input file) or `{input name: array}`. Returns
    the output as float32; for several outputs, each example's outputs
    flattened and concatenated (for comparing two files). A file with a fixed
    batch size is run in batches of that size.
    """
    try:
        tflite_model = _TFLiteModel(model)
    except (RuntimeError, ValueError) as error:
        raise _litert_error(error) from error
    arrays = _input_arrays(tflite_model, inputs)
    count = len(next(iter(arrays.values())))
    try:
        outputs = _predict(tflite_model, arrays, batch_size=max(count, 1))
    except (RuntimeError, ValueError) as error:
        raise _litert_error(error) from error
    if len(outputs) == 1:
        return outputs[0].astype("float32")
    return np.concatenate(
        [output.reshape(len(output), -1).astype("float32") for output in outputs],
        axis=1,
    )


def _litert_error(error):
    message = str(error).strip()
    match = re.search(r"failed to delegate (\w+) node", message)
    return LiteRTError(message[:300], match.group(1) if match else None)


def predict_tflite(path, inputs, batch_size=256):
    """Runs a `.tflite` file on `inputs` in LiteRT's default interpreter.

    Every input's shape (all but the first, batch, axis) and dtype are
    checked against the file's: a wrong shape, or floats for an integer
    input (token ids), raise a `ValueError` instead of a wrong result.
    Integers are accepted for float inputs, as in Keras. A file with a fixed
    batch size (a model built with `keras.Input(..., batch_size=1)`) is run
    in batches of exactly that size, whatever `batch_size` says.

    Args:
        path: The `.tflite` file.
        inputs: Model inputs, first axis = examples: a numpy array for a
            one-input file; for several inputs, a dict keyed by the Keras
            model's input names (the file's signature input names).
        batch_size: Examples per `invoke()`.

    Returns:
        The model's outputs for all examples: one numpy array, or for a
        multi-output model a list of arrays in the Keras model's output
        order.

    Raises:
        ValueError: If the file is missing, not a `.tflite` or fails to load;
            an input's shape or dtype differs from the file's (floats for
            integer token ids included); the inputs of a multi-input file are
            not a dict of its input names; or `batch_size` is not a positive
            integer.

    Example:

    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> _ = keras_str.export_tflite(model, "model.tflite")
    >>> keras_str.predict_tflite("model.tflite", np.ones((3, 8))).shape
    (3, 4)
    """
    batch_size = check_number("batch_size", batch_size, integer=True, minimum=1)
    tflite_model = _TFLiteModel(path)
    arrays = _input_arrays(tflite_model, inputs)
    if not len(next(iter(arrays.values()))):
        raise ValueError(
            "`inputs` holds no examples. Received: inputs with shapes "
            + ", ".join(str(a.shape) for a in arrays.values())
        )
    outputs = _predict(tflite_model, arrays, batch_size)
    return outputs[0] if len(outputs) == 1 else outputs


def time_tflite(path, runs=50, warmup=5, num_threads=1):
    """Times single-example `invoke()` calls of a `.tflite` file.

    Args:
        path: The `.tflite` file.
        runs: Timed invocations (median reported).
        warmup: Untimed invocations first.
        num_threads: Interpreter threads.

    Returns:
        A dict: `median_ms`, `p10_ms`, `p90_ms`, `runs`, `num_threads`.

    Raises:
        ValueError: If the file is missing, not a `.tflite` or fails to load,
            or `runs`, `warmup` or `num_threads` is not an integer in range.

    Example:

    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> _ = keras_str.export_tflite(model, "model.tflite")
    >>> timing = keras_str.time_tflite("model.tflite", runs=10)
    >>> sorted(timing)
    ['median_ms', 'num_threads', 'p10_ms', 'p90_ms', 'runs']
    """
    runs = check_number("runs", runs, integer=True, minimum=1)
    warmup = check_number("warmup", warmup, integer=True, minimum=0)
    num_threads = check_number("num_threads", num_threads, integer=True, minimum=1)
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
