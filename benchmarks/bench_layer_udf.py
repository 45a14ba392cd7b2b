"""Per-layer SQL forms against numpy: the Python UDF ``wl_mse_layer`` and macro candidates over slices.

    python benchmarks/bench_layer_udf.py [--data bench-data] [--rounds 3] [--quick]

Every form computes the MSE of layer fc1 of each model with itself over all rows of the lake's
``weights`` view (decoded in memory once); numpy gets the same rows.  Contenders alternate round
by round; best of rounds.  Goal (issue 16): >= 0.8x numpy.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import BENCH_DATA, emit, full_lake, quick_lake  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=BENCH_DATA)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="small lake (4,096 rows), 2 rounds")
    args = ap.parse_args()
    import weightlake as wl
    from weightlake.analysis.metrics import mse
    from weightlake.analysis.udfs import register_udfs

    lake = wl.open_lake(quick_lake(args.data) if args.quick else full_lake(args.data))
    ids, rows = lake.zoo_weights(lake.zoos[0])
    n = len(ids)
    con = lake.connect(udfs=False)
    register_udfs(con, lake)
    layer = lake.arch(lake.zoos[0]).layer("fc1")
    s, e = layer.start, layer.stop
    sq = f"pow(list_distance({{a}}, {{a}}), 2) / {e - s}"
    forms = {
        "numpy": lambda: mse(rows[:, s:e], rows[:, s:e]).sum(),
        "python udf wl_mse_layer": "SELECT sum(wl_mse_layer(w, w, 'fc1')) FROM weights",
        "macro, slice float": f"SELECT sum({sq.format(a=f'w[{s + 1}:{e}]')}) FROM weights",
        "macro, slice then DOUBLE": f"SELECT sum({sq.format(a=f'w[{s + 1}:{e}]::DOUBLE[]')}) FROM weights",
        "macro, DOUBLE then slice": f"SELECT sum({sq.format(a=f'(w::DOUBLE[])[{s + 1}:{e}]')}) FROM weights",
        "whole-vector wl_mse macro (scale)": "SELECT sum(wl_mse(w, w)) FROM weights",
    }
    best = dict.fromkeys(forms, float("inf"))
    rounds = 2 if args.quick else args.rounds
    for _ in range(rounds):
        for name, form in forms.items():
            t = time.perf_counter()
            form() if callable(form) else con.sql(form).fetchall()
            best[name] = min(best[name], time.perf_counter() - t)
    print(f"{n} rows, best of {rounds} alternating rounds, load {os.getloadavg()[0]:.2f}")
    for name, secs in best.items():
        print(f"  {name:36s} {n / secs:10,.0f} rows/s  ({best['numpy'] / secs:.2f}x numpy)")
    emit("layer_udf", {"rows": n, "load_1min": os.getloadavg()[0],
                       **{name: round(n / secs) for name, secs in best.items()}})


if __name__ == "__main__":
    main()
