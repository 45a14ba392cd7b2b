"""Run every benchmark in this folder, one after the other, and collect their JSON lines.

    python benchmarks/run_all.py [--only ingest,udf] [--out bench-data/results.jsonl] [--quick]

Each benchmark compares against its own baseline in the same run (ratios, since the
machine is noisy). The full-size data (a 1 GB CSV zoo and its lake) is generated once
into bench-data/ and reused. Figures go to BENCHMARKS.md by hand, with this command.

``--quick`` runs each benchmark at small size (the arguments in :data:`QUICK`), for a glance
that everything still runs and roughly where the ratios are, not for the figures; benchmarks
without a small size are skipped and listed. The three that need lakes of up to a million
models (:data:`BY_HAND`) are listed, with why, and run by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
QUICK: dict[str, list[str]] = {  # small-size arguments per benchmark; absent = no quick mode yet
    "ingest": ["--quick", "--parsers", "polars"], "udf": ["--quick"], "coldstart": ["--quick", "--rounds", "1"],
    "correlations": ["--rows", "4000", "--scipy-params", "4", "--repeat", "1"],
    "metrics": ["--pairs", "2000", "--scipy-sample", "100", "--repeat", "1"],
    "spectra": ["--rows", "2000", "--loop-sample", "50", "--repeat", "1"],
    "checkpoints": ["--files", "200", "--tree", "bench-data/ckpt-tree-quick"],
    "merger": ["--configs", "small", "--batch", "8", "--seconds", "0.5", "--min-batches", "1"],
    "topology": ["--sample", "40", "--rounds", "1", "--skip-lake"],
    "layer_udf": ["--quick"],
    "sql_heap": ["--quick", "--rounds", "1"],
    "integrity": ["--rounds", "1"],
    "serving": ["--quick", "--user-batches", "1", "--repeat", "1", "--stream-epochs", "1"],
    "evaluate": ["--configs", "small", "--pairs", "64", "--tracking-rows", "50"],
    "train": ["--epochs", "1", "--subsample", "50", "--activations", "relu", "--digits", "0-2"],
    "dynamics": ["--rounds", "1", "--ks", "10", "--probe", "100", "--brute-sample", "10"],
    "layer_layout": ["--models", "2", "--cnn-models", "2000", "--rounds", "1"],
    "resnet_zoo": ["--runs", "1", "--epochs", "1", "--batch", "1", "--rounds", "1", "--parts", "layer"],
    "s3": ["--labels", "10", "--rounds", "1", "--stress", "2", "--spectra-labels", "4"],
    "s3_ranks": ["--digits", "5", "--rounds", "1", "--memory", "4MB"],  # a budget below the small zoo: mapped rows
}
ORDER = ["ingest", "integrity", "checkpoints", "udf", "metrics", "spectra", "correlations", "serving", "merger", "evaluate",
         "train", "coldstart", "dynamics", "topology",
         "layer_udf", "sql_heap", "layer_layout", "resnet_zoo", "s3", "s3_ranks"]
BY_HAND: dict[str, str] = {  # benchmarks run_all does not run, and why (each file's docstring has its command)
    "bounded": "builds synthetic lakes of 36,468-1,021,104 models (1.4-10 GB) to hold under a budget",
    "prefetch": "reads the million-model lake that bench_bounded.py --million builds",
    "ingest_million": "appends 28 CSV exports of the million-model lake that bench_bounded.py --million builds",
}
"""Every ``bench_*.py`` here is in :data:`ORDER` or :data:`BY_HAND` (``tests/test_benchmarks.py``)."""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", help="comma list of names (bench_<name>.py)")
    ap.add_argument("--out", type=Path, default=Path("bench-data/results.jsonl"))
    ap.add_argument("--quick", action="store_true", help="every benchmark at small size (see QUICK)")
    args = ap.parse_args()
    names = args.only.split(",") if args.only else [n for n in ORDER if (HERE / f"bench_{n}.py").exists()]
    if not args.only:
        for name, why in BY_HAND.items():
            print(f"not run here (run by hand): {name}: {why}")
    if args.quick:
        skipped = [n for n in names if n not in QUICK]
        names = [n for n in names if n in QUICK]
        if skipped:
            print(f"no quick mode (skipped): {', '.join(skipped)}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    took: dict[str, float] = {}
    load = [os.getloadavg()[0]]
    with open(args.out, "a") as sink:
        for name in names:
            script = HERE / f"bench_{name}.py"
            print(f"== {name}", flush=True)
            started = time.perf_counter()
            extra = QUICK[name] if args.quick else []
            proc = subprocess.run([sys.executable, str(script), *extra], capture_output=True, text=True)
            print(proc.stdout[-4000:], end="")
            if proc.returncode:
                print(proc.stderr[-2000:], file=sys.stderr)
            took[name] = time.perf_counter() - started
            print(f"-- {name}: {took[name]:.1f} s" + (f" (exit {proc.returncode})" if proc.returncode else ""), flush=True)
            for record in _records(proc.stdout):
                record.update(seconds=round(time.perf_counter() - started, 1), when=time.strftime("%Y-%m-%d %H:%M"),
                              quick=args.quick)
                sink.write(json.dumps(record) + "\n")
    load.append(os.getloadavg()[0])
    print(f"total {sum(took.values()):.1f} s over {len(took)} benchmarks, load {load[0]:.1f} -> {load[1]:.1f}; "
          + ", ".join(f"{n} {t:.1f}" for n, t in sorted(took.items(), key=lambda kv: -kv[1])))


def _records(stdout: str) -> list[dict]:
    """The JSON objects a benchmark printed: one per line, or indented over several lines."""
    decoder, out, at = json.JSONDecoder(), [], 0
    while (at := stdout.find("{", at)) >= 0:
        if at and stdout[at - 1] != "\n":  # an object starts a line
            at += 1
            continue
        try:
            record, end = decoder.raw_decode(stdout, at)
        except json.JSONDecodeError:
            at += 1
            continue
        if isinstance(record, dict):
            out.append(record)
        at = end
    return out


if __name__ == "__main__":
    main()
