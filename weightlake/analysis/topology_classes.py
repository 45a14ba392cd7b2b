"""Does topology tell which classes a model saw? Measured two ways, against a baseline.

1. **Mantel test.** Between class sets, a distance built from topology (the sliced Wasserstein
   distance of the models' fc1 H0 diagrams, or the Euclidean distance of their standardised
   topological vectors, averaged over the models of the two class sets, see
   :func:`class_set_means`) against the Jaccard distance of the class sets. The statistic is the
   Spearman correlation of the two upper triangles; the p-value comes from permuting the class
   sets of one matrix (``(1 + #{r_perm >= r}) / (1 + permutations)``, one-sided).
2. **Which digits.** For each digit ``d``, "``d`` is among the model's classes" predicted from a
   feature vector by a standardised logistic regression, scored by the cross-validated ROC AUC of
   its out-of-fold decision values. Folds are grouped by class set whenever both labels span at
   least two class sets (so the test is on class sets never seen in training, ``cv = "grouped"``,
   with at most that many folds); otherwise stratified by label (``cv = "stratified"``: models of one class set can then sit on both
   sides, which flatters every feature set alike). The same folds score three feature sets:
   ``topology`` (:func:`topology_vectors`), ``baseline`` (norms and singular values of every
   layer, :func:`baseline_vectors`) and ``both``.

Every feature used here ignores neuron order; so does the baseline (singular values and norms).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from weightlake.arch import Architecture

SCALARS = ("h0_total_persistence", "h0_max_persistence", "h0_entropy", "h1_count", "h1_total_persistence",
           "h1_max_persistence", "h1_entropy", "neural_persistence", "neural_persistence_norm",
           "cubical_h0_total", "cubical_h1_total", "cubical_neg_h0_total", "cubical_neg_h1_total")


def topology_vectors(table: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """One vector per model from a ``topology`` table: every non-null scalar and both Betti curves of every layer.

    Returns ``(model_ids, X [n, F], names)``, models in ascending id order.
    """
    ids = np.sort(table["model_id"].unique().to_numpy())
    blocks, names = [], []
    for layer in table["layer"].unique(maintain_order=True).to_list():
        part = table.filter(pl.col("layer") == layer).sort("model_id")
        if not np.array_equal(part["model_id"].to_numpy(), ids):
            raise ValueError(f"layer {layer!r} lacks some models of the topology table")
        for col in SCALARS:
            if col in part.columns and part[col].null_count() == 0:
                blocks.append(part[col].to_numpy().astype(np.float64)[:, None])
                names.append(f"{layer}.{col}")
        for col in ("betti0", "betti1"):
            if col in part.columns and part[col].null_count() == 0:  # betti1 is null where H1 was skipped
                curves = np.array(part[col].to_list(), dtype=np.float64)
                blocks.append(curves)
                names += [f"{layer}.{col}[{k}]" for k in range(curves.shape[1])]
    return ids, np.concatenate(blocks, axis=1), names


def baseline_vectors(flat_rows: np.ndarray, arch: Architecture) -> tuple[np.ndarray, list[str]]:
    """Norms and spectra per layer: weight Frobenius norm, bias norm, all singular values (descending)."""
    rows = np.atleast_2d(flat_rows).astype(np.float64)
    blocks, names = [], []
    for layer in arch.layers:
        matrix = arch.layer_matrix(rows, layer.name)
        sv = np.linalg.svd(matrix, compute_uv=False)
        bias = arch.select(rows, f"{layer.name}.bias")
        blocks += [np.linalg.norm(matrix, axis=(1, 2))[:, None], np.linalg.norm(bias, axis=1)[:, None], sv]
        names += [f"{layer.name}.frobenius", f"{layer.name}.bias_norm"]
        names += [f"{layer.name}.sv[{k}]" for k in range(sv.shape[1])]
    return np.concatenate(blocks, axis=1), names


def jaccard_distances(class_sets: Sequence[Sequence[int]]) -> np.ndarray:
    """``1 - |A & B| / |A | B|`` between every two class sets."""
    masks = np.array([[d in set(c) for d in range(max(max(c) for c in class_sets) + 1)] for c in class_sets])
    inter = masks.astype(np.int64) @ masks.T.astype(np.int64)
    size = masks.sum(axis=1)
    union = size[:, None] + size[None, :] - inter
    return 1.0 - inter / np.maximum(union, 1)


def mantel(a: np.ndarray, b: np.ndarray, permutations: int = 999, seed: int = 0) -> tuple[float, float]:
    """Spearman correlation of the upper triangles of two distance matrices and its one-sided permutation p-value.

    Both are NaN when either triangle is constant (every class set equally far from every other,
    as disjoint class sets are under Jaccard): the correlation is undefined, not significant.
    """
    from scipy.stats import rankdata

    n = a.shape[0]
    iu = np.triu_indices(n, 1)
    ra = rankdata(a[iu])
    rb_full = b

    def corr(m: np.ndarray) -> float:
        rb = rankdata(m[iu])
        return float(np.corrcoef(ra, rb)[0, 1])

    with np.errstate(divide="ignore", invalid="ignore"):
        r = corr(rb_full)
    if not np.isfinite(r):  # one triangle is constant: no correlation, and no permutation can beat a NaN
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(permutations):
        p = rng.permutation(n)
        hits += corr(rb_full[np.ix_(p, p)]) >= r
    return r, (1 + hits) / (1 + permutations)


def class_set_means(dist: np.ndarray, class_sets: Sequence[Sequence[int]]) -> tuple[np.ndarray, list[tuple[int, ...]]]:
    """Model distances averaged per pair of class sets (self-pairs of a model left out), and the class sets.

    The Mantel test runs at this level: models of one class set that share a training run are
    near copies, and permuting single models would count that resemblance as class-set signal.
    """
    keys = [tuple(sorted(c)) for c in class_sets]
    sets = list(dict.fromkeys(keys))
    index = np.array([sets.index(k) for k in keys])
    g = len(sets)
    onehot = np.zeros((len(keys), g))
    onehot[np.arange(len(keys)), index] = 1.0
    sums = onehot.T @ dist @ onehot
    counts = onehot.sum(axis=0)
    pairs = np.outer(counts, counts) - np.diag(counts)  # a model is not paired with itself
    return sums / np.maximum(pairs, 1), sets


def cv_auc(x: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int = 5, seed: int = 0) -> tuple[float, str]:
    """Cross-validated ROC AUC of a standardised logistic regression; ``(auc, cv)`` (NaN when a label has too few models)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = np.asarray(y, dtype=int)
    if min(y.sum(), (1 - y).sum()) < 2:
        return float("nan"), "too_few"
    spread = min(len(set(groups[y == 1])), len(set(groups[y == 0])))
    if spread >= 2:
        splitter: Any = StratifiedGroupKFold(n_splits=min(folds, spread), shuffle=True, random_state=seed)
        splits, cv = list(splitter.split(x, y, groups)), "grouped"
    else:
        k = int(min(folds, y.sum(), (1 - y).sum()))
        splits, cv = list(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(x, y)), "stratified"
    score = np.full(len(y), np.nan)
    for train, test in splits:
        if len(set(y[train])) < 2:
            continue
        model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
        model.fit(x[train], y[train])
        score[test] = model.decision_function(x[test])
    ok = np.isfinite(score)
    if len(set(y[ok])) < 2:
        return float("nan"), cv
    return float(roc_auc_score(y[ok], score[ok])), cv


