"""The zoo trainer on a real mini zoo (Fashion-MNIST, see conftest.py), plus its pure helpers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from weightlake.arch import CNN_S, EPOCH_BINS, INITS
from weightlake.errors import IngestError
from weightlake.zoo.cnn import build_cnn
from weightlake.zoo.idx import select_classes
from weightlake.zoo.train import (
    METRIC_FILES,
    SIDECAR_NAME,
    TrainError,
    TrainRecipe,
    evaluate_accuracy,
    init_weights,
    model_seed,
    parse_int_list,
    parse_subsets,
    read_sidecar,
    train_zoo,
)


def _load(path: Path) -> dict:
    # weights_only: the trainer's checkpoints must load without full unpickling
    return torch.load(path, weights_only=True)


def _state_dicts(folder: Path) -> dict[str, dict]:
    return {p.name: _load(p)["model_state_dict"] for p in sorted(folder.glob("checkpoint epoch *.pth"))}


# -- the mini zoo on disk ------------------------------------------------------------------
def test_layout_b_files(zoo_b) -> None:
    report = zoo_b.report
    assert report.trained == 8 and report.skipped == 0 and report.layout == "b"
    folders = sorted(p.relative_to(zoo_b.out).as_posix() for p in zoo_b.out.rglob(SIDECAR_NAME))
    assert folders == sorted(f"{label}/{a}/{i}/{SIDECAR_NAME}" for label in ("[1, 8]", "[0, 5, 9]")
                             for a in ("relu", "tanh") for i in ("kaiming_uniform", "xavier_normal"))
    for result in report.results:
        names = {p.name for p in Path(result.folder).glob("*.pth")}
        assert names == {f"checkpoint epoch {e}.pth" for e in result.checkpoints}
        assert set(range(result.epochs_trained)) <= set(result.checkpoints)


def test_layout_a_has_no_init_level(zoo_a) -> None:
    for label in ("[1, 8]", "[0, 5, 9]"):
        for act in ("relu", "tanh"):
            folder = zoo_a.out / label / act
            assert (folder / "checkpoint epoch 0.pth").is_file() and (folder / SIDECAR_NAME).is_file()
            assert (folder / "metrics" / "Test Accuracy IID.npy").is_file()
            assert not [p for p in folder.iterdir() if p.is_dir() and p.name != "metrics"]


def test_checkpoint_keys_and_metric_shapes(zoo_b) -> None:
    for result in zoo_b.report.results:
        folder, e = Path(result.folder), result.epochs_trained
        checkpoint = _load(folder / "checkpoint epoch 0.pth")
        assert set(checkpoint) == {"epoch", "model_state_dict", "optimizer_state_dict"}
        assert checkpoint["epoch"] == 0 and list(checkpoint["model_state_dict"]) == CNN_S.state_dict_keys()
        shapes = {name: np.load(folder / "metrics" / name).shape for name in METRIC_FILES.values()}
        assert shapes == {"Test Accuracy IID.npy": (1, e + 1), "Test Loss IID.npy": (1, e + 1),
                          "Train Acc.npy": (1, e), "Train Loss.npy": (1, e),
                          "multiclass train Confusion matrix raw.npy": (10, 10, e),
                          "multiclass test Confusion matrix raw.npy": (10, 10, e)}


def test_models_only_see_their_classes(zoo_b) -> None:
    for result in zoo_b.report.results:
        metrics = Path(result.folder) / "metrics"
        train_cm = np.load(metrics / "multiclass train Confusion matrix raw.npy")
        test_cm = np.load(metrics / "multiclass test Confusion matrix raw.npy")
        others = [c for c in range(10) if c not in result.classes]
        assert train_cm[others].sum() == 0 and test_cm[others].sum() == 0
        # 200 training images per class (subsample), all 1,000 test images per class
        assert (train_cm.sum(axis=(0, 1)) == 200 * len(result.classes)).all()
        assert (test_cm.sum(axis=1)[list(result.classes)] == 1000).all()
        accuracy = np.load(metrics / "Test Accuracy IID.npy")[0]
        assert accuracy[1:] == pytest.approx(100 * np.trace(test_cm) / test_cm.sum(axis=(0, 1)))
        assert train_cm.shape[-1] == test_cm.shape[-1] == result.epochs_trained


def test_sidecar_records_the_model(zoo_b) -> None:
    for result in zoo_b.report.results:
        sidecar = json.loads((Path(result.folder) / SIDECAR_NAME).read_text())
        assert sidecar["classes"] == list(result.classes) and sidecar["label"] == str(list(result.classes))
        assert sidecar["seed"] == model_seed(7, result.classes, result.activation, result.init)
        assert sidecar["config"]["zoo_seed"] == 7 and sidecar["config"]["subsample"] == 200
        assert sidecar["config"]["dataset"] == "fashion-mnist" and sidecar["n_train_images"] == 200 * len(result.classes)
        assert (sidecar["activation"], sidecar["init"]) == (result.activation, result.init)
        assert sidecar["epochs_trained"] == result.epochs_trained and sidecar["config"]["recipe"]["lr"] == 0.05


def test_checkpoint_reproduces_recorded_accuracy(zoo_b, fashion_test) -> None:
    images, labels = fashion_test
    for result in zoo_b.report.results:
        test_images, test_labels = select_classes(images, labels, result.classes)
        recorded = np.load(Path(result.folder) / "metrics" / "Test Accuracy IID.npy")[0]
        for epoch in result.checkpoints[-1:]:  # the last one: evaluation is the slow part
            checkpoint = _load(Path(result.folder) / f"checkpoint epoch {epoch}.pth")
            model = build_cnn(CNN_S, result.activation)
            model.load_state_dict(checkpoint["model_state_dict"])
            # one image's worth of slack: this process may use more threads than the worker did
            assert evaluate_accuracy(model, test_images, test_labels) == pytest.approx(
                recorded[checkpoint["epoch"] + 1], abs=100 / len(test_labels) + 1e-9)


def test_models_learn(zoo_b) -> None:
    accuracies = [r.final_accuracy for r in zoo_b.report.results]
    assert max(accuracies) > 90  # the easy pair (trouser vs bag) is learnt in 3 epochs


def test_progress_reports_every_model(zoo_b) -> None:
    assert [(done, total) for done, total, _ in zoo_b.progress] == [(i, 8) for i in range(1, 9)]
    assert {(info.classes, info.activation, info.init) for *_, info in zoo_b.progress} == {
        (r.classes, r.activation, r.init) for r in zoo_b.report.results}
    assert not any(info.skipped for *_, info in zoo_b.progress)


# -- reproducibility and resume ------------------------------------------------------------
def test_same_seed_same_weights_across_pool_and_layouts(zoo_a, zoo_b) -> None:
    """zoo_a (one process) and zoo_b (two worker processes) share the kaiming_uniform models."""
    for label in ("[1, 8]", "[0, 5, 9]"):
        for act in ("relu", "tanh"):
            a = _state_dicts(zoo_a.out / label / act)
            b = _state_dicts(zoo_b.out / label / act / "kaiming_uniform")
            assert a.keys() == b.keys() and a
            for name in a:
                for key in a[name]:
                    assert torch.equal(a[name][key], b[name][key]), (label, act, name, key)


def test_other_seed_other_weights(tmp_path: Path, zoo_a) -> None:
    train_zoo("fashion-mnist", tmp_path, [[1, 8]], ["relu"], ["kaiming_uniform"], layout="a", workers=1,
              **{**_recipe(zoo_a), "seed": 8})
    ours = _state_dicts(tmp_path / "[1, 8]" / "relu")["checkpoint epoch 0.pth"]
    theirs = _state_dicts(zoo_a.out / "[1, 8]" / "relu")["checkpoint epoch 0.pth"]
    assert not torch.equal(ours["module_list.0.weight"], theirs["module_list.0.weight"])


def _recipe(zoo) -> dict:
    recipe = json.loads((Path(zoo.report.results[0].folder) / SIDECAR_NAME).read_text())["config"]["recipe"]
    return {"epochs_max": recipe["epochs_max"], "subsample": 200, "seed": 7,
            "checkpoint_epochs": recipe["checkpoint_epochs"], "min_accuracy": recipe["min_accuracy"]}


def test_resume_skips_finished_models(zoo_b) -> None:
    before = {p: p.stat().st_mtime_ns for p in zoo_b.out.rglob("*") if p.is_file()}
    calls: list = []
    report = train_zoo("fashion-mnist", zoo_b.out, [[1, 8], [0, 5, 9]], ["relu", "tanh"],
                       ["kaiming_uniform", "xavier_normal"], progress=lambda *a: calls.append(a), **_recipe(zoo_b))
    assert report.skipped == 8 and report.trained == 0 and len(calls) == 8
    assert [r.final_accuracy for r in report.results] == [r.final_accuracy for r in zoo_b.report.results]
    assert before == {p: p.stat().st_mtime_ns for p in zoo_b.out.rglob("*") if p.is_file()}


def test_resume_retrains_partial_folders(tmp_path: Path, zoo_a) -> None:
    out = tmp_path / "zoo"
    shutil.copytree(zoo_a.out, out)
    partial = out / "[0, 5, 9]" / "tanh"
    original = _state_dicts(partial)
    (partial / SIDECAR_NAME).unlink()
    (partial / "checkpoint epoch 2.pth").unlink()
    (partial / "checkpoint epoch 17.pth").write_bytes(b"left over by a crash")
    report = train_zoo("fashion-mnist", out, [[1, 8], [0, 5, 9]], ["relu", "tanh"], ["kaiming_uniform"],
                       layout="a", workers=2, **_recipe(zoo_a))
    assert report.trained == 1 and report.skipped == 3
    assert read_sidecar(partial) is not None and not (partial / "checkpoint epoch 17.pth").exists()
    again = _state_dicts(partial)
    assert again.keys() == original.keys()
    assert all(torch.equal(again[n][k], original[n][k]) for n in again for k in again[n])


def test_resume_refuses_another_configuration(zoo_a) -> None:
    with pytest.raises(TrainError, match="another configuration"):
        train_zoo("fashion-mnist", zoo_a.out, [[1, 8]], ["relu"], ["kaiming_uniform"], layout="a",
                  **{**_recipe(zoo_a), "epochs_max": 5})


def test_early_stop_saves_final_state(tmp_path: Path, zoo_a) -> None:
    # a vanishing learning rate freezes the accuracy, so the plateau rule must fire at epoch index 2
    report = train_zoo("fashion-mnist", tmp_path, [[1, 8]], ["relu"], ["kaiming_uniform"], layout="a",
                       workers=1, lr=1e-12, epochs_max=6, subsample=50, checkpoint_epochs=[], min_accuracy=0)
    result = report.results[0]
    assert result.early_stopped and result.epochs_trained == 3 and result.checkpoints == (-1,)
    folder = Path(result.folder)
    assert [p.name for p in folder.glob("*.pth")] == ["checkpoint epoch -1.pth"]
    assert _load(folder / "checkpoint epoch -1.pth")["epoch"] == 2
    assert np.load(folder / "metrics" / "Test Accuracy IID.npy").shape == (1, 4)


def test_early_stop_below_min_accuracy_is_no_zoo_member(tmp_path: Path, zoo_a) -> None:
    """A model frozen at chance level early-stops; its final state used to become `checkpoint epoch -1.pth`."""
    report = train_zoo("fashion-mnist", tmp_path, [[1, 8]], ["relu"], ["uniform"], layout="a",
                       workers=1, lr=1e-12, epochs_max=6, subsample=50, checkpoint_epochs=[], min_accuracy=60.0)
    result = report.results[0]
    accuracy = np.load(Path(result.folder) / "metrics" / "Test Accuracy IID.npy")[0]
    assert result.early_stopped and accuracy[-1] <= 60.0  # U(0, 1) weights: chance level, frozen
    assert result.checkpoints == () and not list(Path(result.folder).glob("*.pth"))
    sidecar = read_sidecar(result.folder)
    assert sidecar is not None and sidecar["early_stopped"] and sidecar["checkpoints"] == []


# -- pure helpers --------------------------------------------------------------------------
def test_spec_checkpoint_rule() -> None:
    recipe = TrainRecipe()
    assert [e for e in range(40) if recipe.wants_checkpoint(e, 60.5)] == list(EPOCH_BINS)
    assert not any(recipe.wants_checkpoint(e, 60.0) for e in range(40))
    assert [e for e in range(5) if TrainRecipe(checkpoint_epochs=[3, 1]).wants_checkpoint(e, 61)] == [1, 3]


@pytest.mark.parametrize(("text", "expected"), [("0-5", [0, 1, 2, 3, 4, 5]), ("1,3,5", [1, 3, 5]), ("2-3", [2, 3]),
                                                ("7", [7]), (" 0-2, 9 ", [0, 1, 2, 9]), ("3,1,3", [1, 3])])
def test_parse_int_list(text: str, expected: list[int]) -> None:
    assert parse_int_list(text) == expected


@pytest.mark.parametrize("text", ["5-2", "a", "", "1,,2", "1-2-3"])
def test_parse_int_list_rejects(text: str) -> None:
    with pytest.raises(TrainError) as info:
        parse_int_list(text)
    assert repr(text) in str(info.value)


def test_parse_subsets() -> None:
    assert parse_subsets(range(3), [2]) == [(0, 1), (0, 2), (1, 2)]
    assert parse_subsets([2, 0, 1], [3, 1]) == [(0,), (1,), (2,), (0, 1, 2)]
    assert len(parse_subsets(range(10), parse_int_list("2-10"))) == 1013


def test_model_seed_is_stable_and_distinct() -> None:
    seeds = {model_seed(0, c, a, i) for c in parse_subsets(range(4), [2]) for a in ("relu", "gelu") for i in INITS}
    assert len(seeds) == 6 * 2 * len(INITS) and all(0 <= s < 2**63 for s in seeds)
    assert model_seed(0, [7, 1], "relu", "normal") == model_seed(0, (1, 7), "relu", "normal")
    assert model_seed(0, [1, 7], "relu", "normal") != model_seed(1, [1, 7], "relu", "normal")


@pytest.mark.parametrize("init", INITS)
def test_init_weights(init: str) -> None:
    torch.manual_seed(0)
    model = init_weights(build_cnn(CNN_S, "relu"), init)
    for name, param in model.named_parameters():
        if name.endswith("bias"):
            assert torch.all(param == 0.01)
        else:
            assert param.std() > 0
    if init == "uniform":
        assert all(p.min() >= 0 and p.max() <= 1 for p in model.parameters())


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"layout": "a", "inits": ["relu"]}, "initialisation"),
    ({"layout": "a", "inits": ["normal", "uniform"]}, "exactly one initialisation"),
    ({"layout": "c"}, "layout"),
    ({"activations": ["swish"]}, "activation"),
    ({"subsets": [[3, 10]]}, "0-9"),
    ({"subsets": []}, "at least one"),
    ({"subsample": 0}, "subsample"),
    ({"lr": 0.0}, "positive"),
])
def test_bad_arguments(tmp_path: Path, kwargs: dict, match: str) -> None:
    args = {"subsets": [[1, 2]], "activations": ["relu"], "inits": ["normal"], **kwargs}
    with pytest.raises(TrainError, match=match):
        train_zoo("fashion-mnist", tmp_path, **args)
    assert not any(tmp_path.iterdir())


def test_missing_dataset_fails_before_training(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="neither"):
        train_zoo(tmp_path / "no-such-dir", tmp_path / "out", [[1, 2]], ["relu"], ["normal"])


def test_a_checkpoint_epoch_past_the_last_one_trained_is_refused() -> None:
    """epochs_max=2 trains epoch indices 0 and 1: asking for 2 wrote nothing for it, without a word."""
    from weightlake.errors import TrainError

    with pytest.raises(TrainError, match=r"checkpoint epochs \[2\] are never reached: .* epochs_max - 1 = 1"):
        TrainRecipe(epochs_max=2, checkpoint_epochs=(1, 2))
    with pytest.raises(TrainError, match=r"checkpoint epochs \[-1\]"):
        TrainRecipe(checkpoint_epochs=(-1, 11))
    assert TrainRecipe(epochs_max=2, checkpoint_epochs=(0, 1)).checkpoint_epochs == (0, 1)
