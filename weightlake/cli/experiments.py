"""``weightlake experiments``: scan, evaluate and report merging-model checkpoints and tracking CSVs."""

from __future__ import annotations

import sys
from typing import Any

import click

from weightlake.cli import echo_lines, lake_option, main, progress_bar, snapshot_option
from weightlake.cli.core import write_frame

DEFAULT_ROOT = "Experiments"


@main.group()
def experiments() -> None:
    """Merging-model experiments: find checkpoints, evaluate them on a scenario, report.

    \b
    Examples:
      weightlake experiments scan Experiments/
      weightlake experiments evaluate Experiments/ --scenario type1-m0 --split test --limit-pairs 2000
      weightlake experiments ingest-tracking Experiments/ --scenario type1-m0
      weightlake sql "SELECT checkpoint, loss, epoch, pd_mse, pd_w1, fn_w1, collapsed FROM evaluations ORDER BY pd_w1"
      weightlake experiments report -o report.md
    """


@experiments.command("scan")
@click.argument("root", default=DEFAULT_ROOT, type=click.Path(file_okay=False, exists=True))
@click.option("--heads", type=int, help="Attention heads of every checkpoint (else sidecar JSON, then folder name).")
@click.option("--assume-heads", type=int,
              help="Heads for checkpoints whose head count nothing records (else they are refused); their rows are "
                   "marked heads_from=assumed.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the listing to a file.")
def scan_cmd(root: str, heads: int | None, assume_heads: int | None, fmt: str, output: str | None) -> None:
    """List every checkpoint and tracking CSV under ROOT (default ./Experiments) with its inferred config.

    Checkpoints are opened without unpickling anything but tensors, one at a time;
    files that cannot be read are listed with the reason.  Every hyperparameter read from
    the shapes is shown (gating, output head...), and where the head count came from
    (heads_from: option, sidecar, run_dir_name, assumed, or unknown: such checkpoints are
    refused by `evaluate` unless --heads or --assume-heads is given).

    \b
    Examples:
      weightlake experiments scan Experiments/
      weightlake experiments scan Experiments/ --heads 8 --format csv -o checkpoints.csv
    """
    import polars as pl

    from weightlake.experiments.scan import scan_experiments

    infos = scan_experiments(root, heads=heads, assume_heads=assume_heads)
    rows = [_scan_row(i) for i in infos]
    write_frame(pl.DataFrame(rows, infer_schema_length=None), fmt, output, max_rows=200)
    n_ck = sum(i.kind == "checkpoint" for i in infos)
    unknown = sum(i.heads_source == "unknown" for i in infos)
    bad = sum(1 for i in infos if i.error) - unknown
    click.echo(f"{n_ck} checkpoints ({bad} unreadable, {unknown} with no recorded head count), "
               f"{len(infos) - n_ck} tracking CSVs under {root}", err=True)
    if unknown:
        from weightlake.experiments.infer import HEADS_HELP

        click.echo(f"  heads unknown for {unknown} checkpoints (heads_from=unknown): {HEADS_HELP}", err=True)


_SCAN_FIELDS = ("n_heads", "d_model", "d_ff", "n_layers", "neck", "seq_len", "gated_attention", "output_head", "dropout")


def _scan_row(info: Any) -> dict[str, Any]:
    hp = info.hyperparameters
    return {"path": info.path, "kind": info.kind, "loss": info.name_fields.get("loss"),
            "epoch": info.name_fields.get("epoch"), "heads_from": info.heads_source,
            **{k: hp.get(k) for k in _SCAN_FIELDS}, "config": info.config.summary() if info.config else None,
            "params": info.n_params, "bytes": info.size_bytes, "error": info.error}


