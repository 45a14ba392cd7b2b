"""``weightlake analyze``: spectra and correlations as lake tables."""

from __future__ import annotations

from pathlib import Path

import click

from weightlake.cli import lake_option, main, progress_bar


@main.group()
def analyze() -> None:
    """Analyses committed as lake tables (read them with SQL or lake.analysis)."""


def _list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _layers(text: str | None) -> list[str] | None:
    """``--layers fc1,fc2`` -> ``["fc1", "fc2"]`` (a layer named twice once); ``None`` or empty: all layers."""
    return list(dict.fromkeys(_list(text))) or None if text else None


def _parse_ints(text: str, option: str) -> list[int]:
    """A comma list of whole numbers (``'1,2,5'``) -> ``[1, 2, 5]``, or a usage error naming ``option``."""
    try:
        return [int(t) for t in _list(text)]
    except ValueError:
        raise click.BadParameter(f"expected a comma list of whole numbers, e.g. '1,2,5'; got {text!r}",
                                 param_hint=option) from None


def _ints(option: str) -> object:
    """A click callback for :func:`_parse_ints`."""
    def parse(ctx: click.Context, param: click.Parameter, text: str) -> list[int]:
        return _parse_ints(text, option)
    return parse


def _check_plot_dir(lake_dir: str, plot_dir: str | None) -> None:
    """Refuse a --plot folder inside the lake (or a URL) before any work: the lake changes only through
    commits, and `gc` would take figures filed in it for stray files."""
    if plot_dir:
        from weightlake.handle import open_lake

        open_lake(lake_dir).check_output(plot_dir)


def _dask_address(ctx: click.Context, param: click.Parameter, text: str | None) -> str | None:
    """A click callback: ``--dask`` names 'local' or a scheduler (``--dask ""`` ran locally, ``--dask lcoal``
    failed in distributed after "started")."""
    if text is None:
        return None
    from weightlake.compute.dask_runs import check_dask_address
    from weightlake.errors import QueryError

    try:
        check_dask_address(text)
    except QueryError as exc:
        raise click.BadParameter(str(exc).removeprefix("--dask "), param_hint="--dask") from None
    return text


def _degrees(ctx: click.Context, param: click.Parameter, text: str) -> list[int]:
    """A click callback: ``'0,1'`` -> ``[0, 1]``; a degree other than 0 or 1, or one given twice, is a usage error."""
    from weightlake.analysis.topology_groups import HOMOLOGY_DEGREES

    degrees = _parse_ints(text, "--degrees")
    bad = [d for d in degrees if d not in HOMOLOGY_DEGREES]
    if bad or len(set(degrees)) != len(degrees):
        why = f"degree {bad[0]} is not computed" if bad else "a degree is given twice"
        raise click.BadParameter(f"{why}: each degree is one of {', '.join(map(str, HOMOLOGY_DEGREES))} "
                                 f"('0' or '0,1'), got {text!r}", param_hint="--degrees")
    return degrees


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
@click.option("--dask", "dask_address", metavar="local|ADDRESS", callback=_dask_address,
              help="Run on Dask: 'local' starts a 2-worker LocalCluster on 127.0.0.1, tcp://HOST:8786 uses a running "
                   "scheduler (its workers must reach the lake). Same table as without it.")
