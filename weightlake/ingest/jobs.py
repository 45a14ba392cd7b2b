"""Declarative ingestion jobs: ``ingest/<job>.toml`` files run by ``weightlake ingest run``.

A job file holds one or more ``[[source]]`` tables::

    [[source]]
    kind = "csv"                 # or "checkpoints"
    path = "data/Merged zoo.csv" # relative paths resolve against the current directory
    zoo = "mnist-cnn-s"
    init = "kaiming_uniform"     # required for CSV and layout-A checkpoints
    arch = "cnn-s"               # optional, default cnn-s; or a JSON file describing one ("cnn-m.json")
    on_error = "abort"           # csv only: abort | skip
    epoch_bins = [11, 16, 21]    # checkpoints: default the trainer's recorded epochs, else the six bins;
                                 # csv: the epochs its epoch column may hold (default the six bins)
    dataset = "mnist"            # the zoo's image dataset (csv; checkpoints default to the trainer's record)
    allow_same_source = false    # accept weight vectors the zoo holds under another init

An optional ``[train]`` table runs the zoo trainer first (same keys as
``weightlake zoo train``), so a job can produce its own checkpoints; an optional
``[[export]]`` list writes CSV zoos after ingestion (``zoo``, ``where``, ``out``).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from weightlake.errors import IngestError

SOURCE_KINDS = ("csv", "checkpoints")
_SOURCE_KEYS = {"kind", "path", "zoo", "init", "arch", "on_error", "rejects", "layout", "workers", "epoch_bins",
                "dataset", "allow_same_source"}


@dataclass(frozen=True)
class Source:
    kind: str
    path: Path
    zoo: str
    init: str | None = None
    arch: str = "cnn-s"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Job:
    path: Path
    sources: tuple[Source, ...]
    train: dict[str, Any] | None = None
    exports: tuple[dict[str, Any], ...] = ()


def load_job(path: Path | str) -> Job:
    """Parse and validate a job file; errors name the file and the offending entry."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise IngestError("no such job file", path=str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise IngestError(f"not valid TOML: {exc}", path=str(path)) from exc
    sources = []
    for i, raw in enumerate(data.get("source", [])):
        where = f"[[source]] #{i + 1}"
        unknown = set(raw) - _SOURCE_KEYS
        if unknown:
            raise IngestError(f"{where} has unknown keys {sorted(unknown)}; known: {sorted(_SOURCE_KEYS)}", path=str(path))
        for key in ("kind", "path", "zoo"):
            if key not in raw:
                raise IngestError(f"{where} lacks {key!r}", path=str(path))
        if raw["kind"] not in SOURCE_KINDS:
            raise IngestError(f"{where}: kind {raw['kind']!r} is not one of {SOURCE_KINDS}", path=str(path))
        if raw["kind"] == "csv" and "init" not in raw:
            raise IngestError(f"{where}: a CSV zoo does not say its initialisation; add init = \"...\"", path=str(path))
        _check_arch(raw.get("arch", "cnn-s"), where, path)  # before any source commits
        options = {k: v for k, v in raw.items() if k not in ("kind", "path", "zoo", "init", "arch")}
        sources.append(Source(raw["kind"], Path(raw["path"]), raw["zoo"], raw.get("init"), raw.get("arch", "cnn-s"), options))
    if not sources and "train" not in data:
        raise IngestError("the job has no [[source]] entries", path=str(path))
    return Job(path, tuple(sources), data.get("train"), tuple(data.get("export", [])))


def _check_arch(spec: Any, where: str, path: Path) -> None:
    from weightlake.errors import WeightLakeError
    from weightlake.ingest.common import load_architecture

    try:
        load_architecture(str(spec))
    except WeightLakeError as exc:
        raise IngestError(f"{where}: arch {spec!r}: {exc}", path=str(path)) from exc
