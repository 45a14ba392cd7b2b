"""A ResNet-18-shaped zoo in the Model Zoos layout: ingest, one layer of every model, spectra per layer.

Writes ``--runs`` runs x ``--epochs`` checkpoints of torchvision resnet18's shapes (random weights,
batch-norm statistics and ``num_batches_tracked`` included; 46.8 MB a checkpoint) in the Model Zoos
layout, a batch of ``--batch`` runs at a time (then deleted, so the checkpoints never take more than
one batch of disk), and ingests each batch in fresh child processes into two lakes: the ``tensors``
layout (the default for this width) and the old ``rows`` layout as the baseline, alternating which
goes first batch by batch.  Then, in fresh children, layouts alternated round by round:

* ``lake.layer(all_ids, "layer4.1.conv2.weight")``: bytes read (counted by
  ``tensors.count_reads``) against the layer's size x models, time, peak RSS (VmHWM);
* ``lake.state_dict(id)`` under a 16 MB memory budget: bytes read, peak RSS;
* ``analyze spectra`` (tensors: layer by layer; rows: the whole-row streaming path): time, peak RSS;
* ``analyze topology --layers fc --no-h1 --no-cubical`` under a 1 GB budget: time, peak RSS
  (``--before DIR`` adds the tensors lake under an earlier checkout's code).

Every figure comes from the same run; the generated data is deleted at the end (``--keep`` keeps it).

    .venv/bin/python benchmarks/bench_resnet_zoo.py --runs 64 --epochs 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import run_child  # noqa: E402

DATA = Path("bench-data/resnet-zoo")
LAYER = "layer4.1.conv2.weight"
MIN_FREE = 4e9
"""Stop adding batches when the disk has less free space than this (bytes)."""


def write_batch(root: Path, runs: range, epochs: int) -> int:
    """Runs ``runs`` as Model Zoos folders under ``root``; returns the bytes written."""
    import torch

    from weightlake.zoo.resnet import random_state_dict, resnet_shapes

    shapes = resnet_shapes()
    total = 0
    for r in runs:
        rng = np.random.default_rng(r)
        run = root / f"NN_tune_trainable_{r:05d} [seed={r}]"
        run.mkdir(parents=True)
        (run / "params.json").write_text(json.dumps({"model::type": "resnet18", "model::activation": "relu",
                                                     "model::init_type": "kaiming_normal", "seed": r,
                                                     "optim::lr": 0.1, "training::batchsize": 128}))
        lines = [json.dumps({"training_iteration": e, "test_acc": 0.3 + 0.1 * e, "train_loss": 2.0 / e})
                 for e in range(1, epochs + 1)]
        (run / "result.json").write_text("\n".join(lines) + "\n")
        for e in range(1, epochs + 1):
            sd = {k: torch.from_numpy(np.asarray(v)) for k, v in random_state_dict(shapes, rng, 390 * e).items()}
            (run / f"checkpoint_{e}").mkdir()
            torch.save(sd, run / f"checkpoint_{e}" / "checkpoints")
            total += (run / f"checkpoint_{e}" / "checkpoints").stat().st_size
    return total


INGEST = """
from weightlake.ingest.modelzoo import ingest_modelzoo
rep = ingest_modelzoo(sys.argv[1], sys.argv[2], zoo="r18", layout=sys.argv[3])
result = {"added": rep.rows_added, "rejected": rep.rows_rejected}
"""

LAYER_READ = """
import torch  # imported before the clock starts: the read is timed, not torch's import
import weightlake as wl
from weightlake.storage.tensors import count_reads
lake = wl.open_lake(sys.argv[1], memory="2GB")
ids = lake.zoo_ids("r18")
start, stop, _ = lake.arch("r18").locate(sys.argv[2])
t0 = time.perf_counter()
with count_reads() as c:
    x = lake.layer(ids, sys.argv[2])
result = {"read_s": time.perf_counter() - t0, "bytes": c.bytes, "chunks": c.chunks, "models": int(ids.size),
          "layer_bytes": (stop - start) * 4, "shape": list(x.shape)}
