"""Which weight layout lets one layer of many models read alone: per-tensor arrays or 2-D chunks.

Three layouts of the same rows, written with the package's writers (rows, tensors) or plain
zarr (2-D chunks of one row x W columns, W = 2**18 and 2**20 values: a regular grid cannot
follow tensor boundaries, so a tensor reads every column chunk it overlaps):

* ResNet-18 shapes (11.7M values a model, ``--models`` models): bytes read and wall time
  of ``layer4.1.conv2.weight``, ``fc.bias`` and ``layer1.0.bn1.running_mean`` of every
  model, and of one whole model;
* CNN-s (2,464 values, ``--cnn-models`` models): the whole zoo decoded (what serving and SQL
  read) and one layer of every model, rows vs tensors.

Bytes are counted (``tensors.count_reads``) for the package's layouts and computed from the
chunk grid for the 2-D layouts; times are best of ``--rounds``, layouts alternated round by round.

    .venv/bin/python benchmarks/bench_layer_layout.py --models 8 --cnn-models 36468
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from weightlake.arch import CNN_S, infer_architecture
from weightlake.storage.parts import PartsReader, PartsWriter
from weightlake.storage.tensors import SegmentReader, count_reads, read_all, read_rows, write_segment
from weightlake.zoo.resnet import random_state_dict, resnet_shapes

DATA = Path("bench-data/layout")
KEYS = ("layer4.1.conv2.weight", "fc.bias", "layer1.0.bn1.running_mean")


def _resnet_rows(n: int) -> tuple[object, np.ndarray]:
    shapes = resnet_shapes()
    arch = infer_architecture(shapes)
    rng = np.random.default_rng(0)
    rows = np.stack([arch.state_dict_to_flat(random_state_dict(shapes, rng)) for _ in range(n)])
    return arch, rows


def _write_all(root: Path, arch: object, rows: np.ndarray) -> dict[str, object]:
    import zarr

    root.mkdir(parents=True, exist_ok=True)
    n, cols = rows.shape
    out: dict[str, object] = {}
    write_segment(root / "rows.zarr", rows, cols)
    out["rows"] = zarr.open_array(str(root / "rows.zarr"), mode="r").chunks[0]
    writer = PartsWriter(root / "tensors.zarr", cols, [(t.start, t.size) for t in arch.tensors], rows_hint=n)
    writer.append(rows)
    writer.close()
    out["tensors"] = writer
    for w in (2**18, 2**20):
        arr = zarr.create_array(str(root / f"grid{w}.zarr"), shape=(n, cols), chunks=(1, w), dtype="float32",
                                compressors=None, fill_value=0.0)
        arr[:] = rows
        out[f"grid{w}"] = w
    return out


def _readers(root: Path, made: dict[str, object], n: int, cols: int) -> dict[str, object]:
    import zarr

    writer = made["tensors"]
    return {
        "rows": lambda lo, hi, idx: read_rows(root / "rows.zarr", n, cols, idx)[:, lo:hi],
        "tensors": lambda lo, hi, idx: PartsReader(root / "tensors.zarr", n, cols, writer.parts).read_columns(
            idx, lo, hi),
        **{k: (lambda lo, hi, idx, a=zarr.open_array(str(root / f"{k}.zarr"), mode="r"): a.oindex[idx, lo:hi])
           for k in made if k.startswith("grid")},
    }


def _bytes(kind: str, made: dict[str, object], lo: int, hi: int, idx: np.ndarray, cols: int,
           fn: object) -> tuple[int, float]:
    t = time.perf_counter()
    if kind.startswith("grid"):
        w = int(made[kind])
        fn(lo, hi, idx)
        chunks = (hi - 1) // w - lo // w + 1
        return chunks * w * 4 * idx.size, time.perf_counter() - t
    with count_reads() as count:
        fn(lo, hi, idx)
    return count.bytes, time.perf_counter() - t


def resnet(models: int, rounds: int) -> dict[str, object]:
    arch, rows = _resnet_rows(models)
    n, cols = rows.shape
    root = DATA / "resnet"
    made = _write_all(root, arch, rows)
    readers = _readers(root, made, n, cols)
    del rows
    out: dict[str, object] = {"models": n, "values_per_model": cols}
    cases = {key: arch.locate(key)[:2] for key in KEYS}
    cases["whole model"] = (0, cols)
    for name, (lo, hi) in cases.items():
        idx = np.arange(n) if name != "whole model" else np.array([n // 2])
        best: dict[str, list[float]] = {k: [] for k in readers}
        read: dict[str, int] = {}
        for _ in range(rounds):  # layouts alternate within each round
            for kind, fn in readers.items():
                nbytes, seconds = _bytes(kind, made, lo, hi, idx, cols, fn)
                read[kind] = nbytes
                best[kind].append(seconds)
        wanted = (hi - lo) * 4 * idx.size
        out[name] = {k: {"read_mb": round(read[k] / 1e6, 3), "x_wanted": round(read[k] / wanted, 3),
                         "best_s": round(min(best[k]), 4)} for k in readers}
        out[name]["wanted_mb"] = round(wanted / 1e6, 3)
    out["files"] = {k: sum(len(f) for _, _, f in os.walk(root / f"{k}.zarr")) for k in readers}
    shutil.rmtree(root)
    return out


def cnn(models: int, rounds: int) -> dict[str, object]:
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((models, CNN_S.n_params)).astype(np.float32)
    root = DATA / "cnn"
    root.mkdir(parents=True, exist_ok=True)
    write_segment(root / "rows.zarr", rows, CNN_S.n_params)
    writer = PartsWriter(root / "tensors.zarr", CNN_S.n_params, [(t.start, t.size) for t in CNN_S.tensors],
                         rows_hint=models)
    writer.append(rows)
    writer.close()
    lo, hi, _ = CNN_S.locate("fc1")
    idx = np.arange(models)
    runs = {
        "rows": (lambda: read_all(root / "rows.zarr", models, CNN_S.n_params),
                 lambda: SegmentReader(root / "rows.zarr", models, CNN_S.n_params).read(0, models)[:, lo:hi]),
        "tensors": (lambda: read_all(root / "tensors.zarr", models, CNN_S.n_params, parts=writer.parts),
                    lambda: PartsReader(root / "tensors.zarr", models, CNN_S.n_params, writer.parts).read_columns(
                        idx, lo, hi)),
    }
    times: dict[str, dict[str, list[float]]] = {k: {"whole zoo": [], "fc1 of every model": []} for k in runs}
    read: dict[str, dict[str, int]] = {k: {} for k in runs}
    for _ in range(rounds):
        for kind, (whole, layer) in runs.items():
            for label, fn in (("whole zoo", whole), ("fc1 of every model", layer)):
                with count_reads() as count:
                    t = time.perf_counter()
                    fn()
                    times[kind][label].append(time.perf_counter() - t)
                read[kind][label] = count.bytes
    shutil.rmtree(root)
    return {"models": models, **{k: {label: {"best_s": round(min(v), 4), "read_mb": round(read[k][label] / 1e6, 2)}
                                     for label, v in times[k].items()} for k in runs}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=int, default=8)
    ap.add_argument("--cnn-models", type=int, default=36_468)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    print(json.dumps({"benchmark": "layer_layout", "load": os.getloadavg()[0],
                      "resnet18": resnet(a.models, a.rounds), "cnn_s": cnn(a.cnn_models, a.rounds)}, indent=1))


if __name__ == "__main__":
    main()
