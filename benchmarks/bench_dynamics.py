"""Cost per model of the dynamics analyses, against their naive baselines in the same run.

* NTK of one CNN-s model on K probe images (full [K*10, K*10] and trace form, plus spectra) with
  ``torch.func``, against a per-(image, logit) ``backward()`` loop building the same kernel.
* The exhaustive super-weight scan (every single weight of all five layers, one cached forward
  pass per layer), against brute force (zero one weight, run the model, restore) timed on a
  sample of weights and extrapolated to all 2,400 (said so in the output).

Rounds alternate baseline and contender; the best round is reported with the machine's load.
Time for 1,000 models is extrapolated from the per-model figure (one process, the threads given).

    .venv/bin/python benchmarks/bench_dynamics.py [--rounds 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from weightlake.compute._common import probe_images
from weightlake.compute.ntk import model_ntk_rows
from weightlake.compute.superweights import model_super_weights
from weightlake.dynamics.superweights import brute_force_scan
from weightlake.zoo.cnn import build_cnn
from weightlake.zoo.train import init_weights


def _autograd_ntk(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    rows = []
    for i in range(len(x)):
        out = model(x[i:i + 1])[0]
        for o in range(out.shape[0]):
            grads = torch.autograd.grad(out[o], list(model.parameters()), retain_graph=o < out.shape[0] - 1)
            rows.append(torch.cat([g.reshape(-1) for g in grads]))
    j = torch.stack(rows).double()
    return j @ j.T


def _timed(fn, *args) -> float:
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


def _per_thousand(seconds_per_model: float) -> str:
    total = seconds_per_model * 1000
    return f"{total:.0f} s" if total < 120 else f"{total / 60:.0f} min" if total < 7200 else f"{total / 3600:.1f} h"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ks", default="10,20,50")
    parser.add_argument("--probe", type=int, default=500, help="probe images of the super-weight scan")
    parser.add_argument("--brute-sample", type=int, default=60, help="weights timed by brute force per round")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = init_weights(build_cnn(activation="relu"), "kaiming_uniform").eval()
    n_weights = sum(m.weight.numel() for m in model.module_list if hasattr(m, "weight"))
    results: dict[str, dict[str, float]] = {}
    for k in [int(v) for v in args.ks.split(",")]:
        x, _ = probe_images("fashion-mnist", [0, 5, 9], k)
        model_ntk_rows(model, x)  # warm-up
        best = {"torch.func": float("inf"), "autograd loop": float("inf")}
        for _ in range(args.rounds):
            best["autograd loop"] = min(best["autograd loop"], _timed(_autograd_ntk, model, x))
            best["torch.func"] = min(best["torch.func"], _timed(model_ntk_rows, model, x))
        results[f"ntk K={k}"] = best
    x, y = probe_images("fashion-mnist", [0, 5, 9], args.probe)
    sample = list(range(0, 720, 720 // args.brute_sample))[: args.brute_sample]
    best = {"cached scan": float("inf"), "brute force (extrapolated)": float("inf")}
    for _ in range(args.rounds):
        per_weight = _timed(lambda: brute_force_scan(model, x, y, "fc1", entries=sample)) / len(sample)
        best["brute force (extrapolated)"] = min(best["brute force (extrapolated)"], per_weight * n_weights)
        best["cached scan"] = min(best["cached scan"], _timed(lambda: model_super_weights(model, x, y)))
    results[f"super-weight scan N={args.probe}"] = best
    load = os.getloadavg()[0]
    print(f"threads {args.threads}, best of {args.rounds} rounds, load average {load:.1f}")
    for name, figures in results.items():
        ours, base = list(figures.values())
        print(f"{name}: ours {ours:.3f} s/model ({_per_thousand(ours)} per 1,000 models), "
              f"baseline {base:.3f} s/model, {base / ours:.1f}x")
    print(json.dumps({"load": load, "threads": args.threads, "results": results}))


if __name__ == "__main__":
    main()
