"""The read API over a real lake: polars, torch, DuckDB, pinning."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

import weightlake as wl
from weightlake.arch import CNN_S
from weightlake.errors import LakeNotFoundError, NoSuchModelError, QueryError
from weightlake.ingest.csv_zoo import ingest_csv
from weightlake.zoo.synthetic import all_labels, write_synthetic_csv


def test_open_resolves_env_and_default(small_lake_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("WEIGHTLAKE_LAKE", str(small_lake_dir))
    assert wl.open_lake().root == small_lake_dir
    monkeypatch.delenv("WEIGHTLAKE_LAKE")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LakeNotFoundError, match="no lake at 'lake'"):
        wl.open_lake()


def test_import_is_light():
    import subprocess
    import sys

    code = "import sys, weightlake; print(any(m in sys.modules for m in ('torch', 'duckdb', 'ot')))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_models_schema(small_lake_dir):
    df = wl.open_lake(small_lake_dir).models().collect()
    for col, dtype in {"model_id": pl.Int64, "zoo": pl.String, "arch": pl.String, "init": pl.String,
                       "activation": pl.String, "epoch": pl.Int32, "classes": pl.List(pl.Int8),
                       "class_mask": pl.Int32, "n_classes": pl.Int8, "accuracy": pl.Float64,
                       "source_file": pl.String, "source_row": pl.Int64, "weights_hash": pl.String}.items():
        assert df.schema[col] == dtype, col
    assert df["model_id"].is_unique().all()


def test_weights_layers_state_dict_cnn(small_lake_dir):
    lake = wl.open_lake(small_lake_dir)
    w = lake.weights([0, 5, 9])
    assert w.dtype == torch.float32 and w.shape == (3, 2464)
    assert torch.equal(lake.weights([9, 0])[1], w[0])
    assert lake.layer([0, 5], "fc1").shape == (2, 20, 36)
    assert lake.layer([0, 5], "conv1").shape == (2, 8, 1, 5, 5)
    assert torch.equal(lake.layer([5], "fc2.bias")[0], w[1, 2454:])
    model = lake.cnn(5)
    model.load_state_dict(lake.state_dict(5))
    assert torch.equal(model.flat(), w[1])
    assert model.activation == lake.model(5)["activation"]
    with pytest.raises(NoSuchModelError, match="no model with id 99999"):
        lake.weights([1, 99999])


def test_weights_share_memory_with_the_decoded_block(small_lake_dir):
    lake = wl.open_lake(small_lake_dir)
    ids, rows = lake.zoo_weights("mnist-cnn-s")
    assert rows.shape == (len(ids), CNN_S.n_params) and not rows.flags.writeable
    arr = lake.weights_numpy(np.arange(10, 20))
    t = torch.from_numpy(arr)
    assert t.data_ptr() == arr.ctypes.data


def test_sql_sees_models_and_weights(small_lake_dir):
    lake = wl.open_lake(small_lake_dir)
    df = lake.sql("SELECT activation, epoch, count(*) AS n FROM models GROUP BY ALL ORDER BY ALL")
    assert df.height == 36 and (df["n"] == 12).all()
    d = lake.sql("SELECT model_id, w FROM weights WHERE model_id < $k ORDER BY model_id", {"k": 3})
    assert d.schema["w"] == pl.Array(pl.Float32, 2464)
    assert np.array_equal(d["w"].to_numpy(), lake.weights_numpy([0, 1, 2]))
    dist = lake.sql("SELECT array_distance(a.w, b.w) AS d FROM weights a, weights b "
                    "WHERE a.model_id = 0 AND b.model_id = 1")["d"][0]
    assert dist == pytest.approx(float(np.linalg.norm(lake.weights_numpy([0])[0] - lake.weights_numpy([1])[0])), rel=1e-5)
    with pytest.raises(QueryError, match="query failed"):
        lake.sql("SELECT nope FROM models")


def test_readers_stay_pinned(lake_copy, tmp_path):
    old = wl.open_lake(lake_copy)
    n_old = old.models().collect().height
    more = tmp_path / "more.csv"
    write_synthetic_csv(more, labels=all_labels()[50:52], seed=9)
    ingest_csv(lake_copy, more, zoo="mnist-cnn-s", init="kaiming_uniform")
    assert old.models().collect().height == n_old
    assert old.sql("SELECT count(*) AS n FROM models")["n"][0] == n_old
    new = old.refresh()
    assert new.snapshot == old.snapshot + 1 and new.models().collect().height == n_old + 72
    assert new.at(old.snapshot).models().collect().height == n_old
    assert new.history()["version"].to_list()[:2] == [new.snapshot, old.snapshot]
    # the second segment is read transparently
    last = new.models().collect()["model_id"].max()
    assert new.weights([0, last]).shape == (2, 2464)


def test_two_zoos_share_the_views(lake_copy, tmp_path):
    other = tmp_path / "o.csv"
    write_synthetic_csv(other, labels=all_labels()[:2], seed=3)
    ingest_csv(lake_copy, other, zoo="fmnist-cnn-s", init="xavier_normal")
    lake = wl.open_lake(lake_copy)
    counts = dict(lake.sql("SELECT zoo, count(*) FROM weights GROUP BY zoo").iter_rows())
    assert counts == {"mnist-cnn-s": 432, "fmnist-cnn-s": 72}
    assert lake.models("fmnist-cnn-s").collect()["init"].unique().to_list() == ["xavier_normal"]


def test_a_table_whose_partitions_differ_in_columns_reads_as_one(tmp_path) -> None:
    """Evaluations of other metrics write partitions with other columns: ``lake.table`` took the
    first file's columns and raised polars' SchemaError on the next (SQL reads them by name)."""
    from weightlake.storage.snapshot import SnapshotStore
    from weightlake.storage.transaction import transaction

    root = tmp_path / "lake [0, 1] gelu"
    SnapshotStore(root).create()
    for scenario, extra in (("s0", {"mse": [0.5, 0.25]}), ("s1", {"w1": [1.5]}), ("s2", {"mse": [2.0]})):
        with transaction(root) as tx:
            n = len(next(iter(extra.values())))
            tx.put_table("evaluations", pl.DataFrame({"scenario": [scenario] * n, "pair": list(range(n)), **extra}),
                         partition_by=("scenario",), properties={"partition_by": ["scenario"]})
            tx.commit({"op": scenario})
    lake = wl.open_lake(root)
    got = lake.table("evaluations").collect().sort("scenario", "pair")
    assert set(got.columns) == {"scenario", "pair", "mse", "w1"}
    rows = {(r["scenario"], r["pair"]): (r["mse"], r["w1"]) for r in got.iter_rows(named=True)}
    assert rows == {("s0", 0): (0.5, None), ("s0", 1): (0.25, None), ("s1", 0): (None, 1.5),
                    ("s2", 0): (2.0, None)}
    sql = lake.sql("SELECT scenario, sum(mse) AS mse, sum(w1) AS w1 FROM evaluations GROUP BY 1 ORDER BY 1")
    assert sql["mse"].to_list() == [0.75, None, 2.0] and sql["w1"].to_list() == [None, 1.5, None]
