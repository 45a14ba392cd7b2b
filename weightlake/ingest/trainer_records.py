"""What the zoo trainer recorded about a checkpoint tree, read at ingest.

:mod:`weightlake.zoo.train` writes ``weightlake-train.json`` into every model folder it
finishes: the recipe (which epochs it was told to checkpoint) and the image dataset.
Checkpoint ingest takes its epoch bins (:func:`trainer_bins`) and the zoo's dataset
(:func:`trainer_dataset`) from there instead of assuming the CSV zoo's; the records are
read as JSON, so ingest imports neither the trainer nor torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from weightlake.arch import EPOCH_BINS
from weightlake.errors import IngestError

if TYPE_CHECKING:
    from weightlake.ingest.checkpoints import CheckpointBatch, CheckpointFile

TRAINER_SIDECAR = "weightlake-train.json"
"""The completion record :mod:`weightlake.zoo.train` writes in each model folder (read here as JSON,
so that ingest does not import the trainer and torch)."""
TRAINER_FORMAT = "weightlake-train/1"


def trainer_records(files: Sequence[CheckpointFile]) -> list[dict[str, Any]]:
    """The trainer's ``weightlake-train.json`` of every model folder the files are in (none for foreign trees)."""
    import json

    out = []
    for folder in sorted({f.path.parent for f in files if f.reject is None}):
        try:
            data = json.loads((folder / TRAINER_SIDECAR).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("format") == TRAINER_FORMAT:
            out.append(data)
    return out


def trainer_bins(records: Sequence[Mapping[str, Any]]) -> tuple[int, ...] | None:
    """The epochs the trainer was told to checkpoint, over every record (None if no record says).

    A recipe without ``checkpoint_epochs`` used the spec rule (``epoch >= 9 and epoch % 5
    == 1``) below its ``epochs_max``.
    """
    epochs: set[int] = set()
    for record in records:
        recipe = (record.get("config") or {}).get("recipe") or {}
        planned = recipe.get("checkpoint_epochs")
        if planned is None and isinstance(recipe.get("epochs_max"), int):
            planned = [e for e in range(recipe["epochs_max"]) if e >= 9 and e % 5 == 1]
        epochs.update(int(e) for e in planned or ())
    return tuple(sorted(epochs)) or None


def trainer_dataset(records: Sequence[Mapping[str, Any]], given: str | None = None) -> str | None:
    """The image dataset of the trainer's records (or ``given``), as a dataset id.

    Raises
    ------
    IngestError
        If the records name several datasets, or one other than ``given``.
    """
    from weightlake.zoo.idx import dataset_id

    found = sorted({str(r.get("dataset") or dataset_id((r.get("config") or {}).get("dataset", "")))
                    for r in records} - {""})
    if len(found) > 1:
        raise IngestError(f"the trainer's records name several image datasets {found}: ingest each into its own zoo")
    if given is not None and found and found[0] != dataset_id(given):
        raise IngestError(f"--dataset {given!r} contradicts the trainer's record {found[0]!r}")
    return dataset_id(given) if given is not None else (found[0] if found else None)


def resolve_bins(bins: Sequence[int] | None, records: Sequence[Mapping[str, Any]]) -> tuple[tuple[int, ...], str]:
    if bins is not None:
        return tuple(sorted({int(b) for b in bins})), "given"
    recorded = trainer_bins(records)
    if recorded is not None:
        return recorded, f"the trainer's {TRAINER_SIDECAR} ({len(records)} model folders)"
    return tuple(EPOCH_BINS), "default (the CSV zoo's bins; no trainer record found)"


def nothing_filled(files: Sequence[CheckpointFile], batch: CheckpointBatch, bins: Sequence[int],
                    bins_from: str) -> IngestError:
    where = str(files[0].root if files else "")
    if batch.rejects and not batch.summary.files_read:
        # every file was refused: other bins would fill nothing either, so the refusal is the answer
        path, reason = batch.rejects[0]
        other = "does not match architecture" in reason or "expects" in reason and "architecture" in reason
        hint = "; checkpoints of another architecture need --arch FILE.json describing it" if other else ""
        return IngestError(f"no checkpoint could be read, nothing ingested: all {len(batch.rejects)} of "
                           f"{len(files)} files were refused; first: {path!r}: {reason}{hint}", path=where)
    good = [f for f in files if f.reject is None]
    epochs = sorted({f.name_epoch for f in good if f.name_epoch is not None})
    models = len({f.model_key for f in good})
    hint = f"e.g. --epoch-bins {min(e for e in epochs if e >= 0)}-{max(epochs)}" if any(e >= 0 for e in epochs) else \
        "--epoch-bins with the checkpoints' epochs"
    return IngestError(f"no checkpoint fills an epoch bin, nothing ingested: {len(files)} files found "
                       f"({len(batch.rejects)} rejected) of {models} models with epochs {epochs} in their names, "
                       f"epoch bins {list(bins)} from {bins_from}; pass {hint}", path=where)
