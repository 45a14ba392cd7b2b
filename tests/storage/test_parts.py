"""The tensors layout: one Zarr array per tensor, chunks aligned to tensor boundaries, every chunk checked;
reads of one tensor touch only that tensor's chunks (counted, not timed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from weightlake.errors import IntegrityError
from weightlake.storage.parts import PART_CHUNK_BYTES, PartsReader, PartsWriter, choose_layout, layer_bytes
from weightlake.storage.snapshot import Manifest, Segment, ZooEntry, decode_manifest, empty_manifest
from weightlake.storage.tensors import SegmentReader, count_reads, read_all, read_rows

SPANS = [(0, 7), (7, 1), (8, 300), (308, 5), (313, 0), (313, 40)]
COLS = 353


def _write(path: Path, rows: np.ndarray, *, blocks: int = 3, rows_hint: int | None = None) -> PartsWriter:
    writer = PartsWriter(path, COLS, SPANS, rows_hint=rows_hint)
    for block in np.array_split(rows, blocks):
        writer.append(block)
    writer.close(attributes={"first_model_id": 0})
    return writer


def _reader(path: Path, writer: PartsWriter) -> PartsReader:
    return PartsReader(path, writer.rows, COLS, writer.parts, meta_digest=writer.meta_digest)


@pytest.mark.parametrize(("n", "hint"), [(1, None), (37, None), (37, 37), (1100, None)])
def test_rows_round_trip_bitwise(tmp_path, n, hint):
    rows = np.random.default_rng(n).standard_normal((n, COLS)).astype(np.float32)
    writer = _write(tmp_path / "seg.zarr", rows, rows_hint=hint)
    reader = _reader(tmp_path / "seg.zarr", writer)
    np.testing.assert_array_equal(reader.read(0, n), rows)
    np.testing.assert_array_equal(read_all(tmp_path / "seg.zarr", n, COLS, parts=writer.parts,
                                           meta_digest=writer.meta_digest), rows)
    index = np.random.default_rng(1).integers(0, n, 50)
    np.testing.assert_array_equal(read_rows(tmp_path / "seg.zarr", n, COLS, index, parts=writer.parts,
                                            meta_digest=writer.meta_digest), rows[index])
    seg_reader = SegmentReader(tmp_path / "seg.zarr", n, COLS, parts=writer.parts, meta_digest=writer.meta_digest)
    np.testing.assert_array_equal(seg_reader.read(n // 3, n), rows[n // 3:])
    for lo, hi in [(0, 7), (3, 9), (8, 308), (100, 353), (313, 313), (0, 353)]:
        np.testing.assert_array_equal(reader.read_columns(index, lo, hi), rows[index, lo:hi])
    if hint:
        assert all(p.chunk_rows <= hint for p in writer.parts)  # a small segment is not padded to 512 rows


def test_a_tensor_read_reads_that_tensors_chunks_only(tmp_path):
    n = 1100
    rows = np.random.default_rng(0).standard_normal((n, COLS)).astype(np.float32)
    writer = _write(tmp_path / "seg.zarr", rows, rows_hint=n)
    reader = _reader(tmp_path / "seg.zarr", writer)
    for lo, hi in [(8, 308), (0, 7), (313, 353)]:
        with count_reads() as count:
            got = reader.read_columns(np.arange(n), lo, hi)
        np.testing.assert_array_equal(got, rows[:, lo:hi])
        part = next(p for p in writer.parts if p.start == lo)
        padded = len(part.chunk_digests) * part.chunk_rows
        assert count.bytes == padded * (hi - lo) * 4 == layer_bytes(writer.parts, lo, hi, n)
        assert count.bytes <= 1.2 * n * (hi - lo) * 4 or padded > n  # full chunks: exactly the tensor's bytes
    with count_reads() as count:
        reader.read_columns(np.array([5]), 8, 308)
    assert count.chunks == 1  # one model's tensor: one chunk


def test_chunks_hold_about_the_target_bytes_and_at_least_a_row(tmp_path):
    wide = PART_CHUNK_BYTES // 4 + 10
    writer = PartsWriter(tmp_path / "w.zarr", wide + 4, [(0, wide), (wide, 4)])
    writer.append(np.zeros((3, wide + 4), dtype=np.float32))
    writer.close()
    assert [p.chunk_rows for p in writer.parts] == [1, 3]  # all rows in one chunk: that chunk, no padding
    narrow = PartsWriter(tmp_path / "n.zarr", 4, [(0, 4)])
    narrow.append(np.zeros((600, 4), dtype=np.float32))
    narrow.close()
    assert [p.chunk_rows for p in narrow.parts] == [512]


def test_damaged_or_missing_chunks_are_errors_naming_the_file(tmp_path):
    rows = np.random.default_rng(0).standard_normal((20, COLS)).astype(np.float32)
    writer = _write(tmp_path / "seg.zarr", rows)
    chunk = tmp_path / "seg.zarr" / "t002" / "c" / "0" / "0"
    data = bytearray(chunk.read_bytes())
    data[100] ^= 0x10
    chunk.write_bytes(bytes(data))
    reader = _reader(tmp_path / "seg.zarr", writer)
    np.testing.assert_array_equal(reader.read_columns(np.arange(20), 0, 7), rows[:, :7])  # other tensors still read
    with pytest.raises(IntegrityError, match=r"t002/c/0/0.*corrupt"):
        reader.read_columns(np.arange(20), 8, 308)
    chunk.unlink()
    with pytest.raises(IntegrityError, match="missing"):
        reader.read(0, 20)
    (tmp_path / "seg.zarr" / "t001" / "zarr.json").write_text("{}")
    with pytest.raises(IntegrityError, match="t001/zarr.json"):
        _reader(tmp_path / "seg.zarr", writer).read_columns(np.arange(3), 7, 8)


def test_zarr_reads_the_segment_as_written(tmp_path):
    import zarr

    rows = np.random.default_rng(0).standard_normal((40, COLS)).astype(np.float32)
    _write(tmp_path / "seg.zarr", rows)
    group = zarr.open_group(str(tmp_path / "seg.zarr"), mode="r")
    for i, (start, size) in enumerate(SPANS):
        np.testing.assert_array_equal(group[f"t{i:03d}"][:], rows[:, start:start + size])
    assert group.attrs["weightlake"]["layout"] == "tensors"


def test_manifest_round_trips_and_says_format_3_only_with_a_tensors_segment(tmp_path):
    rows = np.zeros((4, COLS), dtype=np.float32)
    writer = _write(tmp_path / "seg.zarr", rows)
    seg = Segment("zoos/z/weights/seg.zarr", 0, 4, COLS, None, writer.meta_digest, "tensors", writer.parts)
    base = empty_manifest()
    plain = base.evolve({"op": "x"})
    assert plain.to_dict()["format"] == 2
    m = base.evolve({"op": "x"}, zoos={"z": ZooEntry(arch={"name": "a"}, segments=(seg,))})
    assert m.to_dict()["format"] == 3
    back = decode_manifest(m.encode(), tmp_path / "m.json")
    assert back == m and back.zoos["z"].segments[0].parts == writer.parts
    assert Manifest.from_dict(m.to_dict()) == m


def test_layout_is_chosen_by_width():
    assert choose_layout(2464) == "rows" and choose_layout(11_689_512) == "tensors"
    assert choose_layout(2464, "tensors") == "tensors"
    with pytest.raises(ValueError, match="unknown weight layout"):
        choose_layout(10, "columns")
