"""One lake holding zoos of several architectures: every lake-wide reader refuses what does not line up.

The lake: the small CNN-s CSV zoo (2,464 parameters), an MLP zoo of exactly 2,464 parameters
in another layout (Model Zoos tree, architecture inferred), and a wider CNN ("cnn-m", 3,766
parameters) from a layout-A checkpoint tree with the user's folder names.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

import weightlake as wl
from weightlake.arch import Architecture, ModuleSpec, same_layout
from weightlake.cli import main
from weightlake.errors import ArchitectureError, QueryError

CNN_M = Architecture(name="cnn-m", modules=(
    ModuleSpec("conv2d", "conv1", {"in_channels": 1, "out_channels": 8, "kernel_size": 5}),
    ModuleSpec("maxpool2d", args={"kernel_size": 2}), ModuleSpec("activation"),
    ModuleSpec("conv2d", "conv2", {"in_channels": 8, "out_channels": 12, "kernel_size": 5}),
    ModuleSpec("maxpool2d", args={"kernel_size": 2}), ModuleSpec("activation"),
    ModuleSpec("conv2d", "conv3", {"in_channels": 12, "out_channels": 4, "kernel_size": 2}),
    ModuleSpec("activation"), ModuleSpec("flatten"),
    ModuleSpec("linear", "fc1", {"in_features": 36, "out_features": 20}), ModuleSpec("activation"),
    ModuleSpec("linear", "fc2", {"in_features": 20, "out_features": 10})))
"""CNN-s with 12 channels in its second conv: conv1 lines up with CNN-s, nothing after it does."""


def _mlp_tree(root: Path) -> None:
    """Three Model Zoos runs of an MLP (398 -> 6 -> 10: 2,464 parameters, as CNN-s), two epochs each."""
    for r in range(3):
        run = root / f"run_{r} [relu]"
        for e in (1, 2):
            (run / f"checkpoint_{e}").mkdir(parents=True)
            torch.manual_seed(100 + 10 * r + e)
            net = nn.Sequential(nn.Linear(398, 6), nn.ReLU(), nn.Linear(6, 10))
            torch.save(net.state_dict(), run / f"checkpoint_{e}" / "checkpoints")
        (run / "params.json").write_text(json.dumps({"model::activation": "relu", "seed": r}))


def _cnn_m_tree(root: Path) -> None:
    """Layout A: ``[0, 1]/relu/checkpoint epoch 11.pth`` ... for four labels and two epoch bins."""
    from weightlake.zoo.cnn import build_cnn

    for i, label in enumerate(("[0, 1]", "[2, 3]", "[0, 1, 2, 3]", "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]")):
        for e in (11, 16):
            torch.manual_seed(10 * i + e)
            (root / label / "relu").mkdir(parents=True, exist_ok=True)
            torch.save({"epoch": e, "model_state_dict": build_cnn(CNN_M, "relu").state_dict()},
                       root / label / "relu" / f"checkpoint epoch {e}.pth")


@pytest.fixture(scope="module")
def same_width_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CNN-s (every subset of digits 0-3, so pairs have targets) and the MLP: two architectures
    of 2,464 parameters each (read-only)."""
    from weightlake.ingest.csv_zoo import ingest_csv
    from weightlake.ingest.modelzoo import ingest_modelzoo
    from weightlake.zoo.synthetic import all_labels, write_synthetic_csv

    base = tmp_path_factory.mktemp("same width")
    write_synthetic_csv(base / "Merged zoo.csv", labels=all_labels(range(4), range(2, 5)), seed=2)
    ingest_csv(base / "lake", base / "Merged zoo.csv", zoo="mnist-cnn-s", init="kaiming_uniform")
    _mlp_tree(base / "mlp zoo")
    ingest_modelzoo(base / "lake", base / "mlp zoo", zoo="mlp")
    return base / "lake"


