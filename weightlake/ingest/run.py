"""Run a job file: optional training, then each source, then each export."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from weightlake.arch import get_architecture
from weightlake.ingest.jobs import load_job


def run_job(job_path: Path | str, lake_dir: Path | str, *, echo: Callable[[str], Any] = print) -> Iterator[str]:
    """Run ``job_path`` against the lake at ``lake_dir``; yields report lines as it goes."""
    job = load_job(job_path)
    if job.train:
        yield from _train(job.train)
    for source in job.sources:
        arch = get_architecture(source.arch)
        if source.kind == "csv":
            from weightlake.ingest.csv_zoo import ingest_csv

            report = ingest_csv(lake_dir, source.path, zoo=source.zoo, init=str(source.init), arch=arch,
                                on_error=source.options.get("on_error", "abort"),
                                rejects_path=source.options.get("rejects"))
        else:
            from weightlake.ingest.checkpoints import ingest_checkpoints

            report = ingest_checkpoints(lake_dir, source.path, zoo=source.zoo, init=source.init, arch=arch,
                                        workers=int(source.options.get("workers", 2)),
                                        layout=source.options.get("layout"),
                                        bins=source.options.get("epoch_bins"),  # None: the trainer's record
                                        rejects_path=source.options.get("rejects"))
        yield from report.lines()
    if job.exports:
        from weightlake.ingest.csv_zoo import export_csv
        from weightlake.lake import open_lake

        lake = open_lake(lake_dir)
        for ex in job.exports:
            n = export_csv(lake, ex["out"], zoo=ex.get("zoo"), where=ex.get("where"))
            yield f"exported {n} models to {ex['out']}"


_TRAIN_KEYS = {"dataset", "digits", "sizes", "activations", "inits", "out", "layout", "subsample", "max_epochs",
               "checkpoint_epochs", "min_accuracy", "lr", "batch_size", "seed", "workers"}


def _train(options: dict[str, Any]) -> Iterator[str]:
    """The ``[train]`` table of a job: same names as ``weightlake zoo train`` options (with underscores)."""
    from weightlake.errors import IngestError
    from weightlake.zoo.train import parse_int_list, parse_subsets, train_zoo

    unknown = set(options) - _TRAIN_KEYS
    if unknown or "out" not in options:
        raise IngestError(f"[train] needs 'out' and takes only {sorted(_TRAIN_KEYS)}; got unknown {sorted(unknown)}")

    def listed(key: str, default: str) -> list[str]:
        value = options.get(key, default)
        return [v.strip() for v in value.split(",")] if isinstance(value, str) else list(value)

    def ints(key: str, default: str) -> list[int]:
        value = options.get(key, default)
        return parse_int_list(value) if isinstance(value, str) else [int(v) for v in value]

    subsets = parse_subsets(ints("digits", "0-9"), ints("sizes", "2-9"))
    report = train_zoo(options.get("dataset", "fashion-mnist"), options["out"], subsets,
                       listed("activations", "relu"), listed("inits", "kaiming_uniform"),
                       layout=options.get("layout", "b"), epochs_max=int(options.get("max_epochs", 40)),
                       subsample=options.get("subsample"), seed=int(options.get("seed", 0)),
                       workers=int(options.get("workers", 2)), lr=float(options.get("lr", 0.05)),
                       batch_size=int(options.get("batch_size", 90)),
                       checkpoint_epochs=ints("checkpoint_epochs", "") if "checkpoint_epochs" in options else None,
                       min_accuracy=float(options.get("min_accuracy", 60.0)))
    yield (f"trained {report.trained} models, skipped {report.skipped} already finished "
           f"({report.seconds:.0f} s) into {options['out']}")
