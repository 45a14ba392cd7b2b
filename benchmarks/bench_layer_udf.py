"""Per-layer SQL forms against numpy: ``wl_mse_layer``, ``wl_mse_layer_by_id`` and macro candidates over slices.

    python benchmarks/bench_layer_udf.py [--data bench-data] [--rounds 3] [--quick] [--before /work/main]

Every form computes the MSE of layer fc1 of each model with itself over all rows of the lake
(decoded in memory once per process); numpy gets the same rows.  The ``pairs:`` forms compute it
for each model and the next (model ids ``i``, ``i + 1``), against numpy on the same row views
(no gather); ``shuffled pairs:`` for each model and one of a random permutation, against numpy
gathering the permuted rows.  Each round is a fresh process
that runs every form (a warm-up, then the better of two) in turn, backwards in odd rounds, so
contenders alternate round by round; best of rounds, with the load average of each round.
``--before DIR`` adds DIR's ``analysis/udfs.py`` (e.g. the main branch) as the baseline of the
Python forms, in the same processes.  Goal (issue 16): >= 0.8x
numpy.  The no-op Python UDF over the same arguments is the ceiling of any Python UDF that takes
``FLOAT[P]`` values: DuckDB converts each argument to Arrow before the call.

That conversion writes each 2,048-row block into a fresh buffer of over 32 MB, which glibc's
malloc maps afresh every time (its dynamic mmap threshold stops at 32 MB), so most of its cost
is page faults.  ``--malloc-tunable`` runs the rounds with
``GLIBC_TUNABLES=glibc.malloc.mmap_threshold=1073741824`` (set before the process starts; a
running process cannot raise it past 32 MB with ``mallopt``) to measure the forms without them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

TUNABLE = "glibc.malloc.mmap_threshold=1073741824"

sys.path.insert(0, str(Path(__file__).parent))
from _common import BENCH_DATA, emit, full_lake, quick_lake, run_child  # noqa: E402

ROUND = """
import importlib.util, os, time
import numpy as np, pyarrow as pa
import weightlake as wl
from weightlake.analysis.metrics import mse
from weightlake.analysis.udfs import register_udfs
lake = wl.open_lake(sys.argv[1])
ids, rows = lake.zoo_weights(lake.zoos[0])
con = lake.connect(udfs=False)
register_udfs(con, lake)
import duckdb, duckdb.sqltypes as T
vec = duckdb.array_type(T.FLOAT, rows.shape[1])
con.create_function('noop_layer', lambda a, b, layer: pa.array(np.zeros(len(a))), [vec, vec, T.VARCHAR],
                    T.DOUBLE, type='arrow', side_effects=False)
