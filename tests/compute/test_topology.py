"""Topology as lake tables: `analyze topology`, `analyze topology-groups`, their CLI, and multipers in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner
from polars.testing import assert_frame_equal

import weightlake as wl
from weightlake.cli import main
from weightlake.errors import QueryError

pytest.importorskip("gudhi")


def test_topology_table_is_one_row_per_distinct_model_and_layer(lake_copy):
    from weightlake.analysis.distinct import distinct_models
    from weightlake.analysis.topology import zoo_topology
    from weightlake.compute.topology import analyze_topology

    report = analyze_topology(lake_copy, zoo="mnist-cnn-s", layers=["conv2", "fc1"])
    lake = wl.open_lake(lake_copy)
    meta = lake.models("mnist-cnn-s").collect()
    n = distinct_models(meta).n_distinct
    assert report.models == n and report.rows == 2 * n
    assert "distinct models" in str(report)
    table = lake.table("topology").collect()
    assert table.height == 2 * n and table["model_id"].n_unique() == n
    params = json.loads(lake.manifest.tables["topology"].properties["params:mnist-cnn-s"])
    assert params["models"] == n and set(params["betti_grids"]) == {"conv2", "fc1"}
    # the committed values are the pure function's values on the same weights
    some = table.filter(pl.col("layer") == "fc1").head(3)
    direct = zoo_topology(lake.weights_numpy(some["model_id"].to_list()), lake.arch(), layers=["fc1"])
    np.testing.assert_allclose(some["h0_total_persistence"].to_numpy(), direct["h0_total_persistence"].to_numpy())
    assert table.filter(pl.col("layer") == "fc1")["cubical_h0_total"].null_count() == n  # dense: not computed
    assert table.filter(pl.col("layer") == "conv2")["cubical_h0_total"].null_count() == 0
    curves = table["betti0"].to_list()
    assert all(len(c) == 16 for c in curves)
    # the SQL
    out = lake.sql("SELECT activation, corr(h0_total_persistence, accuracy) AS r FROM topology "
                   "JOIN models USING (model_id) WHERE layer = 'fc1' GROUP BY 1")
    assert out.height == meta["activation"].n_unique()
    with pytest.raises(QueryError, match=r"holds layers \['conv2'\].*--layers conv2,fc1"):
        analyze_topology(lake_copy, zoo="mnist-cnn-s", layers=["fc1"], all_rows=True, h1=False)
    every = analyze_topology(lake_copy, zoo="mnist-cnn-s", layers=["conv2", "fc1"], all_rows=True, h1=False)
    assert every.models == meta.height
    # Was: the whole zoo was decoded first. Read in blocks of a small budget, the table is the same.
    steps = []
    small = analyze_topology(lake_copy, zoo="mnist-cnn-s", layers=["conv2", "fc1"], memory="1MB",
                             progress=lambda d, t: steps.append((d, t)))
    assert wl.open_lake(lake_copy, memory="1MB").block_rows("mnist-cnn-s") < meta.height
    assert small.models == n and steps[-1] == (n, n) and [d for d, _ in steps] == sorted(d for d, _ in steps)
    again = wl.open_lake(lake_copy).table("topology").collect().drop("snapshot").sort("model_id", "layer")
    first = table.drop("snapshot").sort("model_id", "layer")
    # (entropies differ in the last bit: numpy's sums over a block of other alignment)
    assert_frame_equal(again, first, rel_tol=1e-12, abs_tol=1e-12)


def test_group_tables_without_multipers(lake_copy):
    from weightlake.compute.topology import analyze_topology_groups

    report = analyze_topology_groups(lake_copy, zoo="mnist-cnn-s", by=["classes"], degrees=(), max_points=40)
    lake = wl.open_lake(lake_copy)
    groups = lake.table("topology_groups").collect()
    n_groups = groups["group"].n_unique()
    assert n_groups == 12 and report.rows == groups.height == n_groups * 4  # 2 clouds x H0, H1
    dist = lake.table("topology_group_distances").collect()
    assert dist.height == n_groups * (n_groups - 1) // 2 * 4 * 3
    assert (dist["value"] >= 0).all()
    h0 = groups.filter((pl.col("space") == "neurons") & (pl.col("dim") == 0))
    assert (h0["n_points"] == 40).all() and all(len(b) == 39 for b in h0["deaths"].to_list())


def test_too_many_groups_leave_the_distance_table_empty_and_say_so(lake_copy):
    from weightlake.compute.topology import analyze_topology_groups

    report = analyze_topology_groups(lake_copy, zoo="mnist-cnn-s", by=["classes", "activation"], degrees=(),
                                     max_points=20, max_distance_groups=5)
    assert "distances not computed: 72 groups" in str(report)
    assert wl.open_lake(lake_copy).table("topology_group_distances").collect().height == 0


def test_cli_topology_and_one_line_errors(lake_copy):
    runner = CliRunner()
    ok = runner.invoke(main, ["analyze", "topology", "--layers", "fc2", "--no-cubical", "--lake", str(lake_copy)])
    assert ok.exit_code == 0, ok.output
    assert "table 'topology'" in ok.output
    before = wl.open_lake(lake_copy).snapshot
    for args in (["analyze", "topology", "--layers", "fc9"],
                 ["analyze", "topology-groups", "--by", "colour", "--degrees", ""],
                 ["analyze", "topology-groups", "--layer", "fc2", "--degrees", ""]):
        bad = runner.invoke(main, [*args, "--lake", str(lake_copy)])
        assert bad.exit_code == 1, bad.output
        # one error line (a progress line may come before it), no traceback
        assert [line for line in bad.output.splitlines() if not line.startswith("analyze ")] == \
            [bad.output.splitlines()[-1]] and bad.output.splitlines()[-1].startswith("error:"), bad.output
    assert wl.open_lake(lake_copy).snapshot == before
    assert "Example" in runner.invoke(main, ["analyze", "topology-groups", "--help"]).output


def _run_isolated(code: str, timeout: int = 300) -> dict:
    """Run ``code`` in a fresh interpreter (a crash in a compiled extension fails only the caller) -> its JSON."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stderr[-2000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_function_rips_hilbert_function_is_the_component_count():
    out = _run_isolated("""
        import json
        import numpy as np
        from scipy.sparse.csgraph import connected_components
        from weightlake.analysis import topology_multi as tm

        rng = np.random.default_rng(0)
        pts, f = rng.normal(size=(30, 3)), rng.random(30)
        grid = tm.regular_grid(4.0, 12)
        measure = tm.function_rips_measure(pts, f, grid, degrees=(0,))[0]
        dist = tm.pairwise_distances(pts[None])[0]
        # multipers puts every filtration value on the nearest grid value
        di = np.abs(dist[..., None] - grid[0]).argmin(-1)
        fi = np.abs(f[:, None] - grid[1]).argmin(-1)
        wrong = 0
        for i in range(len(grid[0]) - 1):
            for j in range(len(grid[1]) - 1):
                keep = fi <= j
                ref = connected_components(di[np.ix_(keep, keep)] <= i, directed=False)[0] if keep.any() else 0
                wrong += int(ref != tm.hilbert_function(measure, grid[0][i], grid[1][j]))
        print(json.dumps({"wrong": wrong, "mass": int(measure[1].sum())}))
    """)
    assert out == {"wrong": 0, "mass": 0}


