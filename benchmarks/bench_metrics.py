"""Wasserstein-1 between value distributions: weightlake vs scipy in a loop.

47,000 random pairs of 2,464-vectors (float32, weights ~ N(0, 0.1)) as in a merging pair
set.  scipy.stats.wasserstein_distance runs in a loop on a subsample and is
extrapolated; weightlake runs on all pairs, sorting both sides per call (one thread and
the default threads), with the reference rows sorted once beforehand (a zoo sorted at
ingest), and with both sides sorted.  Every timing is the best of ``--repeat`` runs, and
the results are checked against scipy on the subsample.

    .venv/bin/python benchmarks/bench_metrics.py [--pairs 47000] [--scipy-sample 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.stats as st

sys.path.insert(0, str(Path(__file__).parent))
from _common import best_time  # noqa: E402

from weightlake.analysis._rows import default_workers  # noqa: E402
from weightlake.analysis.metrics import sort_rows, wasserstein_1  # noqa: E402


def scipy_loop(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    return np.array([st.wasserstein_distance(p, r) for p, r in zip(pred, ref, strict=True)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=47_000)
    parser.add_argument("--width", type=int, default=2_464)
    parser.add_argument("--scipy-sample", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    pred = rng.normal(0, 0.1, (args.pairs, args.width)).astype(np.float32)
    ref = rng.normal(0, 0.1, (args.pairs, args.width)).astype(np.float32)
    k = min(args.scipy_sample, args.pairs)
    print(f"{args.pairs:,} pairs x {args.width:,} float32 values; cores {os.cpu_count()}, "
          f"default threads {default_workers()}; best of {args.repeat}")

    t_scipy, expected = best_time(lambda: scipy_loop(pred[:k], ref[:k]), args.repeat)
    scipy_rate = k / t_scipy
    print(f"{'scipy.stats.wasserstein_distance loop':44s} {scipy_rate:>12,.0f} pairs/s "
          f"(on {k:,} pairs; 47k extrapolated {args.pairs / scipy_rate:6.1f} s)")

    sorted_ref = sort_rows(ref)
    sorted_pred = sort_rows(pred)
    cases: list[tuple[str, Callable[[], Any]]] = [
        ("weightlake W1, sort both, 1 thread", lambda: wasserstein_1(pred, ref, workers=1)),
        ("weightlake W1, sort both, default threads", lambda: wasserstein_1(pred, ref)),
        ("weightlake W1, ref rows pre-sorted", lambda: wasserstein_1(pred, sorted_ref, presorted="ref")),
        ("weightlake W1, both pre-sorted", lambda: wasserstein_1(sorted_pred, sorted_ref, presorted=True)),
    ]
    for name, fn in cases:
        t, out = best_time(fn, args.repeat)
        np.testing.assert_allclose(out[:k], expected, rtol=1e-5)
        rate = args.pairs / t
        print(f"{name:44s} {rate:>12,.0f} pairs/s  {t:6.2f} s  x{rate / scipy_rate:6.1f} vs scipy")
    t_sort, _ = best_time(lambda: sort_rows(ref), args.repeat)
    print(f"{'(sorting the 47k reference rows once)':44s} {args.pairs / t_sort:>12,.0f} rows/s  {t_sort:6.2f} s")
    zoo_case(args, scipy_rate)


def zoo_case(args: argparse.Namespace, scipy_rate: float) -> None:
    """The lake's case: 47k pairs drawn from a 36,468-model zoo; each model is sorted once, then every
    pair is a subtraction of two sorted rows (what ``wl_w1_by_id`` does).  The sort is timed in."""
    rng = np.random.default_rng(1)
    zoo = rng.normal(0, 0.1, (36_468, args.width)).astype(np.float32)
    a, b = rng.integers(0, len(zoo), args.pairs), rng.integers(0, len(zoo), args.pairs)

    def run() -> Any:
        s = sort_rows(zoo)
        return wasserstein_1(s[a], s[b], presorted=True)

    t, out = best_time(run, args.repeat)
    k = min(200, args.pairs)
    np.testing.assert_allclose(out[:k], scipy_loop(zoo[a[:k]], zoo[b[:k]]), rtol=1e-5)
    rate = args.pairs / t
    print(f"{'zoo of 36,468: sort each model once + 47k pairs':44s} {rate:>12,.0f} pairs/s  {t:6.2f} s  "
          f"x{rate / scipy_rate:6.1f} vs scipy (goal >= 50)")
    print(json.dumps({"benchmark": "w1", "pairs": args.pairs, "scipy_pairs_per_s": round(scipy_rate),
                      "zoo_sorted_once_pairs_per_s": round(rate), "zoo_ratio": round(rate / scipy_rate, 1)}))


if __name__ == "__main__":
    main()
