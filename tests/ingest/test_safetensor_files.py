"""Models as safetensors files: export -> ingest round trip, loadable state_dicts, refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import weightlake as wl
from weightlake.cli import main

st = pytest.importorskip("safetensors.numpy")


def _export(real_lake_dir: Path, out: Path) -> CliRunner:
    runner = CliRunner()
    result = runner.invoke(main, ["export", "safetensors", "-o", str(out), "--lake", str(real_lake_dir)])
    assert result.exit_code == 0, result.output
    return runner


def test_round_trip_bitwise_with_metadata(real_lake_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "models"
    runner = _export(real_lake_dir, out)
    files = sorted(out.glob("*.safetensors"))
    assert len(files) == 24
    target = tmp_path / "lake"
    result = runner.invoke(main, ["ingest", "safetensors", str(out), "--lake", str(target)])
    assert result.exit_code == 0 and "added 24 models to zoo 'fmnist'" in result.output, result.output
    a, b = wl.open_lake(real_lake_dir), wl.open_lake(target)
    wa, wb = np.asarray(a.zoo_weights("fmnist")[1]), np.asarray(b.zoo_weights("fmnist")[1])
    assert np.array_equal(wa.view(np.uint32), wb.view(np.uint32))
    cols = ["init", "activation", "epoch", "actual_epoch", "classes", "accuracy", "fallback", "weights_hash"]
    ma = a.models("fmnist").collect().sort("model_id").select(cols)
    mb = b.models("fmnist").collect().sort("model_id").select(cols)
    assert ma.equals(mb)
    again = runner.invoke(main, ["ingest", "safetensors", str(out), "--lake", str(target)])
    assert again.exit_code == 0 and "added 0 models" in again.output


def test_files_load_as_state_dicts(real_lake_dir: Path, tmp_path: Path) -> None:
    import safetensors.torch
    import torch

    _export(real_lake_dir, tmp_path / "m")
    lake = wl.open_lake(real_lake_dir)
    first = sorted((tmp_path / "m").glob("*.safetensors"))[0]
    with open(first, "rb") as fh:  # the header is plain JSON after an 8-byte length: no pickle anywhere
        size = int.from_bytes(fh.read(8), "little")
        header = json.loads(fh.read(size))
    model = json.loads(header["__metadata__"]["weightlake.model"])
    assert model["zoo"] == "fmnist" and model["dataset"] == "fashion-mnist"
    cnn = lake.cnn(model["model_id"])
    reference = {k: v.clone() for k, v in cnn.state_dict().items()}
    cnn.load_state_dict(safetensors.torch.load_file(str(first)))
    assert all(torch.equal(reference[k], v) for k, v in cnn.state_dict().items())


def test_refusals_leave_the_lake_unchanged(real_lake_dir: Path, tmp_path: Path, tree_state) -> None:
    out = tmp_path / "m"
    _export(real_lake_dir, out)
    target = tmp_path / "lake"
    shutil.copytree(real_lake_dir, target)
    before = tree_state(target)
    plain = tmp_path / "plain.safetensors"
    st.save_file({"w": np.zeros(3, dtype=np.float32)}, str(plain))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    for path, message in ((plain, "has no ['weightlake.arch', 'weightlake.model'] entries"),
                          (bad, "not a readable safetensors file")):
        result = CliRunner().invoke(main, ["ingest", "safetensors", str(path), "--lake", str(target)])
        assert result.exit_code == 1 and message in result.output and path.name in result.output, result.output
        assert "Traceback" not in result.output
    assert tree_state(target) == before


def _with_model_fields(src: Path, dst: Path, **fields: object) -> Path:
    """A copy of an exported file whose ``weightlake.model`` header entry has ``fields`` changed."""
    from safetensors import safe_open

    with safe_open(str(src), framework="numpy") as fh:
        header = dict(fh.metadata())
    model = {**json.loads(header["weightlake.model"]), **fields}
    header["weightlake.model"] = json.dumps(model)
    st.save_file(st.load_file(str(src)), str(dst), metadata=header)
    return dst


@pytest.mark.parametrize(("fields", "message"), [
    ({"init": "kaiming_unifrom"}, "initialisation 'kaiming_unifrom' is not one of"),
    ({"activation": "swish"}, "activation 'swish' is not one of"),
    ({"epoch": -1}, "epoch -1 is not a non-negative integer"),
    ({"epoch": 2.5}, "epoch 2.5 is not a non-negative integer"),
    ({"accuracy": 150.0}, "accuracy 150.0 is not a percentage in 0..100"),
    ({"accuracy": "high"}, "accuracy 'high' is not a percentage"),
    ({"classes": [3, 3]}, "classes [3, 3] are not distinct digits 0..9"),
    ({"classes": [12]}, "classes [12] are not distinct digits 0..9"),
    ({"classes": ["x"]}, "classes ['x'] are not a list of digits"),
])
def test_header_fields_are_checked(real_lake_dir: Path, tmp_path: Path, tree_state, fields, message) -> None:
    """The header's init, activation, epoch, accuracy and classes are checked as CSV and checkpoint
    ingestion check theirs (these once went into the lake as written)."""
    out = tmp_path / "m"
    _export(real_lake_dir, out)
    target = tmp_path / "lake"
    shutil.copytree(real_lake_dir, target)
    before = tree_state(target)
    bad = _with_model_fields(sorted(out.glob("*.safetensors"))[0], tmp_path / "bad model.safetensors", **fields)
    result = CliRunner().invoke(main, ["ingest", "safetensors", str(bad), "--lake", str(target)])
    assert result.exit_code == 1 and message in result.output and "bad model.safetensors" in result.output, \
        result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert tree_state(target) == before


def test_files_of_two_zoos_are_not_put_in_one_without_being_asked(real_lake_dir: Path, tmp_path: Path,
                                                                    tree_state) -> None:
    """Was: without --zoo every file went into the zoo its first file named, relabelling the other
    zoo's models (same architecture, so nothing else stopped it)."""
    runner = _export(real_lake_dir, tmp_path / "models")
    scratch = tmp_path / "scratch"
    assert runner.invoke(main, ["ingest", "safetensors", str(tmp_path / "models"), "--zoo", "fmnist-copy",
                                "--lake", str(scratch)]).exit_code == 0
    assert runner.invoke(main, ["export", "safetensors", "--zoo", "fmnist-copy", "-o", str(tmp_path / "models"),
                                "--lake", str(scratch)]).exit_code == 0
    target = tmp_path / "lake"
    result = runner.invoke(main, ["ingest", "safetensors", str(tmp_path / "models"), "--lake", str(target)])
    assert result.exit_code == 1 and "name several zoos: 'fmnist' (24 files), 'fmnist-copy' (24 files)" in \
        result.output, result.output
    assert not target.exists()
    one = sorted((tmp_path / "models").glob("fmnist-copy-*.safetensors"))
    result = runner.invoke(main, ["ingest", "safetensors", *map(str, one), "--lake", str(target)])
    assert result.exit_code == 0 and "added 24 models to zoo 'fmnist-copy'" in result.output, result.output


