"""Bounded memory: peak RSS and wall time of the weight consumers, today's code against the streamed one.

Two synthetic CNN-s lakes (``synthetic_rows`` of the full 1,013 x 6 x 6 grid, one commit per
initialisation): one init (36,468 models, 0.36 GB, fits every budget) and ``--inits`` inits
(default 4: 145,872 models, 1.44 GB, several times ``--budget``).  Each step runs in a fresh
child process (peak = its VmHWM) with the code of the commit before streaming
(``git archive`` of :data:`BASE_COMMIT`) and with this tree under ``WEIGHTLAKE_MEMORY``;
rounds alternate baseline and contender, best time and lowest peak are reported.

    .venv/bin/python benchmarks/bench_bounded.py [--inits 4] [--budget 256MB] [--rounds 2]

``--million`` measures issue 10's million-model steps instead: each step on the lake of 28 inits
(1,021,104 models, 10 GB) under ``--budget`` against the same step on the lake of one init (36,468
models, fits) in the same run, rounds alternated, each step in a fresh child with its VmHWM and
its peak anonymous memory (``RssAnon`` sampled every 5 ms: memory-mapped chunk pages are the
kernel's page cache, file-backed, and count in VmHWM but not in RssAnon).  The pair steps use
scenario ``million`` (all ordered disjoint pairs of 2-digit subsets in every slice; declared
once: 1,270,080 pairs on the big lake, 45,360 on the small one).

    .venv/bin/python benchmarks/bench_bounded.py --million --budget 1GB --rounds 2

Each time (whole step, epoch 1, epoch 2) is the best of its rounds on its own; peaks are the
highest of any round.  ``loader`` is ``pairs.loader()`` as it is (a mapped gather split over
two threads), ``loader_before`` the same with the mapped gather on one thread (the code before
that change; on the 36k lake the two are the same code), ``loader_prefetch`` with
``prefetch=1``; the 1M rows also give ``ratio_epoch1`` and ``ratio_epoch2``: per-pair time at
1M over per-pair time at 36k of the same step.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BENCH_DATA, emit, run_child  # noqa: E402

BASE_COMMIT = "5d60b474d8f12a2b25d0ec764375e8144bb64358"
"""main before bounded reads: every consumer decodes the whole zoo."""
ZOO = "mnist-cnn-s"
INITS = ("kaiming_uniform", "xavier_uniform", "xavier_normal", "uniform", "normal", "kaiming_normal")
HERE = Path(__file__).resolve().parent.parent

STEPS: dict[str, str] = {
    "import": "import weightlake, torch, duckdb, polars\nresult = {}",
    "spectra": "from weightlake.compute.analyses import analyze_spectra\n"
               "r = analyze_spectra(ROOT, zoo=ZOO)\nresult = {'rows': r.rows}",
    "sql_l2": "import weightlake as wl\n"
              "df = wl.open_lake(ROOT).sql('SELECT m.epoch, avg(wl_l2(w)) AS l2 FROM models m JOIN weights "
              "USING (model_id) GROUP BY 1')\nresult = {'rows': df.height}",
    "sql_selfjoin": "import weightlake as wl\n"
                    "df = wl.open_lake(ROOT).sql('SELECT count(*) AS n, avg(array_distance(a.w, b.w)) AS d "
                    "FROM weights a JOIN weights b ON a.model_id + 1 = b.model_id')\nresult = {'rows': int(df[0, 0])}",
    "verify": "import weightlake as wl\nfrom weightlake.verify import verify\n"
              "r = verify(wl.open_lake(ROOT))\nassert r.ok, r.problems[:3]\nresult = {}",
    "export": "import weightlake as wl\nfrom weightlake.ingest.csv_zoo import export_csv\n"
              "n = export_csv(wl.open_lake(ROOT), OUT, zoo=ZOO, where=\"init = 'kaiming_uniform' AND epoch = 36\")\n"
              "result = {'rows': n}",
}


SAMPLER = """
import threading as _th, time as _time
_peak = [0]
def _sample():
    while True:
        for _l in open('/proc/self/status'):
            if _l.startswith('RssAnon'):
                _peak[0] = max(_peak[0], int(_l.split()[1]))
        _time.sleep(0.005)
