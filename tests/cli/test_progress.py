"""Progress off a terminal: periodic one-line counts and rate on every long step (issue 9, case 12)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from weightlake.cli import main
from weightlake.cli.progress import Progress, format_count


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture()
def every_update(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEIGHTLAKE_PROGRESS_SECONDS", "0")


def test_lines_off_a_terminal(every_update) -> None:
    out = io.StringIO()
    with Progress("evaluate", 4, "checkpoints", stream=out) as p:
        for i in range(1, 5):
            p.callback(i, 4, f"ck{i}")
    lines = out.getvalue().splitlines()
    assert lines[0] == "evaluate: started, 4 checkpoints to do"
    assert re.fullmatch(r"evaluate: 2/4 checkpoints \(50 %\), [\d.,]+ checkpoints/s, \d+ s elapsed, about \d+ s left",
                        lines[2]), lines[2]
    assert lines[-1].startswith("evaluate: done, 4 checkpoints in ") and lines[-1].endswith("checkpoints/s)")


def test_lines_are_throttled_and_unknown_totals_show_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEIGHTLAKE_PROGRESS_SECONDS", "3600")
    out = io.StringIO()
    with Progress("export csv", None, "models", stream=out) as p:
        for _ in range(1000):
            p.update(1)
    assert out.getvalue().splitlines() == ["export csv: started", out.getvalue().splitlines()[1]]
    assert out.getvalue().splitlines()[1].startswith("export csv: done, 1,000 models in ")
    assert format_count(3 << 20, "bytes") == "3.0 MB"
    assert (format_count(1, "tasks"), format_count(2, "tasks"), format_count(1, "bytes")) == ("1 task", "2 tasks", "1 B")


def test_a_bar_on_a_terminal_and_nothing_when_off(monkeypatch: pytest.MonkeyPatch) -> None:
    tty = _Tty()
    with Progress("train", 3, "models", stream=tty) as p:
        p.update(3)
    assert "train" in tty.getvalue() and "done," not in tty.getvalue()
    monkeypatch.setenv("WEIGHTLAKE_PROGRESS", "off")
    quiet = io.StringIO()
    with Progress("train", 3, stream=quiet) as p:
        p.update(3)
    assert quiet.getvalue() == ""


def test_a_failing_step_prints_no_done_line(every_update) -> None:
    out = io.StringIO()
    with pytest.raises(ValueError), Progress("ingest csv", 10, "bytes", stream=out) as p:
        p.advance_to(5)
        raise ValueError
    assert "done" not in out.getvalue() and "5 B of 10 B (50 %)" in out.getvalue()


def test_cli_steps_print_counts_off_a_terminal(every_update, small_csv: Path, tmp_path: Path) -> None:
    """CI logs showed only a bare word ('ingest') for the whole step."""
    lake = str(tmp_path / "lake")
    result = CliRunner().invoke(main, ["ingest", "csv", str(small_csv), "--zoo", "z", "--init", "normal",
                                       "--lake", lake])
    assert result.exit_code == 0, result.output
    assert re.search(r"ingest csv: [\d.]+ [kM]?B of [\d.]+ [kM]?B \(\d+ %\), [\d.]+ [kM]?B/s", result.stderr)
    assert "ingest csv: done" in result.stderr
    steps = {
        "export csv": ["export", "csv", "-o", str(tmp_path / "out.csv"), "--where", "epoch = 11"],
        "analyze spectra": ["analyze", "spectra", "--layers", "fc2"],
        "analyze correlations": ["analyze", "correlations", "--against", "epoch", "--features", "aggregates",
                                 "--methods", "pearson"],
        "verify": ["verify"],
    }
    logs = {}
    for label, args in steps.items():
        result = CliRunner().invoke(main, [*args, "--lake", lake])
        assert result.exit_code == 0, (label, result.output)
        assert re.search(rf"^{label}: done, [\d,]+ \w+ in \d+ s \(", result.stderr, re.M), (label, result.stderr)
        logs[label] = result.stderr
    assert "export csv: done, 72 models in" in logs["export csv"]  # 432 rows / 6 epochs
    assert "verify: started, 432 models to do" in logs["verify"]
    assert re.search(r"analyze correlations: 1/1 stage \(100 %\)", logs["analyze correlations"])


def test_zoo_train_and_checkpoint_ingest_print_counts(every_update, tmp_path: Path) -> None:
    from weightlake.zoo.idx import KNOWN_DATASETS

    if not KNOWN_DATASETS["fashion-mnist"][0].is_dir():
        pytest.skip("needs dataset-fashion-mnist")
    out = tmp_path / "ckpt"
    result = CliRunner().invoke(main, ["zoo", "train", "--digits", "0-2", "--sizes", "2", "--out", str(out),
                                       "--subsample", "20", "--max-epochs", "1", "--checkpoint-epochs", "0",
                                       "--min-accuracy", "-1", "--workers", "1", "--lr", "0.001"])
    assert result.exit_code == 0, result.output
    assert re.search(r"^zoo train: 2/3 models \(67 %\), ", result.stderr, re.M), result.stderr
    assert "zoo train: done, 3 models in" in result.stderr
    result = CliRunner().invoke(main, ["ingest", "checkpoints", str(out), "--zoo", "z", "--workers", "1",
                                       "--lake", str(tmp_path / "lake"), "--rejects", str(tmp_path / "r.csv")])
    assert result.exit_code == 0, result.output
    assert "ingest checkpoints: done, 3 files in" in result.stderr


def test_job_steps_report_progress(every_update, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from weightlake.zoo.idx import KNOWN_DATASETS

    if not KNOWN_DATASETS["fashion-mnist"][0].is_dir():
        pytest.skip("needs dataset-fashion-mnist")
    monkeypatch.chdir(tmp_path)
    job = tmp_path / "job.toml"
    job.write_text('[train]\ndigits = "0-2"\nsizes = "2"\nactivations = "relu"\ninits = "kaiming_uniform"\n'
                   'out = "ck"\nsubsample = 20\nmax_epochs = 2\ncheckpoint_epochs = "0-1"\nmin_accuracy = -1\n'
                   'workers = 1\nlr = 0.001\n\n'
                   '[[source]]\nkind = "checkpoints"\npath = "ck"\nzoo = "z"\n\n'  # bins: the trainer's record
                   '[[export]]\nzoo = "z"\nout = "out.csv"\n')
    result = CliRunner().invoke(main, ["ingest", "run", str(job), "--lake", str(tmp_path / "lake")])
    assert result.exit_code == 0, result.output
    assert "added 6 models" in result.stdout and "epoch bins: 0,1 (the trainer's" in result.stdout
    for line in ("zoo train: done, 3 models in", "ingest checkpoints ck: done, 6 files in",
                 "export csv out.csv: done, 6 models in"):
        assert line in result.stderr, result.stderr
