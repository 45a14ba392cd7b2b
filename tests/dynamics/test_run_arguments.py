"""Counts and lists the NTK, super-weight and topology-group runs cannot use are refused in one line, before any work.

Each of these ran on the old code into a traceback (`--ks x`, `--degrees x`, `--probe-images 0`,
`--ks 5000`, `--sample -1`) or into a silently useless table (`--top 0` committed a table
without columns; `--max-points 1` gave every group empty diagrams and every distance 0).
"""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

import weightlake as wl
from weightlake.cli import main
from weightlake.errors import QueryError, WeightLakeError


def _one_line(result) -> str:  # noqa: ANN001
    lines = [line for line in result.output.splitlines() if line.strip() and not line.startswith("analyze ")]
    assert "Traceback" not in result.output, result.output
    return lines[-1]


@pytest.mark.parametrize(("args", "words"), [
    (["analyze", "super-weights", "--ks", "1,x"], "--ks: expected a comma list of whole numbers"),
    (["analyze", "topology-groups", "--degrees", "0,one"], "--degrees: expected a comma list of whole numbers"),
    (["analyze", "super-weights", "--top", "0"], "'--top': 0 is not in the range x>=1"),
    (["analyze", "super-weights", "--probe-images", "0"], "'--probe-images': 0 is not in the range x>=1"),
    (["analyze", "ntk", "--probe-images", "0"], "'--probe-images': 0 is not in the range x>=1"),
    (["analyze", "ntk", "--sample", "-1"], "'--sample': -1 is not in the range x>=0"),
    (["analyze", "topology-groups", "--max-points", "1"], "'--max-points': 1 is not in the range x>=2"),
    (["analyze", "topology-groups", "--degrees=-1"], "degree -1 is not computed"),
    (["analyze", "topology-groups", "--degrees", "0,2"], "degree 2 is not computed"),
])
def test_cli_refuses_bad_counts_and_lists_as_usage_errors(lake_copy, args, words):
    before = wl.open_lake(lake_copy).snapshot
    result = CliRunner().invoke(main, [*args, "--lake", str(lake_copy)])
    assert result.exit_code == 2 and words in _one_line(result), result.output
    assert wl.open_lake(lake_copy).snapshot == before


@pytest.mark.parametrize(("args", "words"), [
    (["analyze", "super-weights", "--ks", "5000", "--images", "fashion-mnist"],
     "ks must be numbers of weights between 1 and 2416"),
    (["analyze", "super-weights", "--ks", "-1", "--images", "fashion-mnist"],
     "ks must be numbers of weights between 1 and 2416"),
])
def test_cli_refuses_values_out_of_range_in_one_line(lake_copy, args, words):
    result = CliRunner().invoke(main, [*args, "--lake", str(lake_copy)])
    line = _one_line(result)
    assert result.exit_code == 1 and line.startswith("error:") and words in line, result.output


def test_library_runs_refuse_the_same_before_loading_anything(lake_copy):
    from weightlake.analysis.topology import TopologyError
    from weightlake.compute.ntk import analyze_ntk
    from weightlake.compute.superweights import analyze_super_weights
    from weightlake.compute.topology import analyze_topology_groups

    # no --images: a check that ran after the dataset lookup would fail on the dataset instead
    with pytest.raises(QueryError, match="probe images must be a positive number"):
        analyze_ntk(lake_copy, probe_images_k=0)
    with pytest.raises(QueryError, match="top must be a positive number"):
        analyze_super_weights(lake_copy, top=-1)
    with pytest.raises(QueryError, match="ks must be numbers of weights between 1 and 2416"):
        analyze_super_weights(lake_copy, ks=())
    with pytest.raises(QueryError, match="sample must be a positive number"):
        analyze_ntk(lake_copy, sample=0, images="fashion-mnist")
    for max_points in (0, 1):
        with pytest.raises(TopologyError, match="max_points must be at least 2"):
            analyze_topology_groups(lake_copy, max_points=max_points, degrees=())
    for degrees in ((2,), (0, 2), (-1,), (0, 0)):  # the library took degree 2 (683 s for no diagram)
        with pytest.raises(TopologyError, match=r"degrees must be homology degrees among \[0, 1\]"):
            analyze_topology_groups(lake_copy, degrees=degrees)


def test_an_ntk_on_no_inputs_is_refused():
    from weightlake.dynamics.ntk import NTKError, empirical_ntk

    model = torch.nn.Linear(3, 2)
    with pytest.raises(NTKError, match="at least one input"):
        empirical_ntk(model, torch.zeros(0, 3))
    assert issubclass(NTKError, WeightLakeError)