def _early_stopped_tree(root: Path) -> None:
    """Layout A: '[0, 1]/relu' stopped at epoch 19 ('checkpoint epoch -1.pth'), so bins 21-36 hold its
    epoch-19 weights (fallback); '[2, 5, 7]/relu' ends in a 'checkpoint.pth' of unknown epoch."""
    import torch

    from weightlake.arch import CNN_S

    rng = np.random.default_rng(3)
    for folder, files in (("[0, 1]/relu", {"checkpoint epoch 11.pth": 11, "checkpoint epoch 16.pth": 16,
                                           "checkpoint epoch -1.pth": 19}),
                          ("[2, 5, 7]/relu", {"checkpoint epoch 11.pth": 11, "checkpoint.pth": None})):
        (root / folder).mkdir(parents=True)
        for name, epoch in files.items():
            flat = rng.standard_normal(CNN_S.n_params).astype(np.float32)
            obj: dict[str, object] = {"model_state_dict": {k: torch.from_numpy(v.copy())
                                                           for k, v in CNN_S.flat_to_state_dict(flat).items()}}
            if epoch is not None:
                obj["epoch"] = epoch
            torch.save(obj, root / folder / name)


def test_actual_epoch_survives_the_round_trip(tmp_path: Path) -> None:
    """Was: the files did not carry actual_epoch, so an early-stopped model's fallback rows came back
    without the epoch their weights are from."""
    from weightlake.ingest.checkpoints import ingest_checkpoints

    _early_stopped_tree(tmp_path / "check points [A]")
    source = tmp_path / "lake"
    ingest_checkpoints(source, tmp_path / "check points [A]", zoo="z", init="normal", workers=1)
    runner = _export(source, tmp_path / "models")
    result = runner.invoke(main, ["ingest", "safetensors", str(tmp_path / "models"), "--lake", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    cols = ["classes", "epoch", "actual_epoch", "fallback", "weights_hash"]
    a = wl.open_lake(source).models("z").collect().sort("model_id").select(cols)
    b = wl.open_lake(tmp_path / "b").models("z").collect().sort("model_id").select(cols)
    assert a.equals(b)
    assert (19, True) in set(zip(a["actual_epoch"], a["fallback"], strict=True))  # the case that was lost
    assert a["actual_epoch"].null_count() > 0  # and the unknown epoch stays unknown


@pytest.mark.parametrize("value", [-1, 2.5, "19", True])
def test_a_bad_actual_epoch_in_the_header_is_refused(tmp_path: Path, value: object) -> None:
    from weightlake.ingest.checkpoints import ingest_checkpoints

    _early_stopped_tree(tmp_path / "tree")
    ingest_checkpoints(tmp_path / "lake", tmp_path / "tree", zoo="z", init="normal", workers=1)
    _export(tmp_path / "lake", tmp_path / "m")
    bad = _with_model_fields(sorted((tmp_path / "m").glob("*.safetensors"))[0], tmp_path / "bad model.safetensors",
                             actual_epoch=value)
    result = CliRunner().invoke(main, ["ingest", "safetensors", str(bad), "--lake", str(tmp_path / "b")])
    assert result.exit_code == 1 and f"actual_epoch {value!r} is not a non-negative integer" in result.output, \
        result.output
    assert "Traceback" not in result.output and not (tmp_path / "b").exists()
