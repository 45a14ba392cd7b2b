"""What checking every read costs: weight reads with chunk checksums against the same reads unchecked.

One segment of the full-size zoo shape (36,468 x 2,464 float32, 360 MB, 512-row chunks) is
written once; then, alternating round by round so load swings hit both alike:

* whole-segment decode (``read_all``: what ``zoo_weights``, the SQL ``weights`` view,
  spectra and serving start from), checked vs unchecked;
* a gather of 512 random rows (``read_rows``: ``lake.weights(ids)`` on a cold handle);
* the metadata Parquet checks of ``lake.models()`` on the full lake (hashing its files).

Run: ``.venv/bin/python benchmarks/bench_integrity.py [--rounds 5]``
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from weightlake.storage.tensors import SegmentWriter, read_all, read_rows

ROWS, COLS = 36_468, 2_464


def _write(path: Path) -> SegmentWriter:
    writer = SegmentWriter(path, COLS)
    rng = np.random.default_rng(0)
    for start in range(0, ROWS, 4096):
        writer.append(rng.standard_normal((min(4096, ROWS - start), COLS), dtype=np.float32))
    writer.close()
    return writer


def _timed(fn) -> float:  # noqa: ANN001
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        path = Path(tmp) / "seg.zarr"
        writer = _write(path)
        checked = {"digests": writer.chunk_digests, "meta_digest": writer.meta_digest}
        out = np.empty((ROWS, COLS), dtype=np.float32)
        rng = np.random.default_rng(1)
        ids = [np.sort(rng.choice(ROWS, 512, replace=False)) for _ in range(args.rounds)]
        best = {k: float("inf") for k in ("all_plain", "all_checked", "rows_plain", "rows_checked")}
        read_all(path, ROWS, COLS, out)  # warm the page cache
        for r in range(args.rounds):
            order = [("plain", {}), ("checked", checked)]
            for name, kw in order if r % 2 == 0 else order[::-1]:
                best[f"all_{name}"] = min(best[f"all_{name}"], _timed(lambda kw=kw: read_all(path, ROWS, COLS, out, **kw)))
                best[f"rows_{name}"] = min(best[f"rows_{name}"],
                                           _timed(lambda kw=kw, r=r: read_rows(path, ROWS, COLS, ids[r], **kw)))
    gb = ROWS * COLS * 4 / 1e9
    load = os.getloadavg()[0]
    print(f"load average {load:.1f}; best of {args.rounds} alternated rounds")
    print(f"read_all  unchecked {gb / best['all_plain']:.2f} GB/s, checked {gb / best['all_checked']:.2f} GB/s "
          f"-> {best['all_plain'] / best['all_checked']:.2f}x")
    print(f"read_rows 512 random rows: unchecked {best['rows_plain'] * 1e3:.0f} ms, checked "
          f"{best['rows_checked'] * 1e3:.0f} ms -> {best['rows_plain'] / best['rows_checked']:.2f}x")


if __name__ == "__main__":
    main()
