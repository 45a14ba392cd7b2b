"""Random-matrix spectra of layer weight matrices, batched over whole zoos.

One layer of ``n`` models is a stack of matrices ``A`` of shape ``[n, r, c]`` (conv kernels
flattened to ``out x in*kh*kw``, see :meth:`weightlake.arch.Architecture.layer_matrix`).
Everything is computed from one batched ``torch.linalg.eigh`` of the smaller Gram matrix
(``A A^T`` if ``r <= c``, else ``A^T A``) in float64: its eigenvalues are the squared
singular values, its eigenvectors give the localisation figure.

Normalisation (Marchenko-Pastur convention)
-------------------------------------------
Let ``M = min(r, c)`` and ``N = max(r, c)``.  The empirical spectral density (ESD) is the set
of ``M`` eigenvalues of the correlation matrix ``W = X X^T / N``, where ``X`` is ``A`` oriented
as ``M x N``; that is ``lambda_i = s_i^2 / N`` for the singular values ``s_i`` of ``A``.  For
iid entries of variance ``sigma^2`` the ESD then follows the Marchenko-Pastur law with aspect
ratio ``q = M / N`` and bulk ``[sigma^2 (1 - sqrt q)^2, sigma^2 (1 + sqrt q)^2]``.

Marchenko-Pastur fit
--------------------
``sigma^2`` is estimated from the bulk so that the fit works with as few as 4 eigenvalues
(the ``4 x 24`` and ``6 x 200`` layers of the zoo CNN):

1. start from median matching: ``sigma^2 = median(lambda) / median(MP_{q, 1})``;
2. call an eigenvalue a *spike* when its Tracy-Widom statistic
   ``(lambda N / sigma^2 - mu_np) / sigma_np`` (Johnstone's real-Wishart centering, see
   :func:`weightlake.analysis.rmt.wishart_edge_scaling`) exceeds ``spike_threshold`` (default:
   the 99 % quantile of TW1, 2.02); only the top ``floor(M / 2)`` eigenvalues may be spikes, and
   none that is zero to the Gram matrix's precision (``<= M * eps * lambda_max``);
3. re-estimate ``sigma^2`` as the mean of the non-spike eigenvalues (for pure noise the mean
   ESD eigenvalue is exactly ``sigma^2`` in expectation, at any size); repeat 2-3 until the
   spike set no longer changes.

The TW statistic is self-normalised (``sigma^2`` comes from the same eigenvalues), which for
small ``M`` makes it somewhat narrower than TW1 and shifts it left; on Gaussian noise its mean and
spread stay within about 0.3 of TW1's (-1.21, 1.27) for every layer shape of the zoo CNN.

Limits: with ``M`` of 4-10 the fit is coarse (``sigma^2`` has a relative standard error of
roughly ``sqrt(2 / (M N))`` for noise but more when structure is present); at most half
the eigenvalues can be declared spikes, so where most eigenvalues carry signal, ``sigma^2``
absorbs part of it and fewer spikes are counted; the bulk mean slightly underestimates ``sigma^2`` after true spikes are removed
(they carry some of the noise energy); all-zero matrices give NaN.

Other figures
-------------
``spectral_norm`` = ``s_max``; ``stable_rank`` = ``||A||_F^2 / ||A||_2^2``; ``effective_rank`` =
``exp(H(s / sum s))`` (Roy & Vetterli, singular values L1-normalised); ``condition_number`` =
``s_max / s_min`` over the ``M`` singular values (as ``numpy.linalg.cond``; above 1e4 from an SVD,
see :data:`COND_FROM_SVD`); ``entropy`` =
``H(lambda / sum lambda) / log M`` in ``[0, 1]`` (spectral or matrix entropy); ``level_spacing_ratio``
= mean ``min(s_i, s_{i+1}) / max(s_i, s_{i+1})`` over consecutive ESD spacings (NaN below 3
eigenvalues; 0.5307 for GOE-like, 0.3863 for uncorrelated levels); ``ipr_mean`` = mean inverse
participation ratio ``sum_j v_j^4`` of the Gram eigenvectors (``M``-dimensional; about
``3 / (M + 2)`` for random delocalised vectors, 1 for a vector on one coordinate); ``alpha`` =
power-law exponent of the ESD tail by continuous maximum likelihood, ``xmin`` chosen among the
eigenvalues to minimise the Kolmogorov-Smirnov distance (Clauset, Shalizi & Newman 2009), only
for layers with at least ``min_alpha_eigs`` non-zero eigenvalues (the reason is recorded in ``alpha_note``).

Where a figure is not defined the arrays hold NaN; the frames of :func:`zoo_spectra` (and the
``spectra`` table) hold null there, so ``avg(alpha)`` in SQL averages the layers that have one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from weightlake._util import torch_threads
from weightlake.analysis import rmt
from weightlake.analysis._rows import default_workers
from weightlake.arch import CNN_S, MATRIX_KINDS, Architecture
from weightlake.errors import ArchitectureError, FitError

MIN_ALPHA_EIGS = 10
"""Fewest eigenvalues for which a power-law exponent is fitted."""

SPECTRA_COLUMNS: tuple[str, ...] = (
    "row", "layer", "rows", "cols", "n_eigs", "lambda_max", "spectral_norm", "stable_rank",
    "effective_rank", "condition_number", "entropy", "mp_sigma2", "mp_lambda_minus", "mp_lambda_plus",
    "n_spikes", "spike_mass", "spike_mean", "tw_stat", "mp_ks", "level_spacing_ratio", "ipr_mean", "alpha", "alpha_xmin",
    "alpha_ks", "alpha_note",
)
"""Columns of :func:`zoo_spectra`, in order (``eigenvalues`` is appended on request); a figure the arrays of
:func:`layer_spectra` give as NaN (not defined for that matrix) is null in the frame."""


# -- eigen-decomposition ---------------------------------------------------------------------
def gram_eigh(matrices: Any, vectors: bool = True) -> tuple[np.ndarray, Any]:
    """Eigenvalues (ascending, ``[n, M]``, clipped at 0) and eigenvectors of the smaller Gram side.

    Parameters
    ----------
    matrices : array or torch.Tensor, shape ``[n, r, c]``
        One layer of ``n`` models.
    vectors : bool
        Also return the eigenvectors ``[n, M, M]`` (torch, float64, in columns).

    Returns
    -------
    eigenvalues : numpy.ndarray
        Squared singular values ``s_i^2`` of each matrix, ascending.
    eigenvectors : torch.Tensor or None
    """
    import torch

    if not isinstance(matrices, torch.Tensor):
        matrices = np.asarray(matrices)
        if not matrices.flags.writeable:  # a view of the lake's read-only cache: torch wants its own block
            matrices = matrices.copy()
    a = torch.as_tensor(matrices)
    if a.ndim != 3:
        raise ArchitectureError(f"expected matrices [n, rows, cols], got shape {tuple(a.shape)}")
    a = a.to(torch.float64)
    refuse_non_finite(a)
    gram = a @ a.mT if a.shape[1] <= a.shape[2] else a.mT @ a
    if vectors:
        eig, vec = torch.linalg.eigh(gram)
    else:
        eig, vec = torch.linalg.eigvalsh(gram), None
    return eig.clamp_min(0).numpy(), vec


def refuse_non_finite(matrices: Any) -> None:
    """Refuse a stack of matrices ``[n, r, c]`` (torch) holding a NaN or an infinity, naming them.

    LAPACK fails on them deep inside ``eigh`` ("ill-conditioned or has too many repeated
    eigenvalues") or ``svd``, which names neither the cause nor the matrix.
    """
    import torch

    bad = torch.nonzero(~torch.isfinite(matrices).flatten(1).all(dim=1)).flatten().tolist()
    if bad:
        shown = ", ".join(str(i) for i in bad[:5]) + (" ..." if len(bad) > 5 else "")
        raise FitError(f"{len(bad)} of {len(matrices)} weight matrices hold a NaN or an infinity (matrix {shown}); "
                       "a spectrum needs finite weights, drop those models")


def refuse_non_finite_rows(flat_rows: Any) -> None:
    """Refuse flat rows ``[n, P]`` (numpy) holding a NaN or an infinity, naming the rows (torch input is
    checked per layer by :func:`gram_eigh`)."""
    from weightlake._util import non_finite_rows

    if isinstance(flat_rows, np.ndarray):
        bad = non_finite_rows(flat_rows)
        if len(bad):
            shown = ", ".join(str(int(i)) for i in bad[:5]) + (" ..." if len(bad) > 5 else "")
            raise FitError(f"{len(bad)} of {len(flat_rows)} rows hold a NaN or an infinity (row {shown}); "
                           "a spectrum needs finite weights, drop those models")


def eigenvector_ipr(vectors: Any) -> np.ndarray:
    """Mean inverse participation ratio ``mean_k sum_j V[j, k]^4`` of unit eigenvectors ``[n, M, M]``."""
    # eigh returns column-major batches; a whole-matrix reduction avoids strided per-axis sums
    fourth = vectors.square().square_()
    return (fourth.sum(dim=(1, 2)) / vectors.shape[-1]).numpy()


# -- figures ---------------------------------------------------------------------------------------
def norm_figures(eig: np.ndarray) -> dict[str, np.ndarray]:
    """Norm-based figures from ascending squared singular values ``[n, M]``."""
    from scipy.special import entr

    s = np.sqrt(eig)
    fro2 = eig.sum(axis=1)
    m = eig.shape[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        p_sv = s / s.sum(axis=1, keepdims=True)
        p_ev = eig / fro2[:, None]
        return {
            "spectral_norm": s[:, -1],
            "stable_rank": fro2 / eig[:, -1],
            "effective_rank": np.exp(entr(p_sv).sum(axis=1)),
            "condition_number": s[:, -1] / s[:, 0],
            "entropy": entr(p_ev).sum(axis=1) / np.log(m) if m > 1 else np.full(len(eig), np.nan),
        }


def fit_marchenko_pastur(esd: np.ndarray, n_big: int, spike_threshold: float = rmt.TW1_Q99,
                         max_iter: int = 20) -> dict[str, np.ndarray]:
    """Fit the Marchenko-Pastur bulk to ascending ESD eigenvalues ``[n, M]`` (module docstring).

    Parameters
    ----------
    esd : numpy.ndarray
        ``s_i^2 / N``, ascending along axis 1.
    n_big : int
        ``N = max(rows, cols)``; the aspect ratio is ``q = M / N``.
    spike_threshold : float
        Tracy-Widom statistic above which an eigenvalue counts as a spike.
    max_iter : int
        Cap on the spike-removal iterations.

    Returns
    -------
    dict
        ``lambda_max``, ``mp_sigma2``, ``mp_lambda_minus``, ``mp_lambda_plus``, ``n_spikes``,
        ``spike_mass`` (share of the trace in spikes), ``spike_mean`` (mean spike eigenvalue, NaN
        without spikes; the largest is ``lambda_max``), ``tw_stat`` (of the largest eigenvalue),
        ``mp_ks`` (Kolmogorov-Smirnov distance of the bulk to the fitted law).
    """
    m = esd.shape[1]
    q = m / n_big
    mu, sd = rmt.wishart_edge_scaling(n_big, m)
    # the top half may be spikes, but never an eigenvalue that is zero to the Gram's precision (rounding noise
    # of a rank-deficient layer, which a zero bulk estimate would otherwise call a spike)
    eligible = (np.arange(m) >= m - m // 2) & (esd > m * np.finfo(float).eps * esd[:, -1:])
    with np.errstate(divide="ignore", invalid="ignore"):
        sigma2 = np.median(esd, axis=1) / float(rmt.mp_quantile(0.5, q))
        spikes = np.zeros(esd.shape, dtype=bool)
        for step in range(max_iter):
            new = ((esd * n_big / sigma2[:, None] - mu) / sd > spike_threshold) & eligible
            sigma2 = np.where(new, 0.0, esd).sum(axis=1) / (~new).sum(axis=1)
            if step and np.array_equal(new, spikes):
                break
            spikes = new
        return _mp_summary(esd, sigma2, spikes, q, (mu, sd), n_big)


def _mp_summary(esd: np.ndarray, sigma2: np.ndarray, spikes: np.ndarray, q: float,
                edge: tuple[Any, Any], n_big: int) -> dict[str, np.ndarray]:
    lo, hi = (1 - np.sqrt(q)) ** 2, (1 + np.sqrt(q)) ** 2
    return {
        "lambda_max": esd[:, -1],
        "mp_sigma2": sigma2,
        "mp_lambda_minus": sigma2 * lo,
        "mp_lambda_plus": sigma2 * hi,
        "n_spikes": spikes.sum(axis=1).astype(np.int32),
        "spike_mass": np.where(spikes, esd, 0.0).sum(axis=1) / esd.sum(axis=1),
        "spike_mean": np.where(spikes, esd, 0.0).sum(axis=1) / np.where(spikes.any(axis=1), spikes.sum(axis=1), np.nan),
        "tw_stat": (esd[:, -1] * n_big / sigma2 - edge[0]) / edge[1],
        "mp_ks": _bulk_ks(esd, sigma2, spikes, q),
    }


def _bulk_ks(esd: np.ndarray, sigma2: np.ndarray, spikes: np.ndarray, q: float) -> np.ndarray:
    """KS distance between each row's non-spike eigenvalues and MP(q, sigma2)."""
    bulk = (~spikes).sum(axis=1, keepdims=True)
    cdf = rmt.mp_cdf(esd / sigma2[:, None], q)
    i = np.arange(esd.shape[1])[None, :]
    gap = np.maximum(np.abs(cdf - i / bulk), np.abs(cdf - (i + 1) / bulk))
    return np.where(spikes, 0.0, gap).max(axis=1)


def power_law_alpha(esd: np.ndarray, min_eigs: int = MIN_ALPHA_EIGS, min_tail: int = 5) -> dict[str, np.ndarray]:
    """Power-law tail exponent of ascending ESD rows ``[n, M]`` (continuous MLE, KS-chosen ``xmin``).

    For each candidate ``xmin`` (an eigenvalue leaving at least ``min_tail`` in the tail)
    ``alpha = 1 + k / sum(log(x_i / xmin))``; the candidate with the smallest KS distance
    between the tail and ``1 - (x / xmin)^(1 - alpha)`` wins (the ``powerlaw`` package's fit).
    Rows with fewer than ``min_eigs`` eigenvalues get NaN and the note
    ``'too few eigenvalues (k < min_eigs)'``.  Eigenvalues that are zero to the Gram matrix's
    precision (at most ``M * eps * lambda_max``: rounding noise of a rank-deficient layer) are
    never a candidate ``xmin``: a rank-deficient layer is fitted on its non-zero eigenvalues,
    and one with fewer than ``min_eigs`` of them (an all-zero or a rank-one layer) gets NaN and
    the note ``'too few non-zero eigenvalues (r < min_eigs)'``.
    """
    n, m = esd.shape
    if m < min_eigs or m < min_tail:
        nan = np.full(n, np.nan)
        return {"alpha": nan, "alpha_xmin": nan.copy(), "alpha_ks": nan.copy(),
                "alpha_note": np.full(n, f"too few eigenvalues (k < {min_eigs})", dtype=object)}
    nonzero = esd > (m * np.finfo(float).eps * esd[:, -1:])
    rank = nonzero.sum(axis=1)
    logs = np.log(np.maximum(esd, np.finfo(float).tiny))
    best = np.full((3, n), np.nan)
    best[2] = np.inf
    for j in range(m - min_tail + 1):
        alpha, ks = _tail_fit(esd[:, j:], logs[:, j:])
        better = (ks < best[2]) & nonzero[:, j] & (rank >= min_eigs)
        best[:, better] = np.stack([alpha, esd[:, j], ks])[:, better]
    note = np.where(np.isnan(best[0]), "degenerate spectrum", "").astype(object)
    few = rank < min_eigs
    note[few] = [f"too few non-zero eigenvalues ({r} < {min_eigs})" for r in rank[few]]
    return {"alpha": best[0], "alpha_xmin": best[1], "alpha_ks": np.where(np.isinf(best[2]), np.nan, best[2]),
            "alpha_note": note}


def _tail_fit(tail: np.ndarray, logs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    k = tail.shape[1]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        alpha = 1 + k / (logs.sum(axis=1) - k * logs[:, 0])
        model = 1 - np.exp((1 - alpha[:, None]) * (logs - logs[:, :1]))
        i = np.arange(k)[None, :]
        ks = np.maximum(np.abs(model - i / k), np.abs(model - (i + 1) / k)).max(axis=1)
    ok = np.isfinite(alpha) & np.isfinite(ks)
    return np.where(ok, alpha, np.nan), np.where(ok, ks, np.inf)


# -- public entry points ---------------------------------------------------------------------------
def layer_spectra(matrices: Any, *, spike_threshold: float = rmt.TW1_Q99, min_alpha_eigs: int = MIN_ALPHA_EIGS,
                  eigenvalues: bool = False) -> dict[str, np.ndarray]:
    """All spectral figures of one layer of ``n`` models (module docstring defines each one).

    Parameters
    ----------
    matrices : array or torch.Tensor, shape ``[n, r, c]``
    spike_threshold : float
        TW statistic above which an eigenvalue is a spike.
    min_alpha_eigs : int
        Fewest eigenvalues for a power-law fit.
    eigenvalues : bool
        Also return the ESD itself under ``"eigenvalues"`` (``[n, M]``, ascending).

    Returns
    -------
    dict[str, numpy.ndarray]
        One array of length ``n`` per figure (``rows``, ``cols``, ``n_eigs``, ...).

    Notes
    -----
    torch runs single-threaded for the duration of the call (see :func:`single_threaded_torch`).
    """
    with single_threaded_torch():
        return _layer_figures(matrices, spike_threshold, min_alpha_eigs, eigenvalues)


def _layer_figures(matrices: Any, spike_threshold: float, min_alpha_eigs: int,
                   eigenvalues: bool) -> dict[str, np.ndarray]:
    eig, vec = gram_eigh(matrices, vectors=True)
    n, m = eig.shape
    r, c = (int(v) for v in matrices.shape[1:])
    esd = eig / max(r, c)
    out: dict[str, np.ndarray] = {
        "rows": np.full(n, r, dtype=np.int32), "cols": np.full(n, c, dtype=np.int32),
        "n_eigs": np.full(n, m, dtype=np.int32),
    }
    out.update(norm_figures(eig))
    out["condition_number"] = _refined_condition(matrices, eig, out["condition_number"])
    out.update(fit_marchenko_pastur(esd, max(r, c), spike_threshold))
    out["level_spacing_ratio"] = rmt.mean_spacing_ratio(esd)
    out["ipr_mean"] = eigenvector_ipr(vec)
    out.update(power_law_alpha(esd, min_alpha_eigs))
    if eigenvalues:
        out["eigenvalues"] = esd
    return out


COND_FROM_SVD = 1e4
"""Condition numbers above this are taken from an SVD of the matrix: the Gram eigenvalues
``s_i^2`` hold ``s_min`` to about ``eps * (s_max / s_min)^2`` relative error (1e-8 at 1e4, 1e-2 at
1e7), and a rank-deficient matrix came out near ``1 / sqrt(eps)``, 1e8, instead of numpy's ~1e16."""


def _refined_condition(matrices: Any, eig: np.ndarray, cond: np.ndarray) -> np.ndarray:
    """``cond``, with the rows above :data:`COND_FROM_SVD` recomputed from singular values (as
    ``numpy.linalg.cond``): few matrices of a trained zoo are that ill-conditioned, so the SVD is cheap."""
    import torch

    with np.errstate(invalid="ignore"):
        ill = np.flatnonzero(~(cond <= COND_FROM_SVD) & (eig[:, -1] > 0))
    if not ill.size:
        return cond
    sv = torch.linalg.svdvals(torch.as_tensor(np.asarray(matrices)[ill]).to(torch.float64)).numpy()
    out = cond.copy()
    with np.errstate(divide="ignore"):
        out[ill] = sv[:, 0] / sv[:, -1]
    return out


def zoo_spectra(flat_rows: Any, arch: Architecture = CNN_S, block: int = 4096, *,
                layers: Sequence[str] | None = None, eigenvalues: bool = False, workers: int | None = None,
                **options: Any) -> Any:
    """Spectral figures of every layer of every model, one row per (model, layer).

    Parameters
    ----------
    flat_rows : array or torch.Tensor, shape ``[n, P]``
        Flat parameter vectors.
    arch : Architecture
        Where each layer sits in the flat vector.
    block : int
        Models per batched decomposition (bounds memory: ``block * M^2`` float64 per layer).
    layers : sequence of str, optional
        Layer names (default: every conv2d and linear layer of ``arch``; batch norms are vectors,
        see :func:`skipped_layers`).
    eigenvalues : bool
        Add an ``eigenvalues`` list column (the ESD, ascending).
    workers : int, optional
        Threads running blocks concurrently (default: the machine's cores, at most 4).
    **options
        Passed to :func:`layer_spectra` (``spike_threshold``, ``min_alpha_eigs``).

    Returns
    -------
    polars.DataFrame
        Columns :data:`SPECTRA_COLUMNS`; ``row`` indexes ``flat_rows``; ``layer`` is an Enum in
        architecture order; sorted by ``row`` then ``layer``.
    """
    import polars as pl

    arch.check_flat(flat_rows)
    if flat_rows.ndim != 2:
        raise ArchitectureError(f"expected rows [n, {arch.n_params}], got shape {tuple(flat_rows.shape)}")
    refuse_non_finite_rows(flat_rows)
    names = tuple(dict.fromkeys(layers)) if layers is not None else arch.matrix_layer_names  # named twice: once
    dtype = pl.Enum(list(arch.matrix_layer_names))
    tasks = [(name, i) for name in names for i in range(0, flat_rows.shape[0], block)]

    def run(task: tuple[str, int]) -> dict[str, np.ndarray]:
        name, i = task
        return layer_spectra(arch.layer_matrix(flat_rows[i:i + block], name), eigenvalues=eigenvalues, **options)

    with single_threaded_torch(), ThreadPoolExecutor(max_workers=workers or default_workers()) as pool:
        results = list(pool.map(run, tasks))
    frames = [_layer_frame([r for t, r in zip(tasks, results, strict=True) if t[0] == name], name,
                           flat_rows.shape[0], dtype, eigenvalues) for name in names]
    return pl.concat(frames, how="vertical").sort(["row", "layer"], maintain_order=True)


def layer_spectra_frame(matrices: Any, name: str, layer_names: Sequence[str], **options: Any) -> Any:
    """:func:`layer_spectra` of one layer's ``[n, r, c]`` matrices as rows of the spectra table
    (``row`` 0..n-1, ``layer`` an Enum over ``layer_names``, the figures of :data:`SPECTRA_COLUMNS`)."""
    import polars as pl

    parts = [layer_spectra(matrices, **options)] if len(matrices) else []
    return _layer_frame(parts, name, len(matrices), pl.Enum(list(layer_names)), False)


def skipped_layers(arch: Architecture, layers: Sequence[str] | None = None) -> dict[str, str]:
    """Layers spectra leave out, each with the reason (recorded in the result's parameters).

    Conv kernels ``[out, in, kh, kw]`` are matrices ``out x in*kh*kw`` (one row per output
    channel, the receptive field flattened in ``in, kh, kw`` order, as for CNN-s); linear weights
    are matrices as they are.  Batch-norm weights are vectors (one scale per channel) and their
    running statistics are state, not weights: neither has a spectrum.
    """
    names = set(layers) if layers is not None else None
    return {layer.name: f"{layer.kind}: its weight is a vector of {layer.weight_size} values, not a matrix"
            + (" (running statistics are state, not weights)" if layer.kind == "batchnorm" else "")
            for layer in arch.layers if layer.kind not in MATRIX_KINDS and (names is None or layer.name in names)}


@contextmanager
def single_threaded_torch() -> Iterator[None]:
    """Run torch with one intra-op thread inside the block, restoring the previous setting after.

    The batched decompositions here are many tiny LAPACK calls; torch's own threading over them
    stalls badly when the machine is busy (8 ``eigh`` of 200 x 200 measured at 0.05 s single-threaded
    against 0.3-17 s with two threads on a loaded 2-core machine), so :func:`zoo_spectra` runs
    blocks on Python threads instead (torch releases the GIL).  The setting is process-wide:
    other torch work running concurrently is single-threaded meanwhile.
    """
    with torch_threads(1):
        yield


def _layer_frame(parts: list[dict[str, np.ndarray]], name: str, n: int, dtype: Any, eigenvalues: bool) -> Any:
    import polars as pl

    cols = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]} if parts else {}
    data: dict[str, Any] = {"row": np.arange(n, dtype=np.int64), "layer": pl.Series([name] * n, dtype=dtype)}
    for key in SPECTRA_COLUMNS[2:]:
        data[key] = pl.Series(key, cols.get(key, []), dtype=pl.String if key == "alpha_note" else None)
    # a figure not defined for a row (alpha of a small layer, spike_mean without spikes) is NaN in the arrays
    # and null in the frame, so SQL aggregates skip it instead of turning NaN
    frame = pl.DataFrame(data).fill_nan(None)
    if eigenvalues:
        esd = cols.get("eigenvalues", np.empty((0, 0)))
        frame = frame.with_columns(pl.Series("eigenvalues", esd).cast(pl.List(pl.Float64)))
    return frame


