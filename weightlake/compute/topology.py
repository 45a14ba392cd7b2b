"""Topology of a zoo as lake tables.

* :func:`analyze_topology` -> table ``topology``: one row per distinct model x layer with the
  features of :mod:`weightlake.analysis.topology` (diagrams, summaries, Betti curves on a
  per-layer grid recorded in the table's parameters);
* :func:`analyze_topology_groups` -> tables ``topology_groups`` (diagrams of each group's cloud
  of models and of its pooled neurons, and the Hilbert signed measure of the function-Rips
  bifiltration) and ``topology_group_distances`` (bottleneck, Wasserstein, sliced Wasserstein
  and signed-measure distances between every two groups), committed together;
* :func:`analyze_topology_classes` -> table ``topology_classes`` (per-digit cross-validated AUC of
  topology vs a norms-and-spectra baseline, Mantel tests against the Jaccard distance of class sets);
* :func:`analyze_topology_filtration` -> table ``topology_filtration`` (a learned filtration's coefficients).

The pure computations live in :mod:`weightlake.analysis` (``topology*``); this module reads a
snapshot and commits. The runs count distinct models by default (:func:`weightlake.analysis.distinct.distinct_models`)
and record ``n`` distinct in their parameters; ``all_rows=True`` counts every row. The commit
of one table reuses :func:`weightlake.compute.analyses._commit`; the two group tables go into one
transaction through :func:`weightlake.compute._common.commit_tables`.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from weightlake.analysis.distinct import distinct_models
from weightlake.compute._common import commit_tables
from weightlake.compute.analyses import _commit, _selection, _zoo_meta, _zoo_rows, refuse_non_finite
from weightlake.errors import QueryError, WeightLakeError


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


def select_model_meta(lake: Any, zoo: str | None, all_rows: bool) -> tuple[str, np.ndarray, pl.DataFrame, str]:
    """:func:`select_models` without the weights: the chosen ids (weight-row order), their metadata and the note.

    For runs whose workers read the weight rows themselves (:mod:`weightlake.compute.dask_runs`).
    """
    from weightlake.compute.analyses import _zoo_meta

    zoo, ids, meta = _zoo_meta(lake, zoo)
    if ids.size == 0:
        raise QueryError(f"zoo {zoo!r} has no models")
    if all_rows:
        return zoo, ids, meta, f"{ids.size} rows (all rows counted, copies included)"
    sel = distinct_models(meta)
    return zoo, ids[sel.keep], meta.filter(pl.Series(sel.keep)), sel.note()


# -- per model x layer -----------------------------------------------------------------------------
def analyze_topology(lake_root: Path | str, *, zoo: str | None = None, layers: Sequence[str] | None = None,
                     h1: bool = True, cubical: bool = True, all_rows: bool = False,
                     progress: Callable[[int, int], None] | None = None,
                     memory: str | int | None = None) -> TopologyReport:
    """Per-model, per-layer topology of every distinct model -> table ``topology``.

    The zoo is read in blocks under the memory budget ``memory`` (default ``$WEIGHTLAKE_MEMORY``,
    see :mod:`weightlake.storage.budget`), so a zoo of wide models (a ResNet-18 zoo) is never
    held whole; the table is the same whatever the budget.

    Parameters
    ----------
    lake_root : the lake
    zoo : zoo name (default: the only zoo)
    layers : layer names (default: all)
    h1 : compute Rips H1 (the costly part of the neuron clouds)
    cubical : compute cubical persistence of conv kernels
    all_rows : count every row, fallback copies and repeated vectors included
    progress : callable ``(done, total)`` over models
    memory : the memory budget (bytes or ``"512MB"``)
    """
    from weightlake.analysis.topology import zoo_topology
    from weightlake.analysis.topology_diagrams import add_betti_curves
    from weightlake.lake import open_lake

    started = time.perf_counter()
    lake = open_lake(lake_root, memory=memory)
    zoo, ids, meta = _zoo_meta(lake, zoo)
    if ids.size == 0:
        raise QueryError(f"zoo {zoo!r} has no models")
    keep, _, note = _selection(meta, all_rows)
    if all_rows:
        note = f"{ids.size} rows (all rows counted, copies included)"
    arch = lake.arch(zoo)
    total, done, parts = int(keep.sum()), 0, []
    for block_ids, rows in _blocks(lake, zoo, ids, keep, arch, layers):
        refuse_non_finite(zoo, block_ids, rows)
        step = None if progress is None else functools.partial(_offset_progress, progress, done, total)
        part = zoo_topology(rows, arch, layers=layers, h1=h1, cubical=cubical, progress=step)
        parts.append(part.with_columns(model_id=pl.Series(block_ids)[part["row"]]).drop("row"))
        done += len(rows)
    frame, grids = add_betti_curves(pl.concat(parts))
    table = frame.with_columns(snapshot=pl.lit(lake.snapshot, dtype=pl.Int64))
    table = table.select("model_id", "layer", pl.exclude("model_id", "layer"))
    params = {"layers": list(dict.fromkeys(layers or arch.matrix_layer_names)), "h1": h1, "cubical": cubical, "all_rows": all_rows,
              "models": total, "distinct_note": note, "betti_grids": grids}
    version = _commit(Path(lake_root), "topology", table, zoo, params, lake.snapshot)
    return TopologyReport("topology", zoo, table.height, total, version, time.perf_counter() - started, [note])


def _blocks(lake: Any, zoo: str, ids: np.ndarray, keep: np.ndarray, arch: Any,
            layers: Sequence[str] | None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The kept rows of the zoo in budget-sized blocks, ``(ids, float32 [n, P])``.

    When only some layers are asked for and the zoo is stored per tensor (wide models), only
    their columns are read (the other columns stay zero: no layer asked for reads them).
    """
    spans = _layer_spans(arch, layers)
    segments = lake.manifest.zoo(zoo).segments
    if spans and segments and all(seg.parts for seg in segments):
        chosen, step = ids[keep], max(1, lake.block_rows(zoo))
        for start in range(0, len(chosen), step):
            block_ids = chosen[start:start + step]
            rows = np.zeros((len(block_ids), arch.n_params), dtype=np.float32)
            for lo, hi in spans:
                rows[:, lo:hi] = lake.columns_numpy(block_ids, lo, hi)
            yield block_ids, rows
        return
    at = 0
    for block_ids, block in lake.iter_weights(zoo):
        mask = keep[at:at + len(block_ids)]
        at += len(block_ids)
        if mask.any():
            yield (block_ids, block) if mask.all() else (block_ids[mask], block[mask])


