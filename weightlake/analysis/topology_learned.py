"""A learned filtration: which neuron property should the topology look at to tell class sets apart?

The filtration is explicit: every neuron ``j`` of a layer gets the value
``f(j) = theta . z_j`` where ``z_j`` are standardised neuron features (:data:`NEURON_FEATURES`:
incoming and outgoing norms and means, bias, largest incoming weight) and ``theta`` is a
unit vector. On a fixed graph over the neurons (the minimum spanning tree of the layer's
neuron cloud, so it does not depend on neuron order) ``f`` gives a lower-star filtration: a
vertex enters at ``f(j)``, an edge at the larger value of its ends. Its H0 bars run from a
local minimum to the value where that component merges into an older one (elder rule), so
each bar is ``f(death vertex) - f(birth vertex)``: once the pairing is known (recomputed from
the current values at every step) the bars are differentiable in ``theta``.

Each model is summarised by its total H0 persistence and its longest bar; a logistic layer
on those two numbers predicts the label, and ``theta`` is trained with it by Adam on the
binary cross-entropy. The coefficients of ``theta`` (signed; unit norm) are reported as "what
the topology looks at", with a held-out AUC so a filtration that learned nothing says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from weightlake.analysis.topology import neuron_cloud, pairwise_distances
from weightlake.arch import Architecture

NEURON_FEATURES: tuple[str, ...] = ("in_norm", "in_mean", "in_max_abs", "bias", "out_norm", "out_mean")
"""Per-neuron features of :func:`neuron_features`, in column order."""


def neuron_features(flat_rows: np.ndarray, arch: Architecture, layer: str) -> np.ndarray:
    """Per-neuron features ``[n, out, 6]`` of ``layer`` (needs a next layer whose inputs are its outputs).

    For a conv layer feeding a conv, a channel's outgoing weights are every kernel weight that reads it.
    """
    from weightlake.analysis.topology_multi import neuron_importance

    rows = np.atleast_2d(flat_rows).astype(np.float64)
    neuron_importance(rows[:1], arch, layer)  # refuses a layer without a dense next layer
    w_in = arch.layer_matrix(rows, layer)
    bias = arch.select(rows, f"{layer}.bias")
    nxt = arch.layer_names[list(arch.layer_names).index(layer) + 1]
    w_out = arch.select(rows, nxt)  # [n, next_out, out] (dense) or [n, next_out, out, kh, kw] (conv)
    w_out = w_out.reshape(*w_out.shape[:3], -1)  # a conv's kernel positions are more outgoing weights
    return np.stack([np.linalg.norm(w_in, axis=2), w_in.mean(axis=2), np.abs(w_in).max(axis=2), bias,
                     np.sqrt((w_out ** 2).sum(axis=(1, 3))), w_out.mean(axis=(1, 3))], axis=2)


def mst_edges(dist: np.ndarray) -> np.ndarray:
    """Edges ``[m - 1, 2]`` of a minimum spanning tree of one dense distance matrix (Prim)."""
    m = dist.shape[0]
    in_tree = np.zeros(m, dtype=bool)
    in_tree[0] = True
    best, parent = dist[0].copy(), np.zeros(m, dtype=np.int64)
    edges = []
    for _ in range(m - 1):
        cand = np.where(in_tree, np.inf, best)
        j = int(np.argmin(cand))
        edges.append((int(parent[j]), j))
        in_tree[j] = True
        closer = dist[j] < best
        best, parent = np.where(closer, dist[j], best), np.where(closer, j, parent)
    return np.array(edges, dtype=np.int64).reshape(-1, 2)


def neuron_graphs(flat_rows: np.ndarray, arch: Architecture, layer: str) -> list[np.ndarray]:
    """The minimum spanning tree of each model's neuron cloud of ``layer``, as edge lists."""
    dist = pairwise_distances(neuron_cloud(flat_rows, arch, layer))
    return [mst_edges(d) for d in dist]


