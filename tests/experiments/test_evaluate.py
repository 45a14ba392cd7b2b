"""Checkpoint evaluation end to end: a real zoo trained on Fashion-MNIST, tiny merging models
trained on its pairs and saved as the user does, then scan + infer + load + evaluate."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from weightlake import open_lake
from weightlake.analysis.metrics import compute_all
from weightlake.arch import EPOCH_BINS
from weightlake.errors import NoSuchTableError, QueryError
from weightlake.experiments.evaluate import (
    evaluate_checkpoints,
    load_predictions,
    resolve_checkpoints,
    select_positions,
    silhouette,
)
from weightlake.experiments.merger import MergerConfig, TransformerAE
from weightlake.zoo.idx import KNOWN_DATASETS

SCENARIO = "t1"
SUBSETS = ([0, 1], [2, 3], [0, 2], [1, 3], [0, 1, 2, 3], [2, 4], [1, 4], [0, 1, 2, 4])
"""Two targets, [0, 1, 2, 3] and [0, 1, 2, 4], each reachable from two disjoint pairs (both orders)."""



@pytest.fixture(scope="module")
def zoo_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real zoo (8 CNNs, one epoch on 100 Fashion-MNIST images per class) with scenario 't1' (8 test pairs).

    The trainer's checkpoint of epoch 0 is re-filed as epoch 11 (the first bin of the
    user's zoo): scenario targets are resolved at the user's epoch bins.
    """
    if not KNOWN_DATASETS["fashion-mnist"][0].is_dir():
        pytest.skip("needs dataset-fashion-mnist")
    from weightlake.ingest.checkpoints import ingest_checkpoints
    from weightlake.scenarios import declare_scenario
    from weightlake.zoo.train import train_zoo

    tmp = tmp_path_factory.mktemp("evalzoo")
    train_zoo("fashion-mnist", tmp / "zoo", SUBSETS, ["relu"], ["kaiming_uniform"], layout="b", workers=1,
              epochs_max=1, subsample=100, seed=7, checkpoint_epochs=[0], min_accuracy=-1.0, lr=1e-3)
    for path in list((tmp / "zoo").rglob("checkpoint epoch 0.pth")):
        ckpt = torch.load(path, weights_only=True)
        torch.save({**ckpt, "epoch": 11}, path.with_name("checkpoint epoch 11.pth"))
        path.unlink()
    ingest_checkpoints(tmp / "lake", tmp / "zoo", zoo="fz", rejects_path=tmp / "rejects.csv", bins=EPOCH_BINS)
    report = declare_scenario(tmp / "lake", SCENARIO, zoo="fz", digits="0-4", sizes="2", overlap=0, epochs=[11])
    assert report.counts["test"] == 8, report.lines()
    return tmp / "lake"


@dataclass
class Run:
    folder: str
    file: str
    config: MergerConfig
    wrap: str = "none"
    sidecar: dict | None = None


RUNS = [
    Run("run_d16_h2", "AE epoch mse val 2.pth", MergerConfig(16, 2, 32, 1, 8)),
    Run("gated", "AE epoch w1 train 3.pth", MergerConfig(24, 3, 24, 2, 12, gated_attention=True), sidecar={"heads": 3}),
    Run("compiled", "AE epoch mse test 1.pth", MergerConfig(32, 4, 64, 1, 16), wrap="compile"),
    Run("tok_h1", "AE epoch mae val 4.pth", MergerConfig(8, 1, 16, 2, 4, output_head="per_token")),
]


