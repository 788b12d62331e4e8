"""MNIST from IDX files (gzip or plain), with download from public mirrors, and a bundled sample.

Lookup order for the directory: the ``data_dir`` argument, else the ``CROSSMAP_DATA_DIR``
environment variable, else ``~/.cache/crossmap/mnist``. Files missing there are downloaded into
that directory from the mirrors in ``MIRRORS`` (when ``download`` is true and a network is there).
"""

from __future__ import annotations

import gzip
import os
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import numpy as np

from crossmap.errors import DatasetError

MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

# Sizes of the decompressed files: a download of the wrong length is rejected before parsing.
EXPECTED_BYTES = {
    "train-images-idx3-ubyte": 16 + 60000 * 28 * 28,
    "train-labels-idx1-ubyte": 8 + 60000,
    "t10k-images-idx3-ubyte": 16 + 10000 * 28 * 28,
    "t10k-labels-idx1-ubyte": 8 + 10000,
}

# IDX element type codes (third byte of the magic number) -> big-endian numpy dtype.
IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

ENV_VAR = "CROSSMAP_DATA_DIR"
SAMPLE_RESOURCE = "mnist_sample.npz"
CALIBRATION_RESOURCE = "mnist_calibration.npz"


def default_data_dir() -> Path:
    """The MNIST directory used when none is given: ``$CROSSMAP_DATA_DIR`` or ``~/.cache/crossmap/mnist``."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "crossmap" / "mnist"


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse the bytes of one (decompressed) IDX file into a native-endian array.

    Raises ``DatasetError`` naming ``name`` on a bad magic number or a size that does not match
    the header."""
    if len(data) < 4:
        raise DatasetError(f"IDX file {name} is {len(data)} bytes long, too short for the 4-byte magic "
                           f"number; the file is truncated or not IDX: delete it and download it again")
    zero, code, ndim = int.from_bytes(data[0:2], "big"), data[2], data[3]
    if zero != 0 or code not in IDX_DTYPES or ndim == 0:
        raise DatasetError(f"IDX file {name} has magic number 0x{data[:4].hex()}, needed 0x0000 followed by a "
                           f"type code in {sorted(hex(c) for c in IDX_DTYPES)} and a dimension count >= 1; "
                           f"the file is corrupt or not IDX: delete it and download it again")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"IDX file {name} declares {ndim} dimensions (header {header} bytes) but holds only "
                           f"{len(data)} bytes; the file is truncated: delete it and download it again")
    shape = tuple(int.from_bytes(data[4 + 4 * k: 8 + 4 * k], "big") for k in range(ndim))
    dtype = IDX_DTYPES[code]
    needed = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != needed:
        raise DatasetError(f"IDX file {name} declares shape {shape} of {dtype.name} ({needed} bytes with header) "
                           f"but holds {len(data)} bytes; the file is truncated or corrupt: delete it and "
                           f"download it again")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file from disk; gzip is detected from its content, not its name."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"IDX file {path} cannot be read ({exc.strerror or exc}); check that it exists "
                           f"and is readable, or delete it so it is downloaded again") from exc
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DatasetError(f"IDX file {path} is a damaged gzip stream ({exc}); delete it and download "
                               f"it again") from exc
    return parse_idx(raw, str(path))


def _find(directory: Path, stem: str) -> Path | None:
    """The existing file for ``stem`` in ``directory``: gzip first, then plain."""
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    return None


def _download(directory: Path, stem: str, timeout: float = 30.0) -> tuple[Path | None, list[str]]:
    """Fetch ``stem``.gz from the mirrors into ``directory``; returns the path or None and the failures."""
    failures: list[str] = []
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return None, [f"cannot create {directory}: {exc.strerror or exc}"]
    for mirror in MIRRORS:
        url = f"{mirror}{stem}.gz"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                payload = response.read()
            data = gzip.decompress(payload)
        except (urllib.error.URLError, OSError, EOFError, zlib.error, ValueError) as exc:
            failures.append(f"{url}: {getattr(exc, 'reason', None) or exc}")
            continue
        if len(data) != EXPECTED_BYTES.get(stem, len(data)):
            failures.append(f"{url}: {len(data)} bytes after gunzip, expected {EXPECTED_BYTES[stem]}")
            continue
        try:
            parse_idx(data, url)
        except DatasetError as exc:
            failures.append(str(exc))
            continue
        target = directory / f"{stem}.gz"
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{stem}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
            os.replace(tmp, target)
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            return None, failures + [f"cannot write {target}: {exc.strerror or exc}"]
        return target, failures
    return None, failures


def _locate(directory: Path, stem: str, download: bool) -> Path:
    """The path of ``stem`` in ``directory``, downloading it if allowed and needed."""
    found = _find(directory, stem)
    if found is not None:
        return found
    failures: list[str] = []
    if download:
        found, failures = _download(directory, stem)
        if found is not None:
            return found
    tried = "; ".join(failures) if failures else "download disabled"
    raise DatasetError(
        f"MNIST file {stem}(.gz) not found in {directory} (looked for {stem}.gz and {stem}); download: {tried}. "
        f"Remedy: put the four MNIST IDX files ({', '.join(s for pair in FILES.values() for s in pair)}, "
        f"gzipped or not) in a directory and pass it as data_dir / --data-dir, or set ${ENV_VAR}, "
        f"or connect to the network so they can be downloaded from {MIRRORS[0]}")


