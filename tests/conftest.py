"""Shared fixtures: small CSV zoos in the exact format and lakes built from them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

# The suite trains and runs tiny models, which are fastest on one torch thread: two threads on
# a busy 2-core machine fight (tests/dynamics + experiments: 226 s -> 104 s at load 5). Set
# before torch is first imported; subprocesses and notebook kernels inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from weightlake.zoo.idx import KNOWN_DATASETS
from weightlake.zoo.synthetic import all_labels, write_synthetic_csv


@pytest.fixture(autouse=True)
def _isolate_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the developer's WEIGHTLAKE_* settings."""
    import os

    for key in list(os.environ):
        if key.startswith("WEIGHTLAKE_"):
            monkeypatch.delenv(key)


def _tree_state(root: Path) -> dict[str, bytes]:
    """Every file below ``root`` with its bytes (the lakes in tests are a few MB)."""
    import os

    out = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = Path(dirpath) / name
            out[str(path.relative_to(root))] = path.read_bytes()
    return out


@pytest.fixture()
def tree_state():  # noqa: ANN201
    """``tree_state(root)``: every file below a lake with its bytes, to show a lake is byte-for-byte unchanged."""
    return _tree_state


@pytest.fixture(scope="session")
def small_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CSV zoo of 12 labels x 6 activations x 6 epochs = 432 rows."""
    path = tmp_path_factory.mktemp("csv") / "Merged zoo.csv"
    write_synthetic_csv(path, labels=all_labels()[:12], seed=1)
    return path


@pytest.fixture(scope="session")
def small_lake_dir(tmp_path_factory: pytest.TempPathFactory, small_csv: Path) -> Path:
    """A lake holding ``small_csv`` as zoo 'mnist-cnn-s' (read-only: do not commit to it)."""
    from weightlake.ingest.csv_zoo import ingest_csv

    root = tmp_path_factory.mktemp("lake") / "lake"
    ingest_csv(root, small_csv, zoo="mnist-cnn-s", init="kaiming_uniform")
    return root


@pytest.fixture()
def lake_copy(tmp_path: Path, small_lake_dir: Path) -> Path:
    """A private copy of the small lake that a test may change."""
    import shutil

    target = tmp_path / "lake"
    shutil.copytree(small_lake_dir, target)
    return target


@pytest.fixture(scope="session")
def analysed_lake_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lake with every derived table the named queries read, built by the library's own commands.

    Its zoo 'mnist-cnn-s' has every subset of digits 0-3 (sizes 2-4), so pair targets exist;
    scenario 't' holds its pairs, and `spectra` and `correlations` are computed.
    """
    from weightlake.compute.analyses import analyze_correlations, analyze_spectra
    from weightlake.ingest.csv_zoo import ingest_csv
    from weightlake.scenarios import declare_scenario

    base = tmp_path_factory.mktemp("analysed")
    csv_path = base / "zoo.csv"
    write_synthetic_csv(csv_path, labels=all_labels(range(4), range(2, 5)), seed=2)
    root = base / "lake"
    ingest_csv(root, csv_path, zoo="mnist-cnn-s", init="kaiming_uniform")
    declare_scenario(root, "t", zoo="mnist-cnn-s", digits=range(4), sizes=range(2, 4), overlap=(0, 2))
    analyze_spectra(root, zoo="mnist-cnn-s")
    analyze_correlations(root, zoo="mnist-cnn-s", against=["accuracy", "epoch"], features="both")
    _add_experiment_tables(root, base)
    _add_topology_tables(root)
    _add_dynamics_tables(root)
    return root


def _add_topology_tables(root: Path) -> None:
    """`topology`, `topology_groups`, `topology_group_distances` (without multipers: tested in a subprocess)
    and `topology_classes`."""
    from weightlake.compute.topology import analyze_topology, analyze_topology_classes, analyze_topology_groups

    analyze_topology(root, zoo="mnist-cnn-s")
    analyze_topology_groups(root, zoo="mnist-cnn-s", by=["classes"], degrees=())
    analyze_topology_classes(root, zoo="mnist-cnn-s", permutations=19, max_models=80)


