"""The model inputs an export converts and checks with: specs, representative data, calibration batches."""

import keras
import numpy as np

from keras_str.core.arguments import check_number
from keras_str.core.layer_walk import iter_layers
from keras_str.transforms.cloning import has_layer_graph
from keras_str.transforms.cloning import is_clonable

# A file is checked on this many inputs against the same model converted
# without sparse encoding.
CHECK_EXAMPLES = 8


def with_input_graph(model, representative_data):
    """A subclassed model wrapped as a functional one (the converter needs inputs).

    Its input comes from the shape it was built with; integer token ids keep
    their dtype when the representative data has it.
    """
    if not isinstance(model, keras.Model) or is_clonable(model) or has_layer_graph(model):
        return model
    shapes = getattr(model, "_build_shapes_dict", None) or {}
    shape = next(iter(shapes.values()), None) if len(shapes) == 1 else None
    if not isinstance(shape, (tuple, list)):
        raise ValueError(
            f"Cannot export subclassed model {model.name!r}: it has no input "
            "graph and was not built on one input shape. Call it once on a "
            "batch of inputs first, or wrap it: `inputs = keras.Input(shape); "
            "keras.Model(inputs, model(inputs))`."
        )
    dtype = "float32"
    if isinstance(representative_data, np.ndarray) and np.issubdtype(
        representative_data.dtype, np.integer
    ):
        dtype = "int32"
    inputs = keras.Input(tuple(shape[1:]), dtype=dtype, name="inputs")
    return keras.Model(inputs, model(inputs), name=model.name)


def input_specs(model, sequence_length=None):
    """`(name, shape without the batch axis, dtype)` for each model input.

    An unknown sequence axis (axis 1) takes `sequence_length`; other
    unknown dimensions stay `None` (`check_fixed` refuses them).
    """
    sequence_length = check_number(
        "sequence_length", sequence_length, integer=True, minimum=1, allow_none=True
    )
    specs, filled = [], False
    for tensor in model.inputs:
        shape = list(tensor.shape[1:])
        if sequence_length is not None and shape and shape[0] is None:
            shape[0], filled = sequence_length, True
        specs.append(
            (tensor.name, tuple(shape), keras.backend.standardize_dtype(tensor.dtype))
        )
    if sequence_length is not None and not filled:
        raise ValueError(
            "`sequence_length` fixes an input's unknown sequence axis, but "
            f"every input of model {model.name!r} has a fixed shape: "
            f"{[tuple(t.shape) for t in model.inputs]}. Received: "
            f"sequence_length={sequence_length}"
        )
    return specs


def check_fixed(model, specs):
    """Refuses inputs with unknown dimensions besides the batch, naming the input."""
    for tensor, (name, shape, _) in zip(model.inputs, specs):
        if not any(dim is None for dim in shape):
            continue
        which = f" for input {name!r}" if len(model.inputs) > 1 else ""
        hint = (
            " Pass `sequence_length=` (the token length the file is built "
            "for) or build the model on a fixed shape."
            if shape[0] is None and all(dim is not None for dim in shape[1:])
            else ""
        )
        raise ValueError(
            "Export needs a fixed input shape (no None besides the batch)."
            f"{hint} Received: model input shape {tuple(tensor.shape)}{which}"
        )


def _model_batch_size(model):
    """The batch size the model is built for, or `None` for any."""
    return model.inputs[0].shape[0]


def _named(model, arrays):
    """Arrays in `model.inputs` order as `run_tflite` and the converter take
    them: the bare array for one input, else `{input name: array}` (the
    file's signature names)."""
    if len(arrays) == 1:
        return arrays[0]
    return {tensor.name: array for tensor, array in zip(model.inputs, arrays)}


def inputs_to_check(model, samples, specs):
    """The inputs a converted file is checked on (see `_named`)."""
    if samples is not None:
        return _named(model, [array[:CHECK_EXAMPLES] for array in samples])
    rng = np.random.default_rng(0)
    bounds = _token_bounds(model)
    arrays = []
    for tensor, (name, shape, dtype) in zip(model.inputs, specs):
        shape = (CHECK_EXAMPLES,) + shape
        kind = np.dtype(dtype).kind
        if kind == "f":
            arrays.append(rng.uniform(size=shape).astype(dtype))
        elif kind in "iu" and id(tensor) in bounds:
            # Valid ids for the Embedding that reads them.
            arrays.append(rng.integers(0, bounds[id(tensor)], size=shape).astype(dtype))
        elif kind in "iu" and not bounds:
            # Valid ids for every Embedding in the model.
            bound = _integer_input_bound(model)
            arrays.append(rng.integers(0, bound, size=shape).astype(dtype))
        elif kind in "iu":
            # An integer input no Embedding reads (a padding mask): all ones.
            arrays.append(np.ones(shape, dtype))
        else:
            arrays.append((rng.uniform(size=shape) < 0.5).astype(dtype))
    return _named(model, arrays)


def _token_bounds(model):
    """`{id(input tensor): vocabulary size}` for inputs an Embedding reads directly."""
    bounds = {}
    for tensor in model.inputs:
        history = getattr(tensor, "_keras_history", None)
        if history is None:
            continue
        for node in getattr(history.operation, "_outbound_nodes", ()):
            if isinstance(node.operation, keras.layers.Embedding):
                size = node.operation.input_dim
                bounds[id(tensor)] = min(bounds.get(id(tensor), size), size)
    return bounds


