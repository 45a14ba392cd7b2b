"""The zoo trainer: one small CNN per (class subset, activation, initialisation).

The recipe is the reference zoo's (spec ``zoo-formats.md`` section 3): Adam, lr 0.05,
batch 90, up to 40 epochs, a checkpoint when ``epoch >= 9 and epoch % 5 == 1`` and the
validation accuracy exceeds 60 %, early stop after 3 epochs whose accuracy moved by at
most 0.05 points (the final state then goes to ``checkpoint epoch -1.pth`` if its accuracy
also exceeds ``min_accuracy``: a model that plateaued at chance level is recorded in its
metrics and sidecar but is no zoo member; the accuracy before training counts as the
previous value of epoch 0).  It fixes
the reference script's known flaws:

* a model sees only the training images of its own classes;
* its accuracy is measured on held-out *test* images of those classes (this is also the
  "validation" accuracy the checkpoint and early-stop rules use, as in the reference);
* every model's seed is derived from ``(seed, classes, activation, init)`` and recorded,
  and each model trains on one thread, so the same call gives bitwise identical weights.

Loss: cross-entropy over all 10 logits with the *original* class ids.  A model trained on
``[1, 7, 9]`` is thus an ordinary 10-way classifier whose argmax is a class id (the other
logits are trained down), so its confusion matrices are 10 x 10 like the reference's and
models of different subsets are directly comparable.  Accuracy is the argmax over all 10
logits, as a percentage.

Epochs are numbered from 0: checkpoint ``e`` holds the state after epoch index ``e``, and
its accuracy is ``Test Accuracy IID.npy[0][e + 1]`` (index 0 is before training).  Metric
arrays cover the epochs actually trained (``E`` in the spec's shapes ``(1, E + 1)``,
``(1, E)``, ``(10, 10, E)``), so an early-stopped model has shorter arrays; the sidecar
records ``epochs_trained``.

The spec's lr 0.05 is kept as the default.  It trains most models well (relu with
kaiming_uniform: 94-99 % on Fashion-MNIST pairs), but it is high for this tiny net and some
models stay at chance level: every ``uniform`` model (its U(0, 1) weights saturate), about
half the tanh models on full class pairs, and sigmoid ones on hard pairs.  They early-stop
after 3 flat epochs, get no regular checkpoint (accuracy at most 60 %) and are recorded as
they are, which is honest spread for the analyses.  Pass ``lr=1e-3`` to train them.

Workers are forkserver (or spawn) processes: a script calling :func:`train_zoo` with ``workers > 1``
needs the usual ``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from weightlake._util import atomic_write, parse_int_ranges, torch_threads
from weightlake.arch import ACTIVATIONS, CNN_S, INITS, Architecture, class_subsets, get_architecture
from weightlake.errors import TrainError
from weightlake.zoo.cnn import build_cnn
from weightlake.zoo.idx import dataset_files, dataset_id, load_dataset, select_classes

SIDECAR_NAME = "weightlake-train.json"
"""Written last, atomically: its presence marks a model folder as complete."""
SIDECAR_FORMAT = "weightlake-train/1"
METRICS_DIR = "metrics"
METRIC_FILES = {
    "test_acc": "Test Accuracy IID.npy",
    "test_loss": "Test Loss IID.npy",
    "train_acc": "Train Acc.npy",
    "train_loss": "Train Loss.npy",
    "train_confusion": "multiclass train Confusion matrix raw.npy",
    "test_confusion": "multiclass test Confusion matrix raw.npy",
}
EARLY_STOP_EPOCH = -1

_INIT_FUNCTIONS: dict[str, Callable[[torch.Tensor], Any]] = {
    "xavier_uniform": nn.init.xavier_uniform_,
    "xavier_normal": nn.init.xavier_normal_,
    # torch defaults, as the reference's plain calls: U(0, 1) and N(0, 1)
    "uniform": nn.init.uniform_,
    "normal": nn.init.normal_,
    "kaiming_normal": nn.init.kaiming_normal_,
    "kaiming_uniform": nn.init.kaiming_uniform_,
}
BIAS_FILL = 0.01



# -- values --------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainRecipe:
    """Optimiser, schedule, checkpoint and early-stop rules shared by every model of a zoo."""

    lr: float = 0.05
    batch_size: int = 90
    epochs_max: int = 40
    checkpoint_epochs: tuple[int, ...] | None = None
    """Epoch indices to checkpoint; ``None`` means the spec rule (``>= 9`` and ``% 5 == 1``)."""
    min_accuracy: float = 60.0
    patience: int = 3
    tolerance: float = 0.05
    grad_filter: str | None = None
    """``"ema"`` or ``"ma"``: a Grokfast gradient filter between backward and step (see
    :mod:`weightlake.dynamics.grokfast`); ``None``: plain gradients."""

    def __post_init__(self) -> None:
        if self.grad_filter not in (None, "ema", "ma"):
            raise TrainError(f"expected grad_filter None, 'ema' or 'ma', got {self.grad_filter!r}")
        if self.checkpoint_epochs is not None:
            object.__setattr__(self, "checkpoint_epochs", tuple(sorted({int(e) for e in self.checkpoint_epochs})))
        bad = {k: v for k, v in (("lr", self.lr), ("batch_size", self.batch_size),
                                 ("epochs_max", self.epochs_max), ("patience", self.patience)) if not v > 0}
        if bad:
            raise TrainError(f"expected positive lr, batch_size, epochs_max and patience, got {bad}")
        unreachable = [e for e in self.checkpoint_epochs or () if not 0 <= e < self.epochs_max]
        if unreachable:  # epochs count from 0: with epochs_max=16 the last one trained is 15
            raise TrainError(f"checkpoint epochs {unreachable} are never reached: epoch indices run from 0 to "
                             f"epochs_max - 1 = {self.epochs_max - 1}; raise epochs_max (--max-epochs) to "
                             f"{max(unreachable) + 1} or drop them")

    def wants_checkpoint(self, epoch: int, accuracy: float) -> bool:
        """Whether the state after epoch index ``epoch`` with this test accuracy is saved."""
        if accuracy <= self.min_accuracy:
            return False
        if self.checkpoint_epochs is None:
            return epoch >= 9 and epoch % 5 == 1
        return epoch in self.checkpoint_epochs

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["checkpoint_epochs"] = None if self.checkpoint_epochs is None else list(self.checkpoint_epochs)
        if out["grad_filter"] is None:
            del out["grad_filter"]  # zoos trained before the option existed keep matching their sidecars
        return out


@dataclass(frozen=True)
class _ZooConfig:
    """What every worker needs besides its job; also the config a finished folder must match."""

    dataset: str
    subsample: int | None
    seed: int
    recipe: TrainRecipe
    arch: dict[str, Any] = field(default_factory=CNN_S.to_dict)

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "subsample": self.subsample, "zoo_seed": self.seed,
                "recipe": self.recipe.to_dict(), "arch": self.arch}


@dataclass(frozen=True)
class ModelJob:
    """One model to train: its classes, activation, init, derived seed and folder."""

    classes: tuple[int, ...]
    activation: str
    init: str
    seed: int
    folder: str

    @property
    def label(self) -> str:
        return str(list(self.classes))


@dataclass(frozen=True)
class ModelResult:
    """Outcome of one model (read back from its sidecar when it was skipped)."""

    classes: tuple[int, ...]
    activation: str
    init: str
    seed: int
    folder: str
    epochs_trained: int
    early_stopped: bool
    checkpoints: tuple[int, ...]
    final_accuracy: float
    seconds: float
    skipped: bool = False

    @classmethod
    def from_sidecar(cls, data: dict[str, Any], folder: str) -> ModelResult:
        keep = {k: data[k] for k in ("activation", "init", "seed", "epochs_trained", "early_stopped",
                                     "final_accuracy", "seconds")}
        return cls(classes=tuple(data["classes"]), checkpoints=tuple(data["checkpoints"]),
                   folder=folder, skipped=True, **keep)


@dataclass(frozen=True)
class TrainReport:
    """What :func:`train_zoo` did: one result per model, in job order."""

    out_dir: str
    layout: str
    results: tuple[ModelResult, ...]
    seconds: float

    @property
    def trained(self) -> int:
        return sum(not r.skipped for r in self.results)

    @property
    def skipped(self) -> int:
        return sum(r.skipped for r in self.results)

    @property
    def models_per_minute(self) -> float:
        """Models trained (skipped ones excluded) per minute of wall time."""
        return 60.0 * self.trained / self.seconds if self.seconds > 0 else 0.0


# -- parsing helpers -----------------------------------------------------------------------
def parse_int_list(text: str) -> list[int]:
    """Parse ``"0-5"``, ``"1,3,5"``, ``"2-3"`` or a mix (``"0-2,7"``) into sorted unique ints.

    Raises
    ------
    TrainError
        On anything else, e.g. ``"5-2"`` or ``"a"``.
    """
    return parse_int_ranges(text, TrainError)


def parse_subsets(digits: Iterable[int], sizes: Iterable[int]) -> list[tuple[int, ...]]:
    """Every sorted subset of ``digits`` whose size is in ``sizes`` (see :func:`~weightlake.arch.class_subsets`)."""
    return class_subsets(digits, sizes)


def model_seed(seed: int, classes: Iterable[int], activation: str, init: str) -> int:
    """The seed of one model, derived from the zoo seed and the model's identity.

    A hash rather than a counter, so a model's seed does not depend on which other models
    the zoo holds or in what order they train.
    """
    key = json.dumps([int(seed), sorted(int(c) for c in classes), activation, init])
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") >> 1


def model_folder(out_dir: str | os.PathLike[str], classes: Sequence[int], activation: str, init: str,
                 layout: str = "b") -> Path:
    """``{out}/{label}/{activation}`` (layout A) or ``{out}/{label}/{activation}/{init}`` (layout B)."""
    folder = Path(out_dir) / str(list(classes)) / activation
    return folder if layout.lower() == "a" else folder / init


# -- the model -----------------------------------------------------------------------------
def init_weights(model: nn.Module, init: str) -> nn.Module:
    """Apply initialisation ``init`` to every weight of ``model`` and fill every bias with 0.01."""
    try:
        fill = _INIT_FUNCTIONS[init]
    except KeyError:
        raise TrainError(f"unknown initialisation {init!r}; expected one of {INITS}") from None
    with torch.no_grad():
        for module in model.modules():
            weight, bias = getattr(module, "weight", None), getattr(module, "bias", None)
            if isinstance(weight, torch.Tensor):
                fill(weight)
            if isinstance(bias, torch.Tensor):
                bias.fill_(BIAS_FILL)
    return model


def to_tensors(images: Any, labels: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images ``[N, H, W]`` -> float ``[N, 1, H, W]`` in [0, 1]; labels -> int64.

    Float images with a channel axis pass through unchanged.
    """
    x = torch.as_tensor(images)
    if x.dtype == torch.uint8:
        x = x.float().div_(255.0).unsqueeze(1)
    return x, torch.as_tensor(labels).long()


