"""Loading `.keras` files with errors that say what is wrong with them, and a dense model's weights into its sparse twin."""

import json
import os
import zipfile

import keras

from keras_str.analysis.health import sparse_layers
from keras_str.core.file_checks import check_input_file
from keras_str.core.host import to_numpy
from keras_str.core.layer_walk import iter_layers
from keras_str.layers.base import assign_named
from keras_str.layers.base import is_sparse_layer
from keras_str.training.checks import check_during_fit
from keras_str.transforms.cloning import own_variables
from keras_str.transforms.recipe import ARCHIVE_MEMBER
from keras_str.transforms.recipe import Recipe


def load_model(path):
    """Loads a `.keras` model (STR layers included) or says why it cannot.

    Keras reports a truncated or corrupt file as "File not found"; this
    names the real problem. A model sparsified in place (a subclassed or
    keras-hub model, whose config rebuilds it dense) is rebuilt from its
    config, sparsified again as the file records, then given its weights:
    `keras.saving.load_model` cannot load such a file.

    Args:
        path: A `.keras` file.

    Returns:
        The Keras model.

    Raises:
        ValueError: naming `path` and the problem (missing, a folder,
            unreadable, empty, not a `.keras` archive, truncated, or
            unloadable by Keras).

    Example:

    >>> model = keras.Sequential([keras.Input((8,)), keras_str.STRDense(4)])
    >>> model.save("model.keras")
    >>> type(keras_str.load_model("model.keras").layers[0]).__name__
    'STRDense'
    """
    import keras_str.layers  # noqa: F401  registers the STR layers

    path = check_input_file(path, "Model file")
    if not path.endswith(".keras"):
        raise ValueError(
            f"Expected a Keras 3 '.keras' file. Received: path={path!r}"
        )
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{path!r} is not a valid .keras file: it is not a zip archive "
            f"(truncated or corrupt? {os.path.getsize(path)} bytes)."
        )
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise ValueError(
            f"{path!r} is not a valid .keras file (truncated or corrupt): "
            f"{error}"
        ) from error
    if damaged is not None:
        raise ValueError(
            f"{path!r} is corrupt: member {damaged!r} fails its checksum."
        )
    if "config.json" not in names:
        raise ValueError(
            f"{path!r} is a zip archive but not a .keras model (no "
            "config.json)."
        )
    with zipfile.ZipFile(path) as archive:
        config_text = archive.read("config.json")
    if b'"keras_hub>' in config_text:
        # keras-hub's classes register when it is imported.
        _import_keras_hub(path)
    if b"keras_str>STRPositionEmbedding" in config_text:
        # Sparse keras-hub layers register when keras-hub is loaded.
        import keras_str.layers.keras_hub_layers  # noqa: F401
    try:
        if ARCHIVE_MEMBER in names:
            return _load_rewritten_in_place(path)
        model = keras.saving.load_model(path)
    except Exception as error:
        raise ValueError(
            f"Keras could not load {path!r}: {type(error).__name__}: {error}"
        ) from error
    if isinstance(model, keras.Model) and sparse_layers(model):
        check_during_fit(model)
    return model


def load_dense_weights(model, path):
    """Loads a dense model's saved weights into `model`, the same network with sparse layers.

    Keras finds a Sequential or functional model's layers in a weights file
    by class name (`dense`, `dense_1`), so `model.load_weights` cannot give
    a `Dense` layer's weights to an `STRDense`. This loads the file into the
    plain twin (`keras_str.strip(model, shrink=False)`) and copies each
    layer's weights across by layer name: a sparse layer takes the kernel
    and bias, its method's state left as `keras_str.sparsify` leaves it.

    Args:
        model: A built Sequential or functional model with sparse layers.
        path: The dense model's `.weights.h5` (or `.keras`) file.

    Returns:
        `model`, with the weights loaded.

    Raises:
        ValueError: naming `path` when it is not a readable file or does
            not hold the weights of the dense twin's layers.

    Example:

    >>> dense = keras.Sequential([keras.Input((16,)),
    ...     keras.layers.Dense(32, name="hidden"), keras.layers.Dense(4, name="logits")])
    >>> dense.save_weights("dense.weights.h5")
    >>> sparse = keras_str.sparsify(keras.models.clone_model(dense), weight_decay=5e-4)
    >>> keras_str.load_dense_weights(sparse, "dense.weights.h5")
    """
    from keras_str.transforms.strip import strip

    path = check_input_file(path, "Weights file")
    twin = strip(model, shrink=False)
    try:
        twin.load_weights(path)
    except Exception as error:
        raise ValueError(
            f"{path!r} does not hold the weights of a dense model like "
            f"{model.name!r}: {type(error).__name__}: {error}"
        ) from error
    plain_layers = {layer.name: layer for layer in iter_layers(twin)}
    for layer in iter_layers(model):
        plain = plain_layers.get(layer.name)
        if plain is None:
            continue
        values = [to_numpy(v) for v in own_variables(plain)]
        if is_sparse_layer(layer):
            layer.set_weights(values)
        else:
            assign_named(layer, own_variables(layer), values, "the file")
    return model


def _import_keras_hub(path):
    try:
        import keras_hub  # noqa: F401
    except ImportError as error:
        raise ValueError(
            f"{path!r} holds a keras-hub model; install keras-hub to load it "
            "(`pip install keras-hub`)."
        ) from error


def _load_rewritten_in_place(path):
    """Rebuilds the dense model from the file's config, redoes its in-place `sparsify`, loads the weights."""
    from keras_str.transforms.sparsify import replay

    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
        recipe = Recipe.from_json(archive.read(ARCHIVE_MEMBER), path)
    model = replay(config, recipe)
    # Compiled after the rewrite: the optimizer's slots follow the sparse
    # variables, as when the model was saved.
    compile_config = config.get("compile_config")
    if compile_config is not None:
        model.compile_from_config(compile_config)
        if model.optimizer is not None:
            model.optimizer.build(model.trainable_variables)
    model.load_weights(path)
    return model
