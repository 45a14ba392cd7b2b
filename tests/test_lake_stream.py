"""Streamed weight reads under a memory budget equal the in-memory reads (lake level)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

import weightlake as wl
from weightlake.zoo.synthetic import all_labels, write_synthetic_csv

TINY = "1MB"  # 25 CNN-s rows per block: far below the test lakes, and not a whole 512-row chunk


@pytest.fixture(scope="module")
def two_segment_lake(tmp_path_factory) -> str:
    """A zoo of two commits (two segments, 432 + 216 rows) and a second zoo of the same architecture."""
    from weightlake.ingest.csv_zoo import ingest_csv

    base = tmp_path_factory.mktemp("stream")
    root = base / "lake"
    for i, labels in enumerate([all_labels()[:12], all_labels()[12:18]]):
        write_synthetic_csv(base / f"z{i}.csv", labels=labels, seed=10 + i)
        ingest_csv(root, base / f"z{i}.csv", zoo="mnist-cnn-s", init="kaiming_uniform")
    write_synthetic_csv(base / "other.csv", labels=all_labels()[30:33], seed=3)
    ingest_csv(root, base / "other.csv", zoo="other", init="xavier_normal")
    return str(root)


def test_blocks_equal_the_decoded_zoo(two_segment_lake):
    lake = wl.open_lake(two_segment_lake, memory=TINY)
    assert not lake.fits("mnist-cnn-s") and lake.block_rows("mnist-cnn-s") == 25
    ids, rows = wl.open_lake(two_segment_lake).zoo_weights("mnist-cnn-s")
    blocks = list(lake.iter_weights("mnist-cnn-s"))
    assert max(len(b) for _, b in blocks) == 25 and len(blocks) == -(-len(ids) // 25)
    np.testing.assert_array_equal(np.concatenate([i for i, _ in blocks]), ids)
    np.testing.assert_array_equal(np.concatenate([b for _, b in blocks]), rows)
    assert not lake._cache  # streaming keeps nothing on the handle


def test_a_block_size_across_segments(two_segment_lake):
    lake = wl.open_lake(two_segment_lake)
    ids, rows = lake.zoo_weights("mnist-cnn-s")
    fresh = wl.open_lake(two_segment_lake)
    got = list(fresh.iter_weights("mnist-cnn-s", block_rows=500))  # the first block spans both segments (432 + 68)
    assert [len(i) for i, _ in got] == [500, 148]
    np.testing.assert_array_equal(np.concatenate([b for _, b in got]), rows)
    cached = list(lake.iter_weights("mnist-cnn-s", block_rows=500))  # from the handle's decoded zoo
    np.testing.assert_array_equal(np.concatenate([b for _, b in cached]), rows)


def test_budget_from_the_environment(two_segment_lake, monkeypatch):
    monkeypatch.setenv("WEIGHTLAKE_MEMORY", "2MB")
    lake = wl.open_lake(two_segment_lake)
    assert lake.memory == 2 * 10**6 and lake.block_rows("mnist-cnn-s") == 50
    assert lake.refresh().memory == lake.memory


def test_streamed_spectra_equal_the_in_memory_ones(two_segment_lake, tmp_path):
    import shutil

    from weightlake.compute.analyses import analyze_spectra

    small, big = tmp_path / "small", tmp_path / "big"
    shutil.copytree(two_segment_lake, small)
    shutil.copytree(two_segment_lake, big)
    seen = []
    a = analyze_spectra(small, zoo="mnist-cnn-s", memory=TINY, progress=lambda d, t: seen.append((d, t)))
    b = analyze_spectra(big, zoo="mnist-cnn-s")
    n = b.n_models
    assert a.n_models == n and 500 < n <= 648  # distinct models: repeated vectors of the synthetic zoo dropped
    assert len(seen) == -(-648 // 25) and seen[-1] == (n, n)  # one progress step per streamed block
    got = wl.open_lake(small).table("spectra").collect().drop("snapshot")
    want = wl.open_lake(big).table("spectra").collect().drop("snapshot")
    assert got.height == want.height == n * 5
    assert got.equals(want)
    rows = wl.open_lake(big).analysis.compute_spectra("mnist-cnn-s")  # the in-memory path, no commit
    key = ["model_id", "layer"]
    joined = got.join(rows.with_columns(pl.col("layer").cast(pl.String)), on=key, suffix="_mem")
    assert joined.height == got.height
    np.testing.assert_allclose(joined["spectral_norm"], joined["spectral_norm_mem"], rtol=1e-6)


AGGREGATES = [
    "SELECT zoo, count(*) AS n, sum(model_id) AS ids, avg(wl_l2(w)) AS l2, max(w[7]) AS w7 FROM weights GROUP BY 1",
    "SELECT m.epoch, m.activation, count(*) AS n, avg(sqrt(array_inner_product(w.w, w.w))) AS l2 "
    "FROM models m JOIN weights w USING (model_id) GROUP BY ALL",
    "SELECT count(*) AS n, avg(array_distance(a.w, b.w)) AS d FROM weights a JOIN weights b "
    "ON a.model_id + 1 = b.model_id",  # two scans of the streamed view in one statement
    "SELECT model_id, w[1] AS first FROM weights WHERE model_id IN (3, 500, 700)",
]


@pytest.mark.parametrize("query", AGGREGATES)
def test_streamed_sql_equals_the_in_memory_view(two_segment_lake, query):
    from weightlake.query import StreamedWeights, weights_arrow

    small = wl.open_lake(two_segment_lake, memory=TINY)
    assert isinstance(weights_arrow(small), StreamedWeights)
    big = wl.open_lake(two_segment_lake)
    assert not isinstance(weights_arrow(big), StreamedWeights)
    got, want = small.sql(query + " ORDER BY ALL"), big.sql(query + " ORDER BY ALL")
    assert got.height > 0
    assert got.equals(want) or np.allclose(got.select(pl.col(pl.Float64)).to_numpy(),
                                           want.select(pl.col(pl.Float64)).to_numpy(), rtol=1e-9)
    assert not small._cache  # nothing decoded whole on the small handle




def test_verify_and_export_under_a_tiny_budget(two_segment_lake, tmp_path):
    from weightlake.ingest.csv_zoo import export_csv
    from weightlake.verify import verify

    small, big = wl.open_lake(two_segment_lake, memory=TINY), wl.open_lake(two_segment_lake)
    blocks = []
    report = verify(small, progress=blocks.append)
    assert report.ok and max(blocks) <= small.block_rows("mnist-cnn-s") == 25
    def figures(r):  # duplicate examples come in group_by order, which is not stable
        return {z: {k: v for k, v in q.items() if k != "duplicate_examples"} for z, q in r.quality.items()}

    assert figures(report) == figures(verify(big))
    where = "epoch IN (11, 36)"
    export_csv(small, tmp_path / "a.csv", zoo="mnist-cnn-s", where=where)
    export_csv(big, tmp_path / "b.csv", zoo="mnist-cnn-s", where=where)
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


def test_a_damaged_chunk_is_reported_by_verify_and_the_rest_checked(two_segment_lake, tmp_path):
    import shutil

    from weightlake.verify import verify

    root = tmp_path / "lake"
    shutil.copytree(two_segment_lake, root)
    lake = wl.open_lake(root, memory=TINY)
    seg = lake.manifest.zoo("mnist-cnn-s").segments[0]
    chunk = root / seg.path / "c" / "0" / "0"
    data = bytearray(chunk.read_bytes())
    data[100] ^= 0xFF
    chunk.write_bytes(bytes(data))
    seen = []
    report = verify(lake, progress=seen.append)
    assert not report.ok and [p for p in report.problems if "c/0/0" in p] == report.problems[:1]
    assert sum(seen) == lake.manifest.zoo("mnist-cnn-s").n_models - 432 + lake.manifest.zoo("other").n_models


@pytest.mark.parametrize("name", ["conv1", "fc1", "fc2.bias", "conv2.weight"])
def test_layer_reads_under_a_budget_equal_the_in_memory_ones(two_segment_lake, name):
    small, big = wl.open_lake(two_segment_lake, memory=TINY), wl.open_lake(two_segment_lake)
    ids = np.r_[np.arange(0, 648, 3), [640, 2, 2]]  # across both segments, out of order, repeats
    got = small.layer(ids, name)
    big.zoo_weights("mnist-cnn-s")
    want = big.layer(ids, name)
    assert got.shape == want.shape and got.shape[0] == len(ids) > small.block_rows("mnist-cnn-s")
    np.testing.assert_array_equal(got.numpy(), want.numpy())
    assert got.numpy().base is None or got.numpy().base.nbytes == got.numpy().nbytes  # only the layer is kept


def test_random_access_over_the_budget_warns(two_segment_lake):
    from weightlake.storage.budget import BudgetWarning

    lake = wl.open_lake(two_segment_lake, memory=TINY)
    with pytest.warns(BudgetWarning, match="more than the memory budget"):
        ids, rows = lake.zoo_weights("mnist-cnn-s")
    assert len(ids) == 648  # it still serves: the warning says what it costs


def _build_sides(node: dict) -> list[list[str]]:
    """The projections of every hash join's build side (DuckDB builds on the second child)."""
    found = []
    if node.get("name") == "HASH_JOIN":
        found.append(node["children"][1].get("extra_info", {}).get("Projections", []))
    for child in node.get("children", []):
        found += _build_sides(child)
    return found


