"""CLI: weightlake experiments scan / evaluate / ingest-tracking / report, and SQL over the results."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from weightlake.cli import main
from weightlake.experiments.merger import MergerConfig, TransformerAE
from weightlake.experiments.tracking import write_tracking_csv
from weightlake.ingest.csv_zoo import ingest_csv
from weightlake.lake import open_lake
from weightlake.scenarios import declare_scenario
from weightlake.zoo.synthetic import all_labels, write_synthetic_csv

ZOO = "mnist-cnn-s"


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic zoo over digits 0-3 with scenario 's' (6 test pairs), two checkpoints and a tracking file."""
    tmp = tmp_path_factory.mktemp("cli-exp")
    write_synthetic_csv(tmp / "zoo.csv", labels=all_labels(range(4), range(2, 5)), activations=("gelu",),
                        epochs=(11, 16), seed=2)
    ingest_csv(tmp / "lake", tmp / "zoo.csv", zoo=ZOO, init="kaiming_uniform")
    declare_scenario(tmp / "lake", "s", zoo=ZOO, digits="0-3", sizes="2", overlap=0, epochs=[11])
    for i, (folder, config) in enumerate((("run_h2", MergerConfig(16, 2, 16, 1, 8)),
                                          ("run_h4", MergerConfig(16, 4, 32, 1, 8)))):
        torch.manual_seed(i)
        path = tmp / "Experiments" / folder / f"AE epoch mse val {i + 1}.pth"
        path.parent.mkdir(parents=True)
        torch.save({"epoch": i + 1, "model_state_dict": TransformerAE(config).state_dict()}, path)
    rng = np.random.default_rng(0)
    gt = (rng.standard_normal((6, 2464)) * 0.1).astype(np.float32)
    write_tracking_csv(tmp / "Experiments" / "run_h2" / "Tracking" / "AE epoch mse 1.csv", gt,
                       (gt * 0.5).astype(np.float32), (gt * 0.9).astype(np.float32),
                       values=[("Loss", rng.random(6)), ("Loss", rng.random(6))], steps=rng.random((6, 2)))
    return tmp


@pytest.fixture()
def work(tmp_path: Path, base: Path, monkeypatch: pytest.MonkeyPatch):
    """A private copy of the lake and Experiments/, as the current folder; one torch thread meanwhile."""
    shutil.copytree(base / "lake", tmp_path / "lake")
    shutil.copytree(base / "Experiments", tmp_path / "Experiments")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WEIGHTLAKE_LAKE", str(tmp_path / "lake"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tmp_path
    torch.set_num_threads(threads)


def run(*args: str) -> str:
    """stdout of a successful command (progress bars and notes go to stderr)."""
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_help_lists_commands_and_examples() -> None:
    text = run("experiments", "--help")
    for command in ("scan", "evaluate", "ingest-tracking", "report"):
        assert command in text
    assert "weightlake experiments evaluate Experiments/ --scenario type1-m0" in text
    assert "--limit-pairs 2000" in run("experiments", "evaluate", "--help")


def test_scan_lists_checkpoints_and_tracking(work: Path) -> None:
    rows = json.loads(run("experiments", "scan", "--format", "json"))  # default root ./Experiments
    kinds = sorted((Path(r["path"]).name, r["kind"], r["heads_from"]) for r in rows)
    assert kinds == [("AE epoch mse 1.csv", "tracking", None), ("AE epoch mse val 1.pth", "checkpoint", "run_dir_name"),
                     ("AE epoch mse val 2.pth", "checkpoint", "run_dir_name")]
    assert any(r["config"] and r["config"].startswith("d_model=16 heads=4") for r in rows)


def test_evaluate_then_sql_then_report(work: Path) -> None:
    out = run("experiments", "evaluate", "--scenario", "s", "--split", "test", "--limit-pairs", "4",
              "--images", "none", "--metrics", "mse,w1,cosine")
    assert "evaluated 2 of 2 checkpoints on s/test: 4 pairs" in out
    out = run("experiments", "ingest-tracking", "Experiments", "--scenario", "s")
    assert "run_h2/Tracking/AE epoch mse 1.csv: 6 rows, blocks GT/PD/FN" in out and "['Loss']" in out
    csv = run("sql", "SELECT checkpoint, loss, epoch, pd_mse, pd_w1, fn_w1, collapsed FROM evaluations "
                     "ORDER BY pd_w1", "--format", "csv")
    lines = csv.strip().splitlines()
    assert lines[0] == "checkpoint,loss,epoch,pd_mse,pd_w1,fn_w1,collapsed" and len(lines) == 4
    assert sum(",," not in line.split(",", 4)[-1] for line in lines[1:]) >= 1  # the tracking row has fn_w1
    by_metric = run("query", "run", "evaluations_by_metric", "--param", "metric=w1", "--format", "json")
    assert {r["layer"] for r in json.loads(by_metric)} == {"whole", "conv1", "conv2", "conv3", "fc1", "fc2"}
    out = run("experiments", "report", "-o", "report.md", "--scenario", "s")
    assert "wrote report.md (3 sources" in out
    assert (work / "report_plots" / "rank_heatmap.png").exists()
    assert "| run_h2/AE epoch mse val 1.pth |" in (work / "report.md").read_text()


def test_user_errors_are_one_line(work: Path) -> None:
    result = CliRunner().invoke(main, ["experiments", "evaluate", "Experiments", "--scenario", "nope",
                                       "--images", "none"])
    assert result.exit_code == 1 and result.output.splitlines()[-1].startswith("error: no scenario 'nope'")
    assert "Traceback" not in result.output and not result.stdout
    result = CliRunner().invoke(main, ["experiments", "report", "-o", "r.md"],
                                env={"WEIGHTLAKE_LAKE": str(work / "empty")})
    assert result.exit_code == 1 and "error:" in result.output
    assert open_lake(work / "lake").tables == ["pairs", "scenarios"]


def test_unknown_heads_refused_or_assumed_and_shown(work: Path) -> None:
    torch.manual_seed(9)
    path = work / "Experiments" / "plain" / "AE epoch mse val 3.pth"
    path.parent.mkdir()
    torch.save({"epoch": 3, "model_state_dict": TransformerAE(MergerConfig(16, 2, 16, 1, 8, gated_attention=True))
                .state_dict()}, path)
    result = CliRunner().invoke(main, ["experiments", "scan", "--format", "json"])
    assert result.exit_code == 0 and "1 with no recorded head count" in result.stderr and "--assume-heads" in \
        result.stderr
    (row,) = [r for r in json.loads(result.stdout) if "plain" in r["path"]]
    assert (row["heads_from"], row["n_heads"], row["gated_attention"], row["d_model"]) == ("unknown", None, True, 16)
    refused = CliRunner().invoke(main, ["experiments", "evaluate", str(path), "--scenario", "s", "--limit-pairs", "4",
                                        "--images", "none", "--metrics", "mse"])
    assert refused.exit_code == 1, refused.output  # nothing was evaluated for it: not a success
    assert "plain/AE epoch mse val 3.pth: REFUSED" in refused.stdout and "--assume-heads N" in refused.stdout
    out = run("experiments", "evaluate", str(path), "--scenario", "s", "--limit-pairs", "4", "--images", "none",
              "--metrics", "mse", "--assume-heads", "2")
    assert "heads_from=assumed (n_heads=2)" in out
    rows = json.loads(run("sql", "SELECT checkpoint, heads_source FROM evaluations", "--format", "json"))
    assert rows == [{"checkpoint": "plain/AE epoch mse val 3.pth", "heads_source": "assumed"}]
