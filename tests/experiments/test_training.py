"""The timed training steps: every batch form, real optimisation, sources compared on equal terms."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from weightlake.errors import QueryError
from weightlake.experiments.infer import infer_config, load_checkpoint
from weightlake.experiments.merger import MergerConfig, build_merger
from weightlake.experiments.training import compare_sources, save_checkpoint, split_batch, train_steps

CONFIG = MergerConfig(16, 2, 16, 1, 8)


def _data(n: int = 12) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, 2464, generator=g) * 0.1


def test_split_batch_reads_every_form() -> None:
    x = _data(4)
    as_dict = {"x1": x[:, 0], "x2": x[:, 1], "y": x[:, 2]}
    for form in (as_dict, x, (x,), [x, "extra"], (x[:, 0], x[:, 1], x[:, 2])):
        a, b, y = split_batch(form)
        assert torch.equal(a, x[:, 0]) and torch.equal(b, x[:, 1]) and torch.equal(y, x[:, 2])
    with pytest.raises(QueryError, match="keys x1, x2, y"):
        split_batch({"x1": x[:, 0]})
    with pytest.raises(QueryError, match=r"tensor \[B, 3, P\]"):
        split_batch(x[:, :2])


def test_train_steps_optimises_and_counts() -> None:
    torch.manual_seed(0)
    model = build_merger(CONFIG)
    x = _data(8)
    report = train_steps(model, [x] * 6, lr=3e-3, source="fixed")
    assert report.steps == 6 and report.pairs == 48
    assert report.losses[-1] < report.losses[0]  # the same batch six times: the loss must fall
    assert report.step_seconds > 0 and report.data_seconds >= 0
    assert train_steps(build_merger(CONFIG), [x] * 6, steps=2).steps == 2
    row = report.row()
    assert row["pairs_per_s"] == pytest.approx(48 / report.seconds, abs=0.051)  # rounded to 0.1


def test_compare_sources_trains_copies_from_one_start() -> None:
    torch.manual_seed(0)
    model = build_merger(CONFIG)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = _data(12)
    sources = {"tensors": lambda: DataLoader(TensorDataset(x), batch_size=4),
               "dicts": lambda: ({"x1": x[i:i + 4, 0], "x2": x[i:i + 4, 1], "y": x[i:i + 4, 2]} for i in (0, 4, 8))}
    table = compare_sources(model, sources, steps=3, rounds=2)
    assert table["source"].to_list() == ["tensors", "dicts"] and table["steps"].to_list() == [3, 3]
    # the same batches from the same start give the same losses, whatever the source
    assert table["last_loss"][0] == pytest.approx(table["last_loss"][1], rel=1e-5)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # the original is untouched
    with pytest.raises(QueryError, match="no batch sources"):
        compare_sources(model, {}, steps=1)


def test_saved_checkpoint_reads_back_safely(tmp_path) -> None:
    model = build_merger(CONFIG)
    path = save_checkpoint(model, tmp_path / "run_h2" / "AE epoch mse 3.pth", epoch=3, loss="mse")
    state, extras = load_checkpoint(path)
    assert extras["epoch"] == 3 and extras["loss"] == "mse"
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert infer_config(state, heads=2)[0] == CONFIG
    assert not list(tmp_path.rglob("*.tmp"))