def test_signed_measure_distance_matches_multipers_and_is_a_distance():
    out = _run_isolated("""
        import contextlib, io, json
        import numpy as np
        from weightlake.analysis import topology_multi as tm
        with contextlib.redirect_stdout(io.StringIO()):
            from multipers.distances import sm_distance

        rng = np.random.default_rng(1)
        grid = tm.regular_grid(4.0, 20)
        ms = [tm.function_rips_measure(rng.normal(size=(25, 4)), rng.random(25), grid)[0] for _ in range(3)]
        d = lambda a, b: tm.signed_measure_distance(a, b)
        print(json.dumps({
            "self": d(ms[0], ms[0]), "ab": d(ms[0], ms[1]), "ba": d(ms[1], ms[0]),
            "ac": d(ms[0], ms[2]), "bc": d(ms[1], ms[2]),
            "sq_ours": tm.signed_measure_distance(ms[0], ms[1], metric="sqeuclidean"),
            "sq_multipers": float(sm_distance(ms[0], ms[1])),
        }))
    """)
    assert out["self"] == 0.0 and out["ab"] > 0
    assert out["ab"] == pytest.approx(out["ba"])
    assert out["ac"] <= out["ab"] + out["bc"] + 1e-9
    assert out["sq_ours"] == pytest.approx(out["sq_multipers"], rel=1e-9)


