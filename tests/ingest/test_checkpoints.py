"""Checkpoint trees in both layouts, every file-name variant, and every way a file can be bad."""

from __future__ import annotations

import math
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from weightlake.arch import CNN_S, EPOCH_BINS
from weightlake.errors import IngestError
from weightlake.ingest.checkpoints import (
    FINAL_EPOCH,
    BinChoice,
    CheckpointBatch,
    assign_epoch_bins,
    read_checkpoints,
    scan_checkpoint_tree,
)
from weightlake.zoo.cnn import build_cnn

INIT = "kaiming_uniform"


class _Marker:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return exec, (f"open({self.path!r}, 'w').close()",)


def _trained(activation: str, seed: int) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = build_cnn(activation=activation)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for p in model.parameters():  # a real Adam state without paying for a forward pass
        p.grad = torch.randn_like(p)
    optimizer.step()
    return model, optimizer


def save_checkpoint(path: Path, activation: str = "relu", epoch: int | None = 11, seed: int = 0,
                    state_dict: dict[str, Any] | None = None) -> np.ndarray:
    """Save a checkpoint the way the reference trainer did; return its flat vector."""
    model, optimizer = _trained(activation, seed)
    obj: dict[str, Any] = {"model_state_dict": state_dict or model.state_dict(),
                           "optimizer_state_dict": optimizer.state_dict()}
    if epoch is not None:
        obj["epoch"] = epoch
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path)
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).numpy()


def save_metrics(model_dir: Path, epochs: int, seed: int = 0) -> np.ndarray:
    """Metrics arrays with the spec's shapes; returns the test accuracy row."""
    rng = np.random.default_rng(seed)
    metrics = model_dir / "metrics"
    metrics.mkdir(parents=True, exist_ok=True)
    acc = rng.uniform(10, 100, size=(1, epochs + 1))
    np.save(metrics / "Test Accuracy IID.npy", acc)
    np.save(metrics / "Test Loss IID.npy", rng.uniform(size=(1, epochs + 1)))
    np.save(metrics / "Train Acc.npy", rng.uniform(size=(1, epochs)))
    np.save(metrics / "Train Loss.npy", rng.uniform(size=(1, epochs)))
    np.save(metrics / "multiclass test Confusion matrix raw.npy", rng.integers(0, 9, size=(10, 10, epochs)))
    return acc[0]


