"""Benchmark: forward-pass throughput of the merging model on CPU, in pairs per second.

Times ``model(x1, x2)`` in eval mode under ``torch.inference_mode`` on random inputs for
three configurations and prints a table and one JSON line:

* ``small``: d_model 64, 4 heads, d_ff 128, N 2, neck 64, flat output (about 8.5M parameters);
* ``report``: the report's production run (section 4.1): d_model 960, 4 heads, d_ff 960,
  N 4, neck 512, flat ``Seq2Vec`` output, 210,546,336 parameters (its model summary's count);
* ``report-per-token``: the same with per-token output heads instead of ``Seq2Vec``.

::

    .venv/bin/python benchmarks/bench_merger.py
    .venv/bin/python benchmarks/bench_merger.py --configs small --batch 256 --seconds 5

Each configuration runs one warm-up batch, then batches until ``--seconds`` have passed
(at least ``--min-batches``).  Batch 36 is the report's training batch size.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch

from weightlake.experiments.merger import MergerConfig, build_merger, count_parameters

CONFIGS: dict[str, MergerConfig] = {
    "small": MergerConfig(d_model=64, n_heads=4, d_ff=128, n_layers=2, neck=64),
    "report": MergerConfig(d_model=960, n_heads=4, d_ff=960, n_layers=4, neck=512, dropout=0.07),
    "report-per-token": MergerConfig(d_model=960, n_heads=4, d_ff=960, n_layers=4, neck=512, dropout=0.07,
                                     output_head="per_token"),
}


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated, from {sorted(CONFIGS)}")
    parser.add_argument("--batch", type=int, default=36, help="pairs per forward pass")
    parser.add_argument("--seconds", type=float, default=10.0, help="timed seconds per configuration")
    parser.add_argument("--min-batches", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    return parser.parse_args(argv)


def bench_config(config: MergerConfig, batch: int, seconds: float, min_batches: int) -> dict:
    """Time forward passes of one configuration; returns its row of figures."""
    torch.manual_seed(0)
    model = build_merger(config)
    x1, x2 = torch.randn(batch, config.n_values), torch.randn(batch, config.n_values)
    with torch.inference_mode():
        model(x1, x2)  # warm-up: allocator, kernel selection
        times = []
        while len(times) < min_batches or sum(times) < seconds:
            start = time.perf_counter()
            model(x1, x2)
            times.append(time.perf_counter() - start)
    return {
        "params": count_parameters(config), "batches": len(times), "batch": batch,
        "seconds": round(sum(times), 3), "ms_per_batch": round(1000 * sum(times) / len(times), 2),
        "ms_per_batch_best": round(1000 * min(times), 2),
        "pairs_per_s": round(batch * len(times) / sum(times), 2),
    }


def main(argv: list[str] | None = None) -> dict:
    args = _args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = {}
    print(f"{'config':<18}{'params':>14}{'ms/batch':>11}{'best ms':>10}{'pairs/s':>10}")
    for name in args.configs.split(","):
        row = bench_config(CONFIGS[name], args.batch, args.seconds, args.min_batches)
        rows[name] = {"config": CONFIGS[name].summary(), **row}
        print(f"{name:<18}{row['params']:>14,}{row['ms_per_batch']:>11}{row['ms_per_batch_best']:>10}"
              f"{row['pairs_per_s']:>10}")
    summary = {"benchmark": "merger_forward", "torch": torch.__version__, "threads": torch.get_num_threads(),
               "machine": platform.machine(), "cpus": os.cpu_count(), "results": rows}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
