"""Scenario and pair commands: declare, import, list scenarios; materialise and show pairs."""

from __future__ import annotations

from typing import Any

import click

from weightlake.cli import echo_lines, lake_option, main, progress_bar, snapshot_option
from weightlake.cli.core import write_frame


def _open(lake_dir: str, snapshot: int | None = None):  # noqa: ANN202
    from weightlake.handle import open_lake

    lake = open_lake(lake_dir)
    return lake if snapshot is None else lake.at(snapshot)


# -- scenario --------------------------------------------------------------------------------------
@main.group()
def scenario() -> None:
    """Scenarios: which model pairs (A, B -> target A|B) a merging experiment uses.

    \b
    Examples:
      weightlake scenario declare m0-gelu-e11 --zoo mnist-cnn-s --activations gelu --epochs 11
      weightlake scenario import "data/Scenario" --zoo mnist-cnn-s
      weightlake scenario list
    """


@scenario.command("declare")
@click.argument("name")
@click.option("--zoo", required=True, help="Zoo whose models are paired.")
@click.option("--digits", help="Digits the subsets may use: '0-9', '0-5', '1,3,5'; classes the zoo's models were "
                                "trained on (default: all of them).")
@click.option("--sizes", help="Allowed subset sizes, e.g. '2-9' or '2,3', within the sizes of the zoo's class sets "
                               "(default: those short of all the digits, '2-9' for digits 0-9).")
