"""Analyses on a Dask cluster: the same pure functions, block by block on the workers, one commit.

``--dask local`` starts a :class:`distributed.LocalCluster` on 127.0.0.1 (worker processes,
no dashboard); ``--dask tcp://HOST:8786`` connects to a running scheduler. The workers read
the weight chunks themselves from the lake's store (a local path they can reach, or
``s3://`` with the AWS variables set on the workers), each task one stored chunk
(:meth:`weightlake.lake.Lake.to_dask`'s blocks), so the driver never holds the zoo's weights.
Results come back as small tables and are committed once, exactly as the local run does.

Running against a real scheduler::

    dask scheduler                                   # on the scheduler host (port 8786)
    dask worker tcp://scheduler:8786 --nthreads 1    # on each worker host, same weightlake installed
    weightlake analyze spectra --zoo Z --lake s3://zoos/lake --dask tcp://scheduler:8786
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from weightlake.compute.analyses import (
    CONVENTIONS,
    AnalysisReport,
    CorrelationPlan,
    _commit,
    _select_models,
    assemble_correlations,
    correlation_plan,
    param_slice_correlations,
    param_slices,
    refuse_non_finite,
)
from weightlake.errors import QueryError
from weightlake.storage.remote import chunk_rows, read_block, rows_by_id
from weightlake.storage.snapshot import Segment
from weightlake.storage.store import Store

LOCAL_WORKERS = 2


@contextlib.contextmanager
def dask_client(address: str, *, workers: int = LOCAL_WORKERS) -> Iterator[Any]:
    """A ``distributed.Client``: ``"local"`` starts a LocalCluster of ``workers`` processes on loopback."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise QueryError("--dask needs dask and distributed: pip install 'weightlake[dask]'") from None
    if address == "local":
        import logging
        import os

        # a task's error comes back to the driver and is said once there; the workers' own "Compute Failed"
        # log of it (with its traceback) only with WEIGHTLAKE_DEBUG
        quiet = logging.ERROR if os.environ.get("WEIGHTLAKE_DEBUG") else logging.CRITICAL
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=None, silence_logs=quiet) as cluster, Client(cluster) as client:
            yield client
        return
    check_dask_address(address)
    try:
        client = Client(address, timeout="20s")
    except (OSError, TimeoutError) as exc:
        raise QueryError(f"cannot reach the Dask scheduler at {address!r}: {exc}") from exc
    except ValueError as exc:  # an address distributed cannot parse
        raise QueryError(f"--dask {address!r}: {exc}; give 'local' or tcp://HOST:PORT") from None
    with client:
        yield client


def check_dask_address(address: str) -> None:
    """Refuse an address that names no scheduler before anything starts: ``--dask lcoal`` (a typo of
    ``local``) and ``--dask 127.0.0.1`` (no port) were tracebacks from distributed."""
    import re

    if address == "local":
        return
    if not re.fullmatch(r"(tcp|tls|ucx|inproc)://[^/\s:]+(:\d+)?|[^/\s:]+:\d+", address or ""):
        raise QueryError(f"--dask {address!r} names no scheduler: give 'local' (a LocalCluster on 127.0.0.1) or a "
                         "scheduler's address such as tcp://HOST:8786")


def run_token() -> str:
    """A fresh token for the task keys of one run.

    A scheduler takes a submitted key it already holds for the same task and hands back that
    task's result, so keys made of segment paths and offsets alone would let two runs on one
    cluster (a colleague's run with other layers, a copy of the lake, another zoo's slices)
    receive each other's results.
    """
    return uuid.uuid4().hex[:8]


def _kept_rows(location: Store, seg: Segment, start: int, stop: int, keep: np.ndarray, zoo: str) -> np.ndarray:
    """The kept rows of one stored chunk, refused (naming the models) when one holds a NaN or an infinity,
    as the local run refuses them: on a worker they fail inside a decomposition or give NaN."""
    rows = read_block(location, seg, start, stop)[keep]
    refuse_non_finite(zoo, seg.first_id + start + keep.astype(np.int64), rows)
    return rows


