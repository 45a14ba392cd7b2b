"""Layer spectra against per-model numpy references, the MP fit, spikes, and the zoo/population views."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from weightlake.analysis import rmt, spectra
from weightlake.arch import CNN_S
from weightlake.errors import ArchitectureError, FitError

SHAPES = [layer.matrix_shape for layer in CNN_S.layers]  # (8, 25) (6, 200) (4, 24) (20, 36) (10, 20)


def random_rows(n: int, seed: int = 0, scale: float = 0.1) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((n, CNN_S.n_params)) * scale).astype(np.float32)


@pytest.mark.parametrize("shape", [*SHAPES, (30, 7)])
def test_figures_match_numpy_per_model(shape: tuple[int, int]) -> None:
    a = np.random.default_rng(1).standard_normal((12, *shape)).astype(np.float32)
    out = spectra.layer_spectra(a, eigenvalues=True)
    m, big = min(shape), max(shape)
    for i, mat in enumerate(a.astype(np.float64)):
        s = np.linalg.svd(mat, compute_uv=False)
        np.testing.assert_allclose(out["eigenvalues"][i], np.sort(s**2) / big, rtol=1e-9, atol=1e-12)
        assert out["spectral_norm"][i] == pytest.approx(s[0], rel=1e-10)
        assert out["stable_rank"][i] == pytest.approx(np.sum(s**2) / s[0] ** 2, rel=1e-9)
        p = s / s.sum()
        assert out["effective_rank"][i] == pytest.approx(np.exp(-np.sum(p * np.log(p))), rel=1e-9)
        assert out["condition_number"][i] == pytest.approx(np.linalg.cond(mat), rel=1e-8)
        e = s**2 / np.sum(s**2)
        assert out["entropy"][i] == pytest.approx(-np.sum(e * np.log(e)) / np.log(m), rel=1e-9)
        assert out["lambda_max"][i] == pytest.approx(s[0] ** 2 / big, rel=1e-10)
    assert np.all(out["n_eigs"] == m)


def test_ipr_matches_numpy_eigenvectors() -> None:
    a = np.random.default_rng(2).standard_normal((8, 10, 20))
    out = spectra.layer_spectra(a)
    for i, mat in enumerate(a):
        _, vec = np.linalg.eigh(mat @ mat.T)
        assert out["ipr_mean"][i] == pytest.approx(np.mean(np.sum(vec**4, axis=0)), rel=1e-9)
    # a diagonal matrix has coordinate eigenvectors: fully localised
    diag = np.zeros((1, 5, 9))
    diag[0, np.arange(5), np.arange(5)] = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert spectra.layer_spectra(diag)["ipr_mean"][0] == pytest.approx(1.0)


def test_torch_input_and_transpose_invariance() -> None:
    a = torch.randn(5, 6, 200)
    direct = spectra.layer_spectra(a)
    flipped = spectra.layer_spectra(a.mT.contiguous())
    for key in ("spectral_norm", "stable_rank", "condition_number", "mp_sigma2", "tw_stat", "ipr_mean"):
        np.testing.assert_allclose(direct[key], flipped[key], rtol=1e-9)


def test_level_spacing_ratio_is_nan_below_three_eigenvalues() -> None:
    out = spectra.layer_spectra(np.random.default_rng(3).standard_normal((4, 2, 30)))
    assert np.isnan(out["level_spacing_ratio"]).all()
    out = spectra.layer_spectra(np.random.default_rng(3).standard_normal((4, 3, 30)))
    assert np.isfinite(out["level_spacing_ratio"]).all()


def test_mp_fit_recovers_noise_variance() -> None:
    a = np.random.default_rng(4).normal(0, 0.3, (6, 200, 400))
    out = spectra.layer_spectra(a)
    np.testing.assert_allclose(out["mp_sigma2"], 0.09, rtol=0.05)
    lo, hi = rmt.mp_edges(0.5, 0.09)
    np.testing.assert_allclose(out["mp_lambda_plus"], hi, rtol=0.05)
    np.testing.assert_allclose(out["mp_lambda_minus"], lo, rtol=0.05)
    assert out["n_spikes"].sum() <= 1  # 99 % TW threshold: an occasional false alarm at most
    assert np.all(out["mp_ks"] < 0.1)
    assert np.all(np.abs(out["tw_stat"]) < 5)
    assert out["level_spacing_ratio"].mean() == pytest.approx(rmt.SPACING_RATIO_MEAN[1], abs=0.03)


def test_tw_statistic_is_tracy_widom_on_noise() -> None:
    a = np.random.default_rng(5).standard_normal((600, 20, 36))
    tw = spectra.layer_spectra(a)["tw_stat"]
    # sigma^2 is estimated from the same 20 eigenvalues, so allow for that extra spread
    assert tw.mean() == pytest.approx(rmt.TW_MEAN[1], abs=0.35)
    assert tw.std() == pytest.approx(rmt.TW_STD[1], abs=0.35)


@pytest.mark.parametrize("shape", SHAPES)
def test_mp_fit_on_every_cnn_layer_shape(shape: tuple[int, int]) -> None:
    a = np.random.default_rng(6).normal(0, 0.2, (400, *shape))
    out = spectra.layer_spectra(a)
    for key in ("mp_sigma2", "mp_lambda_minus", "mp_lambda_plus", "tw_stat", "mp_ks", "spike_mass"):
        assert np.isfinite(out[key]).all(), key
    assert np.array_equal(np.isnan(out["spike_mean"]), out["n_spikes"] == 0)
    # unbiased on average even with 4-20 eigenvalues
    assert out["mp_sigma2"].mean() == pytest.approx(0.04, rel=0.05)
    assert out["n_spikes"].mean() < 0.1


@pytest.mark.parametrize(("shape", "strength"), [((200, 400), 3.0), ((20, 36), 6.0), ((6, 200), 4.0)])
def test_planted_spike_is_detected(shape: tuple[int, int], strength: float) -> None:
    rng = np.random.default_rng(7)
    m, big = min(shape), max(shape)
    noise = rng.normal(0, 1.0, (8, *shape))
    u = rng.standard_normal((8, shape[0], 1))
    v = rng.standard_normal((8, 1, shape[1]))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    v /= np.linalg.norm(v, axis=2, keepdims=True)
    # signal singular value strength * sqrt(N): far above the bulk edge sqrt(N) (1 + sqrt(q))
    out = spectra.layer_spectra(noise + strength * np.sqrt(big) * u @ v)
    assert np.all(out["n_spikes"] >= 1)
    assert np.all(out["tw_stat"] > rmt.TW1_Q99)
    assert np.all(out["spike_mass"] > 0)
    assert np.all(out["spike_mean"] > out["mp_lambda_plus"])
    if m >= 20:  # removing the spike leaves the bulk slightly low (documented bias)
        assert out["mp_sigma2"].mean() == pytest.approx(1.0, rel=0.1)
    clean = spectra.layer_spectra(noise)
    assert np.mean(clean["n_spikes"]) < 0.5


def test_power_law_alpha() -> None:
    rng = np.random.default_rng(8)
    pareto = np.sort((1 - rng.uniform(size=(20, 400))) ** (-1 / 1.5), axis=1)  # density ~ x^-2.5
    fit = spectra.power_law_alpha(pareto)
    assert np.median(fit["alpha"]) == pytest.approx(2.5, abs=0.25)
    assert (fit["alpha_note"] == "").all()
    few = spectra.power_law_alpha(pareto[:, :9])
    assert np.isnan(few["alpha"]).all()
    assert set(few["alpha_note"]) == {"too few eigenvalues (k < 10)"}


def test_zoo_spectra_table() -> None:
    rows = random_rows(30)
    table = spectra.zoo_spectra(rows, block=7, eigenvalues=True)
    assert table.columns == [*spectra.SPECTRA_COLUMNS, "eigenvalues"]
    assert table.height == 30 * 5
    assert table["layer"].dtype == pl.Enum(list(CNN_S.layer_names))
    assert table["row"].to_list() == [i for i in range(30) for _ in range(5)]
    assert table["layer"].cast(pl.String).to_list()[:5] == list(CNN_S.layer_names)
    whole = spectra.zoo_spectra(rows)  # one block gives the same numbers
    assert whole.drop("alpha_note").equals(table.drop("alpha_note", "eigenvalues"))
    fc1 = table.filter(pl.col("layer") == "fc1").row(3, named=True)
    direct = spectra.layer_spectra(CNN_S.layer_matrix(rows[3:4], "fc1"), eigenvalues=True)
    assert fc1["stable_rank"] == pytest.approx(direct["stable_rank"][0])
    assert fc1["eigenvalues"] == pytest.approx(direct["eigenvalues"][0].tolist())
    assert (fc1["rows"], fc1["cols"], fc1["n_eigs"]) == (20, 36, 20)


def test_zoo_spectra_has_no_nan_on_cnn_init() -> None:
    from weightlake.zoo.cnn import build_cnn

    torch.manual_seed(0)
    rows = torch.stack([build_cnn().flat() for _ in range(16)])
    table = spectra.zoo_spectra(rows)
    numeric = table.drop("row", "layer", "alpha", "alpha_xmin", "alpha_ks", "alpha_note", "spike_mean")
    assert not any(numeric[c].is_null().any() for c in numeric.columns)
    assert not any(table[c].is_nan().any() for c in table.columns if table[c].dtype.is_float())  # none: null
    small = table.filter(pl.col("n_eigs") < 10)
    assert small["alpha"].is_null().all() and small["alpha_xmin"].is_null().all() and small["alpha_ks"].is_null().all()
    assert (small["alpha_note"] == "too few eigenvalues (k < 10)").all()
    assert table.filter(pl.col("n_eigs") >= 10)["alpha"].is_finite().all()


def test_zoo_spectra_rejects_bad_shapes() -> None:
    with pytest.raises(ArchitectureError):
        spectra.zoo_spectra(np.zeros((3, 100), dtype=np.float32))
    with pytest.raises(ArchitectureError):
        spectra.layer_spectra(np.zeros((3, 4), dtype=np.float32))


def test_population_spectrum_matches_svd_both_sides() -> None:
    rng = np.random.default_rng(9)
    for n, p in ((60, 150), (300, 80)):
        x = rng.normal(0, 0.5, (n, p)).astype(np.float32)
        pop = spectra.population_spectrum(x)
        xc = x.astype(np.float64) - x.mean(axis=0, dtype=np.float64)
        s = np.linalg.svd(xc, compute_uv=False)
        m, big = min(n - 1, p), max(n - 1, p)
        np.testing.assert_allclose(pop.eigenvalues, np.sort(s[:m] ** 2) / big, rtol=1e-8)
        assert pop.q == pytest.approx(m / big)
        assert pop.mp_sigma2 == pytest.approx(0.25, rel=0.08)
        assert pop.n_spikes == 0


def test_population_spectrum_sees_shared_structure() -> None:
    rng = np.random.default_rng(10)
    x = rng.normal(0, 0.1, (400, CNN_S.n_params))
    x += rng.normal(0, 1.0, (400, 1)) * rng.normal(0, 0.1, (1, CNN_S.n_params))  # one shared direction
    pop = spectra.population_spectrum(x.astype(np.float32), standardize=True)
    assert pop.n_spikes >= 1
    assert pop.eigenvalues[-1] > pop.mp_lambda_plus
    assert pop.mp_density(pop.eigenvalues[:5]).shape == (5,)
    assert pop.to_dict()["n_models"] == 400
    raw = spectra.population_spectrum(x.astype(np.float32), center=False)
    assert len(raw.eigenvalues) == 400


@pytest.mark.parametrize("n, p, standardize", [(66, CNN_S.n_params, True), (66, CNN_S.n_params, False),
                                               (40, 600, False), (900, 120, True), (500, 200, False)])
def test_population_fit_holds_on_sampled_wishart_both_shapes(n: int, p: int, standardize: bool) -> None:
    """Pure noise, fewer and more models than parameters: the fit recovers sigma^2, finds no spike,
    the top eigenvalue's TW statistic is an ordinary TW1 draw and the bulk KS distance is small."""
    sigma = 0.3
    x = np.random.default_rng(n + p).normal(0, sigma, (n, p)).astype(np.float32)
    pop = spectra.population_spectrum(x, standardize=standardize)
    m, big = min(n - 1, p), max(n - 1, p)
    assert (pop.rank, pop.n_null, pop.n_big) == (m, 0, big)
    assert pop.q == pytest.approx(m / big)
    expected = 1.0 if standardize else sigma**2
    assert pop.mp_sigma2 == pytest.approx(expected, rel=0.05)  # relative s.e. ~ sqrt(2 / (m N)) << 5 %
    assert pop.n_spikes == 0
    assert -5 < pop.tw_stat < 3  # TW1 has 99.9 % of its mass in [-4.5, 3.0]
    assert pop.mp_ks < 0.1  # eigenvalues repel: far below the iid KS spread
    assert pop.fit_holds and not pop.fit_note


