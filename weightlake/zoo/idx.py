"""IDX image files (the MNIST format) and the datasets the zoo is trained on.

An IDX file is a 4-byte magic ``00 00 <dtype code> <ndim>``, then ``ndim`` big-endian
uint32 dimension sizes, then the values, big-endian, row-major.  Files may be gzipped;
gzip is recognised by its magic bytes, not by the file name.

Round-trip law (tested): ``read_idx(write_idx(path, x)) == x`` for every supported dtype
(uint8, int8, int16, int32, float32, float64) and shape.

A dataset is either a known name (``"fashion-mnist"``: Debian's ``dataset-fashion-mnist``
package) or a directory holding the four standard MNIST file names, gzipped or not, so a
user's own MNIST folder works unchanged.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from weightlake.errors import IngestError

_DTYPES: dict[int, str] = {0x08: "u1", 0x09: "i1", 0x0B: "i2", 0x0C: "i4", 0x0D: "f4", 0x0E: "f8"}
_CODES: dict[str, int] = {kind: code for code, kind in _DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"

KNOWN_DATASETS: dict[str, tuple[Path, str]] = {
    "fashion-mnist": (
        Path("/usr/share/datasets/fashion-mnist"),
        "sudo apt-get update && sudo apt-get install -y dataset-fashion-mnist",
    ),
}
"""Dataset name -> (directory, command that installs it)."""

_SPLIT_PREFIX = {"train": "train", "test": "t10k"}

Split = Literal["train", "test"]


# -- the file format -----------------------------------------------------------------------
def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one IDX file, gzipped or not.

    Parameters
    ----------
    path
        The file.

    Returns
    -------
    numpy.ndarray
        A writable array in native byte order with the file's dtype and shape.

    Raises
    ------
    IngestError
        If the file is missing, not IDX, truncated, or has trailing bytes; the message
        names the file.
    """
    where = str(path)
    raw = _read_bytes(where)
    dtype, shape, offset = _parse_header(raw, where)
    expected = offset + dtype.itemsize * int(np.prod(shape, dtype=np.int64))
    if len(raw) != expected:
        state = "truncated" if len(raw) < expected else "longer than its header says"
        raise IngestError(
            f"IDX file is {state}: header promises shape {shape} of {dtype.name} "
            f"({expected} bytes in all), the file holds {len(raw)} bytes; re-download or re-extract it",
            path=where)
    values = np.frombuffer(raw, dtype=dtype, offset=offset).reshape(shape)
    return values.astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike[str], array: np.ndarray, *, compress: bool | None = None) -> Path:
    """Write ``array`` as an IDX file.

    Parameters
    ----------
    path
        Target file.
    array
        Array of dtype uint8, int8, int16, int32, float32 or float64, at least 1-D.
    compress
        Gzip the file; by default when ``path`` ends in ``.gz``.

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    IngestError
        If the dtype or number of dimensions cannot be stored in IDX.
    """
    out = Path(path)
    array = np.asarray(array)
    code = _CODES.get(array.dtype.kind + str(array.dtype.itemsize))
    if code is None or not 1 <= array.ndim <= 255:
        raise IngestError(
            f"IDX stores 1-255 dimensions of {sorted(_CODES)}, got dtype {array.dtype} with {array.ndim} dims; "
            "convert the array first", path=str(out))
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    payload = header + np.ascontiguousarray(array, dtype=array.dtype.newbyteorder(">")).tobytes()
    if compress if compress is not None else out.suffix == ".gz":
        # mtime=0 so that the same array always gives the same bytes
        payload = gzip.compress(payload, mtime=0)
    out.write_bytes(payload)
    return out


def _read_bytes(where: str) -> bytes:
    try:
        with open(where, "rb") as fh:
            raw = fh.read()
        return gzip.decompress(raw) if raw[:2] == _GZIP_MAGIC else raw
    except FileNotFoundError as exc:
        raise IngestError("IDX file not found; check the path", path=where) from exc
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise IngestError(f"gzip stream is truncated or corrupt ({exc}); re-download the file",
                          path=where) from exc
    except OSError as exc:  # a directory, no permission, ...
        raise IngestError(f"cannot read IDX file: {exc.strerror or exc}", path=where) from exc


def _parse_header(raw: bytes, where: str) -> tuple[np.dtype, tuple[int, ...], int]:
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise IngestError(f"not an IDX file: expected magic bytes 00 00 <type> <ndim>, got {raw[:4].hex(' ')!r}",
                          path=where)
    code, ndim = raw[2], raw[3]
    if code not in _DTYPES or ndim == 0:
        raise IngestError(
            f"IDX header has type code 0x{code:02x} and {ndim} dims; expected a code in "
            f"{[hex(c) for c in _DTYPES]} and at least 1 dim", path=where)
    offset = 4 + 4 * ndim
    if len(raw) < offset:
        raise IngestError(f"IDX header is truncated: {ndim} dims need {offset} header bytes, file has {len(raw)}",
                          path=where)
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    return np.dtype(">" + _DTYPES[code]), shape, offset


