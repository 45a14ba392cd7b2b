"""The memory budget and streamed segment reads: sizes parse, blocks respect the budget, reads equal read_all."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from weightlake.errors import ConfigError, IntegrityError
from weightlake.storage import budget
from weightlake.storage.tensors import SegmentReader, iter_blocks, read_all, write_segment


@pytest.mark.parametrize(("text", "expected"), [("1GB", 10**9), ("512MB", 512 * 10**6), ("1.5GiB", 3 * 2**29),
                                                 ("2g", 2 * 10**9), ("2000000", 2 * 10**6), (10**7, 10**7)])
def test_sizes_parse(text, expected):
    assert budget.parse_memory(text) == expected


@pytest.mark.parametrize("text", ["lots", "1 parsec", "-1GB", "", "12kb"])
def test_bad_sizes_are_refused_with_the_variable_named(text):
    with pytest.raises(ConfigError, match="WEIGHTLAKE_MEMORY|minimum"):
        budget.parse_memory(text)


@given(st.integers(budget.MIN_BUDGET, 10**13))
def test_format_round_trips_to_four_digits(n):
    assert budget.parse_memory(budget.format_memory(n)) == pytest.approx(n, rel=1e-3)


def test_resolution_order(monkeypatch):
    assert budget.resolve_memory() == budget.default_memory()
    assert budget.default_memory() <= budget.machine_memory()
    monkeypatch.setenv("WEIGHTLAKE_MEMORY", "3GB")
    assert budget.resolve_memory() == 3 * 10**9
    assert budget.resolve_memory("2MB") == 2 * 10**6
    monkeypatch.setenv("WEIGHTLAKE_MEMORY", "nonsense")
    with pytest.raises(ConfigError, match="nonsense"):
        budget.resolve_memory()


def test_block_rows_respect_the_budget_and_chunks():
    rows = budget.block_rows(2464, 10**9, 512)
    assert rows % 512 == 0 and rows * 2464 * 4 <= 10**9 / budget.BLOCK_SHARE
    assert budget.block_rows(2464, 2 * 10**6, 512) == 50  # below one chunk: rows, not chunks
    assert budget.block_rows(10**9, 2**20) == 1  # a row bigger than the budget still makes progress
    assert budget.block_rows(2464, 10**12, 512) * 2464 * 4 <= budget.MAX_BLOCK_BYTES


@pytest.fixture(scope="module")
def segment(tmp_path_factory):
    x = np.random.default_rng(0).standard_normal((53, 11)).astype(np.float32)
    path = tmp_path_factory.mktemp("seg") / "seg.zarr"
    from weightlake.storage.tensors import SegmentWriter

    writer = SegmentWriter(path, 11, chunk_rows=8)
    writer.append(x)
    writer.close()
    return path, x, writer.chunk_digests, writer.meta_digest


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 53), st.integers(0, 53))
def test_range_reads_equal_the_whole_read(segment, a, b):
    path, x, digests, meta = segment
    start, stop = min(a, b), max(a, b)
    got = SegmentReader(path, 53, 11, digests=digests, meta_digest=meta).read(start, stop)
    np.testing.assert_array_equal(got, x[start:stop])


@pytest.mark.parametrize("block", [1, 5, 8, 16, 53, 100])
def test_blocks_concatenate_to_the_segment(segment, block):
    path, x, digests, meta = segment
    blocks = list(iter_blocks(path, 53, 11, block, digests=digests, meta_digest=meta))
    assert [s for s, _ in blocks] == list(range(0, 53, block))
    assert max(len(b) for _, b in blocks) <= block
    np.testing.assert_array_equal(np.concatenate([b for _, b in blocks]), read_all(path, 53, 11, digests=digests))


def test_compressed_segments_stream_too(tmp_path):
    x = np.random.default_rng(1).standard_normal((30, 6)).astype(np.float32)
    write_segment(tmp_path / "z.zarr", x, 6, chunk_rows=7, codec="zstd")
    got = np.concatenate([b for _, b in iter_blocks(tmp_path / "z.zarr", 30, 6, 4)])
    np.testing.assert_array_equal(got, x)


def test_a_damaged_chunk_fails_the_block_that_reads_it(segment, tmp_path):
    import shutil

    path, x, digests, meta = segment
    copy = tmp_path / "seg.zarr"
    shutil.copytree(path, copy)
    chunk = copy / "c" / "3" / "0"
    data = bytearray(chunk.read_bytes())
    data[5] ^= 0xFF
    chunk.write_bytes(bytes(data))
    blocks = iter_blocks(copy, 53, 11, 16, digests=digests, meta_digest=meta)
    np.testing.assert_array_equal(next(blocks)[1], x[:16])  # chunks 0-1 are intact
    with pytest.raises(IntegrityError, match="c/3/0"):
        next(blocks)  # rows 16-31: chunks 2 and 3


def test_wide_rows_get_smaller_chunks_and_read_back(tmp_path, monkeypatch):
    from weightlake.storage import tensors

    assert tensors.chunk_rows_for(2464) == 512 and tensors.chunk_rows_for(11_689_512) == 1  # CNN-s, ResNet-18
    monkeypatch.setattr(tensors, "MAX_CHUNK_BYTES", 3 * 4 * 1000)  # three rows of 1,000 values per chunk
    x = np.random.default_rng(2).standard_normal((10, 1000)).astype(np.float32)
    writer = tensors.SegmentWriter(tmp_path / "wide.zarr", 1000)
    writer.append(x)
    writer.close()
    assert writer.chunk_rows == 3 and len(writer.chunk_digests) == 4
    blocks = list(iter_blocks(tmp_path / "wide.zarr", 10, 1000, 4, digests=writer.chunk_digests))
    np.testing.assert_array_equal(np.concatenate([b for _, b in blocks]), x)