def digit_aucs(features: dict[str, np.ndarray], class_sets: Sequence[Sequence[int]], *, folds: int = 5,
               seed: int = 0) -> pl.DataFrame:
    """For every digit that some but not all models saw, the CV AUC of each feature set (null where
    :func:`cv_auc` gives none)."""
    groups = np.array([",".join(map(str, sorted(c))) for c in class_sets])
    digits = sorted({d for c in class_sets for d in c})
    rows = []
    for d in digits:
        y = np.array([d in c for c in class_sets], dtype=int)
        if y.all():
            continue
        for name, x in features.items():
            auc, cv = cv_auc(x, y, groups, folds, seed)
            # no AUC (cv says why): null, as the mantel rows' r, so max(auc) in SQL is not NaN
            rows.append({"digit": d, "features": name, "auc": auc if np.isfinite(auc) else None, "cv": cv,
                         "n_models": len(y),
                         "n_positive": int(y.sum()), "n_class_sets": len(set(groups))})
    return pl.DataFrame(rows, schema_overrides={"digit": pl.Int32, "auc": pl.Float64})


def model_diagram_distances(h0_deaths: Sequence[Sequence[float]], n_directions: int = 50) -> np.ndarray:
    """Sliced Wasserstein distances between every two models' H0 diagrams (births 0)."""
    from weightlake.analysis.topology_diagrams import h0_bars, sliced_wasserstein_matrix

    return sliced_wasserstein_matrix([h0_bars(d) for d in h0_deaths], n_directions)


