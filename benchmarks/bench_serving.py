"""Serving pairs to training: the user's loader against weightlake's, in one run.

    python benchmarks/bench_serving.py [--data bench-data] [--user-batches 5] [--repeat 3]

On the full-size synthetic zoo (36,468 models, generated once into ``--data`` and reused)
and the scenario digits 0-9, m=0, gelu, epoch 11 (46,872 pairs), times:

  (a) a re-creation of the user's loader (spec section 5): the whole zoo as a pandas
      frame, three full-table boolean scans per pair (a, b, target with the epoch
      fallback), batches of 36 cut once; timed on a few batches and extrapolated;
  (b) ``TensorDataset`` + ``DataLoader(batch_size=512, shuffle=True)`` over pre-built tensors;
  (c) ``pairs.loader(batch_size=512, shuffle=True)`` (and with 2 workers);
  (d) streaming materialised batches (train split, batch 36, 3 epochs; and with 2 workers);
  (e) the bound: the numpy fancy-index gather of the same rows as (c), already in memory.

Goals: (c)/(e) >= 0.5, (c)/(a) >= 500, (d) >= 1 GB/s.  Figures are medians of
``--repeat`` runs; the machine is shared and noisy, so compare within one run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import BENCH_DATA, emit, full_csv  # noqa: E402

ZOO = "mnist-cnn-s"
SCENARIO = "bench-m0-gelu-e11"


# -- setup -----------------------------------------------------------------------------------------
def serving_lake(data_dir: Path) -> Path:
    """The full-size zoo in its own lake (so other benchmarks' lakes are left alone), with the scenario."""
    from weightlake import open_lake
    from weightlake.ingest.csv_zoo import ingest_csv
    from weightlake.scenarios import declare_scenario, list_scenarios

    root = data_dir / "lake-serving"
    if not (root / "_current").exists():
        t = time.perf_counter()
        ingest_csv(root, full_csv(data_dir), zoo=ZOO, init="kaiming_uniform")
        print(f"ingested the full zoo into {root} in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    if SCENARIO not in list_scenarios(open_lake(root))["scenario"].to_list():
        report = declare_scenario(root, SCENARIO, zoo=ZOO, activations="gelu", epochs=[11])
        print("\n".join(report.lines()), file=sys.stderr)
    return root


def median_time(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


# -- (a) the user's loader ---------------------------------------------------------------------------
def user_frame(lake: Any) -> Any:
    """The zoo as the user's code holds it: the CSV's columns in a pandas frame (float64 weights,
    as ``pd.read_csv`` gives), built from the lake instead of re-parsing 1 GB of text."""
    import pandas as pd

    from weightlake.arch import ACTIVATIONS

    meta = lake.models(ZOO).sort("model_id").collect()
    ids, weights = lake.zoo_weights(ZOO)
    assert (meta["model_id"].to_numpy() == ids).all()
    cols: dict[str, Any] = {"label": ["[" + ", ".join(map(str, c)) + "]" for c in meta["classes"].to_list()]}
    mask = meta["class_mask"].to_numpy()
    cols.update({str(d): (mask >> d) & 1 for d in range(10)})
    act = meta["activation"].to_numpy()
    cols.update({a: (act == a).astype(np.float64) for a in ACTIVATIONS})
    frame = pd.concat([pd.DataFrame(cols), pd.DataFrame(weights.astype(np.float64), columns=lake.arch(ZOO).csv_columns()),
                       pd.DataFrame({"Accuracy": meta["accuracy"].to_numpy(), "epoch": meta["epoch"].to_numpy()})],
                      axis=1)
    return frame


class UserStyleBatches:
    """A re-creation of the user's dataset class: one item is a whole batch, cut once at construction;
    every pair runs three boolean scans over the whole frame (spec section 5)."""

    def __init__(self, frame: Any, records: list[list[Any]], batch_size: int = 36) -> None:
        self.frame = frame
        self.weight_cols = [c for c in frame.columns if c.startswith(("weight ", "bias "))]
        self.batches = [records[i:i + batch_size] for i in range(0, len(records), batch_size)]

    def __len__(self) -> int:
        return len(self.batches)

    def _find(self, classes: list[int], activation: str, epoch: int) -> Any:
        df = self.frame
        return df[(df["label"] == str(sorted(classes))) & (df[activation] == 1.0) & (df["epoch"] == epoch)]

    def __getitem__(self, i: int) -> tuple[Any, list[Any], list[Any], list[Any]]:
        import torch

        from weightlake.arch import EPOCH_BINS, SCENARIO_ACTIVATIONS

        xs, accs, rows = [], [], []
        for classes_a, classes_b, epoch_key, act_key in self.batches[i]:
            act, epoch = SCENARIO_ACTIVATIONS[act_key], EPOCH_BINS[epoch_key]
            a, b = self._find(classes_a, act, epoch), self._find(classes_b, act, epoch)
            target = sorted(set(classes_a) | set(classes_b))
            y, e = self._find(target, act, epoch), epoch
            while y.empty and e > EPOCH_BINS[0]:
                e -= 5
                y = self._find(target, act, e)
            found = (a, b, y)
            xs.append(np.stack([f[self.weight_cols].to_numpy()[0] for f in found]))
            accs.append([float(f["Accuracy"].iloc[0]) for f in found])
            rows.append([int(f.index[0]) for f in found])
        return torch.tensor(np.stack(xs), dtype=torch.float32), self.batches[i], accs, rows


def records_of(pairs: Any) -> list[list[Any]]:
    from weightlake.arch import EPOCH_BINS, SCENARIO_ACTIVATIONS
    from weightlake.scenarios import mask_classes

    frame = pairs.to_polars()
    return [[mask_classes(a), mask_classes(b), EPOCH_BINS.index(e), SCENARIO_ACTIVATIONS.index(act)]
            for a, b, e, act in frame.select("a_mask", "b_mask", "epoch", "activation").iter_rows()]


def bench_user(lake: Any, pairs: Any, n_batches: int, repeat: int) -> dict[str, Any]:
    t = time.perf_counter()
    frame = user_frame(lake)
    setup = time.perf_counter() - t
    ds = UserStyleBatches(frame, records_of(pairs))
    first = ds[0]
    assert first[0].shape == (36, 3, lake.arch(ZOO).n_params)
    seconds = median_time(lambda: [ds[i] for i in range(1, 1 + n_batches)], repeat)
    per_batch = seconds / n_batches
    return {"per_batch_s": per_batch, "triples_per_s": 36 / per_batch, "frame_setup_s": setup,
            "epoch_s_extrapolated": per_batch * len(ds)}


# -- (b), (c), (e) ----------------------------------------------------------------------------------
def drain(loader: Any, key: str | None = None) -> int:
    n = 0
    for batch in loader:
        n += len(batch[key] if key else batch[0])
    return n


def bench_tensordataset(pairs: Any, repeat: int) -> float:
    from torch.utils.data import DataLoader, TensorDataset

    x1, x2, y = pairs.tensors()
    loader = DataLoader(TensorDataset(x1, x2, y), batch_size=512, shuffle=True)
    return len(pairs) / median_time(lambda: drain(loader), repeat)


def bench_pairs_loader(pairs: Any, repeat: int, workers: int) -> float:
    epochs = iter(range(100))
    return len(pairs) / median_time(
        lambda: drain(pairs.loader(batch_size=512, shuffle=True, epoch=next(epochs), num_workers=workers), "pair_id"),
        repeat)


def bench_bound(pairs: Any, repeat: int) -> float:
    from weightlake.serve.pairset import cut_batches, epoch_order

    _, weights = pairs.lake.zoo_weights(pairs.zoo)
    rows_t = np.ascontiguousarray(pairs.zoo_rows().T)
    batches = cut_batches(epoch_order(len(pairs), seed=0, epoch=0), 512)

    def gather() -> None:
        for idx in batches:
            weights[rows_t[:, idx].reshape(-1)]

    return len(pairs) / median_time(gather, repeat)


# -- (d) ------------------------------------------------------------------------------------------
def bench_stream(root: Path, repeat: int, epochs: int) -> dict[str, Any]:
    from weightlake import open_lake
    from weightlake.serve.batches import materialize

    t = time.perf_counter()
    report = materialize(root, SCENARIO, "train", batch_size=36, epochs=epochs, seed=0)
    write_s = time.perf_counter() - t
    stream = open_lake(root).batches(SCENARIO, "train")
    triples = report.n_pairs * epochs
    out: dict[str, Any] = {"materialize_s": write_s, "materialized_gb": report.bytes / 1e9}
    for workers in (0, 2):
        loader = stream if workers == 0 else stream.loader(num_workers=workers)
        seconds = median_time(lambda loader=loader: drain(loader, "pair_id"), repeat)
        out[f"w{workers}_triples_per_s"] = triples / seconds
        out[f"w{workers}_gb_per_s"] = report.bytes / seconds / 1e9
    return out


# -- main -----------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=BENCH_DATA, help="cache directory (zoo CSV and lake)")
    parser.add_argument("--user-batches", type=int, default=5, help="batches of 36 timed for the user's loader")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--stream-epochs", type=int, default=3)
    args = parser.parse_args(argv)

    import torch

    from weightlake import open_lake

    torch.set_num_threads(2)
    root = serving_lake(args.data)
    lake = open_lake(root)
    t = time.perf_counter()
    lake.zoo_weights(ZOO)
    decode_s = time.perf_counter() - t
    pairs = lake.pairs(SCENARIO)
    t = time.perf_counter()
    pairs.tensors()
    gather_s = time.perf_counter() - t

    figures: dict[str, Any] = {"models": int(lake.manifest.zoo(ZOO).n_models), "pairs": len(pairs),
                               "decode_zoo_s": decode_s, "tensors_gather_s": gather_s}
    figures["a_user"] = bench_user(lake, pairs, args.user_batches, args.repeat)
    figures["b_tensordataset_triples_per_s"] = bench_tensordataset(pairs, args.repeat)
    figures["c_pairs_loader_triples_per_s"] = bench_pairs_loader(pairs, args.repeat, 0)
    figures["c2_pairs_loader_2workers_triples_per_s"] = bench_pairs_loader(pairs, args.repeat, 2)
    figures["e_bound_triples_per_s"] = bench_bound(pairs, args.repeat)
    figures["d_stream"] = bench_stream(root, args.repeat, args.stream_epochs)
    report(figures)


def report(f: dict[str, Any]) -> None:
    a, c, e, d = f["a_user"]["triples_per_s"], f["c_pairs_loader_triples_per_s"], f["e_bound_triples_per_s"], f["d_stream"]
    bytes_per_triple = 3 * 2464 * 4
    lines = [
        f"zoo {f['models']} models, scenario {f['pairs']} pairs; decode zoo {f['decode_zoo_s']:.2f} s, "
        f"tensors() gather {f['tensors_gather_s']:.2f} s",
        f"(a) user's loader      {a:>12,.0f} triples/s  ({f['a_user']['per_batch_s'] * 1e3:.0f} ms per batch of 36; "
        f"epoch extrapolated {f['a_user']['epoch_s_extrapolated']:.0f} s)",
        f"(b) TensorDataset 512  {f['b_tensordataset_triples_per_s']:>12,.0f} triples/s",
        f"(c) pairs.loader 512   {c:>12,.0f} triples/s  ({c * bytes_per_triple / 1e9:.2f} GB/s)",
        f"    with 2 workers     {f['c2_pairs_loader_2workers_triples_per_s']:>12,.0f} triples/s",
        f"(d) stream, batch 36   {d['w0_triples_per_s']:>12,.0f} triples/s  ({d['w0_gb_per_s']:.2f} GB/s; "
        f"2 workers {d['w2_gb_per_s']:.2f} GB/s); materialise {d['materialized_gb']:.2f} GB in {d['materialize_s']:.1f} s",
        f"(e) numpy gather bound {e:>12,.0f} triples/s  ({e * bytes_per_triple / 1e9:.2f} GB/s)",
        f"ratios: (c)/(e) = {c / e:.2f} (goal >= 0.5); (c)/(a) = {c / a:,.0f} (goal >= 500); "
        f"(d) = {d['w0_gb_per_s']:.2f} GB/s (goal >= 1)",
    ]
    print("\n".join(lines))
    emit("serving", {**f, "ratio_c_e": c / e, "ratio_c_a": c / a})


if __name__ == "__main__":
    main()
