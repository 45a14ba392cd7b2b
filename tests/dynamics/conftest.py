"""Fixtures of the dynamics tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture()
def real_copy(tmp_path: Path, real_lake_dir: Path) -> Path:
    """A private copy of the lake of real trained models that a run may commit to."""
    target = tmp_path / "real-lake"
    shutil.copytree(real_lake_dir, target)
    return target