def standardised_distances(x: np.ndarray) -> np.ndarray:
    """Euclidean distances between rows after scaling each column to unit variance (constant columns dropped)."""
    sd = x.std(axis=0)
    z = (x[:, sd > 0] - x[:, sd > 0].mean(axis=0)) / sd[sd > 0]
    sq = (z ** 2).sum(axis=1)
    return np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * z @ z.T, 0.0))


def disentangle(topo: pl.DataFrame, class_sets: Sequence[Sequence[int]], flat_rows: np.ndarray, arch: Architecture,
                *, folds: int = 5, permutations: int = 999, max_models: int = 300, seed: int = 0) -> pl.DataFrame:
    """Both measurements of the module docstring for one zoo -> one long table.

    Parameters
    ----------
    topo : a ``topology`` table (rows of :func:`weightlake.analysis.topology.zoo_topology` with
        ``model_id`` and Betti curves), covering every layer for the same models
    class_sets, flat_rows : the class set and weights of each model, in ascending ``model_id`` order
    arch : the architecture of the rows

    Returns
    -------
    rows of kind ``auc`` (digit, features, auc, cv, counts) and ``mantel`` (distance, r, p, counts)
    """
    from weightlake.analysis.topology import TopologyError

    if not isinstance(folds, (int, np.integer)) or folds < 2:
        raise TopologyError(f"folds must be at least 2 (one fold leaves nothing to test on), got {folds!r}")
    if not isinstance(permutations, (int, np.integer)) or permutations < 1:
        raise TopologyError(f"permutations must be at least 1 (999 resolves p down to 0.001), got {permutations!r}")
    ids, x_topo, _ = topology_vectors(topo)
    if len(class_sets) != ids.size or len(flat_rows) != ids.size:
        raise ValueError(f"{ids.size} models in the topology table, {len(class_sets)} class sets, "
                         f"{len(flat_rows)} weight rows")
    x_base, _ = baseline_vectors(flat_rows, arch)
    features = {"topology": x_topo, "baseline": x_base, "both": np.concatenate([x_topo, x_base], axis=1)}
    classes = [list(c) for c in class_sets]
    auc = digit_aucs(features, classes, folds=folds, seed=seed).with_columns(kind=pl.lit("auc"))
    man = _mantel_rows(topo, ids, features, classes, permutations, max_models, seed)
    return pl.concat([auc, man], how="diagonal_relaxed").select("kind", pl.exclude("kind"))