# -- the population view -----------------------------------------------------------------------------
MIN_POPULATION_EIGS = 4
"""Fewest non-zero eigenvalues for which a Marchenko-Pastur fit of a population is attempted."""


@dataclass(frozen=True)
class PopulationSpectrum:
    """Spectrum of the Gram matrix of many models' flat vectors, with its Marchenko-Pastur fit.

    The fit is made on the non-zero spectrum only: ``rank`` eigenvalues of the smaller Gram
    matrix, with aspect ratio ``q = rank / n_big``.  Zero eigenvalues beyond the one that centring
    removes (``n_null``) come from repeated or linearly dependent models (or, when parameters
    outnumber models, from parameters that never vary) and carry no Marchenko-Pastur information.
    """

    eigenvalues: np.ndarray = field(repr=False)
    """ESD, ascending: the non-zero eigenvalues of the smaller Gram side divided by ``n_big``."""
    n_models: int
    n_params: int
    n_big: int
    """``N = max(samples, variables)`` (samples = models, minus one when centred; variables = parameters kept)."""
    q: float
    """Aspect ratio ``rank / n_big`` of the fitted Marchenko-Pastur law."""
    rank: int
    """Number of non-zero eigenvalues (the fitted ones)."""
    n_null: int
    """Eigenvalues of the smaller Gram side found zero (numerically) and left out of the fit."""
    mp_sigma2: float
    mp_lambda_minus: float
    mp_lambda_plus: float
    n_spikes: int
    spike_mass: float
    tw_stat: float
    mp_ks: float
    centered: bool
    standardized: bool
    fit_holds: bool
    """False when the bulk (non-spike eigenvalues) is rejected as Marchenko-Pastur (see ``fit_note``)."""
    fit_note: str
    """Why the fit does not hold (empty when it does)."""

    def mp_density(self, x: Any) -> np.ndarray:
        """The fitted Marchenko-Pastur density at ``x`` (to overlay on a histogram of the ESD)."""
        return rmt.mp_density(x, self.q, self.mp_sigma2)

    def note(self) -> str:
        """One line: shape, rank, what was left out, the fit."""
        null = (f"; {self.n_null} zero eigenvalues left out (repeated or dependent models, or constant parameters)"
                if self.n_null else "")
        # spikes are outliers of a bulk that fits: with the fit rejected, the count above the edge is
        # only that, and is labelled so
        spikes = (f"{self.n_spikes} spikes" if self.fit_holds
                  else f"{self.n_spikes} eigenvalues above the fitted edge (not spikes: the fit is rejected)")
        return (f"{self.n_models} models x {self.n_params} parameters, rank {self.rank}, q = {self.q:.4f}{null}; "
                f"eigenvalues of X X^T / {self.n_big}; sigma^2 = {self.mp_sigma2:.4g}, {spikes}, "
                f"TW = {self.tw_stat:.2f}, KS = {self.mp_ks:.3f}"
                + ("" if self.fit_holds else f"; FIT DOES NOT HOLD: {self.fit_note}"))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["eigenvalues"] = self.eigenvalues.tolist()
        return out


