"""Topology of a zoo as lake tables.

* :func:`analyze_topology` -> table ``topology``: one row per distinct model x layer with the
  features of :mod:`weightlake.analysis.topology` (diagrams, summaries, Betti curves on a
  per-layer grid recorded in the table's parameters);
* :func:`analyze_topology_groups` -> tables ``topology_groups`` (diagrams of each group's cloud
  of models and of its pooled neurons, and the Hilbert signed measure of the function-Rips
  bifiltration) and ``topology_group_distances`` (bottleneck, Wasserstein, sliced Wasserstein
  and signed-measure distances between every two groups), committed together.

Both count distinct models by default (:func:`weightlake.analysis.distinct.distinct_models`)
and record ``n`` distinct in their parameters; ``all_rows=True`` counts every row. The commit
of one table reuses :func:`weightlake.analysis.api._commit`; the two group tables go into one
transaction through :func:`_commit_tables`, the same pattern for several tables.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from weightlake.analysis.api import _commit, _zoo_rows
from weightlake.analysis.distinct import distinct_models
from weightlake.errors import QueryError

BETTI_STEPS = 16
"""Grid steps of the stored Betti curves."""


@dataclass
class TopologyReport:
    """What a topology run committed."""

    table: str
    zoo: str
    rows: int
    models: int
    snapshot: int | None
    seconds: float
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        head = (f"table {self.table!r}: {self.rows} rows over {self.models} models for zoo {self.zoo!r} "
                f"(snapshot {self.snapshot}, {self.seconds:.1f} s)")
        return "\n".join([head, *(f"   {n}" for n in self.notes)])


def select_models(lake: Any, zoo: str | None, all_rows: bool) -> tuple[str, np.ndarray, np.ndarray, pl.DataFrame, str]:
    """A zoo's ids, weight rows and metadata, reduced to distinct models unless ``all_rows``; plus the note."""
    zoo, ids, rows, meta = _zoo_rows(lake, zoo)
    if ids.size == 0:
        raise QueryError(f"zoo {zoo!r} has no models")
    if all_rows:
        return zoo, ids, rows, meta, f"{ids.size} rows (all rows counted, copies included)"
    sel = distinct_models(meta)
    keep = sel.keep
    return zoo, ids[keep], rows[keep], meta.filter(pl.Series(keep)), sel.note()


# -- per model x layer -----------------------------------------------------------------------------
def analyze_topology(lake_root: Path | str, *, zoo: str | None = None, layers: Sequence[str] | None = None,
                     h1: bool = True, cubical: bool = True, all_rows: bool = False,
                     progress: Callable[[int, int], None] | None = None) -> TopologyReport:
    """Per-model, per-layer topology of every distinct model -> table ``topology``.

    Parameters
    ----------
    lake_root : the lake
    zoo : zoo name (default: the only zoo)
    layers : layer names (default: all)
    h1 : compute Rips H1 (the costly part of the neuron clouds)
    cubical : compute cubical persistence of conv kernels
    all_rows : count every row, fallback copies and repeated vectors included
    progress : callable ``(done, total)`` over models
    """
    import weightlake as wl
    from weightlake.analysis.topology import zoo_topology

    started = time.perf_counter()
    lake = wl.open_lake(lake_root)
    zoo, ids, rows, _, note = select_models(lake, zoo, all_rows)
    arch = lake.arch(zoo)
    frame = zoo_topology(rows, arch, layers=layers, h1=h1, cubical=cubical, progress=progress)
    frame, grids = add_betti_curves(frame)
    table = frame.with_columns(model_id=pl.Series(ids)[frame["row"]],
                               snapshot=pl.lit(lake.snapshot, dtype=pl.Int64)).drop("row")
    table = table.select("model_id", "layer", pl.exclude("model_id", "layer"))
    params = {"layers": list(layers or arch.layer_names), "h1": h1, "cubical": cubical, "all_rows": all_rows,
              "models": int(ids.size), "distinct_note": note, "betti_grids": grids}
    version = _commit(Path(lake_root), "topology", table, zoo, params, lake.snapshot)
    return TopologyReport("topology", zoo, table.height, int(ids.size), version, time.perf_counter() - started, [note])