@pytest.fixture(scope="module")
def mixed_dir(tmp_path_factory: pytest.TempPathFactory, same_width_dir: Path) -> Path:
    """The same-width lake plus the CNN-m checkpoint zoo (read-only)."""
    from weightlake.ingest.checkpoints import ingest_checkpoints

    base = tmp_path_factory.mktemp("mixed")
    shutil.copytree(same_width_dir, base / "lake")
    _cnn_m_tree(base / "checkpoints")
    ingest_checkpoints(base / "lake", base / "checkpoints", zoo="mnist-cnn-m", init="kaiming_uniform", arch=CNN_M,
                       workers=1)
    return base / "lake"


def _first_id(lake: wl.LakeHandle, zoo: str) -> int:
    return int(lake.zoo_ids(zoo)[0])


def test_same_layout_is_about_positions_not_names() -> None:
    from weightlake.arch import CNN_S, infer_architecture

    renamed = infer_architecture({k.replace("module_list", "net"): v for k, v in CNN_S.param_shapes().items()})
    assert renamed != CNN_S and same_layout(renamed, CNN_S)
    assert not same_layout(CNN_M, CNN_S)


def test_weights_view_refuses_two_layouts_of_one_width(same_width_dir: Path) -> None:
    """Was: wl_mse(a.w, b.w) between a CNN-s and an MLP model gave 0.0097 (both 2,464 wide)."""
    lake = wl.open_lake(same_width_dir)
    mlp = _first_id(lake, "mlp")
    with pytest.raises(QueryError, match=r"zoo 'mlp' \(inferred-\w+, 2,464 parameters\), zoo 'mnist-cnn-s' "
                                         r"\(cnn-s, 2,464 parameters\)"):
        lake.sql(f"SELECT wl_mse(a.w, b.w) FROM weights a, weights b WHERE a.model_id = 0 AND b.model_id = {mlp}")
    out = CliRunner().invoke(main, ["sql", "SELECT count(*) FROM weights", "--lake", str(same_width_dir)])
    assert out.exit_code == 1 and "Traceback" not in out.output and len(out.output.strip().splitlines()) == 1
    # what can be asked still works: by id (each zoo's own architecture), and models
    assert lake.sql("SELECT wl_mse_by_id(0, 1) AS m")["m"][0] >= 0
    with pytest.raises(QueryError, match="different architectures"):
        lake.sql(f"SELECT wl_mse_by_id(0, {mlp})")


def test_lake_weights_refuse_ids_of_two_layouts(same_width_dir: Path) -> None:
    """Was: lake.weights([0, <mlp id>]) stacked a CNN-s row and an MLP row into one [2, 2464] tensor."""
    lake = wl.open_lake(same_width_dir)
    mlp = _first_id(lake, "mlp")
    with pytest.raises(ArchitectureError, match="zoo 'mlp'.*zoo 'mnist-cnn-s'"):
        lake.weights([0, mlp])
    with pytest.raises(ArchitectureError, match="do not line up"):
        lake.columns_numpy([0, mlp], 0, 10)
    assert lake.weights([mlp, mlp + 1]).shape == (2, 2464)
    # Was: lake.weights([]) gave a [0, 2464] tensor, the width of whichever zoo came first
    with pytest.raises(ArchitectureError, match="no model ids were given.*do not line up"):
        lake.weights([])


def test_a_layer_of_ids_of_two_zoos_is_each_zoos_own_or_refused(mixed_dir: Path) -> None:
    """Was: on a fresh handle lake.layer([0, <cnn-m id>], 'fc1') cut CNN-s's fc1 columns out of the CNN-m row."""
    lake = wl.open_lake(mixed_dir)
    m = _first_id(lake, "mnist-cnn-m")
    with pytest.raises(ArchitectureError, match="'fc1' lies at other columns"):
        lake.layer([0, m], "fc1")
    conv1 = lake.layer([0, m], "conv1")  # lies at columns 0-200 in both: each row is its model's own conv1
    assert conv1.shape == (2, 8, 1, 5, 5)
    assert torch.equal(conv1[1], lake.layer([m], "conv1")[0]) and torch.equal(conv1[0], lake.layer([0], "conv1")[0])
    np.testing.assert_array_equal(lake.layer([m], "fc1").numpy().reshape(-1),
                                  lake.weights_numpy([m])[0][CNN_M.layer("fc1").start:CNN_M.layer("fc1").bias_start])
    with pytest.raises(ArchitectureError, match=r"columns \[0, 3000\) lie outside the 2,464 parameters"):
        lake.columns_numpy([0], 0, 3000)