def _block_spectra(location: Store, seg: Segment, start: int, stop: int, keep: np.ndarray,
                   arch: Mapping[str, Any], layers: Sequence[str] | None, zoo: str) -> pl.DataFrame:
    """One task: spectra of the kept rows of one stored chunk, keyed by model id."""
    from weightlake.analysis.spectra import zoo_spectra
    from weightlake.arch import get_architecture

    rows = _kept_rows(location, seg, start, stop, keep, zoo)
    table = zoo_spectra(rows, get_architecture(dict(arch)), block=max(len(rows), 1), layers=layers, workers=1)
    ids = pl.Series(seg.first_id + start + keep.astype(np.int64))
    return table.with_columns(model_id=ids[table["row"]]).drop("row")


def analyze_spectra_dask(lake_root: Path | str, *, address: str = "local", zoo: str | None = None,
                         layers: Sequence[str] | None = None, all_rows: bool = False,
                         progress: Callable[[int, int], Any] | None = None) -> AnalysisReport:
    """:func:`weightlake.compute.analyses.analyze_spectra` (convention ``weightlake``) on a Dask cluster.

    Parameters
    ----------
    lake_root : path or URL of the lake (the workers must reach it too)
    address : ``"local"`` or a scheduler address (``tcp://host:8786``)
    zoo, layers, all_rows : as for ``analyze_spectra``: distinct models unless ``all_rows``

    Returns
    -------
    AnalysisReport
        The committed table ``spectra``; its params record the engine.
    """
    from weightlake.lake import open_lake

    started = time.perf_counter()
    lake = open_lake(lake_root)
    zoo = zoo or lake._only_zoo()
    entry = lake.manifest.zoo(zoo)
    meta = lake.models(zoo).sort("model_id").collect()
    ids = meta["model_id"].to_numpy()
    chosen, _, _, models, note = _select_models(ids, np.empty((len(ids), 0), np.float32), meta, all_rows)
    chosen_set = np.isin(np.arange(lake.manifest.next_model_id), chosen)
    jobs = []
    for seg in entry.segments:
        step = chunk_rows(lake.location, seg)
        for start in range(0, seg.rows, step):
            stop = min(start + step, seg.rows)
            keep = np.flatnonzero(chosen_set[seg.first_id + start:seg.first_id + stop])
            if keep.size:
                jobs.append((seg, start, stop, keep))
    total = int(sum(len(k) for *_, k in jobs))
    parts: list[pl.DataFrame] = []
    run = run_token()
    with dask_client(address) as client:
        from distributed import as_completed

        futures = [client.submit(_block_spectra, lake.location, seg, start, stop, keep, dict(entry.arch), layers, zoo,
                                 key=f"wl-spectra-{run}-{seg.path}-{start}") for seg, start, stop, keep in jobs]
        for future in as_completed(futures):
            parts.append(future.result())
            if progress is not None:
                progress(sum(p["model_id"].n_unique() for p in parts), total)
    table = pl.concat(parts).sort("model_id", "layer") if parts else pl.DataFrame()
    table = table.with_columns(layer=pl.col("layer").cast(pl.String), snapshot=pl.lit(lake.snapshot, dtype=pl.Int64))
    table = table.select("model_id", "layer", pl.exclude("model_id", "layer"))
    params: dict[str, Any] = {"layers": list(layers or []), "models": models,
                              "engine": "dask local" if address == "local" else "dask"}
    name = CONVENTIONS["weightlake"]
    version = _commit(Path(lake_root), name, table, zoo, params, lake.snapshot)
    return AnalysisReport(name, zoo, table.height, version, time.perf_counter() - started,
                          notes=[note, f"ran on Dask ({address}): {len(jobs)} tasks, one per stored chunk"],
                          n_models=len(chosen))


Job = tuple[Segment, int, int, np.ndarray]
"""One stored chunk: ``(segment, start row, stop row, kept rows of the chunk)``."""