def _integer_input_bound(model):
    sizes = [
        layer.input_dim
        for layer in iter_layers(model)
        if isinstance(layer, keras.layers.Embedding)
    ]
    return max(1, min(sizes, default=2))


def representative_samples(model, representative_data, specs):
    """Checks `representative_data`; returns all its examples, one array per input.

    Each input is cast to its own dtype (integer inputs stay integers).
    """
    data = representative_data
    if callable(data):
        # TFLite's convention: a function returning an iterable of lists.
        data = data()
    if _is_array(data) or isinstance(data, dict) or (
        len(specs) > 1
        and isinstance(data, (list, tuple))
        and len(data) == len(specs)
        and all(_is_array(value) for value in data)
    ):
        batches = [data]
    else:
        try:
            batches = iter(data)
        except TypeError:
            raise ValueError(
                "`representative_data` must be an array of model inputs, an "
                "iterable of input batches (e.g. a `tf.data.Dataset`) or a "
                "zero-argument function returning one. Received: "
                f"representative_data of type {type(representative_data).__name__}"
            ) from None
    parts = [[] for _ in specs]
    for batch in batches:
        for part, array in zip(parts, _batch_arrays(batch, specs)):
            part.append(array)
    if not parts[0]:
        raise ValueError("`representative_data` yielded no examples.")
    examples = [np.concatenate(part) for part in parts]
    count = {len(array) for array in examples}
    if count == {0}:
        shapes = [array.shape for array in examples]
        raise ValueError(
            "`representative_data` is empty. Received: "
            f"representative_data with shape {shapes[0] if len(shapes) == 1 else shapes}"
        )
    if len(count) > 1:
        raise ValueError(
            "Every input in `representative_data` needs the same number of "
            "examples. Received: "
            + ", ".join(
                f"{name}: {len(array)}"
                for (name, _, _), array in zip(specs, examples)
            )
        )
    return examples


def _is_array(value):
    """A numpy array or a backend tensor (not an iterable of batches)."""
    return hasattr(value, "shape") and hasattr(value, "dtype")


def _batch_arrays(batch, specs):
    """One batch of `representative_data` as checked arrays, one per input."""
    if (
        isinstance(batch, tuple)
        and len(batch) == 2
        and isinstance(batch[0], str)
        and isinstance(batch[1], dict)
    ):
        batch = batch[1]  # TFLite's (signature key, {name: array})
    names = [name for name, _, _ in specs]
    if isinstance(batch, dict):
        missing = [name for name in names if name not in batch]
        if missing:
            raise ValueError(
                "`representative_data` is keyed by input name; it lacks "
                f"{missing}. Expected keys: {names}. Received: keys "
                f"{sorted(batch)}"
            )
        values = [batch[name] for name in names]
    elif isinstance(batch, (list, tuple)):
        if len(specs) == 1:
            # `[x]` (TFLite's convention) or `(x, y)` (a `fit` dataset).
            return _batch_arrays(batch[0], specs)
        if len(batch) == len(specs) and not any(
            isinstance(value, (list, tuple, dict)) for value in batch
        ):
            values = list(batch)
        elif batch and isinstance(batch[0], (list, tuple, dict)):
            return _batch_arrays(batch[0], specs)  # ((x1, x2), y)
        else:
            raise ValueError(
                f"The model has {len(specs)} inputs ({names}): each "
                "`representative_data` batch must hold one array per input, "
                "in `model.inputs` order or as a dict keyed by input name. "
                f"Received: a batch of {len(batch)} values"
            )
    elif len(specs) == 1:
        values = [batch]
    else:
        raise ValueError(
            f"The model has {len(specs)} inputs ({names}): each "
            "`representative_data` batch must hold one array per input, in "
            "`model.inputs` order or as a dict keyed by input name. "
            f"Received: a batch of type {type(batch).__name__}"
        )
    arrays = []
    for (name, shape, dtype), value in zip(specs, values):
        array = np.asarray(value)
        label = f" for input {name!r}" if len(specs) > 1 else ""
        if array.ndim == len(shape) and all(
            dim is None or dim == size for dim, size in zip(shape, array.shape)
        ):
            array = array[None]  # one example (an unbatched dataset)
        if array.ndim != len(shape) + 1 or any(
            dim is not None and dim != size
            for dim, size in zip(shape, array.shape[1:])
        ):
            raise ValueError(
                "`representative_data` must be model inputs of shape "
                f"(N,) + {shape}{label}. Received: representative_data with "
                f"shape {array.shape}"
            )
        kind = np.dtype(dtype).kind
        if kind in "iub" and array.dtype.kind not in "iub":
            raise ValueError(
                f"The model's input{label or ''} is {dtype} (e.g. token ids "
                f"for an Embedding): `representative_data` must hold "
                f"integers there. Received: representative_data with dtype "
                f"{array.dtype.name}"
            )
        arrays.append(array.astype(dtype, copy=False))
    return arrays


def calibration_batches(model, examples):
    """`examples` cut into the batches the converter calibrates on.

    Single examples for a model with any batch size; batches of the model's
    own batch size otherwise, the last one completed by wrapping around.
    """
    size = _model_batch_size(model) or 1
    count = len(examples[0])
    batches = []
    for start in range(0, count, size):
        indices = np.arange(start, start + size) % count
        batches.append(_named(model, [array[indices] for array in examples]))
    return batches
