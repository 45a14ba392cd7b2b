"""End to end: train tiny merging models, save them as the user does, scan, reload, compare."""

from __future__ import annotations

import builtins
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from weightlake.errors import HeadsUnknownError
from weightlake.experiments.infer import load_merger
from weightlake.experiments.merger import MergerConfig, TransformerAE, count_parameters
from weightlake.experiments.scan import CheckpointInfo, scan_experiments

P = 2464



@dataclass
class Run:
    folder: str
    file: str
    config: MergerConfig
    wrap: str  # "none", "compile" or "dataparallel"
    heads_source: str
    sidecar: tuple[str, dict] | None = None


RUNS = [
    Run("run_d16_h2", "AE epoch mse val 3.pth", MergerConfig(16, 2, 32, 1, 8), "none", "run_dir_name"),
    Run("gated_run", "AE epoch quantile loss train 5.pth",
        MergerConfig(24, 3, 24, 2, 12, dropout=0.1, gated_attention=True), "none", "sidecar",
        ("config.json", {"heads": 3, "N": 2, "dropout": 0.1, "lr": 1e-4})),
    Run("compiled_run", "AE epoch mse val 4.pth",
        MergerConfig(32, 4, 64, 1, 16), "compile", "assumed"),  # nothing records its heads: --assume-heads 4
    Run("sweep/dp_heads=1", "AE epoch mse test 2.pth",
        MergerConfig(8, 1, 16, 2, 4, gated_attention=True, output_head="per_token"), "dataparallel", "run_dir_name"),
    Run("stem_sidecar", "AE epoch mae val 6.pth", MergerConfig(16, 8, 16, 1, 6), "none", "sidecar",
        ("AE epoch mae val 6.json", {"n_heads": 8})),
]


