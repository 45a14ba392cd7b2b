"""Scenarios: which pairs of zoo models a merging experiment trains and tests on.

A scenario is declared by rules (digits, subset sizes, shared classes, activations,
epochs, split rule) and computed as SQL over the ``models`` view with class bitmasks
(bit ``d`` set when digit ``d`` is in a model's class set).  Every pair ``(A, B)`` gets
its two input models (trained on ``A`` and on ``B`` at the scenario epoch) and its
target, the model trained on ``A | B`` with the same initialisation and activation, at
the same epoch or, with ``epoch_fallback``, at the nearest earlier epoch of the chain
``e-5, e-10, ...`` down to 11 (the fallback the user's training code used).

The result is committed atomically as two derived tables, both partitioned by
``scenario`` so that declaring a scenario again replaces it:

* ``scenarios``: one row per scenario (zoo, parameters as JSON, counts per split,
  the snapshot its models were resolved on, and what could not be resolved);
* ``pairs``: one row per resolved pair (ids, masks, split, epochs, fallback flag).

Pairs whose inputs or target do not exist are counted per split and reported with
examples, never dropped silently.  ``fallback`` marks every pair whose target is not a
model trained to the pair's epoch: one from an earlier bin of the chain, or an
early-stopped model the zoo filed again under this bin (``models.fallback``; in a CSV zoo,
where that is unknown, the same vector at an earlier bin).  Pairs with such a copy as an
input are counted in the report.

>>> report = declare_scenario("lake", "m0-gelu-e11", zoo="mnist-cnn-s",
...                           activations=["gelu"], epochs=[11])   # doctest: +SKIP
>>> report.counts                                                   # doctest: +SKIP
{'train': 11076, 'val': 3066, 'test': 32730}
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from weightlake._util import parse_int_ranges
from weightlake.arch import EPOCH_BINS
from weightlake.errors import NoSuchTableError, QueryError

if TYPE_CHECKING:
    import duckdb

    from weightlake.lake import Lake
    from weightlake.storage.transaction import Transaction

SPLITS: tuple[str, ...] = ("train", "val", "test")
SPLIT_RULES: tuple[str, ...] = ("user", "random", "grouped")
FALLBACK_STEP = EPOCH_BINS[1] - EPOCH_BINS[0]
"""Epochs between fallback steps (5: e, e-5, e-10, ...)."""
FALLBACK_FLOOR = EPOCH_BINS[0]
"""The earliest epoch the fallback chain reaches (11)."""
MAX_EXAMPLES = 5

_NAME = re.compile(r"^[A-Za-z0-9_.+\-]+$")

PAIRS_SCHEMA: dict[str, str] = {
    "scenario": "String", "pair_id": "Int64", "a_id": "Int64", "b_id": "Int64", "target_id": "Int64",
    "split": "String", "a_mask": "Int32", "b_mask": "Int32", "target_mask": "Int32", "overlap": "Int8",
    "activation": "String", "init": "String", "epoch": "Int32", "target_epoch": "Int32", "fallback": "Boolean",
    "source_row": "Int64",
}


# -- parsing helpers ---------------------------------------------------------------------------
def parse_int_list(value: str | int | Iterable[int]) -> tuple[int, ...]:
    """Parse ``"0-5"``, ``"11,16"``, ``"0,2,4-6"``, an int or an iterable of ints.

    Ranges are inclusive.  Returns the sorted distinct values.

    Raises
    ------
    QueryError
        An item is neither an int nor a ``lo-hi`` range with ``lo <= hi``.
    """
    if isinstance(value, bool):
        raise QueryError(f"expected integers or ranges like '0-5', got {value!r}")
    if isinstance(value, (int, np.integer)):
        return (int(value),)
    if not isinstance(value, str):
        return tuple(sorted({_as_int(v, value) for v in value}))
    return tuple(parse_int_ranges(value, QueryError))


def _as_int(item: Any, whole: Any) -> int:
    try:
        if isinstance(item, bool):
            raise ValueError
        return int(item)
    except (TypeError, ValueError):
        raise QueryError(f"expected integers or ranges like '0-5', got {item!r} in {whole!r}") from None


def parse_overlap(value: int | str | Sequence[int] | range) -> tuple[int, int]:
    """Shared classes as an inclusive ``(lo, hi)``: ``0`` -> ``(0, 0)``, ``"0-2"`` or ``(0, 2)`` -> ``(0, 2)``."""
    if isinstance(value, range):
        values = tuple(value)
    elif isinstance(value, tuple) and len(value) == 2 and not isinstance(value, str):
        values = parse_int_list(range(_as_int(value[0], value), _as_int(value[1], value) + 1))
    else:
        values = parse_int_list(value)
    if not values or values[0] < 0 or values != tuple(range(values[0], values[-1] + 1)):
        raise QueryError(f"overlap must be a non-negative int or a contiguous range like '0-2', got {value!r}")
    return values[0], values[-1]


def parse_scenario_name(name: str) -> str:
    """A scenario name usable as a partition value (letters, digits, ``_ . + -``)."""
    if not isinstance(name, str) or not _NAME.match(name) or name in (".", ".."):
        raise QueryError(f"scenario name {name!r} must be letters, digits, '_', '.', '+' or '-' "
                         "(it names a partition directory), e.g. 'overlap0-0to9-gelu'")
    return name


def _parse_fractions(fractions: str | Sequence[float]) -> tuple[float, float, float]:
    """``"0.7,0.1,0.2"`` or three numbers -> ``(train, val, test)``, non-negative and summing to 1."""
    items = fractions.split(",") if isinstance(fractions, str) else fractions
    try:
        values = tuple(float(f) for f in items)
    except (TypeError, ValueError):
        values = ()
    if len(values) != 3 or min(values) < 0 or abs(sum(values) - 1.0) > 1e-6:
        raise QueryError(f"split_fractions must be three non-negative numbers (train, val, test) summing to 1, "
                         f"got {fractions!r}")
    return values[0], values[1], values[2]


def _optional_names(values: str | Iterable[str] | None) -> tuple[str, ...] | None:
    if values is None:
        return None
    items = values.split(",") if isinstance(values, str) else list(values)
    return tuple(dict.fromkeys(str(v).strip() for v in items if str(v).strip())) or None


# -- values --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ScenarioSpec:
    """A scenario declaration, validated; ``ScenarioSpec.from_dict(s.to_dict()) == s``."""

    name: str
    zoo: str
    digits: tuple[int, ...] = tuple(range(10))
    sizes: tuple[int, ...] = tuple(range(2, 10))
    overlap: tuple[int, int] = (0, 0)
    activations: tuple[str, ...] | None = None
    inits: tuple[str, ...] | None = None
    epochs: tuple[int, ...] | None = None
    ordered: bool = True
    split: str = "user"
    split_seed: int = 0
    split_fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)
    epoch_fallback: bool = True
    test_digit: int = 0

    def __post_init__(self) -> None:
        parse_scenario_name(self.name)
        setv = object.__setattr__
        setv(self, "digits", parse_int_list(self.digits))
        setv(self, "sizes", parse_int_list(self.sizes))
        setv(self, "overlap", parse_overlap(self.overlap))
        setv(self, "activations", _optional_names(self.activations))
        setv(self, "inits", _optional_names(self.inits))
        setv(self, "epochs", None if self.epochs is None else parse_int_list(self.epochs))
        setv(self, "split_fractions", _parse_fractions(self.split_fractions))
        if not all(0 <= d < 31 for d in self.digits):
            raise QueryError(f"digits must lie in 0..30 (class bitmasks are 32-bit), got {self.digits}")
        if not self.sizes or self.sizes[0] < 1:
            raise QueryError(f"subset sizes must be >= 1, got {self.sizes}")
        if self.split not in SPLIT_RULES:
            raise QueryError(f"split must be one of {SPLIT_RULES}, got {self.split!r}")
        if isinstance(self.test_digit, bool) or not isinstance(self.test_digit, (int, np.integer)) \
                or not 0 <= self.test_digit < 31:
            raise QueryError(f"test_digit must be a digit in 0..30, got {self.test_digit!r}")

    @property
    def digits_mask(self) -> int:
        return sum(1 << d for d in self.digits)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScenarioSpec:
        kwargs: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**kwargs)


@dataclass
class ScenarioReport:
    """What a declaration or import produced, and what it could not resolve."""

    scenario: str
    zoo: str
    source: str
    candidates: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    missing_input: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    missing_target: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    fallback_pairs: int = 0
    earlier_targets: int = 0
    copied_targets: int = 0
    copied_inputs: int = 0
    ambiguous_models: int = 0
    overlap_mismatch: int = 0
    duplicates: int = 0
    split_leaks: int = 0
    seen_in_train: dict[str, tuple[int, int]] = field(default_factory=dict)
    target_is_input: tuple[int, int] = (0, 0)
    examples: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    snapshot: int | None = None

    @property
    def n_pairs(self) -> int:
        return sum(self.counts.values())

    @property
    def unresolved(self) -> int:
        return self.candidates - self.n_pairs

    def lines(self) -> list[str]:
        """A human summary for the CLI."""
        split_text = ", ".join(f"{s} {self.counts.get(s, 0):,}" for s in SPLITS)
        out = [f"scenario {self.scenario} (zoo {self.zoo}, {self.source}): {self.n_pairs:,} pairs ({split_text})"]
        empty = [s for s in SPLITS if not self.counts.get(s, 0)]
        if not self.n_pairs:
            out.append("  no pair resolved: the scenario holds no pairs (the lines below say why)")
        elif empty:
            out.append(f"  no {' and no '.join(empty)} pairs: a loop over {'that split' if len(empty) == 1 else 'those'} "
                       "gets no batch")
        if self.unresolved:
            miss_in = sum(self.missing_input.values())
            miss_t = sum(self.missing_target.values())
            out.append(f"  {self.unresolved:,} of {self.candidates:,} pairs left out: {miss_in:,} lack an input "
                       f"model, {miss_t:,} lack a target model (even with the epoch fallback)")
        if self.earlier_targets:
            out.append(f"  {self.earlier_targets:,} pairs take their target from an earlier epoch "
                       "(fallback e-5, e-10, ...)")
        if self.copied_targets:
            out.append(f"  {self.copied_targets:,} pairs have a target that is an early-stopped model filed again "
                       "under the pair's epoch (models.fallback, or the same vector at an earlier bin); marked `fallback`")
        if self.copied_inputs:
            out.append(f"  {self.copied_inputs:,} pairs have an input that is such an early-stopped copy (kept)")
        if self.ambiguous_models:
            out.append(f"  {self.ambiguous_models:,} (init, activation, epoch, classes) keys hold several models; "
                       "the lowest model_id was used")
        if self.overlap_mismatch:
            out.append(f"  {self.overlap_mismatch:,} records share a different number of classes than the folder "
                       "name says (the generator's accumulation bug); kept, see column `overlap`")
        if self.duplicates:
            out.append(f"  {self.duplicates:,} duplicate records (kept)")
        if self.split_leaks:
            out.append(f"  {self.split_leaks:,} pairs are in more than one split: trained on and tested on "
                       "(kept as the files say; see the notes)")
        for split, (as_target, as_input) in self.seen_in_train.items():
            if as_target or as_input:
                n = self.counts.get(split, 0)
                out.append(f"  {split}: {as_target:,} of {n:,} pairs have a target class set that train pairs also "
                           f"have as a target, {as_input:,} of {n:,} as an input (same init and activation, any "
                           "epoch): training sees those answers"
                           + (" (the `user` split's test pairs, a held-out digit, have neither)" if split == "test"
                              else ""))
        same_set, same_model = self.target_is_input
        if same_set:
            out.append(f"  {same_set:,} of {self.n_pairs:,} pairs have a target trained on the same classes as one "
                       f"input (one class set holds the other); in {same_model:,} it is that very model, so y equals "
                       "x1 or x2 (leave them out with `WHERE target_id NOT IN (a_id, b_id)`)")
        out += [f"  e.g. {e}" for e in self.examples]
        out += [f"  note: {n}" for n in self.notes]
        if self.snapshot is not None:
            out.append(f"  committed as snapshot {self.snapshot}")
        return out


# -- the declaration ---------------------------------------------------------------------------
def declare_scenario(lake_root: str | Path, name: str, *, zoo: str, digits: Any = None,
                     sizes: Any = None, overlap: Any = 0, activations: Any = None, inits: Any = None,
                     epochs: Any = None, ordered: bool = True, split: str = "user", split_seed: int = 0,
                     split_fractions: str | Sequence[float] = (0.7, 0.1, 0.2), epoch_fallback: bool = True,
                     test_digit: int = 0) -> ScenarioReport:
    """Compute a scenario's pairs over the lake's current snapshot and commit them.

    Parameters
    ----------
    lake_root
        The lake directory.
    name
        Scenario name (letters, digits, ``_ . + -``); declaring it again replaces it.
    zoo
        The zoo whose models are paired.
    digits, sizes
        Subsets ``A`` and ``B`` use only ``digits`` and have a size in ``sizes``
        (ints, iterables or strings like ``"0-9"``).  ``digits`` must be classes the zoo's
        models were trained on and ``sizes`` within the sizes of their class sets (and no more
        than the digits).  ``None``: every class of the zoo; sizes from the zoo's smallest
        class set to its largest, but short of all the digits (``2-9`` for digits ``0-9``).
    overlap
        Shared classes ``|A & B|``: an int or an inclusive range (``(0, 2)``, ``"0-2"``).
    activations, inits, epochs
        Restrict the zoo slices paired (``None``: every value the zoo holds).  Inputs are
        always from the same slice; ``epochs`` are the scenario (input) epochs.
    ordered
        Keep both ``(A, B)`` and ``(B, A)``; ``False`` keeps ``a_mask < b_mask`` only.
    split
        ``"user"``: test if ``test_digit`` is in ``A`` or ``B``, else val if
        ``|A| == |B|``, else train.  ``"random"``: a seeded permutation of the pairs cut
        by ``split_fractions`` (three numbers, or a string ``"0.7,0.1,0.2"``).  ``"grouped"``:
        whole target class sets are assigned to one split, so no target class set is the
        target of two splits (it may still be a train pair's input); the largest set first,
        each into the split furthest below its share, so a split's share is off by less than
        the largest set's.  Both rules share out the pairs that resolve to models.  The report counts, for
        val and test, the pairs whose target class set train pairs have as a target or an
        input, and the pairs whose target is one of their inputs' class sets.
    epoch_fallback
        When the target is missing at the scenario epoch, take it from ``e-5``,
        ``e-10``, ... down to 11 (``target_epoch`` and ``fallback`` record it).

    Returns
    -------
    ScenarioReport
        Counts per split, unresolved pairs with examples, the new snapshot.

    Raises
    ------
    NoSuchTableError
        ``zoo`` is not in the lake.
    QueryError
        Bad parameters, digits or sizes the zoo's class sets cannot hold, a requested
        activation/init/epoch the zoo lacks, or no pair of subsets satisfying the rules.
    """
    spec = ScenarioSpec(name=name, zoo=zoo, digits=range(10) if digits is None else digits,
                        sizes=range(2, 10) if sizes is None else sizes, overlap=overlap, activations=activations,
                        inits=inits, epochs=epochs, ordered=ordered, split=split, split_seed=split_seed,
                        split_fractions=_parse_fractions(split_fractions), epoch_fallback=epoch_fallback,
                        test_digit=test_digit)
    from weightlake.lake import Lake
    from weightlake.query import connect
    from weightlake.storage.transaction import transaction

    with transaction(Path(lake_root)) as tx:
        lake = Lake(Path(lake_root), tx.parent)
        slices = zoo_slices(lake, spec.zoo, spec.activations, spec.inits, spec.epochs)
        spec = fit_to_zoo(spec, zoo_class_sets(lake, spec.zoo), digits_given=digits is not None,
                          sizes_given=sizes is not None)
        check_scenario_zoo(lake, spec.name, spec.zoo, "give this one another NAME")
        with connect(lake, weights=False, udfs=False) as con:
            con.register("slices", slices.to_arrow())
            cand = _candidates(con, spec)
            if cand.height == 0:
                raise QueryError(f"no two distinct subsets of digits {list(spec.digits)} with sizes "
                                 f"{list(spec.sizes)} share {_overlap_text(spec.overlap)} classes; "
                                 "widen --digits, --sizes or --overlap")
            cand = cand.with_columns(split=pl.Series(assign_splits(
                cand["a_mask"].to_numpy(), cand["b_mask"].to_numpy(), spec.split, seed=spec.split_seed,
                fractions=spec.split_fractions, test_digit=spec.test_digit)))
            resolved = resolve_pairs(con, cand, spec.zoo, fallback=spec.epoch_fallback)
        if spec.split != "user":  # shares of the pairs kept, not of candidates that pair no models
            ok = pl.all_horizontal(pl.col("a_id", "b_id", "target_id").is_not_null())
            kept = resolved.filter(ok)
            kept = kept.with_columns(split=pl.Series(assign_splits(
                kept["a_mask"].to_numpy(), kept["b_mask"].to_numpy(), spec.split, seed=spec.split_seed,
                fractions=spec.split_fractions, test_digit=spec.test_digit)))
            resolved = pl.concat([kept, resolved.filter(~ok)]).sort("pair_id")
        report = ScenarioReport(scenario=spec.name, zoo=spec.zoo, source="declared")
        if spec.split == "user" and spec.test_digit not in spec.digits:
            report.notes.append(f"test digit {spec.test_digit} is not among the digits {list(spec.digits)}: "
                                "no pair is in test (--test-digit picks another)")
        stage_scenario(tx, report, resolved, params=spec.to_dict())
        version = tx.commit({"op": "declare_scenario", "summary": _summary(report)}).version
    report.snapshot = version
    return report


def _overlap_text(overlap: tuple[int, int]) -> str:
    return str(overlap[0]) if overlap[0] == overlap[1] else f"{overlap[0]}-{overlap[1]}"


def zoo_slices(lake: Lake, zoo: str, activations: Sequence[str] | None, inits: Sequence[str] | None,
               epochs: Sequence[int] | None) -> pl.DataFrame:
    """The ``(init, activation, epoch)`` slices of ``zoo`` a scenario pairs within.

    Raises
    ------
    NoSuchTableError
        ``zoo`` is not in the lake.
    QueryError
        A requested value the zoo does not hold (the message lists what it holds), or a zoo
        whose models record no class set.
    """
    if zoo not in lake.zoos:
        raise NoSuchTableError(f"the lake has no zoo {zoo!r} at snapshot {lake.snapshot}; zoos: {lake.zoos or 'none'}"
                               " (ingest one with `weightlake ingest csv`)")
    with_classes = lake.models(zoo).filter(pl.col("class_mask").is_not_null())
    slices = with_classes.select("init", "activation", "epoch").unique().collect()
    if slices.height == 0:  # e.g. a Model Zoos (ray.tune) zoo: every pair would lack its models
        raise QueryError(f"zoo {zoo!r} records no class set for any of its models (column `classes` is null): "
                         "scenarios pair models by the classes they were trained on; pick a zoo ingested from a "
                         "CSV zoo or a checkpoint tree")
    for column, wanted in (("activation", activations), ("init", inits), ("epoch", epochs)):
        if wanted is None:
            continue
        held = sorted(slices[column].unique().to_list())
        missing = [w for w in wanted if w not in held]
        if missing:
            raise QueryError(f"zoo {zoo!r} has no {column} {missing}; it holds {held}")
        slices = slices.filter(pl.col(column).is_in(list(wanted)))
    return slices.sort("init", "activation", "epoch")


def zoo_class_sets(lake: Lake, zoo: str) -> tuple[int, ...]:
    """The distinct class bitmasks of ``zoo``'s models (those recording one), sorted."""
    masks = lake.models(zoo).filter(pl.col("class_mask").is_not_null()).select("class_mask").unique().collect()
    return tuple(sorted(int(m) for m in masks["class_mask"]))


def fit_to_zoo(spec: ScenarioSpec, class_sets: Sequence[int], *, digits_given: bool = True,
               sizes_given: bool = True) -> ScenarioSpec:
    """``spec`` with its digits and sizes checked against the zoo's class sets (or taken from them).

    Digits must be classes some model of the zoo was trained on, and sizes lie between the
    zoo's smallest and largest class set and not exceed the number of digits: any other value
    pairs no model (``--digits 0-12`` made 11.7 million candidates, every one unresolved).
    Not given, digits are the zoo's classes and sizes its class-set sizes short of all the digits.

    Raises
    ------
    QueryError
        Naming the option, the values received and the range the zoo allows.
    """
    from dataclasses import replace

    classes = mask_classes(np.bitwise_or.reduce(np.asarray(class_sets, dtype=np.int64)) if class_sets else 0)
    digits = spec.digits if digits_given else tuple(classes)
    outside = [d for d in digits if d not in classes]
    if outside:
        raise QueryError(f"--digits {format_int_ranges(digits)}: zoo {spec.zoo!r} has no model trained on "
                         f"{format_int_ranges(outside)}; its models' classes are {format_int_ranges(classes)}")
    counts = [int(m).bit_count() for m in class_sets]
    low, high = min(counts, default=0), min(max(counts, default=0), len(digits))
    if not sizes_given:
        return replace(spec, digits=digits, sizes=tuple(range(low, max(low, min(high, len(digits) - 1)) + 1)))
    if not all(low <= k <= high for k in spec.sizes):
        raise QueryError(f"--sizes {format_int_ranges(spec.sizes)}: sizes allowed {format_int_ranges(range(low, high + 1))}"
                         f" ({_sizes_reason(spec, digits, low, max(counts))})")
    return replace(spec, digits=digits)


def _sizes_reason(spec: ScenarioSpec, digits: Sequence[int], low: int, high: int) -> str:
    if min(spec.sizes) < low:
        return f"the smallest class set in zoo {spec.zoo!r} has {low} classes"
    if max(spec.sizes) > high:
        return f"the largest class set in zoo {spec.zoo!r} has {high} classes"
    return f"subsets of the {len(digits)} digits {format_int_ranges(digits)} hold at most {len(digits)}"


def format_int_ranges(values: Iterable[int]) -> str:
    """``[0, 1, 2, 5, 8, 9]`` -> ``"0-2,5,8-9"`` (what :func:`parse_int_list` reads back)."""
    out: list[str] = []
    for value in sorted(set(values)):
        if out and value == int(out[-1].rsplit("-", 1)[-1]) + 1:
            out[-1] = f"{out[-1].split('-')[0]}-{value}"
        else:
            out.append(str(value))
    return ",".join(out) or "none"


_CANDIDATES = """
WITH subsets AS (
    SELECT range::INTEGER AS mask FROM range(0, $n_masks)
    WHERE (range & ~$digits) = 0 AND list_contains($sizes, bit_count(range)::INTEGER)
), masks AS (
    SELECT a.mask AS a_mask, b.mask AS b_mask
    FROM subsets a JOIN subsets b
      ON a.mask <> b.mask AND bit_count(a.mask & b.mask) BETWEEN $lo AND $hi AND ($ordered OR a.mask < b.mask)
)
SELECT (row_number() OVER (ORDER BY s.init, s.activation, s.epoch, m.a_mask, m.b_mask) - 1)::BIGINT AS pair_id,
       m.a_mask, m.b_mask, s.init, s.activation, s.epoch::INTEGER AS epoch, NULL::BIGINT AS source_row
FROM masks m CROSS JOIN slices s
ORDER BY pair_id
"""


def _candidates(con: duckdb.DuckDBPyConnection, spec: ScenarioSpec) -> pl.DataFrame:
    """Every pair of subsets the rules allow, crossed with the zoo slices (class bitmasks in SQL)."""
    params = {"n_masks": 1 << (max(spec.digits) + 1), "digits": spec.digits_mask, "sizes": list(spec.sizes),
              "lo": spec.overlap[0], "hi": spec.overlap[1], "ordered": spec.ordered}
    return _run(con, _CANDIDATES, params)


def _run(con: duckdb.DuckDBPyConnection, query: str, params: Mapping[str, Any]) -> pl.DataFrame:
    import duckdb

    try:
        return pl.from_arrow(con.sql(query, params=dict(params)).to_arrow_table())  # type: ignore[return-value]
    except duckdb.Error as exc:
        raise QueryError(f"scenario query failed: {str(exc).strip().splitlines()[0]}") from exc


# -- splits ----------------------------------------------------------------------------------------
def assign_splits(a_mask: np.ndarray, b_mask: np.ndarray, rule: str = "user", *, seed: int = 0,
                  fractions: Sequence[float] = (0.7, 0.1, 0.2), test_digit: int = 0) -> np.ndarray:
    """The split of each pair, as an array of ``"train"``/``"val"``/``"test"``.

    ``"user"`` depends on the pair alone; ``"random"`` and ``"grouped"`` on ``seed`` and
    on the order of the pairs (the same inputs in the same order give the same splits).
    """
    a, b = np.asarray(a_mask, dtype=np.int64), np.asarray(b_mask, dtype=np.int64)
    names = np.array(SPLITS)
    if rule == "user":
        test = ((a | b) >> test_digit) & 1 == 1
        val = np.bitwise_count(a) == np.bitwise_count(b)
        return np.where(test, "test", np.where(val, "val", "train"))
    f_train, f_val, _ = _parse_fractions(fractions)
    rng = np.random.default_rng(seed)
    if rule == "random":
        rank = np.empty(len(a), dtype=np.int64)
        rank[rng.permutation(len(a))] = np.arange(len(a))
        share = (rank + 0.5) / max(len(a), 1)
    elif rule == "grouped":
        return names[_grouped(a | b, (f_train, f_val, 1.0 - f_train - f_val), rng)]
    else:
        raise QueryError(f"split must be one of {SPLIT_RULES}, got {rule!r}")
    return names[np.searchsorted([f_train, f_train + f_val], share, side="right")]


def _grouped(target: np.ndarray, fractions: Sequence[float], rng: np.random.Generator) -> np.ndarray:
    """Each pair's split index, every pair of one target class set in one split.

    Was: the groups in a random order, cut where the running share crossed 0.7 and 0.8, so one
    large group could swallow a split's share (val 2.3% where 10% was asked).  Now the largest
    group first (ties in a seeded random order), each into the split furthest below its share:
    a split ends above its share by less than the largest group.
    """
    groups, inverse, sizes = np.unique(target, return_inverse=True, return_counts=True)
    want = np.asarray(fractions, dtype=np.float64) * len(target)
    order = np.lexsort((rng.permutation(len(groups)), -sizes))
    counts, split = np.zeros(3), np.zeros(len(groups), dtype=np.int64)
    open_ = want > 0
    for g in order:
        s = int(np.argmax(np.where(open_, want - counts, -np.inf)))
        split[g] = s
        counts[s] += sizes[g]
    return split[inverse]


# -- resolution: pairs of masks -> model ids ----------------------------------------------------------
_RESOLVE = """
WITH z AS (  -- copied: an early-stopped model filed again under a later bin (null fallback: its vector repeats)
    SELECT model_id, init, activation, epoch::INTEGER AS epoch, class_mask::INTEGER AS mask,
           coalesce(fallback, weights_hash IS NOT NULL
                              AND epoch > min(epoch) OVER (PARTITION BY init, activation, class_mask, weights_hash))
               AS copied
    FROM models WHERE zoo = $zoo
), m AS (
    SELECT init, activation, epoch, mask, min(model_id) AS model_id, count(*) AS n_models,
           arg_min(copied, model_id) AS copied
    FROM z GROUP BY init, activation, epoch, mask
), t AS (
    SELECT c.pair_id, arg_max(m.model_id, m.epoch) AS target_id, arg_max(m.n_models, m.epoch) AS target_n,
           max(m.epoch)::INTEGER AS target_epoch, arg_max(m.copied, m.epoch) AS target_copied
    FROM cand c JOIN m
      ON m.init = c.init AND m.activation = c.activation AND m.mask = (c.a_mask | c.b_mask)
     AND (m.epoch = c.epoch OR ($fallback AND m.epoch < c.epoch AND m.epoch >= $floor
                                AND (c.epoch - m.epoch) % $step = 0))
    GROUP BY c.pair_id
)
SELECT c.pair_id, c.a_mask::INTEGER AS a_mask, c.b_mask::INTEGER AS b_mask, c.init, c.activation,
       c.epoch::INTEGER AS epoch, c.split, c.source_row,
       ma.model_id AS a_id, mb.model_id AS b_id, t.target_id, t.target_epoch,
       ma.n_models AS a_n, mb.n_models AS b_n, t.target_n,
       coalesce(ma.copied OR mb.copied, false) AS input_copied, coalesce(t.target_copied, false) AS target_copied
FROM cand c
LEFT JOIN m ma ON ma.init = c.init AND ma.activation = c.activation AND ma.epoch = c.epoch AND ma.mask = c.a_mask
LEFT JOIN m mb ON mb.init = c.init AND mb.activation = c.activation AND mb.epoch = c.epoch AND mb.mask = c.b_mask
LEFT JOIN t ON t.pair_id = c.pair_id
ORDER BY c.pair_id
"""


def resolve_pairs(con: duckdb.DuckDBPyConnection, cand: pl.DataFrame, zoo: str, *, fallback: bool) -> pl.DataFrame:
    """Attach ``a_id``, ``b_id``, ``target_id`` and ``target_epoch`` to candidate pairs.

    ``cand`` has ``pair_id, a_mask, b_mask, init, activation, epoch, split, source_row``.
    Unresolvable pairs keep null ids.  When several models share ``(init, activation,
    epoch, classes)`` the lowest ``model_id`` is used (``a_n``, ``b_n``, ``target_n`` count
    the models of each id's key).  ``fallback`` is set when the target is not trained to the
    pair's epoch: taken from an earlier bin, or an early-stopped model filed again under this
    bin (``target_copied``: ``models.fallback``, or where that is null, a vector the same
    key holds at an earlier bin); ``input_copied`` says the same of an input.
    """
    con.register("cand", cand.to_arrow())
    try:
        out = _run(con, _RESOLVE, {"zoo": zoo, "floor": FALLBACK_FLOOR, "step": FALLBACK_STEP, "fallback": fallback})
    finally:
        con.unregister("cand")
    target = pl.col("a_mask") | pl.col("b_mask")
    return out.with_columns(
        target_mask=target.cast(pl.Int32),
        overlap=pl.Series(np.bitwise_count(out["a_mask"].to_numpy() & out["b_mask"].to_numpy()).astype(np.int8)),
        fallback=(pl.col("target_epoch") != pl.col("epoch")) | pl.col("target_copied"),
    )


# -- commit ----------------------------------------------------------------------------------------
def check_scenario_zoo(lake: Lake, name: str, zoo: str, hint: str) -> None:
    """Refuse to replace scenario ``name`` when it pairs the models of another zoo.

    Declaring or importing a scenario again replaces it; over another zoo (often of another
    architecture) that would silently drop the first zoo's pairs, batches and pair metrics.

    Raises
    ------
    QueryError
        Naming the scenario, both zoos with their architectures, and ``hint`` (how to name it apart).
    """
    held = list_scenarios(lake).filter(pl.col("scenario") == name)["zoo"].to_list()
    other = sorted({z for z in held if z is not None and z != zoo})
    if other:
        raise QueryError(f"scenario {name!r} already pairs the models of {_zoo_text(lake, other[0])}; making it "
                         f"again over {_zoo_text(lake, zoo)} would replace those pairs: {hint}")


def _zoo_text(lake: Lake, zoo: str) -> str:
    arch = lake.manifest.zoos[zoo].arch.get("name") if zoo in lake.manifest.zoos else None
    return f"zoo {zoo!r}" + (f" ({arch})" if arch else "")


def stage_scenario(tx: Transaction, report: ScenarioReport, resolved: pl.DataFrame, *,
                   params: Mapping[str, Any]) -> None:
    """Fill ``report`` from ``resolved`` and stage the scenario's ``pairs`` and ``scenarios`` rows in ``tx``.

    The scenario's earlier partitions (if any) are dropped from both tables, so a
    scenario with no resolved pair still replaces its old pairs, and so are the batches
    materialised from its earlier pairs, their ``pair_metrics`` rows and the checkpoint
    evaluations scored on them (they would describe pairs it no longer holds; a note says so),
    unless the new pairs are exactly the earlier ones.  The caller commits.
    """
    name = report.scenario
    ok = resolved.filter(pl.col("a_id").is_not_null() & pl.col("b_id").is_not_null()
                         & pl.col("target_id").is_not_null())
    _fill_report(report, resolved, ok)
    pairs = ok.select(pl.lit(name).alias("scenario"), *[pl.col(c).cast(getattr(pl, t))
                                                          for c, t in PAIRS_SCHEMA.items() if c != "scenario"])
    row = _scenario_row(report, params, tx.parent.version)
    # what is dropped with the old pairs is chosen from the parent: a writer of these partitions
    # meanwhile (pair metrics of the old pairs) makes re-applying this declaration a conflict
    from weightlake.storage.tables import partition_value

    part = partition_value(name)
    tx.read(parts=[*((t, (f"tables/{t}/scenario={part}/",)) for t in
                     ("pair_metrics", "evaluations", "evaluation_metrics", "evaluation_baselines")),
                   ("batches", (f"batches/{name}/", f"tables/batches/scenario={name}/"))])
    for table in ("pairs", "scenarios"):
        tx.drop_table_files(table, lambda f, t=table: f.startswith(f"tables/{t}/scenario={name}/"))
    if not _same_pairs(tx, name, pairs):  # the same pairs again: what was computed on them still holds
        _drop_batches(tx, report)
        _drop_evaluations(tx, report)
    tx.put_table("pairs", pairs, partition_by=("scenario",),
                 properties={"partition_by": ["scenario"], "schema": PAIRS_SCHEMA})
    tx.put_table("scenarios", row, partition_by=("scenario",), properties={"partition_by": ["scenario"]})


def _same_pairs(tx: Transaction, name: str, pairs: pl.DataFrame) -> bool:
    """Whether the parent snapshot holds exactly ``pairs`` for scenario ``name`` (ids, splits, masks...)."""
    from weightlake.lake import Lake

    entry, prefix = tx.parent.tables.get("pairs"), f"tables/pairs/scenario={name}/"
    if entry is None or not any(f.startswith(prefix) for f in entry.files):
        return False
    old = Lake(tx.store.location, tx.parent).table("pairs").filter(pl.col("scenario") == name).collect()
    if old.height != pairs.height or not set(PAIRS_SCHEMA) <= set(old.columns):  # (an older table: not the same)
        return False
    typed = old.select(pl.col(c).cast(getattr(pl, t)) for c, t in PAIRS_SCHEMA.items())
    return typed.sort("pair_id").equals(pairs.select(list(PAIRS_SCHEMA)).sort("pair_id"))


def _drop_batches(tx: Transaction, report: ScenarioReport) -> None:
    """Drop the scenario's materialised batches (table ``batches`` of :mod:`weightlake.serve.batches`, which
    sits above this module: hence the names spelled out here) and say which splits they were."""
    name, entry = report.scenario, tx.parent.tables.get("batches")
    prefixes = (f"batches/{name}/", f"tables/batches/scenario={name}/")
    stale = sorted({a.split("/")[2] for a in entry.arrays if a.startswith(prefixes)}) if entry else []
    if stale:
        tx.drop_table_files("batches", lambda f: f.startswith(prefixes))
        report.notes.append(f"the batches materialised from its earlier pairs ({', '.join(stale)}) are dropped: "
                            f"run `weightlake pairs materialize {name}` again")
    # the metrics of its earlier pairs (table pair_metrics, keyed by their pair ids) would describe other pairs
    metrics, prefix = tx.parent.tables.get("pair_metrics"), f"tables/pair_metrics/scenario={name}/"
    if metrics is not None and any(f.startswith(prefix) for f in metrics.files):
        tx.drop_table_files("pair_metrics", lambda f: f.startswith(prefix))
        report.notes.append(f"the pair metrics of its earlier pairs are dropped: run `weightlake analyze pair-metrics "
                            f"--scenario {name}` again")


def _drop_evaluations(tx: Transaction, report: ScenarioReport) -> None:
    """Drop the checkpoint rows of ``evaluations``, ``evaluation_metrics`` and ``predictions``
    (:mod:`weightlake.experiments.evaluate`, above this module) that scored its earlier pairs,
    and the ``evaluation_baselines`` scored on them.

    They are keyed by scenario and split only: means over pairs it no longer holds, predictions
    with the old pair ids. Tracking rows carry their own pairs (and GT) and are kept; the parent
    snapshot keeps every row for time travel until gc.
    """
    from weightlake.lake import Lake
    from weightlake.storage.tables import partition_value

    name, parent = report.scenario, Lake(tx.store.location, tx.parent)
    scored = pl.col("scenario").eq(name) & pl.col("source_kind").is_in(["checkpoint", "baseline"])
    dropped = 0
    for table in ("evaluations", "evaluation_metrics", "evaluation_baselines"):
        prefix = f"tables/{table}/scenario={partition_value(name)}/"
        entry = tx.parent.tables.get(table)
        if entry is None or not any(f.startswith(prefix) for f in entry.files):
            continue
        rows = parent.table(table).filter(pl.col("scenario").eq(name)).collect()
        kept = rows.filter(~scored.fill_null(False))
        if kept.height == rows.height:
            continue
        if table != "evaluation_baselines":  # baselines are references, not checkpoints: not counted
            dropped = dropped or rows.filter(scored).select(pl.struct("checkpoint_path", "split").n_unique()).item()
        tx.drop_table_files(table, lambda f, p=prefix: f.startswith(p))
        if kept.height:
            tx.put_table(table, kept, partition_by=("scenario",), properties={"partition_by": ["scenario"]})
    entry = tx.parent.tables.get("predictions")
    if entry is not None and entry.files:
        sids = parent.table("predictions").filter(scored).select("source_id").unique().collect()["source_id"]
        prefixes = tuple(p for sid in sids for p in (f"tables/predictions/source_id={partition_value(sid)}/",
                                                     f"predictions/{partition_value(sid)}/"))
        if prefixes:
            tx.drop_table_files("predictions", lambda f: f.startswith(prefixes))
    if dropped:
        report.notes.append(f"the evaluations of {dropped} checkpoint(s) on its earlier pairs are dropped (snapshot "
                            f"{tx.parent.version} keeps them: `weightlake experiments report --snapshot "
                            f"{tx.parent.version}`): run `weightlake experiments evaluate --scenario {name}` again")


def _summary(report: ScenarioReport) -> str:
    return f"scenario {report.scenario}: {report.n_pairs} pairs ({report.unresolved} unresolved)"


def _fill_report(report: ScenarioReport, resolved: pl.DataFrame, ok: pl.DataFrame) -> None:
    report.candidates = resolved.height
    report.counts = _per_split(ok)
    no_input = resolved.filter(pl.col("a_id").is_null() | pl.col("b_id").is_null())
    no_target = resolved.filter(pl.col("a_id").is_not_null() & pl.col("b_id").is_not_null()
                                & pl.col("target_id").is_null())
    report.missing_input, report.missing_target = _per_split(no_input), _per_split(no_target)
    report.fallback_pairs = int(ok["fallback"].sum() or 0)
    report.earlier_targets = int((ok["target_epoch"] != ok["epoch"]).sum() or 0)
    report.copied_targets = int(ok["target_copied"].sum() or 0)
    report.copied_inputs = int(ok["input_copied"].sum() or 0)
    report.ambiguous_models = _ambiguous_keys(ok)
    report.seen_in_train, report.target_is_input = _seen_in_train(ok), _target_is_input(ok)
    examples = [_example(r, "missing input") for r in no_input.head(MAX_EXAMPLES).iter_rows(named=True)]
    examples += [_example(r, "missing target") for r in no_target.head(MAX_EXAMPLES).iter_rows(named=True)]
    report.examples = examples[:MAX_EXAMPLES]


def _seen_in_train(ok: pl.DataFrame) -> dict[str, tuple[int, int]]:
    """Per held-out split: pairs whose target's class set (same init and activation, any epoch) is a
    train pair's target, and pairs where it is a train pair's input (its model seen in training)."""
    run = ["init", "activation", "mask"]
    pairs = ok.select("split", "init", "activation", (pl.col("a_mask") | pl.col("b_mask")).alias("mask"),
                      "a_mask", "b_mask")
    train = pairs.filter(pl.col("split") == "train")
    targets = train.select(run).unique()
    inputs = pl.concat([train.select("init", "activation", pl.col(c).alias("mask")) for c in ("a_mask", "b_mask")]
                       ).unique()
    out = {}
    for split in SPLITS[1:]:
        held = pairs.filter(pl.col("split") == split)
        if held.height:
            out[split] = (held.join(targets, on=run, how="semi").height, held.join(inputs, on=run, how="semi").height)
    return out


def _target_is_input(ok: pl.DataFrame) -> tuple[int, int]:
    """Pairs whose target is of one input's class set (one set holds the other), and of those, the very model."""
    union = pl.col("a_mask") | pl.col("b_mask")
    same_set = ok.filter((union == pl.col("a_mask")) | (union == pl.col("b_mask")))
    same_model = same_set.filter((pl.col("target_id") == pl.col("a_id")) | (pl.col("target_id") == pl.col("b_id")))
    return same_set.height, same_model.height


def _ambiguous_keys(ok: pl.DataFrame) -> int:
    """Keys held by several models among those the resolved pairs use (each key stands for its lowest id)."""
    used = [ok.filter(pl.col(n) > 1)[c] for c, n in (("a_id", "a_n"), ("b_id", "b_n"), ("target_id", "target_n"))]
    return pl.concat(used).n_unique()


def _per_split(df: pl.DataFrame) -> dict[str, int]:
    counts = dict(df.group_by("split").len().iter_rows()) if df.height else {}
    return {s: int(counts.get(s, 0)) for s in SPLITS}


def mask_classes(mask: int) -> list[int]:
    """Digits of a class bitmask: ``0b1011`` -> ``[0, 1, 3]``."""
    return [d for d in range(int(mask).bit_length()) if int(mask) >> d & 1]


def _example(row: Mapping[str, Any], what: str) -> str:
    a, b = mask_classes(row["a_mask"]), mask_classes(row["b_mask"])
    lacking = [n for n, key in (("A", "a_id"), ("B", "b_id")) if row[key] is None]
    lacking = lacking or [f"target {mask_classes(row['a_mask'] | row['b_mask'])}"]
    where = f" (record {row['source_row']} of the {row['split']} file)" if row.get("source_row") is not None else ""
    return (f"{what}: pair A={a} B={b} at {row['init']}/{row['activation']}/epoch {row['epoch']}{where} "
            f"has no model for {' and '.join(lacking)}")


def _scenario_row(report: ScenarioReport, params: Mapping[str, Any], snapshot: int) -> pl.DataFrame:
    return pl.DataFrame({
        "scenario": [report.scenario], "zoo": [report.zoo], "source": [report.source],
        "params": [json.dumps(dict(params), sort_keys=True)],
        **{f"n_{s}": [report.counts[s]] for s in SPLITS},
        "n_pairs": [report.n_pairs], "n_candidates": [report.candidates],
        "missing_input": [sum(report.missing_input.values())],
        "missing_target": [sum(report.missing_target.values())],
        "fallback_pairs": [report.fallback_pairs], "overlap_mismatch": [report.overlap_mismatch],
        "duplicates": [report.duplicates], "snapshot": [snapshot],
        "created": [datetime.now(UTC).isoformat(timespec="seconds")],
    })


# -- reading -----------------------------------------------------------------------------------------
def list_scenarios(lake: Lake) -> pl.DataFrame:
    """One row per scenario of the lake's pinned snapshot (empty if none was declared)."""
    if "scenarios" not in lake.tables or not lake.manifest.table("scenarios").files:
        return pl.DataFrame(schema={"scenario": pl.String, "zoo": pl.String, "n_pairs": pl.Int64})
    table = lake.table("scenarios").collect()
    return table.select("scenario", pl.exclude("scenario")).sort("scenario")


def changed_zoos(lake: Lake, table: pl.DataFrame) -> dict[str, str]:
    """Scenarios of ``table`` (:func:`list_scenarios`) whose zoo changed after their pairs were resolved.

    A scenario's pairs are those of the models at the snapshot it was resolved against (its
    ``snapshot`` column); models ingested into the zoo since are in none of them.  Returns
    ``{scenario: what changed}``, empty when every scenario is up to date.
    """
    if table.height == 0 or "snapshot" not in table.columns:
        return {}
    now, then = lake.manifest.zoos, {}
    out = {}
    for row in table.select("scenario", "zoo", "snapshot").iter_rows(named=True):
        version, zoo = row["snapshot"], row["zoo"]
        if version is None or zoo is None:
            continue
        if version not in then:
            then[version] = lake.store.version(int(version)).zoos
        old, new = then[version].get(zoo), now.get(zoo)
        if old == new:
            continue
        if new is None:
            out[row["scenario"]] = f"zoo {zoo!r} is no longer in the lake"
        elif old is None or old.n_models != new.n_models:
            n = 0 if old is None else old.n_models
            out[row["scenario"]] = f"zoo {zoo!r} holds {new.n_models:,} models, {n:,} when it was resolved"
        else:
            out[row["scenario"]] = f"the metadata of zoo {zoo!r} changed"
    return out


def _newer_snapshot_with(lake: Lake, name: str) -> int | None:
    """The newest snapshot's version when it is newer than ``lake``'s and declares ``name``."""
    try:
        newest = lake.refresh()
        if newest.snapshot == lake.snapshot:
            return None
        return newest.snapshot if name in list_scenarios(newest)["scenario"].to_list() else None
    except Exception:  # noqa: BLE001  # only a hint: the error it decorates is raised either way
        return None


def scenario_row(lake: Lake, name: str) -> dict[str, Any]:
    """The ``scenarios`` row of ``name``.

    Raises
    ------
    NoSuchTableError
        The scenario is not declared at this snapshot (the message lists those that are).
    """
    table = list_scenarios(lake)
    found = table.filter(pl.col("scenario") == name)
    if found.height == 0:
        known = table["scenario"].to_list()
        newer = _newer_snapshot_with(lake, name)
        if newer is not None:
            raise NoSuchTableError(f"no scenario {name!r} at snapshot {lake.snapshot}, which this handle is pinned to; "
                                   f"the lake's newest snapshot {newer} has it: take a handle on it with "
                                   "`lake = lake.refresh()`")
        raise NoSuchTableError(f"no scenario {name!r} at snapshot {lake.snapshot}; scenarios: {known or 'none'} "
                               "(declare one with `weightlake scenario declare` or import the user's folders "
                               "with `weightlake scenario import`)")
    return found.row(0, named=True)
