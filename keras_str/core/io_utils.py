"""Atomic file writing: a reader never sees a half-written file."""

import contextlib
import os
import tempfile


def _process_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


# The permissions `open(path, "w")` gives a new file; mkstemp's temporary file
# is private (0600) and the rename would keep that.
NEW_FILE_MODE = 0o666 & ~_process_umask()


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
        os.chmod(tmp_path, NEW_FILE_MODE)
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