_th.Thread(target=_sample, daemon=True).start()
"""
SCENARIO = {"name": "million", "digits": "0-9", "sizes": "2", "overlap": 0, "split": "random"}
_LOOP = ("import resource\nt0 = time.perf_counter()\nn = sum(len(b['pair_id']) for b in loaders[0])\n"
         "r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()\n"
         "n2 = sum(len(b['pair_id']) for b in loaders[1])\nassert n == n2\n"
         "t2, r2 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)\n"
         "result = {'rows': n, 'loop_s': t1 - t0, 'loop2_s': t2 - t1, 'majflt2': r2.ru_majflt - r1.ru_majflt,\n"
         "          'cpu2_s': r2.ru_utime + r2.ru_stime - r1.ru_utime - r1.ru_stime}")
"""Epochs 1 and 2 of ``loaders``; epoch 2's major page faults (pages read from disk) and CPU time too."""
MILLION_STEPS: dict[str, str] = {
    "spectra": STEPS["spectra"],
    "sql_l2": STEPS["sql_l2"],
    "sql_by_id": "import weightlake as wl\n"
                 "df = wl.open_lake(ROOT).sql(\"SELECT count(*) AS n, avg(wl_mse_by_id(a_id, target_id)) AS mse "
                 "FROM pairs WHERE scenario = 'million'\")\nresult = {'rows': int(df[0, 0])}",
    # one epoch of the pair loader over every split of the scenario (>= a million pairs on the big lake)
    # epoch 1 checks each chunk on first use (reads the whole zoo once); epoch 2 is the steady state
    "loader": ("import weightlake as wl\npairs = wl.open_lake(ROOT).pairs('million')\n"
               "loaders = [pairs.loader(batch_size=512, epoch=e) for e in (1, 2)]\n" + _LOOP),
    # the loader as before issue 10's steady-epoch work: one thread per mapped gather (36k: the same code)
    "loader_before": ("import weightlake as wl\nfrom weightlake.storage.mapped import MappedRows\n"
                      "lake = wl.open_lake(ROOT)\nentry = lake.manifest.zoo(ZOO)\n"
                      "if not lake.fits(ZOO):\n"
                      "    lake._sources[(ZOO, 'mmap')] = MappedRows(lake.root, entry.segments, threads=1)\n"
                      "pairs = lake.pairs('million')\n"
                      "loaders = [pairs.loader(batch_size=512, epoch=e) for e in (1, 2)]\n" + _LOOP),
    # the loader gathering the next batch in a background thread (prefetch=1) while the (empty) loop runs
    "loader_prefetch": ("import weightlake as wl\npairs = wl.open_lake(ROOT).pairs('million')\n"
                        "loaders = [pairs.loader(batch_size=512, epoch=e, prefetch=1) for e in (1, 2)]\n" + _LOOP),
    # the same batches gathered straight from the decoded zoo with numpy (small lake only): the reference
    "gather": "import numpy as np, weightlake as wl\nfrom weightlake.serve.pairset import cut_batches, epoch_order\n"
              "pairs = wl.open_lake(ROOT).pairs('million')\n_, w = pairs.lake.zoo_weights(pairs.zoo)\n"
              "rows = np.ascontiguousarray(pairs.zoo_rows().T)\nloop = []\n"
              "for e in (1, 2):\n    t0, n = time.perf_counter(), 0\n"
              "    for b in cut_batches(epoch_order(len(pairs), seed=0, epoch=e), 512):\n"
              "        n += len(w[rows[:, b].reshape(-1)])\n    loop.append(time.perf_counter() - t0)\n"
              "result = {'rows': n // 3, 'loop_s': loop[0], 'loop2_s': loop[1]}",
    # the loader on preadv row reads instead of mapped chunks (big lake only; the first 400 batches)
    "loader_pread": "import itertools, weightlake as wl\nfrom weightlake.storage.mapped import MappedRows\n"
                    "lake = wl.open_lake(ROOT)\nentry = lake.manifest.zoo(ZOO)\n"
                    "lake._sources[(ZOO, 'mmap')] = MappedRows(lake.root, entry.segments, method='pread')\n"
                    "pairs = lake.pairs('million')\nt0 = time.perf_counter()\n"
                    "n = sum(len(b['pair_id']) for b in itertools.islice(pairs.loader(batch_size=512, epoch=1), 400))\n"
                    "result = {'rows': n, 'loop_s': time.perf_counter() - t0}",
    "loader_mmap400": "import itertools, weightlake as wl\npairs = wl.open_lake(ROOT).pairs('million')\n"
                      "t0 = time.perf_counter()\n"
                      "n = sum(len(b['pair_id']) for b in itertools.islice(pairs.loader(batch_size=512, epoch=1), 400))\n"
                      "result = {'rows': n, 'loop_s': time.perf_counter() - t0}",
}
"""Steps of ``--million``; ``rows`` is what the step made or served, ``loop_s`` the serving loop alone."""
PER_MODEL = {"spectra", "sql_l2"}
"""Steps whose per-unit cost is per model; the others are per pair."""


