"""A ResNet zoo in the Model Zoos layout: torch ResNets with moving batch-norm statistics, folder names
with brackets and spaces, a malicious pickle and a truncated file; state_dicts round-trip exactly and a
layer read touches only that layer's chunks (bytes counted)."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import weightlake as wl
from weightlake.ingest.modelzoo import ingest_modelzoo
from weightlake.storage.tensors import count_reads
from weightlake.zoo.resnet import build_resnet, random_state_dict, resnet_shapes

NARROW = dict(widths=(4, 8, 8, 16), blocks=(2, 2, 2, 2), num_classes=10)


class _Boom:
    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):  # noqa: ANN204
        return (os.system, (f"touch {self.target}",))


def _write_run(run: Path, r: int, epochs: tuple[int, ...], state: dict[int, dict[str, torch.Tensor]]) -> None:
    run.mkdir(parents=True)
    (run / "params.json").write_text(json.dumps({"model::activation": "relu", "model::init_type": "kaiming_normal",
                                                 "optim::lr": 10.0 ** -(r + 2), "seed": r}))
    (run / "result.json").write_text("\n".join(json.dumps({"training_iteration": e, "test_acc": 0.2 + 0.1 * e,
                                                           "train_loss": 1.0 / e}) for e in epochs) + "\n")
    for e in epochs:
        (run / f"checkpoint_{e}").mkdir()
        torch.save(state[e], run / f"checkpoint_{e}" / "checkpoints")


def _resnet_tree(root: Path, runs: int = 3, epochs: tuple[int, ...] = (1, 2)) -> dict[tuple[str, int], dict]:
    """Runs of a narrow torch ResNet; each epoch one SGD-free forward pass in train mode moves the batch-norm
    statistics and counts the batch, and the weights are perturbed, as training would."""
    saved = {}
    for r in range(runs):
        torch.manual_seed(r)
        net = build_resnet(**NARROW).train()
        state = {}
        for e in epochs:
            with torch.no_grad():
                net(torch.randn(4, 3, 16, 16))
                for p in net.parameters():
                    p.add_(0.01 * torch.randn_like(p))
            state[e] = {k: v.clone() for k, v in net.state_dict().items()}
        run = root / f"NN_tune [seed={r}] lr {r}"
        _write_run(run, r, epochs, state)
        saved.update({(run.name, e): state[e] for e in epochs})
    return saved


@pytest.fixture()
def resnet_tree(tmp_path):
    root = tmp_path / "zoo [resnet]"
    saved = _resnet_tree(root)
    runs = sorted(root.iterdir())
    bad = runs[0] / "checkpoint_2" / "checkpoints"
    bad.write_bytes(pickle.dumps({"conv1.weight": _Boom(str(tmp_path / "pwned"))}))
    short = runs[1] / "checkpoint_1" / "checkpoints"
    short.write_bytes(short.read_bytes()[:900])
    del saved[(runs[0].name, 2)], saved[(runs[1].name, 1)]
    return root, saved, tmp_path / "pwned"


@pytest.mark.parametrize("layout", ["tensors", "rows"])
def test_a_resnet_zoo_round_trips_state_dicts_exactly(resnet_tree, tmp_path, layout):
    root, saved, pwned = resnet_tree
    report = ingest_modelzoo(tmp_path / "lake", root, zoo="rn", layout=layout)
    assert not pwned.exists() and report.rows_added == 4 and report.rows_rejected == 2
    assert report.extra["layout"] == layout and "batch-norm statistics" in report.extra["architecture"]
    lake = wl.open_lake(tmp_path / "lake")
    arch = lake.arch("rn")
    assert arch.is_tensor_list and len(arch.matrix_layers) == 21
    assert lake.manifest.zoo("rn").segments[0].layout == layout
    meta = lake.models("rn").collect()
    for row in meta.iter_rows(named=True):
        want = saved[(row["run_id"], row["epoch"])]
        got = lake.state_dict(row["model_id"])
        assert list(got) == list(want)
        for key, value in want.items():
            assert got[key].dtype == value.dtype and torch.equal(got[key], value), key
        net = build_resnet(**NARROW)
        net.load_state_dict(got)  # a torch module takes it as is
        assert int(got["bn1.num_batches_tracked"]) == row["epoch"]
        assert row["m_test_acc"] == pytest.approx(0.2 + 0.1 * row["epoch"])
    assert lake.runs("rn")["n_epochs"].to_list() == [1, 1, 2]
    ids = meta["model_id"].to_numpy()
    trainable = lake.weights_numpy(ids)[:, arch.trainable_mask()]
    assert trainable.shape == (4, arch.n_trainable)


def test_layer_reads_touch_only_that_layers_chunks(resnet_tree, tmp_path):
    root, saved, _ = resnet_tree
    ingest_modelzoo(tmp_path / "t", root, zoo="rn", layout="tensors")
    ingest_modelzoo(tmp_path / "r", root, zoo="rn", layout="rows")
    tensors, rows = wl.open_lake(tmp_path / "t"), wl.open_lake(tmp_path / "r")
    ids = tensors.models("rn").collect()["model_id"].to_numpy()
    arch = tensors.arch("rn")
    for key in ("layer4.1.conv2.weight", "fc.bias", "layer2.0.downsample.1.running_var", "conv1.weight"):
        size = arch.tensor(key).size * 4
        with count_reads() as count:
            got = tensors.layer(ids, key)
        assert count.bytes <= 1.2 * size * len(ids), key  # only this tensor's chunks
        with count_reads() as whole_rows:
            ref = rows.layer(ids, key)
        assert whole_rows.bytes >= len(ids) * arch.n_params * 4  # the rows layout reads whole (padded) chunks of rows
        assert torch.equal(got, ref)
        meta = tensors.models("rn").collect()
        for i, row in enumerate(meta.iter_rows(named=True)):
            assert torch.equal(got[i].to(saved[(row["run_id"], row["epoch"])][key].dtype),
                               saved[(row["run_id"], row["epoch"])][key])
    assert tensors.layer(ids, "layer1.0.conv1").shape == (4, 4, 4, 3, 3)  # a layer's weight by its module name


def test_every_reader_works_on_the_tensors_layout(resnet_tree, tmp_path):
    from click.testing import CliRunner

    from weightlake.cli import main

    root, _, _ = resnet_tree
    ingest_modelzoo(tmp_path / "t", root, zoo="rn", layout="tensors")
    ingest_modelzoo(tmp_path / "r", root, zoo="rn", layout="rows")
    tensors, rows = wl.open_lake(tmp_path / "t", memory="1MB"), wl.open_lake(tmp_path / "r")
    np.testing.assert_array_equal(np.concatenate([b for _, b in tensors.iter_weights("rn", block_rows=3)]),
                                  rows.zoo_weights("rn")[1])
    sql = "SELECT model_id, list_sum(w) AS s FROM weights ORDER BY 1"
    assert tensors.sql(sql)["s"].to_list() == pytest.approx(rows.sql(sql)["s"].to_list(), rel=1e-6)
    out = CliRunner().invoke(main, ["verify", "--lake", str(tmp_path / "t")])
    assert out.exit_code == 0, out.output


@pytest.mark.slow
def test_real_resnet18_shapes_two_models(tmp_path):
    shapes = resnet_shapes()
    rng = np.random.default_rng(0)
    saved = {}
    for r in range(2):
        sd = {k: torch.from_numpy(np.asarray(v)) for k, v in random_state_dict(shapes, rng, batches=7 + r).items()}
        _write_run(tmp_path / "zoo" / f"run {r}", r, (1,), {1: sd})
        saved[f"run {r}"] = sd
    report = ingest_modelzoo(tmp_path / "lake", tmp_path / "zoo", zoo="r18")
    assert report.rows_added == 2 and report.extra["layout"] == "tensors"  # chosen by width
    lake = wl.open_lake(tmp_path / "lake")
    arch = lake.arch("r18")
    assert arch.n_trainable == 11_689_512
    meta = lake.models("r18").collect()
    for row in meta.iter_rows(named=True):
        got = lake.state_dict(row["model_id"])
        assert all(torch.equal(got[k], v) for k, v in saved[row["run_id"]].items())
    with count_reads() as count:
        layer = lake.layer(meta["model_id"].to_numpy(), "layer4.1.conv2.weight")
    assert layer.shape == (2, 512, 512, 3, 3) and count.bytes == 2 * 512 * 512 * 9 * 4


def test_a_tensors_layout_zoo_reads_from_s3_as_from_disk(resnet_tree, tmp_path, s3_endpoint, s3_lake_url):
    """On s3:// (moto): state_dicts exact, a layer reads only its tensor's chunk objects, iter_weights streams,
    verify passes; a damaged chunk object is refused in one line naming it."""
    import boto3
    from click.testing import CliRunner

    from weightlake.cli import main
    from weightlake.errors import IntegrityError

    root, saved, _ = resnet_tree
    ingest_modelzoo(s3_lake_url, root, zoo="rn", layout="tensors")
    ingest_modelzoo(tmp_path / "r", root, zoo="rn", layout="rows")
    remote, rows = wl.open_lake(s3_lake_url, memory="1MB"), wl.open_lake(tmp_path / "r")
    assert remote.manifest.zoo("rn").segments[0].layout == "tensors"
    meta = remote.models("rn").collect()
    for row in meta.iter_rows(named=True):
        want, got = saved[(row["run_id"], row["epoch"])], remote.state_dict(row["model_id"])
        assert list(got) == list(want)
        assert all(got[k].dtype == v.dtype and torch.equal(got[k], v) for k, v in want.items())
    ids = meta["model_id"].to_numpy()
    arch = remote.arch("rn")
    for key in ("layer4.1.conv2.weight", "fc.bias", "layer2.0.downsample.1.running_var"):
        with count_reads() as count:
            got = remote.layer(ids, key)
        assert 0 < count.bytes <= 1.2 * arch.tensor(key).size * 4 * len(ids), key  # that tensor's chunks only
        assert torch.equal(got, rows.layer(ids, key))
    np.testing.assert_array_equal(np.concatenate([b for _, b in remote.iter_weights("rn", block_rows=3)]),
                                  rows.zoo_weights("rn")[1])
    np.testing.assert_array_equal(remote.weights_numpy(ids[::-1]), rows.weights_numpy(ids[::-1]))
    out = CliRunner().invoke(main, ["verify", "--lake", s3_lake_url])
    assert out.exit_code == 0, out.output
    seg = remote.manifest.zoo("rn").segments[0]
    part = next(p for p in seg.parts if p.name.startswith("t") and p.size > 1000)
    bucket, prefix = s3_lake_url[len("s3://"):].split("/", 1)
    key = f"{prefix}/{seg.path}/{part.name}/c/0/0"
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    data = bytearray(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    data[8] ^= 0xFF
    s3.put_object(Bucket=bucket, Key=key, Body=bytes(data))
    lo, hi = part.start, part.start + part.size
    with pytest.raises(IntegrityError) as err:
        wl.open_lake(s3_lake_url).columns_numpy(ids[:1], lo, hi)
    assert f"{part.name}/c/0/0" in str(err.value) and "\n" not in str(err.value)