@pytest.mark.parametrize("query", [
    "SELECT m.epoch, avg(wl_l2(w)) FROM models m JOIN weights USING (model_id) GROUP BY 1",
    "SELECT m.epoch, avg(wl_l2(w)) FROM weights JOIN models m USING (model_id) GROUP BY 1",
])
def test_a_join_with_streamed_weights_builds_on_the_metadata(two_segment_lake, query):
    """DuckDB cannot count a streamed `weights` view; beside a counted `models` it built its hash
    table on the weights (a copy of the zoo: 11 GB at a million models). Every side is unsized
    over the budget, so it builds on the narrower metadata, whichever way the join is written."""
    import json

    from weightlake.query import connect

    con = connect(wl.open_lake(two_segment_lake, memory=TINY))
    plan = json.loads(con.sql("EXPLAIN (FORMAT json) " + query).fetchall()[0][1])
    sides = [s for node in plan for s in _build_sides(node)]
    assert sides and all("w" not in side for side in sides), sides


@pytest.fixture(scope="module")
def wide_lakes(tmp_path_factory):
    """A small ResNet zoo in the Model Zoos layout (run folders with brackets, 4 runs x 2 epochs; 2.7 MB), ingested twice:
    the ``tensors`` layout (one array per tensor) and the ``rows`` layout (the reference)."""
    import json

    import torch

    from weightlake.ingest.modelzoo import ingest_modelzoo
    from weightlake.zoo.resnet import random_state_dict, resnet_shapes

    base = tmp_path_factory.mktemp("wide")
    shapes, rng = resnet_shapes((8, 16, 32, 32), num_classes=10), np.random.default_rng(0)  # 84,438 values: 2.7 MB
    for r in range(4):
        run = base / "zoo" / f"run [{r}]"
        run.mkdir(parents=True)
        (run / "params.json").write_text(json.dumps({"seed": r}))
        (run / "result.json").write_text("\n".join(json.dumps({"training_iteration": e, "acc": e}) for e in (1, 2)))
        for e in (1, 2):
            (run / f"checkpoint_{e}").mkdir()
            sd = {k: torch.from_numpy(np.asarray(v)) for k, v in random_state_dict(shapes, rng, batches=e).items()}
            torch.save(sd, run / f"checkpoint_{e}" / "checkpoints")
    ingest_modelzoo(base / "tensors", base / "zoo", zoo="rn", layout="tensors")
    ingest_modelzoo(base / "rows", base / "zoo", zoo="rn", layout="rows")
    return base / "tensors", base / "rows"