def declare_million(root: Path) -> int:
    """Declare scenario ``million`` on ``root`` once; returns its number of pairs."""
    import weightlake as wl
    from weightlake.scenarios import declare_scenario

    lake = wl.open_lake(root)
    if "pairs" in lake.tables and lake.table("pairs").filter(
            __import__("polars").col("scenario") == SCENARIO["name"]).select("pair_id").head(1).collect().height:
        return len(lake.pairs(SCENARIO["name"]))
    args = {k: v for k, v in SCENARIO.items() if k != "name"}
    declare_scenario(root, SCENARIO["name"], zoo=ZOO, **args)
    return len(wl.open_lake(root).pairs(SCENARIO["name"]))


def run_with_budget(code: str, budget: str | None) -> dict[str, Any]:
    """``run_child(code)`` with ``WEIGHTLAKE_MEMORY`` set to ``budget`` (unset when None), then restored."""
    old = os.environ.pop("WEIGHTLAKE_MEMORY", None)
    if budget:
        os.environ["WEIGHTLAKE_MEMORY"] = budget
    try:
        return run_child(code)
    finally:
        os.environ.pop("WEIGHTLAKE_MEMORY", None)
        if old is not None:
            os.environ["WEIGHTLAKE_MEMORY"] = old


def run_million_step(step: str, root: Path, budget: str | None) -> dict[str, Any]:
    code = (f"import sys, time\nsys.path.insert(0, {str(HERE)!r})\nROOT, ZOO = {str(root)!r}, {ZOO!r}\n" + SAMPLER
            + MILLION_STEPS[step] + "\nresult['peak_anon_gb'] = _peak[0] * 1024 / 1e9\n")
    return run_with_budget(code, budget)


