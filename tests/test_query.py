"""Named queries: every queries/*.sql parses, and every one runs against a real lake."""

from __future__ import annotations

import numpy as np
import pytest

import weightlake as wl
from weightlake.errors import NoSuchTableError, QueryError
from weightlake.query import named_queries, run_named

QUERIES = named_queries()

# values for the parameters the queries declare; tables a query needs are built by fixtures
VALUES = {"zoo": "mnist-cnn-s", "scenario": "t", "layer": "fc1", "split": "test"}


def test_every_query_has_a_header():
    assert len(QUERIES) >= 4
    for q in QUERIES.values():
        assert q.description, q.name
        assert q.path.stem == q.name, "file name and query name agree"


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_every_named_query_runs(name, analysed_lake_dir):
    q = QUERIES[name]
    params = {p.name: VALUES[p.name] for p in q.params if p.default is None}
    df = run_named(wl.open_lake(analysed_lake_dir), name, params)
    assert df.height > 0, f"{name} returned no rows"


def test_parameters_are_bound_not_pasted(small_lake_dir, tmp_path, monkeypatch):
    (tmp_path / "who.sql").write_text("-- name: who\n-- param: who string  a zoo\n"
                                      "SELECT count(*) AS n FROM models WHERE zoo = $who\n")
    monkeypatch.setenv("WEIGHTLAKE_QUERIES", str(tmp_path))
    lake = wl.open_lake(small_lake_dir)
    evil = "mnist-cnn-s' OR '1'='1"
    assert run_named(lake, "who", {"who": evil})["n"][0] == 0
    assert run_named(lake, "who", {"who": "mnist-cnn-s"})["n"][0] == 432
    with pytest.raises(QueryError, match="needs --param zoo"):
        run_named(lake, "accuracy_by_group", {})
    with pytest.raises(QueryError, match="no parameter"):
        run_named(lake, "accuracy_by_group", {"zoo": "x", "bogus": "1"})
    with pytest.raises(QueryError, match="expects int"):
        run_named(lake, "accuracy_by_group", {"zoo": "x", "min_classes": "two"})
    with pytest.raises(NoSuchTableError, match="no named query"):
        run_named(lake, "nope", {})


def test_a_zoo_parameter_naming_no_zoo_is_refused(small_lake_dir, tmp_path, monkeypatch):
    """`query run accuracy_by_group --param zoo=fmnist` over a lake without zoo 'fmnist' gave an empty
    table and exit 0, as if the zoo held no models."""
    lake = wl.open_lake(small_lake_dir)
    for name in ("accuracy_by_group", "weight_norms_by_epoch", "duplicate_weights"):
        with pytest.raises(NoSuchTableError) as caught:
            run_named(lake, name, {"zoo": "fmnist"})
        assert str(caught.value) == (f"query {name!r}: the lake has no zoo 'fmnist' (--param zoo) at snapshot "
                                     f"{lake.snapshot}; zoos: ['mnist-cnn-s']")
    (tmp_path / "every.sql").write_text("-- name: every\n-- param: zoo string = *  a zoo, or * for all\n"
                                        "SELECT count(*) AS n FROM models WHERE $zoo IN ('*', zoo)\n")
    monkeypatch.setenv("WEIGHTLAKE_QUERIES", str(tmp_path))
    assert run_named(lake, "every", {})["n"][0] == 432  # the query's own default is its to read
    with pytest.raises(NoSuchTableError, match="no zoo 'fmnist'"):
        run_named(lake, "every", {"zoo": "fmnist"})


def test_query_run_refuses_a_mistyped_zoo_or_parameter_in_one_line(small_lake_dir):
    from click.testing import CliRunner

    from weightlake.cli import main

    for param, words in (("zoo=fmnist", "the lake has no zoo 'fmnist' (--param zoo) at snapshot 1; zoos: "
                                        "['mnist-cnn-s']"),
                         ("zooo=mnist-cnn-s", "query 'accuracy_by_group' has no parameter(s) ['zooo']; it takes "
                                              "['zoo', 'min_classes']")):
        result = CliRunner().invoke(main, ["query", "run", "accuracy_by_group", "--param", param,
                                           "--lake", str(small_lake_dir)])
        assert result.exit_code == 1 and "Traceback" not in result.output
        assert result.output.startswith("error: ") and words in result.output and "shape" not in result.output