def add_betti_curves(frame: pl.DataFrame, steps: int = BETTI_STEPS) -> tuple[pl.DataFrame, dict[str, list[float]]]:
    """Betti-0 and Betti-1 curves of each row's Rips diagrams on one grid per layer.

    The grid of a layer runs from 0 to the largest H0 death of that layer in this zoo (every
    H1 death is below it: a cycle dies once its points are connected), in ``steps`` values.
    """
    from weightlake.analysis.topology_diagrams import betti_curve

    grids: dict[str, list[float]] = {}
    b0 = [np.empty(0)] * frame.height
    b1 = [np.empty(0)] * frame.height
    for layer in frame["layer"].unique(maintain_order=True).to_list():
        where = np.flatnonzero((frame["layer"] == layer).to_numpy())
        deaths = frame["h0_deaths"].gather(where).to_list()
        top = max([max(d) for d in deaths if d] + [1e-12])
        grid = np.linspace(0.0, top, steps)
        grids[layer] = grid.tolist()
        births, ends = frame["h1_births"].gather(where).to_list(), frame["h1_deaths"].gather(where).to_list()
        for k, i in enumerate(where):
            b0[i] = (np.asarray(deaths[k])[:, None] > grid[None, :]).sum(axis=0).astype(np.float32)
            b1[i] = betti_curve(np.stack([births[k], ends[k]], axis=1) if births[k] else np.empty((0, 2)),
                                grid).astype(np.float32)
    return frame.with_columns(betti0=pl.Series(b0, dtype=pl.List(pl.Float32)),
                              betti1=pl.Series(b1, dtype=pl.List(pl.Float32))), grids


# -- groups ------------------------------------------------------------------------------------------
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


def analyze_topology_groups(lake_root: Path | str, *, zoo: str | None = None, by: Sequence[str] = ("classes",),
                            layer: str = "fc1", max_points: int = 100, resolution: int = 20,
                            degrees: Sequence[int] = (0,), max_distance_groups: int = 120, all_rows: bool = False,
                            seed: int = 0, progress: Callable[[int, int], None] | None = None) -> TopologyReport:
    """Diagrams and function-Rips measures per group, and distances between groups -> two tables.

    Parameters
    ----------
    by : metadata columns that define a group
    layer : the layer whose pooled neurons form the ``neurons`` cloud (it needs a next layer)
    max_points : clouds larger than this are subsampled (fixed ``seed``)
    resolution : steps of the regular grid of the two-parameter measure (20-50)
    degrees : homology degrees of the two-parameter measure (H1 costs 10-100x H0); empty to
        skip multipers altogether (one-parameter diagrams and distances only)
    max_distance_groups : compute the distance table only up to this many groups (the pairs
        grow quadratically); above it the table is left empty and the report says so
    """
    import weightlake as wl
    from weightlake.analysis import topology_multi as tm

    started = time.perf_counter()
    lake = wl.open_lake(lake_root)
    zoo, ids, rows, meta, note = select_models(lake, zoo, all_rows)
    arch = lake.arch(zoo)
    tm.neuron_importance(rows[:1], arch, layer)  # refuses a layer without a dense next layer, before any work
    labels = np.array(group_labels(meta, by))
    names = list(dict.fromkeys(labels.tolist()))
    grid = tm.regular_grid(_scale(rows, arch, layer, seed), resolution)
    groups, measures, diagrams = [], [], []
    for k, name in enumerate(names):
        where = np.flatnonzero(labels == name)
        part, dgm, sm = _one_group(rows[where], arch, layer, grid, max_points, degrees, seed)
        groups.append(part.with_columns(group=pl.lit(name), n_models=pl.lit(where.size, dtype=pl.Int32)))
        diagrams.append(dgm)
        measures.append(sm)
        if progress:
            progress(k + 1, len(names))
    table = pl.concat(groups, how="diagonal_relaxed").select("group", "n_models", pl.exclude("group", "n_models"))
    notes = [note, f"{len(names)} groups by {', '.join(by)}"]
    if len(names) <= max_distance_groups:
        dist = group_distances(names, diagrams, measures, degrees)
    else:
        dist = pl.DataFrame(schema={"group_a": pl.String, "group_b": pl.String, "space": pl.String,
                                    "dim": pl.Int32, "metric": pl.String, "value": pl.Float64})
        notes.append(f"distances not computed: {len(names)} groups > max_distance_groups={max_distance_groups} "
                     f"({len(names) * (len(names) - 1) // 2} pairs); raise it to compute them")
    params = {"by": list(by), "layer": layer, "max_points": max_points, "resolution": resolution,
              "degrees": list(degrees), "grid": [g.tolist() for g in grid], "seed": seed, "all_rows": all_rows,
              "models": int(ids.size), "groups": len(names), "distinct_note": note}
    snap = pl.lit(lake.snapshot, dtype=pl.Int64)
    version = _commit_tables(Path(lake_root), {"topology_groups": table.with_columns(snapshot=snap),
                                               "topology_group_distances": dist.with_columns(snapshot=snap)},
                             zoo, params, lake.snapshot)
    return TopologyReport("topology_groups", zoo, table.height, int(ids.size), version,
                          time.perf_counter() - started, [*notes, f"table 'topology_group_distances': {dist.height} rows"])


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


