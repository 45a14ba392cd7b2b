"""Pair files written the way the user's generator wrote them, and files that must be refused."""

from __future__ import annotations

import itertools
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from weightlake.arch import EPOCH_BINS, SCENARIO_ACTIVATIONS
from weightlake.errors import IngestError, UnsafeFileError
from weightlake.ingest.scenarios_npy import (
    PairRecord,
    load_npy_restricted,
    parse_folder_name,
    read_pair_arrays,
    read_pair_file,
    scan_scenario_folder,
)


class _Marker:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return exec, (f"open({self.path!r}, 'w').close()",)


def declared_pairs(digits: range, m: int, epoch_key: int, activation_key: int) -> dict[str, list[list[Any]]]:
    """Every ordered pair of distinct subsets with exactly ``m`` shared classes, split as the user did."""
    sizes = range(2, min(9, len(digits) - 1) + 1)
    subsets = [list(c) for k in sizes for c in itertools.combinations(digits, k)]
    out: dict[str, list[list[Any]]] = {"train": [], "val": [], "test": []}
    for a, b in itertools.permutations(subsets, 2):
        if len(set(a) & set(b)) != m:
            continue
        split = "test" if 0 in a or 0 in b else "val" if len(a) == len(b) else "train"
        out[split].append([a, b, epoch_key, activation_key])
    return out


