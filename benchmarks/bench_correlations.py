"""Parameter x metadata correlation table: matrix formulation vs scipy.stats per column.

36,468 synthetic models x 2,464 parameters (~N(0, 0.1), with a few parameters tied to accuracy,
epoch and class count) against the expanded metadata of the CSV zoo: accuracy, epoch,
activation (6 one-hot), class presence (10) and class count = 19 columns (``--inits`` adds
the 6 initialisations one-hot).  Timed: Pearson and Spearman kernels, and the full long table
(both methods, p-values, BH q-values, Bonferroni) from ``param_correlations``.  The scipy
reference (``pearsonr`` / ``spearmanr`` per parameter x metadata column) runs on a subsample of
parameters and is extrapolated; its r and p are checked against ours.

    .venv/bin/python benchmarks/bench_correlations.py [--rows 36468] [--scipy-params 20] [--repeat 2] [--inits]
        [--before /work/main --rounds 3]

``--before DIR`` also times the full table (both methods) in fresh processes, this checkout's
code and DIR's alternating round by round (best of ``--rounds``), with the load average.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import scipy.stats as st

sys.path.insert(0, str(Path(__file__).parent))
from _common import FULL_ROWS, best_time, emit, run_child  # noqa: E402

from weightlake.analysis import correlations as C  # noqa: E402
from weightlake.analysis._rows import default_workers  # noqa: E402
from weightlake.arch import ACTIVATIONS, CNN_S, EPOCH_BINS, INITS  # noqa: E402


def synthetic(n: int, inits: bool, seed: int = 0) -> tuple[np.ndarray, pl.DataFrame]:
    rng = np.random.default_rng(seed)
    rows = rng.standard_normal((n, CNN_S.n_params), dtype=np.float32)
    rows *= np.float32(0.1)
    masks = rng.integers(0, 2, (n, 10)).astype(bool)
    masks[masks.sum(axis=1) < 2, :2] = True
    epoch = rng.choice(EPOCH_BINS, n)
    acc = 60 + 30 * rng.random(n) + 40 * rows[:, 5]
    rows[:, 2254] += np.float32(0.01) * masks.sum(axis=1)
    rows[:, 1514] += np.float32(0.002) * epoch
    meta = {
        "accuracy": acc, "epoch": epoch,
        "activation": np.asarray(ACTIVATIONS)[rng.integers(0, 6, n)],
        "label": pl.Series([np.flatnonzero(m).tolist() for m in masks], dtype=pl.List(pl.Int64)),
    }
    if inits:
        meta["init"] = np.asarray(INITS)[rng.integers(0, 6, n)]
    return rows, pl.DataFrame(meta)


def scipy_loop(rows: np.ndarray, y: np.ndarray, fn) -> tuple[np.ndarray, np.ndarray]:
    r = np.empty((rows.shape[1], y.shape[1]))
    p = np.empty_like(r)
    for i in range(rows.shape[1]):
        col = rows[:, i].astype(np.float64)
        for j in range(y.shape[1]):
            res = fn(col, y[:, j])
            r[i, j], p[i, j] = res.statistic, res.pvalue
    return r, p



TABLE = """
import time as _t
import weightlake  # first, as the weightlake command does: it picks numpy's sort kernels (weightlake/_cpu.py)
if sys.argv[2] != '-':
    sys.path.insert(0, sys.argv[2])
sys.path.insert(1, sys.argv[3])
from bench_correlations import synthetic
from weightlake.analysis import correlations as C
rows, meta = synthetic(int(sys.argv[1]), False)
C.correlate(rows[:500, :64], meta[:500])
t0, c0 = _t.perf_counter(), _t.process_time()
table = C.param_correlations(rows, meta)
result = {'table_s': _t.perf_counter() - t0, 'table_cpu_s': _t.process_time() - c0, 'rows': table.height,
          'code': C.__file__}
