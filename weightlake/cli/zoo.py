"""``weightlake zoo train``: train a real zoo on IDX images, written as checkpoint folders."""

from __future__ import annotations

import click

from weightlake.cli import lake_option, main, progress_bar


@main.group()
def zoo() -> None:
    """Make zoos: train the zoo CNN on every class subset x activation x initialisation."""


@zoo.command("train")
@click.option("--dataset", default="fashion-mnist", show_default=True,
              help="'fashion-mnist' (Debian's dataset-fashion-mnist) or a folder of MNIST-style IDX files.")
@click.option("--digits", default="0-9", show_default=True, help="Classes to draw subsets from: '0-5' or '1,3,5'.")
@click.option("--sizes", default="2-9", show_default=True, help="Subset sizes: '2-3' or '2,5'.")
@click.option("--activations", default="relu", show_default=True, help="Comma list: gelu,relu,silu,tanh,sigmoid,leakyrelu.")
@click.option("--inits", default="kaiming_uniform", show_default=True,
              help="Comma list: xavier_uniform,xavier_normal,uniform,normal,kaiming_normal,kaiming_uniform.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Checkpoint tree root (not inside the lake of --lake: ingest the tree from outside it).")
@click.option("--layout", type=click.Choice(["a", "b"]), default="b", show_default=True,
              help="a: {label}/{activation}/ (one init); b: {label}/{activation}/{init}/.")
@click.option("--subsample", type=int, help="Training images per class (default: all). Test images are never subsampled.")
@click.option("--max-epochs", default=40, show_default=True, help="Epoch cap (the reference recipe trains up to 40).")
@click.option("--checkpoint-epochs", help="Epoch indices to checkpoint, e.g. '1-5' (default: epoch>=9 and epoch%5==1).")
@click.option("--min-accuracy", default=60.0, show_default=True, help="Checkpoint only above this test accuracy (%).")
@click.option("--lr", default=0.05, show_default=True, help="Adam learning rate (reference 0.05; 1e-3 trains every model).")
@click.option("--batch-size", default=90, show_default=True)
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0), help="Zoo seed; each model's seed derives from it.")
@click.option("--workers", default=2, show_default=True, help="Training processes (one thread each).")
@click.option("--grad-filter", type=click.Choice(["ema", "ma"]),
              help="Grokfast gradient filter between backward and step: ema (alpha 0.98, lambda 2) or "
                   "ma (window 100, lambda 5). Default: none.")
@lake_option
def zoo_train(dataset: str, digits: str, sizes: str, activations: str, inits: str, out_dir: str, layout: str,
              subsample: int | None, max_epochs: int, checkpoint_epochs: str | None, min_accuracy: float, lr: float,
              batch_size: int, seed: int, workers: int, grad_filter: str | None, lake_dir: str) -> None:
    """Train one CNN per class subset x activation x init; resumable (finished models are skipped).

    \b
    Example (a small two-init zoo in layout B, a couple of minutes on 2 cores):
      weightlake zoo train --dataset fashion-mnist --digits 0-5 --sizes 2-3 \\
          --activations gelu,relu --inits kaiming_uniform,xavier_normal --out checkpoints/ --layout b \\
          --subsample 300 --max-epochs 6 --checkpoint-epochs 1-5 --lr 0.001
    """
    from weightlake.zoo.train import parse_int_list, parse_subsets, train_zoo

    _check_out_dir(lake_dir, out_dir)
    subsets = parse_subsets(parse_int_list(digits), parse_int_list(sizes))
    acts, init_list = _names(activations), _names(inits)
    total = len(subsets) * len(acts) * len(init_list)
    click.echo(f"training {total} models ({len(subsets)} subsets x {len(acts)} activations x {len(init_list)} inits)"
               f" into {out_dir}", err=True)
    with progress_bar(total, "zoo train", "models") as bar:
        report = train_zoo(dataset, out_dir, subsets, acts, init_list, layout=layout, epochs_max=max_epochs,
                           subsample=subsample, seed=seed, workers=workers, lr=lr, batch_size=batch_size,
                           checkpoint_epochs=parse_int_list(checkpoint_epochs) if checkpoint_epochs else None,
                           min_accuracy=min_accuracy, progress=bar.callback, grad_filter=grad_filter)
    click.echo(f"trained {report.trained} models, skipped {report.skipped} already finished, "
               f"{report.seconds:.0f} s ({report.models_per_minute:.1f} models/min); checkpoints in {out_dir}")


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _check_out_dir(lake_dir: str, out_dir: str) -> None:
    """Refuse an --out inside the lake of --lake (when there is one): the lake changes only through commits,
    and `gc` would take checkpoints filed in it for stray files."""
    from weightlake.errors import LakeNotFoundError
    from weightlake.handle import open_lake

    try:
        lake = open_lake(lake_dir)
    except LakeNotFoundError:  # no lake there (yet): nothing to keep the tree out of
        return
    lake.check_output(out_dir)
