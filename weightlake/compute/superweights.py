"""Super weights of a zoo's models -> tables ``super_weights`` and ``super_weight_sparsity``.

Every single weight of every layer of each sampled model is ablated (exhaustively: 2,400
weights for CNN-s, see :func:`~weightlake.dynamics.superweights.ablation_scan`) on ``N`` probe
images of the model's classes (test split); the ``top`` most harmful of each layer become rows
of ``super_weights``:

``model_id, layer, rank`` (1 = most harmful in the layer), ``model_rank`` (rank among all of the
model's weights), ``entry`` (index in the layer's weight, row-major), ``flat_index`` (index in the
model's flat vector), ``accuracy``, ``accuracy_drop`` (percentage points), ``loss_increase``,
``weight``, ``abs_weight``, ``magnitude_rank`` (1 = largest ``|w|`` in the layer), ``layer_size``,
and the activation-spike proxy of the layer: ``proxy_flat_index``, ``proxy_rank`` (where the
proxy's weight falls in the layer's harm ranking), ``max_in``, ``max_out``.  ``costs_accuracy``
says whether zeroing the weight loses any probe image at all (``accuracy_drop > 0``): where no
weight of a layer does (an untrained or very redundant model), its rows are ranked by loss
increase alone and are the least harmless weights, not super weights; the report counts the
models whose most harmful weight costs no accuracy.

``super_weight_sparsity`` holds the enforced-sparsity comparison per model: ``k, method``
(``magnitude`` / ``super`` / ``random``), ``accuracy``, ``base_accuracy``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from weightlake.compute._common import (
    ModelSample,
    Progress,
    RunReport,
    check_probe_count,
    check_probe_supply,
    commit_tables,
    dataset_notes,
    probe_images,
    sample_models,
    zoo_dataset,
)


def model_super_weights(model: Any, x: Any, y: Any, top: int = 3, ks: Sequence[int] = (1, 2, 5, 10, 20, 50),
                        seed: int = 0) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows of both tables (without ``model_id``) for one zoo CNN on probe images ``(x, y)``."""
    from weightlake.dynamics.superweights import activation_spikes, enforced_sparsity, magnitude_rank, scan_model

    scans = scan_model(model, x, y)
    spikes = activation_spikes(model, x)
    harm = sorted(((-s.drop[j], -s.loss[j], name, j) for name, s in scans.items() for j in range(len(s.weight))))
    model_rank = {(name, j): r for r, (_, _, name, j) in enumerate(harm, start=1)}
    rows = []
    for name, scan in scans.items():
        layer, order = model.arch.layer(name), scan.ranking()
        position = np.empty(len(order), dtype=np.int64)
        position[order] = np.arange(1, len(order) + 1)
        mags, spike = magnitude_rank(scan.weight), spikes[name]
        for rank, j in enumerate(order[:top], start=1):
            rows.append({"layer": name, "rank": rank, "model_rank": model_rank[(name, int(j))], "entry": int(j),
                         "flat_index": layer.start + int(j), "accuracy": float(scan.accuracy[j]),
                         "accuracy_drop": float(scan.drop[j]), "costs_accuracy": bool(scan.drop[j] > 0),
                         "loss_increase": float(scan.loss[j] - scan.base_loss),
                         "weight": float(scan.weight[j]), "abs_weight": float(abs(scan.weight[j])),
                         "magnitude_rank": int(mags[j]), "layer_size": len(scan.weight),
                         "base_accuracy": scan.base_accuracy,
                         "proxy_flat_index": layer.start + int(spike["proxy_index"]),
                         "proxy_rank": int(position[int(spike["proxy_index"])]),
                         "max_in": float(spike["max_in"]), "max_out": float(spike["max_out"])})
    base = next(iter(scans.values())).base_accuracy
    sparsity = [{**r, "base_accuracy": base} for r in enforced_sparsity(model, x, y, scans, ks=ks, seed=seed)]
    return rows, sparsity


def check_scan_counts(arch: Any, top: int, ks: Sequence[int]) -> None:
    """Refuse a ``top`` below 1 and ``ks`` that are empty or outside ``1 .. weights scanned``.

    Checked before any model is loaded: ``top=0`` would commit a table without columns, a
    negative ``top`` would keep all but the last rows, and a ``k`` beyond the weights scanned
    cannot be drawn at random.
    """
    from weightlake.errors import QueryError

    if not isinstance(top, (int, np.integer)) or isinstance(top, bool) or top < 1:
        raise QueryError(f"top must be a positive number of weights per layer, got {top!r}")
    n_weights = sum(arch.layer(name).weight_size for name in arch.layer_names)
    bad = [k for k in ks if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or not 1 <= k <= n_weights]
    if not len(ks) or bad:
        raise QueryError(f"ks must be numbers of weights between 1 and {n_weights} (the weights scanned), "
                         f"got {list(ks)!r}")


