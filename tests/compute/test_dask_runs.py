"""Dask as the engine: lake.to_dask() blocks and spectra on a 2-process LocalCluster on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import weightlake as wl

pytest.importorskip("distributed")


def test_to_dask_has_one_block_per_chunk(lake_copy: Path) -> None:
    lake = wl.open_lake(lake_copy)
    arr = lake.to_dask("mnist-cnn-s")
    ids, rows = lake.zoo_weights("mnist-cnn-s")
    seg = lake.manifest.zoos["mnist-cnn-s"].segments[0]
    assert arr.shape == rows.shape and arr.dtype == np.float32
    assert arr.numblocks[0] == len(seg.chunk_digests)
    np.testing.assert_array_equal(arr[100:300].compute(scheduler="synchronous"), rows[100:300])


@pytest.mark.slow
def test_spectra_on_a_local_cluster_equal_the_local_run(lake_copy: Path) -> None:
    from weightlake.compute.analyses import analyze_spectra
    from weightlake.compute.dask_runs import analyze_spectra_dask

    local = analyze_spectra(lake_copy, zoo="mnist-cnn-s", layers=["fc1", "fc2"])
    expected = wl.open_lake(lake_copy).table("spectra").collect().drop("snapshot").sort("model_id", "layer")
    report = analyze_spectra_dask(lake_copy, address="local", zoo="mnist-cnn-s", layers=["fc1", "fc2"])
    got = wl.open_lake(lake_copy).table("spectra").collect().drop("snapshot").sort("model_id", "layer")
    assert report.rows == local.rows == got.height and report.n_models == local.n_models
    assert got.columns == expected.columns
    for col in got.columns:
        a, b = got[col], expected[col]
        if a.dtype.is_float():
            np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=1e-6, atol=1e-9, err_msg=col)
        else:
            assert a.equals(b), col
    assert "one per stored chunk" in " ".join(report.notes)


def test_to_dask_blocks_are_the_stored_chunks(bounded_lake_dir: Path) -> None:
    """Two segments of 936 rows, each stored as chunks of 512 + 424 rows: one block per chunk, none straddling two."""
    from weightlake.compute.dask_runs import chunk_jobs

    lake = wl.open_lake(bounded_lake_dir)
    arr = lake.to_dask("mnist-cnn-s")
    assert arr.chunks[0] == (512, 424, 512, 424)
    np.testing.assert_array_equal(arr[500:1500].compute(scheduler="synchronous"), lake.zoo_weights()[1][500:1500])
    segments = lake.manifest.zoos["mnist-cnn-s"].segments
    jobs = chunk_jobs(lake.location, segments, np.ones(1872, dtype=bool))
    assert [(start, stop) for _, start, stop, _ in jobs] == [(0, 512), (512, 936)] * 2


def test_to_dask_arrays_of_two_copies_of_a_lake_stay_apart(lake_copy: Path, tmp_path: Path) -> None:
    """A copy of a lake holds its segments at the same relative paths: comparing the two in one graph
    reads both (here the copy's damaged chunk is found), never one of them twice."""
    import shutil

    from weightlake.errors import IntegrityError

    copy = tmp_path / "copy"
    shutil.copytree(lake_copy, copy)
    seg = wl.open_lake(copy).manifest.zoos["mnist-cnn-s"].segments[0]
    chunk = copy / seg.path / "c" / "0" / "0"
    data = bytearray(chunk.read_bytes())
    data[1000] ^= 0x10
    chunk.write_bytes(bytes(data))
    good, bad = wl.open_lake(lake_copy).to_dask("mnist-cnn-s"), wl.open_lake(copy).to_dask("mnist-cnn-s")
    for diff in (bad - good, good - bad):
        with pytest.raises(IntegrityError, match="is corrupt"):
            diff.sum().compute(scheduler="synchronous")


@pytest.mark.slow
def test_two_runs_sharing_a_scheduler_get_their_own_results(lake_copy: Path, tmp_path: Path) -> None:
    """A second run submitted while the first still holds its tasks (a colleague on the same cluster,
    here a run on a copy of the lake asking for another layer) computes its own blocks."""
    import logging
    import shutil

    from distributed import LocalCluster

    from weightlake.compute.dask_runs import analyze_spectra_dask

    copy = tmp_path / "copy"
    shutil.copytree(lake_copy, copy)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, silence_logs=logging.ERROR) as cluster:
        address = cluster.scheduler_address
        inner: list = []

        def progress(done: int, total: int) -> None:  # the first run's futures are alive here
            if not inner:
                inner.append(analyze_spectra_dask(copy, address=address, zoo="mnist-cnn-s", layers=["fc2"]))

        analyze_spectra_dask(lake_copy, address=address, zoo="mnist-cnn-s", layers=["fc1"], progress=progress)
    assert inner
    assert wl.open_lake(lake_copy).table("spectra").collect()["layer"].unique().to_list() == ["fc1"]
    assert wl.open_lake(copy).table("spectra").collect()["layer"].unique().to_list() == ["fc2"]