def million(args: argparse.Namespace) -> None:
    """Issue 10's million-model table: every step on both lakes, rounds alternated, best of rounds."""
    lakes = {"1M": synthetic_lake(28), "36k": synthetic_lake(1)}
    units = {case: {"models": int(wl_models(root)), "pairs": declare_million(root)} for case, root in lakes.items()}
    steps = [s for s in args.steps.split(",") if s in MILLION_STEPS] if args.steps != ",".join(STEPS) \
        else ["spectra", "sql_l2", "sql_by_id", "loader", "loader_before", "loader_prefetch", "gather", "loader_pread", "loader_mmap400"]
    best: dict[tuple[str, str], dict[str, float]] = {}
    for rnd in range(args.rounds):
        for step in steps:
            cases = ["1M", "36k"] if rnd % 2 == 0 else ["36k", "1M"]
            for case in cases:
                if (step == "gather" and case == "1M") or (step in ("loader_pread", "loader_mmap400") and case == "36k"):
                    continue
                got = run_million_step(step, lakes[case], args.budget if case == "1M" else None)
                prev = best.get((case, step), got)
                # best of rounds for each time on its own; peaks are the highest of any round
                best[(case, step)] = {**got, **{k: min(got[k], prev[k]) for k in ("seconds", "loop_s", "loop2_s")
                                                if k in got},
                                      **{k: max(got[k], prev[k]) for k in ("peak_gb", "peak_anon_gb")}}
                print(f"round {rnd} {case:4} {step:15} {got['seconds']:8.2f} s  loop {got.get('loop_s', 0):7.2f} s  "
                      f"loop2 {got.get('loop2_s', 0):7.2f} s (cpu {got.get('cpu2_s', 0):6.2f} s, "
                      f"{got.get('majflt2', 0)} major faults)  "
                      f"VmHWM {got['peak_gb']:.2f} GB  RssAnon {got['peak_anon_gb']:.2f} GB  load "
                      f"{os.getloadavg()[0]:.1f}", file=sys.stderr)
    load = round(os.getloadavg()[0], 1)
    for (case, step), got in sorted(best.items()):
        unit = "models" if step in PER_MODEL else "pairs"
        n = got.get("rows") if unit == "pairs" else units[case]["models"]
        secs = got.get("loop_s", got["seconds"])
        extra = {"loop2_s": round(got["loop2_s"], 2), "us_per_unit2": round(1e6 * got["loop2_s"] / max(1, n), 2)} \
            if "loop2_s" in got else {}
        ratio = {}
        if case == "1M" and ("36k", step) in best and "loop2_s" in got:  # per pair at 1M over per pair at 36k
            small = best[("36k", step)]
            per = {k: (got[k] / max(1, n)) / (small[k] / max(1, small["rows"])) for k in ("loop_s", "loop2_s")}
            ratio = {"ratio_epoch1": round(per["loop_s"], 2), "ratio_epoch2": round(per["loop2_s"], 2)}
        emit(f"million-{case}-{step}", {**ratio, "seconds": round(got["seconds"], 2), "loop_s": round(secs, 2), **extra,
                                        "unit": unit, "n": n, "us_per_unit": round(1e6 * secs / max(1, n), 2),
                                        "peak_gb": round(got["peak_gb"], 3),
                                        "peak_anon_gb": round(got["peak_anon_gb"], 3),
                                        "budget": args.budget if case == "1M" else "default", "load": load})


def wl_models(root: Path) -> int:
    import weightlake as wl

    return wl.open_lake(root).manifest.zoo(ZOO).n_models


