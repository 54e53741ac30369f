"""Loading `.keras` files with errors that say what is wrong with them."""

import json
import os
import zipfile

import keras

from keras_str.analysis.health import sparse_layers
from keras_str.core.file_checks import check_input_file
from keras_str.training.checks import check_during_fit
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
