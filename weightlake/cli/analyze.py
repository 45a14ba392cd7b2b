"""``weightlake analyze``: spectra and correlations as lake tables."""

from __future__ import annotations

import click

from weightlake.cli import lake_option, main


@main.group()
def analyze() -> None:
    """Analyses committed as lake tables (read them with SQL or lake.analysis)."""


def _list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


@analyze.command("spectra")
@click.option("--zoo", help="Zoo to analyse (default: the only zoo).")
@click.option("--layers", help="Comma list of layers (default: all).")
@lake_option
def spectra_cmd(zoo: str | None, layers: str | None, lake_dir: str) -> None:
    """Random-matrix spectra of every layer of every model -> table `spectra`.

    One row per model x layer: spectral norm, stable and effective rank, condition number,
    entropy, Marchenko-Pastur fit (sigma^2, bulk edges, spikes), Tracy-Widom edge statistic,
    level-spacing ratio, eigenvector IPR, and a power-law alpha where a layer has enough
    eigenvalues (NaN with a note otherwise).

    \b
    Example:
      weightlake analyze spectra --zoo mnist-cnn-s
      weightlake query run spectra_by_epoch --param zoo=mnist-cnn-s
    """
    from weightlake.analysis.api import analyze_spectra

    click.echo(str(analyze_spectra(lake_dir, zoo=zoo, layers=_list(layers) if layers else None)))


@analyze.command("correlations")
@click.option("--zoo", help="Zoo to analyse (default: the only zoo).")
@click.option("--against", default="accuracy,epoch,activation,init,classes,n_classes", show_default=True,
              help="Metadata columns (text columns become one-hots, `classes` becomes class presence).")
@click.option("--by", default="", help="Group by metadata columns, e.g. 'layer,activation' (layer is always a column).")
@click.option("--features", type=click.Choice(["params", "aggregates", "both"]), default="both", show_default=True,
              help="Every parameter, per-layer aggregates (norms, means, spectral figures), or both.")
@click.option("--methods", default="pearson,spearman", show_default=True)
@click.option("--plot", "plot_dir", type=click.Path(file_okay=False), help="Write heatmaps (PNG) to this folder.")
@lake_option
def correlations_cmd(zoo: str | None, against: str, by: str, features: str, methods: str, plot_dir: str | None,
                     lake_dir: str) -> None:
    """Correlations of parameters and layer aggregates with metadata -> table `correlations`.

    Pearson and Spearman with p-values, Benjamini-Hochberg q-values and Bonferroni, per
    group; heatmaps mark the layer boundaries.

    \b
    Example:
      weightlake analyze correlations --zoo mnist-cnn-s --against accuracy,epoch --by layer,activation --plot out/
      weightlake query run top_accuracy_correlates --param zoo=mnist-cnn-s
    """
    from weightlake.analysis.api import analyze_correlations

    report = analyze_correlations(lake_dir, zoo=zoo, against=_list(against), by=_list(by), features=features,
                                  methods=_list(methods), plot_dir=plot_dir)
    click.echo(str(report))


@analyze.command("ntk")
@click.option("--zoo", help="Zoo to analyse (default: the only zoo).")
@click.option("--sample", type=int, default=100, show_default=True,
              help="Distinct models to draw (seeded); 0 for all.")
@click.option("--probe-images", "probe_k", type=int, default=20, show_default=True,
              help="Probe images per model (test split, the model's own classes).")
@click.option("--images", help="Dataset the zoo was trained on: 'fashion-mnist' or an IDX folder "
                               "(required unless the lake records it).")
@click.option("--seed", default=0, show_default=True, help="Seeds the sample, the probe images and fresh inits.")
@click.option("--no-init", is_flag=True, help="Skip the fresh draw of each model's initialisation.")
@click.option("--all-rows", is_flag=True, help="Count every row (fallback copies too), not distinct models.")
@lake_option
def ntk_cmd(zoo: str | None, sample: int, probe_k: int, images: str | None, seed: int, no_init: bool,
            all_rows: bool, lake_dir: str) -> None:
    """Empirical NTK spectra of a zoo's models -> table `ntk`.

    One row per model x state (trained; init: a fresh draw of its initialisation) x form
    (full [K*10, K*10] kernel; trace [K, K]): lambda_max, lambda_min, kappa, the
    learning-rate bound 2/lambda_max, rank. About 0.1-0.5 s a model at K=20.

    \b
    Example:
      weightlake analyze ntk --zoo fmnist --sample 50 --probe-images 20 --images fashion-mnist
      weightlake query run ntk_kappa_by_group --param zoo=fmnist
    """
    from weightlake.cli.progress import reporting_progress
    from weightlake.compute.ntk import analyze_ntk

    total = sample if sample > 0 else 0
    with reporting_progress(total or 1, "ntk") as progress:
        report = analyze_ntk(lake_dir, zoo=zoo, sample=sample or None, probe_images_k=probe_k, images=images,
                             seed=seed, at_init=not no_init, all_rows=all_rows, progress=progress)
    click.echo(str(report))


@analyze.command("super-weights")
@click.option("--zoo", help="Zoo to analyse (default: the only zoo).")
@click.option("--sample", type=int, default=20, show_default=True, help="Distinct models to draw (seeded); 0 for all.")
@click.option("--probe-images", "probe_n", type=int, default=500, show_default=True,
              help="Probe images per model (test split, the model's own classes).")
@click.option("--images", help="Dataset the zoo was trained on: 'fashion-mnist' or an IDX folder "
                               "(required unless the lake records it).")
@click.option("--top", default=3, show_default=True, help="Most harmful weights kept per model x layer.")
@click.option("--ks", default="1,2,5,10,20,50", show_default=True, help="Weights zeroed in the sparsity comparison.")
@click.option("--seed", default=0, show_default=True, help="Seeds the sample, probe images and random ablations.")
@click.option("--all-rows", is_flag=True, help="Count every row (fallback copies too), not distinct models.")
@lake_option
def super_weights_cmd(zoo: str | None, sample: int, probe_n: int, images: str | None, top: int, ks: str, seed: int,
                      all_rows: bool, lake_dir: str) -> None:
    """Single weights whose zeroing hurts most -> tables `super_weights`, `super_weight_sparsity`.

    Every weight of every layer is zeroed in turn (exhaustive; one cached forward pass per
    layer, the rest of the network batched over ablations) on the probe images; the most
    harmful per layer are kept with |w|, its magnitude rank and the activation-spike proxy.
    The sparsity table compares zeroing the top-k by |w|, the k super weights, k random ones.

    \b
    Example:
      weightlake analyze super-weights --zoo fmnist --sample 20 --images fashion-mnist
      weightlake query run super_weight_index_by_group --param zoo=fmnist
      weightlake query run super_weight_sparsity_summary --param zoo=fmnist
    """
    from weightlake.cli.progress import reporting_progress
    from weightlake.compute.superweights import analyze_super_weights

    with reporting_progress(sample or 1, "super-weights") as progress:
        report = analyze_super_weights(lake_dir, zoo=zoo, sample=sample or None, probe_images_n=probe_n,
                                       images=images, top=top, ks=[int(k) for k in _list(ks)], seed=seed,
                                       all_rows=all_rows, progress=progress)
    click.echo(str(report))
