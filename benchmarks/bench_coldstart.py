"""Cold start of ``weightlake sql`` against bare DuckDB + polars on the same Parquet files.

    python benchmarks/bench_coldstart.py [--data bench-data] [--rounds 5] [--quick] [--before /work/main]

Each contender is a fresh process, timed from the outside (interpreter start, imports,
opening the lake, the query, printing); contenders alternate round by round, best of
rounds. The query names no ``wl_*`` function: ``SELECT count(*) FROM models``.
  * bare: ``import duckdb, polars``; ``read_parquet`` of the lake's model files; the
    result printed as a polars frame;
  * ``weightlake sql`` (the installed command);
  * with ``--before DIR``: the same command from another checkout (e.g. the main branch);
  * for reference, ``weightlake sql`` of a query naming ``wl_l2`` (a macro) and ``wl_w1``
    (a Python UDF: the metrics module is imported).
Goal: ``weightlake sql`` within 1.2x of bare. ``--quick``: the small lake, 3 rounds.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import BENCH_DATA, child_env, emit, full_lake, quick_lake  # noqa: E402

BARE = ("import sys, duckdb, polars as pl\n"
        "con = duckdb.connect()\n"
        "q = \"SELECT count(*) FROM read_parquet($p, hive_partitioning = true)\"\n"
        "print(pl.from_arrow(con.sql(q, params={'p': sys.argv[1] + '/models/**/*.parquet'}).to_arrow_table()))\n")
CLI = "import sys\nsys.path.insert(0, sys.argv.pop(1)) if sys.argv[1] != '-' else sys.argv.pop(1)\n" \
      "from weightlake.cli import main\nsys.argv[0] = 'weightlake'\nmain()\n"


def _run(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=child_env())
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=BENCH_DATA)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="the small lake, at most 3 rounds")
    ap.add_argument("--before", type=Path, help="a checkout whose CLI is the before figure (e.g. /work/main)")
    args = ap.parse_args()
    lake = str((quick_lake(args.data) if args.quick else full_lake(args.data)).resolve())
    rounds = min(3, args.rounds) if args.quick else args.rounds
    py = sys.executable
    plain = "SELECT count(*) FROM models"
    contenders = {
        "bare duckdb+polars": [py, "-c", BARE, lake],
        "weightlake sql": [py, "-c", CLI, "-", "sql", plain, "--lake", lake],
    }
    if args.before:
        contenders["weightlake sql (before)"] = [py, "-c", CLI, str(args.before.resolve()), "sql", plain, "--lake", lake]
    contenders["weightlake sql, wl_l2 macro"] = [py, "-c", CLI, "-", "sql",
                                                 "SELECT sum(wl_l2(w)) FROM weights", "--lake", lake]
    contenders["weightlake sql, wl_w1 UDF"] = [py, "-c", CLI, "-", "sql",
                                               "SELECT sum(wl_w1(w, w)) FROM weights WHERE model_id < 100", "--lake", lake]
    for cmd in contenders.values():  # warm the page cache and write the bytecode caches (see child_env)
        _run(cmd)
    best = {k: float("inf") for k in contenders}
    load = [os.getloadavg()[0]]
    for _ in range(rounds):
        for name, cmd in contenders.items():
            best[name] = min(best[name], _run(cmd))
        load.append(os.getloadavg()[0])
    bare = best["bare duckdb+polars"]
    print(f"cold start, best of {rounds} alternating rounds, load {[round(x, 2) for x in load]}")
    for name, t in best.items():
        print(f"  {name:30s} {t:6.2f} s   {t / bare:.2f}x bare")
    emit("coldstart", {"rounds": rounds, "load_1min": [round(x, 2) for x in load],
                       **{name: {"s": round(t, 3), "over_bare": round(t / bare, 3)} for name, t in best.items()}})


if __name__ == "__main__":
    main()
