"""Per-model topology: invariance under neuron permutations, agreement with gudhi, ripser, persim and scipy."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from weightlake.analysis import topology as T
from weightlake.analysis import topology_diagrams as D
from weightlake.arch import CNN_S

pytest.importorskip("gudhi")


def _rows(n: int = 6, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, CNN_S.n_params)) * 0.2).astype(np.float32)


def _permute_hidden(rows: np.ndarray, layer: str, nxt: str, perm: np.ndarray) -> np.ndarray:
    """The same networks with the output neurons of ``layer`` (and the inputs of ``nxt``) reordered."""
    parts = CNN_S.flat_to_layers(rows.copy())
    parts[layer] = parts[layer][:, perm]
    parts[f"{layer}.bias"] = parts[f"{layer}.bias"][:, perm]
    parts[nxt] = parts[nxt][:, :, perm]
    return np.stack([CNN_S.layers_to_flat({k: v[i] for k, v in parts.items()}) for i in range(rows.shape[0])])


@pytest.mark.parametrize(("layer", "nxt"), [("fc1", "fc2"), ("conv2", "conv3")])
def test_every_feature_ignores_the_order_of_hidden_neurons(layer, nxt):
    rows = _rows()
    perm = np.random.default_rng(1).permutation(CNN_S.layer(layer).weight_shape[0])
    moved = _permute_hidden(rows, layer, nxt, perm)
    assert not np.array_equal(moved, rows)
    a, b = T.zoo_topology(rows, CNN_S), T.zoo_topology(moved, CNN_S)
    for col in T.SCALAR_FEATURES:
        np.testing.assert_allclose(b[col].to_numpy(), a[col].to_numpy(), rtol=1e-9, atol=1e-12, err_msg=col)
    for col in ("h0_deaths", "h1_births", "h1_deaths"):
        for x, y in zip(a[col].to_list(), b[col].to_list(), strict=True):
            np.testing.assert_allclose(sorted(y), sorted(x), rtol=1e-6, err_msg=col)


def test_rips_agrees_with_ripser_and_gudhi_on_the_same_complex():
    ripser = pytest.importorskip("ripser")
    clouds = T.neuron_cloud(_rows(4), CNN_S, "fc1")
    dist = T.pairwise_distances(clouds)
    ours_h0, ours_h1 = T.batched_mst(dist), T.rips_h1(dist)
    for i, d in enumerate(dist):
        ref = ripser.ripser(d, maxdim=1, distance_matrix=True)["dgms"]
        np.testing.assert_allclose(ours_h0[i], np.sort(ref[0][np.isfinite(ref[0][:, 1]), 1]), rtol=1e-6)
        np.testing.assert_allclose(np.sort(ours_h1[i], axis=0), np.sort(ref[1], axis=0), rtol=1e-6)
        full = T.rips_diagrams(clouds[i])  # gudhi's RipsComplex without edge collapse
        np.testing.assert_allclose(np.sort(full[0][:, 1]), ours_h0[i], rtol=1e-9)
        np.testing.assert_allclose(np.sort(full[1], axis=0), np.sort(ours_h1[i], axis=0), rtol=1e-9)


def test_a_sampled_circle_has_one_long_h1_bar():
    rng = np.random.default_rng(0)
    theta = rng.uniform(0, 2 * np.pi, 60)
    pts = np.stack([np.cos(theta), np.sin(theta)], axis=1) + rng.normal(0, 0.02, (60, 2))
    bars = T.rips_h1(T.pairwise_distances(pts[None]))[0]
    life = np.sort(bars[:, 1] - bars[:, 0])[::-1]
    assert life[0] > 1.0  # born near the sample spacing, dies near sqrt(3) (the inscribed triangle)
    assert len(life) == 1 or life[1] < 0.2 * life[0]


def test_h0_of_a_graph_filtration_is_the_spanning_tree():
    from scipy.sparse.csgraph import minimum_spanning_tree

    rng = np.random.default_rng(2)
    dense = rng.uniform(0.1, 1.0, (5, 12, 12))
    dense = (dense + dense.transpose(0, 2, 1)) / 2
    ours = T.batched_mst(dense)
    for i, g in enumerate(dense):
        np.fill_diagonal(g, 0)
        ref = np.sort(minimum_spanning_tree(g).data)
        np.testing.assert_allclose(ours[i], ref, rtol=1e-12)
    weights = np.abs(rng.standard_normal((3, 10, 20)))  # a dense layer's |W|, out x in
    bars = T.neural_persistence_bars(weights)
    for i, w in enumerate(weights):
        a = w / w.max()
        graph = np.zeros((30, 30))
        graph[:10, 10:] = 2.0 - a  # shift by 1 so the strongest edge is not a zero (scipy drops zeros)
        ref = np.sort(minimum_spanning_tree(graph).data) - 1.0
        np.testing.assert_allclose(bars[i], ref, rtol=1e-12, atol=1e-12)
    value, norm = T.neural_persistence(weights)
    np.testing.assert_allclose(value, np.linalg.norm(bars, axis=1))
    assert ((norm >= 0) & (norm <= 1)).all()


def test_neural_persistence_matches_gudhi_graph_filtration():
    gd = pytest.importorskip("gudhi")
    w = np.abs(np.random.default_rng(3).standard_normal((1, 4, 6)))
    a = w[0] / w[0].max()
    st = gd.SimplexTree()
    for v in range(10):
        st.insert([v], 0.0)
    for o in range(4):
        for i in range(6):
            st.insert([o, 4 + i], 1.0 - a[o, i])
    st.compute_persistence(min_persistence=-1.0)  # keep the zero-length bar of the strongest edge
    ref = np.sort(st.persistence_intervals_in_dimension(0)[:, 1])
    np.testing.assert_allclose(T.neural_persistence_bars(w)[0], ref[np.isfinite(ref)], atol=1e-12)


def test_neural_persistence_of_an_all_zero_layer_is_undefined_not_maximal():
    """An all-zero layer has no strongest edge to normalise by: it got every bar of length 1, so
    neural_persistence_norm 1.0 (the largest possible), while a constant non-zero layer gets 0."""
    w = np.stack([np.zeros((4, 6)), np.full((4, 6), 0.3), np.abs(np.random.default_rng(0).normal(size=(4, 6)))])
    value, norm = T.neural_persistence(w)
    assert np.isnan(value[0]) and np.isnan(norm[0])
    assert value[1] == 0.0 and 0.0 < norm[2] < 1.0


@pytest.mark.parametrize("shape", [(5, 5), (3, 4), (2, 2)])
def test_kernel_cubical_totals_agree_with_gudhi_per_image(shape):
    kernels = np.random.default_rng(4).standard_normal((40, *shape))
    ours = T.kernel_cubical_totals(kernels)
    for i, k in enumerate(kernels):
        h0, h1 = T.cubical_diagrams(k)
        assert ours["h0_total"][i] == pytest.approx((h0[:, 1] - h0[:, 0]).sum(), abs=1e-10)
        assert ours["h1_total"][i] == pytest.approx((h1[:, 1] - h1[:, 0]).sum(), abs=1e-10)


def test_bar_summaries():
    s = T.bar_summaries(np.array([[1.0, 1.0, 2.0], [3.0, 0.0, 0.0]]), np.array([[1, 1, 1], [1, 0, 0]], bool))
    np.testing.assert_allclose(s["total"], [4.0, 3.0])
    np.testing.assert_allclose(s["max"], [2.0, 3.0])
    np.testing.assert_allclose(s["entropy"], [-(2 * 0.25 * np.log(0.25) + 0.5 * np.log(0.5)), 0.0])
    assert s["count"].tolist() == [3, 1]


def _random_diagram(rng: np.random.Generator) -> np.ndarray:
    b = rng.uniform(0, 1, rng.integers(1, 8))
    return np.stack([b, b + rng.uniform(0.01, 1, b.size)], axis=1)


@pytest.mark.parametrize("metric", sorted(D.DISTANCES))
def test_diagram_distances_are_metrics(metric):
    rng = np.random.default_rng(5)
    fn = D.DISTANCES[metric]
    for _ in range(20):
        x, y, z = (_random_diagram(rng) for _ in range(3))
        assert fn(x, x) == pytest.approx(0.0, abs=1e-12)
        assert fn(x, y) == pytest.approx(fn(y, x), rel=1e-9, abs=1e-12)
        assert fn(x, z) <= fn(x, y) + fn(y, z) + 1e-9
        assert fn(x, y) >= 0


def test_distances_agree_with_references():
    persim = pytest.importorskip("persim")
    from gudhi.representations.metrics import _sliced_wasserstein_distance

    rng = np.random.default_rng(6)
    for _ in range(5):
        x, y = _random_diagram(rng), _random_diagram(rng)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert D.bottleneck(x, y) == pytest.approx(persim.bottleneck(x, y), rel=1e-6)
            assert D.wasserstein(x, y) == pytest.approx(persim.wasserstein(x, y), rel=1e-6)
        thetas = np.linspace(-np.pi / 2, np.pi / 2, num=21, endpoint=False)[:-1]  # gudhi's 20 lines
        assert D.sliced_wasserstein(x, y, thetas=thetas) == pytest.approx(_sliced_wasserstein_distance(x, y, 21))


def test_persistence_image_matches_gudhi():
    from gudhi.representations import PersistenceImage

    dgm = _random_diagram(np.random.default_rng(7))
    ref = PersistenceImage(bandwidth=0.2, weight=lambda p: p[1], resolution=[6, 5],
                           im_range=[0.0, 1.0, 0.0, 1.0])(dgm)
    ours = D.persistence_image(dgm, birth_range=(0, 1), pers_range=(0, 1), resolution=(6, 5), bandwidth=0.2)
    np.testing.assert_allclose(ours, ref, rtol=1e-10)


def test_betti_curves():
    grid = np.array([0.0, 0.5, 1.0, 1.5])
    np.testing.assert_array_equal(D.betti_curve([[0.0, 1.0], [0.5, 2.0]], grid), [1, 2, 1, 1])
    np.testing.assert_array_equal(D.betti_curves(np.array([[0.4, 1.2]]), grid), [[2, 1, 1, 0]])


def test_unknown_layer_is_refused():
    from weightlake.errors import WeightLakeError

    with pytest.raises(WeightLakeError, match="no layer"):
        T.zoo_topology(_rows(1), CNN_S, layers=["fc9"])


def test_sliced_wasserstein_matrix_is_the_pairwise_distance():
    rng = np.random.default_rng(8)
    equal = [D.h0_bars(rng.uniform(0, 2, 7)) for _ in range(6)]
    ragged = [_random_diagram(rng) for _ in range(5)]
    for dgms in (equal, ragged):
        m = D.sliced_wasserstein_matrix(dgms, 30)
        ref = np.array([[D.sliced_wasserstein(a, b, 30) for b in dgms] for a in dgms])
        np.testing.assert_allclose(m, ref, atol=1e-12)


def test_non_finite_rows_are_refused_by_name_not_as_a_disconnected_graph():
    """A NaN weight made a NaN distance, i.e. no edge: the old error was 'a graph given to
    batched_mst is not connected', which names neither the cause nor the row."""
    rows = np.random.default_rng(0).normal(size=(3, CNN_S.n_params)) * 0.1
    rows[1, CNN_S.layer("fc1").start] = np.nan
    rows[2, CNN_S.layer("fc2").start] = np.inf
    with pytest.raises(T.TopologyError, match=r"2 of 3 rows hold a NaN or an infinity \(row 1, 2\)"):
        T.zoo_topology(rows, CNN_S, h1=False, cubical=False)
    with pytest.raises(T.TopologyError, match=r"layer 'fc1': 1 of 3 rows .*\(row 1\)"):
        T.layer_topology(rows, CNN_S, "fc1", h1=False)


