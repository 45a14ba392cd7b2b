"""CSV ingest up to a million models: cost per model and peak memory as the zoo grows.

A CSV of a million CNN-s models is about 30 GB, more than the shared disk holds beside the
lakes, so the million-model zoo is ingested the way a zoo that grows is: as 28 CSV files of
36,468 models each (one per initialisation of ``bench-data/lake-bounded-28``, written with
``export csv`` just before its ingest and deleted after), appended to one zoo.  Ingest
streams each file in 8,192-row batches, so a file's length does not change its memory; what
this measures is whether anything grows with the zoo already in the lake (the duplicate
check, the manifest, the snapshot commit).

The baseline is the same file ingested into an empty lake (the 36,468-model zoo that fits in
memory), run right after the append of every ``--every``-th file so both see the same load;
``paired_ratios`` are those pairs (on a machine whose load swings, the figure to read), and
``ratio`` is the whole run's cost per model against the best baseline round.
Each ingest runs in a fresh child with ``WEIGHTLAKE_MEMORY`` at ``--budget``; peak is the
child's VmHWM.

    .venv/bin/python benchmarks/bench_ingest_million.py --files 28 --every 4 --budget 1GB
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import BENCH_DATA, emit, run_child  # noqa: E402
from bench_bounded import ZOO, synthetic_lake  # noqa: E402

INGEST = ("from weightlake.ingest.csv_zoo import ingest_csv\n"
          "rep = ingest_csv(ROOT, CSV, zoo=ZOO, init=INIT)\n"
          "result = {'rows': rep.rows_added}\n")


def export_init(source: Path, init: str, out: Path) -> int:
    import weightlake as wl
    from weightlake.ingest.csv_zoo import export_csv

    return export_csv(wl.open_lake(source), out, zoo=ZOO, where="init = $init", params={"init": init})


def ingest(root: Path, csv: Path, init: str, budget: str) -> dict:
    code = f"ROOT, CSV, ZOO, INIT = {str(root)!r}, {str(csv)!r}, {ZOO!r}, {init!r}\n" + INGEST
    os.environ["WEIGHTLAKE_MEMORY"] = budget
    try:
        return run_child(code)
    finally:
        os.environ.pop("WEIGHTLAKE_MEMORY", None)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=28, help="CSV files of 36,468 models to append (28: 1,021,104)")
    ap.add_argument("--every", type=int, default=4, help="run the empty-lake baseline after every N-th append")
    ap.add_argument("--budget", default="1GB")
    ap.add_argument("--keep", action="store_true", help="keep the ingested lake (10 GB at 28 files)")
    args = ap.parse_args(argv)

    source = synthetic_lake(28)
    inits = _inits(source)
    target, scratch = BENCH_DATA / "lake-ingest-million", BENCH_DATA / "lake-ingest-baseline"
    shutil.rmtree(target, ignore_errors=True)
    appended, base, paired, total_rows, total_s = [], [], [], 0, 0.0
    for k, init in enumerate(inits[:args.files]):
        csv = BENCH_DATA / f"ingest-million-{k}.csv"
        t = time.perf_counter()
        n = export_init(source, init, csv)
        exported = time.perf_counter() - t
        got = ingest(target, csv, init, args.budget)
        total_rows, total_s = total_rows + got["rows"], total_s + got["seconds"]
        appended.append(got)
        line = (f"file {k:2} ({init}): export {exported:5.1f} s, append {got['seconds']:6.2f} s "
                f"({1e6 * got['seconds'] / n:6.1f} us/model), peak {got['peak_gb']:.2f} GB, "
                f"zoo {total_rows:,} models, load {os.getloadavg()[0]:.1f}")
        if k % args.every == 0 or k == args.files - 1:
            shutil.rmtree(scratch, ignore_errors=True)
            b = ingest(scratch, csv, init, args.budget)
            base.append(b)
            paired.append(got["seconds"] / b["seconds"])
            line += f" | empty lake {b['seconds']:6.2f} s, peak {b['peak_gb']:.2f} GB"
            shutil.rmtree(scratch, ignore_errors=True)
        print(line, file=sys.stderr, flush=True)
        csv.unlink()
    best_base = min(b["seconds"] for b in base)
    per_model = 1e6 * total_s / total_rows
    per_model_base = 1e6 * best_base / base[0]["rows"]
    tail = appended[-4:]
    emit("ingest-million", {
        "models": total_rows, "files": len(appended), "seconds": round(total_s, 1),
        "us_per_model": round(per_model, 2), "us_per_model_36k": round(per_model_base, 2),
        "ratio": round(per_model / per_model_base, 3),
        # each append against the same file into an empty lake right after it (the same load)
        "paired_ratio_median": round(float(sorted(paired)[len(paired) // 2]), 3),
        "paired_ratios": [round(r, 2) for r in paired],
        "ratio_last4": round(1e6 * sum(g["seconds"] for g in tail) / sum(g["rows"] for g in tail) / per_model_base, 3),
        "peak_gb": round(max(g["peak_gb"] for g in appended), 3),
        "peak_gb_36k": round(max(b["peak_gb"] for b in base), 3),
        "budget": args.budget, "load": round(os.getloadavg()[0], 1)})
    if not args.keep:
        shutil.rmtree(target, ignore_errors=True)


def _inits(source: Path) -> list[str]:
    import weightlake as wl

    df = wl.open_lake(source).sql("SELECT init, min(model_id) AS first FROM models GROUP BY init ORDER BY first")
    return df["init"].to_list()


if __name__ == "__main__":
    main()
