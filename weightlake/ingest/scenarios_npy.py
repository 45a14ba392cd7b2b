"""Read the user's scenario pair files (``train pair.npy`` ...) without full unpickling.

A pair file is a numpy object array of shape ``(N, 4)`` whose rows are Python lists
``[classes_a, classes_b, epoch_key, activation_key]`` (spec, section 4).  ``np.load``
would need its pickle option switched on, which runs whatever code the file asks for.  This
module parses the ``.npy`` header with :mod:`numpy.lib.format` and unpickles the payload
with :class:`_PairUnpickler`, whose ``find_class`` hands out only guarded stand-ins for
the globals numpy itself writes for such an array (checked against the pickles
numpy 1.x and 2.x produce):

* ``numpy[._]core.multiarray._reconstruct`` and ``numpy.ndarray``: the empty array that
  ``ndarray.__setstate__`` then fills with the list of objects;
* ``numpy.dtype``: the array's dtype (``O8``), and the dtype of a numpy integer;
* ``numpy[._]core.multiarray.scalar``: a numpy integer inside a list (``np.int64(3)``),
  returned as a plain ``int``;
* ``_codecs.encode`` with ``latin1`` only: how protocol 2 (numpy before 1.16) spells bytes.

Any other global (``builtins.exec``, ``os.system``, a user class) raises
:class:`~weightlake.errors.UnsafeFileError` before anything is called.  Arrays that do
not hold objects are read with ``allow_pickle=False``.  The records are then validated:
each must be ``[list of distinct ints in 0..9, same, epoch key 0..5, activation key 0..5]``.

:func:`scan_scenario_folder` reads every ``overlapping {m} {digits} {epoch} {activation}``
folder and counts, per split, the records that contradict the folder name; the
generator's accumulation bug (most folders with ``m > 0`` hold a cumulative 233,472
pairs) shows up there instead of being dropped silently.
"""

from __future__ import annotations

import ast
import itertools
import math
import os
import pickle
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
from numpy.lib import format as npy_format

from weightlake.arch import EPOCH_BINS, SCENARIO_ACTIVATIONS
from weightlake.errors import IngestError, UnsafeFileError

N_CLASSES = 10
SPLITS: tuple[str, ...] = ("train", "val", "test")
SPLIT_FILES: dict[str, str] = {split: f"{split} pair.npy" for split in SPLITS}
_FOLDER_RE = re.compile(r"overlapping (\d+) (\[[\d, ]*\]) (\d+) (\w+)")
_INT_DTYPE_RE = re.compile(r"[<>|=]?[iu][1248]")
_MAX_HEADER = 10_000


# -- values ------------------------------------------------------------------------------
@dataclass(frozen=True)
class PairRecord:
    """One pair: two class subsets (sorted tuples), the epoch bin and the activation.

    The target model of the pair is trained on :attr:`target` with the same epoch and
    activation.  ``epoch == EPOCH_BINS[epoch_key]`` and
    ``activation == SCENARIO_ACTIVATIONS[activation_key]``.
    """

    classes_a: tuple[int, ...]
    classes_b: tuple[int, ...]
    epoch_key: int
    activation_key: int
    epoch: int = field(init=False)
    activation: str = field(init=False)

    def __post_init__(self) -> None:
        for name in ("classes_a", "classes_b"):
            object.__setattr__(self, name, _parse_classes(getattr(self, name), name))
        object.__setattr__(self, "epoch", EPOCH_BINS[_parse_key(self.epoch_key, "epoch_key", len(EPOCH_BINS))])
        act = _parse_key(self.activation_key, "activation_key", len(SCENARIO_ACTIVATIONS))
        object.__setattr__(self, "activation", SCENARIO_ACTIVATIONS[act])

    @classmethod
    def _trusted(cls, classes_a: tuple[int, ...], classes_b: tuple[int, ...], epoch_key: int,
                 activation_key: int) -> PairRecord:
        """Build from values already validated (sorted tuples, keys in range)."""
        record = object.__new__(cls)
        for name, value in (("classes_a", classes_a), ("classes_b", classes_b), ("epoch_key", epoch_key),
                            ("activation_key", activation_key), ("epoch", EPOCH_BINS[epoch_key]),
                            ("activation", SCENARIO_ACTIVATIONS[activation_key])):
            object.__setattr__(record, name, value)
        return record

    @property
    def overlap(self) -> int:
        return len(set(self.classes_a) & set(self.classes_b))

    @property
    def target(self) -> tuple[int, ...]:
        return tuple(sorted(set(self.classes_a) | set(self.classes_b)))

    def to_dict(self) -> dict[str, Any]:
        return {"classes_a": list(self.classes_a), "classes_b": list(self.classes_b), "epoch": self.epoch,
                "activation": self.activation, "epoch_key": self.epoch_key, "activation_key": self.activation_key}


