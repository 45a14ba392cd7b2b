"""`zoo train --grad-filter`: the filter runs in the trainer, is recorded, and old sidecars still match."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from tests.conftest import FASHION_INSTALLED
from weightlake.cli import main
from weightlake.errors import TrainError
from weightlake.zoo.train import TrainRecipe, train_zoo

pytestmark = pytest.mark.skipif(not FASHION_INSTALLED, reason="needs dataset-fashion-mnist")


def test_recipe_without_a_filter_serialises_as_before():
    assert "grad_filter" not in TrainRecipe().to_dict()
    assert TrainRecipe(grad_filter="ma").to_dict()["grad_filter"] == "ma"
    with pytest.raises(TrainError, match="grad_filter"):
        TrainRecipe(grad_filter="fft")


def _weights(folder):
    return torch.load(folder / "checkpoint epoch 0.pth", weights_only=True)["model_state_dict"]["module_list.0.weight"]


def test_filtered_training_differs_and_is_recorded(tmp_path):
    common = {"subsample": 20, "epochs_max": 1, "checkpoint_epochs": [0], "min_accuracy": 0.0, "workers": 1,
              "lr": 1e-3}
    train_zoo("fashion-mnist", tmp_path / "plain", [[0, 1]], ["relu"], ["kaiming_uniform"], **common)
    result = CliRunner().invoke(main, ["zoo", "train", "--digits", "0-1", "--sizes", "2", "--out",
                                       str(tmp_path / "ema"), "--subsample", "20", "--max-epochs", "1",
                                       "--checkpoint-epochs", "0", "--min-accuracy", "0", "--workers", "1",
                                       "--lr", "0.001", "--inits", "kaiming_uniform", "--grad-filter", "ema"])
    assert result.exit_code == 0, result.output
    plain = tmp_path / "plain" / "[0, 1]" / "relu" / "kaiming_uniform"
    ema = tmp_path / "ema" / "[0, 1]" / "relu" / "kaiming_uniform"
    sidecar = json.loads((ema / "weightlake-train.json").read_text())
    assert sidecar["config"]["recipe"]["grad_filter"] == "ema"
    assert not torch.equal(_weights(plain), _weights(ema))