def _add_experiment_tables(root: Path, base: Path) -> None:
    """`evaluations`, `evaluation_metrics`, `predictions` and `tracking_values` from a tiny merging model."""
    import numpy as np
    import torch

    from weightlake.experiments.evaluate import evaluate_checkpoints
    from weightlake.experiments.merger import MergerConfig, TransformerAE
    from weightlake.experiments.tracking import ingest_tracking, write_tracking_csv

    fast = ["mse", "w1", "cosine"]
    torch.manual_seed(0)
    ckpt = base / "Experiments" / "run_h2" / "AE epoch mse val 1.pth"
    ckpt.parent.mkdir(parents=True)
    torch.save({"epoch": 1, "model_state_dict": TransformerAE(MergerConfig(16, 2, 16, 1, 8)).state_dict()}, ckpt)
    evaluate_checkpoints(root, base / "Experiments", "t", "test", limit_pairs=16, images=None,
                         store_predictions=True, metrics=fast)
    rng = np.random.default_rng(0)
    gt = (rng.standard_normal((8, 2464)) * 0.1).astype(np.float32)
    write_tracking_csv(base / "Experiments" / "run_h2" / "Tracking" / "AE epoch mse 1.csv", gt,
                       (gt * 0.5).astype(np.float32), (gt * 0.9).astype(np.float32),
                       values=[("Loss", rng.random(8))], steps=rng.random((8, 2)))
    ingest_tracking(root, base / "Experiments", scenario="t", metrics=fast)


def _add_dynamics_tables(root: Path) -> None:
    """`ntk`, `super_weights` and `super_weight_sparsity` for a few models (one run at two epoch bins)."""
    if not FASHION_INSTALLED:
        return
    import polars as pl

    import weightlake as wl
    from weightlake.compute.ntk import analyze_ntk
    from weightlake.compute.superweights import analyze_super_weights

    meta = wl.open_lake(root).models("mnist-cnn-s").collect()
    run = meta.filter((pl.col("class_mask") == meta["class_mask"][0]) & (pl.col("activation") == "relu"))
    ids = [*run.sort("epoch")["model_id"][:2], *meta.filter(pl.col("activation") == "tanh")["model_id"][:1]]
    analyze_ntk(root, zoo="mnist-cnn-s", sample=None, model_ids=ids, probe_images_k=4, images="fashion-mnist")
    analyze_super_weights(root, zoo="mnist-cnn-s", sample=None, model_ids=ids, probe_images_n=40, top=2,
                          ks=(1, 5), images="fashion-mnist")


# -- a real mini zoo, trained once per session on Fashion-MNIST ---------------------------------
FASHION_INSTALLED = KNOWN_DATASETS["fashion-mnist"][0].is_dir()

SUBSETS = ([1, 8], [0, 5, 9])
ACTIVATIONS = ("relu", "tanh")
INITS = ("kaiming_uniform", "xavier_normal")
EPOCHS = 3
RECIPE = {"epochs_max": EPOCHS, "subsample": 200, "seed": 7, "checkpoint_epochs": range(EPOCHS),
          "min_accuracy": 0.0}
"""A zoo small enough for the test suite: 200 training images per class, a checkpoint every epoch."""


@dataclass
class MiniZoo:
    out: Path
    report: object
    progress: list


def _train(out: Path, layout: str, inits: tuple[str, ...], workers: int) -> MiniZoo:
    from weightlake.zoo.train import train_zoo

    calls: list = []
    report = train_zoo("fashion-mnist", out, SUBSETS, ACTIVATIONS, inits, layout=layout, workers=workers,
                       progress=lambda *args: calls.append(args), **RECIPE)
    return MiniZoo(out, report, calls)


@pytest.fixture(scope="session")
def zoo_b(tmp_path_factory: pytest.TempPathFactory) -> MiniZoo:
    """Layout B, 2 subsets x 2 activations x 2 inits, trained by a pool of 2 worker processes."""
    if not FASHION_INSTALLED:
        pytest.skip("needs dataset-fashion-mnist")
    return _train(tmp_path_factory.mktemp("zoo_b"), "b", INITS, workers=2)


@pytest.fixture(scope="session")
def zoo_a(tmp_path_factory: pytest.TempPathFactory) -> MiniZoo:
    """Layout A with the first init only, trained in this process (so it also checks pool == in-process)."""
    if not FASHION_INSTALLED:
        pytest.skip("needs dataset-fashion-mnist")
    return _train(tmp_path_factory.mktemp("zoo_a"), "a", INITS[:1], workers=1)


@pytest.fixture(scope="session")
def real_lake_dir(tmp_path_factory: pytest.TempPathFactory, zoo_b: MiniZoo) -> Path:
    """A lake of real trained models: ``zoo_b`` ingested as zoo 'fmnist' (24 models; read-only).

    2 class subsets x 2 activations x 2 inits x epochs 0-2, trained on Fashion-MNIST. Notebooks
    and analyses that need real weights use it; do not commit to it.
    """
    from weightlake.ingest.checkpoints import ingest_checkpoints

    root = tmp_path_factory.mktemp("real") / "lake"
    ingest_checkpoints(root, zoo_b.out, zoo="fmnist", bins=(0, 1, 2),
                       rejects_path=root.parent / "rejects.csv")
    return root


