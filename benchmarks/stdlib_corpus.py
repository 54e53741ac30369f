"""A byte-level text corpus every machine has: a pinned slice of Python 3.11's standard library sources.

The training text is the `TRAIN_FILES` of the running interpreter's
standard library, the validation text the `VALIDATION_FILES` (whole
modules, none in both), each file's bytes followed by a `SEPARATOR` byte.
Tokens are bytes (a vocabulary of 256). The rows record the corpus's size
and SHA-256, so runs on another 3.11 patch release show whether they read
the same text.
"""

import hashlib
import os
import sys
import sysconfig

import numpy as np

PYTHON_VERSION = (3, 11)
SEPARATOR = 0  # a NUL byte, never in a source file, between files
VOCABULARY_SIZE = 256

VALIDATION_FILES = ("argparse.py", "datetime.py", "pathlib.py", "textwrap.py", "zipfile.py")
TRAIN_FILES = (
    "_collections_abc.py", "_pydecimal.py", "_pyio.py", "ast.py", "base64.py", "bdb.py",
    "calendar.py", "codecs.py", "configparser.py", "contextlib.py", "csv.py",
    "dataclasses.py", "difflib.py", "dis.py", "doctest.py", "enum.py", "fractions.py",
    "ftplib.py", "functools.py", "gettext.py", "gzip.py", "heapq.py", "imaplib.py",
    "inspect.py", "ipaddress.py", "locale.py", "mailbox.py", "nntplib.py", "ntpath.py",
    "optparse.py", "os.py", "pdb.py", "pickle.py", "pickletools.py", "platform.py",
    "plistlib.py", "pydoc.py", "random.py", "shutil.py", "smtplib.py", "socket.py",
    "ssl.py", "statistics.py", "subprocess.py", "tarfile.py", "tempfile.py",
    "threading.py", "tokenize.py", "traceback.py", "typing.py", "uuid.py", "warnings.py",
    "weakref.py",
)


def load_corpus(stdlib=None):
    """Returns `(train, validation, description)`: two uint8 arrays and what they hold.

    Args:
        stdlib: The standard library folder (default: this interpreter's).

    Raises:
        ValueError: The interpreter is not Python 3.11 (other versions hold
            other text), or a pinned file is missing.
    """
    if stdlib is None:
        if sys.version_info[:2] != PYTHON_VERSION:
            raise ValueError(
                "The corpus is Python 3.11's standard library; this is Python "
                f"{sys.version_info[0]}.{sys.version_info[1]}. Pass `stdlib=` "
                "a 3.11 standard library folder."
            )
        stdlib = sysconfig.get_paths()["stdlib"]
    splits = {}
    description = {"python": ".".join(map(str, sys.version_info[:3]))}
    for split, names in (("train", TRAIN_FILES), ("validation", VALIDATION_FILES)):
        chunks = []
        for name in names:
            path = os.path.join(stdlib, name)
            if not os.path.isfile(path):
                raise ValueError(f"The corpus file {path!r} is missing.")
            with open(path, "rb") as file:
                chunks.append(file.read() + bytes([SEPARATOR]))
        text = b"".join(chunks)
        splits[split] = np.frombuffer(text, dtype=np.uint8)
        description[f"{split}_bytes"] = len(text)
        description[f"{split}_sha256"] = hashlib.sha256(text).hexdigest()[:16]
    return splits["train"], splits["validation"], description


def training_windows(text, sequence_length, count, seed):
    """`count` windows of `sequence_length + 1` bytes at random offsets: inputs and next-byte labels."""
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, len(text) - sequence_length - 1, size=count)
    return np.stack([text[s : s + sequence_length + 1] for s in starts]).astype("int32")


def validation_windows(text, sequence_length):
    """The validation text cut into consecutive windows of `sequence_length + 1` bytes (overlapping by one)."""
    count = (len(text) - 1) // sequence_length
    return np.stack(
        [text[i * sequence_length : i * sequence_length + sequence_length + 1] for i in range(count)]
    ).astype("int32")
