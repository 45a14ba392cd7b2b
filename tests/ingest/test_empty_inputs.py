"""Empty is an error, not success: header-only CSVs, filters that match nothing, trees that fill no
epoch bin, skip modes that leave nothing (issue 9, case 8)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

import weightlake as wl
from weightlake.arch import EPOCH_BINS
from weightlake.cli import main
from weightlake.errors import IngestError
from weightlake.ingest.checkpoints import ingest_checkpoints, scan_checkpoint_tree
from weightlake.ingest.csv_zoo import ingest_csv
from weightlake.ingest.trainer_records import trainer_bins, trainer_records


def _snapshot_files(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_header_only_csv_is_refused(tmp_path, small_csv):
    header = tmp_path / "header.csv"
    header.write_text(small_csv.read_text().splitlines()[0] + "\n")
    with pytest.raises(IngestError, match="header.csv.*header but no data rows"):
        ingest_csv(tmp_path / "lake", header, zoo="z", init="normal")
    result = CliRunner().invoke(main, ["ingest", "csv", str(header), "--zoo", "z", "--init", "normal",
                                       "--lake", str(tmp_path / "lake")])
    assert result.exit_code == 1 and "no data rows" in result.output and "Traceback" not in result.output


def test_skip_that_rejects_every_row_commits_nothing(lake_copy, tmp_path, small_csv):
    lines = small_csv.read_text().splitlines()
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join([lines[0], *(line.replace(",", ",x", 1) for line in lines[1:4])]) + "\n")
    before = _snapshot_files(lake_copy)
    with pytest.raises(IngestError, match="rejected all 3 rows, so nothing is committed"):
        ingest_csv(lake_copy, bad, zoo="other", init="normal", on_error="skip", rejects_path=tmp_path / "r.csv")
    assert (tmp_path / "r.csv").read_text().count("\n") == 4  # header + the three rows
    assert _snapshot_files(lake_copy) == before


def test_export_where_matching_nothing_says_what_the_zoo_holds(small_lake_dir, tmp_path):
    out = tmp_path / "out.csv"
    result = CliRunner().invoke(main, ["export", "csv", "--where", "init = 'kaiming_unifrom'", "-o", str(out),
                                       "--lake", str(small_lake_dir)])
    assert result.exit_code == 1, result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("error: no models of zoo 'mnist-cnn-s' match --where \"init = 'kaiming_unifrom'\"")
    assert "inits in this zoo: ['kaiming_uniform']" in line and "the zoo holds 432 models" in line
    assert not out.exists()


def test_trainer_bins_are_read_from_its_records(zoo_b):
    records = trainer_records(scan_checkpoint_tree(zoo_b.out))
    assert len(records) == 8 and trainer_bins(records) == (0, 1, 2)
    assert trainer_bins([{"config": {"recipe": {"checkpoint_epochs": None, "epochs_max": 40}}}]) == EPOCH_BINS
    assert trainer_bins([]) is None


def test_checkpoints_that_fill_no_bin_are_an_error(zoo_b, tmp_path):
    """The trainer's output (epochs 0-2) against the CSV zoo's bins filled 0 slots, and exit 0."""
    lake = tmp_path / "lake"
    with pytest.raises(IngestError, match=r"no checkpoint fills an epoch bin.*epochs \[0, 1, 2\].*"
                                          r"bins \[11, 16, 21, 26, 31, 36\].*--epoch-bins 0-2"):
        ingest_checkpoints(lake, zoo_b.out, zoo="z", bins=EPOCH_BINS)
    assert not wl.open_lake(lake, create=True).zoos
    result = CliRunner().invoke(main, ["ingest", "checkpoints", str(zoo_b.out), "--zoo", "z", "--lake", str(lake),
                                       "--epoch-bins", "11,16", "--rejects", str(tmp_path / "rej.csv")])
    assert result.exit_code == 1 and "no checkpoint fills an epoch bin" in result.output
    result = CliRunner().invoke(main, ["ingest", "checkpoints", str(zoo_b.out), "--zoo", "z", "--lake", str(lake),
                                       "--rejects", str(tmp_path / "rej.csv")])  # bins from the trainer's records
    assert result.exit_code == 0, result.output
    assert "epoch bins: 0,1,2 (the trainer's weightlake-train.json" in result.output
    assert wl.open_lake(lake).models().collect().height == 24


def test_tracking_skip_that_leaves_nothing_commits_nothing(tmp_path):
    from weightlake.experiments.tracking import ingest_tracking

    folder = tmp_path / "Tracking"
    folder.mkdir()
    (folder / "a.csv").write_text("not,a,tracking,file\n1,2,3,4\n")
    lake = tmp_path / "lake"
    with pytest.raises(IngestError, match="every one of the 1 tracking files failed, nothing committed"):
        ingest_tracking(lake, folder, on_error="skip")
    assert not lake.exists()  # nothing committed, and no empty lake left behind
    (tmp_path / "empty").mkdir()
    with pytest.raises(IngestError, match="no tracking CSVs under"):
        ingest_tracking(lake, tmp_path / "empty")


def test_a_tree_whose_every_checkpoint_is_refused_says_so(tmp_path):
    """Every file truncated: the error names the refusal, not --epoch-bins (other bins fill nothing either)."""
    import torch

    from weightlake.zoo.cnn import build_cnn

    root = tmp_path / "zoo"
    for label in ("[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]", "[3, 7]"):
        model_dir = root / label / "gelu"
        model_dir.mkdir(parents=True)
        for e in (11, 16):
            path = model_dir / f"checkpoint epoch {e}.pth"
            torch.save({"epoch": e, "model_state_dict": build_cnn(activation="gelu").state_dict()}, path)
            path.write_bytes(path.read_bytes()[:100])
    lake = tmp_path / "lake"
    result = CliRunner().invoke(main, ["ingest", "checkpoints", str(root), "--zoo", "z", "--lake", str(lake),
                                       "--init", "kaiming_uniform", "--rejects", str(tmp_path / "rej.csv")])
    (line,) = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert result.exit_code == 1, result.output
    assert "no checkpoint could be read, nothing ingested: all 4 of 4 files were refused; first:" in line
    assert "checkpoint epoch 11.pth" in line and "--epoch-bins" not in line and "Traceback" not in line
    assert not (lake / "_snapshots").exists() or not wl.open_lake(lake).zoos