def lower_star_pairs(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """H0 pairs ``[k, 2]`` (birth vertex, death vertex) of the lower-star filtration of ``values`` on a graph.

    Edges enter at the larger value of their ends (ties broken by index); a merge kills the
    component whose minimum is younger; the death vertex is the edge's later end. Zero-length
    bars are included; the global minimum's essential bar is not.
    """
    order = np.lexsort((edges.max(axis=1), np.maximum(values[edges[:, 0]], values[edges[:, 1]])))
    parent = np.arange(len(values))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    pairs = []
    for e in order:
        a, b = edges[e]
        ra, rb = find(int(a)), find(int(b))
        if ra == rb:
            continue
        young, old = (ra, rb) if (values[ra], ra) > (values[rb], rb) else (rb, ra)
        late = a if (values[a], a) > (values[b], b) else b
        pairs.append((young, int(late)))
        parent[young] = old
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


@dataclass
class LearnedFiltration:
    """The outcome of :func:`fit_filtration`."""

    theta: np.ndarray
    """Unit coefficient vector over the features (signed)."""
    features: tuple[str, ...]
    train_auc: float
    test_auc: float
    losses: list[float]

    def coefficients(self) -> list[tuple[str, float]]:
        """``(feature, coefficient)`` sorted by absolute size, largest first."""
        order = np.argsort(-np.abs(self.theta))
        return [(self.features[i], float(self.theta[i])) for i in order]


def fit_filtration(features: Sequence[np.ndarray], graphs: Sequence[np.ndarray], y: Sequence[int], *,
                   names: Sequence[str] | None = None, steps: int = 150, lr: float = 0.05, test_share: float = 0.3,
                   seed: int = 0) -> LearnedFiltration:
    """Learn ``theta`` so the H0 persistence of ``theta . z`` separates ``y`` (see the module docstring).

    Parameters
    ----------
    features : per model, neuron features ``[m_i, F]`` (standardised here over all neurons)
    graphs : per model, edges ``[e_i, 2]`` of a connected graph over its neurons
    y : binary label per model
    names : feature names (default ``f0, f1, ...``)
    steps, lr : Adam steps and learning rate
    test_share : share of models held out for the reported test AUC (stratified, seeded)
    """
    import torch
    from sklearn.metrics import roc_auc_score

    from weightlake.analysis.topology import TopologyError

    if not isinstance(steps, (int, np.integer)) or steps < 1:
        raise TopologyError(f"steps must be a positive number of Adam steps, got {steps!r}")
    y_arr = np.asarray(y, dtype=np.float64)
    stacked = np.concatenate(features)
    mean, sd = stacked.mean(axis=0), stacked.std(axis=0)
    width = max(len(f) for f in features)
    padded = np.zeros((len(features), width, stacked.shape[1]))
    for i, f in enumerate(features):
        padded[i, :len(f)] = (f - mean) / np.where(sd > 0, sd, 1.0)
    z = torch.as_tensor(padded)
    n_feat = stacked.shape[1]
    rng = np.random.default_rng(seed)
    test = np.zeros(len(y_arr), dtype=bool)
    for label in (0, 1):
        idx = np.flatnonzero(y_arr == label)
        test[rng.choice(idx, int(round(test_share * idx.size)), replace=False)] = True
    gen = torch.Generator().manual_seed(seed)
    raw = (torch.ones(n_feat, dtype=torch.float64) / n_feat ** 0.5 + 0.01 * torch.randn(n_feat, generator=gen,
                                                                                        dtype=torch.float64))
    raw.requires_grad_(True)
    head = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([raw, head], lr=lr)
    target = torch.as_tensor(y_arr)
    train = torch.as_tensor(~test)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        logits = _logits(raw, head, z, graphs)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits[train], target[train])
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    with torch.no_grad():
        score = _logits(raw, head, z, graphs).numpy()
    theta = (raw / raw.norm()).detach().numpy()

    def auc(mask: np.ndarray) -> float:
        return float(roc_auc_score(y_arr[mask], score[mask])) if len(set(y_arr[mask])) == 2 else float("nan")

    return LearnedFiltration(theta, tuple(names or [f"f{i}" for i in range(n_feat)]), auc(~test), auc(test), losses)


def _logits(raw: Any, head: Any, z: Any, graphs: Sequence[np.ndarray]) -> Any:
    """Logits of every model: one padded ``[n, m, F] @ theta``, pairings in numpy, bars gathered at once."""
    import torch

    theta = raw / raw.norm()
    f = z @ theta
    values = f.detach().numpy()
    model, birth, death = [], [], []
    for i, edges in enumerate(graphs):
        pairs = lower_star_pairs(values[i, :edges.max() + 1], edges)
        model.append(np.full(len(pairs), i))
        birth.append(pairs[:, 0])
        death.append(pairs[:, 1])
    m = torch.as_tensor(np.concatenate(model))
    bars = f[m, torch.as_tensor(np.concatenate(death))] - f[m, torch.as_tensor(np.concatenate(birth))]
    n = f.shape[0]
    total = torch.zeros(n, dtype=f.dtype).index_add(0, m, bars)
    longest = torch.zeros(n, dtype=f.dtype).scatter_reduce(0, m, bars, reduce="amax", include_self=True)
    s = torch.stack([total, longest], dim=1)
    s = (s - s.mean(dim=0)) / (s.std(dim=0) + 1e-9)
    return s @ head[:2] + head[2]
