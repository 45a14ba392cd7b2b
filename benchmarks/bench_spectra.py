"""Per-layer spectra of a whole zoo: batched ``zoo_spectra`` vs a per-model numpy loop.

36,468 synthetic models (weights ~ N(0, 0.1) with a per-model scale, a shared mean model and,
in a third of the models, a planted rank-one spike in fc1).  ``zoo_spectra`` computes every
figure (eigenvalues and eigenvectors, MP fit, TW, ranks, entropy, spacing ratio, IPR, alpha)
for all 5 layers; the loop does the same per model and layer with ``numpy.linalg.svd`` and
``numpy.linalg.eigh`` on a subsample and is extrapolated.  The loop's results are checked
against the batched ones.  Also timed: the population spectrum (centred 36,468 x 2,464).

    .venv/bin/python benchmarks/bench_spectra.py [--rows 36468] [--loop-sample 300] [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).parent))
from _common import FULL_ROWS, best_time, emit  # noqa: E402

from weightlake.analysis import rmt, spectra  # noqa: E402
from weightlake.analysis._rows import default_workers  # noqa: E402
from weightlake.arch import CNN_S  # noqa: E402


def synthetic_rows(n: int, seed: int = 0) -> np.ndarray:
    """Rows ~ N(0, 0.1) x per-model scale + a shared mean, with a planted fc1 spike in every third model."""
    rng = np.random.default_rng(seed)
    rows = rng.standard_normal((n, CNN_S.n_params), dtype=np.float32)
    rows *= (0.1 * rng.lognormal(0, 0.2, (n, 1))).astype(np.float32)
    rows += rng.normal(0, 0.02, CNN_S.n_params).astype(np.float32)
    fc1 = CNN_S.layer_matrix(rows, "fc1")
    k = np.arange(0, n, 3)
    u = rng.standard_normal((len(k), 20, 1)).astype(np.float32)
    v = rng.standard_normal((len(k), 1, 36)).astype(np.float32)
    fc1[k] += 0.12 * u @ v
    return rows


def per_model(matrix: np.ndarray) -> dict[str, float]:
    """The figures of one matrix, one model at a time, with numpy (the loop being replaced)."""
    r, c = matrix.shape
    a = matrix.astype(np.float64)
    s = np.linalg.svd(a, compute_uv=False)
    eig = np.sort(s**2)
    _, vec = np.linalg.eigh(a @ a.T if r <= c else a.T @ a)
    esd = eig / max(r, c)
    p_sv, p_ev = s / s.sum(), eig / eig.sum()
    mp = spectra.fit_marchenko_pastur(esd[None], max(r, c))
    alpha = spectra.power_law_alpha(esd[None])
    return {
        "spectral_norm": s[0], "stable_rank": eig.sum() / eig[-1],
        "effective_rank": float(np.exp(-np.sum(p_sv * np.log(p_sv)))), "condition_number": float(np.linalg.cond(a)),
        "entropy": float(-np.sum(p_ev * np.log(p_ev)) / np.log(len(eig))), "mp_sigma2": float(mp["mp_sigma2"][0]),
        "tw_stat": float(mp["tw_stat"][0]), "level_spacing_ratio": float(rmt.mean_spacing_ratio(esd)),
        "ipr_mean": float(np.mean(np.sum(vec**4, axis=0))), "alpha": float(alpha["alpha"][0]),
    }


def loop(rows: np.ndarray) -> list[dict[str, float]]:
    return [per_model(CNN_S.layer_matrix(row, name)) for row in rows for name in CNN_S.layer_names]


def check(table, rows_loop: list[dict[str, float]], k: int) -> float:
    """Largest relative difference between the loop and the batched table on the first ``k`` models."""
    head = table.head(k * len(CNN_S.layer_names))
    worst = 0.0
    for key in rows_loop[0]:
        ref = np.array([row[key] for row in rows_loop])
        got = head[key].cast(float).to_numpy()
        both = np.isfinite(ref) & np.isfinite(got)
        assert np.array_equal(np.isfinite(ref), np.isfinite(got)), key
        worst = max(worst, float(np.max(np.abs(got[both] - ref[both]) / np.maximum(np.abs(ref[both]), 1e-12))))
    return worst



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=FULL_ROWS)
    parser.add_argument("--loop-sample", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()

    rows = synthetic_rows(args.rows)
    print(f"{args.rows:,} models x {len(CNN_S.layers)} layers {[layer.matrix_shape for layer in CNN_S.layers]}; "
          f"cores {os.cpu_count()}, {default_workers()} block threads (torch single-threaded in each); "
          f"best of {args.repeat}")
    spectra.zoo_spectra(rows[:64])  # warm-up: imports, thread pools
    t_batch, table = best_time(lambda: spectra.zoo_spectra(rows), args.repeat)
    k = min(args.loop_sample, args.rows)
    t_loop, reference = best_time(lambda: loop(rows[:k]), 1)
    t_loop_full = t_loop * args.rows / k
    worst = check(table, reference, k)
    t_pop, pop = best_time(lambda: spectra.population_spectrum(rows), 1)

    n_mat = args.rows * len(CNN_S.layers)
    print(f"{'zoo_spectra (batched eigh, all figures)':44s} {t_batch:8.2f} s  {n_mat / t_batch:>10,.0f} matrices/s")
    print(f"{'numpy per-model loop (extrapolated)':44s} {t_loop_full:8.2f} s  {n_mat / t_loop_full:>10,.0f} matrices/s"
          f"  (measured on {k:,} models: {t_loop:.2f} s)")
    print(f"{'speed-up':44s} {t_loop_full / t_batch:8.1f} x   largest relative difference {worst:.1e}")
    print(f"{'population_spectrum (centred, P x P Gram)':44s} {t_pop:8.2f} s  "
          f"(q={pop.q:.3f}, sigma2={pop.mp_sigma2:.4g}, spikes={pop.n_spikes})")
    spikes = table.group_by("layer").agg(mean_spikes=pl.col("n_spikes").mean()).sort("layer")
    print("mean spikes per layer:", dict(zip(spikes["layer"].cast(str), spikes["mean_spikes"].round(3), strict=True)))
    emit("spectra", {"rows": args.rows, "batched_s": round(t_batch, 3), "loop_extrapolated_s": round(t_loop_full, 2),
                     "loop_sample": k, "speedup": round(t_loop_full / t_batch, 1), "max_rel_diff": worst,
                     "population_s": round(t_pop, 3), "goal_s": 15.0})


if __name__ == "__main__":
    main()
