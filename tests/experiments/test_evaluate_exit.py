"""`weightlake experiments evaluate` exits 1 when some checkpoints were not evaluated, and commits the others."""

from __future__ import annotations

from pathlib import Path

import polars.selectors as cs
import pytest
import torch
from click.testing import CliRunner

from weightlake import open_lake
from weightlake.cli import main
from weightlake.experiments.merger import MergerConfig, TransformerAE
from weightlake.ingest.csv_zoo import ingest_csv
from weightlake.scenarios import declare_scenario
from weightlake.zoo.synthetic import all_labels, write_synthetic_csv


@pytest.fixture()
def lab(tmp_path: Path) -> tuple[Path, Path]:
    """A synthetic zoo with scenario 's', and Experiments/ with one good, one truncated and one checkpoint
    whose head count nothing records."""
    write_synthetic_csv(tmp_path / "zoo.csv", labels=all_labels(range(4), range(2, 5)), activations=("gelu",),
                        epochs=(11,), seed=2)
    ingest_csv(tmp_path / "lake", tmp_path / "zoo.csv", zoo="z", init="kaiming_uniform")
    declare_scenario(tmp_path / "lake", "s", zoo="z", digits="0-3", sizes="2", overlap=0, epochs=[11])
    root = tmp_path / "Experiments"
    torch.manual_seed(0)
    for folder in ("run_h2", "plain"):
        path = root / folder / "AE epoch mse val 1.pth"
        path.parent.mkdir(parents=True)
        torch.save({"epoch": 1, "model_state_dict": TransformerAE(MergerConfig(16, 2, 16, 1, 8)).state_dict()}, path)
    good = (root / "run_h2" / "AE epoch mse val 1.pth").read_bytes()
    (root / "broken").mkdir()
    (root / "broken" / "AE epoch mse val 2.pth").write_bytes(good[: len(good) // 3])
    return tmp_path / "lake", root


def _evaluate(lake: Path, *paths: Path):
    return CliRunner().invoke(main, ["experiments", "evaluate", *map(str, paths), "--scenario", "s",
                                     "--limit-pairs", "4", "--images", "none", "--metrics", "mse",
                                     "--lake", str(lake)])


def test_some_checkpoints_not_evaluated_exit_1_and_the_others_are_committed(lab) -> None:
    """It exited 0 with a FAILED line in the middle of the output: a script could not tell."""
    lake, root = lab
    result = _evaluate(lake, root)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: 2 of 3 checkpoints not evaluated (1 failed, 1 refused)")
    assert "SELECT checkpoint, error FROM evaluations WHERE scenario = 's' AND split = 'test'" in last
    snapshot = open_lake(lake).snapshot
    assert f"the other 1 are committed in snapshot {snapshot}" in last
    rows = open_lake(lake).sql("SELECT checkpoint, error, pd_mse FROM evaluations WHERE scenario = 's' "
                               "AND split = 'test' ORDER BY checkpoint").rows(named=True)
    assert [(r["checkpoint"], r["error"] is None, r["pd_mse"] is None) for r in rows] == [
        ("broken/AE epoch mse val 2.pth", False, True), ("plain/AE epoch mse val 1.pth", False, True),
        ("run_h2/AE epoch mse val 1.pth", True, False)]


def test_every_checkpoint_evaluated_exits_0(lab) -> None:
    lake, root = lab
    result = _evaluate(lake, root / "run_h2")
    assert result.exit_code == 0, result.output
    assert "evaluated 1 of 1 checkpoints" in result.stdout and "not evaluated" not in result.output


def test_a_failed_re_evaluation_keeps_the_earlier_good_row(lab) -> None:
    """A checkpoint evaluated once, then truncated and evaluated again, lost its good row: the
    failure replaced it. The good row stays, the run says so and still exits 1."""
    lake, root = lab
    good = root / "run_h2" / "AE epoch mse val 1.pth"
    assert _evaluate(lake, good).exit_code == 0
    query = "SELECT checkpoint, error, pd_mse, evaluated_at FROM evaluations WHERE split = 'test'"
    before = open_lake(lake).sql(query).rows(named=True)
    assert len(before) == 1 and before[0]["error"] is None and before[0]["pd_mse"] is not None
    snapshot = open_lake(lake).snapshot
    other = root / "copy_h2" / "AE epoch mse val 1.pth"
    other.parent.mkdir()
    other.write_bytes(good.read_bytes())
    good.write_bytes(good.read_bytes()[:1000])
    result = _evaluate(lake, good)
    assert result.exit_code == 1 and "run_h2/AE epoch mse val 1.pth: FAILED" in result.stdout, result.output
    assert "1 checkpoints failed this time but had a successful evaluation: the earlier rows are kept" in result.stdout
    assert "nothing new to commit" in result.stdout
    assert "(1 of them kept their earlier good row: their errors are only above)" in result.stderr
    assert open_lake(lake).sql(query).rows(named=True) == before and open_lake(lake).snapshot == snapshot
    # a failure beside a new success: the success commits, the earlier good row of the failure stays
    result = _evaluate(lake, good, other)
    assert result.exit_code == 1 and open_lake(lake).snapshot == snapshot + 1, result.output
    rows = open_lake(lake).sql(query + " ORDER BY evaluated_at").rows(named=True)
    assert len(rows) == 2 and rows[0] == before[0] and rows[1]["error"] is None


def test_values_not_computed_are_null_not_nan(lab) -> None:
    """With --images none the accuracies were stored as NaN: avg(pd_accuracy) over the table was NaN."""
    lake, root = lab
    assert _evaluate(lake, root / "run_h2").exit_code == 0
    row = open_lake(lake).sql("SELECT pd_accuracy, gt_accuracy, avg(pd_accuracy) OVER () AS mean, "
                              "pd_mse FROM evaluations").rows(named=True)[0]
    assert row["pd_accuracy"] is None and row["gt_accuracy"] is None and row["mean"] is None
    assert row["pd_mse"] is not None and row["pd_mse"] == row["pd_mse"]
    floats = open_lake(lake).table("evaluations").collect().select(cs.float()).fill_null(0.0)
    assert not any(floats[c].is_nan().any() for c in floats.columns)  # no NaN left anywhere
