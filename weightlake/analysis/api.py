"""Analysis results as lake tables: compute over a pinned snapshot, commit atomically.

The functions here are thin: they read weights and metadata from one snapshot, call the
pure array functions of :mod:`~weightlake.analysis.spectra` and
:mod:`~weightlake.analysis.correlations`, and commit the result as a derived table
(partitioned by zoo, so re-running replaces that zoo's results) that records the snapshot
and parameters that produced it.  SQL sees the tables as views (``spectra``,
``correlations``); polars reads them through :class:`LakeAnalysis`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from weightlake.errors import QueryError


@dataclass
class AnalysisReport:
    table: str
    zoo: str
    rows: int
    snapshot: int | None
    seconds: float
    plots: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        text = (f"table {self.table!r}: {self.rows} rows for zoo {self.zoo!r} "
                f"(snapshot {self.snapshot}, {self.seconds:.1f} s)")
        return text + "".join(f"\n   plot: {p}" for p in self.plots)


def _zoo_rows(lake: Any, zoo: str | None) -> tuple[str, np.ndarray, np.ndarray, pl.DataFrame]:
    zoo = zoo or lake._only_zoo()
    ids, rows = lake.zoo_weights(zoo)
    meta = lake.models(zoo).collect()
    order = {mid: i for i, mid in enumerate(meta["model_id"].to_list())}
    meta = meta[[order[int(i)] for i in ids]]  # align metadata with weight rows
    return zoo, ids, rows, meta


def _commit(lake_root: Path, table: str, df: pl.DataFrame, zoo: str, params: dict[str, Any], snapshot: int) -> int:
    from weightlake.storage.transaction import transaction

    with transaction(Path(lake_root)) as tx:
        if tx.parent.version != snapshot:
            raise QueryError(f"the lake moved from snapshot {snapshot} to {tx.parent.version} during the analysis; "
                             "run it again")
        tx.put_table(table, df.with_columns(zoo=pl.lit(zoo)), partition_by=("zoo",),
                     properties={"partition_by": ["zoo"], f"params:{zoo}": json.dumps(params)})
        return tx.commit({"op": f"analyze-{table}", "zoo": zoo,
                          "summary": f"{table}: {df.height} rows for {zoo} from snapshot {snapshot}"}).version


CONVENTIONS = {"weightlake": "spectra", "weightwatcher": "spectra_weightwatcher"}
"""Spectra conventions -> the table each one commits (they differ in columns, so they never share one)."""


def analyze_spectra(lake_root: Path | str, *, zoo: str | None = None, layers: Sequence[str] | None = None,
                    population: bool = False, convention: str = "weightlake") -> AnalysisReport:
    """Per-layer random-matrix spectra of every model -> table ``spectra`` (one row per model x layer).

    ``convention="weightwatcher"`` computes WeightWatcher 0.7.7's figures instead (see
    :mod:`weightlake.analysis.spectra_ww`) into table ``spectra_weightwatcher``.
    """
    import weightlake as wl
    from weightlake.analysis.spectra import zoo_spectra
    from weightlake.analysis.spectra_ww import WW_VERSION, zoo_spectra_ww

    if convention not in CONVENTIONS:
        raise QueryError(f"unknown spectra convention {convention!r}; expected one of {sorted(CONVENTIONS)}")
    started = time.perf_counter()
    lake = wl.open_lake(lake_root)
    zoo, ids, rows, _ = _zoo_rows(lake, zoo)
    compute = zoo_spectra if convention == "weightlake" else zoo_spectra_ww
    table = compute(rows, lake.arch(zoo), layers=layers)
    table = table.with_columns(model_id=pl.Series(ids)[table["row"]], layer=pl.col("layer").cast(pl.String),
                               snapshot=pl.lit(lake.snapshot, dtype=pl.Int64)).drop("row")
    table = table.select("model_id", "layer", pl.exclude("model_id", "layer"))
    params: dict[str, Any] = {"layers": list(layers or [])}
    if convention == "weightwatcher":
        params["convention"] = f"weightwatcher {WW_VERSION}"
    name = CONVENTIONS[convention]
    version = _commit(Path(lake_root), name, table, zoo, params, lake.snapshot)
    return AnalysisReport(name, zoo, table.height, version, time.perf_counter() - started)


def analyze_correlations(lake_root: Path | str, *, zoo: str | None = None,
                         against: Sequence[str] = ("accuracy", "epoch", "activation", "init", "classes", "n_classes"),
                         by: Sequence[str] = (), features: str = "both", methods: Sequence[str] = ("pearson", "spearman"),
                         plot_dir: Path | str | None = None) -> AnalysisReport:
    """Parameters and per-layer aggregates against metadata -> table ``correlations``.

    ``by`` names metadata columns to group by (``layer`` is accepted and is always a result
    column).  With ``plot_dir``, heatmaps are written there as PNG (parameters x metadata with
    layer boundaries, and the parameter x parameter matrix of the whole network).
    """
    import weightlake as wl
    from weightlake.analysis import correlations as corr

    started = time.perf_counter()
    lake = wl.open_lake(lake_root)
    zoo, ids, rows, meta = _zoo_rows(lake, zoo)
    arch = lake.arch(zoo)
    group_by = [b for b in by if b != "layer"]
    missing = [c for c in [*against, *group_by] if c not in meta.columns]
    if missing:
        raise QueryError(f"unknown metadata column(s) {missing}; models have {meta.columns}")
    if meta["accuracy"].null_count() and "accuracy" in against:
        keep = meta["accuracy"].is_not_null().to_numpy()
        rows, meta = rows[keep], meta.filter(pl.Series(keep))
    frame = meta.select(*dict.fromkeys([*against, *group_by]))
    opts: dict[str, Any] = {"columns": list(against), "methods": list(methods), "group_by": group_by or None}
    parts = []
    if features in ("params", "both"):
        parts.append(corr.param_correlations(rows, frame, arch, **opts).with_columns(kind=pl.lit("param")))
    if features in ("aggregates", "both"):
        parts.append(corr.aggregate_correlations(rows, frame, arch, **opts).with_columns(kind=pl.lit("aggregate")))
    if not parts:
        raise QueryError(f"features must be 'params', 'aggregates' or 'both', got {features!r}")
    table = pl.concat(parts, how="diagonal_relaxed").with_columns(snapshot=pl.lit(lake.snapshot, dtype=pl.Int64))
    plots = _correlation_plots(table, rows, arch, Path(plot_dir), zoo) if plot_dir else []
    params = {"against": list(against), "by": list(by), "features": features, "methods": list(methods)}
    version = _commit(Path(lake_root), "correlations", table, zoo, params, lake.snapshot)
    return AnalysisReport("correlations", zoo, table.height, version, time.perf_counter() - started, plots)


def _correlation_plots(table: pl.DataFrame, rows: np.ndarray, arch: Any, out: Path, zoo: str) -> list[str]:
    from weightlake.analysis import correlations as corr

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    params = table.filter(pl.col("kind") == "param")
    for method in params["method"].unique().sort().to_list():
        paths.append(corr.plot_param_metadata_heatmap(params, out / f"{zoo}-params-vs-metadata-{method}.png", arch,
                                                      method=method))
    matrix = corr.param_correlation_matrix(rows, arch)
    paths.append(corr.plot_param_matrix_heatmap(matrix, out / f"{zoo}-param-x-param.png", arch,
                                                title=f"{zoo}: parameter x parameter correlation (Pearson)"))
    return [str(p) for p in paths]


class LakeAnalysis:
    """Analysis tables and on-the-fly computations for one pinned lake handle (``lake.analysis``)."""

    def __init__(self, lake: Any) -> None:
        self.lake = lake

    def spectra(self, zoo: str | None = None, with_metadata: bool = True) -> pl.LazyFrame:
        """The committed ``spectra`` table (joined with model metadata by default)."""
        return self._table("spectra", zoo, with_metadata)

    def correlations(self, zoo: str | None = None) -> pl.LazyFrame:
        return self._table("correlations", zoo, with_metadata=False)

    def _table(self, name: str, zoo: str | None, with_metadata: bool) -> pl.LazyFrame:
        lf = self.lake.table(name)
        if zoo:
            lf = lf.filter(pl.col("zoo") == zoo)
        if with_metadata:
            meta = self.lake.models(zoo).select("model_id", "init", "activation", "epoch", "classes",
                                                "n_classes", "accuracy")
            lf = lf.join(meta, on="model_id", how="left")
        return lf

    def compute_spectra(self, zoo: str | None = None) -> pl.DataFrame:
        """Spectra without committing (for a quick look)."""
        from weightlake.analysis.spectra import zoo_spectra

        zoo, ids, rows, _ = _zoo_rows(self.lake, zoo)
        table = zoo_spectra(rows, self.lake.arch(zoo))
        return table.with_columns(model_id=pl.Series(ids)[table["row"]]).drop("row")

    def metrics(self, pred_ids: Sequence[int], ref_ids: Sequence[int], per_layer: bool = True,
                include_slow: bool = False) -> pl.DataFrame:
        """Every registered metric between two lists of models, as a polars frame."""
        from weightlake.analysis.metrics import compute_all

        pred, ref = self.lake.weights_numpy(pred_ids), self.lake.weights_numpy(ref_ids)
        cols = compute_all(pred, ref, self.lake.arch(), per_layer=per_layer, include_slow=include_slow)
        return pl.DataFrame({"pred_id": list(pred_ids), "ref_id": list(ref_ids), **cols})
