"""The learned filtration: its H0 pairing agrees with gudhi, and it finds the one informative feature."""

from __future__ import annotations

import numpy as np
import pytest

from weightlake.analysis import topology_learned as tl
from weightlake.arch import CNN_S

gd = pytest.importorskip("gudhi")


def test_lower_star_pairs_give_gudhi_s_bars():
    rng = np.random.default_rng(0)
    for _ in range(5):
        values = rng.normal(size=15)
        edges = tl.mst_edges(tl.pairwise_distances(rng.normal(size=(1, 15, 3)))[0])
        pairs = tl.lower_star_pairs(values, edges)
        ours = np.sort(values[pairs[:, 1]] - values[pairs[:, 0]])
        st = gd.SimplexTree()
        for v, x in enumerate(values):
            st.insert([v], float(x))
        for a, b in edges:
            st.insert([int(a), int(b)], float(max(values[a], values[b])))
        st.compute_persistence(min_persistence=-1.0)
        ref = st.persistence_intervals_in_dimension(0)
        ref = np.sort((ref[:, 1] - ref[:, 0])[np.isfinite(ref[:, 1])])
        np.testing.assert_allclose(ours, ref, atol=1e-12)


def _synthetic_zoo(n_models: int = 60, n_neurons: int = 16, seed: int = 1):
    """Neurons on a chain; feature 3 zig-zags along the chain in class 1 and ramps in class 0; the rest is noise."""
    rng = np.random.default_rng(seed)
    chain = np.stack([np.arange(n_neurons - 1), np.arange(1, n_neurons)], axis=1)
    feats, graphs, y = [], [], []
    for i in range(n_models):
        label = i % 2
        x = rng.normal(size=(n_neurons, 5))
        ramp = np.linspace(-1.5, 1.5, n_neurons)
        x[:, 3] = (ramp if label == 0 else np.where(np.arange(n_neurons) % 2, 1.5, -1.5)) + rng.normal(0, 0.2, n_neurons)
        perm = rng.permutation(n_neurons)  # neuron order carries nothing: relabel the vertices
        inv = np.argsort(perm)
        feats.append(x[perm])
        graphs.append(inv[chain])
        y.append(label)
    return feats, graphs, np.array(y)


def test_the_learned_filtration_finds_the_one_informative_feature():
    feats, graphs, y = _synthetic_zoo()
    fit = tl.fit_filtration(feats, graphs, y, names=[f"f{i}" for i in range(5)], steps=80, seed=0)
    top, coef = fit.coefficients()[0]
    assert top == "f3"
    assert abs(coef) > 0.8  # most of the unit vector
    assert fit.test_auc > 0.9 and fit.losses[-1] < fit.losses[0]


def test_no_steps_is_refused_in_one_line():
    """steps=0 left an empty loss list, and the lake run failed on losses[-1] with an IndexError."""
    from weightlake.analysis.topology import TopologyError

    feats, graphs, y = _synthetic_zoo()
    with pytest.raises(TopologyError, match="steps must be a positive number"):
        tl.fit_filtration(feats, graphs, y, steps=0)


def test_neuron_features_and_graphs_of_a_real_layer():
    rows = np.random.default_rng(2).normal(size=(3, CNN_S.n_params))
    f = tl.neuron_features(rows, CNN_S, "fc1")
    assert f.shape == (3, 20, len(tl.NEURON_FEATURES))
    np.testing.assert_allclose(f[0, :, 0], np.linalg.norm(CNN_S.layer_matrix(rows, "fc1")[0], axis=1))
    graphs = tl.neuron_graphs(rows, CNN_S, "fc1")
    assert all(g.shape == (19, 2) for g in graphs)


def test_neuron_features_of_a_conv_layer_feeding_a_conv():
    """conv1 -> conv2 (and conv2 -> conv3): the outgoing weights are [next_out, out, kh, kw]; the norms
    and means over axis 1 only kept the kernel axes and np.stack failed ('all input arrays must have
    the same shape'), so `analyze topology-filtration --layer conv1` gave a traceback."""
    rows = np.random.default_rng(3).normal(size=(2, CNN_S.n_params))
    for layer, nxt in (("conv1", "conv2"), ("conv2", "conv3")):
        f = tl.neuron_features(rows, CNN_S, layer)
        out_ch = CNN_S.layer(layer).weight_shape[0]
        assert f.shape == (2, out_ch, len(tl.NEURON_FEATURES))
        w = CNN_S.select(rows, nxt)[1]  # [next_out, out, kh, kw]
        np.testing.assert_allclose(f[1, :, 4], np.sqrt((w ** 2).sum(axis=(0, 2, 3))))
        np.testing.assert_allclose(f[1, :, 5], w.mean(axis=(0, 2, 3)))
    dense = tl.neuron_features(rows, CNN_S, "fc1")
    np.testing.assert_allclose(dense[0, :, 4], np.linalg.norm(CNN_S.select(rows, "fc2")[0], axis=0))