def test_distances_keep_their_digits_far_from_the_origin():
    """20 points of spread 1e-3 around 1e4 (neurons sharing a large bias, one run's checkpoints):
    the Gram expansion lost the digits, H0 deaths were 6.6 % off scipy's spanning tree of exact
    distances and H1 bars moved; centring each cloud first keeps them to rounding."""
    from scipy.sparse.csgraph import minimum_spanning_tree
    from scipy.spatial.distance import cdist

    pts = np.random.default_rng(3).normal(size=(20, 5)) * 1e-3 + 1e4
    exact = cdist(pts, pts)
    np.testing.assert_allclose(T.pairwise_distances(pts[None])[0], exact, rtol=1e-9, atol=0)
    np.testing.assert_allclose(T.rips_h0(pts[None])[0], np.sort(minimum_spanning_tree(exact).data), rtol=1e-9)
    assert T.pairwise_distances(np.zeros((2, 0, 3))).shape == (2, 0, 0)


@pytest.mark.parametrize("shape", [(3, 7, 1), (4, 33, 300), (2, 64, 1153)])
def test_distances_of_a_batch_agree_with_scipy_cdist(shape):
    """Each cloud of a batch (a ResNet conv's neurons are 1,153 wide) against scipy's exact
    differences, float32 rows as the lake holds them: 1e-12 relative to the cloud's largest distance."""
    from scipy.spatial.distance import cdist

    pts = (np.random.default_rng(shape[1]).normal(size=shape) * 0.05 + 0.01).astype(np.float32)
    got = T.pairwise_distances(pts)
    for i in range(shape[0]):
        exact = cdist(pts[i].astype(np.float64), pts[i].astype(np.float64))
        np.testing.assert_allclose(got[i], exact, rtol=0, atol=1e-12 * exact.max())
        assert np.array_equal(got[i], got[i].T)


