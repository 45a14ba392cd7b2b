"""Other tools read exactly the current snapshot, without importing weightlake, as lake/README.md shows;
every manifest the lake writes validates against the published JSON Schema."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import weightlake as wl
from weightlake.compute.analyses import analyze_spectra

SCHEMA = Path(wl.__file__).parent / "storage" / "manifest.schema.json"

PLAIN = r'''
import json, sys
import duckdb, polars as pl, zarr
root = sys.argv[1]
m = json.load(open(root + "/_snapshots/" + open(root + "/_current").read().strip()))
spectra = pl.scan_parquet([root + "/" + f for f in m["tables"]["spectra"]["files"]], hive_partitioning=True)
models = pl.scan_parquet([root + "/" + f for z in m["zoos"].values() for f in z["model_files"]], hive_partitioning=True)
con = duckdb.connect()
con.execute(f"""SET VARIABLE files = (SELECT list('{root}/' || f) FROM (
    SELECT unnest(m.tables.spectra.files) AS f
    FROM read_json('{root}/_snapshots/v*.json', filename = true, union_by_name = true) AS m
    WHERE parse_filename(m.filename) = (SELECT trim(content) FROM read_text('{root}/_current'))))""")
duck = con.sql("SELECT count(*) FROM read_parquet(getvariable('files'), hive_partitioning = true)").fetchall()[0][0]
glob = con.sql(f"SELECT count(*) FROM read_parquet('{root}/tables/spectra/**/*.parquet')").fetchall()[0][0]
seg = next(iter(m["zoos"].values()))["segments"][0]
attrs = zarr.open_array(root + "/" + seg["path"], mode="r").attrs["weightlake"]
print(json.dumps({"polars": spectra.select(pl.len()).collect().item(), "duckdb": duck, "glob": glob,
                  "models": models.select(pl.len()).collect().item(), "attrs": attrs, "first_id": seg["first_id"],
                  "imported": "weightlake" in sys.modules}))
'''


def test_plain_duckdb_polars_and_zarr_read_the_current_snapshot(lake_copy: Path) -> None:
    analyze_spectra(lake_copy, zoo="mnist-cnn-s")
    analyze_spectra(lake_copy, zoo="mnist-cnn-s")  # the first run's files stay on disk, superseded
    lake = wl.open_lake(lake_copy)
    expected = lake.table("spectra").collect().height
    run = subprocess.run([sys.executable, "-c", PLAIN, str(lake_copy)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert not out["imported"]
    assert out["polars"] == out["duckdb"] == expected and out["glob"] == 2 * expected  # the glob double-counts
    assert out["models"] == lake.models().collect().height == 432
    assert out["attrs"] == {"zoo": "mnist-cnn-s", "first_model_id": out["first_id"], "rows": 432,
                            "stop_model_id": out["first_id"] + 432}


def test_every_manifest_matches_the_published_schema(analysed_lake_dir: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA.read_text())
    manifests = sorted((analysed_lake_dir / "_snapshots").glob("v*.json"))
    assert len(manifests) > 3
    for path in manifests:
        jsonschema.validate(json.loads(path.read_text()), schema)
