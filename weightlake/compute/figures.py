"""Figures from committed ``correlations`` tables: each zoo's, and the zoos side by side.

Nothing is computed or committed here: the figures are drawn from what ``analyze correlations``
committed (so they can be redrawn, for any set of zoos, without recomputing), by
:mod:`weightlake.analysis.heatmaps`.  What ``n`` counts (distinct models, or every row with
``--all-rows``) is read from each zoo's recorded run parameters.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from weightlake.errors import QueryError


def run_units(lake: Any, zoo: str) -> str:
    """What the ``n`` of ``zoo``'s committed correlations counts, from its recorded parameters."""
    params = json.loads(lake.manifest.table("correlations").properties.get(f"params:{zoo}", "{}"))
    return "rows (all_rows)" if params.get("models", {}).get("all_rows") else "distinct models"


def correlation_figures(lake_root: Path | str, out: Path | str, *, zoos: Sequence[str] | None = None,
                        methods: Sequence[str] | None = None, alpha: float = 0.05, pooling: str = "mean",
                        cross: bool = True) -> list[Path]:
    """Draw every zoo's correlation figures and, for two or more zoos, the cross-zoo figures.

    Parameters
    ----------
    lake_root : path
    out : path
        Folder for the PNG files.
    zoos : sequence of str, optional
        Zoos to draw (default: every zoo with committed correlations; then the cross-zoo
        figures are drawn for each architecture's zoos).
    methods : sequence of str, optional
        Default: every method in the table.
    alpha : float
        q-value threshold of the mask.
    pooling : {"mean", "max_abs"}
        Pooling of parameter blocks in the parameters x metadata figure.
    cross : bool
        Also draw the zoos side by side (aggregates when every zoo has them, and layer x metadata).

    Returns
    -------
    list of Path

    Raises
    ------
    QueryError
        A zoo without committed correlations; zoos given of different architectures (before
        any file is written).
    """
    import polars as pl

    from weightlake.analysis import heatmaps as hm
    from weightlake.arch import describe_zoos
    from weightlake.lake import open_lake

    lake = open_lake(lake_root)
    table = lake.table("correlations").collect()
    present = sorted(set(table["zoo"].to_list()))
    given = bool(zoos)
    zoos = list(zoos or present)
    missing = [z for z in zoos if z not in present]
    if missing:
        raise QueryError(f"no committed correlations for zoo(s) {missing}; run `weightlake analyze correlations "
                         f"--zoo {missing[0]}` first (zoos with correlations: {present})")
    if methods:
        table = table.filter(pl.col("method").is_in(list(methods)))
    archs = {zoo: lake.arch(zoo) for zoo in zoos}
    groups: dict[str, list[str]] = {}
    for zoo in zoos:
        groups.setdefault(archs[zoo].name, []).append(zoo)
    if cross and given and len(groups) > 1:
        raise QueryError(f"zoos of different architectures cannot be drawn side by side: {describe_zoos(archs)}; "
                         "pass --zoo for zoos of one architecture (or one zoo at a time)")
    out = Path(out)
    paths: list[Path] = []
    for zoo in zoos:
        paths += hm.table_figures(table, out, archs[zoo], zoo=zoo, units=run_units(lake, zoo), alpha=alpha,
                                  pooling=pooling)
    for group in groups.values():  # by default, each architecture's zoos side by side
        if cross and len(group) > 1:
            paths += _cross(table, group, lake, out, alpha)
    return paths


def _cross(table: Any, zoos: list[str], lake: Any, out: Path, alpha: float) -> list[Path]:
    import polars as pl

    from weightlake.analysis import heatmaps as hm

    arch = lake.arch(zoos[0])
    if any(lake.arch(z).name != arch.name for z in zoos[1:]):
        raise QueryError(f"zoos {zoos} have different architectures; cross-zoo figures compare like with like")
    units = {run_units(lake, z) for z in zoos}
    tables = {z: table.filter(pl.col("zoo") == z) for z in zoos}
    kinds = set.intersection(*(hm._kinds(t) for t in tables.values()))
    paths = []
    for method in table["method"].unique().sort().to_list():
        stem = f"cross-zoo-{'+'.join(zoos)}-{method}"
        if "aggregate" in kinds:
            paths.append(hm.plot_cross_zoo_heatmap(tables, out / f"{stem}-aggregates.png", arch, kind="aggregate",
                                                   method=method, alpha=alpha, units=" / ".join(sorted(units))))
        if "param" in kinds:
            paths.append(hm.plot_cross_zoo_heatmap(tables, out / f"{stem}-layers.png", arch, kind="layer",
                                                   method=method, alpha=alpha, units=" / ".join(sorted(units))))
    return paths
