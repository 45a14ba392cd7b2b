"""Benchmark: checkpoint evaluation throughput, and tracking-CSV ingest + metrics vs a row-by-row baseline.

Usage::

    .venv/bin/python benchmarks/bench_evaluate.py                      # both parts
    .venv/bin/python benchmarks/bench_evaluate.py --parts eval --pairs 2000 --prod-pairs 300
    .venv/bin/python benchmarks/bench_evaluate.py --parts tracking --tracking-rows 2000

Part ``eval`` (:func:`~weightlake.experiments.evaluate.evaluate_checkpoints`): pairs per
second through the forward pass and every fast metric (whole vector and per layer,
collapse and variety statistics), no accuracy scoring, for

* ``small``: d_model 64, 4 heads, d_ff 128, N 2, neck 64 (8.5M parameters);
* ``production``: the report's run, d_model 960, 4 heads, d_ff 960, N 4, neck 512
  (210,546,336 parameters, an 842 MB checkpoint).

The pairs are scenario ``type1-m0`` (digits 0-9, no shared class, gelu, epoch 11;
11,076 test pairs) of a synthetic zoo of every subset of 2-10 digits, built once in
``bench-data/lake-evaluate``; ``--pairs`` / ``--prod-pairs`` take a seeded sample.

Part ``tracking``: one tracking CSV in the user's layout (``--tracking-rows`` pairs, GT /
PD / FN blocks, metric columns with a duplicated name, ``Step N`` columns), processed

* by the baseline the user's code followed: ``pandas.read_csv``, then for every row
  the three vectors pulled out by column name and a metric dict computed with numpy /
  scipy (MSE, MAE, MAPE, cosine, Pearson, L2-norm difference, W1, KL and JS of value
  histograms, FFT difference; whole vector and five layers; PD-GT, FN-GT, PD-FN), each
  dict appended to the result frame with ``pd.concat`` one row at a time;
* by :func:`~weightlake.experiments.tracking.ingest_tracking` (streamed parse, Zarr
  write, tables, commit, and the metrics): once with the baseline's metric set, once
  with every fast metric of the registry (about twice as many, sliced Wasserstein among
  them).

Both read the same file from a warm page cache, after a warm-up on a 4-row file (imports,
thread pools); the speed-up is baseline seconds over weightlake seconds for the same
metric set.  One JSON line summarises the run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from weightlake.arch import CNN_S

BENCH = Path("bench-data")
SCENARIO = "type1-m0"
BASELINE_METRICS = ["mse", "mae", "mape", "cosine", "pearson", "l2_norm_diff", "w1", "kl", "js", "fft_diff"]
"""Registry names of the metrics the baseline computes (same definitions, per row)."""


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="eval,tracking", help="comma list of: eval, tracking")
    parser.add_argument("--pairs", type=int, default=2000, help="pairs evaluated with the small config")
    parser.add_argument("--prod-pairs", type=int, default=300, help="pairs evaluated with the production config")
    parser.add_argument("--configs", default="small,production", help="comma list of: small, production")
    parser.add_argument("--batch", type=int, default=256, help="pairs per forward pass")
    parser.add_argument("--tracking-rows", type=int, default=2000, help="rows (pairs) of the tracking CSV")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    return parser.parse_args(argv)


# -- part 1: checkpoints -----------------------------------------------------------------------------
def evaluation_lake(data: Path = BENCH) -> Path:
    """Every subset of 2-10 digits, gelu, epochs 11 and 16, with scenario type1-m0 (built once)."""
    from weightlake.ingest.csv_zoo import ingest_csv
    from weightlake.scenarios import declare_scenario
    from weightlake.zoo.synthetic import write_synthetic_csv

    root = data / "lake-evaluate"
    if (root / "_current").exists():
        return root
    data.mkdir(parents=True, exist_ok=True)
    csv = data / "zoo-gelu.csv"
    if not csv.exists():
        write_synthetic_csv(csv, activations=("gelu",), epochs=(11, 16), seed=0)
    ingest_csv(root, csv, zoo="mnist-cnn-s", init="kaiming_uniform")
    declare_scenario(root, SCENARIO, zoo="mnist-cnn-s", overlap=0, activations=["gelu"], epochs=[11])
    return root


def checkpoint(name: str, config: Any, data: Path = BENCH) -> Path:
    """A randomly initialised checkpoint of ``config`` saved as the user's code saves (built once)."""
    import torch

    from weightlake.experiments.merger import build_merger

    path = data / "eval-checkpoints" / f"{name}_h{config.n_heads}" / "AE epoch mse val 1.pth"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        torch.save({"epoch": 1, "model_state_dict": build_merger(config).state_dict()}, path)
    return path


