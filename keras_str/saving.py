"""Loading `.keras` files with errors that say what is wrong with them."""

import os
import zipfile

import keras


def load_model(path):
    """Loads a `.keras` model (STR layers included) or says why it cannot.

    Keras reports a truncated or corrupt file as "File not found"; this
    names the real problem.

    Args:
        path: A `.keras` file.

    Returns:
        The Keras model.

    Raises:
        ValueError: naming `path` and the problem (missing, not a `.keras`
            archive, truncated, or unreadable by Keras).
    """
    import keras_str.layers  # noqa: F401  registers the STR layers

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"Model file {path!r} does not exist.")
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
    try:
        return keras.saving.load_model(path)
    except Exception as error:
        raise ValueError(
            f"Keras could not load {path!r}: {type(error).__name__}: {error}"
        ) from error
