import json

import pytest

from weightlake.errors import CommitConflictError, IntegrityError, LakeNotFoundError
from weightlake.storage.snapshot import Manifest, Segment, SnapshotStore, TableEntry, ZooEntry


def test_manifest_round_trip():
    m = Manifest(version=3, snapshot_id="abc", parent="v00000002-x.json", created="t", operation={"op": "x"},
                 zoos={"z": ZooEntry(arch={"name": "cnn-s"}, segments=(Segment("a.zarr", 0, 5, 7),), model_files=("f",))},
                 tables={"pairs": TableEntry(files=("p",), properties={"k": 1})}, sources=({"sha256": "s"},),
                 next_model_id=5)
    assert Manifest.from_dict(json.loads(json.dumps(m.to_dict()))) == m


def test_commit_swaps_pointer_and_keeps_history(tmp_path):
    store = SnapshotStore(tmp_path)
    with pytest.raises(LakeNotFoundError):
        store.current()
    first = store.create()
    with store.locked():
        second = store.commit(first.evolve({"op": "test"}))
    assert store.current() == second and second.parent == first.file_name
    assert [m.version for m in store.history()] == [1, 0]
    with store.locked(), pytest.raises(CommitConflictError):
        store.commit(first.evolve({"op": "stale"}))


def test_unreadable_manifest_is_an_integrity_error(tmp_path):
    store = SnapshotStore(tmp_path)
    m = store.create()
    (tmp_path / "_snapshots" / m.file_name).write_text("{not json")
    with pytest.raises(IntegrityError, match="unreadable"):
        store.current()