def test_to_dask_frame_matches_the_metadata(lake_copy: Path) -> None:
    pytest.importorskip("dask.dataframe")
    lake = wl.open_lake(lake_copy)
    frame = lake.to_dask_frame("models")
    assert frame.npartitions == len(lake.manifest.zoos["mnist-cnn-s"].model_files)
    got = frame.compute().sort_values("model_id").reset_index(drop=True)
    want = lake.models().sort("model_id").collect()
    assert got["model_id"].tolist() == want["model_id"].to_list()
    assert got["activation"].tolist() == want["activation"].to_list()
    assert got["accuracy"].tolist() == pytest.approx(want["accuracy"].to_list())


@pytest.mark.slow
def test_correlations_on_a_local_cluster_equal_the_local_run(lake_copy: Path, assert_same_table) -> None:
    """Same rows in the same order; floats within 1e-12 absolute (NaN where NaN); the CLI says it ran on Dask."""
    from click.testing import CliRunner

    from weightlake.cli import main
    from weightlake.compute.analyses import analyze_correlations

    opts = {"zoo": "mnist-cnn-s", "against": ["accuracy", "epoch", "activation"], "by": ["activation"]}
    local = analyze_correlations(lake_copy, **opts)
    want = wl.open_lake(lake_copy).table("correlations").collect().drop("snapshot")
    result = CliRunner().invoke(main, ["analyze", "correlations", "--zoo", "mnist-cnn-s", "--against",
                                       "accuracy,epoch,activation", "--by", "activation", "--dask", "local",
                                       "--lake", str(lake_copy)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "ran on Dask (local)" in result.output and "parameter slices" in result.output
    lake = wl.open_lake(lake_copy)
    got = lake.table("correlations").collect().drop("snapshot")
    assert got.height == local.rows
    assert_same_table(got, want)
    assert '"engine": "dask local"' in lake.manifest.table("correlations").properties["params:mnist-cnn-s"]


@pytest.mark.slow
def test_topology_on_a_local_cluster_equals_the_local_run(lake_copy: Path, assert_same_table) -> None:
    """Rows in the same order, diagrams and Betti curves equal (floats atol 1e-12; list columns exactly)."""
    from click.testing import CliRunner

    from weightlake.cli import main
    from weightlake.compute.topology import analyze_topology

    pytest.importorskip("gudhi")
    local = analyze_topology(lake_copy, zoo="mnist-cnn-s", layers=["fc1", "fc2"], cubical=False)
    lake = wl.open_lake(lake_copy)
    want = lake.table("topology").collect().drop("snapshot")
    want_params = json.loads(lake.manifest.table("topology").properties["params:mnist-cnn-s"])
    result = CliRunner().invoke(main, ["analyze", "topology", "--zoo", "mnist-cnn-s", "--layers", "fc1,fc2",
                                       "--no-cubical", "--dask", "local", "--lake", str(lake_copy)],
                                catch_exceptions=False)
    assert result.exit_code == 0 and "one per stored chunk" in result.output, result.output
    lake = wl.open_lake(lake_copy)
    got = lake.table("topology").collect().drop("snapshot")
    assert got.height == local.rows and got.height == 2 * local.models
    assert_same_table(got, want)
    params = json.loads(lake.manifest.table("topology").properties["params:mnist-cnn-s"])
    assert params.pop("engine") == "dask local" and params == want_params


def test_distance_shares_cover_every_first_group_once_in_order() -> None:
    from weightlake.compute.dask_runs import distance_shares

    for n, tasks in ((1, 4), (2, 4), (12, 8), (72, 8), (5, 100)):
        shares = distance_shares(n, tasks)
        assert [i for s in shares for i in s] == list(range(max(n - 1, 0)))
        assert len(shares) <= tasks
    pairs = [sum(11 - i for i in s) for s in distance_shares(12, 4)]
    assert max(pairs) <= 2 * min(pairs)  # about equal work, not equal counts of first groups


@pytest.mark.slow
def test_topology_groups_on_a_local_cluster_equal_the_local_run(lake_copy: Path, assert_same_table) -> None:
    """Both group tables (function-Rips measures included) equal the local run's, row for row; params too."""
    import subprocess
    import sys

    from click.testing import CliRunner

    from weightlake.cli import main

    pytest.importorskip("gudhi")
    opts = {"zoo": "mnist-cnn-s", "by": ["classes"], "max_points": 30, "resolution": 12, "degrees": [0]}
    # the local run in its own interpreter, as the other multipers runs of the suite (tests/compute/test_topology.py)
    code = ("from weightlake.compute.topology import analyze_topology_groups as run; "
            f"run({str(lake_copy)!r}, **{opts!r})")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lake = wl.open_lake(lake_copy)
    want = {t: lake.table(t).collect().drop("snapshot") for t in ("topology_groups", "topology_group_distances")}
    want_params = json.loads(lake.manifest.table("topology_groups").properties["params:mnist-cnn-s"])
    result = CliRunner().invoke(main, ["analyze", "topology-groups", "--zoo", "mnist-cnn-s", "--by", "classes",
                                       "--max-points", "30", "--resolution", "12", "--degrees", "0",
                                       "--dask", "local", "--lake", str(lake_copy)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "ran on Dask (local): 12 group tasks" in result.output, result.output
    lake = wl.open_lake(lake_copy)
    for table, expected in want.items():
        got = lake.table(table).collect().drop("snapshot")
        assert got.height > 0
        assert_same_table(got, expected)
    assert want["topology_groups"].filter(pl.col("space") == "function_rips").height == 12
    params = json.loads(lake.manifest.table("topology_groups").properties["params:mnist-cnn-s"])
    assert params.pop("engine") == "dask local" and params == want_params


@pytest.mark.slow
@pytest.mark.parametrize("analysis", [["spectra"], ["correlations", "--against", "epoch", "--features", "params"],
                                      ["topology", "--layers", "fc1"], ["topology-groups", "--by", "activation"]])
def test_a_non_finite_weight_on_a_local_cluster_is_one_line(small_lake_dir: Path, tmp_path: Path, tree_state,
                                                            lake_with_a_bad_weight, analysis) -> None:
    """The Dask tasks ran no check: eigh's LinAlgError or batched_mst's 'not connected' came back from a
    worker (correlations of the parameters alone committed NaN figures), after each worker had logged the
    task's traceback; now the worker refuses the models as the local run does, and says it once."""
    import subprocess
    import sys

    pytest.importorskip("gudhi")
    root = tmp_path / "lake"
    model_id = lake_with_a_bad_weight(small_lake_dir, root, "mnist-cnn-s", 3, 10)
    before = tree_state(root)
    proc = subprocess.run([sys.executable, "-m", "weightlake", "analyze", *analysis, "--dask", "local",
                           "--lake", str(root)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1
    assert f"zoo 'mnist-cnn-s': 1 models have non-finite weights (model_id {model_id})" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("error:") == 1, proc.stderr
    assert tree_state(root) == before


@pytest.mark.parametrize("address", ["lcoal", "127.0.0.1", "tcp:/host:8786", ""])
def test_an_address_that_names_no_scheduler_is_one_line(small_lake_dir: Path, address: str) -> None:
    """`--dask lcoal` printed "started", then distributed's ValueError traceback; `--dask ""` ran locally."""
    from click.testing import CliRunner

    from weightlake.cli import main
    from weightlake.compute.dask_runs import check_dask_address

    for command in ("spectra", "correlations", "topology"):
        result = CliRunner().invoke(main, ["analyze", command, "--dask", address, "--lake", str(small_lake_dir)])
        assert result.exit_code == 2 and "Traceback" not in result.output and "started" not in result.output
        assert f"{address!r} names no scheduler: give 'local'" in result.output, result.output
    with pytest.raises(wl.errors.QueryError, match="names no scheduler"):  # the library the same
        check_dask_address(address)
