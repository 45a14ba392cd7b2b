"""Survey an experiments folder: every merging-model checkpoint and tracking CSV in it.

:func:`scan_experiments` walks a folder and reports, per file, what it is without keeping
any tensor in memory: each checkpoint is opened memory-mapped, its config inferred from
shapes (:func:`~weightlake.experiments.infer.infer_config`), and released before the next.
A file that cannot be read becomes an entry with an ``error`` string; it never stops the
scan.

What counts as what:

* checkpoint: a file ending in ``.pth`` or ``.pt``;
* tracking CSV: a ``.csv`` file inside a folder named ``Tracking`` (any case, at any
  depth below the root) or whose own name contains ``track`` (any case);
* folders whose name starts with ``.`` (``.ipynb_checkpoints``, ``.git``) are skipped.

The run folder name used for heads (:func:`~weightlake.experiments.infer.heads_from_run_dir`)
is the checkpoint's folder path relative to the root's parent, so the root's own name
counts too; a sidecar JSON is looked up with :func:`~weightlake.experiments.infer.find_sidecar`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from weightlake.errors import HeadsUnknownError, WeightLakeError
from weightlake.experiments.infer import (
    find_sidecar,
    infer_config,
    infer_shapes,
    load_checkpoint,
    parse_checkpoint_name,
)
from weightlake.experiments.merger import MergerConfig, count_parameters

CHECKPOINT_SUFFIXES: tuple[str, ...] = (".pth", ".pt")
TRACKING_FOLDER = "tracking"


@dataclass(frozen=True)
class CheckpointInfo:
    """One file found by :func:`scan_experiments`.

    ``kind`` is ``"checkpoint"`` or ``"tracking"``.  For checkpoints, ``name_fields`` holds
    :func:`~weightlake.experiments.infer.parse_checkpoint_name`'s ``loss``/``track``/``epoch``,
    ``saved_epoch`` the file's own ``epoch`` entry, and ``config``, ``heads_source``,
    ``provenance`` and ``n_params`` what inference found; all are None (or empty) for
    tracking CSVs and for files that failed, whose ``error`` says why.  ``hyperparameters``
    holds every value read from the file (shapes, gating, output head, dropout, and
    ``n_heads`` when known), also for a checkpoint refused because nothing records its head
    count (``heads_source`` ``"unknown"``, ``error`` saying how to give it).
    """

    path: str
    kind: str
    size_bytes: int
    name_fields: dict[str, Any] = field(default_factory=dict)
    saved_epoch: int | None = None
    config: MergerConfig | None = None
    heads_source: str | None = None
    provenance: dict[str, str] = field(default_factory=dict)
    n_params: int | None = None
    error: str | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the file was read without error."""
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """A flat JSON-ready dict (config nested as :meth:`MergerConfig.to_dict`)."""
        return {
            "path": self.path, "kind": self.kind, "size_bytes": self.size_bytes,
            **{f"name_{k}": v for k, v in self.name_fields.items()},
            "saved_epoch": self.saved_epoch,
            "config": self.config.to_dict() if self.config else None,
            "heads_source": self.heads_source, "provenance": dict(self.provenance),
            "n_params": self.n_params, "error": self.error, "hyperparameters": dict(self.hyperparameters),
        }


def scan_experiments(root: str | Path, heads: int | None = None, assume_heads: int | None = None) -> list[CheckpointInfo]:
    """Every checkpoint and tracking CSV under ``root``, sorted by path.

    Parameters
    ----------
    root
        The experiments folder.
    heads
        Number of attention heads to assume for every checkpoint (overrides sidecars,
        folder names; see :func:`~weightlake.experiments.infer.infer_config`).
    assume_heads
        Heads for checkpoints whose head count nothing records (marked ``"assumed"``);
        without it they are listed with an error saying how to give it.

    Returns
    -------
    list of CheckpointInfo
        One entry per file; failed checkpoints carry ``error`` instead of a config.

    Raises
    ------
    FileNotFoundError
        If ``root`` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"experiments folder {str(root)!r} does not exist or is not a folder")
    infos = []
    for path in _walk(root):
        if path.suffix.lower() in CHECKPOINT_SUFFIXES:
            infos.append(scan_checkpoint(path, root, heads, assume_heads))
        elif _is_tracking_csv(path, root):
            infos.append(CheckpointInfo(str(path), "tracking", path.stat().st_size))
    return infos


def scan_checkpoint(path: str | Path, root: str | Path | None = None, heads: int | None = None,
                    assume_heads: int | None = None) -> CheckpointInfo:
    """Describe one checkpoint file; errors become the entry's ``error`` string.

    The file's tensors are memory-mapped, only their shapes are read, and they are
    released before returning.
    """
    path = Path(path)
    root = Path(root) if root is not None else path.parent
    base = CheckpointInfo(str(path), "checkpoint", 0, parse_checkpoint_name(path))
    try:
        base = replace(base, size_bytes=path.stat().st_size)
        return _describe(path, base, _run_dir_name(path, root), heads, assume_heads)
    except (WeightLakeError, OSError) as exc:
        return replace(base, error=f"{type(exc).__name__}: {exc}")


def _describe(path: Path, base: CheckpointInfo, run_dir: str, heads: int | None,
              assume_heads: int | None) -> CheckpointInfo:
    state_dict, extras = load_checkpoint(path)
    epoch = extras.get("epoch")
    base = replace(base, saved_epoch=epoch if isinstance(epoch, int) else None)
    try:
        config, provenance = infer_config(state_dict, heads, find_sidecar(path), run_dir, assume_heads)
    except HeadsUnknownError as exc:
        values, provenance = infer_shapes(state_dict, find_sidecar(path))
        values["token_sizes"] = list(values["token_sizes"])
        return replace(base, hyperparameters=values, provenance={**provenance, "heads": "unknown"},
                       heads_source="unknown", error=f"{type(exc).__name__}: {exc}")
    finally:
        del state_dict, extras  # the only references: the file's mapping goes with them
    return replace(base, config=config, provenance=provenance, heads_source=provenance["heads"],
                   n_params=count_parameters(config), hyperparameters=config.to_dict())


def _walk(root: Path) -> list[Path]:
    found: list[Path] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(Path(folder) / name for name in sorted(files))
    return found


def _is_tracking_csv(path: Path, root: Path) -> bool:
    if path.suffix.lower() != ".csv":
        return False
    folders = [part.lower() for part in path.relative_to(root).parent.parts]
    return TRACKING_FOLDER in folders or "track" in path.stem.lower()


def _run_dir_name(path: Path, root: Path) -> str:
    anchor = root.resolve().parent
    try:
        return path.resolve().parent.relative_to(anchor).as_posix()
    except ValueError:
        return path.parent.name
