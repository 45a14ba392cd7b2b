"""The user handle (``weightlake.open_lake``) over the core handle: same reads, plus SQL, pairs, batches, analyses.

Each shortcut must give what the layer's own function gives on the core handle, and the
core handle must stay usable by every layer below the top.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import weightlake as wl
from weightlake.compute.analyses import LakeAnalysis, analyze_spectra
from weightlake.handle import LakeHandle
from weightlake.ingest.csv_zoo import ingest_csv
from weightlake.lake import Lake
from weightlake.lake import open_lake as open_core
from weightlake.query import connect, run_sql
from weightlake.scenarios import declare_scenario
from weightlake.serve.batches import BatchStream, materialize
from weightlake.serve.pairset import PairSet
from weightlake.zoo.synthetic import all_labels, write_synthetic_csv

ZOO = "mnist-cnn-s"


@pytest.fixture(scope="module")
def lake_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Scenario 's' over subsets of digits 0-4, materialised (train, batch 5, 1 epoch), spectra computed."""
    tmp = tmp_path_factory.mktemp("handle")
    write_synthetic_csv(tmp / "zoo.csv", labels=all_labels(range(5), range(2, 6)), activations=("gelu", "relu"),
                        epochs=(11, 16), seed=3)
    ingest_csv(tmp / "lake", tmp / "zoo.csv", zoo=ZOO, init="kaiming_uniform")
    declare_scenario(tmp / "lake", "s", zoo=ZOO, digits="0-4", sizes="2-3", overlap="0-1")
    materialize(tmp / "lake", "s", "train", batch_size=5, epochs=1, seed=2)
    analyze_spectra(tmp / "lake", zoo=ZOO)
    return tmp / "lake"


def test_open_lake_returns_the_user_handle_and_keeps_its_type(lake_dir: Path) -> None:
    lake = wl.open_lake(lake_dir)
    assert type(lake) is LakeHandle and isinstance(lake, Lake)
    assert type(lake.refresh()) is LakeHandle
    assert type(lake.at(1)) is LakeHandle and lake.at(1).snapshot == 1
    core = open_core(lake_dir)
    assert type(core) is Lake and type(core.refresh()) is Lake and type(core.at(1)) is Lake
    assert repr(lake) == repr(core)
    assert lake.models().collect().equals(core.models().collect())
    assert np.array_equal(lake.weights_numpy([0, 3]), core.weights_numpy([0, 3]))


def test_each_shortcut_is_the_layers_own_call(lake_dir: Path) -> None:
    lake, core = wl.open_lake(lake_dir), open_core(lake_dir)
    query = "SELECT zoo, count(*) AS n, avg(wl_l2(w)) AS l2 FROM models JOIN weights USING (model_id, zoo) GROUP BY 1"
    assert lake.sql(query).equals(run_sql(core, query))
    assert lake.sql("SELECT count(*) AS n FROM pairs WHERE split = $s", {"s": "train"})["n"][0] == len(
        PairSet.open(core, "s", "train"))
    with lake.connect(weights=False, udfs=False) as a, connect(core, weights=False, udfs=False) as b:
        assert a.sql("SELECT count(*) FROM models").fetchall() == b.sql("SELECT count(*) FROM models").fetchall()
    assert lake.pairs("s", "val").to_polars().equals(PairSet.open(core, "s", "val").to_polars())
    mine, theirs = lake.batches("s", "train"), BatchStream.open(core, "s", "train")
    assert len(mine) == len(theirs) > 0
    first, other = next(iter(mine)), next(iter(theirs))
    assert all(np.array_equal(np.asarray(first[k]), np.asarray(other[k])) for k in ("x1", "x2", "y"))
    assert isinstance(lake.analysis, LakeAnalysis)
    spectra = lake.analysis.spectra().collect().sort("model_id", "layer")  # the metadata join keeps no order
    assert spectra.height > 0 and spectra.equals(LakeAnalysis(core).spectra().collect().sort("model_id", "layer"))


def test_the_core_handle_points_to_the_user_handle(lake_dir: Path) -> None:
    core = open_core(lake_dir)
    for name, call in (("sql", "weightlake.query.run_sql"), ("pairs", "weightlake.serve.pairset.PairSet.open"),
                       ("batches", "BatchStream.open"), ("analysis", "LakeAnalysis"), ("connect", "query.connect")):
        assert not hasattr(core, name)
        with pytest.raises(AttributeError, match=rf"weightlake\.open_lake\(\.\.\.\) for lake\.{name}.*{call}"):
            getattr(core, name)
    with pytest.raises(AttributeError, match="has no attribute 'nonsense'"):
        core.nonsense  # noqa: B018


def test_opening_the_user_handle_stays_light(lake_dir: Path) -> None:
    code = ("import sys, weightlake as wl; lake = wl.open_lake(sys.argv[1]); lake.models().collect(); "
            "print(type(lake).__name__, sorted(m for m in ('torch', 'duckdb', 'ot') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(lake_dir)], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["LakeHandle", "[]"]