def _train(run: Run, path: Path, x1: torch.Tensor, x2: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """A few Adam steps on the real pairs, saved as the user's code saves; returns eval-mode predictions."""
    torch.manual_seed(RUNS.index(run))
    model = TransformerAE(run.config)
    net = torch.compile(model, backend="eager") if run.wrap == "compile" else model
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    net.train()
    for _ in range(3):
        loss = torch.nn.functional.mse_loss(net(x1, x2), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": 2, "model_state_dict": net.state_dict(), "optimizer_state_dict": opt.state_dict()}, path)
    if run.sidecar:
        (path.parent / "config.json").write_text(json.dumps(run.sidecar))
    net.eval()
    with torch.no_grad():
        return net(x1, x2).clone()


@pytest.fixture(scope="module")
def experiments(zoo_lake: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    root = tmp_path_factory.mktemp("lab") / "Experiments"
    x1, x2, y = open_lake(zoo_lake).pairs(SCENARIO, "test").tensors()
    predictions = {str((root / r.folder / r.file).resolve()): _train(r, root / r.folder / r.file, x1, x2, y)
                   for r in RUNS}
    (root / "broken").mkdir()
    good = (root / RUNS[0].folder / RUNS[0].file).read_bytes()
    (root / "broken" / "AE epoch mse val 9.pth").write_bytes(good[: len(good) // 3])
    return root, predictions


@pytest.fixture(scope="module")
def evaluated(zoo_lake: Path, experiments, tmp_path_factory: pytest.TempPathFactory):
    import shutil

    lake = tmp_path_factory.mktemp("evaluated") / "lake"
    shutil.copytree(zoo_lake, lake)
    report = evaluate_checkpoints(lake, experiments[0], SCENARIO, "test", batch_size=64, accuracy_models=2,
                                  store_predictions=True, assume_heads=4)  # "compiled" records no head count
    return lake, report


def _row(lake: Path, checkpoint: str) -> dict:
    df = open_lake(lake).sql("SELECT * FROM evaluations WHERE checkpoint = $c", {"c": checkpoint})
    assert df.height == 1, df
    return df.row(0, named=True)


def test_evaluation_reproduces_training_predictions_exactly(evaluated, experiments) -> None:
    lake, report = evaluated
    _, predictions = experiments
    for path, expected in predictions.items():
        frame, vectors = load_predictions(open_lake(lake), source_file=path, kind="PD")
        assert frame["pair_id"].to_list() == sorted(frame["pair_id"].to_list())
        assert torch.equal(torch.from_numpy(vectors), expected), path


def test_rows_carry_inferred_config_and_name_fields(evaluated) -> None:
    lake, report = evaluated
    assert report.snapshot == open_lake(lake).snapshot
    for run in RUNS:
        row = _row(lake, f"{run.folder}/{run.file}")
        assert row["error"] is None
        config = MergerConfig.from_dict(json.loads(row["config"]))
        assert config == run.config
        assert (row["d_model"], row["n_heads"], row["output_head"]) == (run.config.d_model, run.config.n_heads,
                                                                         run.config.output_head)
        assert row["scenario"] == SCENARIO and row["split"] == "test" and row["n_pairs"] == 8
        assert row["snapshot"] == report.pairs_snapshot and row["zoo"] == "fz"
    gated = _row(lake, "gated/AE epoch w1 train 3.pth")
    assert (gated["loss"], gated["track"], gated["epoch"], gated["heads_source"]) == ("w1", "train", 3, "sidecar")
    assert _row(lake, "compiled/AE epoch mse test 1.pth")["heads_source"] == "assumed"
    assert _row(lake, "tok_h1/AE epoch mae val 4.pth")["heads_source"] == "run_dir_name"


def test_metrics_equal_compute_all_on_the_training_predictions(evaluated, experiments, zoo_lake) -> None:
    lake, _ = evaluated
    _, _, y = open_lake(zoo_lake).pairs(SCENARIO, "test").tensors()
    run = RUNS[0]
    expected = compute_all(experiments[1][str((experiments[0] / run.folder / run.file).resolve())].numpy(), y.numpy())
    row = _row(lake, f"{run.folder}/{run.file}")
    for name in ("mse", "w1", "cosine", "kl", "mse_fc1", "sliced_w", "ar_mse_ratio_conv2", "layer_nmse"):
        finite = expected[name][np.isfinite(expected[name])]
        assert row[f"pd_{name}"] == pytest.approx(float(finite.mean()), rel=1e-12), name
    assert row["fn_w1"] is None and row["pdfn_mse"] is None  # checkpoints have no fine-tuned vectors
    long = open_lake(lake).sql("SELECT layer, mean, n_valid FROM evaluation_metrics WHERE checkpoint = $c AND "
                               "comparison = 'pd' AND metric = 'mse' ORDER BY layer NULLS FIRST",
                               {"c": f"{run.folder}/{run.file}"})
    assert long["layer"].to_list() == [None, "conv1", "conv2", "conv3", "fc1", "fc2"]
    assert long["mean"][0] == pytest.approx(row["pd_mse"]) and set(long["n_valid"]) == {8}


def test_rebuilt_cnn_accuracy(evaluated, zoo_lake, fashion_test) -> None:
    from weightlake.zoo.idx import select_classes
    from weightlake.zoo.train import evaluate_accuracy

    lake, _ = evaluated
    row = _row(lake, f"{RUNS[0].folder}/{RUNS[0].file}")
    assert row["accuracy_models"] == 2 and row["accuracy_images"] == "fashion-mnist"
    assert 0.0 <= row["pd_accuracy"] <= 100.0
    zoo = open_lake(zoo_lake)
    frame = zoo.pairs(SCENARIO, "test").to_polars()
    scores = []
    for i in (0, len(frame) - 1):  # the two picks: evenly spread over the pairs
        target = frame.row(i, named=True)
        classes = [d for d in range(10) if target["target_mask"] >> d & 1]
        images, labels = select_classes(*fashion_test, classes, per_class=500)
        scores.append(evaluate_accuracy(zoo.cnn(target["target_id"]), images, labels))
    assert row["gt_accuracy"] == pytest.approx(float(np.mean(scores)))


def test_bad_checkpoint_gets_an_error_row_and_the_rest_go_on(evaluated) -> None:
    lake, report = evaluated
    row = _row(lake, "broken/AE epoch mse val 9.pth")
    assert "truncated" in row["error"] and row["pd_mse"] is None
    assert [r["checkpoint"] for r in report.failed] == ["broken/AE epoch mse val 9.pth"]
    assert any("FAILED" in line for line in report.lines())
    df = open_lake(lake).sql("SELECT checkpoint, loss, epoch, pd_mse, pd_w1, fn_w1, collapsed FROM evaluations "
                             "ORDER BY pd_w1")
    assert df.height == len(RUNS) + 1 and df["pd_w1"].null_count() == 1


def test_evaluating_again_replaces_only_that_checkpoint(evaluated, experiments, tmp_path) -> None:
    import shutil

    lake = tmp_path / "lake"
    shutil.copytree(evaluated[0], lake)
    before = open_lake(lake).sql("SELECT checkpoint, n_pairs, pd_mse FROM evaluations ORDER BY checkpoint")
    path = experiments[0] / RUNS[1].folder / RUNS[1].file
    evaluate_checkpoints(lake, [path], SCENARIO, "test", limit_pairs=3, images=None, seed=1)
    after = open_lake(lake).sql("SELECT checkpoint, n_pairs, pd_mse FROM evaluations ORDER BY checkpoint")
    assert after.height == before.height
    changed = after.filter(after["checkpoint"] == f"{RUNS[1].folder}/{RUNS[1].file}")
    assert changed["n_pairs"].to_list() == [3]
    assert after.filter(after["n_pairs"] == 8).equals(before.filter(before["checkpoint"] != changed["checkpoint"][0]))
    counts = open_lake(lake).sql("SELECT checkpoint, count(*) AS n FROM evaluation_metrics GROUP BY ALL")
    assert counts["n"].n_unique() == 1  # each checkpoint's long rows were replaced, not duplicated


def test_batch_size_does_not_change_the_result_beyond_rounding(evaluated, experiments, tmp_path) -> None:
    import shutil

    lake = tmp_path / "lake"
    shutil.copytree(evaluated[0], lake)
    path = experiments[0] / RUNS[0].folder / RUNS[0].file
    evaluate_checkpoints(lake, [path], SCENARIO, "test", batch_size=3, images=None, store_predictions=True)
    _, vectors = load_predictions(open_lake(lake), source_file=str(path.resolve()), kind="PD")
    np.testing.assert_allclose(vectors, experiments[1][str(path.resolve())].numpy(), rtol=1e-5, atol=1e-6)


def test_assumed_heads_are_marked_in_table_output_and_report(evaluated, tmp_path: Path) -> None:
    from weightlake.experiments.report import write_report

    lake, report = evaluated
    lines = report.lines()
    (compiled,) = [line for line in lines if "compiled/" in line]
    assert "heads_from=assumed (n_heads=4)" in compiled
    assert not any("heads_from=assumed" in line for line in lines if "run_d16_h2/" in line)
    assert any("1 checkpoints ran with assumed heads" in line for line in lines)
    provenance = json.loads(_row(lake, "compiled/AE epoch mse test 1.pth")["config_provenance"])
    assert provenance["heads"] == "assumed" and provenance["gated_attention"] == "presence of attn.gate"
    text = write_report(lake, tmp_path / "r.md", plots=False).path.read_text()
    assert "heads_from=assumed: 1 sources" in text and "compiled/AE epoch mse test 1.pth" in text
    configs = text.split("## Inferred configurations")[1].split("\n## ")[0]
    assert "gated_attention" in configs and "| gated/AE epoch w1 train 3.pth | sidecar | 3 | 24 |" in configs


def test_unknown_heads_are_refused_not_evaluated_as_four(zoo_lake: Path, experiments, tmp_path: Path) -> None:
    """2- and 3-head checkpoints were evaluated as 4 heads with no mark: the metrics belonged to another network."""
    import shutil

    lake = tmp_path / "lake"
    shutil.copytree(zoo_lake, lake)
    path = experiments[0] / "compiled" / "AE epoch mse test 1.pth"
    report = evaluate_checkpoints(lake, [path], SCENARIO, "test", images=None, metrics=["mse"])
    (row,) = report.rows
    assert row["heads_source"] == "unknown" and "--assume-heads" in row["error"] and row.get("pd_mse") is None
    assert row["d_model"] == 32 and row["gated_attention"] is False  # what the file is, still shown
    assert any("REFUSED" in line and "--heads N" in line for line in report.lines())
    stored = _row(lake, "compiled/AE epoch mse test 1.pth")
    assert stored["heads_source"] == "unknown" and stored.get("pd_mse") is None and stored["n_heads"] is None


def test_collapse_of_a_constant_model(zoo_lake: Path, tmp_path: Path) -> None:
    import shutil

    lake = tmp_path / "lake"
    shutil.copytree(zoo_lake, lake)
    torch.manual_seed(5)
    model = TransformerAE(MergerConfig(16, 2, 16, 1, 8))
    with torch.no_grad():  # the decoder's last linear ignores its input: one vector whatever the pair
        model.dec.lay.linear.weight.zero_()
        model.dec.lay.linear.bias.copy_(torch.randn(2464) * 0.05)
    path = tmp_path / "Experiments" / "collapsed_h2" / "AE epoch mse val 7.pth"
    path.parent.mkdir(parents=True)
    torch.save({"epoch": 7, "model_state_dict": model.state_dict()}, path)
    report = evaluate_checkpoints(lake, path.parent.parent, SCENARIO, "test", images=None)
    row = report.rows[0]
    assert row["error"] is None and row["collapsed"] is True
    assert row["pd_top_row_share"] == 1.0 and row["pd_distinct_rows"] == 1
    assert math.isnan(row["pd_across_rows_pearson"]) and "collapsed" in row["pd_across_rows_pearson_reason"]
    assert math.isnan(row["pd_silhouette"]) and "collapsed" in row["pd_silhouette_reason"]
    assert math.isfinite(row["pd_mse"]) and math.isfinite(row["pd_w1"])
    assert not math.isnan(row["gt_silhouette"])  # the targets themselves vary: two class sets, four pairs each
    assert math.isnan(row["pd_accuracy"]) and "no image data" in row["accuracy_note"]
    stored = open_lake(lake).sql("SELECT collapsed, pd_collapse_reason FROM evaluations")
    assert stored["collapsed"].to_list() == [True] and "regardless of input" in stored["pd_collapse_reason"][0]


def test_silhouette_needs_variety() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 0.01, (5, 20)), rng.normal(5, 0.01, (5, 20))
    groups = np.array([0] * 5 + [1] * 5)
    assert silhouette(np.vstack([a, b]), groups).value > 0.99
    same = silhouette(np.tile(a[0], (10, 1)), groups)
    assert math.isnan(same.value) and "collapsed" in same.reason
    single = silhouette(np.vstack([a, b]), np.arange(10))
    assert math.isnan(single.value) and "fewer than two" in single.reason
    assert "no grouping" in silhouette(a, None).reason


def test_pair_sample_and_argument_errors(zoo_lake: Path, experiments) -> None:
    assert select_positions(5, None).tolist() == [0, 1, 2, 3, 4]
    sample = select_positions(100, 10, seed=3)
    assert len(sample) == 10 and (np.diff(sample) > 0).all() and (sample == select_positions(100, 10, seed=3)).all()
    with pytest.raises(QueryError, match="limit_pairs"):
        select_positions(5, 0)
    with pytest.raises(NoSuchTableError, match="no scenario 'nope'"):
        evaluate_checkpoints(zoo_lake, experiments[0] / "gated", "nope", images=None)
    with pytest.raises(QueryError, match="batch_size"):
        evaluate_checkpoints(zoo_lake, experiments[0] / "gated", SCENARIO, batch_size=0)
    labels = [name for name, _ in resolve_checkpoints(experiments[0])]
    assert labels == sorted(labels) and f"{RUNS[0].folder}/{RUNS[0].file}" in labels
    assert open_lake(zoo_lake).tables == ["pairs", "scenarios"]  # failed calls committed nothing


def test_partial_collapse_is_flagged_in_rows_and_output() -> None:
    from weightlake.experiments.evaluate import EvaluationReport, variety

    rng = np.random.default_rng(3)
    pred = np.repeat(rng.standard_normal((1, 64)).astype(np.float32), 100, axis=0)
    pred[71:] = rng.standard_normal((29, 64))  # 71 % of the inputs get one output vector
    cols = variety(pred, None, "pd")
    assert cols["collapsed"] is False and cols["pd_partial_collapse"] is True
    assert cols["pd_top_row_share"] == pytest.approx(0.71) and "partial collapse" in cols["pd_collapse_reason"]
    report = EvaluationReport("s", "test", "z", 100, 1, rows=[{"checkpoint": "a.pth", "error": None, **cols}])
    assert "PARTIAL COLLAPSE (71% of rows one vector)" in report.lines()[1]


def test_declaring_the_scenario_again_drops_its_checkpoint_evaluations(evaluated, tmp_path: Path) -> None:
    """The rows were keyed by scenario and split only: after a new declaration they scored (and their
    predictions named by pair id) pairs the scenario no longer held. Tracking rows carry their own pairs."""
    import shutil

    from weightlake.experiments.tracking import ingest_tracking, write_tracking_csv
    from weightlake.scenarios import declare_scenario
    from weightlake.verify import verify

    lake = tmp_path / "lake"
    shutil.copytree(evaluated[0], lake)
    gt = np.random.default_rng(0).standard_normal((4, 2464)).astype(np.float32)
    track = write_tracking_csv(tmp_path / "Tracking" / "AE epoch mse 1.csv", gt, gt * 0.5, gt * 0.9)
    ingest_tracking(lake, track, scenario=SCENARIO)
    before = open_lake(lake)
    kinds = "SELECT source_kind, count(*) AS n FROM {} GROUP BY ALL ORDER BY ALL"
    assert before.sql(kinds.format("evaluations"))["source_kind"].to_list() == ["checkpoint", "tracking"]
    tracking_before = before.sql("SELECT * FROM evaluations WHERE source_kind = 'tracking'")
    same = declare_scenario(lake, SCENARIO, zoo="fz", digits="0-4", sizes="2", overlap=0, epochs=[11])
    assert not any("evaluations" in n for n in same.notes)  # the same pairs again: their scores still hold
    before = open_lake(lake)
    assert before.sql(kinds.format("predictions")).height == 2
    report = declare_scenario(lake, SCENARIO, zoo="fz", digits="0-3", sizes="2", overlap=0, epochs=[11])
    assert any(f"the evaluations of {len(RUNS) + 1} checkpoint(s) on its earlier pairs are dropped (snapshot "
               f"{before.snapshot} keeps them: `weightlake experiments report --snapshot {before.snapshot}`)" in n
               for n in report.notes), report.notes
    after = open_lake(lake)
    for table in ("evaluations", "evaluation_metrics", "predictions"):
        assert after.sql(kinds.format(table))["source_kind"].to_list() == ["tracking"], table
    from weightlake.experiments.baselines import load_baselines

    assert load_baselines(before).height == 3 and load_baselines(after) is None  # they scored the old pairs too
    assert after.sql("SELECT * FROM evaluations").select(tracking_before.columns).equals(tracking_before)
    _, vectors = load_predictions(after, source_file=str(track.resolve()), kind="PD")
    np.testing.assert_array_equal(vectors, gt * 0.5)
    assert after.at(before.snapshot).sql(kinds.format("evaluations")).height == 2  # time travel still sees them
    assert verify(after).ok
    again = declare_scenario(lake, SCENARIO, zoo="fz", digits="0-3", sizes="2", overlap=0, epochs=[11])
    assert not any("evaluations" in n for n in again.notes)  # nothing left to drop: nothing said


# -- baselines: trivial predictions scored beside the checkpoints -----------------------------------
def _baselines(lake: Path) -> dict[str, dict]:
    from weightlake.experiments.baselines import load_baselines

    frame = load_baselines(open_lake(lake))
    assert frame is not None
    return {r["baseline"]: r for r in frame.iter_rows(named=True)}


def test_baselines_are_scored_on_the_checkpoints_pairs_and_images(evaluated) -> None:
    """Review: every checkpoint lost to predicting zeros, and nothing showed it. The baselines go through
    the checkpoints' own scoring path; their numbers are recomputed here from the pairs themselves."""
    lake, report = evaluated
    refs = _baselines(lake)
    assert set(refs) == {"zeros", "train_mean", "inputs_mean"}
    # the scenario's "user" split puts every pair in test or val: no train mean to take, and the row says so
    assert refs["train_mean"]["error"] == "not computed: scenario 't1' has no train pairs"
    assert refs["train_mean"]["pd_mse"] is None
    ckpt = _row(lake, f"{RUNS[0].folder}/{RUNS[0].file}")
    for ref in (refs["zeros"], refs["inputs_mean"]):
        assert ref["error"] is None
        assert ref["source_kind"] == "baseline" and ref["checkpoint"] == f"baseline: {ref['baseline']}"
        for col in ("scenario", "split", "snapshot", "n_pairs", "limit_pairs", "pair_seed", "zoo"):
            assert ref[col] == ckpt[col], col
        assert ref["accuracy_models"] == ckpt["accuracy_models"] == 2
        assert ref["gt_accuracy"] == ckpt["gt_accuracy"] and ref["accuracy_note"] == ckpt["accuracy_note"]
        assert 0.0 <= ref["pd_accuracy"] <= 100.0
    x1, x2, y = (t.numpy() for t in open_lake(lake).pairs(SCENARIO, "test").tensors())
    for name, pred in {"zeros": np.zeros_like(y), "inputs_mean": (x1 + x2) / 2}.items():
        columns = compute_all(pred, y)
        for metric in ("mse", "nmse", "w1", "mse_conv1"):
            finite = columns[metric][np.isfinite(columns[metric])]
            assert math.isclose(refs[name][f"pd_{metric}"], float(finite.mean()), rel_tol=1e-5), (name, metric)
    assert refs["zeros"]["collapsed"] and not refs["inputs_mean"]["collapsed"]
    assert [r["baseline"] for r in report.baselines] == ["zeros", "inputs_mean", "train_mean"]
    lines = report.lines()
    assert "  baselines on the same pairs (references, not checkpoints):" in lines
    assert "    baseline: train_mean: not computed: scenario 't1' has no train pairs" in lines


def test_evaluations_keep_only_sources_so_their_queries_are_unchanged(evaluated) -> None:
    lake, _ = evaluated
    kinds = open_lake(lake).sql("SELECT DISTINCT source_kind FROM evaluations")["source_kind"].to_list()
    assert kinds == ["checkpoint"]
    both = open_lake(lake).sql("SELECT source_kind, count(*) AS n FROM (SELECT source_kind FROM evaluations "
                               "UNION ALL BY NAME SELECT source_kind FROM evaluation_baselines) GROUP BY 1 ORDER BY 1")
    assert both.rows() == [("baseline", 3), ("checkpoint", len(RUNS) + 1)]


def test_baselines_follow_the_pairs_their_checkpoints_are_on(evaluated, experiments, tmp_path) -> None:
    """Baselines of a set of pairs are replaced when it is evaluated again, and dropped once no checkpoint
    row is left on it (a re-evaluation on other pairs moved them all)."""
    import shutil

    from weightlake.experiments.baselines import load_baselines

    lake = tmp_path / "lake"
    shutil.copytree(evaluated[0], lake)
    one = experiments[0] / RUNS[1].folder / RUNS[1].file
    evaluate_checkpoints(lake, [one], SCENARIO, "test", limit_pairs=4, images=None, metrics=["mse"])
    sets = load_baselines(open_lake(lake)).group_by("n_pairs").len().sort("n_pairs").rows()
    assert sets == [(4, 3), (8, 3)]  # the other checkpoints are still on all 8 pairs
    evaluate_checkpoints(lake, [one], SCENARIO, "test", limit_pairs=4, images=None, metrics=["mse"])
    assert load_baselines(open_lake(lake)).height == 6  # the same pairs again: replaced, not added
    paths = [experiments[0] / r.folder / r.file for r in RUNS] + [experiments[0] / "broken" / "AE epoch mse val 9.pth"]
    evaluate_checkpoints(lake, paths, SCENARIO, "test", limit_pairs=4, images=None, metrics=["mse"],
                         assume_heads=4)
    assert load_baselines(open_lake(lake))["n_pairs"].to_list() == [4, 4, 4]
    no_refs = evaluate_checkpoints(lake, [one], SCENARIO, "test", limit_pairs=4, images=None, metrics=["mse"],
                                   baselines=False)
    assert no_refs.baselines == [] and load_baselines(open_lake(lake)).height == 3


def test_train_mean_is_the_mean_target_over_train_pairs(zoo_lake, tmp_path) -> None:
    import shutil

    from weightlake.experiments.baselines import train_mean
    from weightlake.scenarios import declare_scenario

    lake = tmp_path / "lake"
    shutil.copytree(zoo_lake, lake)
    declare_scenario(lake, "r", zoo="fz", digits="0-4", sizes="2", overlap=0, epochs=[11], split="random")
    y = open_lake(lake).pairs("r", "train").tensors()[2].numpy().astype(np.float64)
    assert len(y) > 1 and len(np.unique(y, axis=0)) < len(y)  # a target repeats: counted once per pair
    mean, why = train_mean(open_lake(lake), "r", "fz")
    assert why is None and mean is not None and mean.dtype == np.float32
    np.testing.assert_allclose(mean, y.mean(0), rtol=1e-6, atol=1e-7)
