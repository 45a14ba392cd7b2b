"""A miniature merging-model training run, fed three ways from the lake; reports pairs/s per source.

    python examples/train_merger.py                       # builds a small demo lake in a temp dir
    python examples/train_merger.py --lake bench-data/lake-serving --scenario bench-m0-gelu-e11 --steps 300

The same small double-encoder transformer (:mod:`weightlake.experiments.merger`) trains on
each source, from the same initial weights, in alternating rounds
(:func:`weightlake.experiments.training.compare_sources`):

* ``TensorDataset``: ``DataLoader(TensorDataset(*pairs.tensors()), shuffle=True)``;
* ``pairs.loader``: weightlake's batch gather, reshuffled per epoch;
* ``materialised``: batches written once with ``materialize`` and streamed from Zarr.

``data_share`` is the part of the wall time spent waiting for the next batch; the rest is the
model's forward, backward and update.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

ZOO = "mnist-cnn-s"


def demo_lake(root: Path, batch_size: int) -> tuple[Path, str]:
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
    return root / "lake", "demo"


def ensure_materialised(lake_root: Path, scenario: str, batch_size: int) -> None:
    """Materialise the scenario's train batches at ``batch_size`` unless they already are."""
    from weightlake import open_lake
    from weightlake.errors import NoSuchTableError
    from weightlake.serve.batches import materialize

    try:
        if open_lake(lake_root).batches(scenario, "train").entries[0].batch_size == batch_size:
            return
    except NoSuchTableError:
        pass
    materialize(lake_root, scenario, "train", batch_size=batch_size, epochs=3)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lake", type=Path, help="lake with a declared scenario (default: a temporary demo lake)")
    parser.add_argument("--scenario", help="scenario name (default: the demo's)")
    parser.add_argument("--steps", type=int, default=40, help="steps per source and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=36)
    args = parser.parse_args(argv)

    import polars as pl
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from weightlake import open_lake
    from weightlake.experiments.merger import MergerConfig, TransformerAE
    from weightlake.experiments.training import compare_sources

    with tempfile.TemporaryDirectory() as tmp:
        if args.lake is None:
            root, scenario = demo_lake(Path(tmp), args.batch_size)
        else:
            root, scenario = args.lake, args.scenario
            ensure_materialised(root, scenario, args.batch_size)
        lake = open_lake(root)
        pairs = lake.pairs(scenario, "train")
        n_values = lake.arch(pairs.zoo).n_params
        torch.manual_seed(0)
        config = MergerConfig(d_model=32, n_heads=2, d_ff=64, n_layers=1, neck=32)
        model = TransformerAE(config)
        tensors = TensorDataset(*pairs.tensors())
        epochs = iter(range(1_000_000))
        sources = {
            "TensorDataset": lambda: DataLoader(tensors, batch_size=args.batch_size, shuffle=True),
            "pairs.loader": lambda: pairs.loader(batch_size=args.batch_size, seed=0, epoch=next(epochs)),
            "materialised": lambda: lake.batches(scenario, "train"),
        }
        print(f"TransformerAE {config.summary()} over {n_values} weights; {len(pairs)} train pairs of "
              f"{scenario!r}, batch {args.batch_size}, {args.steps} steps x {args.rounds} rounds per source")
        table = compare_sources(model, sources, steps=args.steps, rounds=args.rounds)
        with pl.Config(tbl_cols=-1, tbl_width_chars=160, tbl_hide_dataframe_shape=True):
            print(table)


if __name__ == "__main__":
    main()