@experiments.command("evaluate")
@click.argument("paths", nargs=-1, type=click.Path(exists=True))
@click.option("--scenario", required=True, help="Declared scenario whose pairs are evaluated.")
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "val", "test", "all"]))
@click.option("--limit-pairs", type=int, help="Evaluate a seeded sample of this many pairs (same for every checkpoint).")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0), help="Seed of the --limit-pairs sample.")
@click.option("--batch-size", default=256, show_default=True, help="Pairs per forward pass.")
@click.option("--heads", type=int, help="Attention heads of every checkpoint (else sidecar JSON, then folder name).")
@click.option("--assume-heads", type=int,
              help="Heads for checkpoints whose head count nothing records (else they are refused); their rows are "
                   "marked heads_from=assumed.")
@click.option("--images", help="Held-out images to score the rebuilt CNNs on (default: the dataset the zoo recorded at "
                               "ingest; a zoo that records none needs this): 'fashion-mnist', a folder of MNIST-style "
                               "IDX files (the user's MNIST zoo), or 'none'. Another dataset than the zoo's is used "
                               "only when given here, and noted.")
@click.option("--accuracy-models", default=8, show_default=True, help="Predicted CNNs rebuilt and scored per checkpoint.")
@click.option("--metrics", help="Comma list of metrics (default: every fast one; see weightlake.analysis.metrics).")
@click.option("--slow", is_flag=True, help="Also the slow metrics (Sinkhorn, Gromov-Wasserstein).")
@click.option("--store-predictions", is_flag=True, help="Keep the predicted vectors in the `predictions` table.")
@lake_option
def evaluate_cmd(paths: tuple[str, ...], scenario: str, split: str, limit_pairs: int | None, seed: int,
                 batch_size: int, heads: int | None, assume_heads: int | None, images: str | None, accuracy_models: int, metrics: str | None,
                 slow: bool, store_predictions: bool, lake_dir: str) -> None:
    """Evaluate checkpoints (PATHS: folders or .pth files; default ./Experiments) on a scenario split.

    Every checkpoint is loaded with its inferred config, run over the pairs, compared
    with the targets on every metric (whole vector and per layer), checked for collapse,
    and a few predicted CNNs are rebuilt and scored on held-out images; the results are
    committed as table `evaluations` (and `evaluation_metrics`, long).  Nothing is
    guessed: a checkpoint whose head count no sidecar, folder name or --heads gives is
    refused (its row says how to give it) unless --assume-heads N, which marks its rows
    heads_from=assumed; the CNNs are scored on the zoo's own recorded image dataset.

    Exit status: 0 when every checkpoint was evaluated; 1 when any failed or was
    refused (the others are still committed; the failed ones as rows whose `error`
    says why, and a last line on stderr counts them), or on an error that commits
    nothing.

    \b
    Examples:
      weightlake experiments evaluate --scenario type1-m0 --split test --limit-pairs 2000
      weightlake experiments evaluate Experiments/ --scenario type1-m0 --assume-heads 4 --images /data/mnist
      weightlake experiments evaluate Experiments/sinkhorn "Experiments/mse/AE epoch mse val 3.pth" \\
          --scenario type1-m0 --heads 4 --images none
      weightlake sql "SELECT checkpoint, loss, epoch, pd_mse, pd_w1, collapsed FROM evaluations ORDER BY pd_w1"
    """
    from weightlake.experiments.evaluate import ZOO_DATASET, evaluate_checkpoints, resolve_checkpoints

    checkpoints = resolve_checkpoints(list(paths) or [_default_root()], heads, assume_heads)
    with progress_bar(len(checkpoints), "evaluate", "checkpoints") as bar:
        report = evaluate_checkpoints(
            lake_dir, checkpoints, scenario, None if split == "all" else split,
            limit_pairs=limit_pairs, batch_size=batch_size, heads=heads, assume_heads=assume_heads,
            images=ZOO_DATASET if images is None else (None if images.lower() == "none" else images),
            accuracy_models=accuracy_models, seed=seed,
            metrics=_names(metrics), include_slow=slow, store_predictions=store_predictions,
            progress=bar.callback)
    echo_lines(report.lines())
    if report.failed:  # the evaluated ones are committed; a script still learns that some were not
        click.secho(f"error: {report.failure_line()}", err=True, fg="red")
        sys.exit(1)