@dataclass(frozen=True)
class PairArrays:
    """The pairs of one file as columns: class bitmasks (bit d for digit d) and keys."""

    mask_a: np.ndarray
    mask_b: np.ndarray
    epoch_key: np.ndarray
    activation_key: np.ndarray

    def __len__(self) -> int:
        return len(self.mask_a)

    def overlap(self) -> np.ndarray:
        """Shared classes per pair."""
        return np.bitwise_count(self.mask_a & self.mask_b).astype(np.int8)

    def to_records(self) -> list[PairRecord]:
        # The arrays were validated when read: skip PairRecord's checks (10x faster).
        classes = [_mask_classes(m) for m in range(1 << N_CLASSES)]
        return [PairRecord._trusted(classes[a], classes[b], e, k) for a, b, e, k in
                zip(self.mask_a.tolist(), self.mask_b.tolist(), self.epoch_key.tolist(),
                    self.activation_key.tolist(), strict=True)]


@dataclass(frozen=True)
class ScenarioFolder:
    """One ``overlapping {m} {digits} {epoch} {activation}`` folder and what it holds.

    The per-split counts flag records that contradict the folder name: ``overlap_mismatch``
    (shared classes != ``overlap``; the generator's accumulation bug), ``key_mismatch``
    (epoch or activation key differ), ``outside_digits`` and ``duplicates``.
    """

    path: str
    overlap: int
    digits: tuple[int, ...]
    epoch: int
    activation: str
    splits: Mapping[str, PairArrays]
    missing_splits: tuple[str, ...] = ()
    overlap_mismatch: Mapping[str, int] = field(default_factory=dict)
    key_mismatch: Mapping[str, int] = field(default_factory=dict)
    outside_digits: Mapping[str, int] = field(default_factory=dict)
    duplicates: Mapping[str, int] = field(default_factory=dict)

    @property
    def n_pairs(self) -> dict[str, int]:
        return {split: len(arrays) for split, arrays in self.splits.items()}

    def to_dict(self) -> dict[str, Any]:
        """Everything but the arrays (for reports and ingest logs)."""
        return {"path": self.path, "overlap": self.overlap, "digits": list(self.digits), "epoch": self.epoch,
                "activation": self.activation, "n_pairs": self.n_pairs, "missing_splits": list(self.missing_splits),
                "overlap_mismatch": dict(self.overlap_mismatch), "key_mismatch": dict(self.key_mismatch),
                "outside_digits": dict(self.outside_digits), "duplicates": dict(self.duplicates)}


@dataclass(frozen=True)
class ScenarioScan:
    """Result of :func:`scan_scenario_folder`: parsed folders and ``(path, reason)`` rejects."""

    folders: tuple[ScenarioFolder, ...]
    rejects: tuple[tuple[str, str], ...]


# -- record validation -----------------------------------------------------------------------------
def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _parse_classes(value: Any, name: str) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"{name} is {value!r} ({type(value).__name__}); expected a non-empty list of ints")
    if not all(_is_int(c) and 0 <= c < N_CLASSES for c in value):
        raise ValueError(f"{name} is {value!r}; expected ints in 0..{N_CLASSES - 1}")
    if len(set(value)) != len(value):
        raise ValueError(f"{name} is {value!r}; classes repeat")
    return tuple(sorted(int(c) for c in value))


def _parse_key(value: Any, name: str, n: int) -> int:
    if not _is_int(value) or not 0 <= value < n:
        raise ValueError(f"{name} is {value!r}; expected an int in 0..{n - 1}")
    return int(value)