def load_mnist(split: str = "test", data_dir: str | os.PathLike | None = None, limit: int | None = None,
               *, download: bool = True, seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """MNIST ``split`` ("train" or "test") as images float32 (n, 1, 28, 28) in [0, 1] and labels int64.

    ``limit`` keeps the first ``limit`` samples in file order, or with ``seed`` a random subset of
    that size (kept in file order), drawn reproducibly from that seed."""
    if split not in FILES:
        raise DatasetError(f"MNIST split {split!r} does not exist; available: {sorted(FILES)}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1):
        raise DatasetError(f"MNIST limit {limit!r} is not a positive integer; pass a count >= 1 or None for all")
    directory = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    image_stem, label_stem = FILES[split]
    image_path = _locate(directory, image_stem, download)
    label_path = _locate(directory, label_stem, download)
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise DatasetError(f"MNIST image file {image_path} holds {images.dtype} of shape {images.shape}, needed "
                           f"uint8 of shape (n, 28, 28); replace it with the original MNIST file")
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise DatasetError(f"MNIST label file {label_path} holds {labels.dtype} of shape {labels.shape}, needed "
                           f"uint8 of shape (n,); replace it with the original MNIST file")
    if len(images) != len(labels):
        raise DatasetError(f"MNIST {split} has {len(images)} images in {image_path} but {len(labels)} labels in "
                           f"{label_path}; the files belong to different splits: replace them")
    if labels.size and labels.max() > 9:
        raise DatasetError(f"MNIST label file {label_path} holds label {int(labels.max())}, needed 0..9; "
                           f"replace it with the original MNIST file")
    if limit is not None and limit < len(labels):
        if seed is None:
            keep = np.arange(limit)
        else:
            keep = np.sort(np.random.default_rng(seed).choice(len(labels), size=limit, replace=False))
        images, labels = images[keep], labels[keep]
    return to_float_images(images), labels.astype(np.int64)


def to_float_images(images: np.ndarray) -> np.ndarray:
    """uint8 images (n, 28, 28) or (n, 1, 28, 28) -> float32 (n, 1, 28, 28) in [0, 1]."""
    return (images.reshape(len(images), 1, 28, 28).astype(np.float32) / np.float32(255.0))


def sample_path() -> Path:
    """The path of the MNIST sample bundled with the package."""
    return Path(__file__).resolve().parent / "data" / SAMPLE_RESOURCE


def load_sample() -> tuple[np.ndarray, np.ndarray]:
    """The bundled MNIST test sample (300 images, 30 per class, seeded draw in shuffled order): images
    float32 (n, 1, 28, 28) in [0, 1] and labels int64. See ``models/make_mnist_sample.py``."""
    path = sample_path()
    try:
        with np.load(path) as bundle:
            images, labels = bundle["images"], bundle["labels"]
    except (OSError, KeyError, ValueError) as exc:
        raise DatasetError(f"bundled MNIST sample {path} cannot be read ({exc}); reinstall crossmap or "
                           f"regenerate it with `python models/make_mnist_sample.py`") from exc
    return to_float_images(images), labels.astype(np.int64)


def load_calibration_sample() -> np.ndarray:
    """The bundled MNIST calibration sample: 256 held-out TRAINING images, float32 (n, 1, 28, 28) in
    [0, 1], the default calibration set of 28 x 28 models. See ``models/make_calibration_sample.py``."""
    path = Path(__file__).resolve().parent / "data" / CALIBRATION_RESOURCE
    try:
        with np.load(path) as bundle:
            images = bundle["images"]
    except (OSError, KeyError, ValueError) as exc:
        raise DatasetError(f"bundled MNIST calibration sample {path} cannot be read ({exc}); reinstall crossmap "
                           f"or regenerate it with `python models/make_calibration_sample.py`") from exc
    return to_float_images(images)


def load_arrays(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None]:
    """The user's own samples: an ``.npz`` with ``x`` (samples) and optional ``y`` (integer labels), or
    an ``.npy`` of samples. Returns (x float32, y int64 or None)."""
    file = Path(path)
    if not file.is_file():
        raise DatasetError(f"data file {str(path)!r} does not exist; give an .npz with 'x' (and optional 'y') "
                           f"or an .npy of samples")
    try:
        loaded = np.load(file, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"data file {str(path)!r} is not a NumPy .npy or .npz file ({exc})") from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            if "x" not in loaded.files:
                raise DatasetError(f"data file {str(path)!r} holds arrays {loaded.files[:8]} but no 'x'; save the "
                                   f"samples as x (np.savez(path, x=samples, y=labels))")
            x, y = loaded["x"], loaded["y"] if "y" in loaded.files else None
    else:
        x, y = loaded, None
    if x.ndim < 2 or len(x) == 0 or not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise DatasetError(f"data file {str(path)!r}: x has shape {x.shape} and dtype {x.dtype}; give a numeric "
                           f"array of samples (batch, ...) with at least one sample")
    if y is not None:
        y = np.asarray(y)
        if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
            raise DatasetError(f"data file {str(path)!r}: y has shape {y.shape} and dtype {y.dtype}; give one "
                               f"integer class label per sample ({len(x)})")
        y = y.astype(np.int64)
    return x.astype(np.float32), y