@lake_option
def spectra_cmd(zoo: str | None, layers: str | None, all_rows: bool, convention: str, dask_address: str | None,
                lake_dir: str) -> None:
    """Random-matrix spectra of every layer of every model -> table `spectra`.

    One row per distinct model x layer (fallback copies of early-stopped models and repeated
    vectors are dropped and counted; --all-rows keeps them): spectral norm, stable and effective rank, condition number,
    entropy, Marchenko-Pastur fit (sigma^2, bulk edges, spikes), Tracy-Widom edge statistic,
    level-spacing ratio, eigenvector IPR, and a power-law alpha where a layer has enough
    eigenvalues (null otherwise, so SQL aggregates skip it; the report says which layers).

    \b
    Example:
      weightlake analyze spectra --zoo mnist-cnn-s
      weightlake query run spectra_by_epoch --param zoo=mnist-cnn-s
      weightlake analyze spectra --convention weightwatcher   # compare with published WeightWatcher figures
      weightlake analyze spectra --zoo mnist-cnn-s --lake s3://zoos/lake --dask local
    """
    from weightlake.compute.analyses import analyze_spectra

    if dask_address:
        from weightlake.compute.dask_runs import analyze_spectra_dask

        if convention != "weightlake":
            raise click.UsageError("--dask runs the weightlake convention only")
        with progress_bar(None, "analyze spectra (dask)", "models") as bar:
            report = analyze_spectra_dask(lake_dir, address=dask_address, zoo=zoo,
                                          layers=_layers(layers), all_rows=all_rows,
                                          progress=bar.callback)
        click.echo(str(report))
        return
    with progress_bar(None, "analyze spectra", "models") as bar:
        report = analyze_spectra(lake_dir, zoo=zoo, layers=_layers(layers), all_rows=all_rows,
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
@click.option("--plot", "plot_dir", type=click.Path(file_okay=False),
              help="Write the figures (PNG) to this folder: per method and group, parameters / layers / aggregates "
                   "x metadata; the groups side by side; parameter x parameter. Redraw later, or across zoos, "
                   "with `analyze correlation-figures`.")
@click.option("--all-rows", is_flag=True, help="Count every row, fallback copies and repeated vectors included "
                                               "(default: distinct models only; n in the table counts them).")
@click.option("--per-run", type=click.Choice(["all", "last"]), default="all", show_default=True,
              help="all: every distinct checkpoint (a run checkpointed at several epochs counts several times, and "
                   "the p-values take its checkpoints as independent: column `runs` and the figures say so); last: "
                   "each run's latest checkpoint, so every run counts once and the p-values hold.")
@click.option("--dask", "dask_address", metavar="local|ADDRESS", callback=_dask_address,
              help="Run on Dask: 'local' starts a 2-worker LocalCluster on 127.0.0.1, tcp://HOST:8786 uses a running "
                   "scheduler (its workers must reach the lake). Same table as without it; draw figures afterwards "
                   "with `analyze correlation-figures`.")
@lake_option
def correlations_cmd(zoo: str | None, against: str, by: str, features: str, methods: str, plot_dir: str | None,
                     all_rows: bool, per_run: str, dask_address: str | None, lake_dir: str) -> None:
    """Correlations of parameters and layer aggregates with metadata -> table `correlations`.

    Pearson and Spearman with p-values, Benjamini-Hochberg q-values and Bonferroni, per
    group; heatmaps mark the layer boundaries.  Distinct models only by default: a model
    filed under several epoch bins would be counted once per bin (every parameter-vs-epoch
    correlation of such copies is exactly 0); what was dropped is printed, --all-rows keeps it.

    \b
    Example:
      weightlake analyze correlations --zoo mnist-cnn-s --against accuracy,epoch --by layer,activation --plot out/
      weightlake query run top_accuracy_correlates --param zoo=mnist-cnn-s
      weightlake analyze correlations --zoo mnist-cnn-s --dask local     # same table, on 2 local workers

    The zoo is streamed under the memory budget ($WEIGHTLAKE_MEMORY): parameters are
    correlated in column slices (one pass over the zoo each), aggregates block by block.
    """
    from weightlake.compute.analyses import analyze_correlations

    _check_plot_dir(lake_dir, plot_dir)
    if dask_address:
        from weightlake.compute.dask_runs import analyze_correlations_dask

        if plot_dir:
            raise click.UsageError("--plot does not run on Dask; draw the figures after the run with "
                                   "`weightlake analyze correlation-figures --plot DIR`")
        with progress_bar(None, "analyze correlations (dask)", "tasks") as bar:
            report = analyze_correlations_dask(lake_dir, address=dask_address, zoo=zoo, against=_list(against),
                                               by=_list(by), features=features, methods=_list(methods),
                                               all_rows=all_rows, per_run=per_run, progress=bar.callback)
        click.echo(str(report))
        return
    with progress_bar(None, "analyze correlations", "stages") as bar:
        report = analyze_correlations(lake_dir, zoo=zoo, against=_list(against), by=_list(by), features=features,
                                      methods=_list(methods), plot_dir=plot_dir, all_rows=all_rows,
                                      per_run=per_run, progress=bar.callback)
    click.echo(str(report))


# -- topology (weightlake.compute.topology) ------------------------------------------------------
@analyze.command("topology")
@click.option("--zoo", help="Zoo to analyse (default: the only zoo).")
@click.option("--layers", help="Comma list of layers (default: all).")
@click.option("--no-h1", is_flag=True, help="Skip Rips H1 of the neuron clouds (about half the cost of the rest); "
                                          "its columns and betti1 are then null.")
@click.option("--no-cubical", is_flag=True, help="Skip cubical persistence of conv kernels (the costliest part).")
@click.option("--all-rows", is_flag=True, help="Count every row (fallback copies and repeated vectors too).")
@click.option("--dask", "dask_address", metavar="local|ADDRESS", callback=_dask_address,
              help="Run on Dask: 'local' starts a 2-worker LocalCluster on 127.0.0.1, tcp://HOST:8786 uses a running "
                   "scheduler (its workers must reach the lake and have gudhi). Same table as without it.")
@lake_option
def topology_cmd(zoo: str | None, layers: str | None, no_h1: bool, no_cubical: bool, all_rows: bool,
                 dask_address: str | None, lake_dir: str) -> None:
    """Persistent homology of every layer of every distinct model -> table `topology`.

    One row per model x layer, all independent of neuron order: Rips persistence of the
    layer's neuron cloud (each neuron = incoming weights + bias; H0 and H1 summaries and the
    diagrams as lists), neural persistence of the layer graph, cubical persistence of conv
    kernels (mean per kernel, of w and of -w), Betti curves on a per-layer grid. The zoo
    is read in blocks under the memory budget ($WEIGHTLAKE_MEMORY), never whole.

    \b
    Example:
      weightlake analyze topology --zoo mnist-cnn-s
      weightlake query run topology_by_activation --param zoo=mnist-cnn-s
      weightlake sql "SELECT m.activation, corr(t.h0_total_persistence, m.accuracy) FROM topology t
                      JOIN models m USING (model_id) WHERE t.layer = 'fc1' GROUP BY 1"
      weightlake analyze topology --zoo mnist-cnn-s --dask local     # one task per stored chunk
    """
    if dask_address:
        from weightlake.compute.dask_runs import analyze_topology_dask as run

        extra = {"address": dask_address}
    else:
        from weightlake.compute.topology import analyze_topology as run

        extra = {}
    with progress_bar(None, "analyze topology" + (" (dask)" if dask_address else ""), "models") as bar:
        report = run(lake_dir, zoo=zoo, layers=_layers(layers), h1=not no_h1,
                     cubical=not no_cubical, all_rows=all_rows, progress=bar.callback, **extra)
    click.echo(str(report))


@analyze.command("topology-groups")
@click.option("--zoo", help="Zoo to analyse (default: the only zoo).")
@click.option("--by", default="classes", show_default=True, help="Metadata columns that make a group, e.g. 'classes,activation'.")
@click.option("--layer", default="fc1", show_default=True, help="Layer whose pooled neurons form each group's neuron cloud.")
@click.option("--max-points", default=100, show_default=True, type=click.IntRange(min=2), help="Subsample larger clouds to this many points (seeded).")
@click.option("--resolution", default=20, show_default=True, help="Grid steps per parameter of the two-parameter measure (20-50).")
@click.option("--degrees", default="0", show_default=True, callback=_degrees,
              help="Homology degrees of the function-Rips measure, each 0 or 1 ('0' or '0,1'; H1 is 10-100x dearer; "
                   "'' skips the measure).")
@click.option("--max-distance-groups", default=120, show_default=True, help="Compute the group distance table only up to this many groups.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--all-rows", is_flag=True, help="Count every row (fallback copies and repeated vectors too).")
@click.option("--dask", "dask_address", metavar="local|ADDRESS", callback=_dask_address,
              help="Run on Dask: one task per group, the distances in shares; 'local' starts a 2-worker "
                   "LocalCluster on 127.0.0.1, tcp://HOST:8786 uses a running scheduler (its workers must reach "
                   "the lake and have gudhi, and multipers for --degrees). Same tables as without it.")
@lake_option
def topology_groups_cmd(zoo: str | None, by: str, layer: str, max_points: int, resolution: int, degrees: list[int],
                        max_distance_groups: int, seed: int, all_rows: bool, dask_address: str | None,
                        lake_dir: str) -> None:
    """Topology of groups of models -> tables `topology_groups` and `topology_group_distances`.

    Per group (e.g. one class set): Rips diagrams of the cloud of its models (flat weights) and
    of the pooled neurons of --layer; the Hilbert signed measure of the function-Rips
    bifiltration (Rips x 1 - outgoing importance of each neuron, multipers, regular grid).
    Between groups: bottleneck, Wasserstein and sliced-Wasserstein distances per cloud and
    degree, and the optimal-transport distance of the signed measures.

    \b
    Example:
      weightlake analyze topology-groups --zoo mnist-cnn-s --by classes,activation
      weightlake query run topology_group_neighbours --param zoo=mnist-cnn-s
      weightlake analyze topology-groups --zoo mnist-cnn-s --dask local     # one task per group
    """
    if dask_address:
        from weightlake.compute.dask_runs import analyze_topology_groups_dask as run

        extra, label, unit = {"address": dask_address}, "analyze topology-groups (dask)", "tasks"
    else:
        from weightlake.compute.topology import analyze_topology_groups as run

        extra, label, unit = {}, "analyze topology-groups", "groups"
    with progress_bar(None, label, unit) as bar:
        report = run(lake_dir, zoo=zoo, by=_list(by), layer=layer, max_points=max_points, resolution=resolution,
                     degrees=degrees, max_distance_groups=max_distance_groups,
                     all_rows=all_rows, seed=seed, progress=bar.callback, **extra)
    click.echo(str(report))


@analyze.command("topology-classes")
@click.option("--zoo", help="Zoo to analyse (default: the only zoo).")
@click.option("--folds", default=5, show_default=True, help="Cross-validation folds (grouped by class set when possible).")
@click.option("--permutations", default=999, show_default=True, help="Permutations of the Mantel test.")
@click.option("--max-models", default=300, show_default=True, help="Models in the Mantel test (seeded sample).")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--plot", "plot_dir", type=click.Path(file_okay=False), help="Write the figure (PNG) to this folder.")
@lake_option
def topology_classes_cmd(zoo: str | None, folds: int, permutations: int, max_models: int, seed: int,
                         plot_dir: str | None, lake_dir: str) -> None:
    """Does topology tell which classes a model saw? -> table `topology_classes`.

    Needs table `topology` (run `analyze topology` first). For each digit d, the
    cross-validated AUC of "d in classes" from the topological vectors, from a baseline of
    norms and singular values, and from both; and Mantel correlations between model
    distances (diagrams, vectors) and the Jaccard distance of class sets.

    \b
    Example:
      weightlake analyze topology --zoo mnist-cnn-s
      weightlake analyze topology-classes --zoo mnist-cnn-s --plot out/
      weightlake query run topology_digit_auc --param zoo=mnist-cnn-s
    """
    from weightlake.compute.topology import analyze_topology_classes

    _check_plot_dir(lake_dir, plot_dir)
    click.echo(str(analyze_topology_classes(lake_dir, zoo=zoo, folds=folds, permutations=permutations,
                                            max_models=max_models, seed=seed, plot_dir=plot_dir)))


@analyze.command("topology-filtration")
@click.option("--zoo", help="Zoo to analyse (default: the only zoo).")
@click.option("--digit", default=0, show_default=True, help="Learn to tell models that saw this digit from the rest.")
@click.option("--layer", default="fc1", show_default=True, help="Layer whose neurons are filtered (it needs a next layer).")
@click.option("--steps", default=150, show_default=True, help="Adam steps.")
@click.option("--max-models", default=2000, show_default=True, help="Models used (seeded sample of the distinct ones).")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--all-rows", is_flag=True, help="Count every row (fallback copies and repeated vectors too).")
@lake_option
def topology_filtration_cmd(zoo: str | None, digit: int, layer: str, steps: int, max_models: int, seed: int,
                            all_rows: bool, lake_dir: str) -> None:
    """Learn an explicit filtration over neuron features -> table `topology_filtration`.

    The filtration value of a neuron is theta . (its standardised features: incoming and
    outgoing norms and means, bias, largest incoming weight), on the spanning tree of the
    layer's neuron cloud; theta is trained (torch) so the H0 persistence tells models that
    saw --digit from the others. Reports theta's coefficients and a held-out AUC.

    \b
    Example:
      weightlake analyze topology-filtration --zoo mnist-cnn-s --digit 3
      weightlake sql "SELECT feature, coefficient, test_auc FROM topology_filtration ORDER BY abs(coefficient) DESC"
    """
    from weightlake.compute.topology import analyze_topology_filtration

    click.echo(str(analyze_topology_filtration(lake_dir, zoo=zoo, digit=digit, layer=layer, steps=steps,
                                               max_models=max_models, seed=seed, all_rows=all_rows)))


@analyze.command("ntk")
@click.option("--zoo", help="Zoo to analyse (default: the only zoo).")
@click.option("--sample", type=click.IntRange(min=0), default=100, show_default=True,
              help="Distinct models to draw (seeded); 0 for all.")
@click.option("--probe-images", "probe_k", type=click.IntRange(min=1), default=20, show_default=True,
              help="Probe images per model (test split, the model's own classes).")
@click.option("--images", help="Dataset the zoo was trained on: 'fashion-mnist' or an IDX folder "
                               "(required unless the lake records it).")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0), help="Seeds the sample, the probe images and fresh inits.")