def _mask(classes: Iterable[int]) -> int:
    return sum(1 << c for c in classes)


def _mask_classes(mask: Any) -> tuple[int, ...]:
    return tuple(d for d in range(N_CLASSES) if int(mask) >> d & 1)


# -- restricted unpickling ----------------------------------------------------------------------------
class _Refused(pickle.UnpicklingError):
    """Raised by the guards below: the payload asked for something a pair file never needs."""


class _ArrayToken:
    """Stands in for ``numpy.ndarray`` so a pickle cannot call the real constructor."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise _Refused("a pair file may not call numpy.ndarray directly")


_ARRAY_TOKEN = _ArrayToken()


class _ArrayState:
    """What ``_reconstruct`` returns: the array is built only once ``BUILD`` hands over a state
    whose declared size matches the data it carries (no allocation beyond the file's size)."""

    def __init__(self) -> None:
        self.array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) != 5:
            raise _Refused(f"unexpected array state of type {type(state).__name__}")
        _, shape, dtype, _, data = state
        if not isinstance(dtype, np.dtype) or not isinstance(shape, tuple) or not all(_is_int(n) for n in shape):
            raise _Refused(f"unexpected array state: shape {shape!r}, dtype {dtype!r}")
        size = int(np.prod(shape, dtype=np.int64)) if shape else 1
        fits = (isinstance(data, list) and len(data) == size) if dtype.hasobject else (
            isinstance(data, bytes) and len(data) == size * dtype.itemsize)
        if not fits:
            raise _Refused(f"array state declares shape {shape} but carries other data")
        array = np.ndarray((0,), dtype=np.uint8)
        array.__setstate__(state)
        self.array = array


def _safe_reconstruct(subtype: Any, shape: Any, dtype_code: Any) -> _ArrayState:
    # numpy writes exactly _reconstruct(ndarray, (0,), b'b'); anything else is not an array pickle.
    if subtype is not _ARRAY_TOKEN or shape != (0,) or dtype_code not in (b"b", "b"):
        raise _Refused(f"unexpected array reconstruction ({subtype!r}, {shape!r}, {dtype_code!r})")
    return _ArrayState()


def _safe_dtype(spec: Any, align: Any = False, copy: Any = False) -> np.dtype:
    if spec not in ("O8", "O") and not (isinstance(spec, str) and _INT_DTYPE_RE.fullmatch(spec)):
        raise _Refused(f"dtype {spec!r} is not allowed in a pair file (objects or integers only)")
    return np.dtype(spec)


def _safe_scalar(dtype: Any, data: Any = None) -> int:
    if not isinstance(dtype, np.dtype) or dtype.kind not in "iu" or not isinstance(data, bytes):
        raise _Refused(f"numpy scalar of dtype {dtype!r} is not allowed (integers only)")
    return int(np.frombuffer(data, dtype=dtype, count=1)[0])


def _safe_latin1(text: Any, encoding: Any = "utf-8", errors: Any = "strict") -> bytes:
    # Protocol 2 has no bytes opcode: it writes b'b' as _codecs.encode('b', 'latin1').
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
        raise _Refused(f"_codecs.encode({text!r}, {encoding!r}) is not allowed (latin1 text only)")
    return text.encode("latin1")


_ALLOWED: dict[tuple[str, str], Any] = {
    ("_codecs", "encode"): _safe_latin1,
    ("numpy", "ndarray"): _ARRAY_TOKEN,
    ("numpy", "dtype"): _safe_dtype,
    **{(mod, "_reconstruct"): _safe_reconstruct for mod in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(mod, "scalar"): _safe_scalar for mod in ("numpy.core.multiarray", "numpy._core.multiarray")},
}


class _PairUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals a numpy object array of int lists needs."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise _Refused(f"global {module}.{name} is not allowed in a pair file") from None

    def persistent_load(self, pid: Any) -> Any:
        raise _Refused("persistent ids are not allowed in a pair file")