def test_named_query_of_one_zoo_runs_in_a_mixed_lake(mixed_dir: Path) -> None:
    """Was: weight_norms_by_epoch --param zoo=mnist-cnn-m refused (zoos of different parameter counts)."""
    from weightlake.query import run_named

    lake = wl.open_lake(mixed_dir)
    got = run_named(lake, "weight_norms_by_epoch", {"zoo": "mnist-cnn-m"})
    ids, rows = lake.zoo_weights("mnist-cnn-m")
    assert got["models"].sum() == len(ids) == 24  # 4 labels x 6 bins (epochs 11, 16; later bins: fallback)
    want = np.sqrt((rows.astype(np.float64) ** 2).sum(axis=1)).mean()  # one activation: every row
    assert abs(float((got["mean_l2_norm"] * got["models"]).sum() / got["models"].sum()) - want) < 1e-3
    assert run_named(lake, "weight_norms_by_epoch", {"zoo": "mlp"})["models"].sum() == 6
    with pytest.raises(wl.errors.NoSuchTableError, match="no zoo 'nope'"):
        run_named(lake, "weight_norms_by_epoch", {"zoo": "nope"})
    with pytest.raises(wl.errors.NoSuchTableError, match="no zoo 'nope'"):  # was an empty table, exit 0
        run_named(lake, "accuracy_by_group", {"zoo": "nope"})


def test_a_scoped_named_query_takes_its_zoos_layers(same_width_dir: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The vector forms (wl_mse_layer(a.w, b.w, 'fc1')) took the lake's first architecture (the MLP's
    fc1, columns 0-2394) over CNN-s rows: 0.00214 where CNN-s's fc1 gives 0.00308."""
    from weightlake.query import run_named

    (tmp_path / "fc1_mse.sql").write_text(
        "-- name: fc1_mse\n-- description: fc1 MSE of consecutive models\n-- param: zoo string  the zoo\n"
        "SELECT avg(wl_mse_layer(a.w, b.w, 'fc1')) AS fc1 FROM weights a JOIN weights b "
        "ON b.model_id = a.model_id + 1 JOIN models m ON m.model_id = a.model_id WHERE m.zoo = $zoo")
    monkeypatch.setenv("WEIGHTLAKE_QUERIES", str(tmp_path))
    lake = wl.open_lake(same_width_dir)
    assert next(iter(lake.manifest.zoos)) == "mlp"  # the architecture a lake-wide guess would take
    for zoo in ("mnist-cnn-s", "mlp"):
        _, rows = lake.zoo_weights(zoo)
        fc1 = lake.arch(zoo).layer("fc1")
        block = rows[:, fc1.start:fc1.stop].astype(np.float64)
        want = ((block[:-1] - block[1:]) ** 2).mean(axis=1).mean()
        np.testing.assert_allclose(run_named(lake, "fc1_mse", {"zoo": zoo})["fc1"][0], want, rtol=1e-5)


def test_a_missing_layer_view_says_where_the_layer_lies(mixed_dir: Path) -> None:
    """Was: 'Table with name weights_fc1 does not exist!' and nothing more."""
    lake = wl.open_lake(mixed_dir)
    with pytest.raises(QueryError, match=r"zoo 'mnist-cnn-m' at columns 2816-3556 \(20x36\), zoo 'mnist-cnn-s' at "
                                         r"columns 1514-2254 \(20x36\)"):
        lake.sql("SELECT count(*) FROM weights_fc1")
    with pytest.raises(QueryError, match="no zoo has a layer of that view"):
        lake.sql("SELECT count(*) FROM weights_fc9")