def _commit_tables(lake_root: Path, frames: dict[str, pl.DataFrame], zoo: str, params: dict[str, Any],
                   snapshot: int) -> int:
    """Several tables in one transaction, each partitioned by zoo (the pattern of ``analysis.api._commit``)."""
    from weightlake.storage.transaction import transaction

    with transaction(Path(lake_root)) as tx:
        if tx.parent.version != snapshot:
            raise QueryError(f"the lake moved from snapshot {snapshot} to {tx.parent.version} during the analysis; "
                             "run it again")
        for name, df in frames.items():
            tx.put_table(name, df.with_columns(zoo=pl.lit(zoo)), partition_by=("zoo",),
                         properties={"partition_by": ["zoo"], f"params:{zoo}": json.dumps(params)})
        summary = ", ".join(f"{name}: {df.height} rows" for name, df in frames.items())
        return tx.commit({"op": f"analyze-{next(iter(frames))}", "zoo": zoo,
                          "summary": f"{summary} for {zoo} from snapshot {snapshot}"}).version


# -- classes ---------------------------------------------------------------------------------------
def analyze_topology_classes(lake_root: Path | str, *, zoo: str | None = None, folds: int = 5,
                             permutations: int = 999, max_models: int = 300, seed: int = 0,
                             plot_dir: Path | str | None = None) -> TopologyReport:
    """How well topology tells a model's class set -> table ``topology_classes`` (and a figure).

    Reads the committed ``topology`` table (run :func:`analyze_topology` first) and the same
    models' weights for the baseline (norms and singular values). Rows of kind ``auc``: per
    digit and feature set, the cross-validated AUC of "digit in classes"; rows of kind
    ``mantel``: Spearman r and permutation p of model distances against the Jaccard distance
    of class sets, on at most ``max_models`` models drawn with ``seed``. See
    :mod:`weightlake.analysis.topology_classes`.
    """
    import weightlake as wl
    from weightlake.analysis import topology_classes as tc

    started = time.perf_counter()
    lake = wl.open_lake(lake_root)
    zoo = zoo or lake._only_zoo()
    if "topology" not in lake.tables:
        raise QueryError("table 'topology' is missing: run `weightlake analyze topology` first")
    topo = lake.table("topology").filter(pl.col("zoo") == zoo).collect()
    if topo.height == 0:
        raise QueryError(f"table 'topology' has no rows for zoo {zoo!r}: run `weightlake analyze topology --zoo {zoo}`")
    ids, x_topo, _ = tc.topology_vectors(topo)
    meta = lake.models(zoo).filter(pl.col("model_id").is_in(ids.tolist())).sort("model_id").collect()
    classes = [list(c) for c in meta["classes"].to_list()]
    x_base, _ = tc.baseline_vectors(lake.weights_numpy(ids), lake.arch(zoo))
    features = {"topology": x_topo, "baseline": x_base, "both": np.concatenate([x_topo, x_base], axis=1)}
    auc = tc.digit_aucs(features, classes, folds=folds, seed=seed).with_columns(kind=pl.lit("auc"))
    man = _mantel_rows(tc, topo, ids, features, classes, permutations, max_models, seed)
    table = pl.concat([auc, man], how="diagonal_relaxed").with_columns(snapshot=pl.lit(lake.snapshot, dtype=pl.Int64))
    table = table.select("kind", pl.exclude("kind"))
    params = {"folds": folds, "permutations": permutations, "max_models": max_models, "seed": seed,
              "models": int(ids.size), "topology_params": json.loads(
                  lake.manifest.tables["topology"].properties.get(f"params:{zoo}", "{}"))}
    notes = [f"{ids.size} models from table 'topology' ({params['topology_params'].get('distinct_note', '')})"]
    if plot_dir:
        path = tc.plot_disentangle(table, Path(plot_dir) / f"{zoo}-topology-classes.png",
                                   f"{zoo}: which digits did a model see? (n={ids.size} models)")
        notes.append(f"plot: {path}")
    version = _commit(Path(lake_root), "topology_classes", table, zoo, params, lake.snapshot)
    return TopologyReport("topology_classes", zoo, table.height, int(ids.size), version,
                          time.perf_counter() - started, notes)


