"""A writer process for the race tests: ``python _race_writer.py ROOT MODE NAME N GO_FILE``.

MODE ``raw``: N times, prepare the next manifest on the current snapshot, wait for GO_FILE,
commit through ``SnapshotStore.commit``; prints ``won``/``lost`` per round.
MODE ``table``: N commits of table NAME-<i> through ``transaction``; prints the versions committed.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import polars as pl

from weightlake.errors import CommitConflictError
from weightlake.storage.snapshot import SnapshotStore
from weightlake.storage.transaction import transaction


def _wait(go: Path, stamp: str) -> None:
    while not Path(f"{go}.{stamp}").exists():
        time.sleep(0.002)


def main() -> None:
    root, mode, name, n, go = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), Path(sys.argv[5])
    store = SnapshotStore(root)
    for i in range(n):
        if mode == "raw":
            parent = store.current()
            manifest = parent.evolve({"op": "race", "writer": name, "round": i})
            Path(f"{go}.{name}.ready.{i}").touch()
            _wait(go, str(i))
            try:
                store.commit(manifest)
                print("won", i, manifest.version, flush=True)
            except CommitConflictError:
                print("lost", i, manifest.version, flush=True)
        else:
            with transaction(root) as tx:
                tx.put_table(f"{name}-{i}", pl.DataFrame({"writer": [name], "i": [i]}))
                done = tx.commit({"op": "race-table", "writer": name, "round": i})
            print("committed", i, done.version, flush=True)


if __name__ == "__main__":
    main()
