"""Every notebook under notebooks/ runs top to bottom through a Jupyter kernel, in short mode.

The `.py` (jupytext percent script) is the source of truth; its `.ipynb` twin must hold the
same cells, so a reader who opens either sees the same notebook.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SCRIPTS = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))


def _cells(nb) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source.strip()) for c in nb.cells if c.source.strip()]


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_notebook_twin_matches_script(script: Path) -> None:
    jupytext = pytest.importorskip("jupytext")
    twin = script.with_suffix(".ipynb")
    assert twin.is_file(), f"{twin.name} is missing: run `make notebooks-sync`"
    assert _cells(jupytext.read(twin)) == _cells(jupytext.read(script)), (
        f"{twin.name} differs from {script.name}: run `make notebooks-sync`")


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_notebook_runs_in_short_mode(script: Path, real_lake_dir: Path, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    jupytext = pytest.importorskip("jupytext")
    nbclient = pytest.importorskip("nbclient")
    nb = jupytext.read(script)
    monkeypatch.setenv("WEIGHTLAKE_LAKE", str(real_lake_dir))
    monkeypatch.setenv("WEIGHTLAKE_NOTEBOOK_SHORT", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # Short mode trains tiny models, which run fastest on one thread (two fight on a busy 2-core machine).
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    # The kernel inherits this environment; it writes its files under tmp_path.
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    assert os.environ["WEIGHTLAKE_LAKE"] == str(real_lake_dir)
    client.execute()