@click.option("--no-init", is_flag=True, help="Skip the fresh draw of each model's initialisation.")
@click.option("--all-rows", is_flag=True, help="Count every row (fallback copies too), not distinct models.")
@click.option("--plot", "plot_dir", type=click.Path(file_okay=False),
              help="Write log10 kappa against accuracy (trace and full kernels, trained and at init) as PNG here.")
@lake_option
def ntk_cmd(zoo: str | None, sample: int, probe_k: int, images: str | None, seed: int, no_init: bool,
            all_rows: bool, plot_dir: str | None, lake_dir: str) -> None:
    """Empirical NTK spectra of a zoo's models -> table `ntk`.

    One row per model x state (trained; init: a fresh draw of its initialisation) x form
    (full [K*10, K*10] kernel; trace [K, K]): lambda_max, lambda_min, kappa, the
    learning-rate bound 2/lambda_max, rank. About 0.1-0.5 s a model at K=20.

    \b
    Example:
      weightlake analyze ntk --zoo fmnist --sample 50 --probe-images 20 --images fashion-mnist
      weightlake query run ntk_kappa_by_group --param zoo=fmnist
    """
    from weightlake.compute.ntk import analyze_ntk

    _check_plot_dir(lake_dir, plot_dir)
    with progress_bar(None, "analyze ntk", "models") as bar:
        report = analyze_ntk(lake_dir, zoo=zoo, sample=sample or None, probe_images_k=probe_k, images=images,
                             seed=seed, at_init=not no_init, all_rows=all_rows, progress=bar.callback)
    click.echo(str(report))
    if plot_dir:
        from weightlake.compute.ntk import ntk_with_metadata
        from weightlake.dynamics.plots import plot_kappa_vs_accuracy
        from weightlake.handle import open_lake

        table = ntk_with_metadata(open_lake(lake_dir), report.zoo)
        for form in ("trace", "full"):
            path = Path(plot_dir) / f"{report.zoo}-ntk-{form}-kappa-vs-accuracy.png"
            click.echo(f"   plot: {plot_kappa_vs_accuracy(table, path, report.zoo, form=form)}")


