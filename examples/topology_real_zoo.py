"""Does topology tell which classes a model saw? The measurement on a real trained zoo.

Trains a zoo of CNN-s models on Fashion-MNIST (every class subset of ``--digits`` with a size
in ``--sizes``, x 2 activations x 2 initialisations, one checkpoint at the last epoch), ingests
it into a lake, and runs the four topology commands on it: ``analyze topology``,
``topology-groups``, ``topology-classes`` (with its figure) and ``topology-filtration``.
With many class sets the cross-validation is grouped by class set, so the AUCs it prints are
for class sets a model never saw in training.

    .venv/bin/python examples/topology_real_zoo.py --out out/topology-zoo [--digits 0-5] [--sizes 2-3]

Needs Debian's ``dataset-fashion-mnist``. About 140 models; a few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def main() -> None:
    from weightlake.arch import class_subsets
    from weightlake.compute.topology import (
        analyze_topology,
        analyze_topology_classes,
        analyze_topology_filtration,
        analyze_topology_groups,
    )
    from weightlake.ingest.checkpoints import ingest_checkpoints
    from weightlake.scenarios import parse_int_list
    from weightlake.zoo.train import train_zoo

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out/topology-zoo"))
    parser.add_argument("--digits", default="0-5")
    parser.add_argument("--sizes", default="2-3")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--subsample", type=int, default=300, help="training images per class")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    subsets = class_subsets(parse_int_list(args.digits), parse_int_list(args.sizes))
    started = time.perf_counter()
    report = train_zoo("fashion-mnist", args.out / "checkpoints", subsets, ("relu", "tanh"),
                       ("kaiming_uniform", "xavier_normal"), epochs_max=args.epochs, subsample=args.subsample,
                       seed=3, workers=args.workers, checkpoint_epochs=[args.epochs - 1], min_accuracy=0.0)
    print(f"trained {report.trained} models in {time.perf_counter() - started:.0f} s")
    lake = args.out / "lake"
    if not (lake / "_current").exists():
        ingest_checkpoints(lake, args.out / "checkpoints", zoo="fmnist", bins=(args.epochs - 1,),
                           rejects_path=args.out / "rejects.csv")
    print(analyze_topology(lake))
    print(analyze_topology_groups(lake, by=["classes"]))
    print(analyze_topology_classes(lake, plot_dir=args.out))
    for digit in parse_int_list(args.digits)[:3]:
        print(analyze_topology_filtration(lake, digit=digit))
    import weightlake as wl
    from weightlake.query import run_named

    lk = wl.open_lake(lake)
    print(run_named(lk, "topology_digit_auc", {"zoo": "fmnist"}))
    print(lk.sql("SELECT distance, round(r, 3) AS r, p, n_class_sets FROM topology_classes WHERE kind = 'mantel'"))


if __name__ == "__main__":
    main()