# -- datasets ------------------------------------------------------------------------------
def dataset_dir(name_or_dir: str | os.PathLike[str]) -> Path:
    """The directory of a known dataset name, or ``name_or_dir`` itself if it is a directory.

    Raises
    ------
    IngestError
        If a known dataset is not installed (the message gives the install command) or the
        argument is neither a known name nor a directory.
    """
    key = str(name_or_dir)
    if key in KNOWN_DATASETS:
        directory, install = KNOWN_DATASETS[key]
        if not directory.is_dir():
            raise IngestError(f"dataset {key!r} is not installed (expected it in {str(directory)!r}); "
                              f"install it with: {install}")
        return directory
    if Path(key).is_dir():
        return Path(key)
    raise IngestError(f"expected a dataset name in {sorted(KNOWN_DATASETS)} or a directory of MNIST-style IDX "
                      f"files, got {key!r}, which is neither")


def dataset_files(name_or_dir: str | os.PathLike[str], split: Split = "train") -> tuple[Path, Path]:
    """The (images, labels) IDX files of one split, preferring uncompressed over ``.gz``.

    Raises
    ------
    IngestError
        If the split is unknown or a file is missing.
    """
    if split not in _SPLIT_PREFIX:
        raise IngestError(f"expected split 'train' or 'test', got {split!r}")
    directory = dataset_dir(name_or_dir)
    prefix = _SPLIT_PREFIX[split]
    return (_find(directory, f"{prefix}-images-idx3-ubyte"), _find(directory, f"{prefix}-labels-idx1-ubyte"))


def _find(directory: Path, stem: str) -> Path:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise IngestError(f"expected {stem!r} or {stem + '.gz'!r} (standard MNIST file names); "
                      "neither is there", path=str(directory))


def load_dataset(name_or_dir: str | os.PathLike[str], split: Split = "train") -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of one split of an MNIST-format dataset.

    Parameters
    ----------
    name_or_dir
        ``"fashion-mnist"`` (Debian package ``dataset-fashion-mnist``) or a directory with
        ``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``,
        ``t10k-images-idx3-ubyte[.gz]`` and ``t10k-labels-idx1-ubyte[.gz]``.
    split
        ``"train"`` or ``"test"``.

    Returns
    -------
    images : numpy.ndarray
        uint8 ``[N, H, W]`` (``[N, 28, 28]`` for MNIST-style data).
    labels : numpy.ndarray
        uint8 ``[N]``.

    Raises
    ------
    IngestError
        If the dataset is missing or its files are corrupt or do not fit together.
    """
    images_path, labels_path = dataset_files(name_or_dir, split)
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise IngestError(f"expected uint8 images [N, H, W], got {images.dtype} {images.shape}",
                          path=str(images_path))
    if labels.dtype != np.uint8 or labels.shape != images.shape[:1]:
        raise IngestError(f"expected uint8 labels [{images.shape[0]}] to match the images, got "
                          f"{labels.dtype} {labels.shape}", path=str(labels_path))
    return images, labels


def select_classes(images: np.ndarray, labels: np.ndarray, classes: Sequence[int], *,
                   per_class: int | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The images whose label is in ``classes``, optionally ``per_class`` of each.

    Parameters
    ----------
    images, labels
        ``[N, ...]`` and ``[N]``.
    classes
        Class ids to keep (labels stay the original ids).
    per_class
        Keep at most this many images of each class, drawn without replacement; a class
        with fewer images keeps them all.
    seed
        Seeds the draw.  Each class draws from its own generator seeded by
        ``(seed, class)``, so a class gets the same images whichever subset it is in.

    Returns
    -------
    tuple of numpy.ndarray
        The kept images and labels, in their original order.
    """
    wanted = np.asarray(sorted(set(int(c) for c in classes)), dtype=labels.dtype)
    if per_class is None:
        keep = np.flatnonzero(np.isin(labels, wanted))
    else:
        keep = np.sort(np.concatenate([_draw(labels, c, per_class, seed) for c in wanted]))
    return images[keep], labels[keep]


def _draw(labels: np.ndarray, cls: int, n: int, seed: int) -> np.ndarray:
    where = np.flatnonzero(labels == cls)
    if n >= where.size:
        return where
    return np.random.default_rng([seed, int(cls)]).choice(where, size=n, replace=False)


def dataset_id(name_or_dir: str | os.PathLike[str]) -> str:
    """How a zoo records the dataset it was trained on: a known name as it is, an existing
    directory as its absolute path, anything else (``"mnist"`` where MNIST is not installed)
    as written, trimmed.  Two spellings of one folder give one id."""
    key = str(name_or_dir).strip()
    if key in KNOWN_DATASETS:
        return key
    if key and Path(key).is_dir():
        return str(Path(key).resolve())
    return key