def bench_eval(args: argparse.Namespace) -> dict[str, Any]:
    from weightlake.experiments.evaluate import evaluate_checkpoints
    from weightlake.experiments.merger import MergerConfig, count_parameters

    configs = {"small": (MergerConfig(64, 4, 128, 2, 64), args.pairs),
               "production": (MergerConfig(960, 4, 960, 4, 512, dropout=0.07), args.prod_pairs)}
    chosen = {c.strip() for c in args.configs.split(",")}
    if chosen - configs.keys():
        raise SystemExit(f"--configs: unknown {sorted(chosen - configs.keys())}; choose from {sorted(configs)}")
    configs = {k: v for k, v in configs.items() if k in chosen}
    source = evaluation_lake()
    out: dict[str, Any] = {}
    for name, (config, pairs) in configs.items():
        path = checkpoint(name, config)
        with tempfile.TemporaryDirectory(dir=BENCH) as tmp:
            lake = Path(tmp) / "lake"
            shutil.copytree(source, lake)
            started = time.perf_counter()
            report = evaluate_checkpoints(lake, [path], SCENARIO, "test", limit_pairs=pairs, batch_size=args.batch,
                                          images=None)
            total = time.perf_counter() - started
        row = report.rows[0]
        assert row["error"] is None, row["error"]
        out[name] = {"params": count_parameters(config), "pairs": row["n_pairs"],
                     "forward_s": round(row["forward_seconds"], 2), "metrics_s": round(row["metric_seconds"], 2),
                     "pairs_per_s": round(row["pairs_per_s"], 1),
                     "forward_pairs_per_s": round(row["n_pairs"] / row["forward_seconds"], 1),
                     "call_s_incl_load_and_commit": round(total, 2), "metric_columns": _metric_columns(row)}
        print(f"{name:<11} {out[name]['params']:>12,} params  {row['n_pairs']:>5} pairs  forward "
              f"{row['forward_seconds']:.1f} s + metrics {row['metric_seconds']:.1f} s -> "
              f"{row['pairs_per_s']:.0f} pairs/s (call {total:.1f} s)")
    return out


def _metric_columns(row: dict[str, Any]) -> int:
    return sum(1 for k, v in row.items() if k.startswith("pd_") and isinstance(v, float))