def test_a_result_naming_a_column_twice_is_refused(mixed_dir: Path) -> None:
    """Was: a polars DuplicateError traceback for SELECT a.zoo, b.zoo ..."""
    lake = wl.open_lake(mixed_dir)
    with pytest.raises(QueryError, match=r"names \['zoo'\] more than once"):
        lake.sql("SELECT a.zoo, b.zoo FROM models a, models b WHERE a.model_id = 0 AND b.model_id = 1")
    out = CliRunner().invoke(main, ["sql", "SELECT 1 AS x, 2 AS x", "--lake", str(mixed_dir)])
    assert out.exit_code == 1 and "Traceback" not in out.output


def _scenario_folders(root: Path) -> Path:
    """One 'overlapping 0 [0, 1, 2, 3] 11 relu' folder as the user's generator wrote it (object arrays of
    [classes_a, classes_b, epoch_key, activation_key], split by the user's rule)."""
    import itertools

    subsets = [list(c) for k in (2, 3) for c in itertools.combinations(range(4), k)]
    splits: dict[str, list[list[object]]] = {"train": [], "val": [], "test": []}
    for a, b in itertools.permutations(subsets, 2):
        if not set(a) & set(b):
            split = "test" if 0 in a or 0 in b else "val" if len(a) == len(b) else "train"
            splits[split].append([a, b, 0, 1])  # epoch key 0 = 11, activation key 1 = relu
    folder = root / "overlapping 0 [0, 1, 2, 3] 11 relu"
    folder.mkdir(parents=True)
    for split, records in splits.items():
        array = np.empty((len(records), 4), dtype=object)
        for i, record in enumerate(records):
            array[i] = record
        np.save(folder / f"{split} pair.npy", array, allow_pickle=True)
    return root


def test_a_scenario_of_one_zoo_is_not_replaced_by_another_zoos(tmp_path: Path, mixed_dir: Path,
                                                                 tree_state) -> None:
    """Was: importing the same folders for a second zoo silently replaced the first zoo's scenarios."""
    from weightlake.scenarios import declare_scenario
    from weightlake.scenarios_import import import_scenarios

    root = tmp_path / "lake"
    shutil.copytree(mixed_dir, root)
    folders = _scenario_folders(tmp_path / "Scenario")
    import_scenarios(root, folders, zoo="mnist-cnn-s")
    before = tree_state(root)
    with pytest.raises(QueryError, match=r"scenario 'overlapping-0-0to3-e11-relu' already pairs the models of zoo "
                                         r"'mnist-cnn-s' \(cnn-s\).* zoo 'mnist-cnn-m' \(cnn-m\).*\{zoo\}"):
        import_scenarios(root, folders, zoo="mnist-cnn-m")
    with pytest.raises(QueryError, match="give this one another NAME"):
        declare_scenario(root, "overlapping-0-0to3-e11-relu", zoo="mnist-cnn-m", digits=range(4), sizes=range(2, 4))
    assert tree_state(root) == before
    import_scenarios(root, folders, zoo="mnist-cnn-m", name_template="overlapping-{m}-{digits}-e{epoch}-{activation}-{zoo}")
    import_scenarios(root, folders, zoo="mnist-cnn-s")  # the same zoo again: replaced, as before
    listed = dict(wl.open_lake(root).table("scenarios").select("scenario", "zoo").collect().iter_rows())
    assert listed == {"overlapping-0-0to3-e11-relu": "mnist-cnn-s",
                      "overlapping-0-0to3-e11-relu-mnist-cnn-m": "mnist-cnn-m"}
    pairs = wl.open_lake(root).pairs("overlapping-0-0to3-e11-relu-mnist-cnn-m", "test")
    assert next(iter(pairs.loader(batch_size=2)))["x1"].shape == (2, CNN_M.n_params)