def _layer_spans(arch: Any, layers: Sequence[str] | None) -> list[tuple[int, int]]:
    """Flat columns ``[start, stop)`` of each of ``layers`` (weight and bias); empty for all layers, or
    for a name that is not a layer, which :func:`zoo_topology` then refuses in its own words."""
    if not layers:
        return []
    try:
        wanted = {(layer.start, layer.stop) for layer in (arch.layer(name) for name in layers)}
    except WeightLakeError:
        return []
    return sorted(wanted) if sum(hi - lo for lo, hi in wanted) < arch.n_params else []


def _offset_progress(progress: Callable[[int, int], None], before: int, total: int, done: int, _: int) -> None:
    progress(before + done, total)


# -- groups ------------------------------------------------------------------------------------------
def analyze_topology_groups(lake_root: Path | str, *, zoo: str | None = None, by: Sequence[str] = ("classes",),
                            layer: str = "fc1", max_points: int = 100, resolution: int = 20,
                            degrees: Sequence[int] = (0,), max_distance_groups: int = 120, all_rows: bool = False,
                            seed: int = 0, progress: Callable[[int, int], None] | None = None) -> TopologyReport:
    """Diagrams and function-Rips measures per group, and distances between groups -> two tables.

    See :func:`weightlake.analysis.topology_groups.group_topology` for the parameters: ``by``
    names the metadata columns that define a group; ``degrees`` empty skips multipers.
    """
    from weightlake.analysis.topology_groups import group_labels, group_topology
    from weightlake.lake import open_lake

    started = time.perf_counter()
    lake = open_lake(lake_root)
    zoo, ids, rows, meta, note = select_models(lake, zoo, all_rows)
    labels = group_labels(meta, by)
    table, dist, notes, grid = group_topology(rows, lake.arch(zoo), labels, layer=layer, max_points=max_points,
                                              resolution=resolution, degrees=degrees,
                                              max_distance_groups=max_distance_groups, seed=seed, progress=progress)
    params = {"by": list(by), "layer": layer, "max_points": max_points, "resolution": resolution,
              "degrees": list(degrees), "grid": [g.tolist() for g in grid], "seed": seed, "all_rows": all_rows,
              "models": int(ids.size), "distinct_note": note}
    return commit_topology_groups(lake_root, lake, zoo, table, dist, params, [note, *notes], started)


def commit_topology_groups(lake_root: Path | str, lake: Any, zoo: str, table: pl.DataFrame, dist: pl.DataFrame,
                           params: dict[str, Any], notes: Sequence[str], started: float) -> TopologyReport:
    """Commit the two group tables in one transaction (``params`` gain ``groups``) and report them.

    ``notes`` start with the distinct-model note; shared by the local and the Dask run.
    """
    n_groups = table["group"].n_unique()
    lone = single_point_groups(table)
    params = {**params, "groups": n_groups, **({"single_point_groups": lone} if lone else {})}
    snap = pl.lit(lake.snapshot, dtype=pl.Int64)
    version = commit_tables(Path(lake_root), {"topology_groups": table.with_columns(snapshot=snap),
                                               "topology_group_distances": dist.with_columns(snapshot=snap)},
                             zoo, params, lake.snapshot)
    return TopologyReport("topology_groups", zoo, table.height, int(params["models"]), version,
                          time.perf_counter() - started,
                          [notes[0], f"{n_groups} groups by {', '.join(params['by'])}", *notes[1:],
                           *single_point_note(lone, n_groups),
                           f"table 'topology_group_distances': {dist.height} rows"])


