"""A miniature merging-model training run, fed three ways from the lake; reports samples/s per loader.

    python examples/train_merger.py                       # builds a small demo lake in a temp dir
    python examples/train_merger.py --lake bench-data/lake-serving --scenario bench-m0-gelu-e11 --steps 300

The model is a small double-encoder transformer (:mod:`weightlake.experiments.merger`;
a small MLP stands in if that module is missing) trained to map ``(x1, x2) -> y``, the
flat weights of the models trained on A, on B and on A|B.  The same number of steps
runs on each loader:

* ``TensorDataset``: ``DataLoader(TensorDataset(*pairs.tensors()), shuffle=True)``;
* ``pairs.loader``: weightlake's batch gather from the in-memory zoo, reshuffled per epoch;
* ``materialised``: batches written once with ``materialize`` and streamed from Zarr.

Samples/s counts training samples through the whole step (data + forward + backward +
update); ``data %`` is the share of the time spent waiting for the next batch.  The three
runs are interleaved in rounds, so a busy machine slows them alike.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

ZOO = "mnist-cnn-s"


# -- a lake to train from -------------------------------------------------------------------------
def demo_lake(root: Path, batch_size: int) -> str:
    """A small synthetic zoo (every subset of digits 0-5, gelu, epochs 11 and 16), a scenario, its batches."""
    from weightlake.ingest.csv_zoo import ingest_csv
    from weightlake.scenarios import declare_scenario
    from weightlake.serve.batches import materialize
    from weightlake.zoo.synthetic import all_labels, write_synthetic_csv

    write_synthetic_csv(root / "zoo.csv", labels=all_labels(range(6), range(2, 7)), activations=("gelu",),
                        epochs=(11, 16))
    ingest_csv(root / "lake", root / "zoo.csv", zoo=ZOO, init="kaiming_uniform")
    declare_scenario(root / "lake", "demo", zoo=ZOO, digits="0-5", sizes="2-5", overlap="0-4", epochs=[11])
    materialize(root / "lake", "demo", "train", batch_size=batch_size, epochs=3)
    return "demo"


def ensure_materialised(lake_root: Path, scenario: str, batch_size: int) -> None:
    from weightlake.errors import NoSuchTableError
    from weightlake.lake import open_lake
    from weightlake.serve.batches import materialize

    try:
        stream = open_lake(lake_root).batches(scenario, "train")
        if stream.entries[0].batch_size == batch_size:
            return
    except NoSuchTableError:
        pass
    materialize(lake_root, scenario, "train", batch_size=batch_size, epochs=3)


# -- model -----------------------------------------------------------------------------------------------
def build_model(n_values: int) -> tuple[nn.Module, str]:
    try:
        from weightlake.experiments.merger import MergerConfig, TransformerAE
    except ImportError:
        return MLPMerger(n_values), "MLP stand-in (weightlake.experiments.merger not found)"
    config = MergerConfig(d_model=32, n_heads=2, d_ff=64, n_layers=1, neck=32)
    return TransformerAE(config).train(), f"TransformerAE {config.summary()}"


class MLPMerger(nn.Module):
    """Two encoders, a tanh neck, a decoder: the merger's shape without attention."""

    def __init__(self, n_values: int, hidden: int = 256, neck: int = 64) -> None:
        super().__init__()
        self.enc_1 = nn.Sequential(nn.Linear(n_values, hidden), nn.GELU())
        self.enc_2 = nn.Sequential(nn.Linear(n_values, hidden), nn.GELU())
        self.neck = nn.Linear(2 * hidden, neck)
        self.dec = nn.Sequential(nn.Linear(neck, hidden), nn.GELU(), nn.Linear(hidden, n_values))

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        return self.dec(torch.tanh(self.neck(torch.cat([self.enc_1(x1), self.enc_2(x2)], dim=1))))


# -- loaders as endless (x1, x2, y) iterators ----------------------------------------------------------------
def endless(make_epoch: Callable[[int], Any], unpack: Callable[[Any], tuple[torch.Tensor, ...]]) -> Iterator[Any]:
    epoch = 0
    while True:
        for batch in make_epoch(epoch):
            yield unpack(batch)
        epoch += 1


def loaders(lake: Any, scenario: str, batch_size: int) -> dict[str, Iterator[Any]]:
    from torch.utils.data import DataLoader, TensorDataset

    pairs = lake.pairs(scenario, "train")
    tensors = DataLoader(TensorDataset(*pairs.tensors()), batch_size=batch_size, shuffle=True)
    stream = lake.batches(scenario, "train")

    def from_dict(b: dict[str, Any]) -> tuple[torch.Tensor, ...]:
        return b["x1"], b["x2"], b["y"]

    return {
        "TensorDataset": endless(lambda e: tensors, tuple),
        "pairs.loader": endless(lambda e: pairs.loader(batch_size=batch_size, seed=0, epoch=e), from_dict),
        "materialised": endless(lambda e: stream, from_dict),
    }


# -- training ------------------------------------------------------------------------------------------------
class Run:
    """One model and optimiser fed by one loader; :meth:`steps` trains and keeps the timings."""

    def __init__(self, batches: Iterator[Any], n_values: int) -> None:
        torch.manual_seed(0)
        self.model, _ = build_model(n_values)
        self.optimiser = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.batches = batches
        next(batches)  # warm-up: the first batch (worker start-up, caches) is not timed
        self.samples, self.seconds, self.waiting, self.loss = 0, 0.0, 0.0, float("nan")

    def steps(self, n: int) -> None:
        start = time.perf_counter()
        for _ in range(n):
            t = time.perf_counter()
            x1, x2, y = next(self.batches)
            self.waiting += time.perf_counter() - t
            loss = nn.functional.mse_loss(self.model(x1, x2), y)
            self.optimiser.zero_grad()
            loss.backward()
            self.optimiser.step()
            self.samples += len(y)
            self.loss = loss.item()
        self.seconds += time.perf_counter() - start

    def line(self, name: str) -> str:
        return (f"  {name:<14} {self.samples / self.seconds:>9,.0f} samples/s  data {self.waiting / self.seconds:>5.1%}"
                f"  loss {self.loss:.5f}  ({self.seconds:.1f} s)")


def train_all(iterators: dict[str, Iterator[Any]], steps: int, n_values: int, rounds: int = 5) -> dict[str, Run]:
    """Train one model per loader, in interleaved rounds so that a busy machine slows them alike."""
    runs = {name: Run(batches, n_values) for name, batches in iterators.items()}
    for r in range(rounds):
        for run in runs.values():
            run.steps(steps // rounds + (1 if r < steps % rounds else 0))
    return runs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lake", type=Path, help="lake with a declared scenario (default: a temporary demo lake)")
    parser.add_argument("--scenario", help="scenario name (default: the demo's)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=36)
    args = parser.parse_args(argv)

    from weightlake.lake import open_lake

    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        if args.lake is None:
            root, scenario = Path(tmp) / "lake", demo_lake(Path(tmp), args.batch_size)
        else:
            root, scenario = args.lake, args.scenario
            ensure_materialised(root, scenario, args.batch_size)
        lake = open_lake(root)
        n_values = lake.arch(lake.pairs(scenario, "train").zoo).n_params
        print(f"{build_model(n_values)[1]}; {len(lake.pairs(scenario, 'train'))} train pairs of {scenario!r}, "
              f"batch {args.batch_size}, {args.steps} steps per loader")
        for name, run in train_all(loaders(lake, scenario, args.batch_size), args.steps, n_values).items():
            print(run.line(name))


if __name__ == "__main__":
    main()
