"""CLI: weightlake scenario declare/import/list and weightlake pairs materialize/show."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from weightlake import open_lake
from weightlake.cli import main
from weightlake.ingest.csv_zoo import ingest_csv
from weightlake.zoo.synthetic import all_labels, write_synthetic_csv

ZOO = "mnist-cnn-s"


@pytest.fixture(scope="module")
def base_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("cli")
    write_synthetic_csv(tmp / "zoo.csv", labels=all_labels(range(4), range(2, 5)), activations=("gelu",),
                        epochs=(11, 16), seed=2)
    ingest_csv(tmp / "lake", tmp / "zoo.csv", zoo=ZOO, init="kaiming_uniform")
    return tmp / "lake"


@pytest.fixture()
def lake(tmp_path: Path, base_lake: Path) -> str:
    import shutil

    shutil.copytree(base_lake, tmp_path / "lake")
    return str(tmp_path / "lake")


def run(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_declare_list_show_materialize(lake: str) -> None:
    out = run("scenario", "declare", "s", "--zoo", ZOO, "--digits", "0-3", "--sizes", "2-3", "--overlap", "0-1",
              "--epochs", "11,16", "--lake", lake)
    assert "scenario s" in out and "committed as snapshot" in out
    listing = run("scenario", "list", "--format", "csv", "--lake", lake)
    assert listing.splitlines()[0].startswith("scenario,zoo") and "\ns," in listing
    shown = run("pairs", "show", "s", "--split", "test", "--limit", "3", "--format", "json", "--lake", lake)
    assert shown.count('"pair_id"') == 3 and '"classes_a"' in shown
    out = run("pairs", "materialize", "s", "--split", "test", "--batch-size", "4", "--epochs", "2", "--lake", lake)
    assert "materialised s/test: 2 epoch(s)" in out
    assert open_lake(lake).table("batches").collect().height == 2


def test_declare_options(lake: str) -> None:
    run("scenario", "declare", "g", "--zoo", ZOO, "--digits", "0-3", "--sizes", "2", "--overlap", "1", "--unordered",
        "--split", "grouped", "--seed", "3", "--no-fallback", "--activations", "gelu", "--lake", lake)
    pairs = open_lake(lake).pairs("g").to_polars()
    assert (pairs["a_mask"] < pairs["b_mask"]).all() and set(pairs["overlap"]) == {1}


def test_import(lake: str, tmp_path: Path) -> None:
    folder = tmp_path / "Scenario" / "overlapping 0 [0, 1, 2, 3] 11 gelu"
    folder.mkdir(parents=True)
    subsets = [list(c) for c in itertools.combinations(range(4), 2)]
    records = [[a, b, 0, 0] for a, b in itertools.product(subsets, subsets) if not set(a) & set(b)]
    for split, recs in (("train", records[:4]), ("val", records[4:5]), ("test", records[5:])):
        np.save(folder / f"{split} pair.npy", np.array(recs, dtype=object), allow_pickle=True)
    out = run("scenario", "import", str(folder.parent), "--zoo", ZOO, "--lake", lake)
    assert "overlapping-0-0to3-e11-gelu" in out and "train 4, val 1, test 1" in out


def test_import_refuses_an_empty_folder_in_one_line(lake: str, tmp_path: Path) -> None:
    """An 'overlapping ...' folder without .npy files was imported as a scenario of 0 pairs, exit 0."""
    folder = tmp_path / "Scenario" / "overlapping 0 [0, 1, 2, 3] 11 gelu"
    folder.mkdir(parents=True)
    version = open_lake(lake).snapshot
    result = CliRunner().invoke(main, ["scenario", "import", str(folder), "--zoo", ZOO, "--lake", lake])
    assert result.exit_code == 1 and "Traceback" not in result.output and len(result.output.splitlines()) == 1
    assert "holds no records" in result.output
    assert open_lake(lake).snapshot == version


def test_import_refuses_a_folder_name_its_records_contradict(lake: str, tmp_path: Path) -> None:
    folder = tmp_path / "Scenario" / "overlapping 0 [0, 1, 2, 3] 16 relu"
    folder.mkdir(parents=True)
    subsets = [list(c) for c in itertools.combinations(range(4), 2)]
    records = [[a, b, 0, 0] for a, b in itertools.product(subsets, subsets) if not set(a) & set(b)]  # e11, gelu
    for split in ("train", "val", "test"):
        np.save(folder / f"{split} pair.npy", np.array(records, dtype=object), allow_pickle=True)
    version = open_lake(lake).snapshot
    result = CliRunner().invoke(main, ["scenario", "import", str(folder), "--zoo", ZOO, "--lake", lake])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "16 relu" in result.output and "epoch 11" in result.output and "'gelu'" in result.output
    assert open_lake(lake).snapshot == version  # no mislabelled scenario committed


def test_errors_are_one_line(lake: str) -> None:
    result = CliRunner().invoke(main, ["scenario", "declare", "x", "--zoo", "nope", "--lake", lake])
    assert result.exit_code == 1 and "no zoo 'nope'" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(main, ["scenario", "declare", "x", "--zoo", ZOO, "--digits", "0-x", "--lake", lake])
    assert result.exit_code == 1 and "'0-x'" in result.output


def test_declare_refuses_digits_outside_the_zoo_in_one_line(lake: str) -> None:
    """--digits 0-12 over a zoo of digits 0-3 was accepted and paired models that cannot exist."""
    version = open_lake(lake).snapshot
    result = CliRunner().invoke(main, ["scenario", "declare", "x", "--zoo", ZOO, "--digits", "0-12", "--lake", lake])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip() == ("error: --digits 0-12: zoo 'mnist-cnn-s' has no model trained on 4-12; "
                                     "its models' classes are 0-3")
    result = CliRunner().invoke(main, ["scenario", "declare", "x", "--zoo", ZOO, "--sizes", "1-3", "--lake", lake])
    assert result.exit_code == 1 and "--sizes 1-3: sizes allowed 2-4" in result.output
    assert open_lake(lake).snapshot == version


def test_help_teaches() -> None:
    for cmd in (["scenario", "declare"], ["scenario", "import"], ["pairs", "materialize"], ["pairs", "show"]):
        text = run(*cmd, "--help")
        assert "Example" in text and "weightlake " + cmd[0] in text


@pytest.mark.parametrize(("option", "value"), [("--batch-size", "0"), ("--batch-size", "-3"), ("--epochs", "0")])
def test_materialize_refuses_sizes_below_one(lake: str, option: str, value: str) -> None:
    """--batch-size 0 divided by zero before the library could refuse it (a traceback); -3 counted -6 batches."""
    run("scenario", "declare", "s", "--zoo", ZOO, "--digits", "0-3", "--sizes", "2", "--lake", lake)
    version = open_lake(lake).snapshot
    result = CliRunner().invoke(main, ["pairs", "materialize", "s", "--split", "test", option, value, "--lake", lake])
    assert result.exit_code == 2 and "Traceback" not in result.output and result.exception is not None
    assert f"Invalid value for '{option}'" in result.output and "x>=1" in result.output
    assert "batches to do" not in result.output
    assert open_lake(lake).snapshot == version


@pytest.mark.parametrize("fmt", [[], ["--format", "zarr"]])
def test_materialize_refuses_out_without_a_file_format(lake: str, tmp_path: Path, fmt: list[str]) -> None:
    """--out DIR without --format committed zarr batches into the lake and left DIR unwritten, without a word."""
    run("scenario", "declare", "s", "--zoo", ZOO, "--digits", "0-3", "--sizes", "2", "--lake", lake)
    version = open_lake(lake).snapshot
    out = tmp_path / "batches"
    result = CliRunner().invoke(main, ["pairs", "materialize", "s", "--split", "test", "--out", str(out), *fmt,
                                       "--lake", lake])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.startswith(f"error: --out {out} is a folder for .pt / .h5 files: say which with "
                                    "--format pt or --format h5"), result.output
    assert open_lake(lake).snapshot == version and not out.exists()
    run("pairs", "materialize", "s", "--split", "test", "--out", str(out), "--format", "pt", "--epochs", "1",
        "--lake", lake)
    assert sorted(p.name for p in out.iterdir()) == ["s-test-epoch0.pt"] and open_lake(lake).snapshot == version


def test_declare_refuses_bad_fractions_and_test_digits_in_one_line(lake: str) -> None:
    """--fractions 0.7,x,0.2 was a ValueError traceback; --test-digit -1 shifted by a negative count and
    committed a scenario; a test digit outside --digits gave an empty test split without a word."""
    version = open_lake(lake).snapshot
    for args, message in ((["--split", "random", "--fractions", "0.7,x,0.2"], "got '0.7,x,0.2'"),
                          (["--test-digit", "-1"], "test_digit must be a digit in 0..30, got -1")):
        result = CliRunner().invoke(main, ["scenario", "declare", "x", "--zoo", ZOO, *args, "--lake", lake])
        assert result.exit_code == 1 and "Traceback" not in result.output and message in result.output, result.output
    assert open_lake(lake).snapshot == version
    out = run("scenario", "declare", "x", "--zoo", ZOO, "--digits", "0-3", "--sizes", "2", "--test-digit", "7",
              "--lake", lake)
    assert "test 0" in out and "note: test digit 7 is not among the digits [0, 1, 2, 3]" in out
    out = run("scenario", "declare", "x", "--zoo", ZOO, "--split", "random", "--fractions", "0.5,0.25,0.25",
              "--lake", lake)
    assert "committed as snapshot" in out


def test_show_refuses_a_negative_limit(lake: str) -> None:
    """--limit -5 showed every row but the last five (polars' head(-5)) as if that were the pair set."""
    run("scenario", "declare", "s", "--zoo", ZOO, "--digits", "0-3", "--sizes", "2", "--lake", lake)
    result = CliRunner().invoke(main, ["pairs", "show", "s", "--limit", "-5", "--lake", lake])
    assert result.exit_code == 2 and "Invalid value for '--limit'" in result.output
    assert "fallback marks a target" in run("pairs", "show", "--help")


def test_snapshot_option_shows_the_pairs_of_an_earlier_declaration(lake: str, tmp_path: Path) -> None:
    """Time travel was Python only: `scenario list`, `pairs show` and `pairs materialize --format pt` read
    the newest snapshot, with no way to see a scenario as it was before it was declared again."""
    import json

    from weightlake.serve.files import read_batches

    run("scenario", "declare", "s", "--zoo", ZOO, "--digits", "0-3", "--sizes", "2-3", "--overlap", "0-1",
        "--epochs", "11", "--lake", lake)
    first = open_lake(lake)
    run("scenario", "declare", "s", "--zoo", ZOO, "--digits", "0-3", "--sizes", "2", "--overlap", "0",
        "--epochs", "11", "--lake", lake)
    old, new = (len(first.pairs("s")), len(open_lake(lake).pairs("s")))
    assert old != new
    def shown(*args: str) -> list:
        result = CliRunner().invoke(main, ["pairs", "show", "s", "--limit", "0", "--format", "json", *args, "--lake",
                                           lake])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)  # (the pair set's summary goes to stderr)

    assert len(shown("--snapshot", str(first.snapshot))) == old and len(shown()) == new
    listing = run("scenario", "list", "--format", "json", "--snapshot", str(first.snapshot - 1), "--lake", lake)
    assert "no scenarios yet" in listing
    run("pairs", "materialize", "s", "--split", "test", "--format", "pt", "--out", str(tmp_path / "pt"), "--epochs", "1",
        "--snapshot", str(first.snapshot), "--lake", lake)
    _, meta = read_batches(tmp_path / "pt" / "s-test-epoch0.pt")
    assert meta["snapshot"] == first.snapshot and meta["n_pairs"] == len(first.pairs("s", "test"))
    zarr = CliRunner().invoke(main, ["pairs", "materialize", "s", "--snapshot", "1", "--lake", lake])
    assert zarr.exit_code == 1 and "--snapshot 1 reads an earlier snapshot" in zarr.output
    gone = CliRunner().invoke(main, ["pairs", "show", "s", "--snapshot", "99", "--lake", lake])
    assert gone.exit_code == 1 and gone.output.strip() == (
        f"error: the lake has no snapshot version 99: its snapshots are 0 to {first.snapshot + 1} "
        "(`weightlake history` lists them)")