@pytest.mark.slow
def test_group_run_with_multipers_in_a_subprocess(lake_copy):
    out = _run_isolated(f"""
        import json
        import weightlake as wl
        from weightlake.compute.topology import analyze_topology_groups
        analyze_topology_groups({str(lake_copy)!r}, by=["classes"], degrees=(0,), max_points=30, resolution=20)
        lake = wl.open_lake({str(lake_copy)!r})
        fr = lake.sql("SELECT sm_weight FROM topology_groups WHERE space = 'function_rips'")
        d = lake.sql("SELECT value FROM topology_group_distances WHERE metric = 'signed_measure_w1'")
        print(json.dumps({{"groups": fr.height, "masses": [sum(w) for w in fr["sm_weight"].to_list()],
                          "pairs": d.height, "positive": int((d["value"] > 0).sum())}}))
    """)
    assert out["groups"] == 12 and set(out["masses"]) == {0}
    assert out["pairs"] == 66 and out["positive"] == 66


def test_topology_classes_table_and_figure(lake_copy, tmp_path):
    from weightlake.compute.topology import analyze_topology, analyze_topology_classes
    from weightlake.errors import WeightLakeError

    with pytest.raises(WeightLakeError, match="analyze topology"):
        analyze_topology_classes(lake_copy)
    analyze_topology(lake_copy, layers=["conv2", "fc1"], h1=False)
    report = analyze_topology_classes(lake_copy, permutations=49, max_models=120, plot_dir=tmp_path)
    table = wl.open_lake(lake_copy).table("topology_classes").collect()
    auc = table.filter(pl.col("kind") == "auc")
    digits = sorted({d for c in wl.open_lake(lake_copy).models().collect()["classes"].to_list() for d in c})
    assert sorted(auc["digit"].unique().to_list()) == digits
    assert set(auc["features"]) == {"topology", "baseline", "both"}
    assert ((auc["auc"] >= 0) & (auc["auc"] <= 1)).all()
    mantel = table.filter(pl.col("kind") == "mantel")
    assert mantel.height == 3 and ((mantel["p"] > 0) & (mantel["p"] <= 1)).all()
    assert (tmp_path / "mnist-cnn-s-topology-classes.png").stat().st_size > 10_000
    assert "plot:" in str(report)


def test_topology_filtration_table(lake_copy):
    from weightlake.compute.topology import analyze_topology_filtration
    from weightlake.errors import WeightLakeError

    report = analyze_topology_filtration(lake_copy, digit=1, steps=15, max_models=60)
    table = wl.open_lake(lake_copy).table("topology_filtration").collect()
    assert table.height == 6 and table["n_models"][0] == 60
    assert np.linalg.norm(table["coefficient"].to_numpy()) == pytest.approx(1.0)
    assert "test AUC" in str(report)
    with pytest.raises(WeightLakeError, match="nothing to separate"):
        analyze_topology_filtration(lake_copy, digit=11, steps=2)  # no model saw class 11


