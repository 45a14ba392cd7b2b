"""Empirical NTK spectra of a zoo's models -> table ``ntk``.

Each sampled model is rebuilt with :meth:`Lake.cnn`; its NTK is taken on ``K`` probe images
of its own classes (test split of the zoo's dataset, balanced, seeded), in the full form
(``[K*10, K*10]``, all ten logits: the trainer's loss covers all of them) and the trace form
(``[K, K]``).  With ``at_init`` the same architecture, activation and initialisation is also
drawn afresh (seeded from the model id) and measured: the zoo does not record a model's own
starting point, so ``state = 'init'`` rows describe its initialisation *distribution*, not
the exact draw it started from.

One row per model x state x form: ``lambda_max``, ``lambda_min``, ``kappa``, ``kappa_range``,
``lr_bound`` (``2 / lambda_max``), ``rank``, ``size``, ``trace``, ``singular``, ``rtol``.
``singular`` means *numerically* singular: some eigenvalue is at most ``rtol * lambda_max``
(``rtol`` = 1e-10, recorded per row).  With 2,464 parameters the full kernel is singular once
``K * 10 > 2464``; a dead network's kernel is singular at any ``K``, but so is the kernel of a
well-trained ReLU model with a few eigenvalues under the threshold (``rank`` a little below
``size``).  ``kappa`` is then infinite, ``lambda_min`` the smallest eigenvalue above the
threshold and ``kappa_range`` the condition number on the range (see
:class:`~weightlake.dynamics.ntk.NTKSpectrum`).
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

NTK_COLUMNS = ("lambda_max", "lambda_min", "kappa", "kappa_range", "lr_bound", "rank", "size", "trace", "singular",
               "rtol")


def model_ntk_rows(model: Any, x: Any) -> list[dict[str, Any]]:
    """Spectrum rows (full and trace form) of one module on probe images ``x``."""
    from weightlake.dynamics.ntk import empirical_ntk, ntk_spectrum

    full = empirical_ntk(model, x)
    trace = full.diagonal(dim1=2, dim2=3).sum(-1)
    return [{"form": form, **ntk_spectrum(theta).to_dict()} for form, theta in (("full", full), ("trace", trace))]


def _fresh_init(arch: Any, activation: str, init: str, seed: int) -> Any:
    import torch

    from weightlake.zoo.cnn import build_cnn
    from weightlake.zoo.train import init_weights

    torch.manual_seed(seed)
    return init_weights(build_cnn(arch, activation), init).eval()


def analyze_ntk(lake_root: Path | str, *, zoo: str | None = None, sample: int | None = 100, probe_images_k: int = 20,
                images: str | None = None, seed: int = 0, at_init: bool = True, all_rows: bool = False,
                model_ids: Sequence[int] | None = None, progress: Progress | None = None) -> RunReport:
    """NTK spectra of (a sample of) a zoo's models -> table ``ntk``.

    Parameters
    ----------
    lake_root
        The lake.
    zoo
        Zoo to analyse (default: the only zoo).
    sample
        Number of distinct models to draw (seeded); ``None``: all.
    probe_images_k
        Probe images per model, drawn from the test split over the model's classes.
    images
        The dataset the zoo was trained on (``"fashion-mnist"`` or an IDX folder); required
        unless the lake records it.
    seed
        Seeds the model sample, the probe images and the fresh initialisations.
    at_init
        Also measure a fresh draw of each model's initialisation (``state = 'init'``).
    all_rows
        Count every metadata row (fallback copies included) instead of distinct models.
    model_ids
        Analyse only these models (before sampling).
    progress
        Called as ``progress(done, total)`` after each model.

    Returns
    -------
    RunReport

    Raises
    ------
    DatasetNotRecordedError
        When ``images`` is not given and the zoo records no dataset.
    """
    from weightlake.lake import open_lake

    started = time.perf_counter()
    lake = open_lake(lake_root)
    zoo = zoo or lake._only_zoo()
    table, chosen, dataset = compute_ntk(lake, zoo, sample=sample, probe_images_k=probe_images_k, images=images,
                                         seed=seed, at_init=at_init, all_rows=all_rows, model_ids=model_ids,
                                         progress=progress)
    notes = dataset_notes(lake, zoo, dataset)
    params = {"images": dataset, "probe_images": probe_images_k, "seed": seed, "at_init": at_init,
              "probe_split": "test", "probe_classes": "own", "notes": notes, **chosen.selection}
    version = commit_tables(lake_root, {"ntk": table}, zoo, params, lake.snapshot)
    states = "trained and a fresh draw of its initialisation" if at_init else "trained"
    what = (f"{chosen.meta.height} models x ({states}) x (full [K*10, K*10] kernel over every logit, trace [K, K]) "
            f"on K={probe_images_k} {dataset} test images of each model's own classes")
    return RunReport("ntk", zoo, table.height, version, time.perf_counter() - started, note=chosen.note,
                     extra=[what, *notes])


def compute_ntk(lake: Any, zoo: str, *, sample: int | None = 100, probe_images_k: int = 20,
                images: str | None = None, seed: int = 0, at_init: bool = True, all_rows: bool = False,
                model_ids: Sequence[int] | None = None,
                progress: Progress | None = None) -> tuple[pl.DataFrame, ModelSample, str]:
    """The rows of table ``ntk`` for an open lake handle, without committing (see :func:`analyze_ntk`).

    Returns
    -------
    (table, sample, dataset)
        The table, the models it covers, and the dataset the probe images came from.
    """
    import torch

    from weightlake._util import torch_threads

    check_probe_count(probe_images_k)
    arch, rows = lake.arch(zoo), []  # an unknown zoo is refused as such, not as one without a recorded dataset
    dataset = zoo_dataset(lake, zoo, images)
    chosen = sample_models(lake, zoo, sample, seed, all_rows, model_ids)
    check_probe_supply(dataset, chosen.meta["classes"].to_list(), probe_images_k)
    with torch_threads(torch.get_num_threads()):
        for done, meta in enumerate(chosen.meta.iter_rows(named=True), start=1):
            x, _ = probe_images(dataset, meta["classes"], probe_images_k, seed)
            models = [("trained", lake.cnn(meta["model_id"]))]
            if at_init:
                models.append(("init", _fresh_init(arch, meta["activation"], meta["init"], seed * 1_000_003
                                                   + meta["model_id"])))
            for state, model in models:
                rows += [{"model_id": meta["model_id"], "state": state, "n_images": len(x), **r}
                         for r in model_ntk_rows(model, x)]
            if progress:
                progress(done, chosen.meta.height)
    table = pl.DataFrame(rows).with_columns(snapshot=pl.lit(lake.snapshot, dtype=pl.Int64))
    return table, chosen, dataset


def ntk_with_metadata(lake: Any, zoo: str | None = None, table: pl.DataFrame | None = None) -> pl.DataFrame:
    """The ``ntk`` table (or the given rows of one) joined with model metadata."""
    lf = lake.table("ntk") if table is None else table.lazy()
    if zoo and table is None:
        lf = lf.filter(pl.col("zoo") == zoo)
    meta = lake.models(zoo).select("model_id", "init", "activation", "epoch", "n_classes", "accuracy")
    return lf.join(meta, on="model_id", how="left").collect()


def kappa_predicts_accuracy(table: pl.DataFrame, by: tuple[str, ...] = ()) -> pl.DataFrame:
    """Spearman correlation of ``log10 kappa`` with accuracy, per state x form (x ``by``).

    Rows whose kernel is numerically singular (kappa infinite: an eigenvalue at most ``rtol *
    lambda_max``, column ``rtol``) are left out and counted (``n_numerically_singular``).  ``n``
    is the number of models in each correlation, ``p`` its two-sided p-value.  Each row is taken
    as independent: pass one checkpoint per training run, or the p-values are too small.
    """
    from scipy.stats import spearmanr

    out = []
    keys = ["state", "form", *by]
    for key, group in table.group_by(keys, maintain_order=True):
        finite = group.filter(pl.col("kappa").is_finite() & pl.col("accuracy").is_not_null())
        rho, p = (spearmanr(np.log10(finite["kappa"].to_numpy()), finite["accuracy"].to_numpy())
                  if finite.height >= 3 else (float("nan"), float("nan")))
        singular = group.filter(~pl.col("kappa").is_finite()).height
        out.append({**dict(zip(keys, key, strict=True)), "n": finite.height, "n_numerically_singular": singular,
                    "spearman_rho": float(rho), "p": float(p)})
    return pl.DataFrame(out).sort(keys)