def population_spectrum(flat_rows: Any, center: bool = True, standardize: bool = False, *,
                        block: int = 4096, spike_threshold: float = rmt.TW1_Q99,
                        min_eigs: int = MIN_POPULATION_EIGS) -> PopulationSpectrum:
    """Eigenvalues of the models-by-parameters matrix, compared with Marchenko-Pastur.

    Parameters
    ----------
    flat_rows : array, shape ``[n, P]``
        Any flat vectors (whole models, or one layer's block).
    center : bool
        Subtract the mean model first; this removes one degree of freedom (``n - 1`` samples),
        and the null eigenvalue it creates is dropped.
    standardize : bool
        Scale each parameter to unit variance (a correlation matrix); constant parameters are dropped.
    block : int
        Rows per block when accumulating a ``P x P`` Gram matrix.
    spike_threshold : float
        Passed to :func:`fit_marchenko_pastur`.
    min_eigs : int
        Fewest non-zero eigenvalues to fit.

    Returns
    -------
    PopulationSpectrum
        The smaller of the ``n x n`` and ``P x P`` Gram matrices is decomposed (float64), so both
        ``n < P`` (few models, many parameters: the ``n x n`` side) and ``n > P`` work; the ESD is its
        non-zero eigenvalues divided by ``N = max(samples, variables)``, and the law fitted has
        ``q = rank / N``.

    Raises
    ------
    FitError
        Fewer than ``min_eigs`` non-zero eigenvalues (too few distinct models, or all equal):
        no Marchenko-Pastur fit is meaningful; or a row holding a NaN or an infinity.
    ArchitectureError
        Not a 2-d array.
    """
    x = np.asarray(flat_rows)
    if x.ndim != 2:
        raise ArchitectureError(f"population spectrum needs rows [n, P], got shape {x.shape}")
    refuse_non_finite_rows(x)
    shift, scale, keep = _population_scaling(x, center, standardize, block)
    n, p = x.shape[0], int(keep.sum())
    samples = n - 1 if center else n
    m, n_big = min(samples, p), max(samples, p)
    eig = _population_eigenvalues(x, shift, scale, keep, block) if m >= 1 else np.zeros(0)
    nonzero = eig[eig > _null_tolerance(eig, max(n, p))]
    if len(nonzero) < min_eigs:
        raise FitError(f"population spectrum of {n} models x {p} varying parameters has {len(nonzero)} non-zero "
                       f"eigenvalues (of {max(m, 0)}), fewer than {min_eigs}: no Marchenko-Pastur fit is meaningful; "
                       "use more distinct models")
    esd = nonzero / n_big
    fit = fit_marchenko_pastur(esd[None, :], n_big, spike_threshold)
    holds, why = _bulk_verdict(float(fit["mp_ks"][0]), len(esd) - int(fit["n_spikes"][0]))
    return PopulationSpectrum(
        eigenvalues=esd, n_models=n, n_params=x.shape[1], n_big=n_big, q=len(esd) / n_big, rank=len(esd),
        n_null=m - len(esd),
        **{key: float(fit[key][0]) for key in ("mp_sigma2", "mp_lambda_minus", "mp_lambda_plus", "spike_mass",
                                               "tw_stat", "mp_ks")},
        n_spikes=int(fit["n_spikes"][0]), centered=center, standardized=standardize, fit_holds=holds, fit_note=why)


