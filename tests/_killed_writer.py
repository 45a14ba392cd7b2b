"""A writer that stops inside its commit so the test can SIGKILL it there:
``python _killed_writer.py ROOT CSV PHASE MARKER``.

It ingests CSV as zoo ``killed`` and, at PHASE, touches MARKER and sleeps until killed:

* ``data``: every data file written (on S3: uploaded), no manifest yet;
* ``manifest``: the manifest written, its version not claimed in the log;
* ``claimed``: the version claimed (committed), the ``_current`` hint not yet rewritten.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from weightlake.ingest.csv_zoo import ingest_csv
from weightlake.storage import snapshot, store


def _stop(marker: Path) -> None:
    marker.touch()
    time.sleep(600)


def main() -> None:
    root, csv, phase, marker = sys.argv[1], Path(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
    if phase == "data":
        snapshot.SnapshotStore._write_manifest = lambda self, manifest: _stop(marker)  # type: ignore[method-assign]
    elif phase == "manifest":
        for cls in (store.LocalStore, store.S3Store):
            cls.write_if_absent = lambda self, key, data: _stop(marker)  # type: ignore[method-assign]
    elif phase == "claimed":
        for cls in (store.LocalStore, store.S3Store):
            original = cls.write

            def write(self, key, data, original=original):  # noqa: ANN001, ANN202
                if key == "_current":
                    _stop(marker)
                return original(self, key, data)

            cls.write = write  # type: ignore[method-assign]
    ingest_csv(root, csv, zoo="killed", init="kaiming_uniform")
    print("finished without being killed", flush=True)


if __name__ == "__main__":
    main()