def _gathers_of_a_wide_zoo_over_the_budget(root, reference) -> None:
    import pickle
    import warnings

    from weightlake.storage.budget import BudgetWarning
    from weightlake.storage.parts import PartRows

    lake = wl.open_lake(root, memory=TINY)
    ids, rows = wl.open_lake(reference).zoo_weights("rn")
    assert not lake.fits("rn") and rows.nbytes > 2 * lake.memory
    with warnings.catch_warnings():
        warnings.simplefilter("error", BudgetWarning)  # never decoded whole
        source = lake.row_source("rn")
        assert isinstance(source, PartRows) and not source.resident and lake.row_source("rn") is source
        np.testing.assert_array_equal(source.ids, ids)
        for pos in (np.array([7, 0, 7, 3], dtype=np.int64), np.arange(len(ids))[::-1].copy(), np.empty(0, np.int64)):
            got = source.take(pos)
            assert got.shape == (len(pos), rows.shape[1]) and got.dtype == np.float32
            np.testing.assert_array_equal(got, rows[pos])
        np.testing.assert_array_equal(pickle.loads(pickle.dumps(source)).take(np.array([5, 1])), rows[[5, 1]])
        sql = ("SELECT a.model_id AS a, wl_mse_by_id(a.model_id, b.model_id) AS d "
               "FROM models a JOIN models b ON b.model_id = a.model_id + 1 ORDER BY 1")
        got_sql = lake.sql(sql)
    want = wl.open_lake(reference).sql(sql)
    assert got_sql.height == len(ids) - 1
    np.testing.assert_allclose(got_sql["d"].to_numpy(), want["d"].to_numpy(), rtol=1e-6)
    conv = next(layer for layer in lake.arch("rn").layers if layer.name == "layer3.0.conv2")
    layer_sql = sql.replace("wl_mse_by_id(a.model_id, b.model_id)", "wl_mse_layer_by_id(a.model_id, b.model_id, 'layer3.0.conv2')")
    from weightlake.storage.tensors import count_reads

    fresh = wl.open_lake(root, memory=TINY)
    with count_reads() as count:
        got_layer = fresh.sql(layer_sql)
    # one layer's chunks (each call reads them for both sides), not the other 84,438 - 9,216 values
    assert 0 < count.bytes <= 2 * 1.2 * 4 * (conv.stop - conv.start) * len(ids)
    want_layer = wl.open_lake(reference).sql(layer_sql)
    np.testing.assert_allclose(got_layer["d"].to_numpy(), want_layer["d"].to_numpy(), rtol=1e-6)
    assert not lake._cache  # nothing decoded on the handle
    with pytest.raises(IndexError, match="out of range"):
        source.take(np.array([len(ids)]))