def chunk_jobs(location: Store, segments: Sequence[Segment], mask: np.ndarray) -> list[Job]:
    """The stored chunks holding rows that ``mask`` (over the zoo's weight rows, in segment order) keeps."""
    jobs, at = [], 0
    for seg in segments:
        step = chunk_rows(location, seg)
        for start in range(0, seg.rows, step):
            stop = min(start + step, seg.rows)
            keep = np.flatnonzero(mask[at + start:at + stop])
            if keep.size:
                jobs.append((seg, start, stop, keep))
        at += seg.rows
    return jobs


def _block_aggregates(location: Store, seg: Segment, start: int, stop: int, keep: np.ndarray,
                      arch: Any, zoo: str) -> pl.DataFrame:
    """One task: the per-layer aggregates of the kept rows of one stored chunk (in row order)."""
    from weightlake.analysis.correlations import layer_aggregates

    return layer_aggregates(_kept_rows(location, seg, start, stop, keep, zoo), arch)


def _slice_task(location: Store, jobs: Sequence[Job], plan: CorrelationPlan, lo: int, hi: int) -> pl.DataFrame:
    """One task: parameters ``lo:hi`` of every used row, read chunk by chunk, correlated with the metadata
    (the first slice checks whole rows: a NaN elsewhere in a row would otherwise pass a later slice unseen)."""
    x = np.empty((plan.n_used, hi - lo), dtype=np.float32)
    fill = 0
    for seg, start, stop, keep in jobs:
        rows = _kept_rows(location, seg, start, stop, keep, plan.zoo) if lo == 0 else \
            read_block(location, seg, start, stop)[keep]
        x[fill:fill + len(keep)] = rows[:, lo:hi]
        fill += len(keep)
    return param_slice_correlations(x, plan, lo, hi)


