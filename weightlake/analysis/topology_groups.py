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
    check_layer(rows[:1], arch, layer)  # before any work
    check_group_options(max_points, degrees)
    label_arr = np.asarray(labels)
    names = group_names(labels)
    grid = group_grid(rows, arch, layer, resolution, seed)
    parts, measures, diagrams = [], [], []
    for k, name in enumerate(names):
        where = np.flatnonzero(label_arr == name)
        part, dgm, sm = one_group(rows[where], arch, name, layer=layer, grid=grid, max_points=max_points,
                                  degrees=degrees, seed=seed)
        parts.append(part)
        diagrams.append(dgm)
        measures.append(sm)
        if progress:
            progress(k + 1, len(names))
    table = group_table(parts)
    if len(names) > max_distance_groups:
        return table, empty_distances(), [too_many_groups(len(names), max_distance_groups)], grid
    return table, group_distances(names, diagrams, measures, degrees), [], grid


HOMOLOGY_DEGREES = (0, 1)
"""The homology degrees the group measures are computed in: the diagrams stop at H1, and H2 needs
every 3-simplex of a 100-point Rips complex (``--degrees 0,2`` ran 683 s)."""


def check_group_options(max_points: int, degrees: Sequence[int]) -> None:
    """Refuse clouds of fewer than two points and negative homology degrees (before any work).

    A cloud of one point (or none) has no finite bar: every group would get empty diagrams and
    every distance between groups would be 0, which reads as "all groups alike".
    """
    from weightlake.analysis.topology import TopologyError

    if not isinstance(max_points, (int, np.integer)) or isinstance(max_points, bool) or max_points < 2:
        raise TopologyError(f"max_points must be at least 2 (a cloud of one point has no finite bar), "
                            f"got {max_points!r}")
    bad = [d for d in degrees if not isinstance(d, (int, np.integer)) or isinstance(d, bool)
           or d not in HOMOLOGY_DEGREES]
    if bad or len(set(degrees)) != len(list(degrees)):
        raise TopologyError(f"degrees must be homology degrees among {list(HOMOLOGY_DEGREES)} (the diagrams stop "
                            f"at H1), each once, got {list(degrees)!r}")


SCALE_MODELS = 64
"""Models drawn (seeded) from the zoo to set the extent of the shared grid (:func:`group_grid`)."""


def check_layer(rows: np.ndarray, arch: Any, layer: str) -> None:
    """Refuse a layer without a dense next layer (its neurons have no outgoing importance)."""
    from weightlake.analysis import topology_multi as tm

    tm.neuron_importance(rows[:1], arch, layer)


def group_names(labels: Sequence[str]) -> list[str]:
    """The distinct group labels in order of first appearance (the order of the tables' groups)."""
    return list(dict.fromkeys(np.asarray(labels).tolist()))


def group_grid(rows: np.ndarray, arch: Any, layer: str, resolution: int, seed: int) -> list[np.ndarray]:
    """The grid of the two-parameter measure, shared by all groups so their measures compare.

    It reads only the rows ``topology_multi.subsample(rows, SCALE_MODELS, seed)``, so a caller
    that holds those rows alone (a distributed run) gets the same grid.
    """
    from weightlake.analysis import topology_multi as tm

    return tm.regular_grid(_scale(rows, arch, layer, seed), resolution)


def one_group(rows: np.ndarray, arch: Any, name: str, *, layer: str, grid: list[np.ndarray], max_points: int,
              degrees: Sequence[int], seed: int) -> tuple[pl.DataFrame, dict[tuple[str, int], np.ndarray], list]:
    """One group's table rows (``group``, ``n_models`` first), its diagrams and its signed measures."""
    part, dgm, sm = _one_group(rows, arch, layer, grid, max_points, degrees, seed)
    return part.with_columns(group=pl.lit(name), n_models=pl.lit(len(rows), dtype=pl.Int32)), dgm, sm


def group_table(parts: Sequence[pl.DataFrame]) -> pl.DataFrame:
    """The groups' rows as one table, ``group`` and ``n_models`` first."""
    return pl.concat(parts, how="diagonal_relaxed").select("group", "n_models", pl.exclude("group", "n_models"))


def empty_distances() -> pl.DataFrame:
    """The distance table with no rows."""
    return pl.DataFrame(schema={"group_a": pl.String, "group_b": pl.String, "space": pl.String,
                                "dim": pl.Int32, "metric": pl.String, "value": pl.Float64})


def too_many_groups(n_groups: int, max_distance_groups: int) -> str:
    """The note of a run that skipped the distances."""
    return (f"distances not computed: {n_groups} groups > max_distance_groups={max_distance_groups} "
            f"({n_groups * (n_groups - 1) // 2} pairs); raise it to compute them")


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
                    degrees: Sequence[int], first: Sequence[int] | None = None) -> pl.DataFrame:
    """Every diagram distance and the signed-measure distance between every two groups (long format).

    ``first`` limits the rows to pairs ``(i, j > i)`` with ``i`` in it (a share of the work);
    the shares of disjoint ``first`` concatenated in order of ``i`` are the whole table.
    """
    from weightlake.analysis.topology_diagrams import DISTANCES
    from weightlake.analysis.topology_multi import signed_measure_distance

    out: dict[str, list[Any]] = {k: [] for k in ("group_a", "group_b", "space", "dim", "metric", "value")}

    def add(a: str, b: str, space: str, dim: int, metric: str, value: float) -> None:
        for key, v in zip(out, (a, b, space, dim, metric, value), strict=True):
            out[key].append(v)

    for i in (range(len(names)) if first is None else first):
        for j in range(i + 1, len(names)):
            for key, bars in diagrams[i].items():
                for metric, fn in DISTANCES.items():
                    add(names[i], names[j], key[0], key[1], metric, fn(bars, diagrams[j][key]))
            for k, dim in enumerate(degrees):
                add(names[i], names[j], "function_rips", dim, "signed_measure_w1",
                    signed_measure_distance(measures[i][k], measures[j][k]))
    return pl.DataFrame(out, schema_overrides={"dim": pl.Int32, "value": pl.Float64})


