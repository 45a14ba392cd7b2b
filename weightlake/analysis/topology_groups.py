"""Topology of groups of models: diagrams per group, function-Rips measures, distances between groups.

Pure functions over weight rows (see :mod:`weightlake.analysis.topology_multi` for the clouds
and the two-parameter measure); :func:`weightlake.compute.topology.analyze_topology_groups`
commits their output as lake tables.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import polars as pl

from weightlake.errors import QueryError


def group_labels(meta: pl.DataFrame, by: Sequence[str]) -> list[str]:
    """One text label per model: ``classes=[0, 1] activation=relu``."""
    missing = [c for c in by if c not in meta.columns]
    if missing or not by:
        raise QueryError(f"--by needs metadata columns; unknown {missing or list(by)}; models have {meta.columns}")
    parts = []
    for col in by:
        values = meta[col].to_list()
        parts.append([f"{col}=[{', '.join(str(v) for v in x)}]" if isinstance(x, list) else f"{col}={x}"
                      for x in values])
    return [" ".join(p) for p in zip(*parts, strict=True)]


def group_topology(rows: np.ndarray, arch: Any, labels: Sequence[str], *, layer: str = "fc1", max_points: int = 100,
                   resolution: int = 20, degrees: Sequence[int] = (0,), max_distance_groups: int = 120,
                   seed: int = 0, progress: Callable[[int, int], None] | None = None
                   ) -> tuple[pl.DataFrame, pl.DataFrame, list[str], list[np.ndarray]]:
    """Per-group diagrams and measures, and distances between groups.

    Returns ``(groups, distances, notes, grid)``: one row per group x cloud x degree; the long
    distance table (empty, with a note, above ``max_distance_groups`` groups); the grid of the
    two-parameter measure (shared by all groups so their measures compare).
    """
    from weightlake.analysis import topology_multi as tm

    tm.neuron_importance(rows[:1], arch, layer)  # refuses a layer without a dense next layer, before any work
    label_arr = np.asarray(labels)
    names = list(dict.fromkeys(label_arr.tolist()))
    grid = tm.regular_grid(_scale(rows, arch, layer, seed), resolution)
    groups, measures, diagrams = [], [], []
    for k, name in enumerate(names):
        where = np.flatnonzero(label_arr == name)
        part, dgm, sm = _one_group(rows[where], arch, layer, grid, max_points, degrees, seed)
        groups.append(part.with_columns(group=pl.lit(name), n_models=pl.lit(where.size, dtype=pl.Int32)))
        diagrams.append(dgm)
        measures.append(sm)
        if progress:
            progress(k + 1, len(names))
    table = pl.concat(groups, how="diagonal_relaxed").select("group", "n_models", pl.exclude("group", "n_models"))
    notes = []
    if len(names) <= max_distance_groups:
        dist = group_distances(names, diagrams, measures, degrees)
    else:
        dist = pl.DataFrame(schema={"group_a": pl.String, "group_b": pl.String, "space": pl.String,
                                    "dim": pl.Int32, "metric": pl.String, "value": pl.Float64})
        notes.append(f"distances not computed: {len(names)} groups > max_distance_groups={max_distance_groups} "
                     f"({len(names) * (len(names) - 1) // 2} pairs); raise it to compute them")
    return table, dist, notes, grid


def group_distance_matrix(dist: pl.DataFrame, names: Sequence[str], space: str, dim: int, metric: str) -> np.ndarray:
    """One square matrix, in the order of ``names``, out of the long distance table."""
    index = {n: i for i, n in enumerate(names)}
    out = np.zeros((len(names), len(names)))
    part = dist.filter((pl.col("space") == space) & (pl.col("dim") == dim) & (pl.col("metric") == metric))
    for a, b, v in part.select("group_a", "group_b", "value").iter_rows():
        if a in index and b in index:
            out[index[a], index[b]] = out[index[b], index[a]] = v
    return out


def _scale(rows: np.ndarray, arch: Any, layer: str, seed: int) -> float:
    """Rips extent of the shared grid: the largest distance among up to 400 neurons drawn from the zoo."""
    from weightlake.analysis import topology_multi as tm

    pts, _ = tm.pooled_neurons(rows[tm.subsample(rows, 64, seed)], arch, layer)
    pts = pts[tm.subsample(pts, 400, seed)]
    return float(tm.pairwise_distances(pts[None])[0].max())


def _one_group(rows: np.ndarray, arch: Any, layer: str, grid: list[np.ndarray], max_points: int,
               degrees: Sequence[int], seed: int) -> tuple[pl.DataFrame, dict[tuple[str, int], np.ndarray], list]:
    from weightlake.analysis import topology_multi as tm
    from weightlake.analysis.topology import bar_summaries

    pick = tm.subsample(rows, max_points, seed)
    pts, value = tm.pooled_neurons(rows, arch, layer)
    keep = tm.subsample(pts, max_points, seed)
    clouds = {"models": (rows[pick].astype(np.float64), pick.size), "neurons": (pts[keep], keep.size)}
    out, dgms = [], {}
    for space, (cloud, n_points) in clouds.items():
        for dim, bars in enumerate(tm.cloud_diagrams(cloud, max_dim=1)):
            dgms[(space, dim)] = bars
            s = bar_summaries((bars[:, 1] - bars[:, 0])[None])
            out.append({"space": space, "dim": dim, "n_points": n_points, "births": bars[:, 0].tolist(),
                        "deaths": bars[:, 1].tolist(), "total_persistence": float(s["total"][0]),
                        "max_persistence": float(s["max"][0]), "entropy": float(s["entropy"][0])})
    measures = tm.function_rips_measure(pts[keep], value[keep], grid, degrees=degrees) if degrees else []
    for dim, (loc, w) in zip(degrees, measures, strict=True):
        out.append({"space": "function_rips", "dim": dim, "n_points": keep.size, "sm_rips": loc[:, 0].tolist(),
                    "sm_function": loc[:, 1].tolist(), "sm_weight": w.tolist()})
    frame = pl.DataFrame(out, schema_overrides={"dim": pl.Int32, "n_points": pl.Int32})
    return frame, dgms, measures


def group_distances(names: list[str], diagrams: list[dict[tuple[str, int], np.ndarray]], measures: list[list],
                    degrees: Sequence[int]) -> pl.DataFrame:
    """Every diagram distance and the signed-measure distance between every two groups (long format)."""
    from weightlake.analysis.topology_diagrams import DISTANCES
    from weightlake.analysis.topology_multi import signed_measure_distance

    out: dict[str, list[Any]] = {k: [] for k in ("group_a", "group_b", "space", "dim", "metric", "value")}

    def add(a: str, b: str, space: str, dim: int, metric: str, value: float) -> None:
        for key, v in zip(out, (a, b, space, dim, metric, value), strict=True):
            out[key].append(v)

    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            for key, bars in diagrams[i].items():
                for metric, fn in DISTANCES.items():
                    add(names[i], names[j], key[0], key[1], metric, fn(bars, diagrams[j][key]))
            for k, dim in enumerate(degrees):
                add(names[i], names[j], "function_rips", dim, "signed_measure_w1",
                    signed_measure_distance(measures[i][k], measures[j][k]))
    return pl.DataFrame(out, schema_overrides={"dim": pl.Int32, "value": pl.Float64})