def test_groups_of_one_model_are_reported_as_such(lake_copy):
    """Grouped down to single models, every group's 'models' cloud is one point: no bar, and every
    'models' distance between such groups is 0. The report said nothing, which reads as 'all alike'."""
    from weightlake.compute.topology import analyze_topology_groups

    report = analyze_topology_groups(lake_copy, zoo="mnist-cnn-s", by=["classes", "activation", "epoch"],
                                     degrees=(), max_points=20, max_distance_groups=0)
    lake = wl.open_lake(lake_copy)
    n = lake.table("topology_groups").collect()["group"].n_unique()
    assert f"{n} of {n} groups have a single point in cloud 'models'" in str(report)
    assert "'neurons'" not in str(report).split("single point", 1)[1].split("\n")[0]
    params = lake.manifest.table("topology_groups").properties["params:mnist-cnn-s"]
    assert f'"single_point_groups": {{"models": {n}}}' in params
    report = analyze_topology_groups(lake_copy, zoo="mnist-cnn-s", by=["classes"], degrees=(), max_points=20,
                                     max_distance_groups=0)
    assert "single point" not in str(report)


def test_betti1_is_null_where_h1_was_not_computed(lake_copy):
    """With h1=False (--no-h1) the H1 summaries were null but betti1 was a curve of zeros, which reads
    as 'no loops at any scale'; topology-classes must still run on such a table."""
    from weightlake.compute.topology import analyze_topology, analyze_topology_classes

    analyze_topology(lake_copy, zoo="mnist-cnn-s", layers=["fc1", "fc2"], h1=False, cubical=False)
    table = wl.open_lake(lake_copy).table("topology").collect()
    assert table["h1_count"].null_count() == table.height
    assert table["betti1"].null_count() == table.height and table["betti0"].null_count() == 0
    report = analyze_topology_classes(lake_copy, zoo="mnist-cnn-s", permutations=9, max_models=40)
    assert report.rows > 0
    analyze_topology(lake_copy, zoo="mnist-cnn-s", layers=["fc1", "fc2"], cubical=False)
    assert wl.open_lake(lake_copy).table("topology").collect()["betti1"].null_count() == 0


def test_a_layer_of_a_zoo_stored_per_tensor_reads_only_that_layer(tmp_path):
    """Was: analyze topology --layers fc read every tensor of every model (a ResNet-18: 47 MB a
    model for the 20 KB of fc). Now only the asked layers' tensors are read, with the same table."""
    import torch

    from weightlake.compute.topology import analyze_topology
    from weightlake.ingest.modelzoo import ingest_modelzoo
    from weightlake.storage.tensors import count_reads
    from weightlake.zoo.resnet import random_state_dict, resnet_shapes

    shapes, rng = resnet_shapes((4, 8, 8, 16), num_classes=10), np.random.default_rng(0)
    for r in range(3):
        run = tmp_path / "zoo" / f"run [{r}]"
        run.mkdir(parents=True)
        (run / "params.json").write_text(json.dumps({"seed": r}))
        (run / "result.json").write_text("\n".join(json.dumps({"training_iteration": e, "acc": e}) for e in (1, 2)))
        for e in (1, 2):
            (run / f"checkpoint_{e}").mkdir()
            torch.save({k: torch.from_numpy(np.asarray(v)) for k, v in random_state_dict(shapes, rng, batches=e).items()},
                       run / f"checkpoint_{e}" / "checkpoints")
    for layout in ("tensors", "rows"):
        ingest_modelzoo(tmp_path / layout, tmp_path / "zoo", zoo="rn", layout=layout)
    tables, read = {}, {}
    for layout in ("tensors", "rows"):
        with count_reads() as c:
            analyze_topology(tmp_path / layout, zoo="rn", layers=["layer1.0.conv1", "fc"], cubical=False)
        read[layout] = c.bytes
        tables[layout] = wl.open_lake(tmp_path / layout).table("topology").collect().drop("snapshot")
    arch = wl.open_lake(tmp_path / "tensors").arch("rn")
    layer_bytes = sum(arch.layer(n).stop - arch.layer(n).start for n in ("layer1.0.conv1", "fc")) * 4
    assert 0 < read["tensors"] < 0.5 * arch.n_params * 4 * 6 and read["tensors"] >= layer_bytes * 6
    assert_frame_equal(tables["tensors"].sort("model_id", "layer"), tables["rows"].sort("model_id", "layer"),
                       rel_tol=1e-12, abs_tol=1e-12)
