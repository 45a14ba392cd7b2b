"""The rank loader from an S3 lake (moto's server on 127.0.0.1) against the same lake on local disk.

One synthetic CNN-s zoo and scenario in a local lake and in a lake on moto; rank 0 of 2 iterates
one epoch of ``loader(batch_size=512, rank=0, world_size=2)`` on a cold handle, rounds
alternating:

* ``local, mapped``: local lake, budget below the zoo (memory-mapped chunk files);
* ``s3, by range``: S3 lake, the same budget (``storage/remote_rows.RemoteRows``): first epoch
  (every touched chunk object fetched whole and checked) and a second epoch on the same handle
  (only the rows' byte ranges);
* ``s3, decoded whole``: S3 lake, a budget above the zoo (decoded once, then gathered in memory;
  what an object-store zoo always did before ``RemoteRows``).

moto is an in-memory mock in Python on the same loaded cores: its figures are a floor for a real
object store, not an estimate of one.

Run: ``.venv/bin/python benchmarks/bench_s3_ranks.py [--digits 8] [--rounds 2]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def _epoch(root: str, memory: str, epochs: int = 1) -> list[dict]:
    """Times of ``epochs`` epochs of rank 0 of 2 on one cold handle, with what the source fetched."""
    import weightlake as wl

    pairs = wl.open_lake(root, memory=memory).pairs("s", "train")
    out = []
    for epoch in range(epochs):
        t, n = time.perf_counter(), 0
        loader = pairs.loader(batch_size=512, epoch=epoch, rank=0, world_size=2)
        for batch in loader:
            n += len(batch["pair_id"])
        seconds = time.perf_counter() - t
        log = getattr(loader.dataset.weights, "log", None)
        out.append({"seconds": seconds, "pairs": n, "pairs_per_s": n / seconds,
                    "source": type(loader.dataset.weights).__name__,
                    "chunks_whole": sum(log.chunks.values()) if log else None,
                    "ranged_mb": log.ranged_bytes / 1e6 if log else None})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--digits", type=int, default=8, help="class subsets of 0..digits-1 of sizes 2-4")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--memory", default="16MB", help="the budget below the zoo")
    args = parser.parse_args()

    from bench_s3 import _bucket, _moto

    import weightlake as wl
    from weightlake.ingest.csv_zoo import ingest_csv
    from weightlake.scenarios import declare_scenario
    from weightlake.zoo.synthetic import all_labels, write_synthetic_csv

    server, endpoint = _moto()
    try:
        with tempfile.TemporaryDirectory(dir=Path(__file__).parents[1] / "bench-data") as tmp:
            csv_path = Path(tmp) / "zoo.csv"
            write_synthetic_csv(csv_path, labels=all_labels(range(args.digits), range(2, 5)), seed=5)
            roots = {"local": str(Path(tmp) / "lake"), "s3": _bucket(endpoint, "ranks")}
            for root in roots.values():
                ingest_csv(root, csv_path, zoo="z", init="kaiming_uniform")
                declare_scenario(root, "s", zoo="z", digits=range(args.digits), sizes=range(2, 4), overlap=(0, 1))
            lake = wl.open_lake(roots["local"])
            setup = {"models": int(lake.manifest.zoo("z").n_models), "zoo_mb": lake.zoo_bytes("z") / 1e6,
                     "train_pairs": len(lake.pairs("s", "train")), "budget": args.memory}
            print(json.dumps(setup), flush=True)
            runs: dict[str, list] = {"local, mapped": [], "s3, by range": [], "s3, decoded whole": []}
            for r in range(args.rounds):
                runs["local, mapped"].append(_epoch(roots["local"], args.memory, 2))
                runs["s3, by range"].append(_epoch(roots["s3"], args.memory, 2))
                runs["s3, decoded whole"].append(_epoch(roots["s3"], "4GB", 2))
                print(json.dumps({"round": r, **{k: v[-1] for k, v in runs.items()}}), flush=True)
            best = {k: [min(rr[e]["seconds"] for rr in v) for e in range(2)] for k, v in runs.items()}
            print(json.dumps({"best_seconds_epoch0_epoch1": best, "load": os.getloadavg()}), flush=True)
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