def evaluate_accuracy(model: nn.Module, images: Any, labels: Any) -> float:
    """Accuracy of ``model`` in percent (argmax over all logits), as the trainer records it.

    Parameters
    ----------
    model
        A zoo CNN (its mode is set to eval).
    images
        uint8 ``[N, 28, 28]`` as :func:`~weightlake.zoo.idx.load_dataset` gives, or float ``[N, 1, 28, 28]``.
    labels
        Class ids ``[N]``.
    """
    x, y = to_tensors(images, labels)
    return _evaluate(model, x, y, n_classes=int(y.max()) + 1 if y.numel() else 1)[1]


def _evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, n_classes: int,
              chunk: int = 4096) -> tuple[float, float, np.ndarray]:
    """Mean loss, accuracy (percent) and confusion counts (rows true, columns predicted)."""
    model.eval()
    loss, preds = 0.0, []
    with torch.no_grad():
        for start in range(0, len(x), chunk):
            logits = model(x[start:start + chunk])
            loss += float(nn.functional.cross_entropy(logits, y[start:start + chunk], reduction="sum"))
            preds.append(logits.argmax(1))
    pred = torch.cat(preds) if preds else y.new_empty(0)
    n = max(len(y), 1)
    return loss / n, 100.0 * float((pred == y).sum()) / n, _confusion(y, pred, n_classes)


