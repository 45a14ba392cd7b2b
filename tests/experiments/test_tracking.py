"""Tracking CSVs in the user's layout: header rules, bitwise round trip, metrics, errors, replacement."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from weightlake import open_lake
from weightlake.analysis.metrics import compute_all
from weightlake.errors import IngestError
from weightlake.experiments.evaluate import load_predictions
from weightlake.experiments.tracking import (
    find_tracking_csvs,
    ingest_tracking,
    read_tracking,
    read_tracking_layout,
    write_tracking_csv,
)

P = 2464
N = 24


def vectors(seed: int, n: int = N) -> dict[str, np.ndarray]:
    """GT with repeated targets (4 models x 6 pairs), FN near GT, PD varied (not collapsed)."""
    rng = np.random.default_rng(seed)
    targets = (rng.standard_normal((4, P)) * 0.1).astype(np.float32)
    gt = np.repeat(targets, n // 4, axis=0)
    fn = (gt + rng.standard_normal((n, P)) * 0.01).astype(np.float32)
    pd = (gt * 0.5 + rng.standard_normal((n, P)) * 0.05).astype(np.float32)
    return {"gt": gt, "pd": pd, "fn": fn}


def user_file(path: Path, seed: int = 0, **kw) -> tuple[Path, dict[str, np.ndarray]]:
    """A file as the user's code writes it: index, metrics with a repeated name, a pair record, blocks, steps."""
    rng = np.random.default_rng(seed + 100)
    vec = vectors(seed)
    steps = rng.uniform(50, 99, (N, 3))
    steps[: N // 2, 2] = np.nan  # the third fine-tuning step only exists for later rows
    values = [("Loss", rng.random(N)), ("Accuracy", rng.uniform(0, 100, N)), ("Accuracy", rng.uniform(0, 100, N)),
              ("Pair", [f"[[0, 1], [2, 3], 0, {i % 6}]" for i in range(N)])]
    args = {"values": values, "steps": steps, **kw}
    return write_tracking_csv(path, vec["gt"], vec["pd"], vec["fn"], **args), {**vec, "steps": steps,
                                                                                 "values": values}


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("tracking")
    root = tmp / "Experiments" / "overlap0" / "sinkhorn"
    path, data = user_file(root / "Tracking" / "AE epoch sinkhorn 3.csv", index=list(range(100, 100 + N)))
    reports = ingest_tracking(tmp / "lake", tmp / "Experiments", scenario="t", chunk_rows=7)
    return tmp / "lake", path, data, reports


def test_header_layout(ingested) -> None:
    _, path, _, _ = ingested
    header = path.read_text().split("\n", 1)[0].split(",")
    assert header[:5] == ["", "Loss", "Accuracy", "Accuracy", "Pair"]
    assert header[5] == "weight 0" and f"Pred weight {P - 1}" in header and header[-1] == "Step 2"
    layout = read_tracking_layout(path)
    assert layout.index_column == "" and layout.kinds == ("GT", "PD", "FN")
    assert layout.values == ("Loss", "Accuracy", "Accuracy.1", "Pair") and layout.duplicates == ("Accuracy",)
    assert [n for n, _ in layout.steps] == [0, 1, 2]
    assert layout.blocks["FN"][7] == "FN weight 7"


def test_vectors_round_trip_bitwise_and_rows_keep_their_index(ingested) -> None:
    lake, path, data, reports = ingested
    assert [r.rows for r in reports] == [N] and reports[0].label == "overlap0/sinkhorn/Tracking/AE epoch sinkhorn 3.csv"
    for kind, key in (("GT", "gt"), ("PD", "pd"), ("FN", "fn")):
        frame, got = load_predictions(open_lake(lake), source_file=str(path.resolve()), kind=kind)
        assert frame["row"].to_list() == list(range(100, 100 + N))
        assert got.dtype == np.float32 and np.array_equal(got.view(np.int32), data[key].view(np.int32)), kind
        assert set(frame["step"]) == {3} and set(frame["loss"]) == {"sinkhorn"}


def test_metric_and_step_cells_are_kept_long(ingested) -> None:
    lake, _, data, _ = ingested
    cells = open_lake(lake).table("tracking_values").collect()
    acc2 = cells.filter(pl.col("column") == "Accuracy.1").sort("row")
    np.testing.assert_allclose(acc2["value"].to_numpy(), data["values"][2][1])
    assert set(acc2["position"]) == {3}
    pair = cells.filter(pl.col("column") == "Pair").sort("row")
    assert pair["text"][0] == "[[0, 1], [2, 3], 0, 0]" and pair["value"].null_count() == N
    step2 = cells.filter(pl.col("step") == 2).sort("row")
    assert step2.height == N // 2 and step2["row"].min() == 100 + N // 2  # empty cells are not stored
    np.testing.assert_allclose(step2["value"].to_numpy(), data["steps"][N // 2:, 2])


def test_three_comparisons_match_compute_all(ingested) -> None:
    lake, _, data, reports = ingested
    row = open_lake(lake).sql("SELECT * FROM evaluations").row(0, named=True)
    pairs = {"pd": ("pd", "gt"), "fn": ("fn", "gt"), "pdfn": ("pd", "fn")}
    for prefix, (a, b) in pairs.items():
        expected = compute_all(data[a], data[b], metrics=["mse", "w1", "cosine"])
        for name, values in expected.items():
            assert row[f"{prefix}_{name}"] == pytest.approx(float(values.mean()), rel=1e-12), (prefix, name)
    assert row["source_kind"] == "tracking" and row["scenario"] == "t" and row["split"] is None
    assert (row["loss"], row["epoch"], row["n_pairs"]) == ("sinkhorn", 3, N)
    assert row["collapsed"] is False and row["fn_collapsed"] is False
    assert row["fn_silhouette"] > 0.5  # FN stays near its four targets: clear clusters
    assert not math.isnan(row["pdfn_across_rows_pearson"])
    assert row["d_model"] is None  # tracking files carry no config
    assert reports[0].evaluation["pd_w1"] == pytest.approx(row["pd_w1"])


def test_chunking_does_not_change_anything(ingested, tmp_path: Path) -> None:
    _, path, data, _ = ingested
    one = list(read_tracking(path, chunk_rows=10_000))
    many = list(read_tracking(path, chunk_rows=5))
    assert len(one) == 1 and len(many) == -(-N // 5)
    for kind in ("GT", "PD", "FN"):
        assert np.array_equal(one[0].blocks[kind], np.concatenate([c.blocks[kind] for c in many]))
    assert one[0].values.sort("row", "column").equals(pl.concat([c.values for c in many]).sort("row", "column"))


def test_a_collapsed_prediction_file(tmp_path: Path) -> None:
    vec = vectors(1)
    pd = np.tile(vec["pd"][0], (N, 1))
    path = write_tracking_csv(tmp_path / "AE epoch mse track 5.csv", vec["gt"], pd, vec["fn"])
    (report,) = ingest_tracking(tmp_path / "lake", path)
    ev = report.evaluation
    assert ev["collapsed"] is True and ev["pd_top_row_share"] == 1.0 and ev["pd_distinct_rows"] == 1
    assert math.isnan(ev["pd_across_rows_pearson"]) and "pred collapsed" in ev["pd_across_rows_pearson_reason"]
    assert math.isnan(ev["pd_silhouette"]) and "collapsed" in ev["pd_silhouette_reason"]
    assert math.isnan(ev["pdfn_across_rows_pearson"]) and math.isfinite(ev["pd_mse"])
    assert any("COLLAPSED" in line for line in report.lines())


def test_layout_variants(tmp_path: Path) -> None:
    vec = vectors(2)
    path = write_tracking_csv(tmp_path / "plain.csv", vec["gt"], vec["pd"], index=False)
    text = path.read_text()
    header, body = text.split("\n", 1)
    names = header.split(",")
    from weightlake.arch import CNN_S

    names[:P] = CNN_S.csv_columns()  # GT block as the zoo CSV names it: 'weight i' / 'bias i'
    (tmp_path / "bias.csv").write_text("Unnamed: 0," + ",".join(names) + "\n" +
                                       "".join(f"{i},{line}\n" for i, line in enumerate(body.splitlines())))
    for name, index in (("plain.csv", None), ("bias.csv", "Unnamed: 0")):
        layout = read_tracking_layout(tmp_path / name)
        assert layout.index_column == index and layout.kinds == ("GT", "PD") and not layout.steps
    reports = ingest_tracking(tmp_path / "lake", [tmp_path / "plain.csv", tmp_path / "bias.csv"])
    row = reports[0].evaluation
    assert row["fn_note"] == "no FN block in the file" and "fn_w1" not in row
    assert reports[0].evaluation["pd_w1"] == pytest.approx(reports[1].evaluation["pd_w1"])
    stored = open_lake(tmp_path / "lake").sql("SELECT fn_w1, pd_w1 FROM evaluations")
    assert stored["fn_w1"].to_list() == [None, None]


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda h: h.replace(",Pred weight 17,", ",Pred weight 17x,"), r"PD weight block.*missing flat indices 17"),
        (lambda h: h.replace(",FN weight 3,", ",Init weight 3,"), "unknown weight block prefix 'Init'"),
        (lambda h: h.replace(",weight 9,", ",weight 8,"), "'weight 8'.*appears more than once"),
        (lambda h: h.replace("FN weight 2463", "FN weight 2464"), r"missing flat indices 2463; indices past"),
    ],
    ids=["missing-index", "unknown-prefix", "duplicated-weight", "out-of-range"],
)
def test_bad_headers_are_refused_with_the_column(tmp_path: Path, edit, match: str) -> None:
    vec = vectors(3, 4)
    path = write_tracking_csv(tmp_path / "t.csv", vec["gt"], vec["pd"], vec["fn"])
    header, body = path.read_text().split("\n", 1)
    path.write_text(edit(header) + "\n" + body)
    with pytest.raises(IngestError, match=match):
        read_tracking_layout(path)


def test_bad_cells_abort_or_skip(tmp_path: Path) -> None:
    vec = vectors(4, 4)
    write_tracking_csv(tmp_path / "Tracking" / "good.csv", vec["gt"], vec["pd"])
    bad = write_tracking_csv(tmp_path / "Tracking" / "bad.csv", vec["gt"], vec["pd"])
    lines = bad.read_text().split("\n")
    cells = lines[2].split(",")
    cells[10] = "oops"
    lines[2] = ",".join(cells)
    bad.write_text("\n".join(lines))
    lake = tmp_path / "lake"
    with pytest.raises(IngestError, match="bad.csv.*oops"):
        ingest_tracking(lake, tmp_path / "Tracking")
    assert not lake.exists()  # nothing committed, nothing left behind (an empty lake stayed)
    reports = ingest_tracking(lake, tmp_path / "Tracking", on_error="skip")
    assert [r.error is not None for r in reports] == [True, False]
    assert open_lake(lake).sql("SELECT count(*) AS n FROM evaluations")["n"][0] == 1
    assert reports[0].lines()[0].startswith("bad.csv: SKIPPED")


def test_ingesting_again_replaces_the_file(ingested, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    shutil.copytree(ingested[0], lake)
    before = open_lake(lake).sql("SELECT count(*) AS n FROM predictions")["n"][0]
    ingest_tracking(lake, ingested[1], scenario="t")
    ingest_tracking(lake, ingested[1], scenario="other")
    after = open_lake(lake)
    assert after.sql("SELECT count(*) AS n FROM predictions")["n"][0] == before == 3 * N
    assert after.sql("SELECT scenario, count(*) AS n FROM evaluations GROUP BY ALL ORDER BY 1").rows() == [
        ("other", 1), ("t", 1)]
    arrays = after.manifest.table("predictions").arrays
    assert len(arrays) == 1 and (lake / arrays[0]).exists()


def test_ingesting_again_beside_a_scenario_of_other_metrics(ingested, tmp_path: Path) -> None:
    """Scenario partitions of `evaluations` differ in columns when they were evaluated with other
    metrics; a re-run read them back in one polars scan and died with a SchemaError traceback. It
    replaces the file's rows, says so, and a file named twice (itself and its folder) is one row."""
    from click.testing import CliRunner

    from weightlake.cli import main

    lake = tmp_path / "lake"
    shutil.copytree(ingested[0], lake)  # scenario 't', every fast metric
    args = ["experiments", "ingest-tracking", str(ingested[1]), "--lake", str(lake)]

    def tables() -> dict[str, list[tuple]]:
        handle = open_lake(lake)
        return {name: handle.sql(f"SELECT {by}, count(*) AS n FROM {name} GROUP BY ALL ORDER BY ALL").rows()
                for name, by in (("evaluations", "scenario"), ("evaluation_metrics", "scenario"),
                                 ("predictions", "kind"), ("tracking_values", "\"column\""))}

    runner = CliRunner()
    narrow = runner.invoke(main, [*args, "--scenario", "a", "--metrics", "mse"])
    assert narrow.exit_code == 0, narrow.output
    once = tables()
    assert once["evaluations"] == [("a", 1), ("t", 1)]
    for scenario in ("t", "t", "a"):  # once the narrow partition's file is listed first, the wide one failed
        again = runner.invoke(main, [*args, str(ingested[1].parent), "--scenario", scenario,
                                     *(["--metrics", "mse"] if scenario == "a" else [])])
        assert again.exit_code == 0 and again.exception is None, (scenario, again.output)
        assert tables() == once
        assert "were replaced, not added to" in again.output
        assert again.output.count(f": {N} rows,") == 1  # the file and its folder: one source


def test_find_tracking_csvs(tmp_path: Path) -> None:
    for rel in ("run/Tracking/a.csv", "run/val track.csv", "run/hparams.csv", ".hidden/Tracking/x.csv"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x\n")
    found = [p.relative_to(tmp_path).as_posix() for p in find_tracking_csvs(tmp_path)]
    assert found == ["run/val track.csv", "run/Tracking/a.csv"]
    assert find_tracking_csvs(tmp_path / "run/hparams.csv") == [tmp_path / "run/hparams.csv"]
    with pytest.raises(IngestError, match="no such"):
        find_tracking_csvs(tmp_path / "missing")


finite32 = st.floats(width=32, allow_nan=False, allow_infinity=False, allow_subnormal=True)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=arrays(np.float32, 48, elements=finite32), seed=st.integers(0, 2**32 - 1), rows=st.integers(1, 2))
def test_write_read_round_trip_law(tmp_path: Path, values: np.ndarray, seed: int, rows: int) -> None:
    """``read_tracking(write_tracking_csv(gt, pd)) == (gt, pd)`` bitwise for any finite float32 (-0.0 included).

    Hypothesis draws the interesting values (subnormals, extremes, signed zeros); a seeded
    draw spreads them over whole 2,464-value rows.
    """
    rng = np.random.default_rng(seed)
    gt, pd = rng.choice(values, size=(rows, P)), rng.choice(values, size=(rows, P))
    path = write_tracking_csv(tmp_path / "rt.csv", gt, pd)
    (chunk,) = read_tracking(path)
    assert np.array_equal(chunk.blocks["GT"].view(np.int32), gt.view(np.int32))
    assert np.array_equal(chunk.blocks["PD"].view(np.int32), pd.view(np.int32))