before = None
if sys.argv[2] != '-':
    spec = importlib.util.spec_from_file_location('before_udfs', sys.argv[2] + '/weightlake/analysis/udfs.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    before = lake.connect(udfs=False)
    mod.register_udfs(before, lake)
layer = lake.arch(lake.zoos[0]).layer('fc1')
perm = np.random.default_rng(0).permutation(len(ids))
con.register('bench_pairs', pa.table({'a': pa.array(ids), 'b': pa.array(ids[perm])}))
s, e = layer.start, layer.stop
sq = 'pow(list_distance({a}, {a}), 2) / ' + str(e - s)
forms = {
    'numpy': lambda: mse(rows[:, s:e], rows[:, s:e]).sum(),
    'wl_mse_layer(w, w, fc1), this': (con, "SELECT sum(wl_mse_layer(w, w, 'fc1')) FROM weights"),
    'wl_mse_layer(w, w, fc1), before': (before, "SELECT sum(wl_mse_layer(w, w, 'fc1')) FROM weights"),
    'wl_mse_layer_by_id(ids), this': (con, "SELECT sum(wl_mse_layer_by_id(model_id, model_id, 'fc1')) FROM models"),
    'wl_mse_layer_by_id(ids), before': (before, "SELECT sum(wl_mse_layer_by_id(model_id, model_id, 'fc1')) "
                                                "FROM models"),
    'no-op Python UDF (w, w, layer)': (con, "SELECT sum(noop_layer(w, w, 'fc1')) FROM weights"),
    'macro, w[a:b] float': (con, 'SELECT sum(' + sq.format(a=f'w[{s + 1}:{e}]') + ') FROM weights'),
    'macro, (w::DOUBLE[])[a:b]': (con, 'SELECT sum(' + sq.format(a=f'(w::DOUBLE[])[{s + 1}:{e}]') + ') FROM weights'),
    'macro, array_slice::FLOAT[L]': (con, f'SELECT sum(pow(array_distance(array_slice(w, {s + 1}, {e})::FLOAT[{e - s}], '
                                          f'array_slice(w, {s + 1}, {e})::FLOAT[{e - s}]), 2) / {e - s}) FROM weights'),
    'whole-vector wl_mse macro (scale)': (con, 'SELECT sum(wl_mse(w, w)) FROM weights'),
    'wl_mse(w, w) over the weights_fc1 view': (con, 'SELECT sum(wl_mse(w, w)) FROM weights_fc1'),
    'pairs: numpy': lambda: mse(rows[:-1, s:e], rows[1:, s:e]).sum(),
    'pairs: wl_mse over weights_fc1 a, b': (con, 'SELECT sum(wl_mse(a.w, b.w)) FROM weights_fc1 a '
                                                 'JOIN weights_fc1 b ON b.model_id = a.model_id + 1'),
    'pairs: wl_mse_layer_by_id': (con, "SELECT sum(wl_mse_layer_by_id(a.model_id, b.model_id, 'fc1')) "
                                       'FROM models a JOIN models b ON b.model_id = a.model_id + 1'),
    'shuffled pairs: numpy (gathers)': lambda: mse(rows[:, s:e], rows[perm, s:e]).sum(),
    'shuffled pairs: wl_mse over weights_fc1 a, b': (con, 'SELECT sum(wl_mse(a.w, b.w)) FROM bench_pairs p '
                                                          'JOIN weights_fc1 a ON a.model_id = p.a '
                                                          'JOIN weights_fc1 b ON b.model_id = p.b'),
    'shuffled pairs: wl_mse_layer_by_id': (con, "SELECT sum(wl_mse_layer_by_id(p.a, p.b, 'fc1')) FROM bench_pairs p"),
}
result = {'rows': len(ids), 'load': os.getloadavg()[0], 'seconds_by_form': {}}
order = list(forms.items())
for name, form in (order if int(sys.argv[3]) % 2 == 0 else order[::-1]):  # odd rounds run the forms backwards
    if not callable(form) and form[0] is None:
        continue
    for rep in range(3):  # one warm-up, then the better of two
        t = time.perf_counter()
        form() if callable(form) else form[0].sql(form[1]).fetchall()
        if rep:
            secs = time.perf_counter() - t
            result['seconds_by_form'][name] = min(secs, result['seconds_by_form'].get(name, secs))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=BENCH_DATA)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="small lake (4,096 rows), 2 rounds")
    ap.add_argument("--before", type=Path, help="a checkout whose analysis/udfs.py is the baseline (e.g. /work/main)")
    ap.add_argument("--malloc-tunable", action="store_true",
                    help=f"run the rounds with GLIBC_TUNABLES={TUNABLE} (no page faults per block)")
    args = ap.parse_args()
    if args.malloc_tunable:
        import os

        os.environ["GLIBC_TUNABLES"] = TUNABLE  # inherited by the fresh process of each round
    root = quick_lake(args.data) if args.quick else full_lake(args.data)
    rounds = 2 if args.quick else args.rounds
    best: dict[str, float] = {}
    loads, n = [], 0
    for r in range(rounds):
        out = run_child(ROUND, str(root.resolve()), str(args.before.resolve()) if args.before else "-", str(r))
        n = out["rows"]
        loads.append(round(out["load"], 2))
        for name, secs in out["seconds_by_form"].items():
            best[name] = min(best.get(name, float("inf")), secs)
        print(f"round {r + 1}: load {out['load']:.2f}, numpy {out['seconds_by_form']['numpy']:.3f} s, "
              f"wl_mse_layer {out['seconds_by_form']['wl_mse_layer(w, w, fc1), this']:.3f} s", flush=True)
    print(f"{n} rows, best of {rounds} rounds (a fresh process each, forms in turn), load per round {loads}"
          + (f", GLIBC_TUNABLES={TUNABLE}" if args.malloc_tunable else ""))
    for name, secs in best.items():
        group = next((g for g in ('pairs: numpy', 'shuffled pairs: numpy (gathers)') if name.startswith(g.split(':')[0] + ':')),
                     'numpy')
        ref = best[group]
        print(f"  {name:40s} {n / secs:10,.0f} rows/s  ({ref / secs:.2f}x numpy)")
    emit("layer_udf", {"rows": n, "load_1min": loads, "malloc_tunable": args.malloc_tunable, **{name: round(n / secs) for name, secs in best.items()}})


if __name__ == "__main__":
    main()
