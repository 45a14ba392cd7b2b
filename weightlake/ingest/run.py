"""Run a job file: optional training, then each source, then each export."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

from weightlake.arch import get_architecture
from weightlake.ingest.jobs import load_job


def run_job(job_path: Path | str, lake_dir: Path | str, *, echo: Callable[[str], Any] = print) -> Iterator[str]:
    """Run ``job_path`` against the lake at ``lake_dir``; yields report lines as it goes."""
    job = load_job(job_path)
    if job.train:
        from weightlake.zoo.train import train_from_options

        yield from train_from_options(job.train, echo=echo)
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
                                        workers=int(source.options.get("workers", 2)))
        yield from report.lines()
    if job.exports:
        from weightlake.ingest.csv_zoo import export_csv
        from weightlake.lake import open_lake

        lake = open_lake(lake_dir)
        for ex in job.exports:
            n = export_csv(lake, ex["out"], zoo=ex.get("zoo"), where=ex.get("where"))
            yield f"exported {n} models to {ex['out']}"