def save_records(path: Path, records: list[list[Any]]) -> Path:
    """As the generator did: ``np.save`` of an object array of lists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.empty((len(records), 4), dtype=object)
    for i, record in enumerate(records):
        array[i] = record
    np.save(path, array, allow_pickle=True)
    return path


def _expected(records: list[list[Any]]) -> list[PairRecord]:
    return [PairRecord(tuple(a), tuple(b), e, k) for a, b, e, k in records]


# -- reading ------------------------------------------------------------------------------------
def test_reads_generator_output(tmp_path: Path) -> None:
    records = declared_pairs(range(6), 1, 2, 3)["train"]
    out = read_pair_file(save_records(tmp_path / "train pair.npy", records))
    assert out == _expected(records)
    assert out[0].epoch == EPOCH_BINS[2] and out[0].activation == SCENARIO_ACTIVATIONS[3] == "leakyrelu"
    assert {r.overlap for r in out} == {1}


def test_np_array_of_ragged_and_equal_lists(tmp_path: Path) -> None:
    ragged = [[[0, 1], [2, 3, 4], 0, 1], [[5, 6], [7, 8], 5, 5]]
    equal = [[[0, 1], [2, 3], 0, 1], [[5, 6], [7, 8], 5, 5]]
    for name, records in (("ragged", ragged), ("equal", equal)):
        path = tmp_path / f"{name}.npy"
        np.save(path, np.array(records, dtype=object), allow_pickle=True)
        assert read_pair_file(path) == _expected(records)


def test_one_dimensional_array_of_records(tmp_path: Path) -> None:
    records = [[[0, 1], [2, 3, 4], 0, 1], [[5, 6], [7, 8], 5, 5]]
    array = np.empty(len(records), dtype=object)
    for i, record in enumerate(records):
        array[i] = record
    np.save(tmp_path / "flat.npy", array, allow_pickle=True)
    assert read_pair_file(tmp_path / "flat.npy") == _expected(records)
    array[1] = [[5, 6], [7, 8], 5]
    np.save(tmp_path / "short.npy", array, allow_pickle=True)
    with pytest.raises(IngestError, match=r"row 1: record is \[\[5, 6\], \[7, 8\], 5\]"):
        read_pair_file(tmp_path / "short.npy")


def test_numpy_ints_inside_lists(tmp_path: Path) -> None:
    records = [[[np.int64(0), np.int64(3)], [1, 2], np.int64(4), np.int32(0)]]
    (record,) = read_pair_file(save_records(tmp_path / "p.npy", records))
    assert record == PairRecord((0, 3), (1, 2), 4, 0) and type(record.classes_a[0]) is int


@pytest.mark.parametrize("protocol", [2, 3])
def test_numpy_1x_files(tmp_path: Path, protocol: int) -> None:
    # numpy 1.x pickled through numpy.core.multiarray with protocol 3 (2 before numpy 1.16);
    # both spell globals as text, so the module name can be patched in place.
    array = np.empty((1, 4), dtype=object)
    array[0] = [[0, 1], [2, 3], 1, 2]
    payload = pickle.dumps(array, protocol=protocol).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    path = tmp_path / "old.npy"
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "|O", "fortran_order": False, "shape": (1, 4)})
        fh.write(payload)
    assert read_pair_file(path) == [PairRecord((0, 1), (2, 3), 1, 2)]


_subset = st.lists(st.integers(0, 9), min_size=1, max_size=10, unique=True)
_record = st.tuples(_subset, _subset, st.integers(0, 5), st.integers(0, 5)).map(list)


@settings(max_examples=40, deadline=None)
@given(st.lists(_record, max_size=20))
def test_round_trip(tmp_path_factory: pytest.TempPathFactory, records: list[list[Any]]) -> None:
    """``read_pair_file(np.save(records)) == records`` (classes as sorted tuples)."""
    path = save_records(tmp_path_factory.mktemp("rt") / "p.npy", records)
    out = read_pair_file(path)
    assert [[list(r.classes_a), list(r.classes_b), r.epoch_key, r.activation_key] for r in out] == [
        [sorted(a), sorted(b), e, k] for a, b, e, k in records]
    arrays = read_pair_arrays(path)
    assert arrays.to_records() == out and len(arrays) == len(records)


def test_plain_arrays(tmp_path: Path) -> None:
    np.save(tmp_path / "empty.npy", np.zeros((0, 4), dtype=np.int64))
    assert read_pair_file(tmp_path / "empty.npy") == []
    np.save(tmp_path / "ints.npy", np.zeros((3, 4), dtype=np.int64))
    with pytest.raises(IngestError, match=r"row 0: classes_a is 0 \(int\)"):
        read_pair_file(tmp_path / "ints.npy")


# -- refusing -----------------------------------------------------------------------------------
def test_malicious_payload_is_refused_and_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    array = np.empty((1, 4), dtype=object)
    array[0] = [[0, 1], [2, 3], 0, _Marker(marker)]
    path = tmp_path / "evil.npy"
    np.save(path, array, allow_pickle=True)
    with pytest.raises(UnsafeFileError, match=r"evil.npy.*global builtins.exec is not allowed"):
        read_pair_file(path)
    assert not marker.exists()
    np.load(path, allow_pickle=True)  # the control: full unpickling does run it
    assert marker.exists()


_RECONSTRUCT = np.empty(0).__reduce__()[0]  # what numpy pickles arrays through


class _Crafted:
    """Pickles as ``callable(*args)`` then ``BUILD(state)``: a hand-made array payload."""

    def __init__(self, func: Any, args: tuple[Any, ...], state: Any = None) -> None:
        self.func, self.args, self.state = func, args, state

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.func, self.args) if self.state is None else (self.func, self.args, self.state)


@pytest.mark.parametrize("payload", [
    pickle.dumps(_Crafted(np.ndarray, ((10**6,),))),  # the real constructor, called directly
    pickle.dumps(np.arange(3, dtype=np.float64)),  # a float array where objects belong
    pickle.dumps(_Crafted(_RECONSTRUCT, (np.ndarray, (10**9,), b"b"))),  # a huge allocation
    pickle.dumps(_Crafted(_RECONSTRUCT, (np.ndarray, (0,), b"b"), (1, (10**9,), np.dtype(object), False, []))),
], ids=["ndarray-call", "float-dtype", "huge-reconstruct", "huge-state"])
def test_unsafe_uses_of_allowed_names(tmp_path: Path, payload: bytes) -> None:
    path = tmp_path / "x.npy"
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "|O", "fortran_order": False, "shape": (1, 4)})
        fh.write(payload)
    with pytest.raises(UnsafeFileError, match="refused to unpickle"):
        load_npy_restricted(path)


@pytest.mark.parametrize(("record", "message"), [
    ([[0, 12], [1, 2], 0, 0], r"classes_a is \[0, 12\]; expected ints in 0..9"),
    ([[0, 1], [1, 2], 6, 0], r"epoch_key is 6"),
    ([[0, 1], [1, 2], 0, -1], r"activation_key is -1"),
    ([[0, 1], [1, 2], 0, True], r"activation_key is True"),
    ([[0, 1], "23", 0, 0], r"classes_b is '23' \(str\)"),
    ([[0, 1], [2, 2], 0, 0], r"classes_b is \[2, 2\]; classes repeat"),
    ([[0, 1], [], 0, 0], r"classes_b is \[\]"),
    ([[0, 1.0], [2], 0, 0], r"classes_a is \[0, 1.0\]"),
])
def test_wrong_structure_names_record(tmp_path: Path, record: list[Any], message: str) -> None:
    good = [[0, 1], [2, 3], 0, 0]
    path = save_records(tmp_path / "p.npy", [good, good, record])
    with pytest.raises(IngestError, match=r"p.npy'?, row 2: " + message):
        read_pair_file(path)


def test_wrong_shapes_and_bytes(tmp_path: Path) -> None:
    np.save(tmp_path / "three.npy", np.array([[[0, 1], [2], 0]], dtype=object), allow_pickle=True)
    with pytest.raises(IngestError, match=r"shape \(N, 4\).*got shape \(1, 3\)"):
        read_pair_file(tmp_path / "three.npy")
    (tmp_path / "text.npy").write_text("not an array")
    with pytest.raises(IngestError, match="not a readable .npy file"):
        read_pair_file(tmp_path / "text.npy")
    data = save_records(tmp_path / "whole.npy", [[[0, 1], [2, 3], 0, 0]] * 50).read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[: len(data) - 40])
    with pytest.raises(IngestError, match="corrupted object payload") as info:
        read_pair_file(tmp_path / "cut.npy")
    assert not isinstance(info.value, UnsafeFileError)


# -- folders ------------------------------------------------------------------------------------
def test_parse_folder_name() -> None:
    assert parse_folder_name("overlapping 0 [0, 1, 2, 3, 4, 5, 6, 7, 8, 9] 11 gelu") == (
        0, tuple(range(10)), 11, "gelu")
    for bad in ("overlapping 1 [0, 1] 12 gelu", "overlapping 1 [0, 1] 11 swish", "overlap 1 [0] 11 gelu"):
        with pytest.raises(ValueError, match="folder"):
            parse_folder_name(bad)


def test_scan_counts_accumulated_pairs(tmp_path: Path) -> None:
    digits, name = range(6), "[0, 1, 2, 3, 4, 5]"
    m0, m1 = declared_pairs(digits, 0, 0, 0), declared_pairs(digits, 1, 0, 0)
    for split in ("train", "val", "test"):
        save_records(tmp_path / f"overlapping 0 {name} 11 gelu" / f"{split} pair.npy", m0[split])
        # The generator's bug: the m=1 folder also holds everything written before it.
        save_records(tmp_path / f"overlapping 1 {name} 11 gelu" / f"{split} pair.npy", m0[split] + m1[split])
    save_records(tmp_path / f"overlapping 2 {name} 16 relu" / "train pair.npy", [[[1, 2], [3, 4], 1, 1]])
    evil = np.empty((1, 4), dtype=object)
    evil[0] = [[1, 2], [3, 4], 1, _Marker(tmp_path / "ran")]
    np.save(tmp_path / f"overlapping 2 {name} 16 relu" / "test pair.npy", evil, allow_pickle=True)
    (tmp_path / "notes").mkdir()
    scan = scan_scenario_folder(tmp_path)
    ok, bug, partial = scan.folders
    assert (ok.overlap, ok.digits, ok.epoch, ok.activation) == (0, tuple(digits), 11, "gelu")
    assert ok.n_pairs == {s: len(m0[s]) for s in m0} and ok.overlap_mismatch == {"train": 0, "val": 0, "test": 0}
    assert bug.overlap_mismatch == {s: len(m0[s]) for s in m0}
    assert bug.n_pairs == {s: len(m0[s]) + len(m1[s]) for s in m0}
    assert partial.missing_splits == ("val",) and set(partial.splits) == {"train"}
    assert partial.overlap_mismatch == {"train": 1} and partial.key_mismatch == {"train": 0}
    assert partial.outside_digits == {"train": 0} and partial.duplicates == {"train": 0}
    reasons = dict(scan.rejects)
    assert "is not 'overlapping" in reasons[str(tmp_path / "notes")]
    assert "refused to unpickle" in reasons[str(tmp_path / f"overlapping 2 {name} 16 relu" / "test pair.npy")]
    assert not (tmp_path / "ran").exists()
    assert bug.to_dict()["overlap_mismatch"]["train"] == len(m0["train"])


def test_scan_counts_key_and_digit_mismatches(tmp_path: Path) -> None:
    folder = tmp_path / "overlapping 0 [1, 2, 3, 4] 21 tanh"
    records = [[[1, 2], [3, 4], 2, 5], [[1, 2], [3, 4], 2, 5], [[1, 2], [3, 9], 2, 5], [[1, 2], [3, 4], 0, 5]]
    for split in ("train", "val", "test"):
        save_records(folder / f"{split} pair.npy", records)
    (result,) = scan_scenario_folder(tmp_path).folders
    assert result.key_mismatch["val"] == 1 and result.outside_digits["val"] == 1 and result.duplicates["val"] == 1


def test_scan_root_must_exist(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="not a folder"):
        scan_scenario_folder(tmp_path / "nope")
