"""wl_ SQL functions over every row of a full-size lake against the same function on numpy directly.

    python benchmarks/bench_udf.py [--data bench-data] [--rounds 3] [--quick]

Both sides get the same rows already decoded in memory (the lake's weights are decoded
once per handle). Forms timed: the vector form ``wl_m(a.w, b.w)`` as a DuckDB macro over
the native array functions (``wl_l2``, ``wl_mse``, ``wl_cosine`` ...), the same name as a
Python UDF (DuckDB hands FLOAT[2464] values over as Arrow in 2,048-row chunks; the
baseline before the macros), and the id form ``wl_m_by_id(a_id, b_id)`` (only ids cross;
rows are gathered from memory). Contenders alternate round by round; best of rounds.
Pairs are (model i, model n-1-i), as numpy gets them. Goal: vector forms >= 0.8x numpy.
``--quick`` runs on the first 4,096 rows.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import BENCH_DATA, emit, full_lake, quick_lake  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=BENCH_DATA)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="small lake (4,096 rows), 2 rounds")
    args = ap.parse_args()
    import weightlake as wl
    from weightlake.analysis.metrics import cosine_similarity, mse, norm_diff, wasserstein_1
    from weightlake.analysis.udfs import register_udfs

    rounds = 2 if args.quick else args.rounds
    lake = wl.open_lake(quick_lake(args.data) if args.quick else full_lake(args.data))
    zoo = lake.zoos[0]
    ids, rows = lake.zoo_weights(zoo)
    n = len(ids)
    order = np.arange(n)[::-1]
    cons = {}
    for form, macros in (("macro", True), ("python", False)):
        con = lake.connect(udfs=False)
        register_udfs(con, lake, macros=macros)
        con.execute("CREATE TEMP TABLE pair_ids AS SELECT model_id AS a_id, "
                    f"{int(ids.max()) + int(ids.min())} - model_id AS b_id FROM models")
        cons[form] = con
    figures: dict = {"rows": n, "rounds": rounds, "load_1min": os.getloadavg()[0]}

    def np_pairs(metric):  # numpy gets the gather too: it is part of serving pairs
        return lambda: metric(rows, rows[order]).sum()

    l2 = lambda: np.sqrt(np.einsum("ij,ij->i", rows, rows, dtype=np.float64)).sum()  # noqa: E731
    cases = {  # name: (sql, numpy, forms)
        "wl_l2 (vector)": ("SELECT sum(wl_l2(w)) FROM weights", l2, ("macro", "python")),
        "wl_mse (vector, self)": ("SELECT sum(wl_mse(w, w)) FROM weights", lambda: mse(rows, rows).sum(),
                                  ("macro", "python")),
        "wl_cosine (vector, self)": ("SELECT sum(wl_cosine(w, w)) FROM weights",
                                     lambda: cosine_similarity(rows, rows).sum(), ("macro", "python")),
        "wl_l2_norm_diff (vector, self)": ("SELECT sum(wl_l2_norm_diff(w, w)) FROM weights",
                                           lambda: norm_diff(rows, rows).sum(), ("macro", "python")),
        "wl_w1 (vector, self)": ("SELECT sum(wl_w1(w, w)) FROM weights", lambda: wasserstein_1(rows, rows).sum(),
                                 ("python",)),
        "wl_mse_layer fc1 (vector, self)": ("SELECT sum(wl_mse_layer(w, w, 'fc1')) FROM weights",
                                            lambda: mse(rows[:, 1514:2254], rows[:, 1514:2254]).sum(), ("python",)),
        "wl_mse_by_id (pairs)": ("SELECT sum(wl_mse_by_id(a_id, b_id)) FROM pair_ids", np_pairs(mse), ("python",)),
        "wl_w1_by_id (pairs)": ("SELECT sum(wl_w1_by_id(a_id, b_id)) FROM pair_ids", np_pairs(wasserstein_1),
                                ("python",)),
    }
    print(f"{n} rows of {rows.shape[1]} float32, best of {rounds} alternating rounds, load {figures['load_1min']:.2f}")
    for name, (sql, numpy_fn, forms) in cases.items():
        best = {"numpy": float("inf"), **{f: float("inf") for f in forms}}
        for _ in range(rounds):  # alternate contenders round by round
            for who in best:
                t = time.perf_counter()
                numpy_fn() if who == "numpy" else cons[who].sql(sql).fetchall()
                best[who] = min(best[who], time.perf_counter() - t)
        entry = {"numpy_rows_per_s": round(n / best["numpy"])}
        line = f"  {name:32s} numpy {n / best['numpy']:10,.0f} rows/s"
        for f in forms:
            entry[f"{f}_rows_per_s"] = round(n / best[f])
            entry[f"{f}_over_numpy"] = round(best["numpy"] / best[f], 3)
            line += f"   {f} {n / best[f]:10,.0f} ({best['numpy'] / best[f]:.2f}x)"
        figures[name] = entry
        print(line)
    for con in cons.values():
        con.close()
    emit("udf", figures)


if __name__ == "__main__":
    main()
