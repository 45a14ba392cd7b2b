"""CSV zoo ingestion and export, on real files and a real lake."""

from __future__ import annotations

import csv
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import weightlake as wl
from weightlake.arch import ACTIVATIONS, CNN_S
from weightlake.errors import IngestError, QueryError
from weightlake.ingest.csv_zoo import csv_columns, csv_schema, export_csv, ingest_csv
from weightlake.verify import verify

N_ROWS = 432


def _edit(src: Path, dst: Path, line: int, column: str, value: str) -> Path:
    """Copy ``src`` with one field (1-based file line, column name) replaced."""
    with open(src, newline="") as fh:
        rows = list(csv.reader(fh))
    rows[line - 1][rows[0].index(column)] = value
    with open(dst, "w", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows)
    return dst


def _read(path: Path) -> pl.DataFrame:
    return pl.read_csv(path, schema=csv_schema(CNN_S))


def test_ingest_reads_every_row_and_column(small_csv, small_lake_dir):
    lake = wl.open_lake(small_lake_dir)
    models = lake.models().sort("model_id").collect()
    src = _read(small_csv)
    assert models.height == N_ROWS == src.height
    assert models["activation"].to_list() == [ACTIVATIONS[i] for i in
                                              src.select(ACTIVATIONS).to_numpy().argmax(axis=1)]
    assert models["accuracy"].to_list() == src["Accuracy"].to_list()
    assert models["classes"].to_list()[0] == [0, 1] and models["class_mask"][0] == 0b11
    assert (models["source_row"] == pl.int_range(2, N_ROWS + 2, eager=True)).all()
    assert np.array_equal(lake.weights(models["model_id"].to_numpy()).numpy(),
                          src.select(CNN_S.csv_columns()).to_numpy())


def test_reingest_adds_nothing_and_says_so(lake_copy, small_csv):
    before = wl.open_lake(lake_copy).snapshot
    report = ingest_csv(lake_copy, small_csv, zoo="mnist-cnn-s", init="kaiming_uniform")
    assert report.already_ingested and report.rows_added == 0
    assert wl.open_lake(lake_copy).snapshot == before
    assert "nothing added" in "\n".join(report.lines())


def test_same_rows_from_another_file_are_not_added_twice(lake_copy, small_csv, tmp_path):
    header, *rows = small_csv.read_text().splitlines()
    copy = tmp_path / "reordered.csv"
    copy.write_text("\n".join([header, *reversed(rows)]) + "\n")  # other bytes, same models
    report = ingest_csv(lake_copy, copy, zoo="mnist-cnn-s", init="kaiming_uniform")
    assert not report.already_ingested
    assert report.rows_added == 0 and report.rows_already_present == N_ROWS


def test_the_same_file_in_another_zoo_is_said(lake_copy, small_csv):
    """Allowed (a scratch copy of a zoo), but said: a lake-wide count sees each model twice."""
    report = ingest_csv(lake_copy, small_csv, zoo="scratch-copy", init="xavier_normal")
    assert report.rows_added == N_ROWS
    text = "\n".join(report.lines())
    assert ("this file is also ingested in zoo: 'mnist-cnn-s' (init kaiming_uniform): its models are in both "
            "zoos; queries over all zoos count them twice") in text
    alone = ingest_csv(lake_copy.parent / "fresh", small_csv, zoo="z", init="kaiming_uniform")
    assert "also ingested" not in "\n".join(alone.lines())


def test_a_row_repeated_within_the_file_is_not_called_already_in_the_zoo(small_csv, tmp_path):
    header, *rows = small_csv.read_text().splitlines()
    twice = tmp_path / "twice.csv"
    twice.write_text("\n".join([header, *rows[:5], rows[2]]) + "\n")
    report = ingest_csv(tmp_path / "l", twice, zoo="z", init="kaiming_uniform")
    assert (report.rows_added, report.rows_repeated, report.rows_already_present) == (5, 1, 0)
    text = "\n".join(report.lines())
    assert "1 rows repeat an earlier row of this source" in text and "already in the zoo" not in text


