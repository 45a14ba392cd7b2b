"""Persistence diagrams as vectors and as points of a metric space.

Vectors (fixed grids, so models and layers line up):

* :func:`betti_curve`: ``beta(t) = #{bars with b <= t < d}`` at each grid value (finite bars);
* :func:`persistence_image`: each bar ``(b, d)`` becomes a Gaussian at ``(b, d - b)`` weighted
  by its persistence, evaluated at the pixel grid ``linspace`` over the given ranges and
  normalised as a density (gudhi's ``PersistenceImage`` convention, so the two agree).

Distances between diagrams (finite bars ``[k, 2]``; either may be empty):

* :func:`bottleneck` (gudhi, exact);
* :func:`wasserstein` (gudhi over POT, order ``p``, Euclidean ground metric inside);
* :func:`sliced_wasserstein` (Carriere, Cuturi & Oudot 2017): both diagrams, each augmented with
  the diagonal projections of the other's points, projected on directions in ``[-pi/2, pi/2)``,
  1-D Wasserstein-1 per direction, averaged. A metric up to the discretisation of directions.

All three are 0 on identical diagrams, symmetric, and obey the triangle inequality (tested).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from weightlake.analysis.topology import require_gudhi

BETTI_STEPS = 16
"""Grid steps of the Betti curves stored in table ``topology``."""


def as_bars(diagram: Any) -> np.ndarray:
    """A diagram as a float64 array ``[k, 2]`` of finite bars (infinite deaths dropped)."""
    bars = np.asarray(diagram, dtype=np.float64).reshape(-1, 2)
    return bars[np.isfinite(bars).all(axis=1)]


def h0_bars(deaths: Any) -> np.ndarray:
    """H0 deaths (births 0) as bars ``[k, 2]``."""
    d = np.asarray(deaths, dtype=np.float64).reshape(-1)
    return np.stack([np.zeros_like(d), d], axis=1)


# -- vectors -------------------------------------------------------------------------------------
def betti_curve(diagram: Any, grid: Sequence[float] | np.ndarray) -> np.ndarray:
    """Number of finite bars alive at each grid value (``b <= t < d``)."""
    bars = as_bars(diagram)
    t = np.asarray(grid, dtype=np.float64)
    alive = (bars[:, :1] <= t[None, :]) & (t[None, :] < bars[:, 1:])
    return alive.sum(axis=0).astype(np.float64)


def betti_curves(deaths: np.ndarray, grid: Sequence[float] | np.ndarray) -> np.ndarray:
    """Betti-0 curves of many H0 diagrams at once: ``deaths [n, k]`` (births 0) -> ``[n, len(grid)]``."""
    t = np.asarray(grid, dtype=np.float64)
    return (np.asarray(deaths)[:, :, None] > t[None, None, :]).sum(axis=1).astype(np.float64)


def persistence_image(diagram: Any, *, birth_range: tuple[float, float], pers_range: tuple[float, float],
                      resolution: tuple[int, int] = (10, 10), bandwidth: float = 0.1) -> np.ndarray:
    """Persistence image of one diagram, flattened ``[resolution[1] * resolution[0]]`` (persistence-major).

    Weight of a bar: its persistence. Pixel ``(i, j)`` sits at ``(birth_grid[j], pers_grid[i])``.
    """
    bars = as_bars(diagram)
    xs = np.linspace(*birth_range, resolution[0])
    ys = np.linspace(*pers_range, resolution[1])
    b, p = bars[:, 0], bars[:, 1] - bars[:, 0]
    gx = np.exp(-np.square(b[:, None] - xs[None, :]) / (2 * bandwidth ** 2))
    gy = np.exp(-np.square(p[:, None] - ys[None, :]) / (2 * bandwidth ** 2))
    image = np.einsum("k,ki,kj->ij", p, gy, gx) / (2 * np.pi * bandwidth ** 2)
    return image.reshape(-1)


# -- distances -----------------------------------------------------------------------------------
def bottleneck(a: Any, b: Any) -> float:
    """Bottleneck distance between two diagrams (gudhi, exact)."""
    gd = require_gudhi()
    return float(gd.bottleneck_distance(as_bars(a), as_bars(b)))


def wasserstein(a: Any, b: Any, order: float = 1.0) -> float:
    """Wasserstein distance of order ``order`` between two diagrams (gudhi over POT, Euclidean ground metric)."""
    require_gudhi()
    from gudhi.wasserstein import wasserstein_distance

    return float(wasserstein_distance(as_bars(a), as_bars(b), order=order, internal_p=2.0))


def directions(n: int) -> np.ndarray:
    """``n`` angles evenly spaced in ``[-pi/2, pi/2)``."""
    return np.linspace(-np.pi / 2, np.pi / 2, n, endpoint=False)


def sliced_wasserstein(a: Any, b: Any, n_directions: int = 50, thetas: np.ndarray | None = None) -> float:
    """Sliced Wasserstein distance between two diagrams (see the module docstring)."""
    pa, pb = as_bars(a), as_bars(b)
    th = directions(n_directions) if thetas is None else np.asarray(thetas, dtype=np.float64)
    lines = np.stack([np.cos(th), np.sin(th)])
    diag_a = np.repeat(pa.sum(axis=1, keepdims=True) / 2, 2, axis=1)
    diag_b = np.repeat(pb.sum(axis=1, keepdims=True) / 2, 2, axis=1)
    left = np.sort(np.concatenate([pa, diag_b]) @ lines, axis=0)
    right = np.sort(np.concatenate([pb, diag_a]) @ lines, axis=0)
    return float(np.abs(left - right).sum(axis=0).mean())


def sliced_wasserstein_matrix(diagrams: Sequence[Any], n_directions: int = 50) -> np.ndarray:
    """:func:`sliced_wasserstein` between every two diagrams, one row of pairs at a time.

    Diagrams of equal size are compared in one sort per row (the H0 diagrams of one layer all
    have ``out - 1`` bars); otherwise it falls back to the pairwise loop.
    """
    bars = [as_bars(d) for d in diagrams]
    n = len(bars)
    if n == 0 or len({len(b) for b in bars}) != 1:
        out = np.zeros((n, n))
        for i in range(n):
            for j in range(i + 1, n):
                out[i, j] = out[j, i] = sliced_wasserstein(bars[i], bars[j], n_directions)
        return out
    th = directions(n_directions)
    lines = np.stack([np.cos(th), np.sin(th)])
    stack = np.stack(bars)  # [n, k, 2]
    proj = stack @ lines  # [n, k, M]
    diag = (stack.sum(axis=2, keepdims=True) / 2).repeat(2, axis=2) @ lines
    out = np.zeros((n, n))
    for i in range(n):
        left = np.sort(np.concatenate([np.broadcast_to(proj[i], proj.shape), diag], axis=1), axis=1)
        right = np.sort(np.concatenate([proj, np.broadcast_to(diag[i], diag.shape)], axis=1), axis=1)
        out[i] = np.abs(left - right).sum(axis=1).mean(axis=1)
    return out


DISTANCES = {"bottleneck": bottleneck, "wasserstein": wasserstein, "sliced_wasserstein": sliced_wasserstein}
"""Diagram distances by name."""


def distance_matrix(diagrams: Sequence[Any], metric: str = "wasserstein") -> np.ndarray:
    """Symmetric matrix of one diagram distance over a list of diagrams."""
    fn = DISTANCES[metric]
    n = len(diagrams)
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            out[i, j] = out[j, i] = fn(diagrams[i], diagrams[j])
    return out


def add_betti_curves(frame: pl.DataFrame, steps: int = BETTI_STEPS) -> tuple[pl.DataFrame, dict[str, list[float]]]:
    """Betti-0 and Betti-1 curves of each row's Rips diagrams on one grid per layer.

    The grid of a layer runs from the shortest to the longest H0 death of that layer in this zoo
    (below the shortest edge nothing happens, and every H1 bar is born at an edge length and dies
    once its points are connected), in ``steps`` values.  ``betti1`` is null where H1 was not
    computed (``h1_count`` null, ``h1=False``): no bars there means "not looked at", not "no loops".
    """
    grids: dict[str, list[float]] = {}
    b0 = [np.empty(0)] * frame.height
    b1 = [np.empty(0)] * frame.height
    for layer in frame["layer"].unique(maintain_order=True).to_list():
        where = np.flatnonzero((frame["layer"] == layer).to_numpy())
        deaths = frame["h0_deaths"].gather(where).to_list()
        top = max([max(d) for d in deaths if d] + [1e-12])
        low = min([min(d) for d in deaths if d], default=0.0)
        grid = np.linspace(low, top, steps)
        grids[layer] = grid.tolist()
        births, ends = frame["h1_births"].gather(where).to_list(), frame["h1_deaths"].gather(where).to_list()
        for k, i in enumerate(where):
            b0[i] = (np.asarray(deaths[k])[:, None] > grid[None, :]).sum(axis=0).astype(np.float32)
            b1[i] = betti_curve(np.stack([births[k], ends[k]], axis=1) if births[k] else np.empty((0, 2)),
                                grid).astype(np.float32)
    if "h1_count" in frame.columns:
        b1 = [None if skipped else curve for curve, skipped in zip(b1, frame["h1_count"].is_null(), strict=True)]
    return frame.with_columns(betti0=pl.Series(b0, dtype=pl.List(pl.Float32)),
                              betti1=pl.Series(b1, dtype=pl.List(pl.Float32))), grids