"""

STATE_DICT = """
import weightlake as wl
from weightlake.storage.tensors import count_reads
lake = wl.open_lake(sys.argv[1], memory="16MB")
ids = lake.zoo_ids("r18")
with count_reads() as c:
    sd = lake.state_dict(int(ids[len(ids) // 2]))
result = {"bytes": c.bytes, "tensors": len(sd), "model_bytes": lake.arch("r18").n_params * 4}
"""

SPECTRA = """
from weightlake.compute.analyses import analyze_spectra
from weightlake.storage.tensors import count_reads
with count_reads() as c:
    rep = analyze_spectra(sys.argv[1], zoo="r18", memory="1GB")
result = {"rows": rep.rows, "models": rep.n_models, "bytes": c.bytes}
"""


TOPOLOGY = """
from weightlake.compute.topology import analyze_topology
kw = {"memory": "1GB"} if "memory" in analyze_topology.__code__.co_varnames else {}  # a --before checkout may lack it
rep = analyze_topology(sys.argv[1], zoo="r18", layers=["fc"], h1=False, cubical=False, **kw)
result = {"rows": rep.rows, "models": rep.models}
"""


def free_bytes() -> int:
    st = os.statvfs(DATA)
    return st.f_bavail * st.f_frsize


def ingest_all(runs: int, epochs: int, batch: int) -> dict[str, object]:
    lakes = {"tensors": DATA / "lake-tensors", "rows": DATA / "lake-rows"}
    figures: dict[str, dict[str, list[float]]] = {k: {"seconds": [], "peak_gb": [], "cpu_s": []} for k in lakes}
    written, gen_s, done = 0, 0.0, 0
    for i, first in enumerate(range(0, runs, batch)):
        need = 3 * batch * epochs * 47e6
        if free_bytes() < need + MIN_FREE:
            print(f"stopping after {done} runs: {free_bytes() / 1e9:.1f} GB free", file=sys.stderr)
            break
        src = DATA / f"batch-{i}"
        t = time.perf_counter()
        written += write_batch(src, range(first, min(first + batch, runs)), epochs)
        gen_s += time.perf_counter() - t
        order = list(lakes) if i % 2 == 0 else list(reversed(lakes))  # alternate who goes first
        for kind in order:
            got = run_child(INGEST, str(lakes[kind]), str(src), kind)
            for key in figures[kind]:
                figures[kind][key].append(got[key])
        shutil.rmtree(src)
        done = min(first + batch, runs)
        print(f"ingested runs {first}..{done - 1} (load {os.getloadavg()[0]:.1f})", file=sys.stderr)
    models = done * epochs
    out: dict[str, object] = {"runs": done, "models": models, "checkpoint_gb": round(written / 1e9, 2),
                              "generate_s": round(gen_s, 1)}
    for kind, f in figures.items():
        out[f"ingest_{kind}"] = {"seconds": round(sum(f["seconds"]), 1), "cpu_s": round(sum(f["cpu_s"]), 1),
                                 "peak_rss_gb": round(max(f["peak_gb"]), 3),
                                 "ms_per_model": round(1000 * sum(f["seconds"]) / max(models, 1), 1),
                                 "lake_gb": round(_du(lakes[kind]) / 1e9, 2)}
    return out


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def measure(rounds: int, parts: list[str], before: str | None = None) -> dict[str, object]:
    lakes = {"tensors": DATA / "lake-tensors", "rows": DATA / "lake-rows"}
    out: dict[str, object] = {}
    for name, code, args, n in (("layer", LAYER_READ, (LAYER,), rounds), ("state_dict", STATE_DICT, (), 1),
                                ("spectra", SPECTRA, (), 1), ("topology", TOPOLOGY, (), rounds)):
        if name not in parts:
            continue
        # topology: both layouts, and with --before the tensors lake under that checkout's code too
        runs = {k: (v, None) for k, v in lakes.items()}
        if name == "topology" and before:
            runs["tensors (before)"] = (lakes["tensors"], {**os.environ, "PYTHONPATH": before})
        best: dict[str, dict[str, object]] = {}
        for r in range(n):
            for kind in (list(runs) if r % 2 == 0 else list(reversed(runs))):
                lake, env = runs[kind]
                got = run_child(code, str(lake), *args, env=env)
                if kind not in best or got["seconds"] < best[kind]["seconds"]:
                    best[kind] = got
        out[name] = best
        print(f"measured {name} (load {os.getloadavg()[0]:.1f})", file=sys.stderr)
    for got in out.get("layer", {}).values():  # type: ignore[union-attr]
        got["x_layer"] = round(got["bytes"] / (got["layer_bytes"] * got["models"]), 4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8, help="Runs written (and ingested) at a time.")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--keep", action="store_true", help="Keep the generated lakes.")
    ap.add_argument("--parts", default="layer,state_dict,spectra,topology",
                    help="Comma list of the measurements after ingest.")
    ap.add_argument("--before", help="A checkout of earlier code: `topology` also runs under it (PYTHONPATH).")
    a = ap.parse_args()
    if DATA.exists():
        shutil.rmtree(DATA)
    DATA.mkdir(parents=True)
    load = os.getloadavg()
    try:
        figures = {"benchmark": "resnet_zoo", "load_start": [round(x, 2) for x in load], **ingest_all(
            a.runs, a.epochs, a.batch), **measure(a.rounds, a.parts.split(","), a.before), "load_end": [round(x, 2) for x in os.getloadavg()]}
        print(json.dumps(figures, indent=1))
    finally:
        if not a.keep:
            shutil.rmtree(DATA, ignore_errors=True)


if __name__ == "__main__":
    main()
