"""Named queries: every queries/*.sql parses, and every one runs against a real lake."""

from __future__ import annotations

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


def test_parameters_are_bound_not_pasted(small_lake_dir):
    lake = wl.open_lake(small_lake_dir)
    evil = "mnist-cnn-s' OR '1'='1"
    assert run_named(lake, "accuracy_by_group", {"zoo": evil}).height == 0
    with pytest.raises(QueryError, match="needs --param zoo"):
        run_named(lake, "accuracy_by_group", {})
    with pytest.raises(QueryError, match="no parameter"):
        run_named(lake, "accuracy_by_group", {"zoo": "x", "bogus": "1"})
    with pytest.raises(QueryError, match="expects int"):
        run_named(lake, "accuracy_by_group", {"zoo": "x", "min_classes": "two"})
    with pytest.raises(NoSuchTableError, match="no named query"):
        run_named(lake, "nope", {})


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