def analyze_correlations_dask(lake_root: Path | str, *, address: str = "local", zoo: str | None = None,
                              against: Sequence[str] = ("accuracy", "epoch", "activation", "init", "classes",
                                                        "n_classes"),
                              by: Sequence[str] = (), features: str = "both",
                              methods: Sequence[str] = ("pearson", "spearman"), all_rows: bool = False,
                              per_run: str = "all", progress: Callable[[int, int], Any] | None = None,
                              memory: str | int | None = None) -> AnalysisReport:
    """:func:`weightlake.compute.analyses.analyze_correlations` (without plots) on a Dask cluster.

    The per-model aggregates run one task per stored chunk; the parameters one task per
    column slice (each reads the used rows chunk by chunk and keeps its columns, at most
    half the budget ``memory``, and at least one slice per worker thread).  The driver
    correlates the aggregates once and redoes the q-values per family, exactly as the
    local run (:func:`~weightlake.compute.analyses.assemble_correlations`), and commits
    table ``correlations``; its params record the engine.
    """
    from weightlake.lake import open_lake

    started = time.perf_counter()
    lake = open_lake(lake_root, memory=memory)
    plan = correlation_plan(lake, zoo, against, by, features, methods, all_rows, per_run)
    jobs = chunk_jobs(lake.location, lake.manifest.zoo(plan.zoo).segments, plan.mask)
    run = run_token()
    with dask_client(address) as client:
        threads = max(1, sum(client.nthreads().values()))
        n_params = plan.arch.n_params
        slices = param_slices(n_params, plan.n_used, min(lake.memory, 2 * 4 * plan.n_used * -(-n_params // threads)))
        slice_futures = [client.submit(_slice_task, lake.location, jobs, plan, lo, hi, key=f"wl-corr-{run}-{lo}-{hi}")
                         for lo, hi in slices] if plan.params else []
        agg_futures = [client.submit(_block_aggregates, lake.location, seg, start, stop, keep, plan.arch, plan.zoo,
                                     key=f"wl-aggs-{run}-{seg.path}-{start}")
                       for seg, start, stop, keep in jobs] if plan.aggregates else []
        results = _gather(client, [*slice_futures, *agg_futures], progress)
    parts, aggregates = results[:len(slice_futures)], results[len(slice_futures):]
    table = assemble_correlations(plan, parts, aggregates)
    table = table.with_columns(snapshot=pl.lit(lake.snapshot, dtype=pl.Int64))
    params = {**plan.params_entry(), "engine": "dask local" if address == "local" else "dask"}
    version = _commit(Path(lake_root), "correlations", table, plan.zoo, params, lake.snapshot)
    return AnalysisReport("correlations", plan.zoo, table.height, version, time.perf_counter() - started,
                          notes=[plan.note, f"ran on Dask ({address}): {len(slice_futures)} parameter slices, "
                                            f"{len(agg_futures)} aggregate tasks (one per stored chunk)"],
                          n_models=plan.n_selected)


def _gather(client: Any, futures: Sequence[Any], progress: Callable[[int, int], Any] | None) -> list[Any]:
    """Results in the order of ``futures``, reporting each one as it finishes."""
    from distributed import as_completed

    index = {f.key: i for i, f in enumerate(futures)}
    out: list[Any] = [None] * len(futures)
    for done, future in enumerate(as_completed(futures), 1):
        out[index[future.key]] = future.result()
        if progress is not None:
            progress(done, len(futures))
    return out


def analyze_pair_metrics_dask(lake_root: Path | str, *, scenario: str, address: str = "local",
                              split: str | None = None, metrics: Sequence[str] | None = None,
                              per_layer: bool = False, include_slow: bool = False,
                              progress: Callable[[int, int], Any] | None = None) -> AnalysisReport:
    """:func:`weightlake.compute.pair_metrics.analyze_pair_metrics` on a Dask cluster.

    One task per block of :data:`~weightlake.compute.pair_metrics.PAIR_BLOCK` pairs: it reads
    the rows of the models its pairs name from the store (only the chunks they touch) and
    runs the same block function as the local run; the driver commits one table.
    """
    from weightlake.compute.pair_metrics import (
        PairMetricOptions,
        commit_pair_metrics,
        pair_block_metrics,
        pair_frame,
        pair_plan,
    )
    from weightlake.lake import open_lake

    started = time.perf_counter()
    options = PairMetricOptions(tuple(metrics) if metrics else None, per_layer, include_slow)
    lake = open_lake(lake_root)
    plan = pair_plan(lake, scenario, split, options)
    blocks = plan.blocks()
    run = run_token()
    with dask_client(address) as client:
        futures = [client.submit(pair_block_metrics, lake.location, plan.segments, plan.ids[b], plan.arch, options,
                                 zoo=plan.zoo, key=f"wl-pairs-{run}-{scenario}-{b.start}") for b in blocks]
        columns = _gather(client, futures, progress and (lambda d, t: progress(blocks[d - 1].stop, len(plan.ids))))
    parts = [pair_frame(plan, b, c) for b, c in zip(blocks, columns, strict=True)]
    report = commit_pair_metrics(lake_root, lake, plan, options, parts, started,
                                 "dask local" if address == "local" else "dask")
    report.notes.append(f"ran on Dask ({address}): {len(blocks)} tasks of up to {blocks[0].stop} pairs")
    return report


def _block_topology(location: Store, seg: Segment, start: int, stop: int, keep: np.ndarray, arch: Any,
                    layers: Sequence[str] | None, h1: bool, cubical: bool, zoo: str) -> pl.DataFrame:
    """One task: per-model, per-layer topology of the kept rows of one stored chunk, keyed by model id."""
    from weightlake.analysis.topology import zoo_topology

    frame = zoo_topology(_kept_rows(location, seg, start, stop, keep, zoo), arch, layers=layers, h1=h1,
                         cubical=cubical)
    ids = pl.Series(seg.first_id + start + keep.astype(np.int64))
    return frame.with_columns(model_id=ids[frame["row"]]).drop("row")


def analyze_topology_dask(lake_root: Path | str, *, address: str = "local", zoo: str | None = None,
                          layers: Sequence[str] | None = None, h1: bool = True, cubical: bool = True,
                          all_rows: bool = False, progress: Callable[[int, int], Any] | None = None) -> Any:
    """:func:`weightlake.compute.topology.analyze_topology` on a Dask cluster.

    One task per stored chunk runs the pure per-model function
    (:func:`~weightlake.analysis.topology.zoo_topology`) on its kept rows; the driver
    puts the Betti curves on one grid per layer over the whole zoo
    (:func:`~weightlake.analysis.topology_diagrams.add_betti_curves`, as the local run does)
    and commits table ``topology``.
    """
    from weightlake.analysis.topology_diagrams import add_betti_curves
    from weightlake.compute.topology import TopologyReport
    from weightlake.lake import open_lake

    started = time.perf_counter()
    lake = open_lake(lake_root)
    zoo = zoo or lake._only_zoo()
    meta = lake.models(zoo).sort("model_id").collect()
    if meta.height == 0:
        raise QueryError(f"zoo {zoo!r} has no models")
    ids = meta["model_id"].to_numpy()
    chosen, _, _, _, note = _select_models(ids, np.empty((len(ids), 0), np.float32), meta, all_rows)
    if all_rows:
        note = f"{ids.size} rows (all rows counted, copies included)"
    arch = lake.arch(zoo)
    jobs = chunk_jobs(lake.location, lake.manifest.zoo(zoo).segments, np.isin(lake.zoo_ids(zoo), chosen))
    run = run_token()
    with dask_client(address) as client:
        futures = [client.submit(_block_topology, lake.location, seg, start, stop, keep, arch, layers, h1, cubical, zoo,
                                 key=f"wl-topology-{run}-{seg.path}-{start}") for seg, start, stop, keep in jobs]
        sizes = np.cumsum([len(k) for *_, k in jobs])
        parts = _gather(client, futures, progress and (lambda d, t: progress(int(sizes[d - 1]), int(sizes[-1]))))
    frame, grids = add_betti_curves(pl.concat(parts))
    table = frame.with_columns(snapshot=pl.lit(lake.snapshot, dtype=pl.Int64))
    table = table.select("model_id", "layer", pl.exclude("model_id", "layer"))
    params = {"layers": list(dict.fromkeys(layers or arch.matrix_layer_names)), "h1": h1, "cubical": cubical,
              "all_rows": all_rows,
              "models": int(chosen.size), "distinct_note": note, "betti_grids": grids,
              "engine": "dask local" if address == "local" else "dask"}
    version = _commit(Path(lake_root), "topology", table, zoo, params, lake.snapshot)
    return TopologyReport("topology", zoo, table.height, int(chosen.size), version, time.perf_counter() - started,
                          [note, f"ran on Dask ({address}): {len(jobs)} tasks, one per stored chunk"])


def _group_task(location: Store, segments: Sequence[Segment], ids: np.ndarray, arch: Any, name: str,
                options: Mapping[str, Any], zoo: str) -> tuple[pl.DataFrame, dict, list]:
    """One task: one group's rows, diagrams and signed measures, reading only its models' chunks."""
    from weightlake.analysis.topology_groups import one_group

    rows = rows_by_id(location, segments, ids)
    refuse_non_finite(zoo, ids, rows)
    return one_group(rows, arch, name, **options)


def _distance_task(shared: tuple[list[str], list[dict], list[list]], degrees: Sequence[int],
                   first: Sequence[int]) -> pl.DataFrame:
    """One task: the distance rows of the group pairs ``(i, j > i)`` for ``i`` in ``first``."""
    from weightlake.analysis.topology_groups import group_distances

    names, diagrams, measures = shared
    return group_distances(names, diagrams, measures, degrees, first=first)


def distance_shares(n_groups: int, tasks: int) -> list[list[int]]:
    """Contiguous runs of first groups ``i`` with about the same number of pairs ``(i, j > i)`` each."""
    pairs = np.cumsum([n_groups - 1 - i for i in range(n_groups - 1)])
    if pairs.size == 0:
        return []
    cut = np.searchsorted(pairs, np.linspace(0, pairs[-1], tasks + 1)[1:-1], side="right")
    return [s.tolist() for s in np.split(np.arange(n_groups - 1), np.unique(cut)) if s.size]


def analyze_topology_groups_dask(lake_root: Path | str, *, address: str = "local", zoo: str | None = None,
                                 by: Sequence[str] = ("classes",), layer: str = "fc1", max_points: int = 100,
                                 resolution: int = 20, degrees: Sequence[int] = (0,), max_distance_groups: int = 120,
                                 all_rows: bool = False, seed: int = 0,
                                 progress: Callable[[int, int], Any] | None = None) -> Any:
    """:func:`weightlake.compute.topology.analyze_topology_groups` on a Dask cluster.

    The driver reads the metadata, labels the groups and sets the shared grid from the few
    rows it needs (:data:`~weightlake.analysis.topology_groups.SCALE_MODELS`); one task per
    group reads that group's rows from the store and runs
    :func:`~weightlake.analysis.topology_groups.one_group`; the distances between groups run
    in shares of about equal pair counts (:func:`distance_shares`, the diagrams broadcast to
    the workers once). Both tables are committed in one transaction, as the local run does;
    ``progress`` counts tasks.
    """
    from weightlake.analysis import topology_groups as tg
    from weightlake.analysis.topology_multi import subsample
    from weightlake.compute.topology import commit_topology_groups, select_model_meta
    from weightlake.lake import open_lake

    started = time.perf_counter()
    lake = open_lake(lake_root)
    zoo, ids, meta, note = select_model_meta(lake, zoo, all_rows)
    labels = np.asarray(tg.group_labels(meta, by))
    names = tg.group_names(labels.tolist())
    arch, segments = lake.arch(zoo), lake.manifest.zoo(zoo).segments
    tg.check_layer(rows_by_id(lake.location, segments, ids[:1]), arch, layer)
    tg.check_group_options(max_points, degrees)
    sample_ids = ids[subsample(ids, tg.SCALE_MODELS, seed)]
    sample = rows_by_id(lake.location, segments, sample_ids)
    refuse_non_finite(zoo, sample_ids, sample)
    grid = tg.group_grid(sample, arch, layer, resolution, seed)
    options = {"layer": layer, "grid": grid, "max_points": max_points, "degrees": tuple(degrees), "seed": seed}
    run, notes = run_token(), [note]
    with dask_client(address) as client:
        shares = distance_shares(len(names), 4 * max(1, sum(client.nthreads().values())))
        shares = shares if len(names) <= max_distance_groups else []
        total = len(names) + len(shares)
        futures = [client.submit(_group_task, lake.location, segments, ids[labels == name], arch, name, options, zoo,
                                 key=f"wl-group-{run}-{k}") for k, name in enumerate(names)]
        parts, diagrams, measures = zip(*_gather(client, futures, progress and (lambda d, t: progress(d, total))),
                                        strict=True)
        if len(names) > max_distance_groups:
            dist = tg.empty_distances()
            notes.append(tg.too_many_groups(len(names), max_distance_groups))
        else:
            [shared] = client.scatter([(names, list(diagrams), list(measures))], broadcast=True)
            futures = [client.submit(_distance_task, shared, tuple(degrees), first, key=f"wl-gdist-{run}-{first[0]}")
                       for first in shares]
            done = progress and (lambda d, t: progress(len(names) + d, total))
            dist = (pl.concat(_gather(client, futures, done)) if futures
                    else tg.group_distances(names, list(diagrams), list(measures), degrees))
    params = {"by": list(by), "layer": layer, "max_points": max_points, "resolution": resolution,
              "degrees": list(degrees), "grid": [g.tolist() for g in grid], "seed": seed, "all_rows": all_rows,
              "models": int(ids.size), "distinct_note": note, "engine": "dask local" if address == "local" else "dask"}
    report = commit_topology_groups(lake_root, lake, zoo, tg.group_table(parts), dist, params, notes, started)
    report.notes.append(f"ran on Dask ({address}): {len(names)} group tasks, {len(shares)} distance tasks")
    return report