def _read_header(fh: IO[bytes], path: str) -> tuple[tuple[int, ...], np.dtype]:
    try:
        version = npy_format.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = npy_format.read_array_header_1_0(fh, max_header_size=_MAX_HEADER)
        elif version == (2, 0):
            shape, _, dtype = npy_format.read_array_header_2_0(fh, max_header_size=_MAX_HEADER)
        else:
            raise ValueError(f".npy format version {version} is not supported (1.0 and 2.0 are)")
    except (ValueError, EOFError, SyntaxError) as exc:
        raise IngestError(f"not a readable .npy file: {exc}", path=path) from exc
    return tuple(shape), dtype


def load_npy_restricted(path: str | Path) -> np.ndarray:
    """Load a ``.npy`` file; object arrays go through the restricted unpickler.

    Raises
    ------
    UnsafeFileError
        The object payload asks for anything but plain numpy arrays of int lists.
    IngestError
        Not a ``.npy`` file, truncated, or the payload is not the array the header declares.
    """
    where = str(path)
    with open(path, "rb") as fh:
        shape, dtype = _read_header(fh, where)
        _check_declared_size(shape, dtype, os.fstat(fh.fileno()).st_size - fh.tell(), where)
        if not dtype.hasobject:
            fh.seek(0)  # read_array parses the header again
            try:
                return npy_format.read_array(fh, allow_pickle=False, max_header_size=_MAX_HEADER)
            except (ValueError, EOFError) as exc:
                raise IngestError(f"cannot read the array data: {exc}", path=where) from exc
        try:
            result = _PairUnpickler(fh).load()
        except _Refused as exc:
            raise UnsafeFileError(f"refused to unpickle, nothing was executed: {exc}", path=where) from exc
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
                MemoryError) as exc:
            raise IngestError(f"corrupted object payload: {type(exc).__name__}: {exc}", path=where) from exc
    array = getattr(result, "array", None)
    if not isinstance(result, _ArrayState) or array is None or array.shape != shape:
        found = getattr(array, "shape", type(result).__name__)
        raise IngestError(f"the header declares an array of shape {shape}, the payload holds {found!r}", path=where)
    return array


def _check_declared_size(shape: tuple[int, ...], dtype: np.dtype, payload: int, where: str) -> None:
    """Refuse a header whose shape the file's bytes cannot hold, before anything is allocated.

    Plain arrays must carry exactly ``prod(shape) * itemsize`` bytes (no more, no less); an
    object array needs at least a byte per element of pickle, so it may not declare more
    elements than it has bytes.
    """
    elements = math.prod(int(n) for n in shape)
    need = elements if dtype.hasobject else elements * dtype.itemsize
    if dtype.hasobject and need > payload or not dtype.hasobject and need != payload:
        raise IngestError(f"the header declares an array of shape {shape} ({need:,} "
                          f"{'elements' if dtype.hasobject else 'bytes'}) but the file holds {payload:,} bytes of "
                          "data: truncated, padded or crafted", path=where)


# -- pair files ----------------------------------------------------------------------------------
def _check_shape(array: np.ndarray, path: str) -> None:
    """An ``(N, 4)`` array of records, or a 1-D object array whose items are records."""
    if array.size == 0 or (array.ndim == 2 and array.shape[1] == 4) or (array.ndim == 1 and array.dtype.hasobject):
        return
    raise IngestError(f"expected an array of shape (N, 4) holding [classes_a, classes_b, epoch_key, "
                      f"activation_key] records, got shape {array.shape} of {array.dtype}", path=path)


def _parse_row(row: Any) -> tuple[int, int, int, int]:
    if not isinstance(row, (list, tuple)) or len(row) != 4:
        raise ValueError(f"record is {row!r}; expected [classes_a, classes_b, epoch_key, activation_key]")
    a = _parse_classes(row[0], "classes_a")
    b = _parse_classes(row[1], "classes_b")
    return (_mask(a), _mask(b), _parse_key(row[2], "epoch_key", len(EPOCH_BINS)),
            _parse_key(row[3], "activation_key", len(SCENARIO_ACTIVATIONS)))


