"""Checkpoint loading and config inference: prefixes, report names, heads, unsafe files."""

from __future__ import annotations

import builtins
import json
import pickle
from pathlib import Path

import pytest
import torch

from weightlake.errors import ArchitectureError, HeadsUnknownError, IngestError, UnsafeFileError
from weightlake.experiments.infer import (
    canonical_state_dict,
    default_heads,
    find_sidecar,
    heads_from_run_dir,
    infer_config,
    load_checkpoint,
    load_merger,
    parse_checkpoint_name,
)
from weightlake.experiments.merger import MergerConfig, TransformerAE

GATED = MergerConfig(d_model=24, n_heads=6, d_ff=48, n_layers=2, neck=12, gated_attention=True)
PER_TOKEN = MergerConfig(d_model=16, n_heads=2, d_ff=16, n_layers=1, neck=8, output_head="per_token")



@pytest.fixture(scope="module")
def gated_sd() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return TransformerAE(GATED).state_dict()


@pytest.fixture(scope="module")
def per_token_sd() -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    return TransformerAE(PER_TOKEN).state_dict()


class Payload:
    """Pickles to a call of ``open(marker, "w")``: loading it fully creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204 - pickle protocol
        return (builtins.open, (str(self.marker), "w"))


# -- shapes -> config ----------------------------------------------------------------

def test_infers_every_shape_field(gated_sd, per_token_sd) -> None:
    config, prov = infer_config(gated_sd, heads=6)
    assert config == GATED
    assert prov["heads"] == "option" and prov["d_ff"].startswith("shape of")
    config, _ = infer_config(per_token_sd, heads=2)
    assert config == PER_TOKEN


@pytest.mark.parametrize("prefix", ["_orig_mod.", "module.", "module._orig_mod.", "_orig_mod.module."])
def test_strips_wrapper_prefixes(gated_sd, prefix: str) -> None:
    config, prov = infer_config({prefix + k: v for k, v in gated_sd.items()}, heads=6)
    assert config == GATED
    assert prov["prefix"] == f"stripped {prefix!r}"


def test_real_wrappers_give_the_prefixes_stripped(gated_sd) -> None:
    model = TransformerAE(GATED)
    compiled = torch.compile(model, backend="eager")  # no C++ toolchain needed for the key layout
    assert all(k.startswith("_orig_mod.") for k in compiled.state_dict())
    parallel = torch.nn.DataParallel(model)
    assert all(k.startswith("module.") for k in parallel.state_dict())
    assert infer_config(parallel.state_dict(), heads=6)[0] == GATED


def test_report_embedder_names_and_unused_stack_are_accepted(gated_sd) -> None:
    renames = {"embed.neuron_16.": "embed.neuron_1l.", "embed.neuron_80.": "embed.neuron_12."}
    sd = {}
    for key, value in gated_sd.items():
        for old, new in renames.items():
            key = key.replace(old, new)
        sd[key] = value
    sd["stack.weight"], sd["stack.bias"] = torch.zeros(12, 2 * 48 * 50), torch.zeros(12)
    config, prov = infer_config(sd, heads=6)
    assert config == GATED
    assert "enc_1.embed.neuron_1l -> enc_1.embed.neuron_16" in prov["renamed"]
    assert prov["ignored"] == "stack.weight, stack.bias"
    canonical, _ = canonical_state_dict(sd)
    assert torch.equal(canonical["enc_2.embed.neuron_80.weight"], gated_sd["enc_2.embed.neuron_80.weight"])


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda sd: sd.pop("enc_2.layers.1.ff.linear_1.bias"), "missing keys.*enc_2.layers.1.ff.linear_1.bias"),
        (lambda sd: sd.__setitem__("enc_1.extra.weight", torch.zeros(2)), "unexpected keys.*enc_1.extra.weight"),
        (lambda sd: sd.__setitem__("dec.layers.0.ff.linear_2.bias", torch.zeros(5)), "wrong shapes.*linear_2.bias"),
        (lambda sd: sd.pop("vec2neck.weight"), "missing key 'vec2neck.weight'"),
        (lambda sd: sd.pop("dec.layers.1.norm_1.alpha"), "missing keys"),
    ],
    ids=["missing", "unexpected", "shape", "no-neck", "fewer-decoder-layers"],
)
def test_mismatching_state_dicts_are_refused(gated_sd, edit, match: str) -> None:
    sd = dict(gated_sd)
    edit(sd)
    with pytest.raises(ArchitectureError, match=match):
        infer_config(sd, heads=6)


def test_not_a_merger_state_dict() -> None:
    with pytest.raises(ArchitectureError, match="merging-model state_dict"):
        infer_config(torch.nn.Linear(3, 2).state_dict())


# -- heads ---------------------------------------------------------------------------

def test_heads_sources_in_order(gated_sd, tmp_path: Path) -> None:
    sidecar = tmp_path / "config.json"
    sidecar.write_text(json.dumps({"heads": 3, "N": 2, "lr": 1e-4}))
    assert infer_config(gated_sd, 6, sidecar, "run_h2")[0].n_heads == 6
    config, prov = infer_config(gated_sd, None, sidecar, "run_h2")
    assert (config.n_heads, prov["heads"]) == (3, "sidecar") and str(sidecar) in prov["heads_detail"]
    config, prov = infer_config(gated_sd, None, None, "sweep/run_h2")
    assert (config.n_heads, prov["heads"]) == (2, "run_dir_name")
    config, prov = infer_config(gated_sd, assume_heads=6)
    assert (config.n_heads, prov["heads"]) == (6, "assumed") and "--assume-heads 6" in prov["heads_detail"]
    assert infer_config(gated_sd, None, None, "run_h2", assume_heads=6)[1]["heads"] == "run_dir_name"


def test_a_headwise_gate_records_its_head_count_and_kind() -> None:
    """A head-wise gate has one row per head: its shape says both the gate kind and the heads."""
    torch.manual_seed(2)
    headwise = MergerConfig(d_model=24, n_heads=4, d_ff=48, n_layers=1, neck=12, gated_attention=True, gate="headwise")
    config, prov = infer_config(TransformerAE(headwise).state_dict())
    assert config == headwise and prov["heads"] == "shape" and "4 rows" in prov["gate"]
    assert infer_config(TransformerAE(GATED).state_dict(), heads=6)[0].gate == "elementwise"
    with pytest.raises(ArchitectureError):  # a stated head count the shape contradicts
        infer_config(TransformerAE(headwise).state_dict(), heads=2)


def test_unknown_heads_are_refused_with_how_to_give_them(gated_sd) -> None:
    """2- and 3-head checkpoints were evaluated as 4 heads (the default) with no mark anywhere."""
    with pytest.raises(HeadsUnknownError, match=r"not recorded.*--heads N.*n_heads.*run_h4.*--assume-heads N"):
        infer_config(gated_sd)
    with pytest.raises(ArchitectureError, match="does not divide"):
        infer_config(gated_sd, assume_heads=5)


def test_default_heads_is_only_a_suggestion() -> None:
    assert (default_heads(16), default_heads(6), default_heads(7)) == (4, 2, 1)


@pytest.mark.parametrize(
    ("name", "heads"),
    [("run_h8", 8), ("heads8", 8), ("heads=8", 8), ("d256-n_heads-4-N2", 4), ("sweep_H2/lr3", 2),
     ("h4/run_h8", 8), ("depth8", None), ("high8", None), ("h2o", None), ("run_h2_h4", None), ("plain", None)],
)
def test_heads_from_run_dir(name: str, heads: int | None) -> None:
    assert heads_from_run_dir(name) == heads


def test_bad_heads_name_their_source(gated_sd) -> None:
    with pytest.raises(ArchitectureError, match="does not divide.*run folder name 'run_h5'"):
        infer_config(gated_sd, run_dir_name="run_h5")
    with pytest.raises(ArchitectureError, match="heads must be an int"):
        infer_config(gated_sd, sidecar={"n_heads": "four"})


def test_sidecar_must_agree_with_shapes(gated_sd, tmp_path: Path) -> None:
    with pytest.raises(ArchitectureError, match="d_model: sidecar says 32, tensors say 24"):
        infer_config(gated_sd, sidecar={"d_model": 32, "n_heads": 6})
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    with pytest.raises(IngestError, match="config.json"):
        infer_config(gated_sd, sidecar=bad)


def test_find_sidecar_order(tmp_path: Path) -> None:
    ckpt = tmp_path / "AE epoch mse val 3.pth"
    assert find_sidecar(ckpt) is None
    for name in ("config.json", "AE epoch mse val 3.pth.json", "AE epoch mse val 3.json"):
        (tmp_path / name).write_text("{}")
        assert find_sidecar(ckpt) == tmp_path / name


# -- files ---------------------------------------------------------------------------

def test_load_checkpoint_with_extras_and_bare(gated_sd, tmp_path: Path) -> None:
    model = TransformerAE(GATED)
    model.load_state_dict(gated_sd)
    opt = torch.optim.Adam(model.parameters())
    path = tmp_path / "AE epoch mse val 3.pth"
    torch.save({"epoch": 3, "model_state_dict": gated_sd, "optimizer_state_dict": opt.state_dict(),
                "scheduler_state_dict": {"last_epoch": 3}, "train_loss": [0.5, 0.25]}, path)
    sd, extras = load_checkpoint(path)
    assert set(extras) == {"epoch", "optimizer_state_dict", "scheduler_state_dict", "train_loss"}
    assert all(torch.equal(sd[k], v) for k, v in gated_sd.items())
    bare = tmp_path / "bare.pth"
    torch.save(gated_sd, bare)
    assert load_checkpoint(bare)[1] == {}
    legacy = tmp_path / "legacy.pth"
    torch.save(gated_sd, legacy, _use_new_zipfile_serialization=False)  # not mmap-able: read whole
    assert set(load_checkpoint(legacy)[0]) == set(gated_sd)


@pytest.mark.parametrize("how", ["torch.save", "pickle.dump"])
def test_malicious_pickle_is_refused(tmp_path: Path, how: str) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "AE epoch mse val 3.pth"
    payload = {"epoch": 1, "model_state_dict": {"x": torch.zeros(1)}, "hook": Payload(marker)}
    if how == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))
    with pytest.raises(UnsafeFileError, match="refused") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
    assert not marker.exists()


def test_payload_really_is_malicious(tmp_path: Path) -> None:
    marker = tmp_path / "control"
    pickle.loads(pickle.dumps(Payload(marker)))  # full unpickling runs it: what load_checkpoint refuses
    assert marker.exists()


def test_truncated_file(gated_sd, tmp_path: Path) -> None:
    full, path = tmp_path / "full.pth", tmp_path / "AE epoch mse val 3.pth"
    torch.save({"epoch": 1, "model_state_dict": gated_sd}, full)
    path.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(IngestError, match="truncated") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and not isinstance(info.value, UnsafeFileError)


@pytest.mark.parametrize(
    ("content", "match"),
    [(b"", "empty"), (b"hello, not a checkpoint", "not a readable torch checkpoint"),
     ([1, 2, 3], "not a checkpoint"), ({"epoch": 3, "losses": [1.0]}, "not a checkpoint"),
     ({"model_state_dict": {"w": [1.0]}}, "must map str keys to tensors")],
    ids=["empty", "text", "list", "no-state-dict", "not-tensors"],
)
def test_not_a_checkpoint(tmp_path: Path, content, match: str) -> None:
    path = tmp_path / "x.pth"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    with pytest.raises(IngestError, match=match):
        load_checkpoint(path)
    with pytest.raises(IngestError, match="no such"):
        load_checkpoint(tmp_path / "missing.pth")


def test_load_merger_names_the_file_on_mismatch(gated_sd, tmp_path: Path) -> None:
    path = tmp_path / "AE epoch mse val 3.pth"
    torch.save({"model_state_dict": {k: v for k, v in gated_sd.items() if "gate" not in k or "enc_2" in k}}, path)
    # enc_1 has no gates, so the model is read as ungated and enc_2's gates are unexpected
    with pytest.raises(ArchitectureError, match=r"file '.*AE epoch mse val 3.pth'.*unexpected keys.*enc_2"):
        load_merger(path, heads=6)


# -- names ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("AE epoch mse val 3.pth", ("mse", "val", 3)),
        ("runs/AE epoch quantile loss train 120.pth", ("quantile loss", "train", 120)),
        ("AE_epoch_w_dist_val_7.pt", ("w_dist", "val", 7)),
        ("ae-epoch-mse-test-12", ("mse", "test", 12)),
        ("AE epoch 0.0123 val 40.pth", ("0.0123", "val", 40)),
        ("AE epoch val 3.pth", (None, "val", 3)),
        ("AE epoch mse 3.pth", ("mse", None, 3)),
        ("TransformerAE epoch mse best 9.pth", ("mse", "best", 9)),
        ("AE epoch initial original -1.pth", ("initial", "original", -1)),  # the untrained start (spec)
        ("AE_epoch_initial_original_-1.pth", ("initial", "original", -1)),
        ("ae-epoch-mse-val-1", ("mse", "val", 1)),  # a hyphen is the separator here, not a sign
        ("model_final.pth", (None, None, None)),
        ("AE epoch mse val.pth", (None, None, None)),
    ],
)
def test_parse_checkpoint_name(name: str, expected: tuple) -> None:
    assert tuple(parse_checkpoint_name(name).values()) == expected