def test_list_says_which_scenarios_predate_models_of_their_zoo(lake: str, tmp_path: Path) -> None:
    """Was: a scenario declared before more models came into its zoo was listed as if current,
    under a column "snapshot" that read like the snapshot it was declared at."""
    run("scenario", "declare", "s", "--zoo", ZOO, "--digits", "0-3", "--sizes", "2", "--overlap", "0",
        "--epochs", "11", "--lake", lake)
    resolved = open_lake(lake).snapshot - 1
    listing = run("scenario", "list", "--lake", lake)
    assert "resolved_at" in listing and "Changed since" not in listing
    write_synthetic_csv(tmp_path / "more.csv", labels=all_labels(range(4), range(2, 5)), activations=("gelu",),
                        epochs=(11,), seed=5)
    ingest_csv(lake, tmp_path / "more.csv", zoo=ZOO, init="normal")
    listing = run("scenario", "list", "--lake", lake)
    before = open_lake(lake).at(resolved).manifest.zoo(ZOO).n_models
    assert f"s: zoo '{ZOO}' holds {open_lake(lake).manifest.zoo(ZOO).n_models:,} models, {before:,} when it " \
           "was resolved; declare (or import) it again" in listing
    rows = json.loads(run("scenario", "list", "--format", "json", "--lake", lake))
    assert rows[0]["resolved_at"] == resolved and rows[0]["zoo_changed"] is True
    assert json.loads(run("scenario", "list", "--format", "json", "--snapshot", str(resolved + 1),
                          "--lake", lake))[0]["zoo_changed"] is False
