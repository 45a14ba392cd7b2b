"""Run every benchmark in this folder, one after the other, and collect their JSON lines.

    python benchmarks/run_all.py [--only ingest,udf] [--out bench-data/results.jsonl]

Each benchmark compares against its own baseline in the same run (ratios, since the
machine is noisy). The full-size data (a 1 GB CSV zoo and its lake) is generated once
into bench-data/ and reused. Figures go to BENCHMARKS.md by hand, with this command.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
ORDER = ["ingest", "integrity", "checkpoints", "udf", "metrics", "spectra", "correlations", "serving", "merger", "evaluate",
         "train"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", help="comma list of names (bench_<name>.py)")
    ap.add_argument("--out", type=Path, default=Path("bench-data/results.jsonl"))
    args = ap.parse_args()
    names = args.only.split(",") if args.only else [n for n in ORDER if (HERE / f"bench_{n}.py").exists()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "a") as sink:
        for name in names:
            script = HERE / f"bench_{name}.py"
            print(f"== {name}", flush=True)
            started = time.perf_counter()
            proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
            print(proc.stdout[-4000:], end="")
            if proc.returncode:
                print(proc.stderr[-2000:], file=sys.stderr)
            for line in proc.stdout.splitlines():
                if line.startswith("{"):
                    record = json.loads(line)
                    record.update(seconds=round(time.perf_counter() - started, 1), when=time.strftime("%Y-%m-%d %H:%M"))
                    sink.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
