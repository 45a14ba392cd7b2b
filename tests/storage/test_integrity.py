"""Every read verifies what it reads: a flipped byte, a deleted or short chunk, a damaged Parquet
file or manifest is an error naming the file, on every read path; never a wrong number."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import weightlake as wl
from weightlake.cli import main
from weightlake.errors import IntegrityError, WeightLakeError
from weightlake.storage.snapshot import Manifest, Segment, ZooEntry, decode_manifest
from weightlake.storage.tensors import read_all, read_rows, write_segment


def flip_byte(path: Path, offset: int = 1000) -> None:
    data = bytearray(path.read_bytes())
    data[offset % len(data)] ^= 0x10
    path.write_bytes(bytes(data))


def chunk_files(lake_dir: Path) -> list[Path]:
    lake = wl.open_lake(lake_dir)
    seg = next(iter(lake.manifest.zoos.values())).segments[0]
    return sorted(p for p in (lake_dir / seg.path / "c").rglob("*") if p.is_file())


def read_paths(lake_dir: Path, out: Path):  # noqa: ANN201
    """Every way a user reads weights, each a callable."""
    from weightlake.ingest.csv_zoo import export_csv

    return {
        "lake.weights": lambda: wl.open_lake(lake_dir).weights([0, 1, 2]),
        "lake.zoo_weights": lambda: wl.open_lake(lake_dir).zoo_weights(),
        "lake.layer": lambda: wl.open_lake(lake_dir).layer([3], "fc1"),
        "sql weights": lambda: wl.open_lake(lake_dir).sql("SELECT sum(wl_l2(w)) FROM weights"),
        "export csv": lambda: export_csv(wl.open_lake(lake_dir), out),
    }


@pytest.mark.parametrize("damage", ["flip", "delete", "truncate", "extend"])
def test_damaged_chunk_fails_every_read_path(lake_copy: Path, tmp_path: Path, damage: str) -> None:
    chunk = chunk_files(lake_copy)[0]
    if damage == "flip":
        flip_byte(chunk)
    elif damage == "delete":
        chunk.unlink()
    elif damage == "truncate":
        chunk.write_bytes(chunk.read_bytes()[:-8])
    else:
        chunk.write_bytes(chunk.read_bytes() + b"\0\0\0\0")
    for name, read in read_paths(lake_copy, tmp_path / "out.csv").items():
        with pytest.raises(WeightLakeError, match="chunk|corrupt|missing") as info:
            read()
        assert str(chunk.name) in str(info.value) or "c/0/0" in str(info.value), (name, info.value)
    assert not (tmp_path / "out.csv").exists()
    result = CliRunner().invoke(main, ["verify", "--lake", str(lake_copy)])
    assert result.exit_code == 1 and "Traceback" not in result.output


def test_intact_lake_reads_the_same_through_every_path(lake_copy: Path, tmp_path: Path) -> None:
    lake = wl.open_lake(lake_copy)
    _, rows = lake.zoo_weights()
    fresh = wl.open_lake(lake_copy)  # no cache: rows come from the chunk files
    ids = np.array([431, 0, 7, 7, 300])
    assert np.array_equal(fresh.weights_numpy(ids), rows[ids])
    for read in read_paths(lake_copy, tmp_path / "out.csv").values():
        read()


def test_damaged_metadata_parquet_is_refused(lake_copy: Path) -> None:
    lake = wl.open_lake(lake_copy)
    meta = lake_copy / next(iter(lake.manifest.zoos.values())).model_files[0]
    flip_byte(meta, offset=len(meta.read_bytes()) // 2)
    fresh = wl.open_lake(lake_copy)
    with pytest.raises(IntegrityError, match="corrupt"):
        fresh.models().collect()
    with pytest.raises(IntegrityError, match="corrupt"):
        fresh.sql("SELECT avg(accuracy) FROM models")
    result = CliRunner().invoke(main, ["verify", "--lake", str(lake_copy)])
    assert result.exit_code == 1 and meta.name in result.output


def test_flipped_byte_in_a_manifest_is_refused(lake_copy: Path) -> None:
    lake = wl.open_lake(lake_copy)
    path = lake_copy / "_snapshots" / lake.manifest.file_name
    text = path.read_text()
    damaged = text.replace('"rows": 432', '"rows": 433', 1)
    assert damaged != text
    path.write_text(damaged)
    with pytest.raises(IntegrityError, match="corrupt"):
        wl.open_lake(lake_copy)
    result = CliRunner().invoke(main, ["verify", "--lake", str(lake_copy)])
    assert result.exit_code == 1 and "corrupt" in result.output and result.output.count("\n") == 1


@pytest.mark.parametrize("content", [b"", b"\n", b"garbage that is not a name", b"../../etc/passwd"])
def test_bad_pointer_is_one_line(lake_copy: Path, content: bytes) -> None:
    (lake_copy / "_current").write_bytes(content)
    for args in (["verify"], ["sql", "SELECT 1"], ["info"]):
        result = CliRunner().invoke(main, [*args, "--lake", str(lake_copy)])
        assert result.exit_code == 1 and result.output.startswith("error: "), result.output
        assert "does not name a snapshot" in result.output


def test_manifest_round_trip_with_checksums(tmp_path: Path) -> None:
    seg = Segment("a.zarr", 0, 5, 7, ("xxh3:00", "xxh3:01"), "xxh3:02")
    m = Manifest(version=3, snapshot_id="abc", parent=None, created="t", operation={"op": "x"},
                 zoos={"z": ZooEntry(arch={"name": "cnn-s"}, segments=(seg,), model_files=("f",))},
                 checksums={"f": "xxh3:03"})
    assert decode_manifest(m.encode(), tmp_path / "m.json") == m
    body = json.loads(m.encode())
    body["checksums"]["f"] = "xxh3:04"
    with pytest.raises(IntegrityError, match="corrupt"):
        decode_manifest(json.dumps(body).encode(), tmp_path / "m.json")


def test_format_1_manifest_still_reads_without_checks(tmp_path: Path) -> None:
    old = {"format": 1, "version": 1, "snapshot_id": "abc", "parent": None, "created": "t", "operation": {},
           "zoos": {"z": {"arch": {"name": "cnn-s"}, "segments": [{"path": "a", "first_id": 0, "rows": 1, "cols": 2}],
                          "model_files": ["f"]}}}
    m = decode_manifest(json.dumps(old).encode(), tmp_path / "m.json")
    assert m.format == 1 and m.checksum("f") is None and m.zoos["z"].segments[0].chunk_digests is None


def test_segment_round_trip_checks_every_chunk(tmp_path: Path) -> None:
    from weightlake.storage.tensors import SegmentWriter

    rows = np.random.default_rng(0).standard_normal((1100, 9)).astype(np.float32)
    rows[512:1024] = 0.0  # a chunk equal to the fill value is still written (and so checked)
    writer = SegmentWriter(tmp_path / "s.zarr", 9, chunk_rows=512)
    writer.append(rows)
    assert writer.close() == 1100 and len(writer.chunk_digests) == 3
    kw = {"digests": writer.chunk_digests, "meta_digest": writer.meta_digest}
    assert np.array_equal(read_all(tmp_path / "s.zarr", 1100, 9, **kw), rows)
    index = np.array([1099, 3, 600, 3, 1024])
    assert np.array_equal(read_rows(tmp_path / "s.zarr", 1100, 9, index, **kw), rows[index])
    (tmp_path / "s.zarr" / "c" / "1" / "0").unlink()
    with pytest.raises(IntegrityError, match="missing"):
        read_rows(tmp_path / "s.zarr", 1100, 9, np.array([600]), **kw)
    assert np.array_equal(read_rows(tmp_path / "s.zarr", 1100, 9, np.array([5]), **kw), rows[[5]])  # other chunks


@pytest.mark.parametrize("blocks", [[1100], [1, 700, 399], [512, 512, 76], [1024, 76]])
def test_raw_chunk_files_are_the_ones_zarr_writes(tmp_path: Path, blocks: list[int]) -> None:
    """The writer's own chunk files and ``zarr.json`` equal zarr's for the same rows, byte for byte
    (padding included), and each recorded digest is the digest of the file on disk."""
    import zarr

    from weightlake.storage.checksums import digest_file
    from weightlake.storage.tensors import SegmentWriter

    rows = np.random.default_rng(1).standard_normal((1100, 9)).astype(np.float32)
    writer = SegmentWriter(tmp_path / "s.zarr", 9, chunk_rows=512)
    at = 0
    for n in blocks:  # a column-sliced block is not C-contiguous: it goes through the chunk buffer
        block = np.asfortranarray(rows[at:at + n]) if n == 399 else rows[at:at + n]
        writer.append(block)
        at += n
    assert writer.close({"zoo": "z", "first_model_id": 7}) == 1100
    ref = zarr.create_array(store=str(tmp_path / "ref.zarr"), shape=(1100, 9), chunks=(512, 9), dtype="float32",
                            compressors=None, fill_value=0.0, dimension_names=("model", "param"),
                            config={"write_empty_chunks": True})
    ref[:] = rows
    ref.attrs.update({"weightlake": {"zoo": "z", "first_model_id": 7, "rows": 1100, "stop_model_id": 1107}})
    assert (tmp_path / "s.zarr" / "zarr.json").read_text() == (tmp_path / "ref.zarr" / "zarr.json").read_text()
    for i, digest in enumerate(writer.chunk_digests):
        ours, theirs = tmp_path / "s.zarr" / "c" / str(i) / "0", tmp_path / "ref.zarr" / "c" / str(i) / "0"
        assert ours.read_bytes() == theirs.read_bytes() and digest_file(ours) == digest
    assert np.array_equal(zarr.open_array(str(tmp_path / "s.zarr"), mode="r")[:], rows)


def test_write_segment_helper_still_round_trips(tmp_path: Path) -> None:
    rows = np.arange(40, dtype=np.float32).reshape(8, 5)
    assert write_segment(tmp_path / "w.zarr", rows, 5, chunk_rows=3) == 8
    assert np.array_equal(read_all(tmp_path / "w.zarr", 8, 5), rows)


@pytest.fixture()
def analysed_copy(tmp_path: Path, analysed_lake_dir: Path) -> Path:
    import shutil

    shutil.copytree(analysed_lake_dir, tmp_path / "lake")
    return tmp_path / "lake"


def test_damaged_materialised_batch_and_prediction_chunks_are_refused(analysed_copy: Path) -> None:
    from weightlake.experiments.evaluate import load_predictions
    from weightlake.serve.batches import materialize

    report = materialize(analysed_copy, "t", "test", batch_size=4, epochs=1)
    lake = wl.open_lake(analysed_copy)
    assert sum(1 for _ in lake.batches("t", "test")) == report.n_batches  # intact: reads
    frame, vectors = load_predictions(lake)
    assert vectors.shape[0] == frame.height > 0
    x_chunk = next(p for p in (analysed_copy / report.path).rglob("x/c/1/0/0/0"))
    flip_byte(x_chunk)
    with pytest.raises(IntegrityError, match="corrupt"):
        list(wl.open_lake(analysed_copy).batches("t", "test"))
    x_chunk.unlink()
    with pytest.raises(IntegrityError, match="missing"):
        list(wl.open_lake(analysed_copy).batches("t", "test"))
    pred_chunk = next(p for p in (analysed_copy / "predictions").rglob("c/0/0") if p.is_file())
    flip_byte(pred_chunk, offset=16)
    with pytest.raises(IntegrityError, match="corrupt"):
        load_predictions(wl.open_lake(analysed_copy))


@pytest.mark.parametrize("how", ["direct", "buffered by request", "refused by the file system"])
@pytest.mark.parametrize("blocks", [[1100], [1, 700, 399], [1024, 76]])
def test_direct_chunk_writes_equal_buffered_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str,
                                                 blocks: list[int]) -> None:
    """Chunks of a 4 KiB multiple (512 rows x 8 float32) are written with O_DIRECT, from aligned
    blocks as they are and from unaligned ones through the chunk buffer; the files, digests and
    zarr's reading of them equal a buffered write's, and a file system refusing O_DIRECT
    (EINVAL) gets buffered writes with nothing left behind."""
    import errno
    import os

    import zarr

    from weightlake.storage import tensors
    from weightlake.storage.checksums import digest_file

    rows = np.random.default_rng(2).standard_normal((1100, 8)).astype(np.float32)
    aligned = tensors.aligned_empty(rows.shape)
    aligned[:] = rows
    refused: list[Path] = []
    if how == "buffered by request":
        monkeypatch.setenv("WEIGHTLAKE_DIRECT_WRITES", "0")
    elif how == "refused by the file system":
        real = tensors._write_new_file

        def refuse(path: Path, data: memoryview, flags: int) -> None:
            if flags & os.O_DIRECT:
                path.write_bytes(b"partial")  # what a refused write may leave: removed by the writer
                refused.append(path)
                raise OSError(errno.EINVAL, "Invalid argument")
            real(path, data, flags)

        monkeypatch.setattr(tensors, "_write_new_file", refuse)
    writer = tensors.SegmentWriter(tmp_path / "s.zarr", 8, chunk_rows=512)
    assert writer._direct == (how != "buffered by request" and tensors.direct_writes_wanted())
    at = 0
    for n in blocks:
        writer.append((aligned if n != 700 else rows)[at:at + n])  # aligned whole chunks and unaligned ones
        at += n
    assert writer.close() == 1100
    if how == "direct" and tensors.direct_writes_wanted():
        assert writer._direct  # the file system took every chunk
    assert len(refused) == (1 if how == "refused by the file system" else 0)  # refused once, then buffered
    monkeypatch.delenv("WEIGHTLAKE_DIRECT_WRITES", raising=False)
    ref = tensors.SegmentWriter(tmp_path / "ref.zarr", 8, chunk_rows=512)
    ref._direct = False
    ref.append(rows)
    ref.close()
    assert writer.chunk_digests == ref.chunk_digests
    for i, digest in enumerate(writer.chunk_digests):
        ours = tmp_path / "s.zarr" / "c" / str(i) / "0"
        assert ours.read_bytes() == (tmp_path / "ref.zarr" / "c" / str(i) / "0").read_bytes()
        assert digest_file(ours) == digest
    assert np.array_equal(zarr.open_array(str(tmp_path / "s.zarr"), mode="r")[:], rows)


def test_aligned_empty_is_aligned() -> None:
    from weightlake.storage.tensors import aligned_empty

    for shape in [(0, 3), (1, 1), (512, 2464), (3, 5, 7)]:
        a = aligned_empty(shape)
        assert a.shape == shape and a.dtype == np.float32 and a.flags.c_contiguous
        assert a.size == 0 or a.ctypes.data % 4096 == 0  # (an empty array's address means nothing)