def analyze_super_weights(lake_root: Path | str, *, zoo: str | None = None, sample: int | None = 20,
                          probe_images_n: int = 500, images: str | None = None, top: int = 3,
                          ks: Sequence[int] = (1, 2, 5, 10, 20, 50), seed: int = 0, all_rows: bool = False,
                          model_ids: Sequence[int] | None = None, progress: Progress | None = None) -> RunReport:
    """Exhaustive single-weight ablation of (a sample of) a zoo's models -> two tables.

    Parameters
    ----------
    lake_root
        The lake.
    zoo
        Zoo to analyse (default: the only zoo).
    sample
        Distinct models to draw (seeded); ``None``: all.
    probe_images_n
        Probe images per model (test split of its own classes, balanced).
    images
        The zoo's dataset (``"fashion-mnist"`` or an IDX folder); required unless recorded.
    top
        Rows kept per model x layer (the most harmful weights).
    ks
        Numbers of weights zeroed in the enforced-sparsity comparison.
    seed
        Seeds the sample, the probe images and the random ablations.
    all_rows
        Count every metadata row instead of distinct models.
    model_ids
        Analyse only these models (before sampling).
    progress
        Called as ``progress(done, total)`` after each model.

    Returns
    -------
    RunReport
    """
    from weightlake.lake import open_lake

    started = time.perf_counter()
    lake = open_lake(lake_root)
    zoo = zoo or lake._only_zoo()
    tables, chosen, dataset = compute_super_weights(lake, zoo, sample=sample, probe_images_n=probe_images_n,
                                                    images=images, top=top, ks=ks, seed=seed, all_rows=all_rows,
                                                    model_ids=model_ids, progress=progress)
    notes = [*dataset_notes(lake, zoo, dataset), *probe_accuracy_notes(tables["super_weight_sparsity"], chosen.meta),
             *none_stand_out(tables["super_weights"], probe_images_n)]
    params = {"images": dataset, "probe_images": probe_images_n, "top": top, "ks": list(ks), "seed": seed,
              "probe_split": "test", "probe_classes": "own", "notes": notes, **chosen.selection}
    version = commit_tables(lake_root, tables, zoo, params, lake.snapshot)
    return RunReport("super_weights", zoo, tables["super_weights"].height, version, time.perf_counter() - started,
                     note=chosen.note, extra=[*notes, f"table 'super_weight_sparsity': "
                                              f"{tables['super_weight_sparsity'].height} rows"])


GAP = 25.0
"""Percentage points between a model's accuracy on the probe images and the accuracy the zoo records
past which the report says the two disagree."""


def probe_accuracy_notes(sparsity: pl.DataFrame, meta: pl.DataFrame) -> list[str]:
    """A note when the models score far from their recorded accuracy on the probe images (else nothing).

    Was: three models at 0% on their own probe images (65-80% recorded) were reported as "no
    single weight costs any probe image ... an untrained or very redundant model", which hid
    that the images were likely not the ones the zoo was trained on (or the weights not those).
    """
    if not sparsity.height or "accuracy" not in meta.columns:
        return []
    base = sparsity.group_by("model_id").agg(pl.col("base_accuracy").first())
    both = base.join(meta.select("model_id", "accuracy"), on="model_id").drop_nulls()
    far = both.filter((pl.col("base_accuracy") - pl.col("accuracy")).abs() > GAP)
    if not far.height:
        return []
    return [f"{far.height} of {both.height} models score far from their recorded accuracy on the probe images "
            f"(mean {far['base_accuracy'].mean():.1f}% against {far['accuracy'].mean():.1f}% recorded; column "
            "base_accuracy): check that --images is the dataset the zoo was trained on; ablations of a model that "
            "already fails its probe images say little"]


def none_stand_out(table: pl.DataFrame, probe_images_n: int) -> list[str]:
    """A note when some models have no weight whose zeroing costs a probe image (else nothing)."""
    top1 = table.filter(pl.col("model_rank") == 1)
    quiet = int((~top1["costs_accuracy"]).sum())
    if not quiet:
        return []
    return [f"{quiet} of {top1.height} models have no single weight whose zeroing costs any of the "
            f"{probe_images_n} probe images (costs_accuracy false): their rows rank weights by loss increase "
            "alone, none stands out as a super weight"]


def compute_super_weights(lake: Any, zoo: str, *, sample: int | None = 20, probe_images_n: int = 500,
                          images: str | None = None, top: int = 3, ks: Sequence[int] = (1, 2, 5, 10, 20, 50),
                          seed: int = 0, all_rows: bool = False, model_ids: Sequence[int] | None = None,
                          progress: Progress | None = None) -> tuple[dict[str, pl.DataFrame], ModelSample, str]:
    """Both tables' rows for an open lake handle, without committing (see :func:`analyze_super_weights`).

    Returns
    -------
    (tables, sample, dataset)
        ``{"super_weights": ..., "super_weight_sparsity": ...}``, the models covered, the dataset.
    """
    import torch

    check_probe_count(probe_images_n)
    check_scan_counts(lake.arch(zoo), top, ks)
    dataset = zoo_dataset(lake, zoo, images)
    chosen = sample_models(lake, zoo, sample, seed, all_rows, model_ids)
    check_probe_supply(dataset, chosen.meta["classes"].to_list(), probe_images_n)
    weights, sparsity = [], []
    with torch.no_grad():
        for done, meta in enumerate(chosen.meta.iter_rows(named=True), start=1):
            x, y = probe_images(dataset, meta["classes"], probe_images_n, seed)
            rows, sparse = model_super_weights(lake.cnn(meta["model_id"]), x, y, top=top, ks=ks, seed=seed)
            weights += [{"model_id": meta["model_id"], **r} for r in rows]
            sparsity += [{"model_id": meta["model_id"], **r} for r in sparse]
            if progress:
                progress(done, chosen.meta.height)
    snap = pl.lit(lake.snapshot, dtype=pl.Int64)
    tables = {"super_weights": pl.DataFrame(weights).with_columns(snapshot=snap),
              "super_weight_sparsity": pl.DataFrame(sparsity).with_columns(snapshot=snap)}
    return tables, chosen, dataset
