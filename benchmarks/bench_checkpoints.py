"""Checkpoint-tree decoding: a naive torch.load loop vs :func:`read_checkpoints`.

Usage::

    .venv/bin/python benchmarks/bench_checkpoints.py [--tree bench-data/ckpt-tree] [--files 5000]
                                                     [--workers 2] [--repeat 1]

The first run writes a layout-A tree of random CNN-s checkpoints (real Adam state, metrics
arrays, about one model in four early-stopped) and caches it in ``--tree``; later runs
reuse it.  Both contenders read the same files on the same warm page cache:

* baseline: for each file, ``torch.load(weights_only=True)``, ``load_state_dict`` into a
  CNN, flatten ``parameters()``; then one pandas DataFrame of all rows;
* weightlake: :func:`scan_checkpoint_tree` + :func:`read_checkpoints` (process pool,
  epoch-bin mapping, accuracy lookup, validation), pool start-up included.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from weightlake.arch import ACTIVATIONS, CNN_S, EPOCH_BINS
from weightlake.ingest.checkpoints import read_checkpoints, scan_checkpoint_tree

REAL_TREE_FILES = 38_893
INIT = "kaiming_uniform"


def _labels() -> list[list[int]]:
    return [list(c) for k in range(2, 11) for c in itertools.combinations(range(10), k)]


def _save_model(model_dir: Path, activation: str, rng: np.random.Generator) -> int:
    """One model's checkpoints (early stop for about a quarter) and metrics; returns files written."""
    import torch

    from weightlake.zoo.cnn import build_cnn

    model = build_cnn(activation=activation)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    stop = int(rng.integers(12, 36)) if rng.random() < 0.25 else None
    epochs = [e for e in EPOCH_BINS if stop is None or e <= stop]
    model_dir.mkdir(parents=True, exist_ok=True)
    for e in epochs:
        for p in model.parameters():
            p.grad = torch.randn_like(p)
        optimizer.step()
        torch.save({"epoch": e, "model_state_dict": model.state_dict(),
                    "optimizer_state_dict": optimizer.state_dict()}, model_dir / f"checkpoint epoch {e}.pth")
    if stop is not None:
        torch.save({"epoch": stop, "model_state_dict": model.state_dict(),
                    "optimizer_state_dict": optimizer.state_dict()}, model_dir / "checkpoint epoch -1.pth")
    trained = stop + 1 if stop is not None else 40
    (model_dir / "metrics").mkdir(exist_ok=True)
    np.save(model_dir / "metrics" / "Test Accuracy IID.npy", rng.uniform(10, 100, size=(1, trained + 1)))
    return len(epochs) + (stop is not None)


def build_tree(root: Path, n_files: int) -> int:
    """Write (or reuse) a layout-A tree of at least ``n_files`` checkpoints."""
    stamp = root / "TREE.json"
    if stamp.exists() and json.loads(stamp.read_text())["files"] >= n_files:
        return int(json.loads(stamp.read_text())["files"])
    import torch

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    written, start = 0, time.perf_counter()
    for label, activation in itertools.product(_labels(), ACTIVATIONS):
        if written >= n_files:
            break
        written += _save_model(root / str(label) / activation, activation, rng)
    stamp.write_text(json.dumps({"files": written}))
    print(f"wrote {written} checkpoints to {root} in {time.perf_counter() - start:.1f} s")
    return written


def run_baseline(root: Path) -> tuple[Any, float, float]:
    """The naive loop: torch.load, load_state_dict, flatten parameters(), one DataFrame."""
    import pandas as pd
    import torch

    from weightlake.zoo.cnn import build_cnn

    torch.set_num_threads(1)  # the loop is single-threaded work; threads only add contention
    start, cpu = time.perf_counter(), time.process_time()
    models = {a: build_cnn(activation=a) for a in ACTIVATIONS}
    meta, flats = [], []
    for path in sorted(root.glob("*/*/*.pth")):
        activation = path.parent.name
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        model = models[activation]
        model.load_state_dict(checkpoint["model_state_dict"])
        flats.append(torch.cat([p.detach().reshape(-1) for p in model.parameters()]).numpy())
        meta.append((path.parent.parent.name, activation, checkpoint["epoch"]))
    frame = pd.DataFrame(np.stack(flats), columns=CNN_S.csv_columns())
    frame.insert(0, "label", [m[0] for m in meta])
    frame.insert(1, "activation", [m[1] for m in meta])
    frame["epoch"] = [m[2] for m in meta]
    return frame, time.perf_counter() - start, time.process_time() - cpu


def run_weightlake(root: Path, workers: int) -> tuple[Any, float, float]:
    """Scan + read; CPU is this process's plus what the workers report."""
    start, cpu = time.perf_counter(), time.process_time()
    batch = read_checkpoints(scan_checkpoint_tree(root, init=INIT), CNN_S, workers=workers)
    parent_cpu = time.process_time() - cpu
    worker_cpu = batch.summary.load_cpu_seconds if workers > 1 else 0.0
    return batch, time.perf_counter() - start, parent_cpu + worker_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", type=Path, default=Path("bench-data/ckpt-tree"))
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each contender (best is reported)")
    args = parser.parse_args()
    n = build_tree(args.tree, args.files)
    for path in args.tree.glob("*/*/*.pth"):  # warm the page cache for both contenders alike
        path.read_bytes()
    base = min((run_baseline(args.tree) for _ in range(args.repeat)), key=lambda r: r[1])
    ours = min((run_weightlake(args.tree, args.workers) for _ in range(args.repeat)), key=lambda r: r[1])
    batch, summary = ours[0], ours[0].summary
    print(f"files: {n}; baseline rows {len(base[0])}; weightlake rows {len(batch.rows)} "
          f"(direct {summary.slots_direct}, fallback {summary.slots_fallback}, missing {summary.slots_missing}, "
          f"rejected {summary.files_rejected})")
    print(f"load average before timing: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
          "(wall times are only comparable on an otherwise idle machine)")
    for name, (_, seconds, cpu) in (("baseline (torch.load loop + pandas)", base),
                                    (f"read_checkpoints (workers={args.workers})", ours)):
        print(f"{name:40s} wall {seconds:7.2f} s = {n / seconds:6.0f} ckpt/s "
              f"(projected {REAL_TREE_FILES:,} files: {REAL_TREE_FILES / n * seconds:6.1f} s); "
              f"CPU {cpu:6.2f} s = {cpu / n * 1e3:5.2f} ms/ckpt")
    print(f"speed-up: wall {base[1] / ours[1]:.2f}x; CPU per checkpoint {base[2] / ours[2]:.2f}x")


if __name__ == "__main__":
    main()