def test_analysis_metrics_take_the_ids_architecture(mixed_dir: Path, same_width_dir: Path) -> None:
    """Was: lake.analysis.metrics(...) refused any ids in a mixed lake ("say which zoo"), though it takes no zoo."""
    lake = wl.open_lake(mixed_dir)
    ids = lake.zoo_ids("mnist-cnn-m")
    got = lake.analysis.metrics(ids[:2], ids[2:4], per_layer=True)
    rows = lake.weights_numpy(ids[:4]).astype(np.float64)
    fc1 = CNN_M.layer("fc1")
    want = ((rows[:2, fc1.start:fc1.stop] - rows[2:4, fc1.start:fc1.stop]) ** 2).mean(axis=1)
    np.testing.assert_allclose(got["mse_fc1"].to_numpy(), want, rtol=1e-5)
    mixed = wl.open_lake(same_width_dir)
    with pytest.raises(ArchitectureError, match="zoo 'mlp'.*zoo 'mnist-cnn-s'"):
        mixed.analysis.metrics(mixed.zoo_ids("mlp")[:2], [0, 1])


def test_a_connection_of_a_mixed_lake_serves_all_but_weights(mixed_dir: Path) -> None:
    """Was: lake.connect() raised for the whole connection (zoos of different parameter counts)."""
    import duckdb

    lake = wl.open_lake(mixed_dir)
    m = _first_id(lake, "mnist-cnn-m")
    with lake.connect() as con:
        counts = dict(con.sql("SELECT zoo, count(*) FROM models GROUP BY ALL").fetchall())
        assert counts == {"mlp": 6, "mnist-cnn-m": 24, "mnist-cnn-s": 396}
        assert con.sql(f"SELECT wl_mse_by_id({m}, {m + 1})").fetchall()[0][0] > 0
        with pytest.raises(duckdb.Error, match="do not line up: zoo 'mlp'"):
            con.sql("SELECT count(*) FROM weights").fetchall()


def test_a_layer_view_needs_one_shape_not_only_one_span(tmp_path: Path) -> None:
    """Was: weights_fc1 was offered over Linear(36, 20) and Linear(73, 10) zoos (both 740 columns from 0)."""
    from weightlake.ingest.modelzoo import ingest_modelzoo

    for name, width, out in (("wide", 36, 20), ("narrow", 73, 10)):
        run = tmp_path / name / "run_0"
        (run / "checkpoint_1").mkdir(parents=True)
        torch.save(nn.Sequential(nn.Linear(width, out)).state_dict(), run / "checkpoint_1" / "checkpoints")
        (run / "params.json").write_text(json.dumps({"model::activation": "relu", "seed": 0}))
        ingest_modelzoo(tmp_path / "lake", tmp_path / name, zoo=name)
    lake = wl.open_lake(tmp_path / "lake")
    with pytest.raises(QueryError, match=r"zoo 'narrow' at columns 0-740 \(10x73\), zoo 'wide' at columns 0-740 "
                                         r"\(20x36\)"):
        lake.sql("SELECT wl_mse(a.w, b.w) FROM weights_fc1 a, weights_fc1 b")


def test_by_id_functions_over_rows_of_two_zoos_in_one_chunk(tmp_path: Path, mixed_dir: Path) -> None:
    """Was: over pairs of a CNN-s and a CNN-m scenario in one DuckDB chunk (any ORDER BY mixes them)
    wl_w1_by_id refused ("the ids of one call span zoos of different architectures"), though every
    row pairs models of one zoo; in file order the same query ran."""
    from weightlake.scenarios import declare_scenario

    root = tmp_path / "lake"
    shutil.copytree(mixed_dir, root)
    declare_scenario(root, "s", zoo="mnist-cnn-s", digits=range(4), sizes=range(2, 4))
    declare_scenario(root, "m", zoo="mnist-cnn-m", digits=range(4), sizes=range(2, 4))
    lake = wl.open_lake(root)
    select = ("SELECT scenario, count(*) AS n, avg(wl_w1_by_id(a_id, target_id)) AS w1, "
              "avg(wl_mse_by_id(a_id, b_id)) AS mse, avg(wl_mse_layer_by_id(a_id, b_id, 'fc1')) AS fc1 FROM ")
    mixed = lake.sql(select + "(SELECT * FROM pairs ORDER BY hash(pair_id, scenario)) GROUP BY ALL ORDER BY ALL")
    alone = [lake.sql(select + f"pairs WHERE scenario = '{s}' GROUP BY ALL") for s in ("m", "s")]
    assert mixed["scenario"].to_list() == ["m", "s"] and mixed["n"].min() > 0
    for row, one in zip(mixed.iter_rows(named=True), alone, strict=True):
        for col in ("w1", "mse", "fc1"):
            assert row[col] == pytest.approx(one[col][0], rel=1e-9), col
    m = _first_id(lake, "mnist-cnn-m")
    with pytest.raises(QueryError, match=rf"models 0 \(zoo 'mnist-cnn-s', cnn-s\) and {m} \(zoo 'mnist-cnn-m', "
                                         r"cnn-m\) are of different architectures"):
        lake.sql(f"SELECT wl_w1_by_id(0, {m})")


