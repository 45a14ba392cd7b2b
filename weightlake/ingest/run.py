"""Run a job file: optional training, then each source, then each export."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from weightlake.errors import IngestError, WeightLakeError
from weightlake.ingest.common import load_architecture
from weightlake.ingest.jobs import load_job


class _Quiet:
    """The progress of a step nobody watches."""

    def update(self, n: int = 1) -> None: ...
    def advance_to(self, done: int) -> None: ...
    def callback(self, done: int, total: int | None = None, *_: Any) -> None: ...


def _quiet(label: str, total: int | None, unit: str) -> contextlib.AbstractContextManager[Any]:
    return contextlib.nullcontext(_Quiet())


def run_job(job_path: Path | str, lake_dir: Path | str, *, echo: Callable[[str], Any] = print,
            progress: Callable[[str, int | None, str], contextlib.AbstractContextManager[Any]] | None = None
            ) -> Iterator[str]:
    """Run ``job_path`` against the lake at ``lake_dir``; yields report lines as it goes.

    Each source is committed on its own.  When one fails, the error says which, which sources
    before it are committed (with their snapshots) and what did not run.

    ``progress(label, total, unit)`` makes the context manager each long step reports to
    (``update``/``advance_to``/``callback``, as :class:`weightlake.cli.progress.Progress`).
    """
    step = progress or _quiet
    job = load_job(job_path)
    if job.train:
        yield from _train(job.train, step)
    done: list[str] = []  # "path (snapshot N)" of each source committed so far
    for k, source in enumerate(job.sources, 1):
        try:
            report = _ingest_source(source, lake_dir, step)
        except WeightLakeError as exc:
            kept = f"committed before it: {', '.join(done)}" if done else "nothing of the job is committed"
            left = len(job.sources) - k
            rest = ", ".join(p for p in (f"{left} later source{'s' * (left > 1)}" if left else "",
                                        f"{len(job.exports)} export{'s' * (len(job.exports) > 1)}" if job.exports else "") if p)
            raise IngestError(f"{exc} [job stopped at source {k} of {len(job.sources)}; {kept}"
                              + (f"; {rest} not run" if rest else "") + "]") from exc
        if report.snapshot is not None:
            done.append(f"{source.path.name} (snapshot {report.snapshot})")
        yield from report.lines()
    if job.exports:
        from weightlake.ingest.csv_zoo import export_csv
        from weightlake.lake import open_lake

        lake = open_lake(lake_dir)
        for ex in job.exports:
            with step(f"export csv {Path(ex['out']).name}", None, "models") as bar:
                n = export_csv(lake, ex["out"], zoo=ex.get("zoo"), where=ex.get("where"), progress=bar.update)
            yield f"exported {n} models to {ex['out']}"


def _ingest_source(source: Any, lake_dir: Path | str, step: Callable[..., Any]) -> Any:
    """One ``[[source]]`` of a job, committed alone; returns its ``IngestReport``."""
    arch = load_architecture(source.arch)
    opts = source.options
    if source.kind == "csv":
        from weightlake.ingest.csv_zoo import ingest_csv

        size = source.path.stat().st_size if source.path.is_file() else None
        with step(f"ingest csv {source.path.name}", size, "bytes") as bar:
            return ingest_csv(lake_dir, source.path, zoo=source.zoo, init=str(source.init), arch=arch,
                              on_error=opts.get("on_error", "abort"), rejects_path=opts.get("rejects"),
                              progress=bar.advance_to, dataset=opts.get("dataset"),
                              allow_same_source=bool(opts.get("allow_same_source", False)),
                              epoch_bins=opts.get("epoch_bins"))
    from weightlake.ingest.checkpoints import ingest_checkpoints

    with step(f"ingest checkpoints {source.path.name}", None, "files") as bar:
        return ingest_checkpoints(lake_dir, source.path, zoo=source.zoo, init=source.init, arch=arch,
                                  workers=int(opts.get("workers", 2)), layout=opts.get("layout"),
                                  bins=opts.get("epoch_bins"),  # None: the trainer's record
                                  rejects_path=opts.get("rejects"), progress=bar.callback,
                                  dataset=opts.get("dataset"),
                                  allow_same_source=bool(opts.get("allow_same_source", False)))


_TRAIN_KEYS = {"dataset", "digits", "sizes", "activations", "inits", "out", "layout", "subsample", "max_epochs",
               "checkpoint_epochs", "min_accuracy", "lr", "batch_size", "seed", "workers"}


def _train(options: dict[str, Any], step: Callable[[str, int | None, str], Any]) -> Iterator[str]:
    """The ``[train]`` table of a job: same names as ``weightlake zoo train`` options (with underscores)."""
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
    with step("zoo train", None, "models") as bar:
        report = train_zoo(options.get("dataset", "fashion-mnist"), options["out"], subsets,
                           listed("activations", "relu"), listed("inits", "kaiming_uniform"),
                           layout=options.get("layout", "b"), epochs_max=int(options.get("max_epochs", 40)),
                           subsample=options.get("subsample"), seed=int(options.get("seed", 0)),
                           workers=int(options.get("workers", 2)), lr=float(options.get("lr", 0.05)),
                           batch_size=int(options.get("batch_size", 90)),
                           checkpoint_epochs=ints("checkpoint_epochs", "") if "checkpoint_epochs" in options else None,
                           min_accuracy=float(options.get("min_accuracy", 60.0)), progress=bar.callback)
    yield (f"trained {report.trained} models, skipped {report.skipped} already finished "
           f"({report.seconds:.0f} s) into {options['out']}")