@experiments.command("ingest-tracking")
@click.argument("paths", nargs=-1, type=click.Path(exists=True))
@click.option("--scenario", default="tracking", show_default=True, help="Partition of `evaluations` the rows go to.")
@click.option("--chunk-rows", default=2048, show_default=True, help="Rows per streamed chunk.")
@click.option("--no-evaluate", is_flag=True, help="Only store the vectors and cells; skip the metrics.")
@click.option("--metrics", help="Comma list of metrics (default: every fast one).")
@click.option("--on-error", type=click.Choice(["abort", "skip"]), default="abort", show_default=True,
              help="abort: a bad file stops the ingest, lake unchanged; skip: report it and go on.")
@click.option("--arch", "arch_spec", help="Architecture of the vectors: a built-in name (cnn-s) or an architecture "
              "JSON file. Default: the scenario's zoo's, or the lake's when its zoos share one.")
@lake_option
def ingest_tracking_cmd(paths: tuple[str, ...], scenario: str, chunk_rows: int, no_evaluate: bool,
                        metrics: str | None, on_error: str, arch_spec: str | None, lake_dir: str) -> None:
    """Ingest tracking CSVs (PATHS: files or folders; default ./Experiments) and evaluate them.

    Stores the GT / PD / FN vectors (table `predictions`, vectors in Zarr), the metric
    and `Step N` cells (table `tracking_values`), and FN vs GT, PD vs GT and PD vs FN
    metrics in `evaluations`. Folders are searched for .csv files under a `Tracking`
    folder or named *track*. Ingesting a file again (same path) replaces its rows, and
    says so; its evaluation rows in other scenarios are kept.

    \b
    Examples:
      weightlake experiments ingest-tracking Experiments/ --scenario type1-m0
      weightlake experiments ingest-tracking "Experiments/sinkhorn/Tracking/AE epoch sinkhorn 0.csv"
      weightlake sql "SELECT kind, count(*) FROM predictions GROUP BY kind"
    """
    from weightlake.experiments.tracking import find_tracking_csvs, ingest_tracking
    from weightlake.ingest.common import load_architecture

    arch = load_architecture(arch_spec) if arch_spec else None
    targets = list(paths) or [_default_root()]
    total = sum(len(find_tracking_csvs(p)) for p in targets)
    with progress_bar(total, "ingest-tracking", "files") as bar:
        reports = ingest_tracking(lake_dir, targets, scenario=scenario, arch=arch, chunk_rows=chunk_rows,
                                  evaluate=not no_evaluate, metrics=_names(metrics), on_error=on_error,
                                  progress=bar.callback)
    for report in reports:
        echo_lines(report.lines())


@experiments.command("report")
@click.option("-o", "--output", default="report.md", show_default=True, type=click.Path(dir_okay=False),
              help="Markdown file; plots go to <stem>_plots/ next to it.")
@click.option("--scenario", help="Only this scenario's evaluations.")
@click.option("--split", help="Only this split's evaluations.")
@click.option("--no-plots", is_flag=True, help="Markdown only.")
@lake_option
@snapshot_option
def report_cmd(output: str, scenario: str | None, split: str | None, no_plots: bool, lake_dir: str,
               snapshot: int | None) -> None:
    """Write a Markdown table of all evaluated checkpoints x metrics, with PNG plots.

    \b
    Examples:
      weightlake experiments report -o report.md
      weightlake experiments report -o type1.md --scenario type1-m0 --no-plots
    """
    from weightlake.experiments.report import write_report

    echo_lines(write_report(lake_dir, output, scenario=scenario, split=split, plots=not no_plots,
                            snapshot=snapshot).lines())


def _default_root() -> str:
    from pathlib import Path

    if not Path(DEFAULT_ROOT).is_dir():
        raise click.UsageError(f"give checkpoint files or folders (no ./{DEFAULT_ROOT} folder here)")
    return DEFAULT_ROOT


def _names(text: str | None) -> list[str] | None:
    names = [t.strip() for t in (text or "").split(",") if t.strip()]
    return names or None
