"""Core commands: ingest, sql, export, verify, query, info, history."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from weightlake.cli import echo_lines, lake_option, main, parse_params, progress_bar, snapshot_option
from weightlake.errors import QueryError


def _open(lake_dir: str, create: bool = False, snapshot: int | None = None):  # noqa: ANN202
    from weightlake.handle import open_lake

    lake = open_lake(lake_dir, create=create)
    return lake if snapshot is None else lake.at(snapshot)


# -- ingest -----------------------------------------------------------------------------------
@main.group()
def ingest() -> None:
    """Bring zoos into the lake (CSV zoos, checkpoint folders, job files)."""


@ingest.command("csv")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--zoo", required=True, help="Zoo name to add the models to (created if new).")
@click.option("--init", required=True, help="Initialisation of these models (the CSV does not say it).")
@click.option("--arch", default="cnn-s", show_default=True, help="Architecture name or a JSON file describing one.")
@click.option("--on-error", type=click.Choice(["abort", "skip"]), default="abort", show_default=True,
              help="abort: first bad row stops the ingest, lake unchanged; skip: bad rows go to a rejects file.")
@click.option("--rejects", type=click.Path(dir_okay=False), help="Where skipped rows are listed (default FILE.rejects.csv).")
@click.option("--codec", type=click.Choice(["none", "zstd", "blosc"]), default="none", show_default=True,
              help="Weight chunk compression (weights barely compress; none reads fastest).")
@click.option("--allow-same-source", is_flag=True,
              help="Accept weight vectors the zoo already holds under another --init (refused by default: the same "
                   "file again under another --init counts every model twice).")
@click.option("--dataset", help="Image dataset the models were trained on ('fashion-mnist', an IDX folder, or a name "
                                "like 'mnist'); recorded for the zoo, `experiments evaluate` scores on it.")
@click.option("--epoch-bins", help="Epochs the epoch column may hold, e.g. '0-2' (default: the CSV zoo's "
                                   "11,16,21,26,31,36); a row with another epoch is a bad row.")
@lake_option
def ingest_csv_cmd(path: str, zoo: str, init: str, arch: str, on_error: str, rejects: str | None, codec: str,
                   allow_same_source: bool, dataset: str | None, epoch_bins: str | None, lake_dir: str) -> None:
    """Ingest a CSV zoo (the 'Merged zoo.csv' format) into ZOO.

    \b
    Example:
      weightlake ingest csv "data/Merged zoo.csv" --zoo mnist-cnn-s --init kaiming_uniform --dataset mnist
    """
    from weightlake.ingest.csv_zoo import ingest_csv

    size = Path(path).stat().st_size if Path(path).is_file() else 0
    with progress_bar(size, "ingest csv", "bytes") as bar:
        report = ingest_csv(lake_dir, path, zoo=zoo, init=init, arch=_arch(arch), on_error=on_error,
                            rejects_path=rejects, codec=codec, progress=bar.advance_to,
                            allow_same_source=allow_same_source, dataset=dataset,
                            epoch_bins=_int_list(epoch_bins) if epoch_bins else None)
    echo_lines(report.lines())


@ingest.command("checkpoints")
@click.argument("root", type=click.Path(file_okay=False, exists=True))
@click.option("--zoo", required=True, help="Zoo name to add the models to (created if new).")
@click.option("--init", help="Initialisation: required for layout A (no init folders); filters layout B.")
@click.option("--layout", type=click.Choice(["auto", "a", "b"]), default="auto", show_default=True,
              help="a: {label}/{activation}/*.pth; b: {label}/{activation}/{init}/*.pth.")
@click.option("--arch", default="cnn-s", show_default=True, help="Architecture name or a JSON file describing one.")
@click.option("--workers", default=2, show_default=True, help="Processes that decode checkpoints.")
@click.option("--epoch-bins", help="Epoch bins of the zoo, e.g. '1-5' (default: the epochs the trainer recorded in "
                                   "weightlake-train.json, else the CSV zoo's 11,16,21,26,31,36).")
@click.option("--rejects", type=click.Path(dir_okay=False), default="checkpoint-rejects.csv", show_default=True,
              help="Where unreadable or refused files are listed (written only if there are any).")
@click.option("--follow-symlinks", is_flag=True,
              help="Also ingest symbolic links that point outside ROOT (refused by default).")
@click.option("--allow-same-source", is_flag=True,
              help="Accept weight vectors the zoo already holds under another --init (refused by default).")
@click.option("--dataset", help="Image dataset of the models (default: the one the trainer recorded in "
                                "weightlake-train.json).")
@lake_option
def ingest_checkpoints_cmd(root: str, zoo: str, init: str | None, layout: str, arch: str, workers: int,
                           epoch_bins: str | None, rejects: str, follow_symlinks: bool, allow_same_source: bool,
                           dataset: str | None, lake_dir: str) -> None:
    """Ingest a checkpoint tree (layout A or B, detected) into ZOO.

    Files are read safely (a strict allow-list reader, else torch's weights-only loader:
    a malicious pickle is refused, never run). Early-stopped models fill later epoch bins
    from their closest predecessor, flagged as fallback; accuracies come from metrics/.

    \b
    Examples:
      weightlake ingest checkpoints checkpoints/ --zoo fmnist-cnn-s
      weightlake ingest checkpoints old/checkpoints --zoo mnist-cnn-s --init kaiming_uniform
    """
    from weightlake.ingest.checkpoints import ingest_checkpoints

    with progress_bar(None, "ingest checkpoints", "files") as bar:
        report = ingest_checkpoints(lake_dir, root, zoo=zoo, init=init, arch=_arch(arch),
                                    layout=None if layout == "auto" else layout, workers=workers,
                                    bins=_int_list(epoch_bins) if epoch_bins else None, rejects_path=rejects,
                                    progress=bar.callback, allow_same_source=allow_same_source, dataset=dataset,
                                    follow_symlinks=follow_symlinks)
    echo_lines(report.lines())


@ingest.command("run")
@click.argument("job", type=click.Path(dir_okay=False, exists=True))
@lake_option
def ingest_run(job: str, lake_dir: str) -> None:
    """Run a declarative job file (ingest/<job>.toml): optional training, sources, exports."""
    from weightlake.cli.progress import Progress
    from weightlake.ingest.run import run_job

    for line in run_job(job, lake_dir, echo=click.echo, progress=Progress):
        click.echo(line)


def _int_list(text: str) -> list[int]:
    from weightlake._util import parse_int_ranges

    return parse_int_ranges(text, click.BadParameter)


def _arch(spec: str):  # noqa: ANN202
    from weightlake.ingest.common import load_architecture

    return load_architecture(spec)


# -- sql ----------------------------------------------------------------------------------------
@main.command()
@click.argument("query")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json", "parquet"]), default="table",
              show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the result to a file.")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE",
              help="Bind $NAME in the query (repeatable, each NAME once). VALUE is bound as an integer or "
                   "float only when it is that number's canonical text (7, -3, 0.5); anything else, e.g. "
                   "007, 1e3, 1.50, stays a string, as typed.")
@click.option("--max-rows", default=40, show_default=True, help="Rows shown in table format.")
@click.option("--zoo", help="`weights` and `weights_<layer>` hold only this zoo (for a lake of several architectures).")
@lake_option
@snapshot_option
def sql(query: str, fmt: str, output: str | None, params: tuple[str, ...], max_rows: int, zoo: str | None,
        lake_dir: str, snapshot: int | None) -> None:
    """Run SQL over the lake (views: models, weights, weights_<layer>, and every derived table).

    `weights` holds each model's whole vector (`w FLOAT[P]`); `weights_fc1` (one view per layer)
    holds that layer's weight and bias. Over it, the SQL macros (wl_l2, wl_mse, wl_cosine,
    wl_l2_norm_diff, wl_log_norm_diff) work as over `weights`; the other wl_* functions take
    whole vectors, so per layer use their _layer forms (wl_w1_layer(a.w, b.w, 'fc1') over
    `weights`) or, for pairs, the fast wl_w1_layer_by_id(a.model_id, b.model_id, 'fc1').

    \b
    Examples:
      weightlake sql "SELECT activation, epoch, count(*), avg(accuracy) FROM models GROUP BY ALL ORDER BY ALL"
      weightlake sql "SELECT * FROM models WHERE n_classes = \\$k" --param k=2 --format csv -o two.csv
      weightlake sql "SELECT activation, avg(wl_l2(w)) FROM weights_fc1 JOIN models USING (model_id) GROUP BY 1"
    """
    lake = _open(lake_dir, snapshot=snapshot)
    if output:
        lake.check_output(output)
    bound = parse_params(params)
    df = lake.sql(query, _coerce(bound) if bound else None, zoo=zoo)
    write_frame(df, fmt, output, max_rows)


def _coerce(params: dict[str, str]) -> dict[str, object]:
    """Type each ``--param`` value: a number only when that loses nothing, else the text itself.

    Round-trip law: a value becomes an int or float ``x`` only when ``str(x) == value``
    (``7``, ``-3``, ``0.5``), so ``007``, ``1e3``, ``1.50``, ``+2``, ``inf`` and ``nan``
    stay strings and reach DuckDB exactly as typed.
    """
    return {k: _typed(v) for k, v in params.items()}


def _typed(value: str) -> object:
    import math

    for cast in (int, float):
        try:
            number = cast(value)
        except ValueError:
            continue
        if str(number) == value and math.isfinite(number):
            return number
    return value


def write_frame(df, fmt: str, output: str | None, max_rows: int = 40) -> None:  # noqa: ANN001
    import polars as pl

    if fmt == "parquet":
        if not output:
            raise QueryError("--format parquet needs -o FILE")
        df.write_parquet(output)
    elif fmt == "csv":
        text = _flatten_for_text(df).write_csv()
        _emit(text, output)
    elif fmt == "json":
        _emit(json.dumps(df.to_dicts(), default=str, indent=None) + "\n", output)  # lists stay JSON lists
    else:
        # lists of up to 10 items in full: a class set [0, 1, … 3] hid which classes
        with pl.Config(tbl_rows=max_rows, tbl_cols=20, fmt_str_lengths=60, tbl_width_chars=160,
                       fmt_table_cell_list_len=10):
            _emit(str(df) + "\n", output)
    if output:
        click.echo(f"wrote {df.height} rows to {output}", err=True)


def _flatten_for_text(df):  # noqa: ANN001, ANN202
    import polars as pl

    # CSV cells hold a nested value as its JSON text. Was: map_elements over a fixed-size array
    # (a weight vector, a Betti curve) handed polars Series to json, a TypeError traceback.
    nested = [c for c, t in df.schema.items() if isinstance(t, (pl.List, pl.Array, pl.Struct))]
    return df.with_columns([pl.Series(c, [None if v is None else json.dumps(v) for v in df[c].to_list()],
                                      dtype=pl.String) for c in nested]) if nested else df


def _emit(text: str, output: str | None) -> None:
    if output:
        Path(output).write_text(text)
    else:
        sys.stdout.write(text)


@ingest.command("modelzoo")
@click.argument("root", type=click.Path(file_okay=False, exists=True))
@click.option("--zoo", required=True, help="Zoo name to add the models to (created if new).")
@click.option("--arch", default="infer", show_default=True,
              help="'infer' (from the first state_dict: CNN-s, conv2d/linear/batch-norm layers of any naming, e.g. a "
                   "ResNet), an architecture name, or a JSON file describing one.")
@click.option("--allow-same-source", is_flag=True,
              help="Accept weight vectors the zoo already holds under another init (refused by default).")
@click.option("--layout", type=click.Choice(["rows", "tensors"]), default=None,
              help="Weight layout: 'rows' (whole-row chunks, fastest for small models read whole) or 'tensors' (one "
                   "array per state_dict tensor: one layer reads alone). Default: tensors for models over 32,768 "
                   "values, rows otherwise.")
@lake_option
def ingest_modelzoo_cmd(root: str, zoo: str, arch: str, allow_same_source: bool, layout: str | None,
                        lake_dir: str) -> None:
    """Ingest a Model Zoos / ray.tune tree: <run>/params.json, result.json, checkpoint_<epoch>/checkpoints.

    Every readable checkpoint becomes a model with run_id, epoch, that epoch's metrics
    (m_* columns) and the run's configuration (cfg_* columns); a malicious or truncated
    file is rejected with its reason, never run. Trajectories are SQL over models.

    \b
    Examples:
      weightlake ingest modelzoo zoos/mnist_cnn/ --zoo mnist-modelzoo
      weightlake sql "SELECT run_id, list(m_test_acc ORDER BY epoch) FROM models GROUP BY 1"
    """
    from weightlake.ingest.modelzoo import ingest_modelzoo

    with progress_bar(None, "ingest modelzoo", "checkpoints") as bar:
        report = ingest_modelzoo(lake_dir, root, zoo=zoo, arch=None if arch == "infer" else _arch(arch),
                                 progress=bar.callback,
                                 allow_same_source=allow_same_source, layout=layout)
    echo_lines(report.lines())


# -- export ----------------------------------------------------------------------------------
@main.group()
def export() -> None:
    """Write lake data back out in users' formats."""