@click.option("--overlap", default="0", show_default=True, help="Shared classes |A & B|: '0', or a range '0-2'.")
@click.option("--activations", help="Comma-separated activations (default: every one in the zoo).")
@click.option("--inits", help="Comma-separated initialisations (default: every one in the zoo).")
@click.option("--epochs", help="Scenario epochs, e.g. '11' or '11,16' or '11-36' (default: every bin in the zoo).")
@click.option("--unordered", is_flag=True, help="Keep one of (A, B) and (B, A) (default keeps both).")
@click.option("--split", "split_rule", type=click.Choice(["user", "random", "grouped"]), default="user",
              show_default=True,
              help="user: test if digit 0 is in A or B, else val if |A| = |B|, else train (no test answer "
                   "is seen in training); random: seeded permutation of the pairs cut by --fractions; "
                   "grouped: a target class set is the target of one split only (it may be a train "
                   "input). The report counts val/test pairs whose answer training sees.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0), help="Seed of the random/grouped split.")
@click.option("--fractions", default="0.7,0.1,0.2", show_default=True, help="train,val,test shares (random/grouped).")
@click.option("--test-digit", default=0, show_default=True, help="The digit that sends a pair to test (user split).")
@click.option("--no-fallback", is_flag=True,
              help="Require the target at the scenario epoch (default falls back to e-5, e-10, ... down to 11).")
@lake_option
def declare(name: str, zoo: str, digits: str | None, sizes: str | None, overlap: str, activations: str | None,
            inits: str | None, epochs: str | None, unordered: bool, split_rule: str, seed: int, fractions: str,
            test_digit: int, no_fallback: bool, lake_dir: str) -> None:
    """Compute the pairs of scenario NAME and commit them (declaring NAME again replaces it).

    Pairs are every two distinct subsets A, B of --digits with sizes in --sizes sharing
    --overlap classes; inputs are the models trained on A and on B, the target the one
    trained on A|B, all with the same init, activation and epoch. Pairs that lack a
    model are counted and shown, not dropped silently.

    \b
    Examples:
      # the user's type-1 scenario, m=0 (train 11,076 / val 3,066 / test 32,730 pairs):
      weightlake scenario declare overlap0-gelu-e11 --zoo mnist-cnn-s --activations gelu --epochs 11
      # type 2: digits 0-5, up to 4 shared classes, every activation and epoch:
      weightlake scenario declare type2 --zoo mnist-cnn-s --digits 0-5 --sizes 2-5 --overlap 0-4
      # a seeded split where no target class set is the target of two splits:
      weightlake scenario declare m0-grouped --zoo mnist-cnn-s --split grouped --seed 1
    """
    from weightlake.scenarios import declare_scenario, parse_int_list

    report = declare_scenario(lake_dir, name, zoo=zoo, digits=digits, sizes=sizes, overlap=overlap,
                              activations=activations, inits=inits,
                              epochs=parse_int_list(epochs) if epochs else None, ordered=not unordered,
                              split=split_rule, split_seed=seed, split_fractions=fractions,
                              epoch_fallback=not no_fallback, test_digit=test_digit)
    echo_lines(report.lines())


@scenario.command("import")
@click.argument("folder", type=click.Path(file_okay=False, exists=True))
@click.option("--zoo", required=True, help="Zoo the records are resolved in.")
@click.option("--init", help="The zoo's initialisation the pairs use (needed if the zoo holds several).")
@click.option("--name-template", default="overlapping-{m}-{digits}-e{epoch}-{activation}", show_default=True,
              help="Scenario name from the folder's fields m, digits, epoch, activation (and zoo).")
@click.option("--on-error", type=click.Choice(["abort", "skip"]), default="abort", show_default=True,
              help="abort: an unsafe or malformed file stops the import, lake unchanged; skip: leave that folder out.")
@click.option("--no-fallback", is_flag=True, help="Require targets at the record's epoch (no e-5, e-10 fallback).")
@lake_option
def import_cmd(folder: str, zoo: str, init: str | None, name_template: str, on_error: str, no_fallback: bool,
               lake_dir: str) -> None:
    """Import the user's scenario folders, keeping their train/val/test splits.

    FOLDER is one 'overlapping {m} {digits} {epoch} {activation}' folder or a folder of
    them (data/Scenario). The .npy files are read without unpickling anything but int
    lists: a file that asks for more is refused and nothing in it runs. A folder whose
    records are of another epoch or activation than its name says is refused too (the
    scenario would be named wrongly): rename it after its records.

    \b
    Examples:
      weightlake scenario import "data/Scenario" --zoo mnist-cnn-s
      weightlake scenario import "data/Scenario/overlapping 0 [0, 1, 2, 3, 4, 5, 6, 7, 8, 9] 11 gelu" --zoo mnist-cnn-s
    """
    from weightlake.scenarios_import import import_scenarios

    reports = import_scenarios(lake_dir, folder, zoo=zoo, init=init, name_template=name_template,
                               epoch_fallback=not no_fallback, on_error=on_error)
    for report in reports:
        echo_lines(report.lines())


@scenario.command("list")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@lake_option
@snapshot_option
def list_cmd(fmt: str, lake_dir: str, snapshot: int | None) -> None:
    """List the scenarios of the lake with their pair counts per split."""
    import polars as pl

    from weightlake.scenarios import changed_zoos, list_scenarios

    lake = _open(lake_dir, snapshot)
    table = list_scenarios(lake)
    if table.height == 0:
        click.echo("no scenarios yet: `weightlake scenario declare NAME --zoo ZOO` or `weightlake scenario import`")
        return
    changed = changed_zoos(lake, table)
    table = table.with_columns(zoo_changed=pl.col("scenario").is_in(list(changed)))
    cols = [c for c in ("scenario", "zoo", "source", "n_train", "n_val", "n_test", "missing_input", "missing_target",
                        "fallback_pairs", "overlap_mismatch", "snapshot", "zoo_changed") if c in table.columns]
    write_frame(table.select(cols).rename({"snapshot": "resolved_at"}), fmt, None, max_rows=200)
    if changed and fmt == "table":
        click.echo("resolved_at: the snapshot whose models the pairs are of. Changed since:")
        for name, what in sorted(changed.items()):
            click.echo(f"  {name}: {what}; declare (or import) it again to pair the models of now")


# -- pairs -----------------------------------------------------------------------------------------
@main.group()
def pairs() -> None:
    """Pair sets of a scenario: look at them, or write an epoch's batches to disk.

    \b
    Examples:
      weightlake pairs show overlap0-gelu-e11 --split test
      weightlake pairs materialize overlap0-gelu-e11 --split train --batch-size 36 --epochs 3
    In Python: lake.pairs(name, "train").loader(batch_size=512) or lake.batches(name, "train").
    """


@pairs.command("materialize")
@click.argument("scenario_name", metavar="SCENARIO")
@click.option("--split", default="train", show_default=True, type=click.Choice(["train", "val", "test"]))
@click.option("--batch-size", default=36, show_default=True, type=click.IntRange(min=1),
              help="Pairs per batch (36 in the user's training code).")
@click.option("--epochs", default=3, show_default=True, type=click.IntRange(min=1),
              help="Epochs to write; epoch e is shuffled by (seed, e).")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0), help="Shuffle seed.")
@click.option("--drop-last", is_flag=True, help="Leave out the last partial batch (default pads it, marked invalid).")
@click.option("--format", "fmt", type=click.Choice(["zarr", "pt", "h5"]),
              help="zarr (the default without --out): into the lake (table `batches`); pt / h5: one file per epoch "
                   "in --out.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Folder for .pt / .h5 files (needs --format pt or h5).")
