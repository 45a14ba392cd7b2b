"""SQL cannot change the lake: no statement of `weightlake sql`, `lake.sql`, `lake.connect` or a
named query creates, rewrites or deletes a file; the lake stays byte-for-byte what it was."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import weightlake as wl
from weightlake.cli import main
from weightlake.errors import QueryError


def first_model_file(lake_dir: Path) -> Path:
    lake = wl.open_lake(lake_dir)
    return lake_dir / next(iter(lake.manifest.zoos.values())).model_files[0]


def hostile_statements(lake_dir: Path) -> list[str]:
    meta = first_model_file(lake_dir)
    return [
        f"COPY (SELECT 'junk') TO '{lake_dir}/_current' (FORMAT csv, HEADER false)",
        f"COPY (SELECT model_id, 0.0 AS accuracy FROM models) TO '{meta}' (FORMAT parquet)",
        f"COPY (SELECT 1 AS a) TO '{meta}' (FORMAT parquet, USE_TMP_FILE false)",
        f"ATTACH '{lake_dir}/evil.duckdb' AS evil",
        f"EXPORT DATABASE '{lake_dir}/export'",
        "INSTALL httpfs",
        "SET enable_external_access = true",
    ]


def test_cli_refuses_every_write_and_leaves_the_lake_unchanged(lake_copy: Path, tree_state) -> None:  # noqa: ANN001
    before = tree_state(lake_copy)
    runner = CliRunner()
    for statement in hostile_statements(lake_copy):
        result = runner.invoke(main, ["sql", statement, "--lake", str(lake_copy)])
        assert result.exit_code == 1, (statement, result.output)
        assert result.output.startswith("error: ") and result.output.count("\n") == 1, result.output
        assert "Traceback" not in result.output
    assert tree_state(lake_copy) == before
    out = runner.invoke(main, ["verify", "--lake", str(lake_copy)])
    assert out.exit_code == 0, out.output


def test_python_api_and_connections_cannot_write(lake_copy: Path, tree_state) -> None:  # noqa: ANN001
    import duckdb

    before = tree_state(lake_copy)
    lake = wl.open_lake(lake_copy)
    for statement in hostile_statements(lake_copy):
        with pytest.raises(QueryError):
            lake.sql(statement)
        with lake.connect(weights=False) as con, pytest.raises(duckdb.Error):
            con.execute(statement)
    assert tree_state(lake_copy) == before
    assert lake.sql("SELECT count(*) AS n FROM models")["n"][0] == 432  # reading still works


@pytest.mark.parametrize(("statement", "words"), [
    ("CREATE VIEW v AS SELECT 1 AS a", "CREATE statements are refused"),
    ("create or replace temp view v as select 1", "CREATE statements are refused"),
    ("CREATE TABLE t AS SELECT * FROM models", "CREATE statements are refused"),
    ("CREATE MACRO twice(x) AS 2 * x", "CREATE statements are refused"),
    ("DROP VIEW models", "DROP statements are refused"),
    ("ALTER VIEW models RENAME TO m", "ALTER statements are refused"),
    ("BEGIN", "BEGIN, COMMIT and ROLLBACK statements are refused"),
    ("COMMIT", "BEGIN, COMMIT and ROLLBACK statements are refused"),
    ("INSERT INTO models SELECT * FROM models", "INSERT statements are refused"),
    ("DELETE FROM models", "DELETE and TRUNCATE statements are refused"),
    ("SET VARIABLE k = 2", "SET, RESET and USE statements are refused"),
    ("PREPARE p AS SELECT 1", "PREPARE statements are refused"),
])
def test_statements_that_would_change_something_are_refused(lake_copy: Path, tree_state, statement: str,
                                                            words: str) -> None:  # noqa: ANN001
    """CREATE VIEW, DROP VIEW and BEGIN 'succeeded' (an empty Count/Success table, exit 0) on the call's own
    in-memory connection: the user believed a view was made, and nothing was."""
    before = tree_state(lake_copy)
    result = CliRunner().invoke(main, ["sql", statement, "--lake", str(lake_copy)])
    assert result.exit_code == 1 and result.output.count("\n") == 1 and "Traceback" not in result.output
    assert result.output.startswith(f"error: {words}: weightlake SQL only reads the lake"), result.output
    assert "named query" in result.output
    with pytest.raises(QueryError, match=words):
        wl.open_lake(lake_copy).sql(statement)
    assert tree_state(lake_copy) == before


def test_reading_statements_still_run(lake_copy: Path) -> None:
    lake = wl.open_lake(lake_copy)
    assert "models" in lake.sql("PRAGMA show_tables")["name"].to_list()
    assert "models" in lake.sql("SHOW TABLES")["name"].to_list()
    assert lake.sql("EXPLAIN SELECT count(*) FROM models").height >= 1
    assert lake.sql("CALL pragma_version()").height == 1
    pivot = lake.sql("PIVOT (SELECT activation, epoch FROM models) ON activation USING count(*) GROUP BY epoch")
    assert pivot.height == 6 and "gelu" in pivot.columns
    copy = CliRunner().invoke(main, ["sql", "COPY (SELECT 1) TO 'x.csv'", "--lake", str(lake_copy)])
    assert copy.exit_code == 1 and "COPY statements are refused" in copy.output and "--output" in copy.output


def test_one_statement_per_call(lake_copy: Path) -> None:
    lake = wl.open_lake(lake_copy)
    with pytest.raises(QueryError, match="one SQL statement per call"):
        lake.sql("SELECT 1; SELECT 2")
    with pytest.raises(QueryError, match="one SQL statement per call"):
        lake.sql("   ")
    # an export filter cannot smuggle a second statement either
    with pytest.raises(QueryError):
        from weightlake.ingest.csv_zoo import export_csv

        export_csv(lake, lake_copy.parent / "x.csv", where="1=1); SELECT (1")


def test_outputs_inside_the_lake_are_refused(lake_copy: Path, tmp_path: Path, tree_state) -> None:  # noqa: ANN001
    before = tree_state(lake_copy)
    runner = CliRunner()
    for args in (["sql", "SELECT 1 AS a", "-o", str(lake_copy / "_current")],
                 ["sql", "SELECT 1 AS a", "--format", "parquet", "-o", str(first_model_file(lake_copy))],
                 ["export", "csv", "-o", str(lake_copy / "models" / "x.csv")],
                 ["query", "run", "accuracy_by_group", "-o", str(lake_copy / "q.txt")]):
        result = runner.invoke(main, [*args, "--lake", str(lake_copy)])
        assert result.exit_code == 1 and "inside the lake" in result.output, result.output
    assert tree_state(lake_copy) == before
    ok = runner.invoke(main, ["sql", "SELECT 1 AS a", "-o", str(tmp_path / "a.txt"), "--lake", str(lake_copy)])
    assert ok.exit_code == 0 and (tmp_path / "a.txt").is_file()


def test_reading_a_user_file_from_sql_says_how_instead(lake_copy: Path, tmp_path: Path) -> None:
    (tmp_path / "mine.csv").write_text("a\n1\n")
    with pytest.raises(QueryError, match="cannot read or write files"):
        wl.open_lake(lake_copy).sql(f"SELECT * FROM read_csv('{tmp_path / 'mine.csv'}')")


def test_a_table_the_snapshot_lacks_says_what_it_holds(small_lake_dir):
    """`--snapshot 0` (the lake's empty first entry) gave DuckDB's bare "Table with name models does not exist!"."""
    from click.testing import CliRunner

    from weightlake.cli import main

    result = CliRunner().invoke(main, ["sql", "SELECT count(*) FROM models", "--snapshot", "0",
                                       "--lake", str(small_lake_dir)])
    assert result.exit_code == 1 and "snapshot 0 holds no zoo and no table yet" in result.output, result.output
    result = CliRunner().invoke(main, ["sql", "SELECT count(*) FROM spectr", "--lake", str(small_lake_dir)])
    assert "has the views models, weights" in result.output