def test_a_wide_zoo_over_the_budget_is_gathered_by_chunk_not_decoded(wide_lakes) -> None:
    _gathers_of_a_wide_zoo_over_the_budget(*wide_lakes)


def test_a_wide_zoo_over_the_budget_on_s3_is_gathered_by_chunk(wide_lakes, s3_lake_url) -> None:
    from weightlake.ingest.modelzoo import ingest_modelzoo

    tensors, rows = wide_lakes
    ingest_modelzoo(s3_lake_url, tensors.parent / "zoo", zoo="rn", layout="tensors")
    _gathers_of_a_wide_zoo_over_the_budget(s3_lake_url, rows)


def test_layer_views_of_a_wide_zoo_with_dotted_layer_names(wide_lakes) -> None:
    """A ResNet zoo's layers (``layer1.0.conv1``) are views named ``weights_layer1_0_conv1``, equal to the
    layer's columns of the rows-layout reference, in budget and over it (streamed)."""
    from weightlake.query import layer_views

    root, reference = wide_lakes
    ids, rows = wl.open_lake(reference).zoo_weights("rn")
    for memory in (None, TINY):
        lake = wl.open_lake(root, memory=memory)
        views = layer_views(lake)
        layers = lake.arch("rn").layers
        assert len(views) == len(layers) and "weights_layer1_0_conv1" in views
        for layer in (layers[0], lake.arch("rn").layer("layer1.0.conv1"), layers[-1]):
            name = "weights_" + layer.name.replace(".", "_")
            df = lake.sql(f"SELECT model_id, w FROM {name} ORDER BY model_id")
            np.testing.assert_array_equal(df["model_id"].to_numpy(), ids)
            np.testing.assert_array_equal(np.stack(df["w"].to_list()).astype(np.float32),
                                          rows[:, layer.start:layer.stop])


def test_a_layer_view_of_a_wide_zoo_over_the_budget_reads_only_that_layer(wide_lakes) -> None:
    """Over the budget, ``weights_<layer>`` of a ``tensors``-layout zoo reads the layer's chunks,
    not whole rows (84,438 values a model, of which the layer is 9,216)."""
    from weightlake.storage.tensors import count_reads

    root, reference = wide_lakes
    ids, rows = wl.open_lake(reference).zoo_weights("rn")
    lake = wl.open_lake(root, memory=TINY)
    conv = lake.arch("rn").layer("layer3.0.conv2")
    with count_reads() as count:
        df = lake.sql("SELECT model_id, w FROM weights_layer3_0_conv2 ORDER BY model_id")
    assert 0 < count.bytes <= 1.2 * 4 * (conv.stop - conv.start) * len(ids)
    np.testing.assert_array_equal(df["model_id"].to_numpy(), ids)
    np.testing.assert_array_equal(np.stack(df["w"].to_list()).astype(np.float32), rows[:, conv.start:conv.stop])
    assert not lake._cache  # nothing decoded on the handle


def test_a_layer_view_of_a_wide_zoo_over_the_budget_on_s3(wide_lakes, s3_lake_url) -> None:
    from weightlake.ingest.modelzoo import ingest_modelzoo

    tensors, reference = wide_lakes
    ingest_modelzoo(s3_lake_url, tensors.parent / "zoo", zoo="rn", layout="tensors")
    ids, rows = wl.open_lake(reference).zoo_weights("rn")
    lake = wl.open_lake(s3_lake_url, memory=TINY)
    conv = lake.arch("rn").layer("layer3.0.conv2")
    df = lake.sql("SELECT model_id, w FROM weights_layer3_0_conv2 ORDER BY model_id")
    np.testing.assert_array_equal(df["model_id"].to_numpy(), ids)
    np.testing.assert_array_equal(np.stack(df["w"].to_list()).astype(np.float32), rows[:, conv.start:conv.stop])
    assert not lake._cache
