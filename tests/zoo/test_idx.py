"""IDX files and datasets: round trips on files written here, corrupt files, real Fashion-MNIST."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from weightlake.errors import IngestError
from weightlake.zoo import idx
from weightlake.zoo.idx import dataset_files, load_dataset, read_idx, select_classes, write_idx

DTYPES = ("uint8", "int8", ">i2", "<i2", "int32", "float32", "float64")


def _handmade(shape: tuple[int, ...], values: bytes, code: int = 0x08) -> bytes:
    """An IDX file built byte by byte, independent of write_idx."""
    return bytes([0, 0, code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape) + values


@pytest.mark.parametrize("compress", [False, True])
def test_reads_a_handmade_file(tmp_path: Path, compress: bool) -> None:
    raw = _handmade((2, 3), bytes(range(6)))
    path = tmp_path / "x.idx"
    path.write_bytes(gzip.compress(raw) if compress else raw)
    out = read_idx(path)
    assert out.dtype == np.uint8 and out.shape == (2, 3)
    assert out.tolist() == [[0, 1, 2], [3, 4, 5]]


def test_reads_big_endian_int32(tmp_path: Path) -> None:
    path = tmp_path / "x.idx"
    path.write_bytes(_handmade((2,), struct.pack(">2i", 1, -2), code=0x0C))
    out = read_idx(path)
    assert out.tolist() == [1, -2] and out.dtype == np.int32 and out.dtype.isnative


@settings(max_examples=40, deadline=None)
@given(array=hnp.arrays(st.sampled_from(DTYPES), hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5)),
       compress=st.booleans())
def test_round_trip(tmp_path_factory: pytest.TempPathFactory, array: np.ndarray, compress: bool) -> None:
    """read_idx(write_idx(path, x)) == x, bit for bit (NaNs included)."""
    path = tmp_path_factory.mktemp("rt") / ("x.idx.gz" if compress else "x.idx")
    write_idx(path, array)
    back = read_idx(path)
    assert back.shape == array.shape and back.dtype == array.dtype.newbyteorder("=")
    assert back.tobytes() == array.astype(back.dtype).tobytes()
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == compress


def test_write_is_deterministic_when_gzipped(tmp_path: Path) -> None:
    x = np.arange(100, dtype=np.uint8)
    assert write_idx(tmp_path / "a.gz", x).read_bytes() == write_idx(tmp_path / "b.gz", x).read_bytes()


def test_write_rejects_unsupported_dtype(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="int64"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.int64))


@pytest.mark.parametrize("cut", [1, 100, 990])
def test_truncated_file_names_the_file(tmp_path: Path, cut: int) -> None:
    path = write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((4, 16, 16), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-cut])
    with pytest.raises(IngestError, match="truncated") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_truncated_gzip_names_the_file(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "x.gz", np.arange(5000, dtype=np.int32))
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(IngestError, match="gzip") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_trailing_bytes_are_an_error(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_bytes(_handmade((2,), b"\x01\x02\x03"))
    with pytest.raises(IngestError, match="longer than its header"):
        read_idx(path)


@pytest.mark.parametrize("raw", [b"", b"PK\x03\x04rest", bytes([0, 0, 0x07, 1, 0, 0, 0, 1, 5]), bytes([0, 0, 8, 3, 0])])
def test_not_idx(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "x"
    path.write_bytes(raw)
    with pytest.raises(IngestError, match="IDX"):
        read_idx(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="not found"):
        read_idx(tmp_path / "nope")
    with pytest.raises(IngestError, match="cannot read"):
        read_idx(tmp_path)


def _write_mnist_dir(folder: Path, n_train: int = 30, n_test: int = 10) -> None:
    rng = np.random.default_rng(0)
    for prefix, n, gz in (("train", n_train, ".gz"), ("t10k", n_test, "")):
        write_idx(folder / f"{prefix}-images-idx3-ubyte{gz}", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{gz}", (np.arange(n) % 10).astype(np.uint8))


def test_directory_with_standard_names(tmp_path: Path) -> None:
    _write_mnist_dir(tmp_path)
    images, labels = load_dataset(tmp_path, "train")
    assert images.shape == (30, 28, 28) and images.dtype == np.uint8
    assert labels.tolist() == [i % 10 for i in range(30)]
    assert load_dataset(str(tmp_path), "test")[0].shape == (10, 28, 28)


def test_directory_prefers_the_uncompressed_file(tmp_path: Path) -> None:
    _write_mnist_dir(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(30, dtype=np.uint8))
    assert dataset_files(tmp_path)[1].name == "train-labels-idx1-ubyte"


def test_directory_with_a_missing_file(tmp_path: Path) -> None:
    _write_mnist_dir(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(IngestError, match="t10k-labels-idx1-ubyte"):
        load_dataset(tmp_path, "test")


def test_labels_must_match_images(tmp_path: Path) -> None:
    _write_mnist_dir(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(9, dtype=np.uint8))
    with pytest.raises(IngestError, match=r"labels \[10\]"):
        load_dataset(tmp_path, "test")


def test_unknown_name_or_split(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="neither"):
        load_dataset("kuzushiji")
    with pytest.raises(IngestError, match="split"):
        load_dataset(tmp_path, "valid")  # type: ignore[arg-type]


def test_not_installed_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install = idx.KNOWN_DATASETS["fashion-mnist"][1]
    monkeypatch.setitem(idx.KNOWN_DATASETS, "fashion-mnist", (tmp_path / "absent", install))
    with pytest.raises(IngestError, match="not installed") as info:
        load_dataset("fashion-mnist")
    assert "apt-get install -y dataset-fashion-mnist" in str(info.value)


def test_select_classes_keeps_original_ids_and_order() -> None:
    labels = np.array([3, 1, 2, 1, 3, 0], dtype=np.uint8)
    images = np.arange(6)[:, None]
    kept_images, kept_labels = select_classes(images, labels, [3, 1])
    assert kept_labels.tolist() == [3, 1, 1, 3] and kept_images[:, 0].tolist() == [0, 1, 3, 4]


def test_select_classes_subsample_is_per_class_and_stable() -> None:
    labels = np.repeat(np.arange(4, dtype=np.uint8), 50)
    images = np.arange(200)
    _, few = select_classes(images, labels, [0, 2], per_class=7, seed=3)
    assert np.bincount(few, minlength=4).tolist() == [7, 0, 7, 0]
    # a class gets the same images whichever subset it is drawn with, and again on a second call
    a, _ = select_classes(images, labels, [0, 2], per_class=7, seed=3)
    b, b_labels = select_classes(images, labels, [2, 3], per_class=7, seed=3)
    assert set(a[a >= 100]) == set(b[b_labels == 2])
    assert not np.array_equal(a, select_classes(images, labels, [0, 2], per_class=7, seed=4)[0])
    assert len(select_classes(images, labels, [1], per_class=80)[0]) == 50


def test_real_fashion_mnist(fashion_test: tuple) -> None:
    images, labels = load_dataset("fashion-mnist", "train")
    assert images.shape == (60000, 28, 28) and labels.shape == (60000,)
    assert np.bincount(labels).tolist() == [6000] * 10
    test_images, test_labels = fashion_test
    assert test_images.shape == (10000, 28, 28) and np.bincount(test_labels).tolist() == [1000] * 10
    assert images.dtype == test_images.dtype == np.uint8
