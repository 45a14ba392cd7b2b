"""Synthetic CSV zoos in the exact format, for benchmarks and format tests.

Weights are drawn to look like trained weights of the architecture: each layer at the
scale of its fan-in (Kaiming-uniform bound), with a per-model drift that grows with the
epoch, and heavier tails than a Gaussian.  Early-stopped models are imitated the way the
reference zoo files them: a share of (label, activation) runs repeat their last vector
in every later epoch bin.  These are not trained models; the real mini zoo comes from
:mod:`weightlake.zoo.train`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from weightlake.arch import ACTIVATIONS, CNN_S, EPOCH_BINS, Architecture, class_subsets


def all_labels(digits: range | list[int] = range(10), sizes: range | list[int] = range(2, 11)) -> list[tuple[int, ...]]:
    """Every sorted subset of ``digits`` with a size in ``sizes`` (1,013 for the reference zoo)."""
    return class_subsets(digits, sizes)


def synthetic_rows(labels: list[tuple[int, ...]], arch: Architecture = CNN_S, *, activations=ACTIVATIONS,
                   epochs=EPOCH_BINS, seed: int = 0, early_stop_share: float = 0.15):
    """Yield ``(meta DataFrame, weights [n, P])`` blocks, one per label."""
    rng = np.random.default_rng(seed)
    scale = np.empty(arch.n_params, dtype=np.float32)
    for layer in arch.layers:
        fan_in = layer.weight_size // layer.weight_shape[0]
        scale[layer.start:layer.stop] = 1.0 / np.sqrt(fan_in)
    for label in labels:
        rows, meta = [], []
        for act in activations:
            base = rng.uniform(-1, 1, arch.n_params).astype(np.float32) * scale
            early = len(epochs) > 1 and rng.random() <= early_stop_share
            stop_at = int(rng.integers(1, len(epochs))) if early else len(epochs)
            acc0 = float(rng.uniform(55, 99))
            w = base
            for i, ep in enumerate(epochs):
                if i < stop_at:
                    w = w + (rng.standard_t(4, arch.n_params) * 0.02 * scale).astype(np.float32)
                    acc = min(99.99, acc0 + i * float(rng.uniform(0, 0.4)))
                rows.append(w)
                meta.append((label, act, ep, acc + float(rng.random()) * 1e-9))
        yield meta, np.stack(rows).astype(np.float32)


def write_synthetic_csv(path: Path | str, *, labels: list[tuple[int, ...]] | None = None, arch: Architecture = CNN_S,
                        seed: int = 0, activations=ACTIVATIONS, epochs=EPOCH_BINS) -> int:
    """Write a CSV zoo in the exact format; returns the number of rows."""
    from weightlake.ingest.csv_zoo import _frame, csv_columns

    labels = all_labels() if labels is None else labels
    path = Path(path)
    n = 0
    with open(path, "wb") as fh:
        names = csv_columns(arch)
        fh.write((",".join(names) + "\n").encode())
        for meta, weights in synthetic_rows(labels, arch, activations=activations, epochs=epochs, seed=seed):
            classes = [list(m[0]) for m in meta]
            frame = pl.DataFrame({
                "classes": classes,
                "class_mask": [sum(1 << c for c in m[0]) for m in meta],
                "activation": [m[1] for m in meta],
                "epoch": [m[2] for m in meta],
                "accuracy": [m[3] for m in meta],
            })
            _frame(frame, weights, arch).write_csv(fh, include_header=False)
            n += len(meta)
    return n