"""


def alternate(n: int, before: Path, rounds: int) -> dict:
    """The full table in fresh processes, this code and ``before``'s alternating; best of rounds."""
    here = str(Path(__file__).parent)
    best = {"this": float("inf"), "before": float("inf")}
    cpu = dict(best)
    load = [os.getloadavg()[0]]
    for _ in range(rounds):
        for who, where in (("this", "-"), ("before", str(before.resolve()))):
            out = run_child(TABLE, str(n), where, here)
            best[who], cpu[who] = min(best[who], out["table_s"]), min(cpu[who], out["table_cpu_s"])
            print(f"  {who:6s} {out['table_s']:6.2f} s wall, {out['table_cpu_s']:6.2f} s CPU, "
                  f"load {os.getloadavg()[0]:.2f}", flush=True)
        load.append(os.getloadavg()[0])
    print(f"full table in fresh processes, best of {rounds} alternating rounds, load {[round(x, 2) for x in load]}: "
          f"this {best['this']:.2f} s ({cpu['this']:.2f} s CPU), before {best['before']:.2f} s "
          f"({cpu['before']:.2f} s CPU): {best['before'] / best['this']:.2f}x faster")
    return {"table_fresh_s": round(best["this"], 3), "table_before_s": round(best["before"], 3),
            "table_fresh_cpu_s": round(cpu["this"], 3), "table_before_cpu_s": round(cpu["before"], 3),
            "alternating_rounds": rounds, "load_1min": [round(x, 2) for x in load]}


