"""Benchmark: how many zoo models the trainer produces per minute.

Trains a small zoo on a real dataset into a temporary directory (or ``--out``) and prints a
table and one JSON line.  The default configuration is the reference recipe (Adam lr 0.05,
batch 90, full training set of each class, spec checkpoint rule) capped at 12 epochs, on
6 class pairs (digits 0-3) x 2 activations x 1 init = 12 models, with 2 worker processes::

    .venv/bin/python benchmarks/bench_train.py
    .venv/bin/python benchmarks/bench_train.py --digits 0-9 --sizes 2-3 --epochs 40 --subsample 500

Models per minute counts trained models only and includes worker start-up (about 5 s per
worker: importing torch and loading the dataset), as a user would see it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile

from weightlake.zoo.train import TrainReport, parse_int_list, parse_subsets, train_zoo


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="fashion-mnist", help="dataset name or IDX directory")
    parser.add_argument("--digits", default="0-3", help="classes to draw subsets from, e.g. 0-9 or 1,3,5")
    parser.add_argument("--sizes", default="2", help="subset sizes, e.g. 2-3")
    parser.add_argument("--activations", default="relu,tanh")
    parser.add_argument("--inits", default="kaiming_uniform")
    parser.add_argument("--epochs", type=int, default=12, help="epochs_max")
    parser.add_argument("--subsample", type=int, default=None, help="training images per class (default: all)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="output directory (default: a temporary one, removed after)")
    return parser.parse_args(argv)


def _run(args: argparse.Namespace, out: str) -> TrainReport:
    subsets = parse_subsets(parse_int_list(args.digits), parse_int_list(args.sizes))
    return train_zoo(args.dataset, out, subsets, args.activations.split(","), args.inits.split(","),
                     layout="b", epochs_max=args.epochs, subsample=args.subsample, seed=args.seed,
                     workers=args.workers, lr=args.lr,
                     progress=lambda done, total, r: print(f"  {done}/{total} {list(r.classes)} {r.activation} "
                                                           f"{r.init}: {r.final_accuracy:.1f} % after "
                                                           f"{r.epochs_trained} epochs", file=sys.stderr))


def _summary(args: argparse.Namespace, report: TrainReport) -> dict:
    epochs = sum(r.epochs_trained for r in report.results if not r.skipped)
    return {
        "benchmark": "train_zoo", "dataset": args.dataset, "digits": args.digits, "sizes": args.sizes,
        "activations": args.activations, "inits": args.inits, "epochs_max": args.epochs,
        "subsample": args.subsample, "workers": args.workers, "lr": args.lr,
        "models": len(report.results), "trained": report.trained, "epochs_trained": epochs,
        "seconds": round(report.seconds, 2), "models_per_minute": round(report.models_per_minute, 2),
        "epochs_per_minute": round(60 * epochs / report.seconds, 1) if report.seconds else 0.0,
        "cpus": os.cpu_count(), "python": platform.python_version(),
        # other work on the machine skews the figure: record the load it ran under
        "loadavg_1m_end": round(os.getloadavg()[0], 2),
    }


def main(argv: list[str] | None = None) -> dict:
    args = _args(argv)
    if args.out:
        report = _run(args, args.out)
    else:
        with tempfile.TemporaryDirectory(prefix="bench_train_") as out:
            report = _run(args, out)
    summary = _summary(args, report)
    for key in ("models", "trained", "epochs_trained", "seconds", "models_per_minute", "epochs_per_minute"):
        print(f"{key:<18} {summary[key]}")
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