@click.option("--overwrite", is_flag=True, help="Replace .pt / .h5 files of an earlier export (refused without it).")
@lake_option
@snapshot_option
def materialize_cmd(scenario_name: str, split: str, batch_size: int, epochs: int, seed: int, drop_last: bool,
                    fmt: str | None, out_dir: str | None, overwrite: bool, lake_dir: str, snapshot: int | None) -> None:
    """Write shuffled epochs of batches [n, B, 3, P] to Zarr and commit them (table `batches`),
    or to .pt / .h5 files (one per epoch) for other training code.

    Epoch e holds the same batches as lake.pairs(SCENARIO, SPLIT).loader(batch_size=B,
    seed=SEED, epoch=e). Stream them with lake.batches(SCENARIO, SPLIT), or
    lake.batches(..., compat=True) for the (tensor, records, accuracies, rows) tuple of
    the user's training loop. A .pt file loads with torch.load(path, weights_only=True) as
    a dict of tensors (x, ids, acc, rows, zoo_rows, masks, keys, valid) plus meta; an .h5
    file holds the same datasets (h5py). TensorDataset(d["x"][d["valid"]], ...) builds a
    dataset from either. File names do not carry the batch size or seed (meta does): an
    export that would replace files already in --out is refused unless --overwrite.

    \b
    Examples:
      weightlake pairs materialize overlap0-gelu-e11 --split train --batch-size 36 --epochs 3 --seed 0
      weightlake pairs materialize overlap0-gelu-e11 --split train --format pt --out batches/
    """
    from weightlake.errors import QueryError
    from weightlake.serve.batches import materialize
    from weightlake.serve.files import export_batches

    if out_dir and fmt in (None, "zarr"):  # was: --out ignored, the batches committed into the lake instead
        raise QueryError(f"--out {out_dir} is a folder for .pt / .h5 files: say which with --format pt or --format h5 "
                         + ("(zarr batches go into the lake, not to --out)" if fmt else
                            "(without --format the batches go into the lake as zarr)"))
    fmt = fmt or "zarr"
    if fmt == "zarr" and snapshot is not None:
        raise QueryError(f"--snapshot {snapshot} reads an earlier snapshot: it applies to --format pt / h5 files, "
                         "not to zarr batches, which are committed to the newest")
    lake = _open(lake_dir, snapshot)
    if fmt != "zarr" and not out_dir:
        raise QueryError(f"--format {fmt} writes files: say where with --out DIR")
    n_pairs = lake.pairs(scenario_name, split).__len__()
    per_epoch = n_pairs // batch_size if drop_last else -(-n_pairs // batch_size)
    with progress_bar(per_epoch * epochs, "pairs materialize", "batches") as bar:
        if fmt == "zarr":
            report: Any = materialize(lake_dir, scenario_name, split, batch_size=batch_size, epochs=epochs,
                                      seed=seed, progress=bar.update, drop_last=drop_last)
        else:
            report = export_batches(lake, scenario_name, split, out_dir or "", fmt=fmt, batch_size=batch_size,
                                    epochs=epochs, seed=seed, drop_last=drop_last, overwrite=overwrite,
                                    progress=bar.update)
    echo_lines(report.lines())


@pairs.command("show")
@click.argument("scenario_name", metavar="SCENARIO")
@click.option("--split", type=click.Choice(["train", "val", "test"]), help="One split (default: all).")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=0), help="Rows to show (0: all).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json", "parquet"]), default="table",
              show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the rows to a file.")
@lake_option
@snapshot_option
def show(scenario_name: str, split: str | None, limit: int, fmt: str, output: str | None, lake_dir: str,
         snapshot: int | None) -> None:
    """Show a scenario's pairs with model ids, classes and accuracies.

    target_epoch is the epoch bin the target came from; fallback marks a target not
    trained to the pair's epoch (an earlier bin, or an early-stopped model the zoo filed
    again under this one).

    \b
    Examples:
      weightlake pairs show overlap0-gelu-e11 --split test
      weightlake pairs show overlap0-gelu-e11 --split train --limit 0 --format parquet -o train-pairs.parquet
    """
    import polars as pl

    from weightlake.scenarios import mask_classes

    pair_set = _open(lake_dir, snapshot).pairs(scenario_name, split)
    frame = pair_set.to_polars()
    frame = frame.head(limit) if limit else frame
    frame = frame.with_columns(
        classes_a=pl.col("a_mask").map_elements(mask_classes, return_dtype=pl.List(pl.Int64)),
        classes_b=pl.col("b_mask").map_elements(mask_classes, return_dtype=pl.List(pl.Int64)),
    ).select("pair_id", "split", "classes_a", "classes_b", "a_id", "b_id", "target_id", "activation", "init",
             "epoch", "target_epoch", "fallback", "acc_a", "acc_b", "acc_y")
    click.echo(f"{pair_set!r}", err=True)
    write_frame(frame, fmt, output, max_rows=limit or 40)
