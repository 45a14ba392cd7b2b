"""Topology of groups of models, and two-parameter persistence with multipers.

A *group* is a set of models (one class set, one activation, ...). Two clouds describe it:

* ``models``: each model's flat weight vector is a point (sensitive to neuron order, so it
  says most where models share an initialisation scheme and seed);
* ``neurons``: the pooled neurons of one layer over all the group's models (each neuron's
  incoming weights and bias), which does not depend on neuron order at all.

Both get Rips diagrams (:func:`cloud_diagrams`, subsampled to ``max_points`` with a fixed
seed when larger). The neuron cloud also gets a **function-Rips bifiltration**: Rips scale x
a function on the neurons, here ``1 - importance`` with importance the norm of the neuron's
outgoing weights (its column in the next layer) divided by the largest in its model, so the
important neurons enter first. multipers computes its Hilbert signed measure on a regular
grid (:func:`function_rips_measure`; always a coarse grid: the exact grid is unaffordable),
and :func:`signed_measure_distance` compares two such measures by optimal transport:
``mu = mu+ - mu-`` and ``nu = nu+ - nu-`` are compared as the balanced problem
``W(mu+ + nu-, nu+ + mu-)`` (the signed-measure distance of Loiseaux et al. 2023). Measures
are made zero-mass by a negative point at the grid's far corner, so the two sides balance.

multipers is imported inside functions, with its import-time chatter captured.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from weightlake.analysis.topology import TopologyError, neuron_cloud, pairwise_distances, require_gudhi
from weightlake.arch import Architecture


def require_multipers() -> Any:
    """Import multipers quietly, or refuse with the install command."""
    require_gudhi()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            import multipers
    except ImportError as exc:  # pragma: no cover - the dev extra installs it
        raise TopologyError("two-parameter persistence needs multipers: pip install 'weightlake[topology]'") from exc
    return multipers


def subsample(points: np.ndarray, max_points: int, seed: int = 0) -> np.ndarray:
    """Indices of at most ``max_points`` rows, drawn without replacement with a fixed seed (sorted)."""
    n = len(points)
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, max_points, replace=False))


def cloud_diagrams(points: np.ndarray, max_dim: int = 1) -> list[np.ndarray]:
    """Finite Rips bars ``[H0, ..., H_max_dim]`` of one cloud ``[m, d]`` (gudhi, edge collapse)."""
    gd = require_gudhi()
    dist = pairwise_distances(np.asarray(points, dtype=np.float64)[None])[0]
    st = gd.SimplexTree.create_from_array(dist)
    st.collapse_edges()
    st.expansion(max_dim + 1)
    st.compute_persistence()
    out = []
    for dim in range(max_dim + 1):
        bars = np.asarray(st.persistence_intervals_in_dimension(dim), dtype=np.float64).reshape(-1, 2)
        out.append(bars[np.isfinite(bars[:, 1]) & (bars[:, 1] > bars[:, 0])])
    return out


def neuron_importance(flat_rows: np.ndarray, arch: Architecture, layer: str) -> np.ndarray:
    """Outgoing importance of each output neuron of ``layer``: norm of its column in the next layer over its model's largest, ``[n, out]``.

    Raises :class:`TopologyError` for the last layer, or when the next layer is a conv (its
    inputs are channels of a feature map, not the neurons of a dense layer).
    """
    names = list(arch.layer_names)
    i = names.index(arch.layer(layer).name)
    if i + 1 == len(names):
        raise TopologyError(f"layer {layer!r} is the last one: it has no outgoing weights to weigh its neurons by")
    nxt = arch.layer(names[i + 1])
    out_ch = arch.layer(layer).weight_shape[0]
    weight = arch.select(np.atleast_2d(flat_rows), nxt.name).astype(np.float64)
    if weight.shape[2] != out_ch:
        raise TopologyError(f"layer {nxt.name!r} takes {weight.shape[2]} inputs, not the {out_ch} outputs of {layer!r}")
    norms = np.sqrt((weight ** 2).sum(axis=tuple(a for a in range(1, weight.ndim) if a != 2)))
    return norms / np.maximum(norms.max(axis=1, keepdims=True), 1e-300)


def pooled_neurons(flat_rows: np.ndarray, arch: Architecture, layer: str) -> tuple[np.ndarray, np.ndarray]:
    """All neurons of ``layer`` over the given models, ``[n*out, d]``, with ``1 - importance`` for each."""
    cloud = neuron_cloud(flat_rows, arch, layer)
    value = 1.0 - neuron_importance(flat_rows, arch, layer)
    return cloud.reshape(-1, cloud.shape[-1]), value.reshape(-1)


def regular_grid(r_max: float, resolution: int = 20, f_range: tuple[float, float] = (0.0, 1.0)) -> list[np.ndarray]:
    """A coarse regular grid for (Rips scale, function): ``resolution`` steps each (20-50 recommended)."""
    if not 2 <= resolution <= 200:
        raise TopologyError(f"resolution must be between 2 and 200 grid steps, got {resolution!r}")
    return [np.linspace(0.0, float(r_max), resolution), np.linspace(*f_range, resolution)]


def function_rips_measure(points: np.ndarray, values: np.ndarray, grid: Sequence[np.ndarray],
                          degrees: Sequence[int] = (0,)) -> list[tuple[np.ndarray, np.ndarray]]:
    """Hilbert signed measures of the function-Rips bifiltration, one ``(locations [k, 2], weights [k])`` per degree.

    A simplex enters at (its diameter, the largest function value of its vertices). The measure
    is computed on ``grid`` (see :func:`regular_grid`) and made zero-mass at the grid's far corner.
    """
    mp = require_multipers()
    gd = require_gudhi()
    pts = np.asarray(points, dtype=np.float64)
    dist = pairwise_distances(pts[None])[0]
    st = gd.SimplexTree.create_from_array(dist)
    st.expansion(max(degrees) + 1)
    stm = mp.SimplexTreeMulti(st, num_parameters=2)
    stm.fill_lowerstar(np.asarray(values, dtype=np.float64), parameter=1)
    corner = np.array([g[-1] for g in grid], dtype=np.float64)
    measures = mp.signed_measure(stm, degrees=list(degrees), invariant="hilbert", grid=[np.asarray(g) for g in grid],
                                 mass_default=corner, n_jobs=1)
    return [(np.asarray(loc, dtype=np.float64), np.asarray(w, dtype=np.int64)) for loc, w in measures]


def hilbert_function(measure: tuple[np.ndarray, np.ndarray], x: float, y: float) -> int:
    """The Hilbert function at ``(x, y)`` recovered from its signed measure: total weight at locations ``<= (x, y)``."""
    loc, w = measure
    return int(w[(loc[:, 0] <= x) & (loc[:, 1] <= y)].sum())


def signed_measure_distance(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray],
                            metric: str = "euclidean") -> float:
    """Optimal-transport distance between two signed point measures (see the module docstring)."""
    import ot

    x, y = _balanced_sides(a, b)
    if len(x) != len(y):
        raise TopologyError(f"signed measures of different total mass ({len(x)} vs {len(y)} points after balancing); "
                            "compute both zero-mass on the same grid")
    if len(x) == 0:
        return 0.0
    cost = ot.dist(x, y, metric=metric)
    uniform = np.full(len(x), 1.0 / len(x))
    return float(ot.emd2(uniform, uniform, cost) * len(x))


def _balanced_sides(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    def expand(measure: tuple[np.ndarray, np.ndarray], sign: int) -> np.ndarray:
        loc, w = measure
        keep = w * sign > 0
        return np.repeat(np.asarray(loc, dtype=np.float64)[keep], np.abs(w[keep]), axis=0).reshape(-1, 2)

    return (np.concatenate([expand(a, 1), expand(b, -1)]), np.concatenate([expand(b, 1), expand(a, -1)]))