def _columns(array: np.ndarray) -> list[list[Any]] | None:
    """The four columns of the records, or ``None`` if some record is not a 4-item list."""
    if array.ndim == 2:
        return [array[:, j].tolist() for j in range(4)]
    rows = array.tolist()
    if not set(map(type, rows)) <= {list, tuple} or set(map(len, rows)) != {4}:
        return None
    return [list(col) for col in zip(*rows, strict=True)]


def _class_masks(column: list[Any]) -> np.ndarray | None:
    """Bitmasks of a column of class lists, or ``None`` if any list breaks the rules."""
    if not set(map(type, column)) <= {list, tuple}:
        return None
    lengths = np.fromiter(map(len, column), dtype=np.int64, count=len(column))
    flat = list(itertools.chain.from_iterable(column))
    if lengths.min() == 0 or not set(map(type, flat)) <= {int}:
        return None
    try:
        values = np.array(flat, dtype=np.int64)
    except OverflowError:
        return None
    if values.min() < 0 or values.max() >= N_CLASSES:
        return None
    masks = np.bitwise_or.reduceat(np.left_shift(1, values), np.cumsum(lengths) - lengths)
    return masks if (np.bitwise_count(masks) == lengths).all() else None  # else a class repeats


def _keys(column: list[Any], n: int) -> np.ndarray | None:
    if not set(map(type, column)) <= {int}:
        return None
    try:
        keys = np.array(column, dtype=np.int64)
    except OverflowError:
        return None
    return keys if keys.min() >= 0 and keys.max() < n else None


def _parse_fast(array: np.ndarray) -> np.ndarray | None:
    """All records at once (numpy over the flattened lists); ``None`` if any record is bad."""
    columns = _columns(array)
    if columns is None:
        return None
    parts = [_class_masks(columns[0]), _class_masks(columns[1]),
             _keys(columns[2], len(EPOCH_BINS)), _keys(columns[3], len(SCENARIO_ACTIVATIONS))]
    present = [part for part in parts if part is not None]
    return np.stack(present, axis=1) if len(present) == len(parts) else None


def _parse_slow(rows: Sequence[Any], where: str) -> np.ndarray:
    """Record by record, to name the first bad one."""
    parsed = np.empty((len(rows), 4), dtype=np.int64)
    for i, row in enumerate(rows):
        try:
            parsed[i] = _parse_row(row)
        except ValueError as exc:
            raise IngestError(str(exc), path=where, row=i) from None
    return parsed


def read_pair_arrays(path: str | Path) -> PairArrays:
    """Read and validate a pair file into columns (the compact form of :func:`read_pair_file`).

    Raises
    ------
    UnsafeFileError
        The file would need code execution to unpickle.
    IngestError
        The file or one of its records has the wrong structure (the message names the
        record index and what was found).
    """
    where = str(path)
    array = load_npy_restricted(path)
    _check_shape(array, where)
    parsed = _parse_fast(array) if array.size else np.empty((0, 4), dtype=np.int64)
    if parsed is None:
        parsed = _parse_slow(array.tolist(), where)
    return PairArrays(mask_a=parsed[:, 0].astype(np.uint16), mask_b=parsed[:, 1].astype(np.uint16),
                      epoch_key=parsed[:, 2].astype(np.int8), activation_key=parsed[:, 3].astype(np.int8))


def read_pair_file(path: str | Path) -> list[PairRecord]:
    """Read and validate a pair file (``train pair.npy`` ...) without full unpickling.

    Parameters
    ----------
    path : path
        A ``.npy`` file: an object array ``(N, 4)`` of ``[classes_a, classes_b,
        epoch_key, activation_key]`` records (or an empty plain array).

    Returns
    -------
    list of PairRecord
        In file order; classes as sorted tuples, ``epoch`` and ``activation`` decoded
        from the keys with ``EPOCH_BINS`` and ``SCENARIO_ACTIVATIONS``.

    Raises
    ------
    UnsafeFileError, IngestError
        As :func:`read_pair_arrays`.
    """
    return read_pair_arrays(path).to_records()


