"""The pair loader with ``prefetch=`` against gathering in the loop, under a training step that waits.

A training step on a GPU leaves the CPU idle while it runs; ``time.sleep(step)`` stands in for it
(it releases the GIL as a CUDA synchronisation does).  In one process, the two settings alternate
round by round over the same first ``--batches`` batches of scenario ``million`` (built by
``bench_bounded.py --million``); best of rounds, per batch.

    .venv/bin/python benchmarks/bench_prefetch.py [--lake bench-data/lake-bounded-1] [--memory 1GB]
        [--step-ms 3] [--batches 80] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BENCH_DATA, emit  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lake", type=Path, default=BENCH_DATA / "lake-bounded-1")
    ap.add_argument("--memory", default=None, help="the handle's budget (default: the machine's)")
    ap.add_argument("--step-ms", type=float, default=3.0, help="the stand-in training step per batch")
    ap.add_argument("--batches", type=int, default=80)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)

    import weightlake as wl

    pairs = wl.open_lake(args.lake, memory=args.memory).pairs("million")
    step = args.step_ms / 1000

    def epoch(prefetch: int, e: int) -> float:
        loader = pairs.loader(batch_size=args.batch_size, epoch=e, prefetch=prefetch)
        t = time.perf_counter()
        for k, _batch in enumerate(loader):
            time.sleep(step)
            if k + 1 == args.batches:
                break
        return (time.perf_counter() - t) / args.batches

    epoch(0, 0)  # checks the chunks the batches touch and warms the page cache
    best = {0: float("inf"), 1: float("inf")}
    for r in range(args.rounds):
        for prefetch in ((0, 1) if r % 2 == 0 else (1, 0)):
            best[prefetch] = min(best[prefetch], epoch(prefetch, 1))
    load = round(os.getloadavg()[0], 1)
    for prefetch, per in best.items():
        print(f"prefetch={prefetch}  {1000 * per:6.2f} ms per batch of {args.batch_size} "
              f"(step {args.step_ms:g} ms, gather {1000 * per - args.step_ms:6.2f} ms beyond it)")
    emit("prefetch", {"lake": str(args.lake), "step_ms": args.step_ms, "batches": args.batches, "load": load,
                      "ms_per_batch": {str(k): round(1000 * v, 2) for k, v in best.items()}})


if __name__ == "__main__":
    main()
