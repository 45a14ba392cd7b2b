"""A NaN or an infinity in a weight is refused by every weight reader, as the CSV reader refuses it.

Checkpoint trees reject the file (listed with the tensor key and the value; good files are
kept); a tree whose every file is refused, and any refused safetensors file, abort with one
line naming the file and the key, and leave the lake byte-for-byte unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from click.testing import CliRunner

import weightlake as wl
from weightlake.arch import CNN_S
from weightlake.cli import main
from weightlake.ingest.checkpoints import non_finite_reason, read_checkpoints, scan_checkpoint_tree

INIT = "kaiming_uniform"
KEY = "module_list.9.weight"
ROW, COL = 3, 7  # the poisoned value's index in KEY, shape (20, 36)
# a folder named the way users name them, spaces, brackets and commas included
FOLDER = "overlapping 0 [0, 1, 2, 3, 4, 5, 6, 7, 8, 9] 11 gelu"
BAD = ["nan", "inf"]


def _state_dict(seed: int, bad: str | None = None) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    sd = CNN_S.flat_to_state_dict(torch.randn(CNN_S.n_params))
    sd = {k: v.clone() for k, v in sd.items()}
    if bad is not None:
        sd[KEY][ROW, COL] = float(bad)
    return sd


def _save(path: Path, seed: int, bad: str | None = None, epoch: int = 11) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": epoch, "model_state_dict": _state_dict(seed, bad), "optimizer_state_dict": {}}, path)


def _run(*args: str) -> object:
    return CliRunner().invoke(main, [*args], catch_exceptions=False)


def _assert_one_error_line(output: str, bad_file: Path, bad: str) -> None:
    errors = [ln for ln in output.splitlines() if ln.startswith("error:")]
    assert "Traceback" not in output and len(errors) == 1, output
    assert str(bad_file) in errors[0] and KEY in errors[0] and repr(float(bad)) in errors[0], output


def _good_lake(tmp_path: Path) -> Path:
    """A lake holding one good model, so "unchanged" compares against a real snapshot."""
    good = tmp_path / "good" / FOLDER
    _save(good / "[2, 3]" / "gelu" / "checkpoint epoch 11.pth", seed=1)
    lake = tmp_path / "lake"
    result = _run("ingest", "checkpoints", str(good), "--zoo", "z", "--init", INIT, "--workers", "1",
                  "--rejects", str(tmp_path / "good-rejects.csv"), "--lake", str(lake))
    assert result.exit_code == 0, result.output
    return lake


@pytest.mark.parametrize("bad", BAD)
def test_reason_names_key_index_and_value(bad: str) -> None:
    flat = CNN_S.state_dict_to_flat({k: v.numpy() for k, v in _state_dict(0, bad).items()})
    why = non_finite_reason(flat, CNN_S)
    assert why is not None and f"{KEY!r} holds {float(bad)!r} at index ({ROW}, {COL})" in why
    assert non_finite_reason(CNN_S.state_dict_to_flat({k: v.numpy() for k, v in _state_dict(0).items()}),
                             CNN_S) is None


@pytest.mark.parametrize("bad", BAD)
def test_checkpoint_with_non_finite_weight_is_rejected_good_ones_kept(tmp_path: Path, bad: str) -> None:
    root = tmp_path / FOLDER
    bad_file = root / "[0, 1]" / "gelu" / "checkpoint epoch 11.pth"
    _save(bad_file, seed=0, bad=bad)
    _save(root / "[0, 1]" / "relu" / "checkpoint epoch 11.pth", seed=2)
    batch = read_checkpoints(scan_checkpoint_tree(root, init=INIT), workers=1, bins=(11,))
    assert [p for p, _ in batch.rejects] == [str(bad_file)]
    reason = batch.rejects[0][1]
    assert KEY in reason and repr(float(bad)) in reason and f"({ROW}, {COL})" in reason
    assert batch.rows["activation"].to_list() == ["relu"]
    assert np.isfinite(batch.weights).all()

    lake = tmp_path / "lake"
    result = _run("ingest", "checkpoints", str(root), "--zoo", "z", "--init", INIT, "--workers", "1",
                  "--epoch-bins", "11", "--rejects", str(tmp_path / "rejects.csv"), "--lake", str(lake))
    assert result.exit_code == 0, result.output
    rejects = pl.read_csv(tmp_path / "rejects.csv")
    assert rejects["path"].to_list() == [str(bad_file)] and KEY in rejects["reason"][0]
    assert wl.open_lake(lake).models().collect()["activation"].to_list() == ["relu"]


@pytest.mark.parametrize("bad", BAD)
def test_tree_of_only_non_finite_checkpoints_aborts_lake_unchanged(tmp_path: Path, tree_state, bad: str) -> None:
    lake = _good_lake(tmp_path)
    before = tree_state(lake)
    root = tmp_path / FOLDER
    bad_file = root / "[0, 1]" / "gelu" / "checkpoint epoch 11.pth"
    _save(bad_file, seed=0, bad=bad)
    result = _run("ingest", "checkpoints", str(root), "--zoo", "z", "--init", INIT, "--workers", "1",
                  "--epoch-bins", "11", "--rejects", str(tmp_path / "rejects.csv"), "--lake", str(lake))
    assert result.exit_code == 1, result.output
    _assert_one_error_line(result.output, bad_file, bad)
    assert tree_state(lake) == before


def _safetensors(path: Path, seed: int, bad: str | None = None) -> Path:
    st = pytest.importorskip("safetensors.numpy")
    tensors = {k: np.ascontiguousarray(v.numpy()) for k, v in _state_dict(seed, bad).items()}
    model = {"zoo": "z", "model_id": seed, "init": INIT, "activation": "gelu", "epoch": 11, "classes": [0, 1],
             "accuracy": 90.0, "fallback": False, "dataset": None}
    st.save_file(tensors, str(path), metadata={"weightlake.arch": CNN_S.to_json(), "format": "pt",
                                               "weightlake.model": json.dumps(model)})
    return path


@pytest.mark.parametrize("bad", BAD)
def test_safetensors_with_non_finite_weight_aborts_lake_unchanged(tmp_path: Path, tree_state, bad: str) -> None:
    folder = tmp_path / FOLDER
    folder.mkdir()
    lake = tmp_path / "lake"
    first = _run("ingest", "safetensors", str(_safetensors(tmp_path / "good.safetensors", 1)), "--lake", str(lake))
    assert first.exit_code == 0, first.output
    before = tree_state(lake)
    _safetensors(folder / "a.safetensors", 2)
    bad_file = _safetensors(folder / "b.safetensors", 3, bad)
    result = _run("ingest", "safetensors", str(folder), "--lake", str(lake))
    assert result.exit_code == 1, result.output
    _assert_one_error_line(result.output, bad_file, bad)
    assert tree_state(lake) == before
