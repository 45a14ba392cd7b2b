"""Topology of a zoo: per-model cost of each feature against the library paths it replaces, and whole runs.

Per feature, on a sample of models from the full-size synthetic zoo, ours and the baseline
alternate round by round (best of rounds reported):

* Rips H0 of every layer's neuron cloud: batched Prim over all models vs gudhi's RipsComplex per model;
* Rips H1: gudhi flag complex after edge collapse (ours) vs gudhi's RipsComplex without collapse;
* neural persistence: batched Prim on the bipartite graphs vs a gudhi graph filtration per model;
* cubical persistence of the 5 x 5 conv kernels: spanning trees (ours) vs gudhi's CubicalComplex per kernel;
* function-Rips Hilbert signed measure of one model's fc1 (multipers, 20 x 20 grid), no baseline.

Whole runs on the 36,468-model lake: ``analyze_topology`` (default features, and without
cubical), ``analyze_topology_groups --by classes`` (1,013 groups, H0 function-Rips), and the
group distances on the first 120 groups.

    .venv/bin/python benchmarks/bench_topology.py [--sample 400] [--rounds 3] [--skip-lake]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import BENCH_DATA, emit, full_lake  # noqa: E402

from weightlake.analysis import topology as T  # noqa: E402
from weightlake.arch import CNN_S  # noqa: E402


def _gudhi_rips_h0(rows: np.ndarray) -> float:
    for layer in CNN_S.layer_names:
        for cloud in T.neuron_cloud(rows, CNN_S, layer):
            T.rips_diagrams(cloud, max_dim=0)
    return 0.0


def _gudhi_rips_h1(rows: np.ndarray) -> None:
    for layer in CNN_S.layer_names:
        for cloud in T.neuron_cloud(rows, CNN_S, layer):
            T.rips_diagrams(cloud, max_dim=1)


def _ours_h1(rows: np.ndarray) -> None:
    for layer in CNN_S.layer_names:
        T.rips_h1(T.pairwise_distances(T.neuron_cloud(rows, CNN_S, layer)))


def _ours_h0(rows: np.ndarray) -> None:
    for layer in CNN_S.layer_names:
        T.rips_h0(T.neuron_cloud(rows, CNN_S, layer))


def _gudhi_np(rows: np.ndarray) -> None:
    import gudhi as gd

    for layer in CNN_S.layer_names:
        for w in T.layer_graph(rows, CNN_S, layer):
            a = w / w.max()
            n_out, n_in = a.shape
            st = gd.SimplexTree()
            for v in range(n_out + n_in):
                st.insert([v], 0.0)
            for o in range(n_out):
                for i in range(n_in):
                    st.insert([o, n_out + i], 1.0 - a[o, i])
            st.compute_persistence(min_persistence=-1.0)


def _ours_np(rows: np.ndarray) -> None:
    for layer in CNN_S.layer_names:
        T.neural_persistence(T.layer_graph(rows, CNN_S, layer))


def _kernels(rows: np.ndarray) -> np.ndarray:
    return np.concatenate([CNN_S.select(rows, name).reshape(-1, 5, 5) for name in ("conv1", "conv2")])


def _gudhi_cubical(rows: np.ndarray) -> None:
    for k in _kernels(rows):
        for sign in (1.0, -1.0):
            T.cubical_diagrams(sign * k)


def _ours_cubical(rows: np.ndarray) -> None:
    k = _kernels(rows)
    T.kernel_cubical_totals(k)
    T.kernel_cubical_totals(-k)


def _function_rips(rows: np.ndarray) -> None:
    from weightlake.analysis import topology_multi as tm

    grid = tm.regular_grid(3.0, 20)
    for r in rows:
        pts, value = tm.pooled_neurons(r[None], CNN_S, "fc1")
        tm.function_rips_measure(pts, value, grid, degrees=(0,))


def per_feature(rows: np.ndarray, rounds: int) -> None:
    pairs = {"rips_h0": (_ours_h0, _gudhi_rips_h0), "rips_h1": (_ours_h1, _gudhi_rips_h1),
             "neural_persistence": (_ours_np, _gudhi_np), "cubical": (_ours_cubical, _gudhi_cubical)}
    base_n = min(len(rows), 100)  # the per-model baselines are slow: a smaller sample, per model
    for name, (ours, base) in pairs.items():
        best_ours = best_base = float("inf")
        for _ in range(rounds):  # alternate baseline and contender round by round
            t = time.perf_counter()
            base(rows[:base_n])
            best_base = min(best_base, (time.perf_counter() - t) / base_n)
            t = time.perf_counter()
            ours(rows)
            best_ours = min(best_ours, (time.perf_counter() - t) / len(rows))
        emit(f"topology.{name}", {"ours_ms_per_model": round(best_ours * 1e3, 3),
                                  "baseline_ms_per_model": round(best_base * 1e3, 3),
                                  "speedup": round(best_base / best_ours, 1), "models": len(rows)})
    _function_rips(rows[:3])  # warm multipers up (its first call pays a one-time set-up)
    t = time.perf_counter()
    _function_rips(rows[:50])
    emit("topology.function_rips_fc1", {"ms_per_model": round((time.perf_counter() - t) / 50 * 1e3, 2)})


def whole_lake(lake: Path) -> None:
    from weightlake.analysis import topology_groups as tg
    from weightlake.compute.topology import analyze_topology, analyze_topology_groups

    work = BENCH_DATA / "lake-topology"
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(lake, work)
    for kwargs in ({}, {"cubical": False}):
        t = time.perf_counter()
        report = analyze_topology(work, **kwargs)
        emit("topology.analyze_topology", {"seconds": round(time.perf_counter() - t, 1), "models": report.models,
                                           "rows": report.rows, **{k: v for k, v in kwargs.items()}})
    t = time.perf_counter()
    report = analyze_topology_groups(work, by=["classes"])
    emit("topology.analyze_topology_groups", {"seconds": round(time.perf_counter() - t, 1), "groups": report.rows // 5,
                                              "models": report.models, "note": report.notes[-2]})
    import weightlake as wl

    lk = wl.open_lake(work)
    groups = lk.table("topology_groups").collect()
    names = groups["group"].unique(maintain_order=True).to_list()[:120]
    from weightlake.compute.topology import select_models

    _, _, rows, meta, _ = select_models(lk, None, False)
    labels = np.array(tg.group_labels(meta, ["classes"]))
    keep = np.isin(labels, names)
    t = time.perf_counter()
    _, dist, _, _ = tg.group_topology(rows[keep], lk.arch(), labels[keep].tolist(), max_distance_groups=120)
    emit("topology.group_topology_120_groups_with_distances",
         {"seconds": round(time.perf_counter() - t, 1), "pairs": int(dist.height)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-lake", action="store_true", help="per-feature figures only")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()}", file=sys.stderr)
    lake = full_lake()
    import weightlake as wl

    ids, rows = wl.open_lake(lake).zoo_weights()
    pick = np.random.default_rng(0).choice(len(ids), args.sample, replace=False)
    per_feature(np.ascontiguousarray(rows[np.sort(pick)]), args.rounds)
    if not args.skip_lake:
        whole_lake(lake)
    print(f"load average {os.getloadavg()}", file=sys.stderr)


if __name__ == "__main__":
    main()
