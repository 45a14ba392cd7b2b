"""What the lake-level dynamics runs share: the zoo's images, the model sample, the commit.

:func:`commit_tables` generalises :func:`weightlake.compute.analyses._commit` to several tables
in one transaction (a run that writes ``super_weights`` and ``super_weight_sparsity`` commits
both or neither); for one table it calls ``_commit`` itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from weightlake.compute.analyses import AnalysisReport
from weightlake.errors import QueryError, WeightLakeError

Progress = Callable[[int, int], None]


class DatasetNotRecordedError(WeightLakeError, ValueError):
    """The zoo does not record which images its models were trained on, and none were given."""


def zoo_dataset(lake: Any, zoo: str, images: str | None) -> str:
    """The image dataset of ``zoo``: ``images`` when given, else the one the lake records
    (trainer record, checkpoint ingest or ``ingest csv --dataset``).

    Raises
    ------
    DatasetNotRecordedError
        When neither is available (the tool does not guess: Fashion-MNIST and MNIST models
        look alike to it), or the recorded one cannot be loaded here.
    """
    from weightlake.errors import IngestError
    from weightlake.ingest.common import zoo_dataset as recorded_dataset
    from weightlake.zoo.idx import dataset_dir

    if images:
        return str(images)
    recorded = recorded_dataset(lake.manifest, zoo)
    if recorded is None:
        raise DatasetNotRecordedError(
            f"zoo {zoo!r} does not record the dataset its models were trained on; pass --images "
            "(e.g. --images fashion-mnist, or a folder of MNIST-style IDX files; record it at ingest with --dataset)")
    try:
        dataset_dir(recorded)
    except IngestError as exc:
        raise DatasetNotRecordedError(f"zoo {zoo!r} was trained on {recorded!r}, which is not available here "
                                      f"({exc}); pass --images FOLDER with its IDX files") from exc
    return recorded


def dataset_notes(lake: Any, zoo: str, dataset: str) -> list[str]:
    """A note when ``dataset`` (given explicitly) is not the one ``zoo`` records, else nothing.

    The run goes ahead (the user chose the images), but its report and table params say so:
    a model scored on another dataset's images is not measured on what it learnt.
    """
    from weightlake.ingest.common import zoo_dataset as recorded_dataset
    from weightlake.zoo.idx import dataset_id

    recorded = recorded_dataset(lake.manifest, zoo)
    if recorded is None or dataset_id(dataset) == recorded:
        return []
    return [f"images {dataset!r} are not zoo {zoo!r}'s own dataset {recorded!r} (given explicitly): "
            "probe images come from another dataset"]


@dataclass
class RunReport(AnalysisReport):
    """An :class:`~weightlake.compute.analyses.AnalysisReport` that also says which models were counted."""

    note: str = ""
    extra: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join([super().__str__(), *(f"   {line}" for line in [self.note, *self.extra] if line)])


@dataclass(frozen=True)
class ModelSample:
    """The models a run looks at, with their metadata rows (aligned), and how they were chosen."""

    meta: pl.DataFrame
    n_rows: int
    note: str
    selection: dict[str, Any]


def sample_models(lake: Any, zoo: str, sample: int | None, seed: int = 0, all_rows: bool = False,
                  ids: Sequence[int] | None = None) -> ModelSample:
    """Distinct models of ``zoo`` (one row per weight vector unless ``all_rows``), restricted to
    ``ids`` when given, optionally a seeded random ``sample`` of them, sorted by ``model_id``.

    Raises
    ------
    QueryError
        When ``sample`` is below 1, no model is left, or a chosen one holds a NaN or an infinity (its kernel or
        ablation scan would fail in a decomposition or give NaN): the models are named.
    """
    from weightlake.analysis.distinct import distinct_models, runs_note
    from weightlake.compute.analyses import refuse_non_finite
    from weightlake.storage.budget import block_rows

    if sample is not None and int(sample) < 1:
        raise QueryError(f"sample must be a positive number of models (or None for all), got {sample!r}")
    meta = lake.models(zoo).collect().sort("model_id")
    n_rows = meta.height
    if all_rows:
        note, selection = f"{n_rows} rows (every row counted, --all-rows)", {"rows": n_rows, "all_rows": True}
    else:
        chosen = distinct_models(meta)
        meta, note, selection = meta.filter(pl.Series(chosen.keep)), chosen.note(runs=False), chosen.to_dict()
    if ids is not None:
        meta = meta.filter(pl.col("model_id").is_in([int(i) for i in ids]))
        note += f"; {meta.height} of the {len(ids)} ids asked for"
    if sample is not None and sample < meta.height:
        pick = np.sort(np.random.default_rng(seed).choice(meta.height, size=int(sample), replace=False))
        meta = meta[pick.tolist()]
        note += f"; a seeded sample of {sample} (seed {seed})"
    if meta.height == 0:
        raise QueryError(f"zoo {zoo!r} has no models to analyse")
    note += runs_note(meta)  # of the models the run uses, after the ids and the sample
    chosen_ids = meta["model_id"].to_numpy()
    step = block_rows(lake.arch(zoo).n_params, lake.memory)
    for start in range(0, len(chosen_ids), step):  # checked up front, not after the models before it ran
        refuse_non_finite(zoo, chosen_ids[start:start + step], lake.weights_numpy(chosen_ids[start:start + step]))
    return ModelSample(meta, n_rows, note, {**selection, "sample": sample, "sample_seed": seed, "n": meta.height})


def probe_images(dataset: str, classes: Any, n: int, seed: int = 0, split: str = "test") -> tuple[Any, Any]:
    """``n`` images of ``classes`` from ``split`` (float ``[n, 1, 28, 28]`` in [0, 1], int64 labels),
    balanced over the classes and drawn with ``seed`` (the same images for the same classes).

    Raises
    ------
    QueryError
        When ``n`` is below 1 (a kernel or an accuracy over no images has no value).
    """
    import torch

    check_probe_count(n)

    from weightlake.zoo.idx import load_dataset, select_classes
    from weightlake.zoo.train import to_tensors

    classes = sorted(int(c) for c in classes)
    images, labels = load_dataset(dataset, split)  # type: ignore[arg-type]
    per_class = -(-int(n) // len(classes))
    x, y = to_tensors(*select_classes(images, labels, classes, per_class=per_class, seed=seed))
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))[:n]
    return x[order], y[order]


def check_probe_supply(dataset: str, class_sets: Any, n: int, split: str = "test") -> None:
    """Refuse ``n`` probe images where a model's classes hold fewer in ``split`` (before any model runs).

    Was: :func:`probe_images` returned what there was (1,000 images of one Fashion-MNIST class
    for ``--probe-images 100000``) while the report and the params said 100000.

    Raises
    ------
    QueryError
        Naming the class set, the images it has and the count asked.
    """
    from weightlake.zoo.idx import load_dataset

    _, labels = load_dataset(dataset, split)  # type: ignore[arg-type]
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=1)
    worst: tuple[int, list[int]] | None = None
    for classes in {tuple(sorted(int(c) for c in cs)) for cs in class_sets if cs}:
        per_class = -(-int(n) // len(classes))
        have = [int(counts[c]) if c < len(counts) else 0 for c in classes]
        if sum(min(h, per_class) for h in have) < n and (worst is None or sum(have) < worst[0]):
            worst = (sum(have), list(classes))
    if worst is not None:
        raise QueryError(f"--probe-images {n}: the {split} split of {dataset} holds {worst[0]:,} images of classes "
                         f"{worst[1]} (a model's classes; drawn balanced over them), fewer than asked; ask for at "
                         f"most {worst[0]:,}, or fewer where classes differ in size")


def check_probe_count(n: Any) -> None:
    """Refuse a probe-image count below 1 (called before any model is loaded)."""
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise QueryError(f"probe images must be a positive number of images per model, got {n!r}")


def commit_tables(lake_root: Path | str, tables: Mapping[str, pl.DataFrame], zoo: str, params: dict[str, Any],
                  snapshot: int) -> int:
    """Commit derived tables (partitioned by zoo, ``params`` recorded) in one transaction."""
    from weightlake.compute.analyses import _commit, check_inputs_unchanged
    from weightlake.storage.transaction import transaction

    if len(tables) == 1:
        name, df = next(iter(tables.items()))
        return _commit(Path(lake_root), name, df, zoo, params, snapshot)
    with transaction(Path(lake_root)) as tx:
        check_inputs_unchanged(tx, snapshot, zoo)
        for name, df in tables.items():
            tx.put_table(name, df.with_columns(zoo=pl.lit(zoo)), partition_by=("zoo",),
                         properties={"partition_by": ["zoo"], f"params:{zoo}": json.dumps(params)})
        summary = ", ".join(f"{name}: {df.height} rows" for name, df in tables.items())
        return tx.commit({"op": f"analyze-{next(iter(tables))}", "zoo": zoo,
                          "summary": f"{summary} for {zoo} from snapshot {snapshot}"}).version