def test_a_checkpoint_tree_of_another_architecture_points_to_arch(tmp_path: Path) -> None:
    """Was: every file refused ("architecture 'cnn-s' expects (6, 8, 5, 5)") with no word on --arch."""
    from weightlake.errors import IngestError
    from weightlake.ingest.checkpoints import ingest_checkpoints

    _cnn_m_tree(tmp_path / "checkpoints")
    with pytest.raises(IngestError, match=r"expects \(6, 8, 5, 5\); checkpoints of another architecture need --arch"):
        ingest_checkpoints(tmp_path / "lake", tmp_path / "checkpoints", zoo="z", init="kaiming_uniform", workers=1,
                           rejects_path=tmp_path / "rejects.csv")


def test_correlation_figures_of_zoos_of_two_architectures(tmp_path: Path, mixed_dir: Path) -> None:
    """Was: the default (every zoo) drew each zoo's figures, then failed on the cross-zoo ones ("zoos ... have
    different architectures") with the files written and none listed; explicit --zoo of both did the same."""
    from weightlake.compute.analyses import analyze_correlations
    from weightlake.compute.figures import correlation_figures

    root = tmp_path / "lake"
    shutil.copytree(mixed_dir, root)
    for zoo in ("mnist-cnn-s", "mnist-cnn-m"):
        analyze_correlations(root, zoo=zoo, against=["epoch"], features="both")
    with pytest.raises(QueryError, match=r"zoo 'mnist-cnn-s' \(cnn-s, 2,464 parameters\), zoo 'mnist-cnn-m' "
                                         r"\(cnn-m, 3,766 parameters\)"):
        correlation_figures(root, tmp_path / "given", zoos=["mnist-cnn-s", "mnist-cnn-m"])
    assert not (tmp_path / "given").exists()
    paths = correlation_figures(root, tmp_path / "every")
    names = {p.name for p in paths}
    assert any(n.startswith("mnist-cnn-m-") for n in names) and any(n.startswith("mnist-cnn-s-") for n in names)
    assert not any(n.startswith("cross-zoo") for n in names)
    assert sorted(names) == sorted(p.name for p in (tmp_path / "every").iterdir())


def test_info_gives_each_zoos_architecture_and_width(mixed_dir: Path) -> None:
    """Was: 'zoo mlp: 6 models, arch inferred-1c9d758c, 1 segments', nothing to tell its size by."""
    out = CliRunner().invoke(main, ["info", "--lake", str(mixed_dir)])
    assert out.exit_code == 0, out.output
    assert "zoo mnist-cnn-m: 24 models, arch cnn-m (3,766 parameters), 1 segments" in out.output
    assert "zoo mnist-cnn-s: 396 models, arch cnn-s (2,464 parameters)" in out.output
    assert "zoo mlp: 6 models, arch inferred-" in out.output and " (2,464 parameters)" in out.output