# -- scenario folders -------------------------------------------------------------------------------
def parse_folder_name(name: str) -> tuple[int, tuple[int, ...], int, str]:
    """``'overlapping 0 [0, 1, 2] 11 gelu'`` -> ``(0, (0, 1, 2), 11, 'gelu')``.

    Raises
    ------
    ValueError
        The name does not follow ``overlapping {m} {digits} {epoch} {activation}``.
    """
    match = _FOLDER_RE.fullmatch(name)
    if match is None:
        raise ValueError(f"folder name {name!r} is not 'overlapping {{m}} {{digits}} {{epoch}} {{activation}}'")
    m, digits_text, epoch, activation = match.groups()
    digits = tuple(ast.literal_eval(digits_text))
    if not digits or any(not 0 <= d < N_CLASSES for d in digits) or len(set(digits)) != len(digits):
        raise ValueError(f"folder {name!r}: digits {digits_text} must be distinct ints in 0..{N_CLASSES - 1}")
    if int(epoch) not in EPOCH_BINS:
        raise ValueError(f"folder {name!r}: epoch {epoch} is not one of {EPOCH_BINS}")
    if activation not in SCENARIO_ACTIVATIONS:
        raise ValueError(f"folder {name!r}: activation {activation!r} is not one of {SCENARIO_ACTIVATIONS}")
    return int(m), tuple(sorted(digits)), int(epoch), activation


def scan_scenario_folder(root: str | Path) -> ScenarioScan:
    """Read every scenario folder under ``root`` (e.g. ``data/Scenario``).

    Parameters
    ----------
    root : path
        Holds ``overlapping {m} {digits} {epoch} {activation}/`` folders, each with
        ``train pair.npy``, ``val pair.npy`` and ``test pair.npy``.

    Returns
    -------
    ScenarioScan
        One :class:`ScenarioFolder` per folder whose name parses, with its splits,
        missing splits and per-split counts of records that contradict the folder name;
        ``rejects`` holds ``(path, reason)`` for folder names that do not parse and for
        unsafe or malformed files (their split is left out, not half-read).

    Raises
    ------
    IngestError
        ``root`` is not a folder.
    """
    base = Path(root)
    if not base.is_dir():
        raise IngestError("the scenario root is not a folder", path=str(base))
    folders: list[ScenarioFolder] = []
    rejects: list[tuple[str, str]] = []
    for folder in sorted(p for p in base.iterdir() if p.is_dir()):
        try:
            spec = parse_folder_name(folder.name)
        except ValueError as exc:
            rejects.append((str(folder), str(exc)))
            continue
        folders.append(_read_folder(folder, *spec, rejects))
    return ScenarioScan(folders=tuple(folders), rejects=tuple(rejects))


def _read_folder(folder: Path, m: int, digits: tuple[int, ...], epoch: int, activation: str,
                 rejects: list[tuple[str, str]]) -> ScenarioFolder:
    splits: dict[str, PairArrays] = {}
    missing: list[str] = []
    for split, name in SPLIT_FILES.items():
        path = folder / name
        if not path.is_file():
            missing.append(split)
            continue
        try:
            splits[split] = read_pair_arrays(path)
        except IngestError as exc:  # UnsafeFileError included: report, keep scanning
            rejects.append((str(path), str(exc)))
    keys = (EPOCH_BINS.index(epoch), SCENARIO_ACTIVATIONS.index(activation))
    allowed = _mask(digits)
    return ScenarioFolder(
        path=str(folder), overlap=m, digits=digits, epoch=epoch, activation=activation, splits=splits,
        missing_splits=tuple(missing),
        overlap_mismatch={s: int((p.overlap() != m).sum()) for s, p in splits.items()},
        key_mismatch={s: int(((p.epoch_key != keys[0]) | (p.activation_key != keys[1])).sum())
                      for s, p in splits.items()},
        outside_digits={s: int((((p.mask_a | p.mask_b) & ~np.uint16(allowed)) != 0).sum())
                        for s, p in splits.items()},
        duplicates={s: _count_duplicates(p) for s, p in splits.items()})


def _count_duplicates(pairs: PairArrays) -> int:
    key = (pairs.mask_a.astype(np.int64) << 32 | pairs.mask_b.astype(np.int64) << 16
           | pairs.epoch_key.astype(np.int64) << 8 | pairs.activation_key.astype(np.int64))
    return int(len(key) - len(np.unique(key)))