@export.command("csv")
@click.option("--zoo", help="Zoo to export (default: the only zoo).")
@click.option("--where", help="SQL filter over the models view, e.g. \"activation = 'gelu' AND epoch = 11\".")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="CSV file to write.")
@lake_option
@snapshot_option
def export_csv_cmd(zoo: str | None, where: str | None, output: str, lake_dir: str, snapshot: int | None) -> None:
    """Export models in the exact CSV zoo format ('Merged zoo.csv' columns and text)."""
    from weightlake.ingest.csv_zoo import export_csv

    lake = _open(lake_dir, snapshot=snapshot)
    lake.check_output(output)  # before any folder is made: not inside the lake, not a URL
    made = _make_parent(output)
    try:
        with progress_bar(None, "export csv", "models") as bar:
            n = export_csv(lake, output, zoo=zoo, where=where, progress=bar.update)
    except BaseException:  # a refusal (several inits, no class sets ...) leaves no empty folder behind
        for folder in reversed(made):
            try:
                folder.rmdir()
            except OSError:
                break
        raise
    click.echo(f"wrote {n} models to {output}")


def _make_parent(output: str) -> list[Path]:
    """Create the output file's folder (``-o runs/today/zoo.csv``), or say in one line why not;
    returns the folders made, outermost first."""
    parent = Path(output).parent.absolute()
    made = [p for p in (parent, *parent.parents) if not p.exists()][::-1]
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise click.ClickException(f"cannot create folder {parent} for {output}: {exc.strerror}") from None
    return made


