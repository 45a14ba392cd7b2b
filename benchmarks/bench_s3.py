"""The lake on S3 (moto's server on 127.0.0.1) against the same lake on local disk, and Dask's overhead.

In one run, alternating baseline and contender round by round:

* weight reads: a whole zoo decoded on a cold handle (``zoo_weights``) and a gather of 512
  random models (``weights_numpy``), local lake vs S3 lake (same bytes, checksums checked);
* ingest of the same CSV zoo into a local lake and into an S3 lake (staging + upload + commit);
* commit stress: two writer processes committing tables to one S3 lake with no lock, 100
  commits each on different tables (every lost race re-applied), then 25 each on one shared
  table (every lost race a reported conflict): commits lost must be 0;
* spectra of the zoo on a 2-worker ``LocalCluster`` on 127.0.0.1 vs the local run.

moto is an in-memory mock written in Python, serving from one process on the same 2 cores:
its throughput is a floor for a real object store, not an estimate of one.

Run: ``.venv/bin/python benchmarks/bench_s3.py [--labels 300] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

WRITER = r'''
import json, sys, time, polars as pl
from weightlake.errors import CommitConflictError
from weightlake.storage.transaction import transaction
root, name, n, shared = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
done, conflicts, rebased = [], 0, 0
for i in range(n):
    try:
        with transaction(root) as tx:
            tx.put_table("shared" if shared else f"{name}-{i}", pl.DataFrame({"writer": [name], "i": [i]}))
            m = tx.commit({"op": "stress", "writer": name, "round": i})
            rebased += tx.rebased
        done.append([m.version, m.file_name])
    except CommitConflictError:
        conflicts += 1
print(json.dumps({"committed": done, "conflicts": conflicts, "rebased": rebased}))
'''


def _moto() -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                      AWS_REGION="us-east-1", AWS_ALLOW_HTTP="true")
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    return proc, endpoint


def _bucket(endpoint: str, name: str) -> str:
    import boto3

    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=name)
    return f"s3://{name}/lake"


def _timed(fn) -> float:  # noqa: ANN001
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _stress(root: str, n: int, shared: bool) -> dict[str, int]:
    from weightlake.storage.snapshot import SnapshotStore

    start = SnapshotStore(root).current().version
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, root, w, str(n), "1" if shared else "0"],
                              stdout=subprocess.PIPE, text=True) for w in ("w1", "w2")]
    outs = [json.loads(p.communicate()[0]) for p in procs]
    history = SnapshotStore(root).history()
    names = {m.file_name for m in history}
    versions = sorted(v for out in outs for v, _ in out["committed"])
    lost = sum(1 for out in outs for _, name in out["committed"] if name not in names)
    return {"attempted": 2 * n, "committed": len(versions), "conflicts reported": sum(o["conflicts"] for o in outs),
            "re-applied after a lost race": sum(o["rebased"] for o in outs), "lost": lost,
            "versions contiguous": int(versions == list(range(start + 1, start + 1 + len(versions)))),
            "new versions in history": sum(1 for m in history if m.version > start)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", type=int, default=300, help="class subsets of the synthetic zoo (36 models each)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--stress", type=int, default=100, help="commits per writer on different tables")
    ap.add_argument("--spectra-labels", type=int, default=40, help="class subsets of the zoo the spectra run on")
    ap.add_argument("--big-inits", type=int, default=0,
                    help="also: spectra of a synthetic zoo of this many x 36,468 CNN-s models (9: 328,212) on a "
                         "2-worker LocalCluster vs local, built in bench-data/ and deleted afterwards")
    ap.add_argument("--only-big", action="store_true", help="run only the --big-inits and correlations parts")
    args = ap.parse_args()
    if args.big_inits:
        _big_spectra(args.big_inits, max(1, args.rounds - 1))
        _correlations(args.spectra_labels, max(1, args.rounds - 1))
        if args.only_big:
            return
    import weightlake as wl
    from weightlake.compute.analyses import analyze_spectra
    from weightlake.compute.dask_runs import analyze_spectra_dask
    from weightlake.ingest.csv_zoo import ingest_csv
    from weightlake.zoo.synthetic import all_labels, write_synthetic_csv

    print("load:", os.getloadavg())
    moto, endpoint = _moto()
    try:
        with tempfile.TemporaryDirectory(dir=".") as tmp:
            csv_path = Path(tmp) / "zoo.csv"
            n = write_synthetic_csv(csv_path, labels=all_labels()[:args.labels], seed=0)
            mb = n * 2464 * 4 / 1e6
            print(f"zoo: {n} models, {mb:.0f} MB of weights; CSV {csv_path.stat().st_size / 1e6:.0f} MB")
            ingest: dict[str, list[float]] = {"local": [], "s3": []}
            for r in range(2):
                ingest["local"].append(_timed(lambda r=r: ingest_csv(Path(tmp) / f"lake{r}", csv_path, zoo="z",
                                                                     init="kaiming_uniform")))
                url = _bucket(endpoint, f"bench-ingest-{r}")
                ingest["s3"].append(_timed(lambda url=url: ingest_csv(url, csv_path, zoo="z", init="kaiming_uniform")))
            print(f"ingest: local {min(ingest['local']):.2f} s, s3 {min(ingest['s3']):.2f} s (best of 2)")
            local, s3 = str(Path(tmp) / "lake0"), "s3://bench-ingest-0/lake"
            rng = np.random.default_rng(0)
            reads = {k: {"whole": [], "gather": []} for k in ("local", "s3")}
            for _ in range(args.rounds):
                for kind, root in (("local", local), ("s3", s3)):
                    reads[kind]["whole"].append(_timed(lambda root=root: wl.open_lake(root).zoo_weights("z")))
                    ids = rng.choice(n, min(512, n), replace=False)
                    reads[kind]["gather"].append(_timed(lambda root=root, ids=ids: wl.open_lake(root).weights_numpy(ids)))
            for kind in ("local", "s3"):
                w, g = min(reads[kind]["whole"]), min(reads[kind]["gather"])
                print(f"reads {kind:5}: whole zoo {w:.2f} s ({mb / w:.0f} MB/s), 512 random models {g * 1e3:.0f} ms")
            small_csv = Path(tmp) / "small.csv"
            n_small = write_synthetic_csv(small_csv, labels=all_labels()[:args.spectra_labels], seed=1)
            small = str(Path(tmp) / "lake-spectra")
            ingest_csv(small, small_csv, zoo="z", init="kaiming_uniform")
            spectra: dict[str, list[float]] = {"local": [], "dask": []}
            for _ in range(max(1, args.rounds - 1)):
                spectra["local"].append(_timed(lambda: analyze_spectra(small, zoo="z")))
                spectra["dask"].append(_timed(lambda: analyze_spectra_dask(small, address="local", zoo="z")))
            print(f"spectra of {n_small} rows: local {min(spectra['local']):.1f} s, 2-worker LocalCluster "
                  f"{min(spectra['dask']):.1f} s (best of {len(spectra['dask'])}, cluster start included)")
            stress_root = _bucket(endpoint, "bench-stress")
            wl.open_lake(stress_root, create=True)
            print("stress, different tables:", _stress(stress_root, args.stress, shared=False))
            print("stress, one shared table:", _stress(stress_root, 25, shared=True))
    finally:
        moto.terminate()
        moto.wait()
    print("load:", os.getloadavg())


def _big_spectra(inits: int, rounds: int) -> None:
    """Spectra of a synthetic zoo of ``inits`` x 36,468 models: local (streamed) vs a 2-worker LocalCluster."""
    import shutil

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_bounded import synthetic_lake

    from weightlake.compute.analyses import analyze_spectra
    from weightlake.compute.dask_runs import analyze_spectra_dask

    data = Path(__file__).resolve().parent.parent / "bench-data"
    print("load:", os.getloadavg(), flush=True)
    started = time.perf_counter()
    root = synthetic_lake(inits, data)
    print(f"big zoo built in {time.perf_counter() - started:.0f} s at {root}", flush=True)
    try:
        times: dict[str, list[float]] = {"local": [], "dask": []}
        for _ in range(rounds):  # alternate baseline and contender round by round
            times["local"].append(_timed(lambda: analyze_spectra(root, zoo="mnist-cnn-s")))
            print("  local", f"{times['local'][-1]:.1f} s", "load:", os.getloadavg(), flush=True)
            times["dask"].append(_timed(lambda: analyze_spectra_dask(root, address="local", zoo="mnist-cnn-s")))
            print("  dask ", f"{times['dask'][-1]:.1f} s", "load:", os.getloadavg(), flush=True)
        import weightlake as wl

        n = wl.open_lake(root).table("spectra").collect()["model_id"].n_unique()
        lo, da = min(times["local"]), min(times["dask"])
        print(f"spectra of {n} distinct models: local {lo:.1f} s ({n / lo:.0f} models/s), 2-worker LocalCluster "
              f"{da:.1f} s ({n / da:.0f} models/s), dask/local {da / lo:.2f}x (best of {rounds})", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        print("deleted", root, "load:", os.getloadavg(), flush=True)


def _correlations(labels: int, rounds: int) -> None:
    """analyze correlations (parameters and aggregates, Pearson and Spearman) local vs a 2-worker LocalCluster."""
    from weightlake.compute.analyses import analyze_correlations
    from weightlake.compute.dask_runs import analyze_correlations_dask
    from weightlake.ingest.csv_zoo import ingest_csv
    from weightlake.zoo.synthetic import all_labels, write_synthetic_csv

    with tempfile.TemporaryDirectory(dir=".") as tmp:
        csv_path = Path(tmp) / "zoo.csv"
        n = write_synthetic_csv(csv_path, labels=all_labels()[:labels], seed=2)
        root = str(Path(tmp) / "lake")
        ingest_csv(root, csv_path, zoo="z", init="kaiming_uniform")
        opts = {"zoo": "z", "against": ["accuracy", "epoch", "activation"]}
        times: dict[str, list[float]] = {"local": [], "dask": []}
        for _ in range(rounds):
            times["local"].append(_timed(lambda: analyze_correlations(root, **opts)))
            times["dask"].append(_timed(lambda: analyze_correlations_dask(root, address="local", **opts)))
        lo, da = min(times["local"]), min(times["dask"])
        print(f"correlations of {n} rows (params + aggregates, pearson + spearman): local {lo:.1f} s, 2-worker "
              f"LocalCluster {da:.1f} s, dask/local {da / lo:.2f}x (best of {rounds}); load: {os.getloadavg()}",
              flush=True)


if __name__ == "__main__":
    main()