def _confusion(y: torch.Tensor, pred: torch.Tensor, n_classes: int) -> np.ndarray:
    size = max(n_classes, int(pred.max()) + 1 if pred.numel() else 0)
    counts = torch.bincount(y * size + pred, minlength=size * size).reshape(size, size)
    return counts[:n_classes, :n_classes].numpy().astype(np.int64)


def _train_epoch(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                 gen: torch.Generator, batch_size: int, n_classes: int) -> tuple[float, float, np.ndarray]:
    """One pass; loss, accuracy and confusion are accumulated over the mini-batches as they train."""
    model.train()
    total_loss, preds = 0.0, []
    order = torch.randperm(len(x), generator=gen)
    for start in range(0, len(x), batch_size):
        idx = order[start:start + batch_size]
        logits = model(x[idx])
        loss = nn.functional.cross_entropy(logits, y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        total_loss += float(loss.detach()) * len(idx)
        preds.append(logits.detach().argmax(1))
    pred, target = torch.cat(preds), y[order]
    return total_loss / len(x), 100.0 * float((pred == target).sum()) / len(x), _confusion(target, pred, n_classes)


class _History:
    """Per-epoch metrics in the spec's array layout."""

    def __init__(self) -> None:
        self.values: dict[str, list[Any]] = {key: [] for key in METRIC_FILES}

    def add(self, prefix: str, loss: float, acc: float, confusion: np.ndarray) -> None:
        self.values[f"{prefix}_loss"].append(loss)
        self.values[f"{prefix}_acc"].append(acc)
        self.values[f"{prefix}_confusion"].append(confusion)

    def plateaued(self, patience: int, tolerance: float) -> bool:
        acc = self.values["test_acc"]
        if len(acc) <= patience:
            return False
        return all(abs(a - b) <= tolerance for a, b in itertools.pairwise(acc[-patience - 1:]))

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for key, name in METRIC_FILES.items():
            series = self.values[key]
            if key == "test_confusion":
                series = series[1:]  # the spec keeps E confusion matrices: none from before training
            arr = np.stack(series, axis=-1) if key.endswith("confusion") else np.asarray([series], dtype=np.float64)
            np.save(folder / name, arr)


# -- one model -----------------------------------------------------------------------------
def _train_model(job: ModelJob, config: _ZooConfig) -> ModelResult:
    """Train one model (in a worker or in-process) into ``job.folder`` (cleared of stale files first) and mark it complete."""
    start = time.perf_counter()
    folder = Path(job.folder)
    _clear_partial(folder)
    data = _model_data(config.dataset, job.classes, config.subsample, config.seed)
    arch = get_architecture(config.arch)
    torch.manual_seed(job.seed)
    model = init_weights(build_cnn(arch, job.activation), job.init)
    history, checkpoints, early = _fit(model, data, job, config.recipe, arch.n_outputs)
    history.save(folder / METRICS_DIR)
    result = ModelResult(classes=job.classes, activation=job.activation, init=job.init, seed=job.seed,
                         folder=job.folder, epochs_trained=len(history.values["train_acc"]), early_stopped=early,
                         checkpoints=tuple(checkpoints), final_accuracy=history.values["test_acc"][-1],
                         seconds=time.perf_counter() - start)
    _write_sidecar(folder, job, config, result, n_images=(len(data[1]), len(data[3])))
    return result


def _fit(model: nn.Module, data: tuple[torch.Tensor, ...], job: ModelJob, recipe: TrainRecipe,
         n_classes: int) -> tuple[_History, list[int], bool]:
    x, y, x_test, y_test = data
    opt = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    _attach_grad_filter(opt, recipe.grad_filter)
    gen = torch.Generator().manual_seed(job.seed)
    history, saved = _History(), []
    history.add("test", *_evaluate(model, x_test, y_test, n_classes))
    for epoch in range(recipe.epochs_max):
        history.add("train", *_train_epoch(model, opt, x, y, gen, recipe.batch_size, n_classes))
        history.add("test", *_evaluate(model, x_test, y_test, n_classes))
        if recipe.wants_checkpoint(epoch, history.values["test_acc"][-1]):
            _save_checkpoint(Path(job.folder), epoch, epoch, model, opt)
            saved.append(epoch)
        if history.plateaued(recipe.patience, recipe.tolerance):
            # the final state is a zoo member only if it passes the same accuracy bar as any checkpoint
            if history.values["test_acc"][-1] <= recipe.min_accuracy:
                return history, saved, True
            _save_checkpoint(Path(job.folder), EARLY_STOP_EPOCH, epoch, model, opt)
            return history, [*saved, EARLY_STOP_EPOCH], True
    return history, saved, False


def _attach_grad_filter(opt: torch.optim.Optimizer, kind: str | None) -> None:
    if kind is not None:
        from weightlake.dynamics.grokfast import attach_grad_filter  # torch-only; imported when asked for

        attach_grad_filter(opt, kind)


@lru_cache(maxsize=2)
def _load_split(dataset: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    # one load per worker process, shared by all its models; never mutated
    return load_dataset(dataset, split)  # type: ignore[arg-type]


def _model_data(dataset: str, classes: tuple[int, ...], subsample: int | None,
                seed: int) -> tuple[torch.Tensor, ...]:
    # the subsample is drawn with the zoo seed, so every model with class c sees the same images of c
    train = select_classes(*_load_split(dataset, "train"), classes, per_class=subsample, seed=seed)
    test = select_classes(*_load_split(dataset, "test"), classes)
    return (*to_tensors(*train), *to_tensors(*test))


def checkpoint_name(epoch: int) -> str:
    """``checkpoint epoch {epoch}.pth`` (``-1`` for the early-stopped final state)."""
    return f"checkpoint epoch {epoch}.pth"


def _save_checkpoint(folder: Path, name_epoch: int, epoch: int, model: nn.Module,
                     opt: torch.optim.Optimizer) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{checkpoint_name(name_epoch)}.tmp"
    torch.save({"epoch": epoch, "model_state_dict": model.state_dict(),
                "optimizer_state_dict": opt.state_dict()}, tmp)
    os.replace(tmp, folder / checkpoint_name(name_epoch))


def _clear_partial(folder: Path) -> None:
    """Remove what an interrupted run may have left, touching only files this trainer writes."""
    stale = [*folder.glob("checkpoint epoch *.pth"), *folder.glob(".checkpoint epoch *.tmp"),
             *(folder / METRICS_DIR / name for name in METRIC_FILES.values())]
    for path in stale:
        path.unlink(missing_ok=True)


def _write_sidecar(folder: Path, job: ModelJob, config: _ZooConfig, result: ModelResult,
                   n_images: tuple[int, int]) -> None:
    payload = {
        "format": SIDECAR_FORMAT, "label": job.label, "classes": list(job.classes),
        "activation": job.activation, "init": job.init, "seed": job.seed,
        "epochs_trained": result.epochs_trained, "early_stopped": result.early_stopped,
        "checkpoints": list(result.checkpoints), "final_accuracy": result.final_accuracy,
        "n_train_images": n_images[0], "n_test_images": n_images[1], "seconds": result.seconds,
        "loss": "cross-entropy over all logits, original class ids", "bias_fill": BIAS_FILL,
        "torch_version": torch.__version__, "config": config.to_dict(),
        "dataset": dataset_id(config.dataset),  # what ingest records for the zoo (an absolute path for a folder)
    }
    atomic_write(folder / SIDECAR_NAME, json.dumps(payload, indent=2).encode())


def read_sidecar(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The completion record of a model folder, or ``None`` if the model is not complete."""
    try:
        data = json.loads((Path(folder) / SIDECAR_NAME).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and data.get("format") == SIDECAR_FORMAT else None


# -- the zoo -------------------------------------------------------------------------------
def train_zoo(
    dataset: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    subsets: Iterable[Sequence[int]],
    activations: Iterable[str],
    inits: Iterable[str],
    *,
    layout: str = "b",
    epochs_max: int = 40,
    subsample: int | None = None,
    seed: int = 0,
    workers: int = 2,
    lr: float = 0.05,
    batch_size: int = 90,
    checkpoint_epochs: Iterable[int] | None = None,
    min_accuracy: float = 60.0,
    arch: Architecture = CNN_S,
    progress: Callable[[int, int, ModelResult], None] | None = None,
    grad_filter: str | None = None,
) -> TrainReport:
    """Train a zoo: one CNN per class subset x activation x initialisation.

    Parameters
    ----------
    dataset
        ``"fashion-mnist"`` or a directory of MNIST-style IDX files (see :func:`~weightlake.zoo.idx.load_dataset`).
    out_dir
        Root of the checkpoint tree.
    subsets
        Class subsets; each is sorted and de-duplicated (``[7, 1]`` trains ``[1, 7]``).
    activations, inits
        Names from :data:`~weightlake.arch.ACTIVATIONS` and :data:`~weightlake.arch.INITS`.
    layout
        ``"a"``: ``{out}/{label}/{activation}/`` (needs exactly one init);
        ``"b"``: ``{out}/{label}/{activation}/{init}/``.
    epochs_max, lr, batch_size, min_accuracy
        The recipe; defaults are the reference zoo's (lr 0.05 leaves some models at chance
        level, see the module notes; ``lr=1e-3`` trains them all).
    subsample
        Training images per class (``None``: all); test images are never subsampled.
    seed
        Zoo seed; each model's seed is :func:`model_seed` of it.
    workers
        Processes (each on one thread); 1 trains in this process.
    checkpoint_epochs
        Epoch indices to checkpoint (still subject to ``min_accuracy``); ``None``: the spec rule.
    arch
        The architecture to train.
    progress
        Called as ``progress(done, total, result)`` after each model, skipped ones included.
    grad_filter
        ``"ema"`` or ``"ma"``: filter gradients between backward and step (Grokfast defaults).

    Returns
    -------
    TrainReport

    Raises
    ------
    TrainError
        On bad arguments, or when a finished model folder was trained with another configuration.
    IngestError
        When the dataset is missing or corrupt.
    """
    layout = _check_layout(layout, inits := tuple(inits))
    config = _ZooConfig(dataset=str(dataset), subsample=_check_subsample(subsample), seed=int(seed),
                        recipe=TrainRecipe(lr=lr, batch_size=batch_size, epochs_max=epochs_max,
                                           checkpoint_epochs=_as_tuple(checkpoint_epochs), min_accuracy=min_accuracy,
                                           grad_filter=grad_filter),
                        arch=arch.to_dict())
    jobs = plan_jobs(out_dir, subsets, activations, inits, layout=layout, seed=seed, arch=arch)
    for split in ("train", "test"):
        dataset_files(config.dataset, split)  # a missing dataset fails here, not in every worker
    start = time.perf_counter()
    results = _run_all(jobs, config, workers, progress)
    return TrainReport(out_dir=str(out_dir), layout=layout, results=tuple(results),
                       seconds=time.perf_counter() - start)


def plan_jobs(out_dir: str | os.PathLike[str], subsets: Iterable[Sequence[int]], activations: Iterable[str],
              inits: Iterable[str], *, layout: str = "b", seed: int = 0, arch: Architecture = CNN_S) -> list[ModelJob]:
    """The models of a zoo in training order: subsets, then activations, then inits."""
    acts, init_names = tuple(activations), tuple(inits)
    _check_names(acts, ACTIVATIONS, "activation")
    _check_names(init_names, INITS, "initialisation")
    return [ModelJob(classes=c, activation=a, init=i, seed=model_seed(seed, c, a, i),
                     folder=str(model_folder(out_dir, c, a, i, layout)))
            for c in _check_subsets(subsets, arch.n_outputs) for a in acts for i in init_names]


def _check_layout(layout: str, inits: tuple[str, ...]) -> str:
    layout = str(layout).lower()
    if layout not in ("a", "b"):
        raise TrainError(f"expected layout 'a' or 'b', got {layout!r}")
    if layout == "a" and len(set(inits)) != 1:
        raise TrainError(f"layout 'a' has no init level, so it holds exactly one initialisation; got {inits}; "
                         "use layout 'b' or train one init per output directory")
    return layout


def _as_tuple(epochs: Iterable[int] | None) -> tuple[int, ...] | None:
    return None if epochs is None else tuple(epochs)


def _check_subsample(subsample: int | None) -> int | None:
    if subsample is not None and (int(subsample) != subsample or subsample < 1):
        raise TrainError(f"expected subsample to be None or a positive number of images per class, got {subsample!r}")
    return None if subsample is None else int(subsample)


def _check_names(names: tuple[str, ...], allowed: tuple[str, ...], what: str) -> None:
    unknown = [n for n in names if n not in allowed]
    if unknown or not names:
        raise TrainError(f"expected one or more {what}s from {allowed}, got {list(names)}")


def _check_subsets(subsets: Iterable[Sequence[int]], n_classes: int) -> list[tuple[int, ...]]:
    out: list[tuple[int, ...]] = []
    for subset in subsets:
        classes = tuple(sorted({int(c) for c in subset}))
        if not classes or classes[0] < 0 or classes[-1] >= n_classes:
            raise TrainError(f"expected class subsets of ids 0-{n_classes - 1}, got {list(subset)!r}")
        if classes not in out:
            out.append(classes)
    if not out:
        raise TrainError("expected at least one class subset, got none")
    return out


def _run_all(jobs: list[ModelJob], config: _ZooConfig, workers: int,
             progress: Callable[[int, int, ModelResult], None] | None) -> list[ModelResult]:
    results: dict[int, ModelResult] = {}
    todo: list[int] = []
    for index, job in enumerate(jobs):
        done = _finished(job, config)
        if done is None:
            todo.append(index)
        else:
            results[index] = done
            _notify(progress, len(results), len(jobs), done)
    for index, result in _execute(jobs, todo, config, workers):
        results[index] = result
        _notify(progress, len(results), len(jobs), result)
    return [results[i] for i in range(len(jobs))]


def _notify(progress: Callable[[int, int, ModelResult], None] | None, done: int, total: int,
            result: ModelResult) -> None:
    if progress is not None:
        progress(done, total, result)


def _flat_items(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and k != "arch":
            out.update(_flat_items(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _finished(job: ModelJob, config: _ZooConfig) -> ModelResult | None:
    sidecar = read_sidecar(job.folder)
    if sidecar is None:
        return None
    if sidecar.get("config") != config.to_dict() or sidecar.get("init") != job.init:
        old = {**_flat_items(sidecar.get("config") or {}), "init": sidecar.get("init")}
        new = {**_flat_items(config.to_dict()), "init": job.init}
        diff = ", ".join(f"{k}: {old.get(k)!r} there, {new.get(k)!r} now" for k in sorted(set(old) | set(new))
                         if old.get(k) != new.get(k))
        raise TrainError(
            f"model folder {job.folder!r} is complete but was trained with another configuration ({diff}). "
            "Train into another output directory, or delete that folder to retrain it")
    return ModelResult.from_sidecar(sidecar, job.folder)


def _execute(jobs: list[ModelJob], todo: list[int], config: _ZooConfig,
             workers: int) -> Iterator[tuple[int, ModelResult]]:
    if workers <= 1 or len(todo) <= 1:
        with torch_threads(1):  # as in the workers, so in-process and pooled runs give the same bits
            for index in todo:
                yield index, _train_model(jobs[index], config)
        return
    with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=_pool_context(),
                             initializer=torch.set_num_threads, initargs=(1,)) as pool:
        futures: dict[Future[ModelResult], int] = {pool.submit(_train_model, jobs[i], config): i for i in todo}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        finally:
            for future in futures:
                future.cancel()


def _pool_context() -> multiprocessing.context.BaseContext:
    """forkserver where available, else spawn; never plain fork.

    Forking a parent whose torch thread pools are running can deadlock.  A forkserver that
    has imported torch (and torch._dynamo, which the first Adam pulls in: about 3 s) once
    forks cheap workers for every later pool of this process; spawn re-imports everything
    in every worker.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__, "torch._dynamo"])  # no effect once the server runs
    return context