KS_CRITICAL_1PC = 1.628
"""Asymptotic 1 % critical value of ``sqrt(k) * D`` for the one-sample Kolmogorov-Smirnov test."""


def _bulk_verdict(ks: float, bulk: int) -> tuple[bool, str]:
    """Reject the bulk as Marchenko-Pastur when its KS distance exceeds the iid 1 % critical value.

    Eigenvalues of a true Wishart matrix repel, so their KS distance to the law sits far below the
    iid value (about 0.03 for 65 eigenvalues against 0.2): the test is lenient and fails only a
    bulk that is plainly not Marchenko-Pastur (a population structured far beyond a few spikes).
    """
    critical = KS_CRITICAL_1PC / np.sqrt(max(bulk, 1))
    if ks <= critical:
        return True, ""
    return False, (f"the bulk is not Marchenko-Pastur (KS {ks:.3f} > {critical:.3f}, the 1 % critical value for "
                   f"{bulk} eigenvalues): sigma^2 and the TW statistic are not noise estimates")


def _null_tolerance(eig: np.ndarray, dim: int) -> float:
    """Eigenvalues of a float64 Gram matrix below this are zero: its rounding error is about
    ``dim * eps * lambda_max`` (the Gram form squares the condition number, as ``matrix_rank`` on ``s^2``)."""
    return float(eig.max(initial=0.0)) * dim * np.finfo(np.float64).eps * 16