def baseline_src(data: Path = BENCH_DATA) -> Path:
    """The package as it was at :data:`BASE_COMMIT`, extracted once."""
    target = data / f"baseline-{BASE_COMMIT[:8]}"
    if not (target / "weightlake").exists():
        target.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(HERE), "archive", BASE_COMMIT, "weightlake"], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def synthetic_lake(n_inits: int, data: Path = BENCH_DATA) -> Path:
    """A lake of ``n_inits`` x 36,468 synthetic CNN-s models, one commit (segment) per init; built once."""
    import polars as pl

    from weightlake.arch import CNN_S
    from weightlake.ingest.common import IngestReport, ZooWriter
    from weightlake.storage.transaction import transaction
    from weightlake.zoo.synthetic import all_labels, synthetic_rows

    root = data / f"lake-bounded-{n_inits}"
    if (root / "_current").exists():
        return root
    labels = all_labels()
    names = [*INITS, *(f"synthetic_{k}" for k in range(len(INITS), n_inits))]  # beyond six: numbered inits
    for k, init in enumerate(names[:n_inits]):
        t = time.perf_counter()
        with transaction(root) as tx:
            writer = ZooWriter(tx, ZOO, CNN_S, IngestReport(zoo=ZOO, source=init))
            metas, blocks = [], []
            for meta, weights in synthetic_rows(labels, seed=100 + k):
                metas += meta
                blocks.append(weights)
                if len(metas) >= 4096:
                    writer.add(_frame(metas, init, pl), _stack(blocks))
                    metas, blocks = [], []
            if metas:
                writer.add(_frame(metas, init, pl), _stack(blocks))
            writer.finish()
            tx.commit({"op": "bench-synthetic", "zoo": ZOO, "summary": f"synthetic {init}"})
        print(f"built {init} in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    return root


def _stack(blocks: list[Any]) -> Any:
    import numpy as np

    return np.concatenate(blocks)


def _frame(meta: list[tuple[Any, ...]], init: str, pl: Any) -> Any:
    return pl.DataFrame({"classes": [list(m[0]) for m in meta], "class_mask": [sum(1 << c for c in m[0]) for m in meta],
                         "n_classes": [len(m[0]) for m in meta], "activation": [m[1] for m in meta],
                         "epoch": [m[2] for m in meta], "accuracy": [m[3] for m in meta], "init": init,
                         "fallback": False, "source_file": f"synthetic-{init}"})


def run_step(step: str, src: Path, root: Path, budget: str | None) -> dict[str, Any]:
    code = (f"import sys\nsys.path.insert(0, {str(src)!r})\nROOT, ZOO, OUT = {str(root)!r}, {ZOO!r}, "
            f"{str(BENCH_DATA.resolve() / 'bounded-export.csv')!r}\n" + STEPS[step])
    return run_with_budget(code, budget)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inits", type=int, default=4)
    ap.add_argument("--budget", default="256MB")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", default=",".join(STEPS))
    ap.add_argument("--bounded-only", type=int, default=0,
                    help="Also run the steps with the bounded code alone on a lake of this many inits x 36,468 "
                         "models (28: 1,021,104 models, 10 GB; today's code would need the whole zoo in RAM).")
    ap.add_argument("--million", action="store_true", help="issue 10's million-model steps (see the module notes)")
    args = ap.parse_args(argv)
    if args.million:
        million(args)
        return
    base, ours = baseline_src(), HERE
    lakes = {"fits": synthetic_lake(1), "big": synthetic_lake(args.inits)}
    steps = args.steps.split(",")
    best: dict[tuple[str, str, str], dict[str, float]] = {}
    for rnd in range(args.rounds):
        for case, root in lakes.items():
            for step in steps:
                if step == "export" and case == "fits":
                    continue
                for who, src, budget in (("today", base, None), ("bounded", ours, args.budget)):
                    got = run_step(step, src, root, budget if case == "big" else None)
                    key = (case, step, who)
                    prev = best.get(key, {"seconds": float("inf"), "peak_gb": float("inf")})
                    best[key] = {"seconds": min(prev["seconds"], got["seconds"]),
                                 "peak_gb": min(prev["peak_gb"], got["peak_gb"])}
                    print(f"round {rnd} {case:4} {step:12} {who:7} {got['seconds']:7.2f} s  peak "
                          f"{got['peak_gb']:.2f} GB", file=sys.stderr)
    if args.bounded_only:
        root = synthetic_lake(args.bounded_only)
        for step in steps:
            if step != "sql_selfjoin":  # a hash join holds one side of the zoo inside DuckDB
                got = run_step(step, ours, root, args.budget)
                best[("huge", step, "bounded")] = got
                emit(f"bounded-huge-{step}", {"bounded_s": round(got["seconds"], 2),
                                             "bounded_peak_gb": round(got["peak_gb"], 3), "budget": args.budget,
                                             "models": args.bounded_only * 36_468, "load": round(os.getloadavg()[0], 1)})
    load = os.getloadavg()
    for case in lakes:
        for step in steps:
            if (case, step, "today") not in best:
                continue
            a, b = best[(case, step, "today")], best[(case, step, "bounded")]
            emit(f"bounded-{case}-{step}", {"today_s": round(a["seconds"], 2), "bounded_s": round(b["seconds"], 2),
                                            "today_peak_gb": round(a["peak_gb"], 3),
                                            "bounded_peak_gb": round(b["peak_gb"], 3),
                                            "budget": args.budget if case == "big" else "default",
                                            "load": round(load[0], 1)})


if __name__ == "__main__":
    main()