# -- verify, info, history -----------------------------------------------------------------------
@main.command()
@click.option("--gc", is_flag=True, help="Also remove files no snapshot lists (left by interrupted writers; on an "
              "object store, which has no writer lock, only those older than an hour, and abort unfinished "
              "multipart uploads older than an hour).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@lake_option
@snapshot_option
def verify(gc: bool, as_json: bool, lake_dir: str, snapshot: int | None) -> None:
    """Check integrity (files, shapes, hashes) and report data quality; exit 1 if integrity fails."""
    from weightlake.verify import UPLOAD_SUFFIX, collect_garbage
    from weightlake.verify import verify as run_verify

    lake = _open(lake_dir, snapshot=snapshot)
    total = sum(z.n_models for z in lake.manifest.zoos.values())
    with progress_bar(total, "verify", "models") as bar:
        report = run_verify(lake, progress=bar.update)
    if as_json:
        click.echo(json.dumps({"ok": report.ok, "problems": report.problems, "quality": report.quality,
                               "orphans": report.orphans, "notes": report.notes}, default=str, indent=1))
    else:
        echo_lines(report.lines())
    if gc:
        notes: list[str] = []
        removed = collect_garbage(lake, notes=notes)
        aborted = sum(r.endswith(UPLOAD_SUFFIX) for r in removed)
        click.echo(f"removed {len(removed) - aborted} unreferenced files"
                   + (f", aborted {aborted} unfinished multipart uploads" if aborted else ""))
        kept = len(report.orphans) - (len(removed) - aborted)
        if kept > 0 and not lake.location.is_local:  # was "removed 0" with no word of why
            notes.append(f"{kept} unreferenced files are younger than an hour and were kept: on an object store a "
                         "running writer's uploads look the same; run `verify --gc` again later")
        echo_lines([f"note: {n}" for n in notes if n not in report.notes])  # verify said the same already
    if not report.ok:
        sys.exit(1)


@main.command()
@lake_option
@snapshot_option
def info(lake_dir: str, snapshot: int | None) -> None:
    """What the lake holds: zoos, architectures, tables, the pinned snapshot."""
    lake = _open(lake_dir, snapshot=snapshot)
    click.echo(f"lake {lake.location.url} at snapshot {lake.snapshot} ({lake.manifest.created})")
    for zoo in lake.zoos:
        entry = lake.manifest.zoo(zoo)
        width = f" ({entry.segments[0].cols:,} parameters)" if entry.segments else ""  # tells inferred-* apart
        click.echo(f"  zoo {zoo}: {entry.n_models} models, arch {entry.arch['name']}{width}, "
                   f"{len(entry.segments)} segments")
    for name in lake.tables:
        entry = lake.manifest.table(name)
        click.echo(f"  table {name}: {len(entry.files)} files")
    if not lake.zoos and not lake.tables:
        click.echo("  empty: ingest a zoo with `weightlake ingest csv` or `weightlake ingest checkpoints`")


@main.command()
@lake_option
def history(lake_dir: str) -> None:
    """Snapshots from newest to oldest, with what each commit did."""
    write_frame(_open(lake_dir).history(), "table", None, max_rows=100)


# -- named queries --------------------------------------------------------------------------------
@main.group()
def query() -> None:
    """Named SQL queries (queries/*.sql, with name, description and parameters in the header)."""


@query.command("list")
@lake_option
def query_list(lake_dir: str) -> None:
    """List named queries and their parameters."""
    from weightlake.query import named_queries

    for q in named_queries(None).values():
        click.secho(q.name, bold=True)
        click.echo(f"  {q.description}")
        for p in q.params:
            default = f" (default {p.default})" if p.default is not None else " (required)"
            click.echo(f"  --param {p.name}=<{p.type}>{default}  {p.description}")


@query.command("run")
@click.argument("name")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE", help="Query parameter (repeatable).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json", "parquet"]), default="table")
@click.option("-o", "--output", type=click.Path(dir_okay=False))
@lake_option
@snapshot_option
def query_run(name: str, params: tuple[str, ...], fmt: str, output: str | None, lake_dir: str,
              snapshot: int | None) -> None:
    """Run a named query; parameters are bound, never pasted into the SQL."""
    from weightlake.query import run_named

    lake = _open(lake_dir, snapshot=snapshot)
    if output:
        lake.check_output(output)
    write_frame(run_named(lake, name, parse_params(params)), fmt, output)


# -- demo ---------------------------------------------------------------------------------------------
@main.command()
@click.option("--out", "out_dir", default="demo-out", show_default=True, type=click.Path(file_okay=False),
              help="Where checkpoints, exported CSVs and plots go.")
@click.option("--quick", is_flag=True, help="A seconds-long variant (used by the test suite).")
@click.option("--workers", default=2, show_default=True)
@lake_option
def demo(out_dir: str, quick: bool, workers: int, lake_dir: str) -> None:
    """Train a small real zoo on Fashion-MNIST, ingest it, query, export, serve pairs, analyse, verify.

    Re-running is cheap: finished models are not retrained and ingested ones are not re-added.
    """
    from weightlake.demo import DemoConfig, run_demo

    run_demo(Path(lake_dir), Path(out_dir), config=DemoConfig.quick() if quick else DemoConfig(), workers=workers,
             echo=click.echo)


# -- safetensors (weightlake.ingest.safetensor_files) -------------------------------------------
@export.command("safetensors")
@click.option("--zoo", help="Zoo to export (default: the only zoo).")
@click.option("--where", help="SQL filter over the models view, e.g. \"init = 'xavier_normal'\".")
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder for the files (one <zoo>-<model_id>.safetensors per model).")
@lake_option
@snapshot_option
def export_safetensors_cmd(zoo: str | None, where: str | None, out_dir: str, lake_dir: str,
                           snapshot: int | None) -> None:
    """Export models as safetensors files: no pickle; architecture and metadata in the header.

    Each file holds the model's state_dict (load it with safetensors.torch.load_file and
    model.load_state_dict) and, as header metadata, the architecture and the model's row.

    \b
    Example:
      weightlake export safetensors --zoo fmnist --where "epoch = 16" -o models/
      weightlake ingest safetensors models/ --lake other-lake
    """
    from weightlake.ingest.safetensor_files import export_safetensors

    files = export_safetensors(_open(lake_dir, snapshot=snapshot), out_dir, zoo=zoo, where=where)
    click.echo(f"wrote {len(files)} models to {out_dir}")


@ingest.command("safetensors")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--zoo", help="Zoo to add the models to (default: the zoo the files name).")
@click.option("--allow-same-source", is_flag=True,
              help="Accept weight vectors the zoo already holds under another init (refused by default).")
@lake_option
def ingest_safetensors_cmd(paths: tuple[str, ...], zoo: str | None, allow_same_source: bool, lake_dir: str) -> None:
    """Ingest safetensors model files written by `export safetensors` (folders are searched), one commit.

    Nothing is unpickled. Files without weightlake's header, of another architecture, or
    whose tensors do not fit it are refused with the file named; the lake is unchanged.
    """
    from weightlake.ingest.safetensor_files import ingest_safetensors

    echo_lines(ingest_safetensors(lake_dir, list(paths), zoo=zoo, allow_same_source=allow_same_source).lines())