def _mantel_rows(topo: pl.DataFrame, ids: np.ndarray, features: dict[str, np.ndarray],
                 classes: list[list[int]], permutations: int, max_models: int, seed: int) -> pl.DataFrame:
    from weightlake.analysis.topology_multi import subsample

    pick = subsample(ids, max_models, seed)
    picked = [classes[i] for i in pick]
    fc1 = topo.filter(pl.col("layer") == "fc1").sort("model_id")
    dists = {}
    if fc1.height == ids.size:
        dists["fc1 H0 sliced Wasserstein"] = model_diagram_distances([fc1["h0_deaths"][int(i)].to_list() for i in pick])
    dists["topology vectors"] = standardised_distances(features["topology"][pick])
    dists["baseline vectors"] = standardised_distances(features["baseline"][pick])
    rows: list[dict[str, Any]] = []
    for name, d in dists.items():
        means, sets = class_set_means(d, picked)
        if len(sets) < 4:
            rows.append({"kind": "mantel", "distance": name, "r": None, "p": None, "n_models": int(pick.size),
                         "n_class_sets": len(sets), "cv": "too_few_class_sets"})
            continue
        r, p = mantel(means, jaccard_distances(sets), permutations=permutations, seed=seed)
        tested = bool(np.isfinite(r))
        rows.append({"kind": "mantel", "distance": name, "r": r if tested else None, "p": p if tested else None,
                     "n_models": int(pick.size), "n_class_sets": len(sets),
                     **({} if tested else {"cv": "constant_distances"})})
    return pl.DataFrame(rows)




def plot_disentangle(table: pl.DataFrame, path: Path | str, title: str) -> Path:
    """Bar chart: CV AUC per digit for each feature set (left), Mantel correlations (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    auc = table.filter(pl.col("kind") == "auc")
    man = table.filter(pl.col("kind") == "mantel")
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [3, 1.4]}, layout="constrained")
    sets = auc["features"].unique(maintain_order=True).to_list()
    digits = sorted(auc["digit"].unique().to_list())
    width = 0.8 / max(len(sets), 1)
    for k, name in enumerate(sets):
        part = auc.filter(pl.col("features") == name).sort("digit")
        ax.bar(np.arange(len(digits)) + k * width - 0.4 + width / 2, part["auc"].to_numpy(), width, label=name)
    ax.axhline(0.5, color="grey", lw=1, ls="--", label="chance")
    folds = {"grouped": "folds grouped by class set (tested on class sets unseen in training)",
             "stratified": "stratified folds (a class set may sit on both sides)",
             "too_few": "too few models for a fold"}
    how = "; ".join(folds.get(cv, cv) for cv in sorted(set(auc["cv"].drop_nulls().to_list())))
    ax.set(xticks=range(len(digits)), xticklabels=digits, ylim=(0, 1.12), xlabel="digit d",
           ylabel="cross-validated ROC AUC of 'd in classes'",
           title=f"{title}\nstandardised logistic regression, out-of-fold AUC; {how}")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=8, loc="upper left", ncol=len(sets) + 1)
    r_values = [r if r is not None else 0.0 for r in man["r"].to_list()]
    bx.barh(man["distance"].to_list(), r_values, color="tab:purple")
    why = man["cv"].to_list() if "cv" in man.columns else [None] * man.height
    for i, (r, p, cv) in enumerate(zip(man["r"].to_list(), man["p"].to_list(), why, strict=True)):
        untested = "not tested (constant distances)" if cv == "constant_distances" else "not tested (< 4 class sets)"
        if p is not None:
            bx.text(max(r or 0.0, 0.0) + 0.03, i, f"r={r:.2f}, p={p:.3f}", va="center", fontsize=8)
        else:  # from the left edge: the longer text stays inside the panel
            bx.text(-0.97, i, untested, va="center", fontsize=8, color="dimgrey")
    bx.axvline(0, color="grey", lw=1)
    n_sets = int(man["n_class_sets"].cast(pl.Int64).max() or 0) if man.height else 0  # type: ignore[arg-type]
    bx.set(xlabel="Mantel r (Spearman) against the\nJaccard distance of class sets", xlim=(-1, 1),
           title=f"Mantel tests over k={n_sets} class sets")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
