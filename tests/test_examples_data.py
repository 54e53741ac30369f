import gzip
import os
import struct
import time

import numpy as np
import pytest

from examples import data

pytestmark = pytest.mark.tensorflow


def write_idx(path, array, magic):
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_read_idx_round_trip(tmp_path):
    images = np.arange(2 * 3 * 4).reshape(2, 3, 4) % 255
    write_idx(str(tmp_path / "x.gz"), images, 2051)
    np.testing.assert_array_equal(data.read_idx(str(tmp_path / "x.gz")), images)


def test_read_idx_rejects_truncated_and_foreign_files(tmp_path):
    images = np.zeros((2, 3, 4))
    path = str(tmp_path / "x.gz")
    write_idx(path, images, 2051)
    with gzip.open(path, "rb") as f:
        raw = f.read()
    with gzip.open(path, "wb") as f:
        f.write(raw[:-5])
    with pytest.raises(ValueError, match="truncated"):
        data.read_idx(path)
    with gzip.open(path, "wb") as f:
        f.write(b"PK\x03\x04garbage")
    with pytest.raises(ValueError, match="not an IDX file"):
        data.read_idx(path)


def test_hanging_network_is_given_up_quickly(monkeypatch):
    def hang(*args, **kwargs):
        time.sleep(30)
        raise OSError("timed out")  # what a real hung connect ends in

    monkeypatch.setattr(data.socket, "create_connection", hang)
    start = time.monotonic()
    assert not data.network_reachable(("example.invalid", 443), timeout=1.0)
    assert time.monotonic() - start < 3.0


def test_refused_connection_is_unreachable():
    # A closed loopback port: refused at once, no traffic leaves the machine.
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
    assert not data.network_reachable(("127.0.0.1", port), timeout=1.0)


def test_missing_dataset_fails_fast_with_install_hint(monkeypatch):
    monkeypatch.setattr(data, "network_reachable", lambda *a, **k: False)
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST_DIR", "/nonexistent")
    monkeypatch.setattr(data, "_tfds_prepared", lambda *a: False)
    start = time.monotonic()
    with pytest.raises(data.DatasetUnavailableError, match="dataset-fashion-mnist"):
        data.load_image_classification("fashion_mnist")
    with pytest.raises(data.DatasetUnavailableError, match="cifar10"):
        data.load_image_classification("cifar10")
    assert time.monotonic() - start < 5.0


@pytest.mark.skipif(
    not os.path.isdir(data.DEBIAN_FASHION_MNIST_DIR),
    reason="Debian's dataset-fashion-mnist is not installed",
)
def test_debian_fashion_mnist_loads():
    (x, y), (x_test, y_test) = data.load_debian_fashion_mnist()
    assert x.shape == (60000, 28, 28, 1) and x.dtype == np.uint8
    assert x_test.shape == (10000, 28, 28, 1)
    assert sorted(np.unique(y)) == list(range(10))
    assert np.bincount(y_test).tolist() == [1000] * 10
