"""What is wrong with a file a loader is given: missing, a folder, unreadable, empty, or of the wrong kind.

Every loader (`.keras`, `.tflite`, `.npy`, results `.jsonl`) calls these
first, so its error names the path and the problem instead of the one the
library underneath happens to raise ("File not found" for a truncated
`.keras`, "The model allocation is null/empty" for a missing `.tflite`).
"""

import os

TFLITE_IDENTIFIER = b"TFL3"


def check_input_file(path, what="File", argument="path"):
    """`path` as a string if it names a readable, non-empty file; a `ValueError` saying which it is not.

    Args:
        path: A path (`str` or `os.PathLike`).
        what: What the file should be, for the message (`"Model file"`).
        argument: The argument name a wrong type is reported under.
    """
    try:
        path = os.fspath(path)
    except TypeError:
        raise ValueError(
            f"Invalid value for argument `{argument}`. Expected a file path. "
            f"Received: {argument}={path!r}"
        ) from None
    if not os.path.exists(path):
        raise ValueError(f"{what} {path!r} does not exist.")
    if os.path.isdir(path):
        raise ValueError(f"{what} {path!r} is a folder, not a file.")
    try:
        with open(path, "rb") as file:
            empty = not file.read(1)
    except OSError as error:
        raise ValueError(f"{what} {path!r} cannot be read: {error.strerror}.") from error
    if empty:
        raise ValueError(f"{what} {path!r} is empty (0 bytes).")
    return path


def check_tflite_file(path, argument="path"):
    """`path` if it is a readable `.tflite` flatbuffer (by its `TFL3` identifier); a `ValueError` otherwise.

    A file cut short still has its identifier: loaders add "truncated" when
    LiteRT then fails to read it (`tflite_load_error`).
    """
    path = check_input_file(path, "TFLite file", argument)
    with open(path, "rb") as file:
        head = file.read(8)
    if len(head) < 8 or head[4:8] != TFLITE_IDENTIFIER:
        raise ValueError(
            f"{path!r} is not a .tflite file: it lacks the TFL3 identifier of a "
            f"TFLite flatbuffer (its first bytes are {head!r})."
        )
    return path


def tflite_load_error(path, error):
    """The `ValueError` for a `.tflite` file with the right identifier that LiteRT cannot load."""
    return ValueError(
        f"{path!r} looks like a .tflite file but LiteRT cannot load it: truncated "
        f"or corrupt ({os.path.getsize(path):,} bytes). LiteRT said: {error}"
    )