@analyze.command("super-weights")
@click.option("--zoo", help="Zoo to analyse (default: the only zoo).")
@click.option("--sample", type=click.IntRange(min=0), default=20, show_default=True, help="Distinct models to draw (seeded); 0 for all.")
@click.option("--probe-images", "probe_n", type=click.IntRange(min=1), default=500, show_default=True,
              help="Probe images per model (test split, the model's own classes).")
@click.option("--images", help="Dataset the zoo was trained on: 'fashion-mnist' or an IDX folder "
                               "(required unless the lake records it).")
@click.option("--top", default=3, show_default=True, type=click.IntRange(min=1), help="Most harmful weights kept per model x layer.")
@click.option("--ks", default="1,2,5,10,20,50", show_default=True, callback=_ints("--ks"),
              help="Weights zeroed in the sparsity comparison (each at least 1).")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0), help="Seeds the sample, probe images and random ablations.")
@click.option("--all-rows", is_flag=True, help="Count every row (fallback copies too), not distinct models.")
@click.option("--plot", "plot_dir", type=click.Path(file_okay=False),
              help="Write the enforced-sparsity curves and each layer's super weight (drop against magnitude rank) "
                   "as PNG here.")
@lake_option
def super_weights_cmd(zoo: str | None, sample: int, probe_n: int, images: str | None, top: int, ks: list[int], seed: int,
                      all_rows: bool, plot_dir: str | None, lake_dir: str) -> None:
    """Single weights whose zeroing hurts most -> tables `super_weights`, `super_weight_sparsity`.

    Every weight of every layer is zeroed in turn (exhaustive; one cached forward pass per
    layer, the rest of the network batched over ablations) on the probe images; the most
    harmful per layer are kept with |w|, its magnitude rank and the activation-spike proxy.
    The sparsity table compares zeroing the top-k by |w|, the k super weights, k random ones.
    Where no single zeroing costs a probe image (an untrained or very redundant model), the
    rows rank weights by loss increase alone: column costs_accuracy is false and the report
    counts those models.

    \b
    Example:
      weightlake analyze super-weights --zoo fmnist --sample 20 --images fashion-mnist
      weightlake query run super_weight_index_by_group --param zoo=fmnist
      weightlake query run super_weight_sparsity_summary --param zoo=fmnist
    """
    from weightlake.compute.superweights import analyze_super_weights

    _check_plot_dir(lake_dir, plot_dir)
    with progress_bar(None, "analyze super-weights", "models") as bar:
        report = analyze_super_weights(lake_dir, zoo=zoo, sample=sample or None, probe_images_n=probe_n,
                                       images=images, top=top, ks=ks, seed=seed,
                                       all_rows=all_rows, progress=bar.callback)
    click.echo(str(report))
    if plot_dir:
        import polars as pl

        from weightlake.dynamics.plots import plot_sparsity, plot_super_weight_drops
        from weightlake.handle import open_lake

        lake, out = open_lake(lake_dir), Path(plot_dir)
        mine = pl.col("zoo") == report.zoo
        paths = [plot_sparsity(lake.table("super_weight_sparsity").filter(mine).collect(),
                               out / f"{report.zoo}-super-weight-sparsity.png", report.zoo),
                 plot_super_weight_drops(lake.table("super_weights").filter(mine).collect(),
                                         out / f"{report.zoo}-super-weight-drops.png", report.zoo)]
        click.echo("\n".join(f"   plot: {p}" for p in paths))


