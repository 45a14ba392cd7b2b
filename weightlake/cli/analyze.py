"""``weightlake analyze``: spectra and correlations as lake tables."""

from __future__ import annotations

import click

from weightlake.cli import lake_option, main, progress_bar


@main.group()
def analyze() -> None:
    """Analyses committed as lake tables (read them with SQL or lake.analysis)."""


def _list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


@analyze.command("spectra")
@click.option("--zoo", help="Zoo to analyse (default: the only zoo).")
@click.option("--layers", help="Comma list of layers (default: all).")
@click.option("--all-rows", is_flag=True, help="Every row, fallback copies and repeated vectors included "
                                               "(default: distinct models only).")
@click.option("--convention", type=click.Choice(["weightlake", "weightwatcher"]), default="weightlake",
              show_default=True,
              help="weightwatcher: WeightWatcher 0.7.7's columns and definitions (unnormalised eigenvalues, conv "
                   "kernels as kh*kw slices pooled and halved, norm = squared Frobenius, spectral_norm = s_max^2) "
                   "-> table `spectra_weightwatcher`.")
@lake_option
def spectra_cmd(zoo: str | None, layers: str | None, all_rows: bool, convention: str, lake_dir: str) -> None:
    """Random-matrix spectra of every layer of every model -> table `spectra`.

    One row per distinct model x layer (fallback copies of early-stopped models and repeated
    vectors are dropped and counted; --all-rows keeps them): spectral norm, stable and effective rank, condition number,
    entropy, Marchenko-Pastur fit (sigma^2, bulk edges, spikes), Tracy-Widom edge statistic,
    level-spacing ratio, eigenvector IPR, and a power-law alpha where a layer has enough
    eigenvalues (NaN with a note otherwise).

    \b
    Example:
      weightlake analyze spectra --zoo mnist-cnn-s
      weightlake query run spectra_by_epoch --param zoo=mnist-cnn-s
      weightlake analyze spectra --convention weightwatcher   # compare with published WeightWatcher figures
    """
    from weightlake.analysis.api import analyze_spectra

    with progress_bar(None, "analyze spectra", "models") as bar:
        report = analyze_spectra(lake_dir, zoo=zoo, layers=_list(layers) if layers else None, all_rows=all_rows,
                                 convention=convention, progress=bar.callback)
    click.echo(str(report))


@analyze.command("correlations")
@click.option("--zoo", help="Zoo to analyse (default: the only zoo).")
@click.option("--against", default="accuracy,epoch,activation,init,classes,n_classes", show_default=True,
              help="Metadata columns (text columns become one-hots, `classes` becomes class presence).")
@click.option("--by", default="", help="Group by metadata columns, e.g. 'layer,activation' (layer is always a column).")
@click.option("--features", type=click.Choice(["params", "aggregates", "both"]), default="both", show_default=True,
              help="Every parameter, per-layer aggregates (norms, means, spectral figures), or both.")
@click.option("--methods", default="pearson,spearman", show_default=True)
@click.option("--plot", "plot_dir", type=click.Path(file_okay=False), help="Write heatmaps (PNG) to this folder.")
@click.option("--all-rows", is_flag=True, help="Count every row, fallback copies and repeated vectors included "
                                               "(default: distinct models only; n in the table counts them).")
@lake_option
def correlations_cmd(zoo: str | None, against: str, by: str, features: str, methods: str, plot_dir: str | None,
                     all_rows: bool, lake_dir: str) -> None:
    """Correlations of parameters and layer aggregates with metadata -> table `correlations`.

    Pearson and Spearman with p-values, Benjamini-Hochberg q-values and Bonferroni, per
    group; heatmaps mark the layer boundaries.  Distinct models only by default: a model
    filed under several epoch bins would be counted once per bin (every parameter-vs-epoch
    correlation of such copies is exactly 0); what was dropped is printed, --all-rows keeps it.

    \b
    Example:
      weightlake analyze correlations --zoo mnist-cnn-s --against accuracy,epoch --by layer,activation --plot out/
      weightlake query run top_accuracy_correlates --param zoo=mnist-cnn-s
    """
    from weightlake.analysis.api import analyze_correlations

    with progress_bar(None, "analyze correlations", "stages") as bar:
        report = analyze_correlations(lake_dir, zoo=zoo, against=_list(against), by=_list(by), features=features,
                                      methods=_list(methods), plot_dir=plot_dir, all_rows=all_rows,
                                      progress=bar.callback)
    click.echo(str(report))