def single_point_groups(table: pl.DataFrame) -> dict[str, int]:
    """Per cloud (``models``, ``neurons``), how many groups' clouds hold a single point (none when empty)."""
    lone = table.filter((pl.col("space") != "function_rips") & (pl.col("dim") == 0) & (pl.col("n_points") < 2))
    return {space: n for space, n in lone.group_by("space").len().sort("space").iter_rows()}


def single_point_note(lone: dict[str, int], n_groups: int) -> list[str]:
    """The report line for :func:`single_point_groups`: such a cloud has no finite bar, so its distances to
    every other such group are 0 by construction, not because the groups are alike."""
    return [f"{n} of {n_groups} groups have a single point in cloud {space!r} (one model, or --max-points): no "
            f"finite bar, so their {space!r} distances to one another are 0 by construction"
            for space, n in lone.items()]


# -- classes ---------------------------------------------------------------------------------------
def analyze_topology_classes(lake_root: Path | str, *, zoo: str | None = None, folds: int = 5,
                             permutations: int = 999, max_models: int = 300, seed: int = 0,
                             plot_dir: Path | str | None = None) -> TopologyReport:
    """How well topology tells a model's class set -> table ``topology_classes`` (and a figure).

    Reads the committed ``topology`` table (run :func:`analyze_topology` first) and the same
    models' weights for the baseline; see :func:`weightlake.analysis.topology_classes.disentangle`.
    """
    from weightlake.analysis import topology_classes as tc
    from weightlake.lake import open_lake

    started = time.perf_counter()
    lake = open_lake(lake_root)
    zoo = zoo or lake._only_zoo()
    if "topology" not in lake.tables:
        raise QueryError("table 'topology' is missing: run `weightlake analyze topology` first")
    topo = lake.table("topology").filter(pl.col("zoo") == zoo).collect()
    if topo.height == 0:
        raise QueryError(f"table 'topology' has no rows for zoo {zoo!r}: run `weightlake analyze topology --zoo {zoo}`")
    ids = np.sort(topo["model_id"].unique().to_numpy())
    meta = lake.models(zoo).filter(pl.col("model_id").is_in(ids.tolist())).sort("model_id").collect()
    table = tc.disentangle(topo, [list(c) for c in meta["classes"].to_list()], lake.weights_numpy(ids),
                           lake.arch(zoo), folds=folds, permutations=permutations, max_models=max_models, seed=seed)
    table = table.with_columns(snapshot=pl.lit(lake.snapshot, dtype=pl.Int64))
    topo_params = json.loads(lake.manifest.tables["topology"].properties.get(f"params:{zoo}", "{}"))
    params = {"folds": folds, "permutations": permutations, "max_models": max_models, "seed": seed,
              "models": int(ids.size), "topology_params": topo_params}
    notes = [f"{ids.size} models from table 'topology' ({topo_params.get('distinct_note', '')})"]
    if plot_dir:
        path = tc.plot_disentangle(table, Path(plot_dir) / f"{zoo}-topology-classes.png",
                                   f"{zoo}: which digits did a model see? (n={ids.size} models)")
        notes.append(f"plot: {path}")
    version = _commit(Path(lake_root), "topology_classes", table, zoo, params, lake.snapshot, reads=(("topology", "zoo", zoo),))
    return TopologyReport("topology_classes", zoo, table.height, int(ids.size), version,
                          time.perf_counter() - started, notes)


# -- learned filtration ------------------------------------------------------------------------------
def analyze_topology_filtration(lake_root: Path | str, *, zoo: str | None = None, digit: int = 0,
                                layer: str = "fc1", steps: int = 150, max_models: int = 2000, seed: int = 0,
                                all_rows: bool = False) -> TopologyReport:
    """Learn a filtration over the neurons of ``layer`` whose H0 persistence tells "``digit`` in classes"
    -> table ``topology_filtration`` (one row per neuron feature: its coefficient, with train/test AUC).

    See :mod:`weightlake.analysis.topology_learned`. At most ``max_models`` distinct models
    (seeded sample) are used.
    """
    from weightlake.analysis import topology_learned as tl
    from weightlake.analysis.topology_multi import subsample
    from weightlake.lake import open_lake

    started = time.perf_counter()
    lake = open_lake(lake_root)
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