def test_sql_of_one_zoo_in_a_mixed_lake(mixed_dir: Path) -> None:
    """Was: no way to ask one zoo's `weights` in SQL in a lake of several architectures."""
    lake = wl.open_lake(mixed_dir)
    ids, rows = lake.zoo_weights("mnist-cnn-m")
    got = lake.sql("SELECT model_id, wl_l2(w) AS n FROM weights ORDER BY model_id", zoo="mnist-cnn-m")
    assert got["model_id"].to_list() == ids.tolist()
    np.testing.assert_allclose(got["n"].to_numpy(), np.linalg.norm(rows.astype(np.float64), axis=1), rtol=1e-5)
    out = CliRunner().invoke(main, ["sql", "SELECT count(*) AS n FROM weights_fc1", "--zoo", "mlp", "--format", "csv",
                                    "--lake", str(mixed_dir)])
    assert out.exit_code == 0 and out.output.split() == ["n", "6"], out.output
    with pytest.raises(wl.errors.NoSuchTableError, match="no zoo 'nope'"):
        lake.sql("SELECT count(*) FROM models", zoo="nope")
    with lake.connect(zoo="mlp") as con:
        assert con.sql("SELECT count(*) FROM weights").fetchall() == [(6,)]


def test_a_zoo_decoded_on_the_handle_is_not_decoded_again_for_its_sql(mixed_dir: Path) -> None:
    lake = wl.open_lake(mixed_dir)
    _, rows = lake.zoo_weights("mnist-cnn-m")
    with lake.connect(zoo="mnist-cnn-m") as con:
        assert con.sql("SELECT count(*) FROM weights").fetchall() == [(24,)]
    assert lake._cache["zoo:mnist-cnn-m"] is rows and len([k for k in lake._cache if k.startswith("zoo:")]) == 1


def test_a_job_file_ingests_zoos_of_two_architectures(tmp_path: Path, mixed_dir: Path) -> None:
    """Was: a job's arch = "cnn-m.json" failed ("unknown architecture '.../cnn-m.json'") after the first
    source had committed, though --arch takes a JSON file; an export into a folder not yet made failed on
    '.cnn-m.csv.partial'."""
    from weightlake.errors import IngestError
    from weightlake.ingest.csv_zoo import export_csv
    from weightlake.ingest.run import run_job

    (tmp_path / "cnn-m.json").write_text(CNN_M.to_json())
    _cnn_m_tree(tmp_path / "checkpoints")
    export_csv(wl.open_lake(mixed_dir), tmp_path / "Merged zoo.csv", zoo="mnist-cnn-s")
    job = tmp_path / "job.toml"
    job.write_text(f"""
[[source]]
kind = "csv"
path = "{tmp_path / 'Merged zoo.csv'}"
zoo = "mnist-cnn-s"
init = "kaiming_uniform"

[[source]]
kind = "checkpoints"
path = "{tmp_path / 'checkpoints'}"
zoo = "mnist-cnn-m"
init = "kaiming_uniform"
arch = "{tmp_path / 'cnn-m.json'}"

[[export]]
zoo = "mnist-cnn-m"
out = "{tmp_path / 'out' / 'cnn-m.csv'}"
""")
    list(run_job(job, tmp_path / "lake"))
    got = wl.open_lake(tmp_path / "lake")
    assert got.arch("mnist-cnn-m") == CNN_M and got.manifest.zoo("mnist-cnn-s").n_models == 396
    header = (tmp_path / "out" / "cnn-m.csv").read_text().splitlines()[0].split(",")
    assert len(header) == 17 + CNN_M.n_params + 2 and header[-3] == f"bias {CNN_M.n_params - 1}"
    assert not list((tmp_path / "out").glob(".*partial"))
    bad = tmp_path / "bad.toml"
    bad.write_text(job.read_text().replace(str(tmp_path / "cnn-m.json"), str(tmp_path / "nope.json")))
    with pytest.raises(IngestError, match=r"\[\[source\]\] #2: arch '.*nope.json': .*cannot read"):
        list(run_job(bad, tmp_path / "fresh"))
    assert not (tmp_path / "fresh").exists()  # refused before the first source committed