def test_population_fit_drops_the_null_spectrum_of_repeated_models() -> None:
    """66 rows of 16 distinct models (fallback copies): the old fit took the zero eigenvalues as bulk
    (sigma^2 ~ 1e-17, TW ~ 1e19); the non-zero spectrum gives the same fit as the distinct rows."""
    rng = np.random.default_rng(3)
    base = rng.normal(0, 0.1, (16, 500)).astype(np.float32)
    rows = np.concatenate([base, np.repeat(base[:10], 5, axis=0)])
    pop = spectra.population_spectrum(rows)
    assert pop.rank == 15 and pop.n_null == 65 - 15
    assert pop.q == pytest.approx(15 / 500)
    assert np.isfinite(pop.tw_stat) and abs(pop.tw_stat) < 1e3
    assert pop.mp_sigma2 > 1e-3
    assert "zero eigenvalues left out" in pop.note()


def test_population_fit_refuses_without_enough_nonzero_eigenvalues() -> None:
    rows = np.tile(np.random.default_rng(4).normal(size=(1, 300)), (50, 1)).astype(np.float32)
    with pytest.raises(FitError, match="no Marchenko-Pastur fit is meaningful"):
        spectra.population_spectrum(rows)  # 50 copies of one model: rank 0 once centred
    with pytest.raises(FitError, match="3 non-zero eigenvalues"):
        spectra.population_spectrum(np.random.default_rng(5).normal(size=(4, 300)))
    with pytest.raises(ArchitectureError):
        spectra.population_spectrum(np.zeros(10))


