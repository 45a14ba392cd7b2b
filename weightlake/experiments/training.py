"""A few training steps of the merging model over any batch source, timed: the speed benchmark.

The question the user asked of materialised batches is whether training reads them faster than
it reads the live pair queries.  :func:`train_steps` runs ``steps`` optimiser steps of a
:class:`~weightlake.experiments.merger.TransformerAE` (MSE between ``model(x1, x2)`` and the
target weights; the loss does not matter for speed) over batches from any source and splits
the wall time into *waiting for data* and *computing the step*, so a slow loader shows as data
time, not as a slow model.  :func:`compare_sources` runs several sources round by round
(alternating, so load on a shared machine hits them alike) from one initial model, and reports
the best round of each.

A source yields batches as

- a dict with ``x1``, ``x2``, ``y`` (``pairs.loader()``, ``lake.batches(...)``), or
- a tensor ``[B, 3, P]`` or a tuple/list whose first item is one (a ``TensorDataset`` over the
  ``x`` of a ``pairs materialize --format pt`` file), or
- a tuple/list of three tensors ``[B, P]`` (``TensorDataset(*pairs.tensors())``).

:func:`save_checkpoint` writes a model as the user's training code does
(``{"epoch", "model_state_dict"}``), which is what the evaluation reads back.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from weightlake.errors import QueryError


@dataclass
class TrainingReport:
    """What :func:`train_steps` did: steps, pairs, seconds waiting for data and computing."""

    source: str
    steps: int = 0
    pairs: int = 0
    data_seconds: float = 0.0
    step_seconds: float = 0.0
    losses: list[float] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return self.data_seconds + self.step_seconds

    @property
    def pairs_per_second(self) -> float:
        return self.pairs / self.seconds if self.seconds > 0 else float("nan")

    def row(self) -> dict[str, Any]:
        """One table row (the numbers a reader compares)."""
        return {"source": self.source, "steps": self.steps, "pairs": self.pairs,
                "data_s": round(self.data_seconds, 4), "step_s": round(self.step_seconds, 4),
                "pairs_per_s": round(self.pairs_per_second, 1),
                "data_share": round(self.data_seconds / self.seconds, 3) if self.seconds > 0 else float("nan"),
                "first_loss": self.losses[0] if self.losses else float("nan"),
                "last_loss": self.losses[-1] if self.losses else float("nan")}


def split_batch(batch: Any) -> tuple[Any, Any, Any]:
    """``(x1, x2, y)`` float32 tensors ``[B, P]`` from any supported batch form (see the module notes).

    Raises
    ------
    QueryError
        A batch of another form.
    """
    import torch

    if isinstance(batch, Mapping):
        if not {"x1", "x2", "y"} <= set(batch):
            raise QueryError(f"a dict batch needs keys x1, x2, y; got {sorted(batch)}")
        return batch["x1"], batch["x2"], batch["y"]
    if (isinstance(batch, (tuple, list)) and len(batch) == 3
            and all(isinstance(t, torch.Tensor) and t.ndim == 2 for t in batch)):
        return batch[0], batch[1], batch[2]
    x = batch[0] if isinstance(batch, (tuple, list)) else batch
    if not isinstance(x, torch.Tensor) or x.ndim != 3 or x.shape[1] != 3:
        raise QueryError(f"expected a batch dict, a tensor [B, 3, P] or three tensors [B, P], got {type(x).__name__} "
                         f"{tuple(getattr(x, 'shape', ()))}")
    return x[:, 0], x[:, 1], x[:, 2]


def train_steps(model: Any, batches: Iterable[Any], *, steps: int | None = None, lr: float = 1e-3,
                source: str = "batches", optimizer: Any = None) -> TrainingReport:
    """Run optimiser steps of ``model`` over ``batches`` (one pass, at most ``steps``), timed.

    Parameters
    ----------
    model : TransformerAE
        Put in train mode; its parameters are updated in place.
    batches : iterable
        Any batch source (see :func:`split_batch`).
    steps : int, optional
        Stop after this many steps (default: the whole pass).
    lr : float
        Adam learning rate (when no ``optimizer`` is given).

    Returns
    -------
    TrainingReport
    """
    import torch
    import torch.nn.functional as F

    model.train()
    opt = optimizer or torch.optim.Adam(model.parameters(), lr=lr)
    report = TrainingReport(source)
    it = iter(batches)
    while steps is None or report.steps < steps:
        t0 = time.perf_counter()
        try:
            batch = next(it)
        except StopIteration:
            break
        x1, x2, y = split_batch(batch)
        t1 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = F.mse_loss(model(x1, x2), y)
        loss.backward()
        opt.step()
        report.losses.append(float(loss.detach()))
        report.data_seconds += t1 - t0
        report.step_seconds += time.perf_counter() - t1
        report.steps += 1
        report.pairs += int(x1.shape[0])
    return report


def compare_sources(model: Any, sources: Mapping[str, Callable[[], Iterable[Any]]], *, steps: int,
                    rounds: int = 3, lr: float = 1e-3,
                    progress: Callable[[int, int], Any] | None = None) -> Any:
    """Train a fresh copy of ``model`` for ``steps`` on each source, alternating sources round by round.

    Returns a polars DataFrame: one row per source, its best round (highest pairs/s) and the
    number of rounds.  Every run starts from the same weights, so losses are comparable too.
    """
    import polars as pl

    if not sources:
        raise QueryError("no batch sources to compare")
    best: dict[str, TrainingReport] = {}
    total = rounds * len(sources)
    for r in range(rounds):
        for i, (name, make) in enumerate(sources.items()):
            report = train_steps(copy.deepcopy(model), make(), steps=steps, lr=lr, source=name)
            if report.steps and (name not in best or report.pairs_per_second > best[name].pairs_per_second):
                best[name] = report
            if progress is not None:
                progress(r * len(sources) + i + 1, total)
    return pl.DataFrame([{**b.row(), "rounds": rounds} for b in best.values()])


def save_checkpoint(model: Any, path: str | Path, *, epoch: int = 0, **extra: Any) -> Path:
    """Save ``model`` as the user's training code does: ``{"epoch": e, "model_state_dict": ...}``.

    ``extra`` entries (plain values) are stored beside them.  Written to a temporary name and
    renamed, so a crash leaves no partial checkpoint.
    """
    import torch

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    torch.save({"epoch": int(epoch), "model_state_dict": model.state_dict(), **extra}, tmp)
    tmp.replace(out)
    return out