def test_a_resnet_zoo_gets_every_conv_and_linear_layer():
    """A narrow ResNet (bias-less convs, batch norms): zoo_topology failed on the first layer with
    "layer 'conv1' ... has no bias"; a bias-less layer's neurons are their incoming weights alone, and
    batch norms (vectors, no neurons to cloud) are left out by default and refused when named."""
    from weightlake.arch import infer_architecture
    from weightlake.zoo.resnet import build_resnet

    net = build_resnet(widths=(4, 8, 8, 16), blocks=(2, 2, 2, 2), num_classes=10)
    arch = infer_architecture({k: tuple(v.shape) for k, v in net.state_dict().items()})
    rows = np.random.default_rng(0).normal(size=(2, arch.n_params)) * 0.1
    assert T.neuron_cloud(rows, arch, "conv1").shape == (2, 4, 3 * 7 * 7)
    assert T.neuron_cloud(rows, arch, "fc").shape == (2, 10, 16 + 1)
    table = T.zoo_topology(rows, arch, h1=False)
    assert table.height == 2 * len(arch.matrix_layer_names)
    assert table["layer"].to_list()[:len(arch.matrix_layer_names)] == list(arch.matrix_layer_names)
    with pytest.raises(T.TopologyError, match="'bn1' is a batchnorm layer.*topology needs conv2d or linear"):
        T.zoo_topology(rows, arch, layers=["conv1", "bn1"])