@pytest.mark.parametrize("layer", [torch.nn.BatchNorm1d(5), torch.nn.Dropout(0.5)])
def test_an_ntk_of_a_model_in_training_mode_is_refused_with_the_fix(layer):
    """Batch norm in training mode failed inside torch.func ('attempted to call in-place operation
    ... that would mutate a captured Tensor'), dropout with 'called random operation while in
    randomness error mode'; neither says to call model.eval()."""
    from weightlake.dynamics.ntk import NTKError, empirical_ntk

    model = torch.nn.Sequential(torch.nn.Linear(4, 5), layer, torch.nn.Linear(5, 2)).train()
    with pytest.raises(NTKError, match=rf"{type(layer).__name__} in training mode.*model.eval\(\)"):
        empirical_ntk(model, torch.randn(3, 4))
    assert empirical_ntk(model.eval(), torch.randn(3, 4)).shape == (3, 3, 2, 2)


@pytest.mark.parametrize("command", ["ntk", "super-weights"])
def test_an_unknown_zoo_is_named_as_such_not_as_one_without_a_dataset(lake_copy, command):
    """`--zoo nope` said "zoo 'nope' does not record the dataset its models were trained on; pass --images"."""
    result = CliRunner().invoke(main, ["analyze", command, "--zoo", "nope", "--lake", str(lake_copy)])
    line = _one_line(result)
    assert result.exit_code == 1 and "no zoo 'nope'" in line and "--images" not in line, result.output


def test_more_probe_images_than_a_models_classes_hold_are_refused(lake_copy):
    """``--probe-images 100000`` drew the 1,000-2,000 test images there were, while the report and
    the params said 100000."""
    from tests.conftest import FASHION_INSTALLED

    if not FASHION_INSTALLED:
        pytest.skip("needs dataset-fashion-mnist")
    from weightlake.compute.ntk import analyze_ntk
    from weightlake.compute.superweights import analyze_super_weights

    before = wl.open_lake(lake_copy).snapshot
    with pytest.raises(QueryError, match=r"--probe-images 100000: the test split of fashion-mnist holds [\d,]+ "
                                         r"images of classes \[\d"):
        analyze_super_weights(lake_copy, sample=3, probe_images_n=100000, images="fashion-mnist")
    with pytest.raises(QueryError, match="fewer than asked"):
        analyze_ntk(lake_copy, sample=3, probe_images_k=100000, images="fashion-mnist")
    assert wl.open_lake(lake_copy).snapshot == before


def test_models_far_from_their_recorded_accuracy_on_the_probe_images_are_said(lake_copy):
    """Synthetic weights (noise) scored 0-50% on the probe images against 63-91% recorded, and the report
    only said no weight's zeroing cost an image, "an untrained or very redundant model"."""
    from tests.conftest import FASHION_INSTALLED

    if not FASHION_INSTALLED:
        pytest.skip("needs dataset-fashion-mnist")
    from weightlake.compute.superweights import analyze_super_weights

    report = analyze_super_weights(lake_copy, sample=2, probe_images_n=40, images="fashion-mnist", ks=(1,))
    assert "models score far from their recorded accuracy on the probe images" in str(report), str(report)
    assert "check that --images is the dataset the zoo was trained on" in str(report)


def test_ntk_and_super_weights_draw_their_figures_with_plot(lake_copy, tmp_path):
    """The plot functions existed only in Python (notebooks 07, 08); the commands had no --plot."""
    from tests.conftest import FASHION_INSTALLED

    if not FASHION_INSTALLED:
        pytest.skip("needs dataset-fashion-mnist")
    from PIL import Image

    out = tmp_path / "figures [ntk]"
    for args in (["ntk", "--sample", "3", "--probe-images", "4"],
                 ["super-weights", "--sample", "2", "--probe-images", "20", "--ks", "1,2"]):
        result = CliRunner().invoke(main, ["analyze", *args, "--images", "fashion-mnist", "--plot", str(out),
                                           "--lake", str(lake_copy)])
        assert result.exit_code == 0, result.output
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["mnist-cnn-s-ntk-full-kappa-vs-accuracy.png", "mnist-cnn-s-ntk-trace-kappa-vs-accuracy.png",
                    "mnist-cnn-s-super-weight-drops.png", "mnist-cnn-s-super-weight-sparsity.png"]
    assert all(Image.open(out / p).size[0] > 300 for p in pngs)
    inside = CliRunner().invoke(main, ["analyze", "ntk", "--images", "fashion-mnist", "--plot", str(lake_copy / "f"),
                                       "--lake", str(lake_copy)])
    assert inside.exit_code == 1 and "inside the lake" in inside.output