@pytest.fixture(scope="module")
def tree_a(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A layout-A tree with one model per situation; returns root, flats and accuracies."""
    root = tmp_path_factory.mktemp("ckpt_a")
    flats: dict[str, np.ndarray] = {}
    acc: dict[str, np.ndarray] = {}

    def put(rel: str, **kw: Any) -> None:
        flats[rel] = save_checkpoint(root / rel, seed=len(flats), **kw)

    for e in EPOCH_BINS:  # complete model
        put(f"[0, 1]/relu/checkpoint epoch {e}.pth", epoch=e)
    acc["[0, 1]/relu"] = save_metrics(root / "[0, 1]/relu", 40)
    put("[0, 1]/gelu/checkpoint epoch 11.pth", activation="gelu", epoch=11)  # early stop at 19
    put("[0, 1]/gelu/checkpoint epoch16.pth", activation="gelu", epoch=16)
    put("[0, 1]/gelu/checkpoint epoch -1.pth", activation="gelu", epoch=19)
    acc["[0, 1]/gelu"] = save_metrics(root / "[0, 1]/gelu", 20, seed=1)
    put("[2, 5, 7]/relu/checkpoint epoch 11.pth", epoch=11)  # early stop at 23, no metrics/
    put("[2, 5, 7]/relu/checkpoint epoch-1.pth", epoch=23)
    put("[2, 5, 7]/gelu/checkpoint epoch 11.pth", activation="gelu", epoch=11)  # final of unknown epoch
    put("[2, 5, 7]/gelu/checkpoint epoch 16.pth", activation="gelu", epoch=16)
    put("[2, 5, 7]/gelu/checkpoint.pth", activation="gelu", epoch=None)
    acc["[2, 5, 7]/gelu"] = save_metrics(root / "[2, 5, 7]/gelu", 18, seed=2)
    for e in EPOCH_BINS:  # complete, plus epoch 40 and two files that repeat an epoch
        put(f"[3, 4]/relu/checkpoint epoch {e}.pth", epoch=e)
    put("[3, 4]/relu/checkpoint epoch 40.pth", epoch=40)
    put("[3, 4]/relu/checkpoint epoch36.pth", epoch=36)
    put("[3, 4]/relu/checkpoint.pth", epoch=26)
    _bad_files(root / "[3, 4]/gelu", flats)
    put("labels-old/relu/checkpoint epoch 11.pth", epoch=11)
    put("[0, 1]/swish/checkpoint epoch 11.pth", epoch=11)
    put("[0, 1]/relu/checkpoint best.pth", epoch=11)
    return {"root": root, "flats": flats, "acc": acc}


def _bad_files(model_dir: Path, flats: dict[str, np.ndarray]) -> None:
    model_dir.mkdir(parents=True)
    save_checkpoint(model_dir / "checkpoint epoch 11.pth", "gelu", 11)
    data = (model_dir / "checkpoint epoch 11.pth").read_bytes()
    (model_dir / "checkpoint epoch 11.pth").write_bytes(data[: len(data) // 2])
    sd = build_cnn(activation="gelu").state_dict()
    wrong = dict(sd, **{"module_list.9.weight": torch.zeros(20, 35)})
    save_checkpoint(model_dir / "checkpoint epoch 16.pth", "gelu", 16, state_dict=wrong)
    save_checkpoint(model_dir / "checkpoint epoch 21.pth", "gelu", 21, state_dict=dict(sd, extra=torch.ones(3)))
    torch.save({"epoch": 26, "model_state_dict": sd, "hook": _Marker(model_dir.parent / "PWNED")},
               model_dir / "checkpoint epoch 26.pth")
    flats["[3, 4]/gelu/checkpoint epoch 31.pth"] = save_checkpoint(
        model_dir / "checkpoint epoch 31.pth", "gelu", 31, seed=99)


@pytest.fixture(scope="module")
def batch_a(tree_a: dict[str, Any]) -> CheckpointBatch:
    return read_checkpoints(scan_checkpoint_tree(tree_a["root"], init=INIT), CNN_S, workers=1)


def _rows(batch: CheckpointBatch, label: str, activation: str) -> list[dict[str, Any]]:
    return [r for r in batch.rows.to_dicts() if r["label"] == label and r["activation"] == activation]


def _weights_of(batch: CheckpointBatch, label: str, activation: str, epoch: int) -> np.ndarray:
    (index,) = [i for i, r in enumerate(batch.rows.to_dicts())
                if (r["label"], r["activation"], r["epoch"]) == (label, activation, epoch)]
    return batch.weights[index]


# -- epoch bins -----------------------------------------------------------------------------------
def test_bins_complete_model_is_all_direct() -> None:
    out = assign_epoch_bins({e: f"f{e}" for e in EPOCH_BINS})
    assert out == {e: BinChoice(e, e, f"f{e}", False) for e in EPOCH_BINS}


def test_bins_early_stop_fills_later_bins() -> None:
    out = assign_epoch_bins({11: "a", 16: "b", 19: "stop"})
    assert [(b, c.ref, c.epoch, c.fallback) for b, c in out.items()] == [
        (11, "a", 11, False), (16, "b", 16, False), (21, "stop", 19, True), (26, "stop", 19, True),
        (31, "stop", 19, True), (36, "stop", 19, True)]


def test_bins_early_stop_goes_to_its_predecessor_bin() -> None:
    out = assign_epoch_bins({11: "a", 19: "stop"})
    assert out[16] == BinChoice(16, 19, "stop", True)


def test_bins_before_first_bin_and_gaps() -> None:
    assert assign_epoch_bins({5: "early"}) == {}
    out = assign_epoch_bins({31: "x"})
    assert sorted(out) == [31, 36] and out[36].fallback


def test_bins_late_checkpoint_fills_last_bin_only() -> None:
    out = assign_epoch_bins({11: "a", 40: "end"})
    assert out[36] == BinChoice(36, 40, "end", True) and out[31].ref == "a"


def test_bins_final_of_unknown_epoch() -> None:
    out = assign_epoch_bins({11: "a", 16: "b", FINAL_EPOCH: "end"})
    assert out[16].ref == "b" and all(out[b] == BinChoice(b, None, "end", True) for b in (21, 26, 31, 36))
    assert all(c.ref == "end" and c.fallback for c in assign_epoch_bins({FINAL_EPOCH: "end"}).values())
    assert assign_epoch_bins({36: "x", FINAL_EPOCH: "end"})[36].ref == "x"


@given(st.sets(st.integers(0, 45), max_size=8), st.booleans())
def test_bins_properties(epochs: set[int], final: bool) -> None:
    available: dict[int, int] = {e: e for e in epochs}
    if final:
        available[FINAL_EPOCH] = FINAL_EPOCH
    out = assign_epoch_bins(available)
    bins = list(EPOCH_BINS)
    for b, choice in out.items():
        assert choice.fallback == (choice.epoch != b)
        upper = bins[bins.index(b) + 1] if b != bins[-1] else math.inf
        assert choice.epoch is None or bins[0] <= choice.epoch < upper
    chosen = [c.ref for _, c in sorted(out.items())]
    assert chosen == sorted(chosen)  # a later bin never holds an earlier state
    usable = [e for e in epochs if e >= bins[0]]
    if usable:  # every bin from the first usable checkpoint's bin on is filled
        first_bin = max(b for b in bins if b <= min(usable))
        assert all(b in out for b in bins if b >= first_bin)
    if final:
        assert all(b in out for b in bins if b > max(epochs, default=-1))


# -- scanning -----------------------------------------------------------------------------------
def test_scan_layout_a(tree_a: dict[str, Any]) -> None:
    files = scan_checkpoint_tree(tree_a["root"], init=INIT)
    assert {f.layout for f in files} == {"A"}
    good = {f.relpath: f for f in files if f.reject is None}
    assert good["[0, 1]/gelu/checkpoint epoch -1.pth"].name_epoch == -1
    assert good["[0, 1]/gelu/checkpoint epoch16.pth"].name_epoch == 16
    assert good["[2, 5, 7]/gelu/checkpoint.pth"].name_epoch is None
    assert good["[2, 5, 7]/relu/checkpoint epoch-1.pth"].classes == (2, 5, 7)
    assert good["[3, 4]/relu/checkpoint epoch 40.pth"].init == INIT
    rejected = {f.relpath: f.reject for f in files if f.reject is not None}
    assert set(rejected) == {"labels-old", "[0, 1]/swish", "[0, 1]/relu/checkpoint best.pth"}
    assert "labels-old" in str(rejected["labels-old"]) and "swish" in str(rejected["[0, 1]/swish"])


def test_scan_layout_a_needs_init(tree_a: dict[str, Any]) -> None:
    with pytest.raises(IngestError, match="init="):
        scan_checkpoint_tree(tree_a["root"])
    with pytest.raises(IngestError, match="unknown initialisation"):
        scan_checkpoint_tree(tree_a["root"], init="zeros")


def test_scan_layout_b_and_init_filter(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "[0, 1]/relu/xavier_normal/checkpoint epoch 11.pth")
    save_checkpoint(tmp_path / "[0, 1]/relu/normal/checkpoint epoch 16.pth", epoch=16)
    save_checkpoint(tmp_path / "[0, 1]/relu/glorot/checkpoint epoch 16.pth")
    files = scan_checkpoint_tree(tmp_path)
    assert [(f.layout, f.init, f.name_epoch) for f in files if f.reject is None] == [
        ("B", "normal", 16), ("B", "xavier_normal", 11)]
    assert [f.relpath for f in files if f.reject] == ["[0, 1]/relu/glorot"]
    only = scan_checkpoint_tree(tmp_path, init="normal")
    assert [f.init for f in only] == ["normal"]
    accuracy = save_metrics(tmp_path / "[0, 1]/relu/normal", 17)
    rows = read_checkpoints(files, workers=1).rows.to_dicts()
    assert [(r["init"], r["epoch"], r["accuracy"]) for r in rows][:2] == [
        ("normal", 16, accuracy[17]), ("normal", 21, accuracy[17])]
    assert {r["init"] for r in rows} == {"normal", "xavier_normal"}


def test_scan_mixed_and_empty_layouts_are_errors(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="no checkpoint files"):
        scan_checkpoint_tree(tmp_path)
    save_checkpoint(tmp_path / "[0, 1]/relu/checkpoint epoch 11.pth")
    save_checkpoint(tmp_path / "[0, 2]/relu/normal/checkpoint epoch 11.pth")
    with pytest.raises(IngestError, match=r"mixed layouts.*'\[0, 1\]/relu'.*'\[0, 2\]/relu/normal'"):
        scan_checkpoint_tree(tmp_path, init=INIT)
    forced = scan_checkpoint_tree(tmp_path, init=INIT, layout="A")
    assert [f.relpath for f in forced if f.reject] == ["[0, 2]/relu/normal"]


# -- reading ------------------------------------------------------------------------------------
def test_rows_of_complete_model(batch_a: CheckpointBatch, tree_a: dict[str, Any]) -> None:
    rows = _rows(batch_a, "[0, 1]", "relu")
    assert [(r["epoch"], r["actual_epoch"], r["fallback"]) for r in rows] == [(e, e, False) for e in EPOCH_BINS]
    first = rows[0]
    assert first["classes"] == [0, 1] and first["class_mask"] == 0b11 and first["n_classes"] == 2
    assert first["init"] == INIT and first["source_row"] is None
    assert first["source_file"] == "[0, 1]/relu/checkpoint epoch 11.pth"
    assert [r["accuracy"] for r in rows] == [tree_a["acc"]["[0, 1]/relu"][e + 1] for e in EPOCH_BINS]
    for e in EPOCH_BINS:
        np.testing.assert_array_equal(_weights_of(batch_a, "[0, 1]", "relu", e),
                                      tree_a["flats"][f"[0, 1]/relu/checkpoint epoch {e}.pth"])
    assert batch_a.weights.dtype == np.float32 and batch_a.weights.shape == (len(batch_a.rows), CNN_S.n_params)


def test_rows_of_early_stopped_model(batch_a: CheckpointBatch, tree_a: dict[str, Any]) -> None:
    rows = _rows(batch_a, "[0, 1]", "gelu")
    assert [(r["epoch"], r["actual_epoch"], r["fallback"]) for r in rows] == [
        (11, 11, False), (16, 16, False), *[(e, 19, True) for e in EPOCH_BINS[2:]]]
    accuracy = tree_a["acc"]["[0, 1]/gelu"]
    assert rows[-1]["accuracy"] == accuracy[20] and rows[-1]["source_file"] == "[0, 1]/gelu/checkpoint epoch -1.pth"
    stop = tree_a["flats"]["[0, 1]/gelu/checkpoint epoch -1.pth"]
    for e in EPOCH_BINS[2:]:  # the duplicates the CSV had, now flagged
        np.testing.assert_array_equal(_weights_of(batch_a, "[0, 1]", "gelu", e), stop)


def test_rows_without_metrics_and_with_unknown_final(batch_a: CheckpointBatch, tree_a: dict[str, Any]) -> None:
    rows = _rows(batch_a, "[2, 5, 7]", "relu")
    assert [(r["epoch"], r["actual_epoch"]) for r in rows] == [(11, 11), (16, 11), *[(e, 23) for e in EPOCH_BINS[2:]]]
    assert all(r["accuracy"] is None for r in rows)
    final = _rows(batch_a, "[2, 5, 7]", "gelu")
    assert [(r["epoch"], r["actual_epoch"], r["fallback"]) for r in final][2:] == [
        (e, None, True) for e in EPOCH_BINS[2:]]
    assert final[-1]["accuracy"] == tree_a["acc"]["[2, 5, 7]/gelu"][-1]
    assert final[-1]["class_mask"] == (1 << 2) | (1 << 5) | (1 << 7)


def test_shadowed_and_unused_files(batch_a: CheckpointBatch) -> None:
    rows = _rows(batch_a, "[3, 4]", "relu")
    assert [r["source_file"] for r in rows] == [f"[3, 4]/relu/checkpoint epoch {e}.pth" for e in EPOCH_BINS]
    # epoch36.pth and checkpoint.pth (epoch 26) repeat epochs; epoch 40 lies past the last bin.
    assert batch_a.summary.files_shadowed == 2 and batch_a.summary.files_unused == 3


def test_bad_files_are_rejected_not_run(batch_a: CheckpointBatch, tree_a: dict[str, Any]) -> None:
    root = tree_a["root"]
    assert not (root / "[3, 4]/PWNED").exists()
    reasons = {Path(p).relative_to(root).as_posix(): why for p, why in batch_a.rejects}
    assert "truncated or corrupted" in reasons["[3, 4]/gelu/checkpoint epoch 11.pth"]
    assert "(20, 35)" in reasons["[3, 4]/gelu/checkpoint epoch 16.pth"]
    assert "unexpected keys ['extra']" in reasons["[3, 4]/gelu/checkpoint epoch 21.pth"]
    assert "refused by weights-only loading" in reasons["[3, 4]/gelu/checkpoint epoch 26.pth"]
    assert "GLOBAL exec" in reasons["[3, 4]/gelu/checkpoint epoch 26.pth"]
    rows = _rows(batch_a, "[3, 4]", "gelu")
    assert [(r["epoch"], r["actual_epoch"]) for r in rows] == [(31, 31), (36, 31)]
    np.testing.assert_array_equal(_weights_of(batch_a, "[3, 4]", "gelu", 31),
                                  tree_a["flats"]["[3, 4]/gelu/checkpoint epoch 31.pth"])


def test_bins_of_refused_checkpoints_stay_missing() -> None:
    out = assign_epoch_bins({11: "a", 21: "c"}, refused={16})
    assert sorted(out) == [11, 21, 26, 31, 36] and not out[21].fallback  # 26.. : an early stop after 21
    assert assign_epoch_bins({11: "a"}, refused={16})[11].ref == "a"


def test_a_corrupt_checkpoint_is_no_early_stop(tmp_path: Path) -> None:
    model = tmp_path / "[0, 1]" / "gelu"
    for e in (11, 16, 21):
        save_checkpoint(model / f"checkpoint epoch {e}.pth", "gelu", e, seed=e)
    data = (model / "checkpoint epoch 16.pth").read_bytes()
    (model / "checkpoint epoch 16.pth").write_bytes(data[: len(data) // 2])
    batch = read_checkpoints(scan_checkpoint_tree(tmp_path, init=INIT), CNN_S, workers=1)
    rows = _rows(batch, "[0, 1]", "gelu")
    assert [(r["epoch"], r["actual_epoch"], r["fallback"]) for r in rows if r["epoch"] <= 21] == [
        (11, 11, False), (21, 21, False)]
    assert ("[0, 1]", "gelu", INIT, 16) in batch.summary.missing_slots


def test_marker_payload_really_runs_when_fully_unpickled(tmp_path: Path) -> None:
    # Guards the test above against a payload that would never have fired anyway.
    pickle.loads(pickle.dumps(_Marker(tmp_path / "ran")))
    assert (tmp_path / "ran").exists()


def test_summary(batch_a: CheckpointBatch) -> None:
    s = batch_a.summary
    assert (s.layout, s.labels, s.activations, s.inits) == ("A", 3, 2, 1)
    assert s.slots_expected == 3 * 2 * 6
    assert (s.slots_direct, s.slots_fallback, s.slots_missing) == (18, 14, 4)
    assert s.slots_direct + s.slots_fallback == len(batch_a.rows)
    assert {m[3] for m in s.missing_slots if m[:2] == ("[3, 4]", "gelu")} == {11, 16, 21, 26}
    assert s.files_rejected == len(batch_a.rejects) == 7
    assert s.models_without_metrics == 3 and s.rows_without_accuracy == 6 + 6 + 2
    assert any("[2, 5, 7]/relu/metrics" in w for w in s.warnings)
    assert s.to_dict()["slots_missing"] == 4
    from weightlake.ingest.checkpoints import _summary_lines

    lines = _summary_lines(s)  # the count was computed but never shown
    assert lines["rows whose accuracy is null (no metrics/ entry at their checkpoint's epoch)"] == 14


def test_pool_matches_in_process(batch_a: CheckpointBatch, tree_a: dict[str, Any]) -> None:
    seen: list[tuple[int, int]] = []
    files = scan_checkpoint_tree(tree_a["root"], init=INIT)
    pooled = read_checkpoints(files, CNN_S, workers=2, progress=lambda d, t: seen.append((d, t)), chunk_files=4)
    assert pooled.rows.equals(batch_a.rows)
    np.testing.assert_array_equal(pooled.weights, batch_a.weights)
    assert sorted(pooled.rejects) == sorted(batch_a.rejects)
    n_read = sum(f.reject is None for f in files)
    assert len(seen) > 1 and seen[-1] == (n_read, n_read)


def test_odd_but_readable_checkpoints(tmp_path: Path) -> None:
    model_dir = tmp_path / "[0, 9]/tanh"
    model_dir.mkdir(parents=True)
    sd = build_cnn(activation="tanh").state_dict()
    torch.save(sd, model_dir / "checkpoint epoch 11.pth")  # a bare state_dict: epoch from the name
    torch.save({"epoch": torch.tensor(16), "model_state_dict": {k: v.double() for k, v in sd.items()}},
               model_dir / "checkpoint epoch 16.pth")
    torch.save([1, 2, 3], model_dir / "checkpoint epoch 21.pth")
    torch.save({"epoch": 27, "model_state_dict": sd}, model_dir / "checkpoint epoch 26.pth")  # name and key differ
    batch = read_checkpoints(scan_checkpoint_tree(tmp_path, init=INIT), workers=1)
    # epoch 21's file is refused, so its bin stays missing (not filled from 16 as if training had stopped)
    assert [(r["epoch"], r["actual_epoch"], r["fallback"]) for r in batch.rows.to_dicts()][:3] == [
        (11, 11, False), (16, 16, False), (26, 27, True)]
    assert any("name says epoch 26, the file's 'epoch' key says 27" in w for w in batch.summary.warnings)
    expected = torch.cat([v.reshape(-1) for v in sd.values()]).numpy()
    np.testing.assert_array_equal(batch.weights[0], expected)
    np.testing.assert_allclose(batch.weights[1], expected)
    assert batch.weights.dtype == np.float32
    assert [why for _, why in batch.rejects] == ["expected a dict with 'model_state_dict', got list"]


def test_accuracies_outside_a_percentage_are_not_stored(tmp_path: Path) -> None:
    """A metrics file holding fractions or junk past 100 % is left out with a warning naming it and the value;
    a NaN epoch is named too and only that epoch's accuracy is null (both once went in as written, or silently)."""
    for label, row in (("[0, 1]", [10.0, 55.0, 1e4, 70.0]), ("[2, 3]", [10.0, -3.0, 60.0, 70.0]),
                       ("[4, 5]", [10.0, 50.0, np.nan, 70.0])):
        model_dir = tmp_path / label / "relu"
        save_checkpoint(model_dir / "checkpoint epoch 1.pth", epoch=1)
        save_checkpoint(model_dir / "checkpoint epoch 2.pth", epoch=2)
        (model_dir / "metrics").mkdir()
        np.save(model_dir / "metrics" / "Test Accuracy IID.npy", np.array([row]))
    batch = read_checkpoints(scan_checkpoint_tree(tmp_path, init=INIT), CNN_S, bins=(1, 2), workers=1)
    acc = {(r["label"], r["epoch"]): r["accuracy"] for r in batch.rows.to_dicts()}
    assert acc[("[0, 1]", 1)] is None and acc[("[0, 1]", 2)] is None  # 1e4 at index 2: the whole file is doubtful
    assert acc[("[2, 3]", 1)] is None and acc[("[2, 3]", 2)] is None
    assert acc[("[4, 5]", 1)] is None and acc[("[4, 5]", 2)] == 70.0  # epoch e is index e + 1
    warnings = "\n".join(batch.summary.warnings)
    assert "index 2 holds 10000.0, not a percentage in 0..100; accuracy left null" in warnings
    assert "index 1 holds -3.0, not a percentage" in warnings
    assert "1 value(s) not finite (first: index 2, nan); those epochs' accuracy left null" in warnings
