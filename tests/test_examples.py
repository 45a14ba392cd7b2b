"""The scripts in examples/ run as their docstrings say (smallest settings)."""

from __future__ import annotations

import runpy
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_train_merger_compares_three_sources(capsys):
    main = runpy.run_path(str(EXAMPLES / "train_merger.py"))["main"]
    main(["--steps", "2", "--rounds", "1", "--batch-size", "16"])
    out = capsys.readouterr().out
    for source in ("TensorDataset", "pairs.loader", "materialised"):
        assert source in out
    assert "train pairs of 'demo'" in out