def test_population_fit_marks_a_structured_bulk() -> None:
    """60 models whose directions carry geometrically decaying variance (no flat bulk): rejected, and said so."""
    rng = np.random.default_rng(6)
    x = (rng.normal(size=(60, 60)) * np.geomspace(1, 1e-4, 60)) @ rng.normal(size=(60, 800))
    pop = spectra.population_spectrum(x.astype(np.float32))
    assert not pop.fit_holds
    assert "not Marchenko-Pastur" in pop.fit_note and "FIT DOES NOT HOLD" in pop.note()
    # no spike count without a bulk to count them against; the scale of the eigenvalues is named
    assert f"{pop.n_spikes} spikes" not in pop.note() and "not spikes: the fit is rejected" in pop.note()
    assert "eigenvalues of X X^T / 800" in pop.note()


def test_population_fit_on_real_trained_models(real_lake_dir) -> None:
    """24 trained CNN-s models (fewer models than parameters): the n x n side, every non-zero
    eigenvalue kept, finite figures, and an honest verdict on the bulk."""
    import weightlake as wl

    _, rows = wl.open_lake(real_lake_dir).zoo_weights()
    pop = spectra.population_spectrum(np.asarray(rows), standardize=True)
    assert pop.n_models == 24 and pop.n_big == CNN_S.n_params
    assert pop.rank + pop.n_null == 23
    s = np.linalg.svd((rows - rows.mean(axis=0)) / rows.std(axis=0), compute_uv=False)
    np.testing.assert_allclose(pop.eigenvalues[-5:], np.sort(s[:5] ** 2) / CNN_S.n_params, rtol=1e-6)
    assert 1e-4 < pop.mp_sigma2 < 10 and np.isfinite(pop.tw_stat) and abs(pop.tw_stat) < 1e6
    assert pop.fit_holds == (pop.fit_note == "")


