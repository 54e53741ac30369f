"""Fashion-MNIST and other image-classification data for the examples.

Order of preference: a tensorflow-datasets copy already on disk; for
Fashion-MNIST, the files of Debian's `dataset-fashion-mnist` package (the same
data, so no download is attempted when they are there); a
tensorflow-datasets download when its storage answers within seconds. Nothing
here waits on a network that is not there: the probe gives up after a few
seconds and the error says what to install.
"""

import gzip
import os
import socket
import struct
import threading

import numpy as np

DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
TFDS_STORAGE_HOST = ("storage.googleapis.com", 443)
PROBE_TIMEOUT_SECONDS = 3.0

_IDX_IMAGES_MAGIC = 2051
_IDX_LABELS_MAGIC = 2049


class DatasetUnavailableError(RuntimeError):
    """Raised when no source of a dataset can be used right now."""


def network_reachable(address=TFDS_STORAGE_HOST, timeout=PROBE_TIMEOUT_SECONDS):
    """Whether a TCP connection to `address` opens within `timeout` seconds.

    Runs in a daemon thread so that a slow DNS lookup cannot block longer
    than the timeout either.
    """
    result = []

    def probe():
        try:
            with socket.create_connection(address, timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return bool(result and result[0])


def read_idx(path):
    """Reads a (gzipped) IDX file of unsigned bytes into a numpy array."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError(f"{path!r} is not an IDX file: only {len(data)} bytes.")
    magic = struct.unpack(">I", data[:4])[0]
    if magic not in (_IDX_IMAGES_MAGIC, _IDX_LABELS_MAGIC):
        raise ValueError(f"{path!r} is not an IDX file: magic number {magic}.")
    ndim = magic & 0xFF
    header_end = 4 + 4 * ndim
    shape = struct.unpack(f">{ndim}I", data[4:header_end])
    expected = int(np.prod(shape))
    if len(data) - header_end != expected:
        raise ValueError(
            f"{path!r} is truncated or corrupt: header says shape {shape} "
            f"({expected} bytes) but it holds {len(data) - header_end}."
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_end).reshape(shape)


def load_debian_fashion_mnist(directory=DEBIAN_FASHION_MNIST_DIR):
    """Loads Fashion-MNIST from Debian's `dataset-fashion-mnist` files."""
    splits = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(
            os.path.join(directory, f"{prefix}-images-idx3-ubyte.gz")
        )
        labels = read_idx(
            os.path.join(directory, f"{prefix}-labels-idx1-ubyte.gz")
        )
        splits[split] = (images[..., None], labels.astype(np.int64))
    return splits["train"], splits["test"]


def _tfds_prepared(name, data_dir):
    root = (
        data_dir
        or os.environ.get("TFDS_DATA_DIR")
        or os.path.expanduser("~/tensorflow_datasets")
    )
    if not os.path.isdir(os.path.join(root, name)):
        return False
    import tensorflow_datasets as tfds

    try:
        return tfds.builder(name, data_dir=data_dir).is_prepared()
    except Exception:  # An unknown name is reported by `tfds.load` later.
        return False


def load_tfds(name, data_dir=None):
    """Loads a tfds image-classification dataset as numpy arrays."""
    import tensorflow_datasets as tfds

    train, test = tfds.load(
        name,
        split=["train", "test"],
        as_supervised=True,
        batch_size=-1,
        data_dir=data_dir,
    )
    train, test = tfds.as_numpy(train), tfds.as_numpy(test)
    return (
        (train[0], train[1].astype(np.int64)),
        (test[0], test[1].astype(np.int64)),
    )


def load_image_classification(name="fashion_mnist", data_dir=None):
    """Returns `(x_train, y_train), (x_test, y_test)`, images as uint8 NHWC.

    Args:
        name: A tensorflow-datasets image-classification name.
            `"fashion_mnist"` is read from Debian's package when it is
            installed and tensorflow-datasets has no copy.
        data_dir: tensorflow-datasets data folder (its default if `None`).

    Raises:
        DatasetUnavailableError: within seconds, when the dataset is neither
            on disk nor downloadable, saying what to install.
    """
    if _tfds_prepared(name, data_dir):
        return load_tfds(name, data_dir)
    if name == "fashion_mnist" and os.path.isdir(DEBIAN_FASHION_MNIST_DIR):
        return load_debian_fashion_mnist()
    if network_reachable():
        return load_tfds(name, data_dir)
    hint = (
        "Install Debian's copy with `apt-get install dataset-fashion-mnist` "
        "(the Makefile does this when run as root)."
        if name == "fashion_mnist"
        else "Prepare it with tensorflow-datasets on a machine with internet "
        "and copy the data folder here (pass it as data_dir)."
    )
    raise DatasetUnavailableError(
        f"Dataset {name!r} is not on disk and its download server did not "
        f"answer within {PROBE_TIMEOUT_SECONDS:.0f} s. {hint}"
    )


def normalize_images(images):
    """uint8 images -> float32 in [0, 1]."""
    return images.astype("float32") / 255.0