def test_neuron_permutation_refuses_an_architecture_it_cannot_chain(tmp_path: Path, mixed_dir: Path) -> None:
    """Was: loader(augment=Augment(permute=True)) over pairs of a zoo with a batch norm died with
    'IndexError: tuple index out of range' at the first batch."""
    from weightlake.arch import infer_architecture
    from weightlake.ingest.checkpoints import ingest_checkpoints
    from weightlake.scenarios import declare_scenario
    from weightlake.serve.augment import Augment

    def net() -> nn.Module:
        return nn.Sequential(nn.Conv2d(1, 4, 5), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 24 * 24, 10))

    arch = infer_architecture({k: v.shape for k, v in net().state_dict().items()})
    for i, label in enumerate(("[0, 1]", "[2, 3]", "[0, 1, 2, 3]")):
        torch.manual_seed(i)
        (tmp_path / "bn" / label / "relu").mkdir(parents=True)
        torch.save({"epoch": 11, "model_state_dict": net().state_dict()},
                   tmp_path / "bn" / label / "relu" / "checkpoint epoch 11.pth")
    root = tmp_path / "lake"
    shutil.copytree(mixed_dir, root)
    ingest_checkpoints(root, tmp_path / "bn", zoo="bn", init="kaiming_uniform", arch=arch, workers=1, bins=(11,))
    declare_scenario(root, "bn-pairs", zoo="bn", digits=range(4), sizes=range(2, 3))
    pairs = wl.open_lake(root).pairs("bn-pairs", "test")
    assert next(iter(pairs.loader(batch_size=2)))["x1"].shape == (2, arch.n_params)
    layers = next(iter(pairs.loader(batch_size=2, view="layers")))["x1"]
    assert tuple(layers["1"].shape) == (2, 4)  # the batch norm's weight
    with pytest.raises(ArchitectureError, match=r"cannot permute the neurons of architecture 'inferred-\w+': it has "
                                                r"'1' \(batchnorm\) layers"):
        pairs.loader(batch_size=2, augment=Augment(permute=True))
    assert next(iter(pairs.loader(batch_size=2, augment=Augment(noise=0.1))))["x1"].shape == (2, arch.n_params)


def test_tracking_csvs_take_the_architecture_of_their_scenarios_zoo(tmp_path: Path, mixed_dir: Path,
                                                                     tree_state) -> None:
    """Was: ingest-tracking always read CNN-s vectors, and its error said "pass arch=", which the CLI
    did not take; a CNN-m scenario's tracking CSV could not be ingested from the command line."""
    from weightlake.experiments.tracking import write_tracking_csv
    from weightlake.scenarios import declare_scenario

    root = tmp_path / "lake"
    shutil.copytree(mixed_dir, root)
    declare_scenario(root, "m", zoo="mnist-cnn-m", digits=range(4), sizes=range(2, 4))
    rng = np.random.default_rng(0)
    gt, pd = (rng.standard_normal((3, CNN_M.n_params)).astype(np.float32) for _ in range(2))
    csv = write_tracking_csv(tmp_path / "Tracking" / "AE epoch 3.csv", gt, pd)
    run = CliRunner().invoke
    before = tree_state(root)
    out = run(main, ["experiments", "ingest-tracking", str(csv), "--scenario", "other", "--lake", str(root)])
    assert out.exit_code == 1 and "architectures ['cnn-m', 'cnn-s', 'inferred-" in out.output, out.output
    assert "declares no scenario 'other'" in out.output and "--arch" in out.output
    assert tree_state(root) == before
    out = run(main, ["experiments", "ingest-tracking", str(csv), "--scenario", "m", "--lake", str(root)])
    assert out.exit_code == 0, out.output
    kept = wl.open_lake(root).sql("SELECT count(*) AS n FROM evaluations WHERE scenario = 'm'")
    assert kept["n"][0] == 1
    arch_file = tmp_path / "cnn-m.json"
    arch_file.write_text(json.dumps(CNN_M.to_dict()))
    out = run(main, ["experiments", "ingest-tracking", str(csv), "--scenario", "other", "--arch", str(arch_file),
                     "--lake", str(root)])
    assert out.exit_code == 0, out.output