def dispatch(n: int, rounds: int, busy: int) -> dict:
    """The full table in fresh processes with weightlake's numpy dispatch and with numpy's own, alternating.

    ``busy`` spin loops run beside it the whole time (a loaded machine that can be reproduced).
    """
    here = str(Path(__file__).parent)
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
    best = {"weightlake": float("inf"), "numpy": float("inf")}
    cpu = dict(best)
    load = [os.getloadavg()[0]]
    try:
        for _ in range(rounds):
            for who in best:
                env = dict(os.environ, WEIGHTLAKE_NUMPY_AVX512="keep" if who == "numpy" else "")
                env.pop("NPY_DISABLE_CPU_FEATURES", None)
                out = run_child(TABLE, str(n), "-", here, env=env)
                best[who], cpu[who] = min(best[who], out["table_s"]), min(cpu[who], out["table_cpu_s"])
                print(f"  {who:10s} {out['table_s']:6.2f} s wall, {out['table_cpu_s']:6.2f} s CPU, "
                      f"load {os.getloadavg()[0]:.2f}", flush=True)
            load.append(os.getloadavg()[0])
    finally:
        for s in spinners:
            s.kill()
    print(f"full table, {busy} spin loops beside it, best of {rounds} alternating rounds, load "
          f"{[round(x, 2) for x in load]}: weightlake's dispatch {best['weightlake']:.2f} s "
          f"({cpu['weightlake']:.2f} s CPU), numpy's {best['numpy']:.2f} s ({cpu['numpy']:.2f} s CPU)")
    return {"busy": busy, "table_s": round(best["weightlake"], 3), "table_numpy_dispatch_s": round(best["numpy"], 3),
            "table_cpu_s": round(cpu["weightlake"], 3), "table_numpy_dispatch_cpu_s": round(cpu["numpy"], 3),
            "alternating_rounds": rounds, "load_1min": [round(x, 2) for x in load]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=FULL_ROWS)
    parser.add_argument("--scipy-params", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--inits", action="store_true", help="add the initialisation one-hot (25 columns)")
    parser.add_argument("--before", type=Path, help="a checkout whose code is the before figure (e.g. /work/main)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dispatch", action="store_true",
                        help="only the full table in fresh processes: weightlake's numpy dispatch vs numpy's own")
    parser.add_argument("--busy", type=int, default=0, help="with --dispatch: spin loops running beside it")
    args = parser.parse_args()
    if args.dispatch:
        emit("correlations-dispatch", dispatch(args.rows, args.rounds, args.busy))
        return
    fresh = alternate(args.rows, args.before, args.rounds) if args.before else {}

    rows, meta = synthetic(args.rows, args.inits)
    names, y = C.metadata_matrix(meta)
    n, p, k = rows.shape[0], rows.shape[1], y.shape[1]
    print(f"{n:,} models x {p:,} parameters (float32) against {k} metadata columns; cores {os.cpu_count()}, "
          f"threads {default_workers()}; best of {args.repeat}")
    C.correlate(rows[:500, :64], meta[:500])  # warm-up: imports, thread pools
    t_pear, r_pear = best_time(lambda: C.pearson_matrix(rows, y), args.repeat)
    t_spear, r_spear = best_time(lambda: C.spearman_matrix(rows, y), args.repeat)
    t_table, table = best_time(lambda: C.param_correlations(rows, meta), args.repeat)
    t_table_p, _ = best_time(lambda: C.param_correlations(rows, meta, methods=("pearson",)), args.repeat)

    s = min(args.scipy_params, p)
    cols = np.linspace(0, p - 1, s).astype(int)
    t_sp_p, (ref_r, ref_p) = best_time(lambda: scipy_loop(rows[:, cols], y, st.pearsonr), 1)
    t_sp_s, (ref_rs, _) = best_time(lambda: scipy_loop(rows[:, cols], y, st.spearmanr), 1)
    scale = p / s
    err_r = float(np.nanmax(np.abs(r_pear[cols] - ref_r)))
    err_rs = float(np.nanmax(np.abs(r_spear[cols] - ref_rs)))
    p_ours = C.correlation_pvalues(r_pear[cols], n)
    err_p = float(np.nanmax(np.abs(p_ours - ref_p) / np.maximum(ref_p, 1e-300)))

    tests = p * k
    print(f"{'pearson_matrix':40s} {t_pear:7.2f} s  {tests / t_pear:>12,.0f} tests/s")
    print(f"{'spearman_matrix':40s} {t_spear:7.2f} s  {tests / t_spear:>12,.0f} tests/s")
    print(f"{'param_correlations, pearson only':40s} {t_table_p:7.2f} s  ({tests:,} rows with p, q, Bonferroni)")
    print(f"{'param_correlations, pearson + spearman':40s} {t_table:7.2f} s  ({table.height:,} rows)")
    print(f"{'scipy.stats.pearsonr loop (extrapolated)':40s} {t_sp_p * scale:7.1f} s  "
          f"(measured {s} params x {k}: {t_sp_p:.2f} s) -> {t_sp_p * scale / t_pear:,.0f}x slower")
    print(f"{'scipy.stats.spearmanr loop (extrapolated)':40s} {t_sp_s * scale:7.1f} s  "
          f"(measured {s} params x {k}: {t_sp_s:.2f} s) -> {t_sp_s * scale / t_spear:,.0f}x slower")
    print(f"agreement with scipy: |dr| pearson {err_r:.1e}, spearman {err_rs:.1e}; relative dp {err_p:.1e}")
    top = table.filter(pl.col("method") == "pearson").sort("p").head(3).select("feature", "against", "r", "q")
    print("strongest planted correlations:", top.rows())
    emit("correlations", {"rows": n, "params": p, "metadata_columns": k, "pearson_s": round(t_pear, 3),
                          "spearman_s": round(t_spear, 3), "table_pearson_s": round(t_table_p, 3),
                          "table_both_s": round(t_table, 3), "scipy_pearsonr_extrapolated_s": round(t_sp_p * scale, 1),
                          "scipy_spearmanr_extrapolated_s": round(t_sp_s * scale, 1), "max_abs_dr": max(err_r, err_rs),
                          "max_rel_dp": err_p, "goal_s": 3.0, **fresh})


if __name__ == "__main__":
    main()