def _rank_deficient_layers() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    dup = rng.normal(size=(20, 36))
    dup[5] = dup[3]  # two neurons with the same weights
    u, _, vt = np.linalg.svd(rng.normal(size=(20, 36)), full_matrices=False)
    return {"zero": np.zeros((20, 36)), "constant": np.full((20, 36), 0.3), "duplicate row": dup,
            "rank 5": rng.normal(size=(20, 5)) @ rng.normal(size=(5, 36)),
            "cond 1e5": u * np.logspace(0, -5, 20) @ vt, "cond 1e7": u * np.logspace(0, -7, 20) @ vt}


def test_condition_numbers_agree_with_numpy_where_the_gram_loses_precision() -> None:
    """From the Gram eigenvalues a singular layer (two equal neurons) read 1.2e8 and cond 1e7 was 4e-4 off."""
    for name, m in _rank_deficient_layers().items():
        got = spectra.layer_spectra(m[None].astype(np.float32))["condition_number"][0]
        want = np.linalg.cond(m.astype(np.float32).astype(np.float64))
        if name == "zero":
            assert np.isnan(got)  # documented: all-zero matrices give NaN
        elif want > 1e15:  # singular: numpy's rounding-level figure, matched in magnitude
            assert got > 1e15, name
        else:
            assert got == pytest.approx(want, rel=1e-6), name  # two LAPACK SVDs: s_min to ~eps * cond