@pytest.fixture(scope="session")
def fashion_test() -> tuple:
    """Fashion-MNIST test images and labels."""
    if not FASHION_INSTALLED:
        pytest.skip("needs dataset-fashion-mnist")
    from weightlake.zoo.idx import load_dataset

    return load_dataset("fashion-mnist", "test")


# -- a real S3 API on loopback (moto's server mode), for lakes at s3:// --------------------------------
def _one_write_at_a_time(app):
    """moto's server with S3's atomic conditional put.

    moto answers ``PUT`` with ``If-None-Match: *`` in two steps, "does the key exist?" then
    "store it", with no lock between them, so two racing writers can both be told they created
    the same key (seen: both won version 10 of the commit log). S3 makes the pair atomic, and the
    commit log relies on that. Serialising the requests that change objects gives the mock the
    same guarantee; reads still run in parallel.
    """
    import threading

    lock = threading.Lock()

    def serialised(environ, start_response):
        if environ.get("REQUEST_METHOD") in ("PUT", "POST", "DELETE"):
            with lock:
                return list(app(environ, start_response))
        return app(environ, start_response)

    return serialised


@pytest.fixture(scope="session")
def s3_endpoint() -> str:
    """moto's S3 server on 127.0.0.1 (a free port) for the whole session; sets the AWS_* variables.

    Skips when moto or obstore are not installed (``pip install -e '.[dev]'`` installs both).
    """
    import logging
    import os
    import socket

    pytest.importorskip("obstore")
    server_mod = pytest.importorskip("moto.server")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    server._server.app = _one_write_at_a_time(server._server.app)
    endpoint = f"http://127.0.0.1:{port}"
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield endpoint
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def s3_lake_url(s3_endpoint: str) -> str:
    """A fresh bucket on the moto server; the lake root ``s3://<bucket>/lake`` (empty)."""
    import uuid

    import boto3

    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    return f"s3://{bucket}/lake"


@pytest.fixture(scope="session")
def bounded_lake_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A zoo of two commits (two segments of 936 rows, two 512-row chunks each; 18 MB of weights, many
    times a 1MB test budget) with scenario 's' (digits 0-4, sizes 2-3, overlap 0-1), for the
    bounded-memory tests of pair serving and the ``_by_id`` SQL functions (read-only)."""
    from weightlake.ingest.csv_zoo import ingest_csv
    from weightlake.scenarios import declare_scenario

    base = tmp_path_factory.mktemp("bounded")
    root = base / "lake"
    for i, init in enumerate(("kaiming_uniform", "xavier_normal")):
        write_synthetic_csv(base / f"z{i}.csv", labels=all_labels(range(5), range(2, 6)), seed=20 + i)
        ingest_csv(root, base / f"z{i}.csv", zoo="mnist-cnn-s", init=init)
    declare_scenario(root, "s", zoo="mnist-cnn-s", digits="0-4", sizes="2-3", overlap="0-1")
    return root

@pytest.fixture(params=["local", "s3"])
def store_lake_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty lake root on each store in turn: a local directory, then ``s3://<fresh bucket>/lake`` on moto."""
    if request.param == "local":
        return str(tmp_path / "lake")
    return request.getfixturevalue("s3_lake_url")


def _lake_with_a_bad_weight(src: Path, dst: Path, zoo: str, row: int, col: int, value: float = float("nan")) -> int:
    """A copy of ``src``'s zoo in a new lake ``dst`` (same layout) with ``value`` at ``[row, col]`` of its weight
    rows, as a lake written before ingestion refused non-finite weights holds it; returns that model's id."""
    import numpy as np

    import weightlake as wl
    from weightlake.ingest.common import IngestReport, ZooWriter
    from weightlake.storage.transaction import transaction

    lake = wl.open_lake(src)
    ids, rows = lake.zoo_weights(zoo)
    rows = np.array(rows, dtype=np.float32)
    rows[row, col] = value
    meta = lake.models(zoo).collect()
    order = {mid: i for i, mid in enumerate(meta["model_id"].to_list())}
    meta = meta[[order[int(i)] for i in ids]].drop("model_id", "weights_hash")
    layout = lake.manifest.zoo(zoo).segments[0].layout
    with transaction(dst) as tx:
        writer = ZooWriter(tx, zoo, lake.arch(zoo), IngestReport(zoo=zoo, source=str(src)), layout=layout)
        writer.add(meta, rows)
        written = writer.finish()
        tx.commit({"op": "ingest-test", "zoo": zoo, "summary": "a copy with one non-finite weight"})
    return int(written["model_id"][row])


@pytest.fixture()
def lake_with_a_bad_weight():  # noqa: ANN201
    """``lake_with_a_bad_weight(src, dst, zoo, row, col, value=nan)``: ``src``'s zoo copied into lake ``dst``
    with one non-finite weight; returns the id of the model holding it."""
    return _lake_with_a_bad_weight
