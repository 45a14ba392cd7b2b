"""Import the user's scenario folders as lake scenarios, keeping the user's splits.

A folder ``data/Scenario/overlapping {m} {digits} {epoch} {activation}/`` holds
``train pair.npy``, ``val pair.npy`` and ``test pair.npy`` (spec, section 4).  The files
are read with the restricted reader of :mod:`weightlake.ingest.scenarios_npy` (nothing
in them is executed), every record is resolved to ``(a_id, b_id, target_id)`` in a zoo
with the same epoch fallback as :func:`~weightlake.scenarios.declare_scenario`, and
each folder becomes one scenario, named from the folder
(``overlapping 0 [0, 1, ..., 9] 11 gelu`` -> ``overlapping-0-0to9-e11-gelu``).

What the files get wrong is reported, not dropped: records that resolve to no model
(with examples), records sharing a different number of classes than the folder says
(the generator's accumulation bug: they are kept, and column ``overlap`` tells them
apart), duplicate records (in one split or in several: a pair in train and test is a
leak the report names) and missing split files.  Records whose epoch or activation
key contradicts the folder name are refused (the scenario would be mislabelled): the
import stops, or with ``on_error="skip"`` the folder is left out and named in the notes.
All folders are committed in one snapshot, or none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from weightlake.arch import EPOCH_BINS, SCENARIO_ACTIVATIONS
from weightlake.errors import IngestError
from weightlake.scenarios import (
    MAX_EXAMPLES,
    SPLITS,
    ScenarioReport,
    check_scenario_zoo,
    mask_classes,
    parse_scenario_name,
    resolve_pairs,
    stage_scenario,
    zoo_slices,
)

if TYPE_CHECKING:
    from weightlake.ingest.scenarios_npy import PairArrays
    from weightlake.lake import Lake

NAME_TEMPLATE = "overlapping-{m}-{digits}-e{epoch}-{activation}"
"""Default scenario name of an imported folder; fields ``m``, ``digits``, ``epoch``, ``activation``, ``zoo``."""


@dataclass(frozen=True)
class _Folder:
    """One scenario folder read from disk (before resolution)."""

    path: Path
    name: str
    overlap: int
    digits: tuple[int, ...]
    epoch: int
    activation: str
    splits: dict[str, PairArrays]
    missing: tuple[str, ...]


def import_scenarios(lake_root: str | Path, folder: str | Path, *, zoo: str, init: str | None = None,
                     name_template: str = NAME_TEMPLATE, epoch_fallback: bool = True,
                     on_error: str = "abort") -> list[ScenarioReport]:
    """Import one ``overlapping ...`` folder, or every such folder under ``folder``.

    Parameters
    ----------
    lake_root
        The lake directory.
    folder
        A scenario folder (its name parses as ``overlapping {m} {digits} {epoch}
        {activation}``) or a folder holding several (e.g. ``data/Scenario``).
    zoo
        The zoo the records are resolved in.
    init
        The zoo's initialisation the pairs use (the files do not say it); may be left
        out when the zoo holds one initialisation only.
    name_template
        Scenario name from the folder's fields; ``digits`` is written ``0to9`` when
        contiguous, else joined with ``.``.
    on_error
        ``"abort"``: an unsafe or malformed file, or records whose epoch or activation
        contradict the folder name, raise and nothing is committed.
        ``"skip"``: such a folder is left out entirely and listed in the report notes.

    Returns
    -------
    list of ScenarioReport
        One per imported folder (counts per split, unresolved records with examples,
        accumulation-bug records, duplicates).

    Raises
    ------
    UnsafeFileError
        A pair file would need code execution to unpickle (``on_error="abort"``).
    IngestError
        No scenario folder found, a malformed file, records whose epoch or activation
        differ from the folder name's, an ambiguous ``init``, or two folders that map to
        the same scenario name.
    """
    if on_error not in ("abort", "skip"):
        raise IngestError(f"on_error must be 'abort' or 'skip', got {on_error!r}")
    skipped: list[str] = []
    folders = [f for p in _scenario_dirs(Path(folder))
               if (f := _read_folder(p, name_template, on_error, skipped, zoo)) is not None]
    _check_unique([f.name for f in folders])
    if not folders:
        raise IngestError("no importable 'overlapping {m} {digits} {epoch} {activation}' folder found"
                          + (f"; skipped: {skipped}" if skipped else ""), path=str(folder))
    from weightlake.lake import Lake
    from weightlake.query import connect
    from weightlake.storage.transaction import transaction

    with transaction(Path(lake_root)) as tx:
        lake = Lake(Path(lake_root), tx.parent)
        chosen = _zoo_init(lake, zoo, init)
        folders = _fitting_folders(folders, zoo_slices(lake, zoo, None, [chosen], None), zoo, on_error, skipped)
        if not folders:
            raise IngestError(f"no scenario folder is of a slice zoo {zoo!r} holds; skipped: {skipped}", path=str(folder))
        for f in folders:
            check_scenario_zoo(lake, f.name, zoo, "pass a --name-template holding {zoo}, e.g. "
                                                  f"'{NAME_TEMPLATE}-{{zoo}}'")
        reports = []
        with connect(lake, weights=False, udfs=False) as con:
            for i, f in enumerate(folders):
                resolved = resolve_pairs(con, _candidates(f, chosen), zoo, fallback=epoch_fallback)
                report = _report(f, zoo, resolved, skipped if i == 0 else [])
                stage_scenario(tx, report, resolved, params=_params(f, zoo, chosen, epoch_fallback))
                reports.append(report)
        summary = f"imported {len(reports)} scenario folder(s): {sum(r.n_pairs for r in reports)} pairs"
        version = tx.commit({"op": "import_scenarios", "summary": summary}).version
    for report in reports:
        report.snapshot = version
    return reports


# -- finding and reading folders --------------------------------------------------------------------
def _scenario_dirs(folder: Path) -> list[Path]:
    from weightlake.ingest.scenarios_npy import parse_folder_name

    if not folder.is_dir():
        raise IngestError("expected a scenario folder or a folder of them (e.g. data/Scenario)", path=str(folder))
    try:
        parse_folder_name(folder.name)
        return [folder]
    except ValueError:
        return sorted(p for p in folder.iterdir() if p.is_dir() and p.name.startswith("overlapping "))


def scenario_name(template: str, m: int, digits: Sequence[int], epoch: int, activation: str, zoo: str = "") -> str:
    """``(0, [0..9], 11, 'gelu')`` -> ``'overlapping-0-0to9-e11-gelu'`` with the default template
    (``{zoo}`` names the zoo: one folder tree imported for zoos of two architectures)."""
    ds = sorted(digits)
    text = f"{ds[0]}to{ds[-1]}" if len(ds) > 1 and ds == list(range(ds[0], ds[-1] + 1)) else ".".join(map(str, ds))
    try:
        return parse_scenario_name(template.format(m=m, digits=text, epoch=epoch, activation=activation, zoo=zoo))
    except (KeyError, IndexError, ValueError) as exc:
        raise IngestError(f"name_template {template!r} cannot be filled ({exc}); it may use "
                          "{m}, {digits}, {epoch}, {activation} and {zoo}") from exc


def _read_folder(path: Path, template: str, on_error: str, skipped: list[str], zoo: str) -> _Folder | None:
    from weightlake.ingest.scenarios_npy import SPLIT_FILES, parse_folder_name, read_pair_arrays

    try:
        m, digits, epoch, activation = parse_folder_name(path.name)
    except ValueError as exc:
        if on_error == "abort":
            raise IngestError(str(exc), path=str(path)) from exc
        skipped.append(f"{path.name}: {exc}")
        return None
    splits: dict[str, PairArrays] = {}
    for split, file_name in SPLIT_FILES.items():
        if not (path / file_name).is_file():
            continue
        try:
            splits[split] = read_pair_arrays(path / file_name)
        except IngestError as exc:  # UnsafeFileError included
            if on_error == "abort":
                raise
            skipped.append(f"{path.name}: {exc}")
            return None
    disagreement = _key_disagreement(path.name, epoch, activation, splits)
    if disagreement:
        if on_error == "abort":
            raise IngestError(disagreement, path=str(path))
        skipped.append(disagreement)
        return None
    if not sum(len(a) for a in splits.values()):  # committed, it was a scenario of 0 pairs that looked imported
        empty = (f"folder {path.name!r} holds no records: its train/val/test pair.npy files are "
                 + ("empty" if splits else "missing") + "; point at a folder the scenario generator wrote")
        if on_error == "abort":
            raise IngestError(empty, path=str(path))
        skipped.append(empty)
        return None
    missing = tuple(s for s in SPLITS if s not in splits)
    return _Folder(path, scenario_name(template, m, digits, epoch, activation, zoo), m, digits, epoch, activation,
                   splits, missing)


def _key_disagreement(name: str, epoch: int, activation: str, splits: dict[str, PairArrays]) -> str | None:
    """Say how the records' epoch and activation keys contradict the folder name, or ``None``.

    The scenario is named after the folder, so a folder whose records are of another epoch
    or activation would become a mislabelled scenario: that is refused, not reported.
    """
    epochs: dict[int, int] = {}
    activations: dict[str, int] = {}
    for arrays in splits.values():
        for key, n in zip(*np.unique(arrays.epoch_key, return_counts=True), strict=True):
            epochs[EPOCH_BINS[key]] = epochs.get(EPOCH_BINS[key], 0) + int(n)
        for key, n in zip(*np.unique(arrays.activation_key, return_counts=True), strict=True):
            act = SCENARIO_ACTIVATIONS[key]
            activations[act] = activations.get(act, 0) + int(n)
    wrong = [f"epoch {e}: {n} record(s)" for e, n in sorted(epochs.items()) if e != epoch]
    wrong += [f"activation {a!r}: {n} record(s)" for a, n in sorted(activations.items()) if a != activation]
    if not wrong:
        return None
    return (f"folder {name!r} says epoch {epoch}, activation {activation!r}, but its records disagree "
            f"({'; '.join(wrong)}); rename the folder after its records (or fix the records) and import again")


def _fitting_folders(folders: list[_Folder], slices: pl.DataFrame, zoo: str, on_error: str,
                     skipped: list[str]) -> list[_Folder]:
    """The folders whose activation and epoch the zoo holds (at the chosen init): the records of any
    other folder would resolve to no model, a scenario of 0 pairs. Such a folder raises, or is skipped."""
    kept = []
    for f in folders:
        held = slices.filter(pl.col("activation") == f.activation)["epoch"].to_list()
        if held and f.epoch in held:
            kept.append(f)
            continue
        lacked, holds = ((f"epoch {f.epoch}", f"it holds epochs {sorted(held)} for {f.activation!r}") if held else
                         (f"activation {f.activation!r}", f"it holds {sorted(set(slices['activation']))}"))
        why = (f"folder {f.path.name!r} is of {lacked}, which zoo {zoo!r} lacks at init {slices['init'][0]!r} "
               f"({holds}): none of its records would resolve")
        if on_error == "abort":
            raise IngestError(why + " (--on-error skip leaves such folders out)", path=str(f.path))
        skipped.append(why)
    return kept


def _check_unique(names: list[str]) -> None:
    seen = {n for n in names if names.count(n) > 1}
    if seen:
        raise IngestError(f"several folders map to scenario name(s) {sorted(seen)}; pass a name_template that "
                          "tells them apart")


def _zoo_init(lake: Lake, zoo: str, init: str | None) -> str:
    held = sorted(zoo_slices(lake, zoo, None, None, None)["init"].unique().to_list())
    if init is None and len(held) == 1:
        return held[0]
    if init is None or init not in held:
        raise IngestError(f"scenario files do not say their initialisation; zoo {zoo!r} holds {held}, "
                          f"got init={init!r}: pass one of them (--init)")
    return init


# -- records -> candidate pairs -------------------------------------------------------------------------
def _candidates(folder: _Folder, init: str) -> pl.DataFrame:
    """All records of a folder in split order; ``pair_id`` numbers them, ``source_row`` is the file index."""
    parts = []
    start = 0
    for split in SPLITS:
        arrays = folder.splits.get(split)
        if arrays is None or not len(arrays):
            continue
        n = len(arrays)
        parts.append(pl.DataFrame({
            "pair_id": np.arange(start, start + n, dtype=np.int64),
            "a_mask": arrays.mask_a.astype(np.int32), "b_mask": arrays.mask_b.astype(np.int32),
            "init": np.full(n, init, dtype=object),
            "activation": np.array(SCENARIO_ACTIVATIONS, dtype=object)[arrays.activation_key],
            "epoch": np.array(EPOCH_BINS, dtype=np.int32)[arrays.epoch_key],
            "split": np.full(n, split, dtype=object), "source_row": np.arange(n, dtype=np.int64),
        }, schema_overrides={"init": pl.String, "activation": pl.String, "split": pl.String}))
        start += n
    if not parts:
        return pl.DataFrame(schema={"pair_id": pl.Int64, "a_mask": pl.Int32, "b_mask": pl.Int32, "init": pl.String,
                                    "activation": pl.String, "epoch": pl.Int32, "split": pl.String,
                                    "source_row": pl.Int64})
    return pl.concat(parts)


def _report(folder: _Folder, zoo: str, resolved: pl.DataFrame, skipped: list[str]) -> ScenarioReport:
    report = ScenarioReport(scenario=folder.name, zoo=zoo, source=f"imported from {folder.path.name!r}")
    mismatch = resolved.filter(pl.col("overlap") != folder.overlap)
    report.overlap_mismatch = mismatch.height
    key = ["a_mask", "b_mask", "epoch", "activation", "init"]
    report.duplicates = resolved.height - resolved.select(key).n_unique() if resolved.height else 0
    leaks = resolved.group_by(key).agg(pl.col("split").unique().sort()).filter(pl.col("split").list.len() > 1)
    report.split_leaks = leaks.height
    report.notes += [_leak_note(row) for row in leaks.sort(key).head(MAX_EXAMPLES).iter_rows(named=True)]
    report.notes += [f"{s} pair.npy is missing" for s in folder.missing]
    report.notes += [f"skipped {s}" for s in skipped]
    report.notes += [_mismatch_note(row, folder.overlap) for row in mismatch.head(MAX_EXAMPLES).iter_rows(named=True)]
    return report


def _leak_note(row: dict[str, Any]) -> str:
    return (f"pair A={mask_classes(row['a_mask'])} B={mask_classes(row['b_mask'])} at epoch {row['epoch']} is in "
            f"{' and '.join(s for s in SPLITS if s in row['split'])} pair.npy")


def _mismatch_note(row: dict[str, Any], m: int) -> str:
    return (f"record {row['source_row']} of {row['split']} pair.npy: A={mask_classes(row['a_mask'])} "
            f"B={mask_classes(row['b_mask'])} share {row['overlap']} classes, the folder says {m}")


def _params(folder: _Folder, zoo: str, init: str, fallback: bool) -> dict[str, Any]:
    return {"folder": str(folder.path), "zoo": zoo, "init": init, "overlap": folder.overlap,
            "digits": list(folder.digits), "epoch": folder.epoch, "activation": folder.activation,
            "epoch_fallback": fallback, "split": "file"}