def test_a_repeat_with_another_accuracy_is_named(small_csv, tmp_path):
    """A repeated row giving accuracy 12.5 where the first gave another was dropped as a plain repeat,
    and which accuracy the zoo holds was not said."""
    with open(small_csv, newline="") as fh:
        header, *rows = list(csv.reader(fh))
    col = header.index("Accuracy")
    other = list(rows[2])
    first_acc, other[col] = float(other[col]), "12.5"
    assert first_acc != 12.5
    twice = tmp_path / "twice.csv"
    with open(twice, "w", newline="") as fh:
        csv.writer(fh).writerows([header, *rows[:5], rows[1], other])
    report = ingest_csv(tmp_path / "l", twice, zoo="z", init="kaiming_uniform")
    assert (report.rows_added, report.rows_repeated) == (5, 2)
    assert report.repeats_other_accuracy == [f"row 8 repeats row 4 with accuracy 12.5 (row 4: {first_acc})"]
    text = "\n".join(report.lines())
    assert "1 of them give another accuracy than the row they repeat; the first row's accuracy is kept" in text
    kept = wl.open_lake(tmp_path / "l").models("z").filter(pl.col("source_row") == 4).collect()["accuracy"]
    assert kept.to_list() == [pytest.approx(first_acc)]


def test_duplicates_across_epochs_are_reported(small_lake_dir, small_csv, tmp_path):
    report = ingest_csv(tmp_path / "l", small_csv, zoo="z", init="kaiming_uniform")
    src = _read(small_csv).select(CNN_S.csv_columns()).to_numpy()
    n_dup_rows = sum(c for c in np.unique(src, axis=0, return_counts=True)[1] if c > 1)
    assert report.duplicate_rows == n_dup_rows > 0
    assert wl.open_lake(tmp_path / "l").models().collect().height == N_ROWS  # reported, not dropped


def test_export_round_trip_preserves_every_value(small_lake_dir, small_csv, tmp_path):
    out = tmp_path / "out.csv"
    n = export_csv(wl.open_lake(small_lake_dir), out)
    assert n == N_ROWS
    assert out.read_text().splitlines()[0] == small_csv.read_text().splitlines()[0]
    a, b = _read(small_csv), _read(out)
    assert a.equals(b)
    line = out.read_text().splitlines()[1]
    assert line.startswith('"[0, 1]",1,1,0,0,0,0,0,0,0,0,1.0,0.0,0.0,0.0,0.0,0.0,')


def test_export_filter(small_lake_dir, tmp_path):
    out = tmp_path / "gelu.csv"
    n = export_csv(wl.open_lake(small_lake_dir), out, where="activation = 'gelu' AND epoch = 11")
    df = _read(out)
    assert n == df.height == 12 and (df["gelu"] == 1.0).all() and (df["epoch"] == 11).all()


def test_export_of_several_inits_is_refused_naming_them(lake_copy, tmp_path):
    """Was: with no --where, both inits went into one file, which read back as one init holding every
    (label, activation, epoch) twice."""
    from click.testing import CliRunner

    from weightlake.cli import main
    from weightlake.zoo.synthetic import all_labels, write_synthetic_csv

    other = tmp_path / "zoos [v2]" / "Merged_zoo_xavier_normal.csv"
    other.parent.mkdir()
    write_synthetic_csv(other, labels=all_labels()[:2], seed=9)
    ingest_csv(lake_copy, other, zoo="mnist-cnn-s", init="xavier_normal")
    out = tmp_path / "out [all]" / "Merged zoo.csv"
    with pytest.raises(QueryError, match=r"hold 2 initialisations: 'kaiming_uniform' \(432 models\), "
                                         r"'xavier_normal' \(72 models\); a CSV zoo file cannot record the "
                                         r"initialisation.*--where \"init = 'kaiming_uniform'\"; nothing written"):
        export_csv(wl.open_lake(lake_copy), out)
    assert not out.exists()
    result = CliRunner().invoke(main, ["export", "csv", "--where", "epoch = 11", "-o", str(out), "--lake",
                                       str(lake_copy)])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "--where \"(epoch = 11) AND init = 'kaiming_uniform'\"" in result.output and not out.exists()
    assert not out.parent.exists()  # the CLI made the folder first and left it empty
    n = export_csv(wl.open_lake(lake_copy), out, where="init = 'xavier_normal'")
    assert n == 72 and _read(out).equals(_read(other))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(arrays(np.float32, 2464, elements=st.floats(width=32, allow_nan=False, allow_infinity=False)),
       st.one_of(st.just(0.0), st.floats(1, 100, exclude_min=True)), st.sampled_from(ACTIVATIONS),
       st.lists(st.integers(0, 9), min_size=2, max_size=10, unique=True))
