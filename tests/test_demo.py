"""The README's first command runs the demo; its quick variant runs here, end to end, on real images."""

from __future__ import annotations

import shlex

import pytest
from click.testing import CliRunner

import weightlake as wl
from weightlake.cli import main
from weightlake.zoo.idx import KNOWN_DATASETS


@pytest.mark.skipif(not KNOWN_DATASETS["fashion-mnist"][0].is_dir(), reason="needs dataset-fashion-mnist")
def test_quick_demo_runs_twice(tmp_path):
    tmp_path = tmp_path / "my zoos [v2]"  # the closing "Try:" lines must paste into a shell as printed
    args = ["demo", "--quick", "--lake", str(tmp_path / "lake"), "--out", str(tmp_path / "out")]
    first = CliRunner().invoke(main, args, catch_exceptions=False)
    assert first.exit_code == 0, first.output
    for step in ("1. train", "2. ingest", "3. SQL", "4. rebuild", "5. export", "6. a scenario", "7. spectra", "8. verify"):
        assert step in first.output
    assert "skipped" not in first.output.split("== 6")[1], "every step of the demo ran"
    assert "integrity OK" in first.output
    info = next(line for line in first.output.splitlines() if line.strip().startswith("weightlake info"))
    assert shlex.split(info)[-1] == str(tmp_path / "lake")
    lake = wl.open_lake(tmp_path / "lake")
    assert {"pairs", "spectra", "correlations"} <= set(lake.tables)
    assert (tmp_path / "out" / "Merged_zoo_xavier_normal.csv").exists()
    second = CliRunner().invoke(main, args, catch_exceptions=False)
    assert second.exit_code == 0, second.output
    assert "trained 0, skipped 8" in second.output and "added 0 models" in second.output


def test_the_demo_trains_to_every_bin_it_files():
    """Was: 16 epochs (0 .. 15) for bins 11 and 16, so every bin-16 model was a copy of its epoch-11
    checkpoint and every pair of the demo's epoch-16 scenario had a fallback target."""
    from weightlake.demo import DemoConfig

    for config in (DemoConfig(), DemoConfig.quick()):
        assert max(config.bins) < config.epochs_max
    with pytest.raises(ValueError, match=r"epoch bins \[16\] are never reached by 16 epochs"):
        DemoConfig(epochs_max=16)