def test_rank_deficient_layers_get_no_power_law_fitted_to_rounding_noise() -> None:
    """alpha was fitted with xmin at a rounding-level eigenvalue (1e-49): alpha 1.02 for a rank-one layer,
    8e12 for an all-zero one, with an empty note; and 8 of a rank-one layer's zeros counted as spikes."""
    layers = _rank_deficient_layers()
    out = spectra.layer_spectra(np.stack([layers[k] for k in ("zero", "constant", "rank 5")]).astype(np.float32))
    assert np.isnan(out["alpha"]).all()
    assert list(out["alpha_note"]) == [f"too few non-zero eigenvalues ({r} < 10)" for r in (0, 1, 5)]
    assert out["n_spikes"][1] == 1  # a rank-one layer: one spike, no bulk
    dup = spectra.layer_spectra(layers["duplicate row"][None].astype(np.float32))  # rank 19: fitted on those
    eig = np.linalg.svd(layers["duplicate row"].astype(np.float32).astype(np.float64), compute_uv=False) ** 2 / 36
    assert dup["alpha_note"][0] == "" and dup["alpha_xmin"][0] >= eig[-2] * (1 - 1e-9)


def test_non_finite_weights_are_refused_by_name_not_by_lapack() -> None:
    """A NaN used to end in torch's LinAlgError ('eigh: ... ill-conditioned or has too many
    repeated eigenvalues'; svd for the WeightWatcher convention), naming neither cause nor model."""
    from weightlake.analysis import spectra_ww

    rows = np.random.default_rng(0).normal(size=(3, CNN_S.n_params)).astype(np.float32) * 0.1
    rows[1, 5] = np.nan
    rows[2, CNN_S.layer("fc1").start] = np.inf
    for fn in (spectra.zoo_spectra, spectra_ww.zoo_spectra_ww):
        with pytest.raises(FitError, match=r"2 of 3 rows hold a NaN or an infinity \(row 1, 2\)"):
            fn(rows, CNN_S)
    with pytest.raises(FitError, match=r"2 of 3 rows hold a NaN"):  # was scipy's "array must not contain infs"
        spectra.population_spectrum(rows)
    matrices = torch.zeros(4, 3, 5, dtype=torch.float64)
    matrices[3, 0, 0] = float("nan")
    with pytest.raises(FitError, match=r"1 of 4 weight matrices .*\(matrix 3\)"):
        spectra.layer_spectra(matrices)
    with pytest.raises(FitError, match=r"1 of 4 weight matrices"):
        spectra_ww.layer_spectra_ww(matrices.numpy(), "linear")


def test_a_layer_named_twice_gives_one_row_per_model() -> None:
    """`--layers fc1,fc1`: zoo_spectra failed with a polars ShapeError (column 'rows' 32 high, 'row' 16);
    the WeightWatcher convention and topology committed every fc1 row twice."""
    from weightlake.analysis import spectra_ww, topology

    rows = np.random.default_rng(0).normal(size=(4, CNN_S.n_params)).astype(np.float32) * 0.1
    for fn in (spectra.zoo_spectra, spectra_ww.zoo_spectra_ww):
        table = fn(rows, CNN_S, layers=["fc1", "fc2", "fc1"])
        assert table.height == 8 and table["layer"].cast(pl.String).to_list()[:2] == ["fc1", "fc2"]
    table = topology.zoo_topology(rows, CNN_S, layers=["fc1", "fc1"], h1=False, cubical=False)
    assert table.height == 4 and table["layer"].to_list() == ["fc1"] * 4