def test_csv_lake_csv_round_trip_property(tmp_path_factory, weights, acc, act, classes):
    d = tmp_path_factory.mktemp("rt")
    classes = sorted(classes)
    row = ["[" + ", ".join(map(str, classes)) + "]", *[1 if i in classes else 0 for i in range(10)],
           *["1.0" if a == act else "0.0" for a in ACTIVATIONS], *[str(w) for w in weights],
           repr(acc), 16]
    src = d / "in.csv"
    with open(src, "w", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows([csv_columns(), row])
    ingest_csv(d / "lake", src, zoo="z", init="normal")
    export_csv(wl.open_lake(d / "lake"), d / "out.csv")
    assert _read(src).equals(_read(d / "out.csv"))


# -- bad input: a clear error naming file, row and column; lake unchanged -----------------------
BAD_CASES = [
    ("non-numeric weight", 7, "weight 12", "abc", r"row 7, column 'weight 12'.*not a number"),
    ("NaN weight", 9, "bias 2463", "nan", r"row 9, column 'bias 2463'.*not a finite number"),
    ("inf weight", 5, "weight 1514", "inf", r"row 5, column 'weight 1514'.*not a finite"),
    ("malformed label", 4, "label", "[1, x]", r"row 4, column 'label'.*malformed label"),
    ("unsorted label", 4, "label", "[1, 0]", r"row 4, column 'label'.*malformed label"),
    ("label/one-hot disagreement", 3, "3", "1", r"row 3, column '3'.*disagree"),
    ("two activations", 6, "relu", "1.0", r"row 6, column 'gelu'.*exactly one"),
    ("NaN accuracy", 8, "Accuracy", "nan", r"row 8, column 'Accuracy': Accuracy is nan, not a number"),
    ("empty accuracy", 8, "Accuracy", "", r"row 8, column 'Accuracy': missing value"),
    ("accuracy over 100", 8, "Accuracy", "150.0", r"row 8, column 'Accuracy'.*percentage in 0\.\.100"),
    ("negative accuracy", 12, "Accuracy", "-5", r"row 12, column 'Accuracy'.*percentage in 0\.\.100"),
    ("epoch off the bins", 10, "epoch", "13",
     r"row 10, column 'epoch': epoch 13 is not one of the CSV zoo's epoch bins \[11, 16, 21, 26, 31, 36\]"),
    ("a fraction among percentages", 11, "Accuracy", "0.93",
     r"row 11, column 'Accuracy': accuracy 0.93 reads as a fraction of 1, while the CSV zoo format and this zoo's "
     r"other accuracies are percentages \(row 2: .*\); write it as a percentage \(93 if it is a fraction\)"),
]


@pytest.mark.parametrize(("name", "line", "column", "value", "message"), BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_value_aborts_with_row_and_column(lake_copy, small_csv, tmp_path, name, line, column, value, message):
    bad = _edit(small_csv, tmp_path / "bad.csv", line, column, value)
    before = wl.open_lake(lake_copy).manifest
    with pytest.raises(IngestError, match=message):
        ingest_csv(lake_copy, bad, zoo="other", init="normal")
    after = wl.open_lake(lake_copy)
    assert after.manifest == before
    assert verify(after).orphans == []  # the aborted ingest removed what it wrote


def test_wrong_header_and_column_count(tmp_path, small_csv):
    text = small_csv.read_text().splitlines()
    (tmp_path / "h.csv").write_text("\n".join([text[0].replace("weight 5,", "weight 05,")] + text[1:]) + "\n")
    with pytest.raises(IngestError, match=r"row 1, column 'weight 05'.*expected 'weight 5'"):
        ingest_csv(tmp_path / "l", tmp_path / "h.csv", zoo="z", init="normal")
    (tmp_path / "i.csv").write_text("\n".join(["," + text[0]] + ["0," + t for t in text[1:]]) + "\n")
    with pytest.raises(IngestError, match="index column"):
        ingest_csv(tmp_path / "l", tmp_path / "i.csv", zoo="z", init="normal")


def test_truncated_last_line(tmp_path, small_csv):
    data = small_csv.read_bytes()
    (tmp_path / "t.csv").write_bytes(data[: len(data) - 5000])
    with pytest.raises(IngestError, match=rf"row {N_ROWS + 1}.*(truncated|missing value)"):
        ingest_csv(tmp_path / "l", tmp_path / "t.csv", zoo="z", init="normal")
    assert not (tmp_path / "l" / "models").exists() or not any((tmp_path / "l" / "models").rglob("*.parquet"))


def test_ragged_line_in_the_middle(tmp_path, small_csv):
    lines = small_csv.read_text().splitlines()
    lines[10] = lines[10] + ",0.5"
    (tmp_path / "r.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(IngestError, match="row 11.*too many fields"):
        ingest_csv(tmp_path / "l", tmp_path / "r.csv", zoo="z", init="normal")


def test_skip_mode_writes_rejects_and_keeps_good_rows(tmp_path, small_csv):
    bad = _edit(small_csv, tmp_path / "b1.csv", 7, "weight 12", "nan")
    bad = _edit(bad, tmp_path / "b2.csv", 20, "weight 3", "oops")
    bad = _edit(bad, tmp_path / "b3.csv", 30, "label", "[7, 7]")
    report = ingest_csv(tmp_path / "l", bad, zoo="z", init="normal", on_error="skip",
                        rejects_path=tmp_path / "rejects.csv")
    assert report.rows_rejected == 3 and report.rows_added == N_ROWS - 3
    rejects = pl.read_csv(tmp_path / "rejects.csv")
    assert rejects["row"].to_list() == [7, 20, 30]
    assert rejects["column"].to_list() == ["weight 12", "weight 3", "label"]
    rows = wl.open_lake(tmp_path / "l").models().collect()["source_row"].to_list()
    assert 7 not in rows and 20 not in rows and 30 not in rows and 8 in rows and 21 in rows


def test_skip_mode_with_nothing_new_commits_nothing_and_leaves_no_debris(lake_copy, small_csv, tmp_path):
    """Was: every good row already in the lake, one bad row skipped: a '+0 models' snapshot was committed
    and its empty Zarr segment was left for verify to report as debris."""
    folder = tmp_path / "zoo [again] copy"
    folder.mkdir()
    bad = _edit(small_csv, folder / "Merged zoo.csv", 9, "weight 12", "oops")
    before = wl.open_lake(lake_copy).manifest
    for path, on_error in ((bad, "skip"), (small_csv, "abort")):  # the skip case, then a plain re-ingest
        report = ingest_csv(lake_copy, path, zoo="mnist-cnn-s", init="kaiming_uniform", on_error=on_error)
        assert report.rows_added == 0 and report.snapshot is None
        lake = wl.open_lake(lake_copy)
        assert lake.manifest == before and verify(lake).orphans == []
    report = ingest_csv(lake_copy, bad, zoo="mnist-cnn-s", init="kaiming_uniform", on_error="skip")
    text = "\n".join(report.lines())
    assert "nothing new: no snapshot committed, the lake is unchanged" in text, text
    assert f"{N_ROWS - 1} rows were already in the zoo" in text and "1 bad rows skipped" in text
    with open(f"{bad}.rejects.csv", newline="") as fh:
        assert [r["row"] for r in csv.DictReader(fh)] == ["9"]


def test_skip_mode_rejects_just_the_out_of_range_accuracies(tmp_path, small_csv):
    bad = _edit(small_csv, tmp_path / "a1.csv", 8, "Accuracy", "150.0")
    bad = _edit(bad, tmp_path / "a2.csv", 12, "Accuracy", "-5")
    bad = _edit(bad, tmp_path / "a3.csv", 13, "Accuracy", "100.0")  # the bounds are valid
    bad = _edit(bad, tmp_path / "a4.csv", 14, "Accuracy", "0.0")
    report = ingest_csv(tmp_path / "l", bad, zoo="z", init="normal", on_error="skip",
                        rejects_path=tmp_path / "rejects.csv")
    assert report.rows_rejected == 2 and report.rows_added == N_ROWS - 2
    rejects = pl.read_csv(tmp_path / "rejects.csv")
    assert rejects["row"].to_list() == [8, 12] and rejects["column"].to_list() == ["Accuracy", "Accuracy"]
    models = wl.open_lake(tmp_path / "l").models().collect()
    assert models["accuracy"].is_between(0, 100).all()
    assert set(models.filter(pl.col("source_row").is_in([13, 14]))["accuracy"]) == {0.0, 100.0}


def test_epoch_bins_of_another_zoo_are_passed_and_checked(tmp_path, small_csv):
    """Was: epoch 13 went in, though the format's epoch column holds the bins 11, 16, ... 36."""
    from click.testing import CliRunner

    from weightlake.cli import main

    odd = _edit(small_csv, tmp_path / "odd [13].csv", 10, "epoch", "13")
    bins = [11, 13, 16, 21, 26, 31, 36]
    report = ingest_csv(tmp_path / "l", odd, zoo="z", init="normal", epoch_bins=bins)
    assert report.rows_added == N_ROWS
    got = wl.open_lake(tmp_path / "l").models().filter(pl.col("source_row") == 10).collect()["epoch"]
    assert got.to_list() == [13]
    result = CliRunner().invoke(main, ["ingest", "csv", str(odd), "--zoo", "y", "--init", "normal", "--epoch-bins",
                                       "11,16,21-36", "--lake", str(tmp_path / "l")])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "row 10, column 'epoch': epoch 13 is not one of the given epoch bins [11, 16, 21, 22, " in result.output
    report = ingest_csv(tmp_path / "l", odd, zoo="x", init="normal", on_error="skip",
                        rejects_path=tmp_path / "rejects.csv")
    assert report.rows_rejected == 1 and pl.read_csv(tmp_path / "rejects.csv")["column"].to_list() == ["epoch"]


def test_a_fraction_before_the_first_percentage_is_refused_in_skip_mode_too(tmp_path, small_csv):
    """Rows in 0..1 seen before any percentage (one-row batches) are refused once the file shows its scale."""
    bad = _edit(small_csv, tmp_path / "f1.csv", 2, "Accuracy", "0.93")
    bad = _edit(bad, tmp_path / "f2.csv", 3, "Accuracy", "1.0")  # 1 % or 100 %: refused as well
    bad = _edit(bad, tmp_path / "f3.csv", 4, "Accuracy", "0.0")  # the same on both scales: kept
    with pytest.raises(IngestError, match=r"row 2, column 'Accuracy': accuracy 0.93 reads as a fraction.*\(row 5: "):
        ingest_csv(tmp_path / "l", bad, zoo="z", init="normal", batch_rows=1)
    assert not (tmp_path / "l").exists()
    report = ingest_csv(tmp_path / "l", bad, zoo="z", init="normal", batch_rows=1, on_error="skip",
                        rejects_path=tmp_path / "rejects.csv")
    assert (report.rows_read, report.rows_rejected, report.rows_added) == (N_ROWS, 2, N_ROWS - 2)
    rejects = pl.read_csv(tmp_path / "rejects.csv")
    assert rejects["row"].to_list() == [2, 3] and rejects["column"].to_list() == ["Accuracy", "Accuracy"]
    lake = wl.open_lake(tmp_path / "l")
    models = lake.models().collect()
    assert 2 not in models["source_row"] and 3 not in models["source_row"]
    assert models.filter(pl.col("source_row") == 4)["accuracy"].to_list() == [0.0]
    assert verify(lake).orphans == []  # the first pass's segment went with it


def test_a_file_of_fractions_is_refused_whole(tmp_path, small_csv, lake_copy):
    with open(small_csv, newline="") as fh:
        header, *rows = list(csv.reader(fh))
    col = header.index("Accuracy")
    for row in rows:
        row[col] = repr(float(row[col]) / 100)
    fractions = tmp_path / "fractions" / "Merged zoo.csv"
    fractions.parent.mkdir()
    with open(fractions, "w", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows([header, *rows])
    for on_error in ("abort", "skip"):
        with pytest.raises(IngestError, match=rf"row 2, column 'Accuracy': every nonzero accuracy of the file is "
                                              rf"between 0 and 1 \({N_ROWS} rows.*multiply it by 100"):
            ingest_csv(tmp_path / "l", fractions, zoo="z", init="normal", on_error=on_error)
    assert not (tmp_path / "l").exists()
    before = wl.open_lake(lake_copy).manifest  # into a zoo of percentages: each row is named
    with pytest.raises(IngestError, match=r"row 2, column 'Accuracy': accuracy .* reads as a fraction.*\(model 0: "):
        ingest_csv(lake_copy, fractions, zoo="mnist-cnn-s", init="normal", allow_same_source=True)
    assert wl.open_lake(lake_copy).manifest == before


def test_percentages_into_a_zoo_of_fractions_are_refused(tmp_path, small_csv):
    """The other way round: a zoo whose accuracies are fractions (here from checkpoints whose metrics hold
    fractions) does not take a file of percentages."""
    import torch

    from weightlake.ingest.checkpoints import ingest_checkpoints

    run = tmp_path / "checkpoints" / "[0, 1]" / "relu"
    (run / "metrics").mkdir(parents=True)
    flat = np.random.default_rng(0).standard_normal(CNN_S.n_params).astype(np.float32)
    state = {k: torch.from_numpy(v.copy()) for k, v in CNN_S.flat_to_state_dict(flat).items()}
    torch.save({"epoch": 11, "model_state_dict": state}, run / "checkpoint epoch 11.pth")
    np.save(run / "metrics" / "Test Accuracy IID.npy", np.linspace(0.1, 0.9, 13)[None, :])
    ingest_checkpoints(tmp_path / "l", tmp_path / "checkpoints", zoo="z", init="normal", bins=[11], workers=1)
    before = wl.open_lake(tmp_path / "l").manifest
    for on_error in ("abort", "skip"):
        with pytest.raises(IngestError, match=r"row 2, column 'Accuracy': zoo 'z' holds accuracies as fractions of 1 "
                                              r"\(model 0: 0.9\), this file gives percentages"):
            ingest_csv(tmp_path / "l", small_csv, zoo="z", init="normal", on_error=on_error)
    assert wl.open_lake(tmp_path / "l").manifest == before


@pytest.mark.parametrize("init", ["kaiming_unifrom", "Kaiming", ""])
def test_unknown_init_is_refused_with_the_valid_names(tmp_path, small_csv, init):
    with pytest.raises(IngestError, match=rf"unknown initialisation {init!r}; expected one of .*'kaiming_uniform'"):
        ingest_csv(tmp_path / "l", small_csv, zoo="z", init=init)
    assert not (tmp_path / "l").exists()


def test_cli_refuses_a_misspelt_init_like_ingest_checkpoints(tmp_path, small_csv):
    from click.testing import CliRunner

    from weightlake.cli import main

    result = CliRunner().invoke(main, ["ingest", "csv", str(small_csv), "--zoo", "s", "--init", "kaiming_unifrom",
                                       "--lake", str(tmp_path / "l")])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "unknown initialisation 'kaiming_unifrom'" in result.output and "'kaiming_uniform'" in result.output
    assert not (tmp_path / "l").exists()


def test_rows_are_counted_across_batches_and_an_empty_weight_is_named(tmp_path, small_csv):
    """Lines are counted by the ingest (not polars): small batches must still name the right line."""
    bad = _edit(small_csv, tmp_path / "b1.csv", 97, "weight 700", "")
    bad = _edit(bad, tmp_path / "b2.csv", 250, "bias 2463", "-inf")
    report = ingest_csv(tmp_path / "l", bad, zoo="z", init="normal", on_error="skip", batch_rows=37,
                        rejects_path=tmp_path / "rejects.csv")
    rejects = pl.read_csv(tmp_path / "rejects.csv")
    assert rejects["row"].to_list() == [97, 250]
    assert rejects["column"].to_list() == ["weight 700", "bias 2463"]
    assert rejects["reason"][0].startswith("missing value") and "-inf" in rejects["reason"][1]
    assert report.rows_added == N_ROWS - 2
    lake = wl.open_lake(tmp_path / "l")
    meta = lake.models().collect().sort("source_row")
    assert meta["source_row"].to_list() == [r for r in range(2, N_ROWS + 2) if r not in (97, 250)]
    src = _read(small_csv)
    want = src.select(CNN_S.csv_columns()).to_numpy()[meta["source_row"].to_numpy() - 2]
    assert np.array_equal(lake.weights_numpy(meta["model_id"].to_numpy()), want)


def test_missing_file(tmp_path):
    with pytest.raises(IngestError, match="no such file"):
        ingest_csv(tmp_path / "l", tmp_path / "nope.csv", zoo="z", init="normal")


def test_sigkill_mid_ingest_leaves_previous_snapshot(lake_copy, tmp_path):
    """Kill an ingest while it writes; the lake opens at the previous snapshot and verifies."""
    from weightlake.zoo.synthetic import all_labels, write_synthetic_csv

    big = tmp_path / "big.csv"
    write_synthetic_csv(big, labels=all_labels()[100:300], seed=5)
    before = wl.open_lake(lake_copy).manifest
    script = ("import sys; from weightlake.ingest.csv_zoo import ingest_csv; "
              "ingest_csv(sys.argv[1], sys.argv[2], zoo='mnist-cnn-s', init='kaiming_uniform', batch_rows=256)")
    proc = subprocess.Popen([sys.executable, "-c", script, str(lake_copy), str(big)])
    deadline = time.time() + 60
    seg_dir = lake_copy / "zoos" / "mnist-cnn-s" / "weights"
    while time.time() < deadline and len(list(seg_dir.glob("*.zarr"))) < 2 and proc.poll() is None:
        time.sleep(0.02)
    time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    lake = wl.open_lake(lake_copy)
    assert lake.manifest == before, "the killed ingest must not have committed"
    report = verify(lake)
    assert report.ok and report.orphans, "its partial segment is left unreferenced for --gc"
    assert lake.models().collect().height == N_ROWS
    from weightlake.verify import collect_garbage

    assert collect_garbage(lake) and verify(wl.open_lake(lake_copy)).orphans == []
    assert math.isfinite(float(lake.weights([0]).sum()))


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 3000), st.integers(1, 70), st.booleans())
def test_row_major_copy_law(n, p, fortran):
    """row_major(x) == x, C-ordered, for either memory order."""
    from weightlake.ingest.common import row_major

    x = np.arange(n * p, dtype=np.float32).reshape(n, p)
    x = np.asfortranarray(x) if fortran else x
    y = row_major(x)
    assert y.flags.c_contiguous and np.array_equal(y, x)


@pytest.mark.parametrize("kind", ["csv", "checkpoints"])
def test_a_rejects_file_inside_the_lake_is_refused_before_any_row(lake_copy, small_csv, tmp_path, kind):
    """``--rejects`` inside the lake wrote a stray file there, which ``gc`` later took for debris."""
    from click.testing import CliRunner

    from weightlake.cli import main

    before = wl.open_lake(lake_copy).manifest
    bad = _edit(small_csv, tmp_path / "zoo [0, 1] gelu.csv", 9, "weight 12", "oops")
    source = [str(bad), "--on-error", "skip"] if kind == "csv" else [str(tmp_path)]
    result = CliRunner().invoke(main, ["ingest", kind, *source, "--zoo", "mnist-cnn-s", "--init", "kaiming_uniform",
                                       "--rejects", str(lake_copy / "rejects.csv"), "--lake", str(lake_copy)])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert result.output.strip().splitlines()[-1].startswith("error: refusing to write the rejects file")
    assert not (lake_copy / "rejects.csv").exists() and wl.open_lake(lake_copy).manifest == before
