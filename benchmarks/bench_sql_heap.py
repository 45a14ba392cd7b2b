"""Python ``wl_*`` functions over ``FLOAT[P]`` through ``lake.sql``, with glibc's heap kept during the query and without.

    python benchmarks/bench_sql_heap.py [--data bench-data] [--rounds 3] [--quick]

Each round runs two fresh processes, one per contender, in alternating order: ``kept`` (the
default: ``weightlake/_heap.py`` keeps freed blocks in the heap while a query naming a ``wl_*``
function runs) and ``default`` (``WEIGHTLAKE_MALLOC=default``: glibc as it comes). Each
process opens the full-size lake, decodes it, and runs every query through ``lake.sql`` (a
connection per query, as users and ``weightlake sql`` run them): a warm-up, then the better of
two. Reported: best of rounds per query and contender, their ratio, the numpy time of the same
per-layer MSE on the decoded rows (the goal of issue 16 is 0.8x of it), minor page faults per
query, and each process's peak RSS. A ``wl_mse`` macro (no Python call) is the control.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import BENCH_DATA, emit, full_lake, quick_lake, run_child  # noqa: E402

QUERIES = {
    "wl_mse_layer(w, w, 'fc1')": "SELECT sum(wl_mse_layer(w, w, 'fc1')) FROM weights",
    "wl_w1(w, w)": "SELECT sum(wl_w1(w, w)) FROM weights",
    "wl_mae(w, w)": "SELECT sum(wl_mae(w, w)) FROM weights",
    "wl_mse_layer_by_id(a, a + 1, 'fc1')": ("SELECT sum(wl_mse_layer_by_id(a.model_id, b.model_id, 'fc1')) FROM models a "
                                            "JOIN models b ON b.model_id = a.model_id + 1"),
    "wl_mse(w, w) macro (control)": "SELECT sum(wl_mse(w, w)) FROM weights",
}

ROUND = """
import json, resource, time
import weightlake as wl
from weightlake.analysis.metrics import mse
queries = json.loads(sys.argv[2])
lake = wl.open_lake(sys.argv[1])
ids, rows = lake.zoo_weights(lake.zoos[0])
layer = lake.arch(lake.zoos[0]).layer('fc1')
block = rows[:, layer.start:layer.stop]
out = {'query_s': {}, 'faults': {}}
for rep in range(3):
    t = time.perf_counter(); mse(block, block).sum(); secs = time.perf_counter() - t
    if rep:
        out['query_s']['numpy mse of fc1'] = min(secs, out['query_s'].get('numpy mse of fc1', secs))
for name, q in queries.items():
    for rep in range(3):  # a warm-up, then the better of two
        f = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t = time.perf_counter(); lake.sql(q); secs = time.perf_counter() - t
        if rep:
            out['query_s'][name] = min(secs, out['query_s'].get(name, secs))
            out['faults'][name] = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f
result = out
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=BENCH_DATA)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="the small lake (4,096 rows), at most 2 rounds")
    args = ap.parse_args()
    import json

    root = (quick_lake(args.data) if args.quick else full_lake(args.data)).resolve()
    rounds = min(args.rounds, 2) if args.quick else args.rounds
    envs = {"kept": {k: v for k, v in os.environ.items() if k != "WEIGHTLAKE_MALLOC"},
            "default": {**os.environ, "WEIGHTLAKE_MALLOC": "default"}}
    best: dict[str, dict[str, float]] = {k: {} for k in envs}
    faults: dict[str, dict[str, int]] = {k: {} for k in envs}
    peak: dict[str, float] = {}
    loads = [round(os.getloadavg()[0], 2)]
    for r in range(rounds):
        for name in (list(envs) if r % 2 == 0 else list(envs)[::-1]):  # contenders alternate, order flipped each round
            out = run_child(ROUND, str(root), json.dumps(QUERIES), env=envs[name])
            for q, secs in out["query_s"].items():
                best[name][q] = min(secs, best[name].get(q, secs))
            for q, n in out["faults"].items():
                faults[name][q] = min(n, faults[name].get(q, n))
            peak[name] = min(out["peak_gb"], peak.get(name, out["peak_gb"]))
        loads.append(round(os.getloadavg()[0], 2))
    numpy_s = min(best[k]["numpy mse of fc1"] for k in envs)
    print(f"best of {rounds} rounds (fresh processes, contenders alternating), load {loads}")
    print(f"  numpy mse of fc1 on the decoded rows: {numpy_s * 1000:.0f} ms")
    print(f"  {'query':40s} {'kept':>9s} {'default':>9s}  speed-up   faults kept / default")
    for q in QUERIES:
        k, d = best["kept"][q], best["default"][q]
        vs = f"   ({numpy_s / k:.2f}x numpy)" if q.startswith("wl_mse_layer(") else ""
        print(f"  {q:40s} {k * 1000:7.0f}ms {d * 1000:7.0f}ms  {d / k:6.2f}x   {faults['kept'][q]:>8,} / "
              f"{faults['default'][q]:<8,}{vs}")
    print(f"  peak RSS: kept {peak['kept']:.2f} GB, default {peak['default']:.2f} GB")
    emit("sql_heap", {"rounds": rounds, "load_1min": loads, "numpy_mse_fc1_s": round(numpy_s, 4),
                      **{f"{c}:{q}": round(best[c][q], 4) for c in envs for q in QUERIES},
                      "peak_gb": {c: round(v, 2) for c, v in peak.items()}})


if __name__ == "__main__":
    main()