def test_plain_queries_register_no_functions(small_lake_dir) -> None:
    """A query that names no wl_* function neither imports the metrics nor registers any (cold start)."""
    import subprocess
    import sys

    code = ("import sys, weightlake as wl\n"
            f"lake = wl.open_lake({str(small_lake_dir)!r})\n"
            "n = lake.sql('SELECT count(*) AS n FROM models')['n'][0]\n"
            "plain = 'weightlake.analysis.metrics' in sys.modules\n"
            "v = lake.sql('SELECT wl_l2(w) AS v FROM weights LIMIT 1')['v'][0]\n"
            "macro = 'weightlake.analysis.metrics' in sys.modules\n"  # wl_l2 is a DuckDB macro: no Python
            "u = lake.sql('SELECT wl_w1(w, w) AS u FROM weights LIMIT 1')['u'][0]\n"
            "print(n, plain, macro, 'weightlake.analysis.metrics' in sys.modules, v > 0, u == 0)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["432", "False", "False", "True", "True", "True"]


def test_a_query_registers_only_the_tables_it_names(analysed_lake_dir) -> None:
    """A plain query over models reads no derived table (and so never imports pyarrow.dataset, or pandas)."""
    import subprocess
    import sys

    code = ("import sys, weightlake as wl\n"
            f"lake = wl.open_lake({str(analysed_lake_dir)!r})\n"
            "n = lake.sql('SELECT count(*) AS n FROM models')['n'][0]\n"
            "plain = 'pyarrow.dataset' in sys.modules or 'pandas' in sys.modules\n"
            "s = lake.sql('SELECT count(*) AS s FROM spectra')['s'][0]\n"
            "shown = set(lake.sql('SHOW TABLES')['name'].to_list())\n"
            "print(n > 0, plain, s > 0, {'models', 'spectra', 'correlations'} <= shown)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "False", "True", "True"]


def _layer_view(con, name: str) -> tuple[np.ndarray, list[str], np.ndarray]:
    tbl = con.sql(f"SELECT model_id, zoo, w FROM {name} ORDER BY model_id").to_arrow_table()
    width = tbl.schema.field("w").type.list_size
    w = tbl.column("w").combine_chunks().values.to_numpy().reshape(-1, width)
    return tbl.column("model_id").to_numpy(), tbl.column("zoo").to_pylist(), w


@pytest.mark.parametrize("memory", [None, "1MB"])
def test_layer_views_hold_each_layers_block(small_lake_dir, memory) -> None:
    """`weights_<layer>` is the layer's columns of every model, bitwise, whether the zoo is decoded
    (within the budget) or streamed in blocks (over it)."""
    lake = wl.open_lake(small_lake_dir, memory=memory)
    assert lake.fits() == (memory is None)
    arch = lake.arch()
    ids, rows = wl.open_lake(small_lake_dir).zoo_weights(lake.zoos[0])
    con = lake.connect()
    shown = set(con.sql("SHOW TABLES").to_arrow_table().column("name").to_pylist())
    assert {f"weights_{layer.name}" for layer in arch.layers} <= shown
    for layer in arch.layers:
        got_ids, zoos, w = _layer_view(con, f"weights_{layer.name}")
        np.testing.assert_array_equal(got_ids, ids)
        assert set(zoos) == {lake.zoos[0]}
        np.testing.assert_array_equal(w, rows[:, layer.start:layer.stop])


def test_macros_over_layer_views_equal_the_per_layer_functions(small_lake_dir) -> None:
    """Per-layer metrics as whole-vector macros over `weights_fc1` agree with `wl_*_layer(w, w, 'fc1')`
    and with numpy in float64 to 1e-12 relative, over pairs of models."""
    from weightlake.analysis.metrics import mse

    lake = wl.open_lake(small_lake_dir)
    layer = lake.arch().layer("fc1")
    ids, rows = lake.zoo_weights(lake.zoos[0])
    query = ("SELECT a.model_id, wl_mse(a.w, b.w) AS view_mse, wl_mse_layer(c.w, d.w, 'fc1') AS udf_mse, "
             "wl_cosine(a.w, b.w) AS view_cos, wl_cosine_layer(c.w, d.w, 'fc1') AS udf_cos "
             "FROM weights_fc1 a JOIN weights_fc1 b ON b.model_id = a.model_id + 7 "
             "JOIN weights c ON c.model_id = a.model_id JOIN weights d ON d.model_id = b.model_id ORDER BY 1")
    df = lake.sql(query)
    assert df.height == len(ids) - 7
    a = rows[:-7, layer.start:layer.stop].astype(np.float64)
    b = rows[7:, layer.start:layer.stop].astype(np.float64)
    np.testing.assert_allclose(df["view_mse"].to_numpy(), ((a - b) ** 2).mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(df["view_mse"].to_numpy(), df["udf_mse"].to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(df["view_mse"].to_numpy(), mse(a, b), rtol=1e-6)
    np.testing.assert_allclose(df["view_cos"].to_numpy(), df["udf_cos"].to_numpy(), rtol=1e-6, atol=1e-7)


def test_a_query_builds_only_the_layer_views_it_names(small_lake_dir) -> None:
    """Naming `weights_fc1` registers that layer view alone and does not decode `weights`."""
    from weightlake.query import connect, layer_views

    lake = wl.open_lake(small_lake_dir)
    assert lake.sql("SELECT count(*) AS n FROM weights_fc1")["n"][0] == lake.manifest.zoo(lake.zoos[0]).n_models
    con = connect(lake, weights=False, layers=["weights_fc2"])
    names = set(con.sql("SHOW TABLES").to_arrow_table().column("name").to_pylist())
    assert "weights_fc2" in names and "weights" not in names and "weights_fc1" not in names
    assert set(layer_views(lake)) == {f"weights_{layer.name}" for layer in lake.arch().layers}


def test_a_scenario_parameter_naming_no_scenario_is_refused(analysed_lake_dir):
    """As for ``zoo``: `query run pair_distances_by_split --param scenario=dmeo` gave an empty table, exit 0."""
    lake = wl.open_lake(analysed_lake_dir)
    assert run_named(lake, "pair_distances_by_split", {"scenario": "t"}).height > 0
    with pytest.raises(NoSuchTableError, match=r"no scenario 'dmeo' \(--param scenario\) in pairs at snapshot "
                                               r"\d+; scenarios there: \['t'\]"):
        run_named(lake, "pair_distances_by_split", {"scenario": "dmeo"})
