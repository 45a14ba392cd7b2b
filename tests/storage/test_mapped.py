"""Memory-mapped random access (storage/mapped.py): gathers equal the decoded zoo, chunks are checked once."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import weightlake as wl
from weightlake.errors import IntegrityError
from weightlake.storage.mapped import METHODS, MappedRows, ResidentRows

ZOO = "mnist-cnn-s"
TINY = "1MB"


@pytest.fixture(scope="module")
def decoded(bounded_lake_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    return wl.open_lake(bounded_lake_dir).zoo_weights(ZOO)


@pytest.fixture(scope="module", params=METHODS)
def mapped(request: pytest.FixtureRequest, bounded_lake_dir: Path) -> MappedRows:
    source = wl.open_lake(bounded_lake_dir, memory=TINY).row_source(ZOO, method=request.param)
    assert isinstance(source, MappedRows) and source.method == request.param
    return source


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_gathers_equal_the_decoded_zoo(mapped: MappedRows, decoded, data) -> None:
    ids, rows = decoded
    pos = np.array(data.draw(st.lists(st.integers(0, len(ids) - 1), max_size=300)), dtype=np.int64)
    np.testing.assert_array_equal(mapped.ids, ids)
    got = mapped.take(pos)
    assert got.shape == (len(pos), rows.shape[1]) and got.dtype == np.float32
    np.testing.assert_array_equal(got, rows[pos])


def test_the_zoo_is_mapped_only_over_the_budget(bounded_lake_dir: Path) -> None:
    small = wl.open_lake(bounded_lake_dir, memory=TINY)
    source = small.row_source(ZOO)
    assert isinstance(source, MappedRows) and not small._cache  # nothing decoded whole
    assert small.row_source(ZOO) is source  # kept on the handle: chunks are checked once per handle
    roomy = wl.open_lake(bounded_lake_dir, memory="1GB")
    assert isinstance(roomy.row_source(ZOO), ResidentRows) and roomy._cache


def test_each_chunk_is_checked_once(bounded_lake_dir: Path, decoded) -> None:
    source = wl.open_lake(bounded_lake_dir, memory=TINY).row_source(ZOO)
    assert source.checked_chunks == 0
    source.take(np.array([0, 1, 511]))
    assert source.checked_chunks == 1
    source.take(np.array([5, 600, 936 + 3]))  # chunk 1 of segment 0, chunk 0 of segment 1
    assert source.checked_chunks == 3
    source.take(np.arange(len(source)))
    assert source.checked_chunks == 4  # two segments of two chunks


def test_it_pickles_and_maps_afresh(mapped: MappedRows, decoded) -> None:
    again = pickle.loads(pickle.dumps(mapped))
    assert again.checked_chunks == 0
    np.testing.assert_array_equal(again.take(np.array([7, 1000])), decoded[1][[7, 1000]])


def _copy(bounded_lake_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "lake"
    shutil.copytree(bounded_lake_dir, root)
    seg = sorted((root / "zoos" / ZOO / "weights").iterdir())[0]
    return root, seg / "c" / "1" / "0"


@pytest.mark.parametrize("method", METHODS)
def test_a_flipped_byte_is_an_error_when_its_chunk_is_first_gathered(bounded_lake_dir, tmp_path, method) -> None:
    root, chunk = _copy(bounded_lake_dir, tmp_path)
    data = bytearray(chunk.read_bytes())
    data[100] ^= 0xFF
    chunk.write_bytes(bytes(data))
    source = wl.open_lake(root, memory=TINY).row_source(ZOO, method=method)
    source.take(np.array([3]))  # chunk 0 is sound
    with pytest.raises(IntegrityError, match="corrupt"):
        source.take(np.array([520]))


def test_a_short_chunk_file_is_an_error_not_a_fault(bounded_lake_dir, tmp_path) -> None:
    root, chunk = _copy(bounded_lake_dir, tmp_path)
    chunk.write_bytes(chunk.read_bytes()[:-4])
    source = wl.open_lake(root, memory=TINY).row_source(ZOO)
    with pytest.raises(IntegrityError, match="wrong size"):
        source.take(np.array([3]))


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("n", [0, 1, 511, 512, 1537, 3000])
def test_gathers_split_over_threads_equal_the_decoded_zoo(bounded_lake_dir, decoded, threads, n) -> None:
    ids, rows = decoded
    lake = wl.open_lake(bounded_lake_dir, memory=TINY)
    source = MappedRows(lake.root, lake.manifest.zoo(ZOO).segments, threads=threads)
    pos = np.random.default_rng(n).integers(0, len(ids), n)  # any order, repeats
    got = source.take(pos)
    assert got.shape == (n, rows.shape[1]) and got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_array_equal(got, rows[pos])
    assert pickle.loads(pickle.dumps(source)).threads == threads


def test_a_forked_child_gathers_on_threads_of_its_own(bounded_lake_dir, decoded) -> None:
    """A DataLoader worker forks the process: the parent's gather threads do not exist in the child."""
    import os
    import select

    lake = wl.open_lake(bounded_lake_dir, memory=TINY)
    source = MappedRows(lake.root, lake.manifest.zoo(ZOO).segments, threads=2)
    pos = np.arange(len(source))[::-1].copy()
    source.take(pos)  # the parent's pool now exists
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: gather on its own pool, report, leave without cleanup handlers
        ok = np.array_equal(source.take(pos), decoded[1][pos])
        os.write(write, b"1" if ok else b"0")
        os._exit(0)
    os.close(write)
    try:
        ready, _, _ = select.select([read], [], [], 120)  # a child stuck on its parent's pool would hang here
        assert ready and os.read(read, 1) == b"1"
    finally:
        os.close(read)
        os.waitpid(pid, 0)