def _mantel_rows(tc: Any, topo: pl.DataFrame, ids: np.ndarray, features: dict[str, np.ndarray],
                 classes: list[list[int]], permutations: int, max_models: int, seed: int) -> pl.DataFrame:
    from weightlake.analysis.topology_multi import subsample

    pick = subsample(ids, max_models, seed)
    picked = [classes[i] for i in pick]
    fc1 = topo.filter(pl.col("layer") == "fc1").sort("model_id")
    dists = {}
    if fc1.height == ids.size:
        dists["fc1 H0 sliced Wasserstein"] = tc.model_diagram_distances([fc1["h0_deaths"][int(i)].to_list() for i in pick])
    dists["topology vectors"] = tc.standardised_distances(features["topology"][pick])
    dists["baseline vectors"] = tc.standardised_distances(features["baseline"][pick])
    rows = []
    for name, d in dists.items():
        means, sets = tc.class_set_means(d, picked)
        if len(sets) < 4:
            rows.append({"kind": "mantel", "distance": name, "r": None, "p": None, "n_models": int(pick.size),
                         "n_class_sets": len(sets), "cv": "too_few_class_sets"})
            continue
        r, p = tc.mantel(means, tc.jaccard_distances(sets), permutations=permutations, seed=seed)
        rows.append({"kind": "mantel", "distance": name, "r": r, "p": p, "n_models": int(pick.size),
                     "n_class_sets": len(sets)})
    return pl.DataFrame(rows)


# -- learned filtration ------------------------------------------------------------------------------
def analyze_topology_filtration(lake_root: Path | str, *, zoo: str | None = None, digit: int = 0,
                                layer: str = "fc1", steps: int = 150, max_models: int = 2000, seed: int = 0,
                                all_rows: bool = False) -> TopologyReport:
    """Learn a filtration over the neurons of ``layer`` whose H0 persistence tells "``digit`` in classes"
    -> table ``topology_filtration`` (one row per neuron feature: its coefficient, with train/test AUC).

    See :mod:`weightlake.analysis.topology_learned`. At most ``max_models`` distinct models
    (seeded sample) are used.
    """
    import weightlake as wl
    from weightlake.analysis import topology_learned as tl
    from weightlake.analysis.topology_multi import subsample

    started = time.perf_counter()
    lake = wl.open_lake(lake_root)
    zoo, ids, rows, meta, note = select_models(lake, zoo, all_rows)
    pick = subsample(ids, max_models, seed)
    arch = lake.arch(zoo)
    y = np.array([digit in c for c in meta["classes"].to_list()], dtype=int)[pick]
    if y.min() == y.max():
        raise QueryError(f"every selected model {'has' if y[0] else 'lacks'} digit {digit}: nothing to separate")
    feats = tl.neuron_features(rows[pick], arch, layer)
    fit = tl.fit_filtration(list(feats), tl.neuron_graphs(rows[pick], arch, layer), y, names=tl.NEURON_FEATURES,
                            steps=steps, seed=seed)
    table = pl.DataFrame({"feature": [f for f, _ in fit.coefficients()],
                          "coefficient": [c for _, c in fit.coefficients()]}).with_columns(
        digit=pl.lit(digit, dtype=pl.Int32), layer=pl.lit(layer), train_auc=pl.lit(fit.train_auc),
        test_auc=pl.lit(fit.test_auc), n_models=pl.lit(int(pick.size), dtype=pl.Int32),
        snapshot=pl.lit(lake.snapshot, dtype=pl.Int64))
    params = {"digit": digit, "layer": layer, "steps": steps, "max_models": max_models, "seed": seed,
              "models": int(pick.size), "distinct_note": note, "final_loss": fit.losses[-1]}
    version = _commit(Path(lake_root), "topology_filtration", table, zoo, params, lake.snapshot)
    top = ", ".join(f"{f} {c:+.2f}" for f, c in fit.coefficients()[:3])
    return TopologyReport("topology_filtration", zoo, table.height, int(pick.size), version,
                          time.perf_counter() - started,
                          [note, f"digit {digit}: test AUC {fit.test_auc:.3f} (train {fit.train_auc:.3f}); "
                                 f"largest coefficients: {top}"])
