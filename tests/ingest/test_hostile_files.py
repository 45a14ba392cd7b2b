"""Hostile files cost bounded memory and are refused with a reason: a checkpoint zip bomb, a
storage with extra bytes, a scenario .npy declaring a huge shape, symlinks out of the tree."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from weightlake.arch import CNN_S
from weightlake.errors import IngestError
from weightlake.ingest.checkpoints import _load_checkpoint, scan_checkpoint_tree
from weightlake.zoo.cnn import build_cnn


def save_real(path: Path) -> None:
    torch.manual_seed(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": 11, "model_state_dict": build_cnn(activation="relu").state_dict()}, path)


def rewrite_zip(src: Path, dst: Path, *, append: dict[str, bytes]) -> None:
    """Copy a torch zip, appending bytes to the named entries."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info, zin.read(info) + append.get(info.filename, b""))


def storage_entry(path: Path) -> str:
    with zipfile.ZipFile(path) as zf:
        return sorted(n for n in zf.namelist() if "/data/" in n)[0]


@pytest.mark.slow
def test_zip_bomb_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    good = tmp_path / "good.pth"
    save_real(good)
    bomb = tmp_path / "bomb.pth"
    # a deflated entry of 2 GiB of zeros: about 2 MB on disk
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED,
                                                      compresslevel=1) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info))
        block = bytes(16 << 20)
        with zout.open("archive/data/junk", "w", force_zip64=True) as fh:
            for _ in range(128):
                fh.write(block)
    assert bomb.stat().st_size < 20 << 20
    # VmHWM is this process's own peak (ru_maxrss would include the parent's size at fork)
    code = ("import json, sys\n"
            "from weightlake.arch import CNN_S\n"
            "from weightlake.ingest.checkpoints import _load_checkpoint\n"
            "flat, epoch, reason = _load_checkpoint(sys.argv[1], CNN_S)\n"
            "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
            "print(json.dumps({'ok': flat is not None, 'reason': reason, 'peak_mb': int(hwm.split()[1]) / 1024}))\n")
    out = subprocess.run([sys.executable, "-c", code, str(bomb)], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert not result["ok"] and "over the" in result["reason"] and "nothing was read" in result["reason"]
    assert result["peak_mb"] < 500, result


def test_storage_with_extra_bytes_is_refused(tmp_path: Path) -> None:
    good = tmp_path / "good.pth"
    save_real(good)
    bad = tmp_path / "extra.pth"
    rewrite_zip(good, bad, append={storage_entry(good): b"\0" * 16})
    flat, _, reason = _load_checkpoint(str(bad), CNN_S)
    assert flat is None and "declares" in reason
    flat, epoch, reason = _load_checkpoint(str(good), CNN_S)
    assert flat is not None and epoch == 11 and reason is None


def test_budget_can_be_raised_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = tmp_path / "good.pth"
    save_real(good)
    monkeypatch.setenv("WEIGHTLAKE_MAX_CHECKPOINT_MB", "0.001")
    flat, _, reason = _load_checkpoint(str(good), CNN_S)
    assert flat is None and "WEIGHTLAKE_MAX_CHECKPOINT_MB" in reason


def test_symlinks_out_of_the_tree_are_refused_unless_asked(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    save_real(outside / "checkpoint epoch 11.pth")
    root = tmp_path / "checkpoints"
    act = root / "[0, 1]" / "relu"
    save_real(act / "checkpoint epoch 16.pth")
    (act / "checkpoint epoch 11.pth").symlink_to(outside / "checkpoint epoch 11.pth")
    (root / "[2, 3]").mkdir()
    (root / "[2, 3]" / "relu").symlink_to(outside, target_is_directory=True)
    files = scan_checkpoint_tree(root, init="kaiming_uniform")
    rejected = {f.relpath: f.reject for f in files if f.reject}
    assert set(rejected) == {"[0, 1]/relu/checkpoint epoch 11.pth", "[2, 3]/relu"}
    assert all("outside the ingested tree" in r for r in rejected.values())
    followed = scan_checkpoint_tree(root, init="kaiming_uniform", follow_symlinks=True)
    assert not any(f.reject for f in followed) and len(followed) == 3
    inside = root / "[4, 5]"
    inside.symlink_to(root / "[0, 1]", target_is_directory=True)  # a link within the tree is fine
    again = scan_checkpoint_tree(root, init="kaiming_uniform")
    assert {f.relpath for f in again if f.reject} == {*rejected, "[4, 5]/relu/checkpoint epoch 11.pth"}
    assert "[4, 5]/relu/checkpoint epoch 16.pth" in {f.relpath for f in again if not f.reject}


@pytest.mark.parametrize("shape", [f"({10**12}, 4)", f"({2**62}, {2**62})", "(5, 4)"])
def test_npy_with_a_shape_its_bytes_cannot_hold_is_refused(tmp_path: Path, shape: str) -> None:
    from weightlake.ingest.scenarios_npy import load_npy_restricted

    path = tmp_path / "pairs.npy"
    np.save(path, np.arange(8, dtype=np.int64).reshape(2, 4))
    data = path.read_bytes()
    header_end = data.index(b"\n") + 1
    header = data[:header_end].decode("latin1").replace("(2, 4)", shape)
    header = header[:-1].ljust(header_end - 1) + "\n" if len(header) <= header_end else header
    path.write_bytes(header.encode("latin1") + data[header_end:])
    with pytest.raises(IngestError, match="declares an array of shape"):
        load_npy_restricted(path)


def test_npy_object_array_declaring_more_elements_than_bytes_is_refused(tmp_path: Path) -> None:
    from weightlake.ingest.scenarios_npy import load_npy_restricted

    path = tmp_path / "pairs.npy"
    arr = np.empty((1, 4), dtype=object)
    arr[0] = [[0, 1], [2, 3], 0, 1]
    np.save(path, arr, allow_pickle=True)
    data = path.read_bytes()
    header_end = data.index(b"\n") + 1
    header = data[:header_end].decode("latin1").replace("(1, 4)", f"({10**9}, 4)")
    path.write_bytes(header[:-1].ljust(header_end - 1).encode("latin1") + b"\n" + data[header_end:])
    with pytest.raises(IngestError, match="declares an array of shape"):
        load_npy_restricted(path)
