"""A wl_ UDF over every row of a full-size lake against the same function on numpy directly.

    python benchmarks/bench_udf.py [--data bench-data]

Both sides get the same rows already decoded in memory (the lake's weights are decoded
once per handle). Two UDF forms are timed: the vector form ``wl_m(a.w, b.w)`` (DuckDB
scans FLOAT[2464] values and hands them over as Arrow in 2,048-row chunks) and the id
form ``wl_m_by_id(a_id, b_id)`` (only ids cross; rows are gathered from memory). Pairs are
(model i, model n-1-i), as numpy gets them. Goal: the UDF at least 0.5x numpy.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import BENCH_DATA, best_of, emit, full_lake  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=BENCH_DATA)
    args = ap.parse_args()
    import weightlake as wl
    from weightlake.analysis.metrics import mse, wasserstein_1

    lake = wl.open_lake(full_lake(args.data))
    ids, rows = lake.zoo_weights("mnist-cnn-s")
    n = len(ids)
    order = np.arange(n)[::-1]
    con = lake.connect()
    con.execute("CREATE TEMP TABLE pair_ids AS SELECT model_id AS a_id, "
                f"{int(ids.max()) + int(ids.min())} - model_id AS b_id FROM models")
    figures = {"rows": n}

    def np_pairs(metric):  # numpy gets the gather too: it is part of serving pairs
        return lambda: metric(rows, rows[order]).sum()

    cases = {
        "wl_l2 (vector)": ("SELECT sum(wl_l2(w)) FROM weights",
                           lambda: np.sqrt(np.einsum("ij,ij->i", rows, rows, dtype=np.float64)).sum()),
        "wl_mse (vector, self)": ("SELECT sum(wl_mse(w, w)) FROM weights", lambda: mse(rows, rows).sum()),
        "wl_w1 (vector, self)": ("SELECT sum(wl_w1(w, w)) FROM weights", lambda: wasserstein_1(rows, rows).sum()),
        "wl_mse_by_id (pairs)": ("SELECT sum(wl_mse_by_id(a_id, b_id)) FROM pair_ids", np_pairs(mse)),
        "wl_w1_by_id (pairs)": ("SELECT sum(wl_w1_by_id(a_id, b_id)) FROM pair_ids", np_pairs(wasserstein_1)),
    }
    print(f"{n} rows of {rows.shape[1]} float32")
    for name, (sql, numpy_fn) in cases.items():
        t_udf = best_of(lambda q=sql: con.sql(q).fetchall(), repeat=3)
        t_np = best_of(numpy_fn, repeat=3)
        figures[name] = {"udf_rows_per_s": round(n / t_udf), "numpy_rows_per_s": round(n / t_np),
                         "udf_over_numpy": round(t_np / t_udf, 3)}
        print(f"  {name:22s} UDF {n / t_udf:10,.0f} rows/s   numpy {n / t_np:10,.0f} rows/s   "
              f"ratio {t_np / t_udf:.2f} (goal >= 0.5)")
    con.close()
    emit("udf", figures)


if __name__ == "__main__":
    main()
