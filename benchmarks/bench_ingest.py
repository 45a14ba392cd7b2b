"""Ingest of a full-size CSV zoo against polars' bare parse, in one run.

    python benchmarks/bench_ingest.py [--data bench-data]

Measures (each in a fresh process, so peak memory is its own):
  * polars.read_csv of the file (the bare parse: the bound for any CSV reader);
  * weightlake's ``ingest_csv`` of the same file into a new lake (parse + validate + hash
    + Zarr + Parquet + commit);
  * ``lake.weights`` of all rows against a plain in-memory numpy copy of the same bytes;
  * chunk codecs for the weight array: size ratio and whole-array read time.
Goal: ingest within 1.5x of the polars parse, peak memory under 1.5 GB.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import BENCH_DATA, best_of, emit, full_csv, run_child  # noqa: E402

POLARS = """
import polars as pl
from weightlake.ingest.csv_zoo import csv_schema
df = pl.read_csv(sys.argv[1], schema=csv_schema())
result = {'rows': df.height}
"""

INGEST = """
from weightlake.ingest.csv_zoo import ingest_csv
r = ingest_csv(sys.argv[2], sys.argv[1], zoo='mnist-cnn-s', init='kaiming_uniform')
result = {'rows': r.rows_added}
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=BENCH_DATA)
    args = ap.parse_args()
    csv_path = full_csv(args.data)
    size_gb = csv_path.stat().st_size / 1e9
    tmp = Path(tempfile.mkdtemp(prefix="wl-bench-"))
    try:
        run_child(POLARS, str(csv_path))  # warm the page cache for both contenders
        polars = min((run_child(POLARS, str(csv_path)) for _ in range(2)), key=lambda r: r["seconds"])
        ingests = []
        for i in range(2):
            ingests.append(run_child(INGEST, str(csv_path), str(tmp / f"lake{i}")))
        ingest = min(ingests, key=lambda r: r["seconds"])
        read = _read_figures(tmp / "lake0")
        codecs = _codec_figures(tmp / "lake0")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    figures = {
        "csv_gb": round(size_gb, 3), "rows": ingest["rows"],
        "polars_read_csv_s": round(polars["seconds"], 2), "polars_peak_gb": round(polars["peak_gb"], 2),
        "ingest_s": round(ingest["seconds"], 2), "ingest_peak_gb": round(ingest["peak_gb"], 2),
        "ingest_over_polars": round(ingest["seconds"] / polars["seconds"], 2),
        "ingest_peak_over_1_5gb": round(ingest["peak_gb"] / 1.5, 2),
        **read, "codecs": codecs,
    }
    print(f"CSV {size_gb:.2f} GB, {ingest['rows']} rows")
    print(f"  polars.read_csv      {polars['seconds']:6.2f} s   peak {polars['peak_gb']:.2f} GB")
    print(f"  weightlake ingest    {ingest['seconds']:6.2f} s   peak {ingest['peak_gb']:.2f} GB   "
          f"ratio {figures['ingest_over_polars']:.2f}x (goal <= 1.5x, < 1.5 GB)")
    print(f"  lake.weights(all)    {read['lake_weights_gbps']:.2f} GB/s; numpy copy {read['numpy_copy_gbps']:.2f} GB/s "
          f"(ratio {read['weights_over_numpy']:.2f})")
    for c in codecs:
        print(f"  codec {c['codec']:6s} size ratio {c['ratio']:.3f}  whole read {c['read_s'] * 1000:.0f} ms")
    emit("ingest", figures)


def _read_figures(lake_dir: Path) -> dict[str, float]:
    import weightlake as wl

    lake = wl.open_lake(lake_dir)
    ids = np.arange(lake.manifest.next_model_id)
    t_lake = best_of(lambda: wl.open_lake(lake_dir).weights(ids))
    data = lake.weights_numpy(ids)
    t_np = best_of(lambda: data.copy())
    gb = data.nbytes / 1e9
    return {"lake_weights_gbps": round(gb / t_lake, 2), "numpy_copy_gbps": round(gb / t_np, 2),
            "weights_over_numpy": round(t_np / t_lake, 3)}


def _codec_figures(lake_dir: Path) -> list[dict[str, float | str]]:
    import weightlake as wl
    from weightlake.storage.tensors import read_all, write_segment

    lake = wl.open_lake(lake_dir)
    _, rows = lake.zoo_weights("mnist-cnn-s")
    rows = rows[:8192]
    out = []
    for codec in ("none", "zstd", "blosc"):
        path = lake_dir / f"codec-{codec}.zarr"
        write_segment(path, rows, rows.shape[1], codec=codec)
        on_disk = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        t = best_of(lambda p=path: read_all(p, len(rows), rows.shape[1]))
        out.append({"codec": codec, "ratio": round(rows.nbytes / on_disk, 3), "read_s": round(t, 4)})
        time.sleep(0)
    return out


if __name__ == "__main__":
    main()
