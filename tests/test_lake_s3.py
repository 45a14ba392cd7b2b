"""The same lake on local disk and at s3:// (moto's S3 server): ingest, SQL, reads, analyses, pairs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

import weightlake as wl
from weightlake.cli import main


def _cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture()
def lake_url(store_lake_url: str) -> str:
    """The lake root on each store in turn (conftest's ``store_lake_url``)."""
    return store_lake_url


def test_ingest_sql_and_reads_agree_with_the_local_lake(lake_url: str, small_csv: Path, small_lake_dir: Path) -> None:
    out = _cli("ingest", "csv", str(small_csv), "--zoo", "mnist-cnn-s", "--init", "kaiming_uniform", "--lake", lake_url)
    assert "added 432 models" in out
    assert "nothing added" in _cli("ingest", "csv", str(small_csv), "--zoo", "mnist-cnn-s", "--init",
                                   "kaiming_uniform", "--lake", lake_url)
    rows = json.loads(_cli("sql", "SELECT activation, count(*) AS n, avg(accuracy) AS acc FROM models "
                           "GROUP BY ALL ORDER BY ALL", "--format", "json", "--lake", lake_url))
    reference = wl.open_lake(small_lake_dir)
    expected = reference.sql("SELECT activation, count(*) AS n, avg(accuracy) AS acc FROM models "
                             "GROUP BY ALL ORDER BY ALL").to_dicts()
    assert [r["n"] for r in rows] == [r["n"] for r in expected]
    assert [r["acc"] for r in rows] == pytest.approx([r["acc"] for r in expected])

    lake = wl.open_lake(lake_url)
    assert lake.location.url.startswith("s3://") == lake_url.startswith("s3://")
    models = lake.models().sort("model_id").collect()
    assert models.drop("model_id").equals(reference.models().sort("model_id").collect().drop("model_id"))
    ids = np.array([5, 0, 431, 200, 5])
    np.testing.assert_array_equal(lake.weights_numpy(ids), reference.weights_numpy(ids))
    _, all_rows = lake.zoo_weights("mnist-cnn-s")
    np.testing.assert_array_equal(all_rows, reference.zoo_weights("mnist-cnn-s")[1])
    # the weights view and a wl_* function through DuckDB, fed Arrow data
    dist = lake.sql("SELECT a.model_id, array_distance(a.w, b.w) AS d FROM weights a, weights b "
                    "WHERE a.model_id = 3 AND b.model_id = 7")
    assert dist["d"][0] == pytest.approx(float(np.linalg.norm(all_rows[3] - all_rows[7])), rel=1e-5)
    assert [m for m in lake.history()["operation"]] == ["ingest-csv", "create"]
    out = _cli("query", "run", "accuracy_by_group", "--param", "zoo=mnist-cnn-s", "--format", "json", "--lake", lake_url)
    assert json.loads(out) == json.loads(_cli("query", "run", "accuracy_by_group", "--param", "zoo=mnist-cnn-s", "--format", "json",
                                              "--lake", str(small_lake_dir)))


@pytest.mark.slow
def test_scenarios_analyses_and_pairs_on_either_store(lake_url: str, tmp_path: Path) -> None:
    from weightlake.compute.analyses import analyze_spectra
    from weightlake.ingest.csv_zoo import ingest_csv
    from weightlake.scenarios import declare_scenario
    from weightlake.zoo.synthetic import all_labels, write_synthetic_csv

    csv_path = tmp_path / "zoo.csv"
    write_synthetic_csv(csv_path, labels=all_labels(range(4), range(2, 5)), seed=3)
    ingest_csv(lake_url, csv_path, zoo="z", init="kaiming_uniform")
    declare_scenario(lake_url, "t", zoo="z", digits=range(4), sizes=range(2, 4), overlap=(0, 2))
    report = analyze_spectra(lake_url, zoo="z")
    lake = wl.open_lake(lake_url)
    assert sorted(lake.tables) >= ["pairs", "scenarios", "spectra"]
    spectra = lake.table("spectra").collect()
    assert spectra.height == report.rows and spectra["zoo"].unique().to_list() == ["z"]
    n = lake.sql("SELECT count(*) AS n FROM pairs WHERE scenario = 't'")["n"][0]
    assert n == lake.table("pairs").filter(pl.col("scenario") == "t").collect().height > 0
    batch = next(iter(lake.pairs("t", split="train").loader(batch_size=8)))
    assert tuple(batch["x1"].shape) == (8, lake.arch("z").n_params)
    ids = batch["a_id"].numpy()
    np.testing.assert_array_equal(batch["x1"].numpy(), lake.weights_numpy(ids))


def test_verify_and_gc_on_s3_after_a_writer_died_mid_commit(s3_lake_url: str, small_csv: Path) -> None:
    from weightlake.storage.snapshot import SnapshotStore
    from weightlake.storage.transaction import transaction
    from weightlake.verify import collect_garbage, verify

    _cli("ingest", "csv", str(small_csv), "--zoo", "mnist-cnn-s", "--init", "kaiming_uniform", "--lake", s3_lake_url)
    lake = wl.open_lake(s3_lake_url)
    report = verify(lake)
    assert report.ok and not report.orphans, report.problems
    # a writer that died after uploading its files and writing its manifest, before claiming the version
    with transaction(s3_lake_url) as tx:
        tx.put_table("dead", pl.DataFrame({"x": [1]}))
        tx._upload()
        dead = tx.parent.evolve({"op": "dead"})
        tx.store._write_manifest(dead)
        tx.committed = dead  # leave the block as if the process had gone: nothing is cleaned up
    store = SnapshotStore(s3_lake_url)
    assert store.current() == lake.manifest  # the lake is unchanged
    orphans = verify(lake).orphans
    assert f"_snapshots/{dead.file_name}" in orphans and any(o.startswith("tables/dead/") for o in orphans)
    assert collect_garbage(lake) == []  # younger than an hour: a running writer's, maybe
    out = _cli("verify", "--gc", "--lake", s3_lake_url)  # was "removed 0 unreferenced files", no word of why
    assert "removed 0 unreferenced files" in out and f"note: {len(orphans)} unreferenced files are younger than " \
        "an hour and were kept" in out, out
    assert sorted(collect_garbage(lake, min_age=0)) == sorted(orphans)
    assert verify(lake).ok and not verify(lake).orphans
    # a flipped byte in a listed Parquet object and a missing chunk are reported
    f = lake.manifest.zoos["mnist-cnn-s"].model_files[0]
    good = store.location.read(f)
    store.location.write(f, good[:100] + bytes([good[100] ^ 0xFF]) + good[101:])
    assert "is corrupt" in " ".join(verify(wl.open_lake(s3_lake_url)).problems)
    store.location.write(f, good)
    seg = lake.manifest.zoos["mnist-cnn-s"].segments[0]
    store.location.delete(f"{seg.path}/c/0/0")
    problems = " ".join(verify(wl.open_lake(s3_lake_url)).problems)
    assert "c/0/0' is missing" in problems


def test_outputs_are_local_paths_and_help_names_s3(s3_lake_url: str, small_csv: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """`-o s3://...` is refused in one line (it used to fail writing a local folder 's3:'), and --help
    says that --lake takes an s3:// URL."""
    _cli("ingest", "csv", str(small_csv), "--zoo", "z", "--init", "kaiming_uniform", "--lake", s3_lake_url)
    monkeypatch.chdir(tmp_path)
    for args in (["sql", "SELECT 1 AS x", "--format", "csv", "-o", f"{s3_lake_url}/out.csv"],
                 ["export", "csv", "--zoo", "z", "-o", "s3://elsewhere/out.csv"],
                 ["sql", "SELECT 1 AS x", "-o", f"file://{tmp_path}/out.csv"]):
        result = CliRunner().invoke(main, [*args, "--lake", s3_lake_url])
        assert result.exit_code == 1 and "outputs are local paths, not URLs" in result.output, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no folder 's3:' either
    assert "s3://BUCKET/PREFIX" in _cli("sql", "--help") and "s3://BUCKET/PREFIX" in _cli("--help")


def test_export_into_the_lake_makes_no_folder_there(lake_copy: Path, tree_state) -> None:
    before = tree_state(lake_copy)
    dirs = sorted(p for p in lake_copy.rglob("*") if p.is_dir())
    result = CliRunner().invoke(main, ["export", "csv", "-o", str(lake_copy / "exports" / "z.csv"),
                                       "--lake", str(lake_copy)])
    assert result.exit_code == 1 and "lies inside the lake" in result.output, result.output
    assert tree_state(lake_copy) == before and sorted(p for p in lake_copy.rglob("*") if p.is_dir()) == dirs


def test_a_failed_first_ingest_leaves_no_lake(lake_url: str, small_csv: Path, tmp_path: Path) -> None:
    """A lake comes into being with its first commit: bad input for a new root (a typo in a prefix,
    say) is one line and leaves no empty lake there."""
    from weightlake.errors import LakeNotFoundError
    from weightlake.storage.snapshot import SnapshotStore

    bad = tmp_path / "bad.csv"
    bad.write_bytes(small_csv.read_bytes()[:100_000])  # cut inside a row
    result = CliRunner().invoke(main, ["ingest", "csv", str(bad), "--zoo", "z", "--init", "kaiming_uniform",
                                       "--lake", lake_url])
    assert result.exit_code == 1 and "row" in result.output.splitlines()[-1], result.output
    with pytest.raises(LakeNotFoundError, match="no lake at"):
        wl.open_lake(lake_url)
    assert SnapshotStore(lake_url).location.keys("") == []  # no _lock either (it stayed behind before)
    assert "added 432 models" in _cli("ingest", "csv", str(small_csv), "--zoo", "z", "--init", "kaiming_uniform",
                                      "--lake", lake_url)
    assert [m.version for m in SnapshotStore(lake_url).history()] == [1, 0]


@pytest.mark.parametrize("metadata", ["intact", "damaged"])
def test_verify_names_every_damaged_chunk(lake_url: str, tmp_path: Path, metadata: str) -> None:
    """Two damaged chunks of one segment are both named, the intact chunks are still read and
    hash-checked, and damaged metadata does not stop the weight checks."""
    from weightlake.ingest.csv_zoo import ingest_csv
    from weightlake.storage.snapshot import SnapshotStore
    from weightlake.verify import verify
    from weightlake.zoo.synthetic import all_labels, write_synthetic_csv

    csv_path = tmp_path / "zoo.csv"
    write_synthetic_csv(csv_path, labels=all_labels(range(5), range(2, 6)), seed=4)  # 936 rows: chunks 0 and 1
    ingest_csv(lake_url, csv_path, zoo="z", init="kaiming_uniform")
    ingest_csv(lake_url, csv_path, zoo="z", init="xavier_normal", allow_same_source=True)
    location = SnapshotStore(lake_url).location
    lake = wl.open_lake(lake_url)
    first, second = lake.manifest.zoos["z"].segments
    keys = [f"{first.path}/c/0/0", f"{first.path}/c/1/0"]
    if metadata == "damaged":
        keys.append(lake.manifest.zoos["z"].model_files[0])
    for key in keys:
        data = bytearray(location.read(key))
        data[100] ^= 0xFF
        location.write(key, bytes(data))
    seen: list[int] = []
    problems = verify(wl.open_lake(lake_url), progress=seen.append).problems
    for key in keys:  # each chunk once; a damaged Parquet file also makes the metadata unreadable
        assert sum(f"{key}' is corrupt" in p for p in problems) == (1 if "/c/" in key else 2), problems
    assert not any("do not match their hash" in p for p in problems), problems
    assert sum(seen) == second.rows  # the intact segment was read whole, the damaged one not at all
    assert len(problems) == len(keys) + (metadata == "damaged")


@pytest.mark.slow
def test_to_dask_and_spectra_on_dask_from_s3(s3_lake_url: str, small_csv: Path, small_lake_dir: Path) -> None:
    pytest.importorskip("distributed")
    _cli("ingest", "csv", str(small_csv), "--zoo", "mnist-cnn-s", "--init", "kaiming_uniform", "--lake", s3_lake_url)
    lake = wl.open_lake(s3_lake_url)
    np.testing.assert_array_equal(lake.to_dask("mnist-cnn-s").compute(scheduler="threads"),
                                  wl.open_lake(small_lake_dir).zoo_weights("mnist-cnn-s")[1])
    out = _cli("analyze", "spectra", "--zoo", "mnist-cnn-s", "--layers", "fc2", "--lake", s3_lake_url,
               "--dask", "local")
    assert "ran on Dask (local)" in out or "table 'spectra'" in out
    table = wl.open_lake(s3_lake_url).table("spectra").collect()
    assert table["layer"].unique().to_list() == ["fc2"] and table["model_id"].n_unique() == table.height > 0