class Payload:
    """Pickles to ``open(marker, "w")``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204 - pickle protocol
        return (builtins.open, (str(self.marker), "w"))


def _wrap(model: TransformerAE, how: str) -> torch.nn.Module:
    if how == "compile":
        # backend="eager": dynamo traces and wraps (keys get "_orig_mod.") without needing inductor's compiler
        return torch.compile(model, backend="eager")
    if how == "dataparallel":
        return torch.nn.DataParallel(model)  # on CPU it just calls the module; keys get "module."
    return model


def _train(run: Run, path: Path, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    torch.manual_seed(RUNS.index(run))
    net = _wrap(TransformerAE(run.config), run.wrap)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    net.train()
    for _step in range(3):
        a, b, target = torch.randn(4, P), torch.randn(4, P), torch.randn(4, P)
        loss = torch.nn.functional.mse_loss(net(a, b), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.save({"epoch": 2, "model_state_dict": net.state_dict(), "optimizer_state_dict": opt.state_dict()}, path)
    net.eval()
    with torch.no_grad():
        return net(x1, x2)


@pytest.fixture(scope="module")
def experiments(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor], tuple]:
    root = tmp_path_factory.mktemp("lab") / "experiments"
    torch.manual_seed(0)
    x1, x2 = torch.randn(3, P), torch.randn(3, P)
    predictions = {}
    for run in RUNS:
        folder = root / run.folder
        folder.mkdir(parents=True)
        if run.sidecar:
            (folder / run.sidecar[0]).write_text(json.dumps(run.sidecar[1]))
        predictions[str(folder / run.file)] = _train(run, folder / run.file, x1, x2)
    _add_other_files(root)
    return root, predictions, (x1, x2)


def _add_other_files(root: Path) -> None:
    broken = root / "broken"
    broken.mkdir()
    good = next(root.glob("run_d16_h2/*.pth")).read_bytes()
    (broken / "AE epoch mse val 9.pth").write_bytes(good[: len(good) // 3])
    torch.save({"epoch": 1, "model_state_dict": {"x": torch.zeros(1)}, "hook": Payload(root / "pwned")},
               broken / "AE epoch evil val 1.pth")
    torch.save({"epoch": 1, "model_state_dict": torch.nn.Linear(2, 2).state_dict()}, broken / "linear.pt")
    (root / "run_d16_h2" / "Tracking").mkdir()
    (root / "run_d16_h2" / "Tracking" / "pairs epoch 3.csv").write_text("weight 0,Pred weight 0\n1,2\n")
    (root / "gated_run" / "val track.csv").write_text("a\n1\n")
    (root / "gated_run" / "hparams.csv").write_text("a\n1\n")
    (root / ".ipynb_checkpoints").mkdir()
    (root / ".ipynb_checkpoints" / "AE epoch mse val 1.pth").write_bytes(b"junk")


@pytest.fixture(scope="module")
def infos(experiments) -> dict[str, CheckpointInfo]:
    root = experiments[0]
    return {str(Path(i.path).relative_to(root)): i for i in scan_experiments(root, assume_heads=4)}


def test_scan_finds_checkpoints_and_tracking_csvs(infos) -> None:
    kinds = {path: info.kind for path, info in infos.items()}
    assert kinds["run_d16_h2/Tracking/pairs epoch 3.csv"] == "tracking"
    assert kinds["gated_run/val track.csv"] == "tracking"
    assert "gated_run/hparams.csv" not in kinds
    assert not any(path.startswith(".ipynb") for path in kinds)
    assert sum(k == "checkpoint" for k in kinds.values()) == len(RUNS) + 3
    assert list(infos) == sorted(infos, key=lambda p: Path(p).parts)


def test_scan_infers_every_config(infos) -> None:
    for run in RUNS:
        info = infos[f"{run.folder}/{run.file}"]
        assert info.error is None, info.error
        assert info.config == run.config, run.folder
        assert info.heads_source == run.heads_source, (run.folder, info.provenance)
        assert info.n_params == count_parameters(run.config)
        assert info.saved_epoch == 2
        assert info.size_bytes == Path(info.path).stat().st_size
    compiled = infos["compiled_run/AE epoch mse val 4.pth"]
    assert compiled.provenance["prefix"] == "stripped '_orig_mod.'"
    assert infos["gated_run/AE epoch quantile loss train 5.pth"].name_fields == {
        "loss": "quantile loss", "track": "train", "epoch": 5}


def test_scan_reports_bad_files_and_goes_on(experiments, infos) -> None:
    errors = {path: info.error for path, info in infos.items() if info.error}
    assert set(errors) == {"broken/AE epoch mse val 9.pth", "broken/AE epoch evil val 1.pth", "broken/linear.pt"}
    assert "truncated" in errors["broken/AE epoch mse val 9.pth"]
    assert errors["broken/AE epoch evil val 1.pth"].startswith("UnsafeFileError")
    assert "missing key" in errors["broken/linear.pt"]
    assert not (experiments[0] / "pwned").exists()


def test_scan_results_hold_no_tensors(infos) -> None:
    json.dumps([info.to_dict() for info in infos.values()])


def test_reload_reproduces_training_predictions_exactly(experiments, infos) -> None:
    root, predictions, (x1, x2) = experiments
    for run in RUNS:
        info = infos[f"{run.folder}/{run.file}"]
        model, config, _ = load_merger(info.path, config=info.config)
        with torch.no_grad():
            assert torch.equal(model(x1, x2), predictions[info.path]), run.folder
        inferred_model, inferred, provenance = load_merger(info.path, assume_heads=4)  # sidecar, folder name found
        assert inferred == config and provenance["heads"] == run.heads_source
        with torch.no_grad():
            assert torch.equal(inferred_model(x1, x2), predictions[info.path]), run.folder


def test_unknown_heads_are_refused_not_defaulted(experiments) -> None:
    """A checkpoint no sidecar, folder name or option gives heads for was read as 4 heads, unmarked."""
    root = experiments[0]
    (info,) = [i for i in scan_experiments(root) if "compiled_run" in i.path]
    assert info.config is None and info.heads_source == "unknown"
    assert info.error.startswith("HeadsUnknownError") and "--assume-heads" in info.error and "--heads" in info.error
    expected = {k: v for k, v in MergerConfig(32, 4, 64, 1, 16).to_dict().items() if k != "n_heads"}
    assert info.hyperparameters == expected  # every shape-read value, gating included; no head count
    with pytest.raises(HeadsUnknownError, match="assume-heads"):
        load_merger(info.path)
    others = [i for i in scan_experiments(root) if i.kind == "checkpoint" and i.ok]
    assert {i.heads_source for i in others} <= {"sidecar", "run_dir_name"}


def test_scan_heads_option_and_missing_root(experiments, tmp_path: Path) -> None:
    root = experiments[0] / "stem_sidecar"
    (info,) = scan_experiments(root, heads=2)
    assert info.config.n_heads == 2 and info.heads_source == "option"
    with pytest.raises(FileNotFoundError):
        scan_experiments(tmp_path / "nope")