# -- figures from committed correlations (weightlake.compute.figures) -----------------------------
@analyze.command("correlation-figures")
@click.option("--zoo", "zoos", multiple=True, help="Zoo to draw; repeat for several (default: every zoo "
                                                   "with committed correlations). Two or more: also side by side.")
@click.option("--plot", "plot_dir", type=click.Path(file_okay=False), required=True, help="Folder for the PNG files.")
@click.option("--methods", default="", help="Comma list (default: every method in the table).")
@click.option("--alpha", default=0.05, show_default=True, type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Significance level: cells with a BH q-value >= alpha are drawn grey.")
@click.option("--pooling", type=click.Choice(["mean", "max_abs"]), default="mean", show_default=True,
              help="How blocks of parameters are pooled in the parameters x metadata figure (the title says which).")
@lake_option
def correlation_figures_cmd(zoos: tuple[str, ...], plot_dir: str, methods: str, alpha: float, pooling: str,
                            lake_dir: str) -> None:
    """Heatmaps from the committed `correlations` table, per zoo and across zoos (nothing recomputed).

    Per zoo, method and group: parameters x metadata (layer boundaries drawn), layer x metadata
    (share of each layer's parameters with q < alpha), aggregates x metadata (with
    --features aggregates|both at analysis time), and the groups side by side.  For two or more
    zoos of one architecture: aggregates and layer shares of every zoo on one shared scale.
    Colours are scaled from the data (+-max|r| printed on the colour bar); grey cells are not
    significant; hatched cells had no test (constant); titles give zoo, group and n.

    \b
    Example:
      weightlake analyze correlations --zoo zoo-a --features both
      weightlake analyze correlations --zoo zoo-b --features both
      weightlake analyze correlation-figures --zoo zoo-a --zoo zoo-b --plot figures/
    """
    from weightlake.compute.figures import correlation_figures

    _check_plot_dir(lake_dir, plot_dir)
    paths = correlation_figures(lake_dir, plot_dir, zoos=list(zoos) or None, methods=_list(methods) or None,
                                alpha=alpha, pooling=pooling)
    for path in paths:
        click.echo(f"plot: {path}")


# -- metrics over a scenario's pair table (weightlake.compute.pair_metrics) --------------------------
@analyze.command("pair-metrics")
@click.option("--scenario", required=True, help="A declared scenario (`weightlake scenario list`).")
@click.option("--split", type=click.Choice(["train", "val", "test"]), help="One split (default: every split).")
@click.option("--metrics", default="", help="Comma list of metrics, named as the wl_<name> SQL functions: mse, mae, "
                                            "cosine, pearson, l2_norm_diff, nmse, w1, w2, kl, js, sliced_w, ... "
                                            "(default: all but the slow ones; an unknown name lists them all).")
@click.option("--per-layer", is_flag=True, help="Also one column per metric and layer (<metric>_<layer>).")
@click.option("--include-slow", is_flag=True, help="Also Sinkhorn and Gromov-Wasserstein (seconds per pair).")
@click.option("--dask", "dask_address", metavar="local|ADDRESS", callback=_dask_address,
              help="Run on Dask: 'local' starts a 2-worker LocalCluster on 127.0.0.1, tcp://HOST:8786 uses a running "
                   "scheduler (its workers must reach the lake). Same table as without it.")
@lake_option
def pair_metrics_cmd(scenario: str, split: str | None, metrics: str, per_layer: bool, include_slow: bool,
                     dask_address: str | None, lake_dir: str) -> None:
    """Distances between the models of every pair of a scenario -> table `pair_metrics`.

    Each pair names inputs a, b and the target; each couple is compared as (pred, ref):
    a_b = (a, b), a_target = (a, target), b_target = (b, target), with the same metric
    functions as the wl_* SQL functions. One row per pair x couple x metric (scenario,
    split, pair_id, couple, pred_id, ref_id, metric, layer: null for the whole vector,
    value); re-running one --split replaces that split only.

    \b
    Example:
      weightlake analyze pair-metrics --scenario type1-m0 --split test --metrics mse,cosine,w1
      weightlake sql "SELECT couple, metric, avg(value) FROM pair_metrics WHERE scenario = 'type1-m0'
                      AND layer IS NULL GROUP BY ALL ORDER BY ALL"
      weightlake analyze pair-metrics --scenario type1-m0 --dask local     # same table, on 2 local workers
    """
    if dask_address:
        from weightlake.compute.dask_runs import analyze_pair_metrics_dask as run

        extra = {"address": dask_address}
    else:
        from weightlake.compute.pair_metrics import analyze_pair_metrics as run

        extra = {}
    with progress_bar(None, "analyze pair-metrics" + (" (dask)" if dask_address else ""), "pairs") as bar:
        report = run(lake_dir, scenario=scenario, split=split, metrics=_list(metrics) or None, per_layer=per_layer,
                     include_slow=include_slow, progress=bar.callback, **extra)
    click.echo(str(report))
