"""Persistent homology of single models, layer by layer, in forms that ignore neuron order.

Every feature here is a function of a model's weights that does not change when the hidden
neurons of a layer are permuted (rows of a layer with its bias, and the matching input
columns of the next layer: the same network). Three complexes are built per layer:

* **Rips of the neuron cloud.** Each output neuron is a point: its incoming weights (a conv
  filter flattened to ``in*kh*kw`` values) followed by its bias. Distances are Euclidean;
  the filtration value of an edge is the distance (gudhi's and ripser's convention, not
  half of it). H0 deaths are the edge lengths of the minimum spanning tree of the complete
  graph (computed for a whole block of models at once by a batched Prim); H1 comes from a
  gudhi flag complex after edge collapse (which keeps persistence exact).
* **Neural persistence** (Rieck et al., ICLR 2019). The layer as a bipartite graph (inputs x
  outputs), edge weights ``a = |w| / max |w|``, filtered from the strongest edge down. All
  vertices are born at once, so H0 has one bar per edge of the maximum spanning tree, of
  persistence ``1 - a``; ``neural_persistence`` is the 2-norm of those persistences and
  ``neural_persistence_norm`` divides it by its largest possible value ``sqrt(V - 1)``; both
  are null for an all-zero layer (no largest ``|w|`` to normalise by).
  For a conv layer the graph is the channel graph (``in x out``) whose edge weight is the
  largest ``|w|`` of that kernel (a choice of this module; the paper covers dense layers).
* **Cubical sublevel persistence of conv kernels.** Each ``kh x kw`` kernel is an image
  (gudhi's top-dimensional cells: diagonal neighbours touch); its finite bars (the one
  essential H0 bar is left out) are summed per kernel and averaged over the layer's
  kernels, for ``w`` (valleys) and ``-w`` (peaks).

Summaries of a diagram (finite bars only): count, total and largest persistence, and the
persistent entropy ``-sum(l/L log(l/L))`` of the bar lengths ``l`` (``L = sum l``; 0 for
fewer than two bars). Betti curves and persistence images on fixed grids live in
:mod:`weightlake.analysis.topology_diagrams`.

Requires the ``topology`` extra (gudhi) for H1 and cubical parts; H0 and neural
persistence are numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from weightlake.arch import Architecture, Layer
from weightlake.errors import ArchitectureError, WeightLakeError


class TopologyError(WeightLakeError, ValueError):
    """A topology computation got input it cannot use (shape, empty group, missing package)."""


def require_gudhi() -> Any:
    """Import gudhi or refuse with the install command."""
    try:
        import gudhi
    except ImportError as exc:  # pragma: no cover - the dev extra installs it
        raise TopologyError("persistent homology needs gudhi: pip install 'weightlake[topology]'") from exc
    return gudhi


# -- point clouds and graphs of a layer ------------------------------------------------------
def neuron_cloud(flat_rows: np.ndarray, arch: Architecture, layer: str | Layer) -> np.ndarray:
    """Each output neuron of ``layer`` as a point: incoming weights then bias (no bias column for a
    layer without one, as ResNet convs before a batch norm).

    Parameters
    ----------
    flat_rows : array ``[n, P]`` (or ``[P]``)
    arch : the architecture of the rows
    layer : layer name or :class:`~weightlake.arch.Layer`

    Returns
    -------
    float64 array ``[n, out, in*kh*kw + 1]`` (``in*kh*kw`` without a bias)
    """
    spec = arch.layer(layer) if isinstance(layer, str) else layer
    rows = np.atleast_2d(flat_rows)
    matrix = arch.layer_matrix(rows, spec.name)
    if not spec.bias_size:
        return matrix.astype(np.float64)
    bias = arch.select(rows, f"{spec.name}.bias")
    return np.concatenate([matrix, bias[..., None]], axis=-1).astype(np.float64)


def pairwise_distances(points: np.ndarray) -> np.ndarray:
    """Euclidean distance matrices ``[n, m, m]`` of point clouds ``[n, m, d]`` (float64, zero diagonal).

    Each cloud is centred first: the Gram expansion ``|a|^2 + |b|^2 - 2 a.b`` loses about
    ``eps * |a|^2`` absolutely, so points far from the origin compared with their spread (flat
    vectors of one run's checkpoints, neurons sharing a large bias) lost most of their digits.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.shape[1]:
        pts = pts - pts.mean(axis=1, keepdims=True)
    sq = np.einsum("nid,nid->ni", pts, pts)
    gram = pts @ pts.transpose(0, 2, 1)  # batched BLAS: 15x einsum's loop for [16, 512, 4608] clouds
    gram = 0.5 * (gram + gram.transpose(0, 2, 1))  # exactly symmetric whichever kernel BLAS picks
    d2 = np.maximum(sq[:, :, None] + sq[:, None, :] - 2.0 * gram, 0.0)
    out = np.sqrt(d2)
    idx = np.arange(pts.shape[1])
    out[:, idx, idx] = 0.0
    return out


def layer_graph(flat_rows: np.ndarray, arch: Architecture, layer: str | Layer) -> np.ndarray:
    """Edge weights ``|w|`` of the layer's bipartite graph, ``[n, out, in]``.

    Dense layers give ``|W|``; conv layers the channel graph with the largest ``|w|`` of each kernel.
    """
    spec = arch.layer(layer) if isinstance(layer, str) else layer
    weight = np.abs(arch.select(np.atleast_2d(flat_rows), spec.name)).astype(np.float64)
    if weight.ndim == 5:  # [n, out, in, kh, kw]
        weight = weight.max(axis=(-2, -1))
    return weight


# -- H0 as spanning trees, batched -----------------------------------------------------------
def batched_mst(dist: np.ndarray) -> np.ndarray:
    """Edge weights of a minimum spanning tree of each dense graph, sorted ascending.

    Prim's algorithm run for a whole block at once: ``m - 1`` vectorised steps over ``[n, m]``.
    Infinite entries are missing edges; each graph must be connected.

    Parameters
    ----------
    dist : array ``[n, m, m]``, symmetric

    Returns
    -------
    array ``[n, m - 1]``: the H0 deaths of the sublevel filtration with every vertex at 0.
    """
    dist = np.asarray(dist, dtype=np.float64)
    n, m = dist.shape[0], dist.shape[1]
    rows = np.arange(n)
    in_tree = np.zeros((n, m), dtype=bool)
    in_tree[:, 0] = True
    best = dist[:, 0, :].copy()
    out = np.empty((n, max(m - 1, 0)))
    for step in range(m - 1):
        best[in_tree] = np.inf
        nxt = np.argmin(best, axis=1)
        out[:, step] = best[rows, nxt]
        in_tree[rows, nxt] = True
        best = np.minimum(best, dist[rows, nxt, :])
    if not np.isfinite(out).all():
        raise TopologyError("a graph given to batched_mst is not connected")
    return np.sort(out, axis=1)


def rips_h0(points: np.ndarray) -> np.ndarray:
    """Finite H0 deaths (births are 0) of the Rips filtration of each cloud ``[n, m, d]`` -> ``[n, m - 1]``."""
    return batched_mst(pairwise_distances(points))


def neural_persistence_bars(weights: np.ndarray) -> np.ndarray:
    """Persistences ``1 - a`` of the maximum-spanning-tree edges of bipartite graphs ``|W|`` ``[n, out, in]``.

    ``a = |w| / max |w|`` per graph. Returns ``[n, out + in - 1]`` sorted ascending.
    """
    w = np.asarray(weights, dtype=np.float64)
    n, n_out, n_in = w.shape
    peak = w.reshape(n, -1).max(axis=1)
    a = w / np.where(peak > 0, peak, 1.0)[:, None, None]
    size = n_out + n_in
    dist = np.full((n, size, size), np.inf)
    dist[:, :n_out, n_out:] = 1.0 - a
    dist[:, n_out:, :n_out] = np.swapaxes(1.0 - a, 1, 2)
    return batched_mst(dist)


def neural_persistence(weights: np.ndarray, p: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Neural persistence and its normalised form for graphs ``[n, out, in]`` (Rieck et al. 2019).

    NaN for an all-zero graph: ``a = |w| / max |w|`` has no scale there (every edge would get
    persistence 1, the largest value possible, while a constant non-zero layer gets 0).
    """
    bars = neural_persistence_bars(weights)
    value = np.linalg.norm(bars, ord=p, axis=1)
    w = np.asarray(weights)
    value = np.where(np.abs(w).reshape(len(w), -1).max(axis=1, initial=0.0) > 0, value, np.nan)
    return value, value / (bars.shape[1] ** (1.0 / p))


# -- H1 of Rips, per cloud -------------------------------------------------------------------
def rips_h1(dist: np.ndarray) -> list[np.ndarray]:
    """Finite H1 bars ``[k, 2]`` of the Rips filtration of each distance matrix in ``[n, m, m]``."""
    gd = require_gudhi()
    out = []
    for d in np.asarray(dist, dtype=np.float64):
        if d.shape[0] < 4:  # three points cannot bound a cycle that lives
            out.append(np.empty((0, 2)))
            continue
        st = gd.SimplexTree.create_from_array(d)
        st.collapse_edges()
        st.expansion(2)
        st.compute_persistence()
        bars = np.asarray(st.persistence_intervals_in_dimension(1), dtype=np.float64).reshape(-1, 2)
        out.append(bars[np.isfinite(bars[:, 1]) & (bars[:, 1] > bars[:, 0])])
    return out


def rips_diagrams(points: np.ndarray, max_dim: int = 1) -> list[np.ndarray]:
    """gudhi's Rips diagrams ``[H0, H1, ...]`` (finite bars) of one cloud ``[m, d]``: the reference path."""
    gd = require_gudhi()
    st = gd.RipsComplex(points=np.asarray(points, dtype=np.float64)).create_simplex_tree(max_dimension=max_dim + 1)
    st.compute_persistence()
    diagrams = []
    for dim in range(max_dim + 1):
        bars = np.asarray(st.persistence_intervals_in_dimension(dim), dtype=np.float64).reshape(-1, 2)
        diagrams.append(bars[np.isfinite(bars[:, 1])])
    return diagrams


# -- cubical persistence of kernels, many at once ---------------------------------------------
def grid_edges(kh: int, kw: int, diagonal: bool) -> tuple[np.ndarray, np.ndarray]:
    """Edges ``(u, v)`` of the ``kh x kw`` pixel grid (row-major ids): 4-neighbours, plus diagonals if asked."""
    ids = np.arange(kh * kw).reshape(kh, kw)
    pairs = [(ids[:, :-1], ids[:, 1:]), (ids[:-1, :], ids[1:, :])]
    if diagonal:
        pairs += [(ids[:-1, :-1], ids[1:, 1:]), (ids[:-1, 1:], ids[1:, :-1])]
    return (np.concatenate([a.ravel() for a, _ in pairs]).astype(np.int64),
            np.concatenate([b.ravel() for _, b in pairs]).astype(np.int64))


def sublevel_h0_total(values: np.ndarray, edges: tuple[np.ndarray, np.ndarray], block: int = 65536) -> np.ndarray:
    """Total finite H0 persistence of the sublevel filtration of vertex values on one graph, for many value sets.

    With every vertex its own component born at its value and an edge entering at the larger
    value of its ends, each spanning-tree edge kills one component (elder rule), and the killed
    components are exactly those of every vertex but the global minimum. So the total is the
    minimum spanning tree's weight minus ``sum(values) - min(values)``; zero-length bars add 0.
    The tree comes from Prim's algorithm run for all value sets at once over the shared
    neighbour table (edge weights are formed on the fly, no distance matrix).

    Parameters
    ----------
    values : array ``[N, V]``
    edges : ``(u, v)`` of a connected graph on ``V`` vertices
    """
    vals = np.asarray(values, dtype=np.float64)
    nbr = _neighbour_table(vals.shape[1], edges)
    out = np.empty(vals.shape[0])
    for start in range(0, vals.shape[0], block):
        x = vals[start:start + block]
        out[start:start + block] = _prim_vertex_weighted(x, nbr) - (x.sum(axis=1) - x.min(axis=1))
    return out


def _neighbour_table(n_vertices: int, edges: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """``[V, K]`` neighbour ids, padded with ``V`` (a dummy vertex)."""
    lists: list[list[int]] = [[] for _ in range(n_vertices)]
    for a, b in zip(*edges, strict=True):
        lists[int(a)].append(int(b))
        lists[int(b)].append(int(a))
    width = max(len(x) for x in lists)
    return np.array([x + [n_vertices] * (width - len(x)) for x in lists], dtype=np.int64)


def _prim_vertex_weighted(x: np.ndarray, nbr: np.ndarray) -> np.ndarray:
    """Weight of a minimum spanning tree where edge ``(a, b)`` weighs ``max(x_a, x_b)``, for each row of ``x``.

    Works on flat buffers with precomputed row offsets: numpy's 1-D gathers are several times
    cheaper than 2-D fancy indexing, and this loop is the cost of the cubical features.
    """
    n, v = x.shape
    width = v + 1
    base = (np.arange(n, dtype=np.int64) * width)[:, None]
    first = base[:, 0]
    xp = np.concatenate([x, np.full((n, 1), np.inf)], axis=1).ravel()
    best = np.full(n * width, np.inf)
    done = np.zeros(n * width, dtype=bool)
    done[v::width] = True  # the padding vertex
    done[0::width] = True  # the tree starts at vertex 0
    cur = np.zeros(n, dtype=np.int64)
    total = np.zeros(n)
    for _ in range(v - 1):
        idx = base + nbr[cur]
        w = np.maximum(xp[first + cur][:, None], xp[idx])
        w[done[idx]] = np.inf
        best[idx] = np.minimum(best[idx], w)
        at = first + np.argmin(best.reshape(n, width), axis=1)
        total += best[at]
        best[at] = np.inf
        done[at] = True
        cur = at - first
    return total


def kernel_cubical_totals(kernels: np.ndarray) -> dict[str, np.ndarray]:
    """Total finite H0 and H1 persistence of the cubical sublevel filtration of many small images.

    gudhi's convention (images as top-dimensional cells, lower cells take the smallest value of
    their cofaces) makes pixels that share a corner adjacent, so H0 is the sublevel H0 of the
    8-neighbour pixel graph (:func:`sublevel_h0_total`). H1 follows by duality: a hole of
    ``{f <= t}`` is a bounded 4-connected component of ``{f > t}``, born at its largest value and
    closed when it joins the outside; so H1 of ``f`` is the H0 of ``-f`` on the 4-neighbour grid
    with one extra vertex, the outside, below every pixel and joined to the border pixels.
    Both agree with gudhi's ``CubicalComplex`` bar for bar in total (tested), at a fraction of
    its cost for thousands of 5 x 5 kernels.

    Parameters
    ----------
    kernels : array ``[N, kh, kw]``

    Returns
    -------
    dict of ``h0_total`` and ``h1_total``, each ``[N]``
    """
    k = np.asarray(kernels, dtype=np.float64)
    n, kh, kw = k.shape
    flat = k.reshape(n, kh * kw)
    h0 = sublevel_h0_total(flat, grid_edges(kh, kw, diagonal=True))
    if kh < 3 or kw < 3:  # no pixel can be enclosed
        return {"h0_total": h0, "h1_total": np.zeros(n)}
    u, v = grid_edges(kh, kw, diagonal=False)
    ids = np.arange(kh * kw).reshape(kh, kw)
    border = np.unique(np.concatenate([ids[0], ids[-1], ids[:, 0], ids[:, -1]]))
    outside = kh * kw
    edges = (np.concatenate([u, border]), np.concatenate([v, np.full(border.size, outside)]))
    neg = -flat
    values = np.concatenate([neg, neg.min(axis=1, keepdims=True) - 1.0], axis=1)
    return {"h0_total": h0, "h1_total": sublevel_h0_total(values, edges)}


def cubical_diagrams(image: np.ndarray) -> list[np.ndarray]:
    """gudhi's cubical diagrams ``[H0, H1]`` (finite bars) of one image: the reference path."""
    gd = require_gudhi()
    cc = gd.CubicalComplex(top_dimensional_cells=np.asarray(image, dtype=np.float64))
    cc.compute_persistence()
    out = []
    for dim in (0, 1):
        bars = np.asarray(cc.persistence_intervals_in_dimension(dim), dtype=np.float64).reshape(-1, 2)
        out.append(bars[np.isfinite(bars[:, 1])])
    return out


# -- summaries ---------------------------------------------------------------------------------
def bar_summaries(lengths: np.ndarray, valid: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Count, total, max and persistent entropy of bar lengths ``[n, k]`` (``valid`` masks padding)."""
    length = np.asarray(lengths, dtype=np.float64)
    mask = np.ones_like(length, dtype=bool) if valid is None else valid
    length = np.where(mask, length, 0.0)
    total = length.sum(axis=1)
    share = length / np.where(total > 0, total, 1.0)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.where(share > 0, share * np.log(share), 0.0).sum(axis=1)
    return {"count": mask.sum(axis=1), "total": total, "max": length.max(axis=1, initial=0.0), "entropy": entropy}


def _pad(bars: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    width = max([len(b) for b in bars] + [1])
    lengths = np.zeros((len(bars), width))
    valid = np.zeros((len(bars), width), dtype=bool)
    for i, b in enumerate(bars):
        lengths[i, :len(b)] = b[:, 1] - b[:, 0]
        valid[i, :len(b)] = True
    return lengths, valid


# -- one layer of many models ------------------------------------------------------------------
SCALAR_FEATURES: tuple[str, ...] = (
    "h0_total_persistence", "h0_max_persistence", "h0_entropy",
    "h1_count", "h1_total_persistence", "h1_max_persistence", "h1_entropy",
    "neural_persistence", "neural_persistence_norm",
    "cubical_h0_total", "cubical_h1_total", "cubical_neg_h0_total", "cubical_neg_h1_total",
)
"""Per-layer scalar columns of :func:`layer_topology` (cubical ones are null for dense layers)."""


def layer_topology(flat_rows: np.ndarray, arch: Architecture, layer: str | Layer, *, h1: bool = True,
                   cubical: bool = True) -> dict[str, Any]:
    """Every per-layer feature of a block of models: scalars ``[n]`` and diagrams (lists of arrays).

    Returns a dict with the :data:`SCALAR_FEATURES` (NaN where not computed; null in frames) plus ``h0_deaths``
    (``[n, out - 1]``) and ``h1_bars`` (list of ``[k, 2]``).
    """
    spec = arch.layer(layer) if isinstance(layer, str) else layer
    rows = np.atleast_2d(flat_rows)
    n = rows.shape[0]
    cloud = neuron_cloud(rows, arch, spec)
    refuse_non_finite(cloud, spec.name)
    dist = pairwise_distances(cloud)
    deaths = batched_mst(dist)
    out: dict[str, Any] = {"h0_deaths": deaths}
    s0 = bar_summaries(deaths)
    out.update(h0_total_persistence=s0["total"], h0_max_persistence=s0["max"], h0_entropy=s0["entropy"])
    bars = rips_h1(dist) if h1 else [np.empty((0, 2))] * n
    s1 = bar_summaries(*_pad(bars))
    nan = np.full(n, np.nan)
    out.update(h1_bars=bars, h1_count=s1["count"].astype(np.float64) if h1 else nan,
               h1_total_persistence=s1["total"] if h1 else nan, h1_max_persistence=s1["max"] if h1 else nan,
               h1_entropy=s1["entropy"] if h1 else nan)
    out["neural_persistence"], out["neural_persistence_norm"] = neural_persistence(layer_graph(rows, arch, spec))
    for key in ("cubical_h0_total", "cubical_h1_total", "cubical_neg_h0_total", "cubical_neg_h1_total"):
        out[key] = nan
    if cubical and spec.kind == "conv2d":
        out.update(_conv_cubical(arch.select(rows, spec.name)))
    return out


def refuse_non_finite(cloud: np.ndarray, layer: str) -> None:
    """Refuse neuron clouds ``[n, out, d]`` holding a NaN or an infinity, naming the rows.

    Without it such a row failed as "a graph given to batched_mst is not connected" (a NaN
    distance is no edge), which points at the wrong cause.
    """
    bad = np.flatnonzero(~np.isfinite(cloud).all(axis=(1, 2)))
    if bad.size:
        shown = ", ".join(str(int(i)) for i in bad[:5]) + (" ..." if bad.size > 5 else "")
        raise TopologyError(f"layer {layer!r}: {bad.size} of {len(cloud)} rows hold a NaN or an infinity "
                            f"(row {shown}); persistence needs finite weights, drop those rows")


def _conv_cubical(weight: np.ndarray) -> dict[str, np.ndarray]:
    n, kh, kw = weight.shape[0], weight.shape[-2], weight.shape[-1]
    per_model = weight.shape[1] * weight.shape[2]
    kernels = weight.reshape(-1, kh, kw)
    out = {}
    for sign, prefix in ((1.0, "cubical_"), (-1.0, "cubical_neg_")):
        totals = kernel_cubical_totals(sign * kernels)
        for dim in (0, 1):
            out[f"{prefix}h{dim}_total"] = totals[f"h{dim}_total"].reshape(n, per_model).mean(axis=1)
    return out


def zoo_topology(flat_rows: np.ndarray, arch: Architecture, *, layers: Sequence[str] | None = None,
                 h1: bool = True, cubical: bool = True, block: int = 1024,
                 progress: Any = None) -> pl.DataFrame:
    """Per-model, per-layer topology of a whole zoo: one row per model x layer.

    Parameters
    ----------
    flat_rows : array ``[n, P]``
    arch : architecture of the rows
    layers : layer names (default: every conv2d and linear layer; a batch norm has no neurons to cloud)
    h1 : compute Rips H1 (gudhi; the costly part)
    cubical : compute cubical persistence of conv kernels
    block : models per batch
    progress : optional callable ``(done, total)``

    Returns
    -------
    polars frame with ``row`` (index into ``flat_rows``), ``layer``, ``n_neurons``, the
    :data:`SCALAR_FEATURES`, ``h0_deaths`` (list of floats), ``h1_births`` and ``h1_deaths``.
    """
    from weightlake._util import non_finite_rows

    rows = np.atleast_2d(flat_rows)
    names = list(dict.fromkeys(layers)) if layers else list(arch.matrix_layer_names)  # a layer named twice: once
    for name in names:
        try:
            arch.matrix_layer(name)
        except ArchitectureError as exc:
            raise TopologyError(f"{exc}: topology needs conv2d or linear layers") from exc
    bad = non_finite_rows(rows)
    if len(bad):
        shown = ", ".join(str(int(i)) for i in bad[:5]) + (" ..." if len(bad) > 5 else "")
        raise TopologyError(f"{len(bad)} of {len(rows)} rows hold a NaN or an infinity (row {shown}); "
                            "persistence needs finite weights, drop those rows")
    parts = []
    for start in range(0, rows.shape[0], block):
        chunk = rows[start:start + block]
        for name in names:
            parts.append(_layer_frame(layer_topology(chunk, arch, name, h1=h1, cubical=cubical), name, start,
                                      arch.layer(name).weight_shape[0]))
        if progress:
            progress(min(start + block, rows.shape[0]), rows.shape[0])
    if not parts:
        return pl.DataFrame()
    return pl.concat(parts).sort("row", maintain_order=True)  # stable: layers stay in network order


def _layer_frame(result: dict[str, Any], name: str, start: int, n_neurons: int) -> pl.DataFrame:
    n = result["h0_deaths"].shape[0]
    cols: dict[str, Any] = {"row": np.arange(start, start + n), "layer": [name] * n,
                            "n_neurons": np.full(n, n_neurons, dtype=np.int32)}
    cols.update({k: np.asarray(result[k], dtype=np.float64) for k in SCALAR_FEATURES})
    frame = pl.DataFrame(cols).fill_nan(None)  # features not computed for this layer are null, not NaN
    return frame.with_columns(h0_deaths=_list_column(list(result["h0_deaths"])),
                              h1_births=_list_column([b[:, 0] for b in result["h1_bars"]]),
                              h1_deaths=_list_column([b[:, 1] for b in result["h1_bars"]]))


def _list_column(values: list[np.ndarray]) -> pl.Series:
    """Ragged float arrays as a ``List(Float32)`` column (one flat buffer, offsets from the lengths)."""
    lengths = np.array([len(v) for v in values], dtype=np.int64)
    flat = np.concatenate(values).astype(np.float32) if values and lengths.sum() else np.empty(0, np.float32)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    import pyarrow as pa

    arr = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(flat, pa.float32()))
    return pl.Series(arr).cast(pl.List(pl.Float32))
