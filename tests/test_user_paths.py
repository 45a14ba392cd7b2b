"""The user's own paths are names, never patterns: brackets, spaces, ``*`` and ``?`` (issue 9, case 10)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from weightlake import open_lake
from weightlake.cli import main
from weightlake.ingest.csv_zoo import ingest_csv
from weightlake.zoo.synthetic import all_labels, write_synthetic_csv

ODD = "overlapping 0 [0, 1, 2, 3, 4, 5, 6, 7, 8, 9] 11 gelu *best? x"


def test_lake_and_csv_under_a_folder_named_like_a_pattern(tmp_path: Path) -> None:
    base = tmp_path / ODD
    csv = base / "Merged zoo [v2].csv"
    base.mkdir()
    write_synthetic_csv(csv, labels=all_labels()[:2], seed=3)
    root = base / "lake [1]"
    report = ingest_csv(root, csv, zoo="mnist-cnn-s", init="kaiming_uniform")
    lake = open_lake(root)
    n = lake.models().collect().height
    assert n == report.rows_added > 0
    assert lake.sql("SELECT count(*) AS n FROM models")["n"][0] == n
    result = CliRunner().invoke(main, ["verify", "--lake", str(root)])
    assert result.exit_code == 0, result.output


def test_duckdb_views_read_only_their_own_files(tmp_path: Path, small_lake_dir: Path) -> None:
    """`lake?` used to match a sibling `lakeX` too: every row counted twice."""
    shutil.copytree(small_lake_dir, tmp_path / "lake?")
    shutil.copytree(small_lake_dir, tmp_path / "lakeX")
    lake = open_lake(tmp_path / "lake?")
    expected = lake.models().collect().height
    assert lake.sql("SELECT count(*) AS n FROM models")["n"][0] == expected


def test_ingest_tracking_on_the_users_folder_names(tmp_path: Path) -> None:
    from weightlake.experiments.tracking import write_tracking_csv

    rng = np.random.default_rng(0)
    gt = (rng.standard_normal((6, 2464)) * 0.1).astype(np.float32)
    csv = tmp_path / "Experiments" / "overlapping 0 [0, 1, 2, 3, 4, 5, 6, 7, 8, 9] 11 gelu" / "Tracking" / \
        "AE epoch mse 1 [*].csv"
    write_tracking_csv(csv, gt, gt * 0.5, gt * 0.9, values=[("Loss", rng.random(6))])
    lake = tmp_path / "lakes [a]*?" / "lake"  # derived tables under a patterned lake root, read by DuckDB and polars
    result = CliRunner().invoke(main, ["experiments", "ingest-tracking", str(csv.parent.parent), "--lake", str(lake),
                                       "--metrics", "mse,w1"])
    assert result.exit_code == 0, result.output
    rows = open_lake(lake).sql("SELECT checkpoint, pd_mse FROM evaluations")
    assert rows.height == 1 and np.isfinite(rows["pd_mse"][0])
    assert open_lake(lake).table("predictions").collect().height == 18  # GT, PD, FN x 6 rows