# -- part 2: tracking files ------------------------------------------------------------------------
def tracking_file(rows: int, data: Path = BENCH) -> Path:
    """A tracking CSV in the user's layout with ``rows`` pairs (built once)."""
    from weightlake.experiments.tracking import write_tracking_csv

    path = data / "tracking" / f"AE epoch mse {rows}.csv"
    if path.exists():
        return path
    rng = np.random.default_rng(0)
    targets = (rng.standard_normal((max(rows // 40, 2), CNN_S.n_params)) * 0.1).astype(np.float32)  # 40 pairs a target
    gt = targets[rng.integers(0, len(targets), rows)]
    pd = (gt * 0.3 + rng.standard_normal(gt.shape) * 0.05).astype(np.float32)
    fn = (gt + rng.standard_normal(gt.shape) * 0.01).astype(np.float32)
    values = [("Loss", rng.random(rows)), ("Accuracy", rng.uniform(0, 100, rows)),
              ("Accuracy", rng.uniform(0, 100, rows)), ("W Distance", rng.random(rows))]
    steps = rng.uniform(50, 99, (rows, 5))
    steps[: rows // 2, 4] = np.nan
    return write_tracking_csv(path, gt, pd, fn, values=values, steps=steps)


def _histograms(x: np.ndarray, y: np.ndarray, bins: int = 64) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = min(x.min(), y.min()), max(x.max(), y.max())
    p = np.histogram(x, bins=bins, range=(lo, hi))[0] + 1e-10
    q = np.histogram(y, bins=bins, range=(lo, hi))[0] + 1e-10
    return p / p.sum(), q / q.sum()


def _row_metrics(a: np.ndarray, b: np.ndarray, tag: str) -> dict[str, float]:
    """The baseline's per-row metrics of one pair of vectors (numpy / scipy), whole and per layer."""
    from scipy.spatial.distance import jensenshannon
    from scipy.stats import entropy, pearsonr, wasserstein_distance

    out = {}
    blocks = [("", 0, CNN_S.n_params)] + [(f"_{layer.name}", layer.start, layer.stop) for layer in CNN_S.layers]
    for suffix, start, stop in blocks:
        x, y = a[start:stop], b[start:stop]
        d = x - y
        p, q = _histograms(x, y)
        out[f"{tag}_mse{suffix}"] = float(np.mean(d * d))
        out[f"{tag}_mae{suffix}"] = float(np.mean(np.abs(d)))
        out[f"{tag}_mape{suffix}"] = float(np.mean(np.abs(d) / np.maximum(np.abs(y), 1e-3)))
        out[f"{tag}_cosine{suffix}"] = float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))
        out[f"{tag}_pearson{suffix}"] = float(pearsonr(x, y)[0])
        out[f"{tag}_l2_norm_diff{suffix}"] = float(abs(np.linalg.norm(x) - np.linalg.norm(y)))
        out[f"{tag}_w1{suffix}"] = float(wasserstein_distance(x, y))
        out[f"{tag}_kl{suffix}"] = float(entropy(p, q))
        out[f"{tag}_js{suffix}"] = float(jensenshannon(p, q) ** 2)
        out[f"{tag}_fft_diff{suffix}"] = float(np.mean((np.abs(np.fft.rfft(x)) - np.abs(np.fft.rfft(y))) ** 2))
    return out


def baseline(path: Path) -> tuple[float, int]:
    """Row by row with pandas, as the user's evaluation notebook did; returns (seconds, result rows)."""
    import pandas as pd

    started = time.perf_counter()
    frame = pd.read_csv(path)
    n = CNN_S.n_params
    gt_cols = [f"weight {i}" for i in range(n)]
    pd_cols, fn_cols = [f"Pred weight {i}" for i in range(n)], [f"FN weight {i}" for i in range(n)]
    result = pd.DataFrame()
    for _, row in frame.iterrows():
        gt, pred, fn = (row[c].to_numpy(dtype=np.float64) for c in (gt_cols, pd_cols, fn_cols))
        metrics = {**_row_metrics(pred, gt, "pd"), **_row_metrics(fn, gt, "fn"), **_row_metrics(pred, fn, "pdfn")}
        result = pd.concat([result, pd.DataFrame([metrics])], ignore_index=True)
    return time.perf_counter() - started, len(result)


def ours(path: Path, metrics: list[str] | None) -> float:
    from weightlake.experiments.tracking import ingest_tracking

    with tempfile.TemporaryDirectory(dir=BENCH) as tmp:
        started = time.perf_counter()
        ingest_tracking(Path(tmp) / "lake", path, metrics=metrics)
        return time.perf_counter() - started


def _warm_up() -> None:
    """Imports and first-call costs of both contenders, paid before timing (on a 4-row file)."""
    tiny = tracking_file(4)
    baseline(tiny)
    ours(tiny, BASELINE_METRICS)


def bench_tracking(args: argparse.Namespace) -> dict[str, Any]:
    path = tracking_file(args.tracking_rows)
    _warm_up()
    path.read_bytes()  # warm the page cache for both contenders
    same = ours(path, BASELINE_METRICS)
    full = ours(path, None)
    base, rows = baseline(path)
    out = {"rows": args.tracking_rows, "file_mb": round(path.stat().st_size / 1e6, 1),
           "baseline_s": round(base, 2), "weightlake_same_metrics_s": round(same, 2),
           "weightlake_all_metrics_s": round(full, 2), "speedup_same_metrics": round(base / same, 1),
           "speedup_vs_all_metrics": round(base / full, 1), "baseline_rows_per_s": round(rows / base, 1),
           "weightlake_rows_per_s": round(args.tracking_rows / same, 1)}
    print(f"tracking file {path.name}: {args.tracking_rows} rows, {out['file_mb']} MB")
    print(f"  baseline (pandas, row by row)        {base:8.2f} s   {rows / base:8.1f} rows/s")
    print(f"  weightlake, same metrics             {same:8.2f} s   {args.tracking_rows / same:8.1f} rows/s  "
          f"({base / same:.1f}x)")
    print(f"  weightlake, every fast metric        {full:8.2f} s   {args.tracking_rows / full:8.1f} rows/s  "
          f"({base / full:.1f}x)")
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import torch

    args = _args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    parts = {p.strip() for p in args.parts.split(",")}
    summary: dict[str, Any] = {"benchmark": "evaluate", "torch": torch.__version__,
                               "threads": torch.get_num_threads(), "machine": platform.machine(),
                               "cpus": os.cpu_count(), "load_avg": os.getloadavg()[0]}
    if "eval" in parts:
        summary["evaluation"] = bench_eval(args)
    if "tracking" in parts:
        summary["tracking"] = bench_tracking(args)
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
