"""Ingest of a full-size CSV zoo against the fastest bare parse, in one run.

    python benchmarks/bench_ingest.py [--data bench-data] [--rounds 3] [--quick] [--before /work/main] [--avx512]

Measures (each in a fresh process, so peak memory is its own; contenders alternate round
by round, best of rounds):
  * the bare parse of the file by polars (``read_csv``), pyarrow (``pyarrow.csv.read_csv``)
    and DuckDB (``read_csv`` into a table), all with the zoo's column types;
  * weightlake's ``ingest_csv`` of the same file into a new lake (parse + validate + hash
    + Zarr + Parquet + commit), and with ``--before DIR`` the same from another checkout
    (the code before a change, e.g. the main branch), and with ``--avx512`` this branch's ingest
    with numpy's own CPU dispatch (``WEIGHTLAKE_NUMPY_AVX512=keep``: AVX-512 kept on AMD Zen 4);
  * ``lake.weights`` of all rows against a plain in-memory numpy copy of the same bytes;
  * chunk codecs for the weight array: size ratio and whole-array read time.
Goal: ingest within 1.2x of the fastest bare parse, peak memory under 1.1 GB.
``--quick``: the first 4,096 rows, 2 rounds, no read/codec figures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import BENCH_DATA, best_of, emit, full_csv, quick_csv, run_child  # noqa: E402

POLARS = """
import polars as pl
from weightlake.ingest.csv_zoo import csv_schema
df = pl.read_csv(sys.argv[1], schema=csv_schema())
result = {'rows': df.height}
"""

PYARROW = """
import pyarrow as pa, pyarrow.csv as pc
from weightlake.ingest.csv_zoo import csv_columns
types = {c: pa.float32() if c.startswith(('weight ', 'bias ')) else pa.float64() for c in csv_columns()}
types['label'] = pa.string()
tbl = pc.read_csv(sys.argv[1], convert_options=pc.ConvertOptions(column_types=types))
result = {'rows': tbl.num_rows}
"""

DUCKDB = """
import duckdb
from weightlake.ingest.csv_zoo import csv_columns
cols = {c: 'FLOAT' if c.startswith(('weight ', 'bias ')) else 'DOUBLE' for c in csv_columns()}
cols['label'] = 'VARCHAR'
con = duckdb.connect()
con.execute("CREATE TABLE t AS SELECT * FROM read_csv($p, header = true, columns = $c)", {'p': sys.argv[1], 'c': cols})
result = {'rows': con.execute('SELECT count(*) FROM t').fetchall()[0][0]}
"""

INGEST = """
if len(sys.argv) > 3:  # another checkout's code (the baseline before a change)
    sys.path.insert(0, sys.argv[3])
from weightlake.ingest.csv_zoo import ingest_csv
r = ingest_csv(sys.argv[2], sys.argv[1], zoo='mnist-cnn-s', init='kaiming_uniform')
result = {'rows': r.rows_added}
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=BENCH_DATA)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="the first 4,096 rows, 2 rounds")
    ap.add_argument("--parsers", default="polars,pyarrow,duckdb",
                    help="bare parsers to time (polars is always one: the ingest parses with it)")
    ap.add_argument("--before", type=Path, help="a checkout whose ingest_csv is the before figure (e.g. /work/main)")
    ap.add_argument("--avx512", action="store_true",
                    help="also this branch's ingest with WEIGHTLAKE_NUMPY_AVX512=keep (numpy's own dispatch)")
    args = ap.parse_args()
    csv_path = quick_csv(args.data) if args.quick else full_csv(args.data)
    rounds = 2 if args.quick else args.rounds
    size_gb = csv_path.stat().st_size / 1e9
    tmp = Path(tempfile.mkdtemp(prefix="wl-bench-"))
    chosen = {"polars", *args.parsers.split(",")}
    parsers = tuple(p for p in ("polars", "pyarrow", "duckdb") if p in chosen)
    code = {"polars": POLARS, "pyarrow": PYARROW, "duckdb": DUCKDB}
    contenders = {**{p: (code[p],) for p in parsers}, "ingest": (INGEST,)}
    if args.before:
        contenders["ingest_before"] = (INGEST, str(args.before.resolve()))
    if args.avx512:
        contenders["ingest_avx512"] = (INGEST,)
    envs = {"ingest_avx512": {**os.environ, "WEIGHTLAKE_NUMPY_AVX512": "keep"}}
    runs: dict[str, list[dict]] = {k: [] for k in contenders}
    load = [os.getloadavg()[0]]
    try:
        run_child(POLARS, str(csv_path))  # warm the page cache for every contender
        for r in range(rounds):  # alternate contenders round by round, each in a fresh process
            for name, (code, *extra) in contenders.items():
                lake_dir = tmp / f"{name}-{r}"
                runs[name].append(run_child(code, str(csv_path), str(lake_dir), *extra, env=envs.get(name)))
                shutil.rmtree(lake_dir, ignore_errors=True)
            load.append(os.getloadavg()[0])
        if not args.quick:
            run_child(INGEST, str(csv_path), str(tmp / "lake0"))
            read = _read_figures(tmp / "lake0")
            codecs = _codec_figures(tmp / "lake0")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    best = {k: min(v, key=lambda r: r["seconds"]) for k, v in runs.items()}
    fastest = min(parsers, key=lambda k: best[k]["seconds"])
    ingest = best["ingest"]
    figures = {
        "csv_gb": round(size_gb, 3), "rows": ingest["rows"], "rounds": rounds,
        "load_1min": [round(x, 2) for x in load],
        **{f"{k}_s": round(b["seconds"], 2) for k, b in best.items()},
        **{f"{k}_peak_gb": round(b["peak_gb"], 2) for k, b in best.items()},
        **{f"{k}_cpu_s": round(min(r["cpu_s"] for r in v), 2) for k, v in runs.items()},
        "fastest_parse": fastest,
        "ingest_over_fastest_parse": round(ingest["seconds"] / best[fastest]["seconds"], 2),
        "ingest_over_polars": round(ingest["seconds"] / best["polars"]["seconds"], 2),
    }
    figures["ingest_cpu_over_polars_cpu"] = round(figures["ingest_cpu_s"] / figures["polars_cpu_s"], 2)
    if args.before:
        figures["before_cpu_over_polars_cpu"] = round(figures["ingest_before_cpu_s"] / figures["polars_cpu_s"], 2)
        figures["before_over_fastest_parse"] = round(best["ingest_before"]["seconds"] / best[fastest]["seconds"], 2)
    print(f"CSV {size_gb:.2f} GB, {ingest['rows']} rows, best of {rounds} alternating rounds, load {load}")
    for k, b in best.items():
        cpu = figures[f"{k}_cpu_s"]
        print(f"  {k:14s} {b['seconds']:6.2f} s   peak {b['peak_gb']:.2f} GB   "
              f"{b['seconds'] / best[fastest]['seconds']:.2f}x the fastest parse ({fastest});   "
              f"CPU {cpu:6.2f} s = {cpu / figures['polars_cpu_s']:.2f}x polars' CPU")
    print(f"  ingest / fastest parse {figures['ingest_over_fastest_parse']:.2f}x (goal <= 1.2x, peak < 1.1 GB)")
    if not args.quick:
        figures.update(**read, codecs=codecs)
        print(f"  lake.weights(all)    {read['lake_weights_gbps']:.2f} GB/s; numpy copy {read['numpy_copy_gbps']:.2f} "
              f"GB/s (ratio {read['weights_over_numpy']:.2f})")
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
