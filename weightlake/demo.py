"""``weightlake demo``: the whole path on real images, small enough for a laptop-minute.

1. train a small zoo on Fashion-MNIST (two initialisations, layout B, resumable);
2. ingest the checkpoint tree into the lake (one atomic commit; re-runs add nothing);
3. query it with SQL (accuracy by activation, init and epoch; duplicate vectors);
4. rebuild CNNs from the lake and check their accuracy on held-out images;
5. export one ``Merged_zoo_{init}.csv`` per initialisation in the exact CSV format;
6. declare a scenario and stream a shuffled batch of pairs into torch;
7. compute per-layer spectra and a correlation heatmap as lake tables;
8. verify the lake.

Each step prints what it did; the steps whose modules are not installed are skipped
with a note.  Everything lands in the lake (``--lake``) and in ``--out`` (CSV, plots).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from weightlake.errors import WeightLakeError

Echo = Callable[[str], None]


@dataclass(frozen=True)
class DemoConfig:
    digits: tuple[int, ...] = (0, 1, 2, 3)
    sizes: tuple[int, ...] = (2, 3, 4)  # unions of two inputs must be in the zoo too
    activations: tuple[str, ...] = ("relu", "tanh")
    inits: tuple[str, ...] = ("kaiming_uniform", "xavier_normal")
    epochs_max: int = 17  # epochs count from 0: the bin-16 checkpoint needs 17
    bins: tuple[int, ...] = (11, 16)
    overlap: tuple[int, int] = (0, 2)
    subsample: int = 200
    lr: float = 1e-3
    checkpoint_epochs: tuple[int, ...] | None = None  # None: the reference rule (epoch >= 9, epoch % 5 == 1)
    min_accuracy: float = 60.0
    zoo: str = "fmnist-cnn-s"

    def __post_init__(self) -> None:
        # a bin the trainer never reaches is filled only by copies of earlier checkpoints (`fallback`):
        # with epochs_max 16 every bin-16 model, and so every pair of the demo's scenario, was one
        unreachable = [b for b in self.bins if not 0 <= b < self.epochs_max]
        if unreachable:
            raise ValueError(f"epoch bins {unreachable} are never reached by {self.epochs_max} epochs (epochs count "
                             f"from 0): train {max(unreachable) + 1} epochs")

    @classmethod
    def quick(cls) -> DemoConfig:
        """A seconds-long variant for the test suite: 2 subsets, one activation."""
        return cls(digits=(0, 1, 2), sizes=(2, 3), activations=("relu",), epochs_max=3, bins=(1, 2), subsample=60,
                   checkpoint_epochs=(1, 2), min_accuracy=-1.0)


def run_demo(lake_dir: Path, out_dir: Path, *, config: DemoConfig = DemoConfig(), workers: int = 2,
             echo: Echo = print) -> None:
    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpts = out_dir / "checkpoints"
    _step(echo, "1. train a small zoo on Fashion-MNIST (resumable; finished models are skipped)")
    _train(ckpts, config, workers, echo)
    _step(echo, "2. ingest the checkpoint tree")
    _ingest(lake_dir, ckpts, config, workers, echo)
    import weightlake as wl

    lake = wl.open_lake(lake_dir)
    _step(echo, "3. SQL over the lake")
    _queries(lake, config, echo)
    _step(echo, "4. rebuild CNNs from the lake and score them on held-out test images")
    _rebuild(lake, config, echo)
    _step(echo, "5. export the CSV zoo, one file per initialisation")
    _export(lake, out_dir, config, echo)
    _optional(echo, "6. a scenario and a shuffled batch of pairs", lambda: _pairs(lake_dir, config, echo))
    _optional(echo, "7. spectra and correlations as lake tables", lambda: _analysis(lake_dir, out_dir, config, echo))
    _step(echo, "8. verify")
    from weightlake.verify import verify

    report = verify(wl.open_lake(lake_dir))
    echo(report.lines()[0])
    if not report.ok:
        raise WeightLakeError("the demo lake failed verification: " + "; ".join(report.problems[:3]))
    import shlex

    lake_arg = shlex.quote(str(lake_dir))  # pasted into a shell as printed, spaces and brackets included
    echo(f"\ndone in {time.perf_counter() - started:.0f} s. Try (after `. .venv/bin/activate`):\n"
         f"  weightlake sql \"SELECT init, activation, epoch, round(avg(accuracy), 1) AS acc FROM models "
         f"GROUP BY ALL ORDER BY ALL\" --lake {lake_arg}\n"
         f"  weightlake query list\n  weightlake info --lake {lake_arg}")


def _step(echo: Echo, text: str) -> None:
    echo(f"\n== {text}")


def _optional(echo: Echo, title: str, fn: Callable[[], None]) -> None:
    _step(echo, title)
    try:
        fn()
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("weightlake"):
            raise
        echo(f"   (skipped: {exc.name} is not part of this installation yet)")


def _train(ckpts: Path, config: DemoConfig, workers: int, echo: Echo) -> None:
    from weightlake.zoo.train import parse_subsets, train_zoo

    subsets = parse_subsets(config.digits, config.sizes)
    done = [0]

    def progress(n: int, total: int, result: object) -> None:
        done[0] = n
        if n == total or n % max(total // 4, 1) == 0:
            echo(f"   {n}/{total} models")

    report = train_zoo("fashion-mnist", ckpts, subsets, config.activations, config.inits, layout="b",
                       epochs_max=config.epochs_max, subsample=config.subsample, lr=config.lr, workers=workers,
                       checkpoint_epochs=config.checkpoint_epochs, min_accuracy=config.min_accuracy,
                       progress=progress)
    echo(f"   trained {report.trained}, skipped {report.skipped} already finished ({report.seconds:.0f} s) -> {ckpts}")


def _ingest(lake_dir: Path, ckpts: Path, config: DemoConfig, workers: int, echo: Echo) -> None:
    from weightlake.ingest.checkpoints import ingest_checkpoints

    report = ingest_checkpoints(lake_dir, ckpts, zoo=config.zoo, bins=config.bins, workers=workers,
                                rejects_path=ckpts.parent / "checkpoint-rejects.csv")
    for line in report.lines():
        echo("   " + line)


def _queries(lake: object, config: DemoConfig, echo: Echo) -> None:
    import polars as pl

    df = lake.sql("SELECT init, activation, epoch, count(*) AS models, round(avg(accuracy), 2) AS mean_acc, "  # type: ignore[attr-defined]
                  "round(min(accuracy), 2) AS min_acc FROM models WHERE zoo = $zoo GROUP BY ALL ORDER BY ALL",
                  {"zoo": config.zoo})
    with pl.Config(tbl_rows=30, tbl_hide_dataframe_shape=True):
        echo(str(df))
    dup = lake.sql("SELECT count(*) AS n FROM (SELECT weights_hash FROM models GROUP BY 1 HAVING count(*) > 1)")  # type: ignore[attr-defined]
    echo(f"   weight vectors stored under more than one epoch bin (early stops): {dup['n'][0]}")


def _rebuild(lake: object, config: DemoConfig, echo: Echo) -> None:
    import polars as pl

    from weightlake.zoo.idx import load_dataset, select_classes
    from weightlake.zoo.train import evaluate_accuracy

    images, labels = load_dataset("fashion-mnist", "test")
    sample = lake.models(config.zoo).filter(pl.col("epoch") == config.bins[-1]).sort("model_id").head(4).collect()  # type: ignore[attr-defined]
    for row in sample.iter_rows(named=True):
        x, y = select_classes(images, labels, row["classes"])
        acc = evaluate_accuracy(lake.cnn(row["model_id"]), x, y)  # type: ignore[attr-defined]
        echo(f"   model {row['model_id']:3d} {str(list(row['classes'])):10s} {row['activation']:5s} {row['init']:16s}"
             f" recorded {row['accuracy']:6.2f}%  rebuilt from the lake {acc:6.2f}%")


def _export(lake: object, out_dir: Path, config: DemoConfig, echo: Echo) -> None:
    from weightlake.ingest.csv_zoo import export_csv

    for init in config.inits:
        path = out_dir / f"Merged_zoo_{init}.csv"
        n = export_csv(lake, path, zoo=config.zoo, where="init = $init", params={"init": init})
        echo(f"   {n:4d} models -> {path}")


def _pairs(lake_dir: Path, config: DemoConfig, echo: Echo) -> None:
    import weightlake as wl
    from weightlake.scenarios import declare_scenario

    report = declare_scenario(lake_dir, "demo", zoo=config.zoo, digits=config.digits, sizes=config.sizes,
                              overlap=config.overlap, epochs=[config.bins[-1]], split="random")
    for line in report.lines():
        echo("   " + line)
    if not report.n_pairs:
        return
    pairs = wl.open_lake(lake_dir).pairs("demo", split="train")
    for batch in pairs.loader(batch_size=8, shuffle=True, seed=0, epoch=0):
        echo(f"   a shuffled batch: x1 {tuple(batch['x1'].shape)}, x2 {tuple(batch['x2'].shape)}, "
             f"y {tuple(batch['y'].shape)} {batch['y'].dtype}")
        break
    lake = wl.open_lake(lake_dir)
    df = lake.sql("SELECT p.split, count(*) AS pairs, round(avg(wl_w1(a.w, t.w)), 5) AS w1_input_a_to_target "
                  "FROM pairs p JOIN weights a ON a.model_id = p.a_id JOIN weights t ON t.model_id = p.target_id "
                  "WHERE p.scenario = 'demo' GROUP BY ALL ORDER BY ALL")
    echo(str(df))


def _analysis(lake_dir: Path, out_dir: Path, config: DemoConfig, echo: Echo) -> None:
    from weightlake.compute.analyses import analyze_correlations, analyze_spectra

    report = analyze_spectra(lake_dir, zoo=config.zoo)
    echo(f"   {report}")
    report = analyze_correlations(lake_dir, zoo=config.zoo, against=["accuracy", "epoch"], by=["layer"],
                                  plot_dir=out_dir / "plots")
    echo(f"   {report}")


def pair_lake(lake_dir: Path | str, out_dir: Path | str, *, config: DemoConfig | None = None,
              scenario: str = "demo", workers: int = 1, echo: Echo = print) -> str:
    """Train, ingest and pair a small zoo (steps 1, 2 and 6 of the demo); returns the scenario name.

    The notebooks that need pairs (02 batches, 03 evaluation) fall back to this when their
    lake holds no pairs: a zoo pairs only where the union of two class sets is itself in the
    zoo.  ``config`` defaults to :meth:`DemoConfig.quick` (seconds on real images).
    """
    from weightlake.scenarios import declare_scenario

    config = config or DemoConfig.quick()
    lake_dir, out_dir = Path(lake_dir), Path(out_dir)
    _train(out_dir / "checkpoints", config, workers, echo)
    _ingest(lake_dir, out_dir / "checkpoints", config, workers, echo)
    report = declare_scenario(lake_dir, scenario, zoo=config.zoo, digits=config.digits, sizes=config.sizes,
                              overlap=config.overlap, epochs=[config.bins[-1]], split="random")
    if not report.n_pairs:
        raise WeightLakeError(f"the small zoo of {config} formed no pairs")
    return scenario