def _population_eigenvalues(x: np.ndarray, shift: np.ndarray, scale: np.ndarray, keep: np.ndarray,
                            block: int) -> np.ndarray:
    from scipy.linalg import eigh

    gram = _population_gram(x, shift, scale, keep, block)
    # eigenvalues only, LAPACK's MRRR driver; for P = 2,464 this decomposition dominates (seconds)
    return np.clip(eigh(gram, eigvals_only=True, driver="evr"), 0, None)


def _population_scaling(x: np.ndarray, center: bool, standardize: bool,
                        block: int = 4096) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mean = x.mean(axis=0, dtype=np.float64)
    shift = mean if center else np.zeros_like(mean)
    if not standardize:
        return shift, np.ones_like(mean), np.ones(len(mean), dtype=bool)
    ss = np.zeros_like(mean)
    for i in range(0, x.shape[0], block):  # blocks: no full-size float64 temporary
        b = x[i:i + block].astype(np.float64) - mean
        ss += np.einsum("ij,ij->j", b, b)
    std = np.sqrt(ss / x.shape[0])
    keep = std > 0
    return shift, np.where(keep, std, 1.0), keep


def _population_gram(x: np.ndarray, shift: np.ndarray, scale: np.ndarray, keep: np.ndarray, block: int) -> np.ndarray:
    def rows(i: int) -> np.ndarray:
        return ((x[i:i + block].astype(np.float64) - shift) / scale)[:, keep]

    n, p = x.shape[0], int(keep.sum())
    if n <= p:
        z = np.concatenate([rows(i) for i in range(0, n, block)])
        return z @ z.T
    gram = np.zeros((p, p))
    for i in range(0, n, block):
        b = rows(i)
        gram += b.T @ b
    return gram
