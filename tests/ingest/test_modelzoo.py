"""The Model Zoos / ray.tune layout: runs, epochs, metrics and config from a tree the test writes."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import weightlake as wl
from weightlake.arch import CNN_S
from weightlake.errors import IngestError
from weightlake.ingest.modelzoo import ingest_modelzoo


class _Boom:
    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):  # noqa: ANN204
        return (os.system, (f"touch {self.target}",))


def _tree(root: Path, runs: int = 3, epochs: tuple[int, ...] = (1, 2, 3)) -> dict[tuple[str, int], np.ndarray]:
    rng = np.random.default_rng(0)
    saved = {}
    for r in range(runs):
        run = root / f"NN_tune_trainable_{r:05d}_seed={r}"
        run.mkdir(parents=True)
        act = ("tanh", "relu", "gelu")[r % 3]
        (run / "params.json").write_text(json.dumps({"model::activation": act, "model::init_type": "kaiming_uniform",
                                                     "optim::lr": [1e-3, 1e-4, 0.5][r], "seed": r,
                                                     "model::dropout": 0.0, "training": {"batchsize": 32}}))
        lines = [json.dumps({"training_iteration": e, "test_acc": 0.5 + 0.1 * e + 0.01 * r, "train_loss": 2.0 / (e + 1),
                             "trial_id": f"t{r}", "done": e == epochs[-1]}) for e in (0, *epochs)]
        (run / "result.json").write_text("\n".join(lines) + "\n")
        for e in epochs:
            flat = rng.standard_normal(CNN_S.n_params).astype(np.float32)
            (run / f"checkpoint_{e}").mkdir()
            torch.save({k: torch.from_numpy(v.copy()) for k, v in CNN_S.flat_to_state_dict(flat).items()},
                       run / f"checkpoint_{e}" / "checkpoints")
            saved[(run.name, e)] = flat
    return saved


@pytest.fixture()
def tree(tmp_path):
    root = tmp_path / "zoo"
    saved = _tree(root)
    runs = sorted(p for p in root.iterdir())
    bad = runs[1] / "checkpoint_2" / "checkpoints"  # a malicious pickle
    bad.write_bytes(pickle.dumps({"module_list.0.weight": _Boom(str(tmp_path / "pwned"))}))
    short = runs[2] / "checkpoint_3" / "checkpoints"  # a truncated file
    short.write_bytes(short.read_bytes()[:700])
    del saved[(runs[1].name, 2)], saved[(runs[2].name, 3)]
    return root, saved, tmp_path / "pwned"


def test_every_readable_checkpoint_becomes_a_model_state(tree, tmp_path):
    root, saved, pwned = tree
    report = ingest_modelzoo(tmp_path / "lake", root, zoo="mz")
    assert not pwned.exists()  # the malicious pickle never ran
    assert report.rows_added == 7 and report.rows_rejected == 2
    reasons = " ".join(report.extra["rejected"])
    assert "checkpoint_2" in reasons and "checkpoint_3" in reasons
    lake = wl.open_lake(tmp_path / "lake")
    meta = lake.models("mz").collect().sort("run_id", "epoch")
    assert meta.height == 7
    for row in meta.iter_rows(named=True):
        np.testing.assert_array_equal(lake.weights_numpy([row["model_id"]])[0], saved[(row["run_id"], row["epoch"])])
        r = int(row["cfg_seed"])
        assert row["m_test_acc"] == pytest.approx(0.5 + 0.1 * row["epoch"] + 0.01 * r)
        assert row["activation"] == ("tanh", "relu", "gelu")[r] and row["init"] == "kaiming_uniform"
        assert row["accuracy"] is None  # no guess at the scale of test_acc
    assert {"cfg_optim_lr", "cfg_model_dropout", "cfg_training_batchsize", "m_train_loss"} <= set(meta.columns)
    curves = lake.sql("SELECT run_id, list(m_test_acc ORDER BY epoch) AS acc, count(*) AS n FROM models "
                      "WHERE zoo = 'mz' GROUP BY 1 ORDER BY 1")
    assert curves["n"].to_list() == [3, 2, 2]
    steps = lake.sql("SELECT a.run_id, a.epoch, array_distance(wa.w, wb.w) AS d FROM models a JOIN models b "
                     "ON a.run_id = b.run_id AND b.epoch = a.epoch + 1 JOIN weights wa ON wa.model_id = a.model_id "
                     "JOIN weights wb ON wb.model_id = b.model_id ORDER BY 1, 2")
    first = meta.filter((meta["run_id"] == steps["run_id"][0]) & (meta["epoch"] == steps["epoch"][0]))
    want = np.linalg.norm(saved[(steps["run_id"][0], steps["epoch"][0])] - saved[(steps["run_id"][0],
                                                                                 steps["epoch"][0] + 1)])
    assert first.height == 1 and steps["d"][0] == pytest.approx(want, rel=1e-5)
    runs = lake.runs("mz")
    assert runs["n_epochs"].to_list() == [3, 2, 2] and runs["epoch"].to_list()[0] == [1, 2, 3]
    assert runs["m_test_acc"].to_list() == curves["acc"].to_list()


def test_a_zoo_without_runs_says_so(tmp_path):
    from weightlake.errors import NoSuchTableError
    from weightlake.ingest.csv_zoo import ingest_csv
    from weightlake.zoo.synthetic import all_labels, write_synthetic_csv

    write_synthetic_csv(tmp_path / "z.csv", labels=all_labels()[:1], seed=0)
    ingest_csv(tmp_path / "lake", tmp_path / "z.csv", zoo="csv", init="kaiming_uniform")
    with pytest.raises(NoSuchTableError, match="records no training runs"):
        wl.open_lake(tmp_path / "lake").runs("csv")


def test_a_malformed_result_line_is_refused_and_the_lake_unchanged(tree, tmp_path):
    root, _, _ = tree
    run = sorted(root.iterdir())[0]
    with open(run / "result.json", "a") as fh:
        fh.write("{not json\n")
    with pytest.raises(IngestError, match=r"result.json.*row 5"):
        ingest_modelzoo(tmp_path / "lake", root, zoo="mz")
    assert not (tmp_path / "lake" / "_current").exists() or not wl.open_lake(tmp_path / "lake").zoos


def test_cli_ingests_and_refuses_an_empty_tree(tree, tmp_path):
    from click.testing import CliRunner

    from weightlake.cli import main

    root, _, _ = tree
    out = CliRunner().invoke(main, ["ingest", "modelzoo", str(root), "--zoo", "mz", "--lake", str(tmp_path / "l")])
    assert out.exit_code == 0, out.output
    assert "added 7 models" in out.output
    (tmp_path / "empty").mkdir()
    out = CliRunner().invoke(main, ["ingest", "modelzoo", str(tmp_path / "empty"), "--zoo", "mz",
                                    "--lake", str(tmp_path / "l")])
    assert out.exit_code == 1 and "no run folder" in out.output and "Traceback" not in out.output


def test_an_architecture_inferred_from_the_state_dicts(tmp_path):
    from torch import nn

    from weightlake.compute.analyses import analyze_spectra

    saved = {}
    for r in range(2):
        run = tmp_path / "zoo" / f"run_{r}"
        run.mkdir(parents=True)
        (run / "params.json").write_text(json.dumps({"model::activation": "relu", "seed": r}))
        for e in (1, 2):
            torch.manual_seed(10 * r + e)
            net = nn.Sequential(nn.Conv2d(3, 6, 3), nn.ReLU(), nn.Conv2d(6, 4, 3), nn.Flatten(), nn.Linear(64, 10))
            (run / f"checkpoint_{e}").mkdir()
            torch.save(net.state_dict(), run / f"checkpoint_{e}" / "checkpoints")
            saved[(run.name, e)] = torch.cat([p.detach().reshape(-1) for p in net.parameters()]).numpy()
    report = ingest_modelzoo(tmp_path / "lake", tmp_path / "zoo", zoo="tiny")
    assert report.rows_added == 4 and "conv1, conv2, fc1" in report.extra["architecture"]
    lake = wl.open_lake(tmp_path / "lake")
    arch = lake.arch("tiny")
    assert arch.name.startswith("inferred-") and arch.n_params == 168 + 220 + 650
    meta = lake.models("tiny").collect()
    for row in meta.iter_rows(named=True):
        np.testing.assert_array_equal(lake.weights_numpy([row["model_id"]])[0], saved[(row["run_id"], row["epoch"])])
    ids = meta["model_id"].to_numpy()
    assert tuple(lake.layer(ids, "conv2").shape) == (4, 4, 6, 3, 3)
    done = analyze_spectra(tmp_path / "lake", zoo="tiny")
    assert done.rows == 4 * 3  # every conv2d and linear layer of every model


@pytest.mark.parametrize("bad", ["nan", "inf"])
def test_a_checkpoint_with_a_non_finite_weight_is_rejected_naming_its_key(tmp_path, bad):
    root = tmp_path / "zoo"
    saved = _tree(root, runs=1, epochs=(1, 2))
    run = next(root.iterdir())
    path = run / "checkpoint_2" / "checkpoints"
    sd = torch.load(path, weights_only=True)
    sd["module_list.9.weight"][3, 7] = float(bad)
    torch.save(sd, path)
    report = ingest_modelzoo(tmp_path / "lake", root, zoo="mz", arch=CNN_S)
    assert report.rows_rejected == 1 and report.rows_added == 1
    (reason,) = report.extra["rejected"]
    assert str(path) in reason and "'module_list.9.weight'" in reason and repr(float(bad)) in reason
    lake = wl.open_lake(tmp_path / "lake")
    ids = lake.models().collect()["model_id"].to_numpy()
    assert np.array_equal(lake.weights_numpy(ids)[0], saved[(run.name, 1)])


def test_verify_of_a_zoo_without_class_sets_claims_no_slots(tree, tmp_path):
    """verify said 'slots ...: 7 filled of 0 (0 missing)' for a zoo whose models record no classes."""
    from weightlake.verify import verify

    ingest_modelzoo(tmp_path / "lake", tree[0], zoo="mz")
    report = verify(wl.open_lake(tmp_path / "lake"))
    text = "\n".join(report.lines())
    assert report.ok and "none to fill, the zoo records no class sets" in text and "filled of" not in text, text


def test_csv_export_of_a_model_zoos_tree_is_one_clear_line(tree, tmp_path):
    """Was: `export csv` over a Model Zoos zoo (classes null) died with a TypeError traceback."""
    from click.testing import CliRunner

    from weightlake.cli import main

    lake = str(tmp_path / "lake [mz]")
    params = sorted(tree[0].iterdir())[0] / "params.json"
    params.write_text(params.read_text().replace('"tanh"', '"ELU"'))  # no one-hot column for it
    ingest_modelzoo(lake, tree[0], zoo="mz")
    out = tmp_path / "export dir" / "Merged zoo.csv"
    result = CliRunner().invoke(main, ["export", "csv", "-o", str(out), "--lake", lake])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    error = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and not out.exists()
    assert ("of the 7 models of zoo 'mz' to export, 7 have no class set (classes is null), e.g. model 0; 3 have an "
            "activation outside ['gelu', 'relu', 'silu', 'tanh', 'sigmoid', 'leakyrelu'], e.g. model 0: a CSV zoo "
            "row needs a label and one of its activations") in error[0]
    assert "`weightlake export safetensors`" in error[0] and "--where \"classes IS NOT NULL AND activation IN (" in error[0]


def test_the_report_points_to_the_rejected_checkpoints_it_lists(tree, tmp_path):
    """Was: '2 bad checkpoints skipped; see None' (this layout writes no rejects file)."""
    from click.testing import CliRunner

    from weightlake.cli import main

    result = CliRunner().invoke(main, ["ingest", "modelzoo", str(tree[0]), "--zoo", "mz", "--lake",
                                       str(tmp_path / "lake [mz]")])
    assert result.exit_code == 0, result.output
    assert "2 bad checkpoints skipped; listed below under 'rejected'" in result.output and "None" not in result.output
    rejected = [line for line in result.output.splitlines() if line.startswith("  rejected: ")]
    assert len(rejected) == 2 and "checkpoint_2" in rejected[0] and "checkpoint_3" in rejected[1]


def test_more_than_twenty_rejected_checkpoints_are_counted(tmp_path):
    root = tmp_path / "zoo"
    _tree(root, runs=1, epochs=tuple(range(1, 24)))
    run = next(root.iterdir())
    for e in range(2, 24):  # 22 truncated files, one good one
        path = run / f"checkpoint_{e}" / "checkpoints"
        path.write_bytes(path.read_bytes()[:700])
    report = ingest_modelzoo(tmp_path / "lake", root, zoo="mz", arch=CNN_S)
    assert report.rows_rejected == 22 and report.rows_added == 1
    assert len(report.extra["rejected"]) == 21 and report.extra["rejected"][-1] == "... and 2 more (not listed)"
