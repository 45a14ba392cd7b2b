"""The CLI as a user types it: real lake, real files, exit codes, one-line errors."""

from __future__ import annotations

import json

import polars as pl
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from weightlake.cli import main


@pytest.fixture()
def run():
    runner = CliRunner()

    def _run(*args: str, code: int = 0) -> str:
        result = runner.invoke(main, list(args), catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result.output

    return _run


def test_help_teaches(run):
    out = run("--help")
    for cmd in ("ingest", "sql", "export", "verify", "query"):
        assert cmd in out
    assert "Example" in run("ingest", "csv", "--help")


def test_ingest_sql_export_verify(run, small_csv, tmp_path):
    lake = str(tmp_path / "lake")
    out = run("ingest", "csv", str(small_csv), "--zoo", "z", "--init", "kaiming_uniform", "--lake", lake)
    assert "added 432 models" in out
    out = run("ingest", "csv", str(small_csv), "--zoo", "z", "--init", "kaiming_uniform", "--lake", lake)
    assert "nothing added" in out
    rows = json.loads(run("sql", "SELECT activation, count(*) AS n FROM models GROUP BY ALL ORDER BY ALL",
                          "--format", "json", "--lake", lake))
    assert len(rows) == 6 and rows[0] == {"activation": "gelu", "n": 72}
    run("sql", "SELECT model_id, classes FROM models WHERE n_classes = $k", "--param", "k=2",
        "--format", "csv", "-o", str(tmp_path / "two.csv"), "--lake", lake)
    assert pl.read_csv(tmp_path / "two.csv").height == 432
    run("sql", "SELECT * FROM models", "--format", "parquet", "-o", str(tmp_path / "m.parquet"), "--lake", lake)
    assert pl.read_parquet(tmp_path / "m.parquet").height == 432
    out = run("export", "csv", "--zoo", "z", "--where", "activation = 'gelu'", "-o", str(tmp_path / "new folder" / "g.csv"),
              "--lake", lake)
    assert "wrote 72 models" in out
    assert "integrity OK" in run("verify", "--lake", lake)
    assert "zoo z: 432 models" in run("info", "--lake", lake)


def test_env_var_names_the_lake(run, small_lake_dir, monkeypatch):
    monkeypatch.setenv("WEIGHTLAKE_LAKE", str(small_lake_dir))
    assert "mnist-cnn-s" in run("info")


def test_user_errors_are_one_line_and_nonzero(run, tmp_path, small_lake_dir):
    out = run("sql", "SELEC 1", "--lake", str(small_lake_dir), code=1)
    assert out.startswith("error: query failed") and out.count("\n") == 1
    out = run("info", "--lake", str(tmp_path / "none"), code=1)
    assert "no lake at" in out and "Traceback" not in out
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    out = run("ingest", "csv", str(bad), "--zoo", "z", "--init", "normal", "--lake", str(tmp_path / "l"), code=1)
    assert "expected 2483 columns" in out


def test_verify_fails_on_corruption(run, lake_copy):
    seg = next((lake_copy / "zoos").rglob("c/0/0"))
    data = bytearray(seg.read_bytes())
    data[100:104] = b"\x00\x00\x80\x7f"  # an inf in the middle of a row
    seg.write_bytes(bytes(data))
    out = run("verify", "--lake", str(lake_copy), code=1)
    assert "integrity FAILED" in out and "is corrupt" in out and "c/0/0" in out  # the chunk checksum names the file


def test_job_file(run, small_csv, tmp_path):
    job = tmp_path / "job.toml"
    job.write_text(f'[[source]]\nkind = "csv"\npath = "{small_csv}"\nzoo = "z"\ninit = "normal"\n\n'
                   f'[[export]]\nzoo = "z"\nwhere = "epoch = 11"\nout = "{tmp_path / "e.csv"}"\n')
    out = run("ingest", "run", str(job), "--lake", str(tmp_path / "lake"))
    assert "added 432 models" in out and "exported 72 models" in out
    job.write_text('[[source]]\nkind = "csv"\npath = "x.csv"\nzoo = "z"\n')
    assert "does not say its initialisation" in run("ingest", "run", str(job), "--lake", str(tmp_path / "l2"), code=1)


def test_export_names_a_folder_it_cannot_create(run, small_lake_dir, tmp_path):
    (tmp_path / "taken").write_text("a file where the folder should be")
    out = run("export", "csv", "-o", str(tmp_path / "taken" / "g.csv"), "--lake", str(small_lake_dir), code=1)
    assert out.count("\n") == 1 and "cannot create folder" in out and "taken" in out


def test_param_values_are_typed_only_when_nothing_is_lost(run, small_lake_dir):
    lake = str(small_lake_dir)
    query = "SELECT $v AS v, typeof($v) AS t"
    cases = {"7": (7, "INTEGER"), "-3": (-3, "INTEGER"), "0.5": (0.5, "DOUBLE"), "007": ("007", "VARCHAR"),
             "1e3": ("1e3", "VARCHAR"), "1.50": ("1.50", "VARCHAR"), "+2": ("+2", "VARCHAR"),
             "nan": ("nan", "VARCHAR"), "gelu": ("gelu", "VARCHAR"), "": ("", "VARCHAR")}
    for text, (value, kind) in cases.items():
        (row,) = json.loads(run("sql", query, "--param", f"v={text}", "--format", "json", "--lake", lake))
        assert (row["v"], row["t"].split("(")[0]) == (value, kind), text
    # a string column compared with a zero-padded value: bound as 7, DuckDB cast 'run a.csv' to INT and failed
    query = "SELECT count(*) AS n FROM (VALUES ('007'), ('run a.csv')) t(source_file) WHERE source_file = $f"
    rows = json.loads(run("sql", query, "--param", "f=007", "--format", "json", "--lake", lake))
    assert rows == [{"n": 1}]


def test_a_repeated_param_is_refused(run, small_lake_dir):
    out = run("sql", "SELECT $e AS e", "--param", "e=11", "--param", "e=16", "--lake", str(small_lake_dir), code=1)
    assert out.count("\n") == 1 and "--param e given twice" in out and "'11'" in out and "'16'" in out
    assert "canonical text" in run("sql", "--help")
    out = run("sql", "SELECT $e AS e", "--param", "e11", "--lake", str(small_lake_dir), code=1)
    assert out.count("\n") == 1 and "--param expects NAME=VALUE, got 'e11'" in out


@given(st.text(max_size=12))
def test_typed_param_round_trip(text):
    from weightlake.cli.core import _typed

    value = _typed(text)
    assert value == text if isinstance(value, str) else str(value) == text


@given(st.integers() | st.floats(allow_nan=False, allow_infinity=False))
def test_canonical_numbers_are_bound_as_numbers(number):
    from weightlake.cli.core import _typed

    assert _typed(str(number)) == number and type(_typed(str(number))) is type(number)


def test_python_dash_m_runs_the_command():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "weightlake", "--help"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("Usage: weightlake")


def test_snapshot_option_reads_an_earlier_snapshot(run, small_csv, tmp_path):
    """Time travel was Python only (lake.at); the read-only commands take --snapshot N."""
    from weightlake.zoo.synthetic import all_labels, write_synthetic_csv

    lake = str(tmp_path / "lake")
    run("ingest", "csv", str(small_csv), "--zoo", "z", "--init", "kaiming_uniform", "--lake", lake)
    write_synthetic_csv(tmp_path / "second.csv", labels=all_labels()[:1], seed=3)
    run("ingest", "csv", str(tmp_path / "second.csv"), "--zoo", "z2", "--init", "normal", "--lake", lake)
    count = "SELECT zoo, count(*) AS n FROM models GROUP BY ALL ORDER BY ALL"
    assert json.loads(run("sql", count, "--format", "json", "--lake", lake)) == [{"zoo": "z", "n": 432},
                                                                                {"zoo": "z2", "n": 36}]
    assert json.loads(run("sql", count, "--format", "json", "--snapshot", "1", "--lake", lake)) == [
        {"zoo": "z", "n": 432}]
    assert "empty: ingest a zoo" in run("info", "--snapshot", "0", "--lake", lake)
    groups = json.loads(run("query", "run", "accuracy_by_group", "--param", "zoo=z2", "--format", "json", "--lake", lake))
    assert {g["init"] for g in groups} == {"normal"}
    old = run("query", "run", "accuracy_by_group", "--param", "zoo=z2", "--snapshot", "1", "--lake", lake, code=1)
    assert "the lake has no zoo 'z2' (--param zoo) at snapshot 1; zoos: ['z']" in old  # was: an empty table
    assert "at snapshot 1 " in run("info", "--snapshot", "1", "--lake", lake)
    assert "zoo z2" not in run("info", "--snapshot", "1", "--lake", lake)
    assert "snapshot 1: integrity OK" in run("verify", "--snapshot", "1", "--lake", lake)
    run("export", "csv", "--zoo", "z2", "-o", str(tmp_path / "z2.csv"), "--lake", lake)
    missing = run("export", "csv", "--zoo", "z2", "-o", str(tmp_path / "old.csv"), "--snapshot", "1", "--lake", lake,
                  code=1)
    assert "z2" in missing and not (tmp_path / "old.csv").exists()
    for args in (["sql", "SELECT 1"], ["info"], ["verify"], ["query", "run", "accuracy_by_group", "--param", "zoo=z"]):
        out = run(*args, "--snapshot", "9", "--lake", lake, code=1)
        assert out.strip().splitlines()[-1] == ("error: the lake has no snapshot version 9: its snapshots are 0 to 2 "
                                                "(`weightlake history` lists them)"), out
    assert "x>=0" in run("sql", "SELECT 1", "--snapshot", "-1", "--lake", lake, code=2)


def test_a_class_set_is_printed_whole(small_lake_dir):
    """The table format cut lists to three items: a class set printed as [0, 1, … 9]."""
    result = CliRunner().invoke(main, ["sql", "SELECT [0, 1, 2, 3, 4, 5, 6, 7, 8, 9] AS classes, "
                                       "count(*) AS n FROM models", "--lake", str(small_lake_dir)])
    assert result.exit_code == 0 and "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]" in result.stdout, result.output


def test_csv_and_json_output_of_vectors(small_lake_dir, tmp_path):
    """`sql "SELECT model_id, w FROM weights" --format csv` was a TypeError traceback, and JSON wrote
    lists as strings ("classes": "[0, 1]")."""
    query = "SELECT model_id, classes, w FROM weights JOIN models USING (model_id) ORDER BY model_id LIMIT 2"
    out = tmp_path / "w [0, 1].csv"
    result = CliRunner().invoke(main, ["sql", query, "--format", "csv", "-o", str(out), "--lake", str(small_lake_dir)])
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    rows = pl.read_csv(out, glob=False)
    assert len(json.loads(rows["w"][0])) == 2464 and isinstance(json.loads(rows["classes"][0]), list)
    result = CliRunner().invoke(main, ["sql", query, "--format", "json", "--lake", str(small_lake_dir)])
    got = json.loads(result.stdout)
    assert isinstance(got[0]["classes"], list) and len(got[0]["w"]) == 2464
