"""Every job file shipped in ingest/ parses; the job runner trains, ingests and exports."""

from __future__ import annotations

from pathlib import Path

import pytest

from weightlake.errors import IngestError
from weightlake.ingest.jobs import load_job

JOBS = sorted((Path(__file__).resolve().parents[2] / "ingest").glob("*.toml"))


@pytest.mark.parametrize("path", JOBS, ids=[p.name for p in JOBS])
def test_shipped_jobs_parse(path):
    job = load_job(path)
    assert job.sources or job.train


def test_unknown_keys_are_named(tmp_path):
    bad = tmp_path / "j.toml"
    bad.write_text('[[source]]\nkind = "csv"\npath = "x"\nzoo = "z"\ninit = "normal"\ncolour = "red"\n')
    with pytest.raises(IngestError, match="unknown keys.*colour"):
        load_job(bad)
    bad.write_text("[[source]\n")
    with pytest.raises(IngestError, match="not valid TOML"):
        load_job(bad)


def test_train_ingest_export_job(tmp_path, monkeypatch):
    from weightlake.ingest.run import run_job
    from weightlake.zoo.idx import KNOWN_DATASETS

    if not KNOWN_DATASETS["fashion-mnist"][0].is_dir():
        pytest.skip("needs dataset-fashion-mnist")

    monkeypatch.chdir(tmp_path)
    job = tmp_path / "job.toml"
    job.write_text('[train]\ndigits = "0-2"\nsizes = "2"\nactivations = "relu"\ninits = "kaiming_uniform,xavier_normal"\n'
                   'out = "ck"\nsubsample = 40\nmax_epochs = 2\ncheckpoint_epochs = "0-1"\nmin_accuracy = -1\n'
                   'workers = 1\nlr = 0.001\n\n'
                   '[[source]]\nkind = "checkpoints"\npath = "ck"\nzoo = "z"\nepoch_bins = [0, 1]\n\n'
                   '[[export]]\nzoo = "z"\nwhere = "init = \'xavier_normal\'"\nout = "Merged_zoo_xavier_normal.csv"\n')
    lines = list(run_job(job, tmp_path / "lake"))
    assert any("trained 6 models" in line for line in lines)
    assert any("added 12 models" in line for line in lines), lines
    assert (tmp_path / "Merged_zoo_xavier_normal.csv").read_text().count("\n") == 7


def test_a_failing_source_says_what_the_job_committed_and_left(tmp_path, small_csv):
    from weightlake.ingest.run import run_job

    bad = tmp_path / "zoo [nan].csv"
    lines = small_csv.read_text().splitlines(keepends=True)
    head, row = lines[0], lines[3].split(",")
    row[20] = "nan"  # a weight column
    bad.write_text(head + lines[1] + ",".join(row))
    job = tmp_path / "job.toml"
    job.write_text(f'[[source]]\nkind = "csv"\npath = "{small_csv}"\nzoo = "z"\ninit = "kaiming_uniform"\n\n'
                   f'[[source]]\nkind = "csv"\npath = "{bad}"\nzoo = "z"\ninit = "xavier_normal"\n\n'
                   f'[[source]]\nkind = "csv"\npath = "{small_csv}"\nzoo = "y"\ninit = "kaiming_uniform"\n\n'
                   '[[export]]\nzoo = "z"\nout = "z.csv"\n')
    with pytest.raises(IngestError) as err:
        list(run_job(job, tmp_path / "lake"))
    message = str(err.value)
    assert "row 3" in message and "not a finite number" in message
    assert (f"[job stopped at source 2 of 3; committed before it: {small_csv.name} (snapshot 1); "
            "1 later source, 1 export not run]") in message
