"""MNIST loading: IDX parsing on tiny generated files, error messages, the bundled sample."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from crossmap import datasets
from crossmap.datasets import load_mnist, load_sample, parse_idx, read_idx
from crossmap.errors import CrossmapError, DatasetError


def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    """The IDX encoding of ``array`` with the given element type code."""
    dtype = datasets.IDX_DTYPES[code]
    header = bytes([0, 0, code, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(dtype).tobytes()


def write_mnist(directory, split="test", n=5, gz=True, seed=0):
    """Write a tiny MNIST-like split (n images) to ``directory``; return the arrays."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    image_stem, label_stem = datasets.FILES[split]
    for stem, array in ((image_stem, images), (label_stem, labels)):
        data = idx_bytes(array)
        if gz:
            (directory / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (directory / stem).write_bytes(data)
    return images, labels


def test_parse_idx_types_and_shapes():
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(parse_idx(idx_bytes(a)), a)
    b = np.array([[-3, 70000], [5, -1]], dtype=np.int32)
    parsed = parse_idx(idx_bytes(b, 0x0C))
    assert parsed.dtype == np.int32 and parsed.dtype.isnative
    np.testing.assert_array_equal(parsed, b)
    f = np.array([0.5, -2.25], dtype=np.float32)
    np.testing.assert_array_equal(parse_idx(idx_bytes(f, 0x0D)), f)


@pytest.mark.parametrize("data, needle", [
    (b"\x00\x00", "too short"),
    (b"\x00\x01\x08\x01\x00\x00\x00\x01\x07", "magic number 0x00010801"),
    (b"\x00\x00\x07\x01\x00\x00\x00\x01\x07", "magic number"),
    (b"\x00\x00\x08\x03\x00\x00\x00\x01", "truncated"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x03\x07\x07", "holds 10 bytes"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x01\x07\x07", "holds 10 bytes"),
])
def test_parse_idx_rejects_corrupt_headers(data, needle):
    with pytest.raises(DatasetError, match=needle) as info:
        parse_idx(data, "bad.idx")
    assert "bad.idx" in str(info.value)


@pytest.mark.parametrize("gz", [True, False])
def test_load_mnist_from_directory(tmp_path, gz):
    images, labels = write_mnist(tmp_path, "test", n=6, gz=gz)
    x, y = load_mnist("test", data_dir=tmp_path, download=False)
    assert x.shape == (6, 1, 28, 28) and x.dtype == np.float32
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y, labels)
    np.testing.assert_allclose(x[:, 0] * 255, images, atol=1e-4)
    assert 0.0 <= x.min() and x.max() <= 1.0


def test_limit_and_seeded_subset(tmp_path):
    _, labels = write_mnist(tmp_path, "train", n=20)
    _, y = load_mnist("train", data_dir=tmp_path, limit=4, download=False)
    np.testing.assert_array_equal(y, labels[:4])
    _, y1 = load_mnist("train", data_dir=tmp_path, limit=7, seed=3, download=False)
    _, y2 = load_mnist("train", data_dir=tmp_path, limit=7, seed=3, download=False)
    np.testing.assert_array_equal(y1, y2)
    assert len(y1) == 7
    _, everything = load_mnist("train", data_dir=tmp_path, limit=1000, download=False)
    assert len(everything) == 20
    with pytest.raises(DatasetError, match="limit"):
        load_mnist("train", data_dir=tmp_path, limit=0, download=False)


def test_env_var_directory(tmp_path, monkeypatch):
    _, labels = write_mnist(tmp_path, "test", n=3)
    monkeypatch.setenv("CROSSMAP_DATA_DIR", str(tmp_path))
    _, y = load_mnist("test", download=False)
    np.testing.assert_array_equal(y, labels)


def test_missing_files_name_what_was_looked_for(tmp_path):
    with pytest.raises(DatasetError) as info:
        load_mnist("test", data_dir=tmp_path, download=False)
    message = str(info.value)
    assert "t10k-images-idx3-ubyte" in message and str(tmp_path) in message
    assert "CROSSMAP_DATA_DIR" in message and "data_dir" in message
    assert isinstance(info.value, CrossmapError)


def test_failed_download_reports_each_mirror(tmp_path, monkeypatch):
    def offline(url, timeout=None):
        raise datasets.urllib.error.URLError("network unreachable")

    monkeypatch.setattr(datasets.urllib.request, "urlopen", offline)
    with pytest.raises(DatasetError) as info:
        load_mnist("test", data_dir=tmp_path / "new")
    message = str(info.value)
    for mirror in datasets.MIRRORS:
        assert mirror in message
    assert "network unreachable" in message


def test_download_writes_validated_file(tmp_path, monkeypatch):
    images, labels = np.zeros((10000, 28, 28), np.uint8), np.arange(10000, dtype=np.uint8) % 10
    payloads = {"t10k-images-idx3-ubyte": idx_bytes(images), "t10k-labels-idx1-ubyte": idx_bytes(labels)}
    calls = []

    class Response:
        def __init__(self, body):
            self.body = body

        def read(self):
            return self.body

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def fake(url, timeout=None):
        calls.append(url)
        if url.startswith(datasets.MIRRORS[0]):
            return Response(b"not gzip at all")  # a broken first mirror: the second one is tried
        stem = url.rsplit("/", 1)[1][:-3]
        return Response(gzip.compress(payloads[stem]))

    monkeypatch.setattr(datasets.urllib.request, "urlopen", fake)
    _, y = load_mnist("test", data_dir=tmp_path, limit=12)
    np.testing.assert_array_equal(y, labels[:12])
    assert (tmp_path / "t10k-images-idx3-ubyte.gz").is_file()
    assert not list(tmp_path.glob("*.part"))
    assert len(calls) == 4
    load_mnist("test", data_dir=tmp_path)  # now cached: no more downloads
    assert len(calls) == 4


def test_corrupt_files_are_named(tmp_path):
    write_mnist(tmp_path, "test", n=4)
    images = tmp_path / "t10k-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[:40])
    with pytest.raises(DatasetError, match="t10k-images-idx3-ubyte.gz") as info:
        load_mnist("test", data_dir=tmp_path, download=False)
    assert "gzip" in str(info.value)
    images.write_bytes(gzip.compress(b"\x00\x00\x08\x03" + (9).to_bytes(4, "big")))
    with pytest.raises(DatasetError, match="t10k-images-idx3-ubyte.gz"):
        read_idx(images)


def test_mismatched_counts_and_shapes(tmp_path):
    write_mnist(tmp_path, "test", n=4)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(3, np.uint8))))
    with pytest.raises(DatasetError, match="4 images .* but 3 labels"):
        load_mnist("test", data_dir=tmp_path, download=False)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros((3, 5, 5), np.uint8))))
    with pytest.raises(DatasetError, match=r"shape \(n, 28, 28\)"):
        load_mnist("test", data_dir=tmp_path, download=False)


def test_unknown_split():
    with pytest.raises(DatasetError, match="available"):
        load_mnist("validation", download=False)


def test_bundled_sample():
    x, y = load_sample()
    assert x.shape == (300, 1, 28, 28) and x.dtype == np.float32
    assert y.shape == (300,) and y.dtype == np.int64
    assert np.bincount(y, minlength=10).tolist() == [30] * 10
    assert 0.0 <= x.min() and x.max() == 1.0
    assert len(set(y[:20].tolist())) >= 5  # shuffled: a prefix mixes the classes
