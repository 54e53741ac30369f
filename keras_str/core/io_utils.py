"""Atomic file writing: a reader never sees a half-written file."""

import contextlib
import os
import tempfile


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside `path`; renames it onto `path` on success.

    On any error the temporary file is removed and `path` is left as it was.
    Raises a `ValueError` naming `path` when its folder does not exist or
    cannot be written.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ValueError(
            f"Cannot write {path!r}: folder {directory!r} does not exist."
        )
    suffix = os.path.splitext(path)[1]
    try:
        fd, tmp_path = tempfile.mkstemp(
            prefix=".tmp-", suffix=suffix, dir=directory
        )
    except OSError as error:
        raise ValueError(
            f"Cannot write {path!r}: {error.strerror}."
        ) from error
    os.close(fd)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp_path)
        raise


def save_model_atomic(model, path):
    """`model.save(path)` through a temporary file: a stopped save leaves no half-written `.keras`."""
    with atomic_path(path) as tmp_path:
        model.save(tmp_path)


def write_text_atomic(path, text):
    with atomic_path(path) as tmp_path:
        with open(tmp_path, "w") as f:
            f.write(text)
