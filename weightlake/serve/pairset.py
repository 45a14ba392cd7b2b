"""Pair sets: a scenario split as torch tensors and as a fast, deterministic loader.

>>> pairs = open_lake("lake").pairs("overlapping-0-0to9-e11-gelu", "train")   # doctest: +SKIP
>>> x1, x2, y = pairs.tensors()                 # float32 [N, P] each, gathered once
>>> for batch in pairs.loader(batch_size=512, epoch=0):                       # doctest: +SKIP
...     loss = model(batch["x1"], batch["x2"]) - batch["y"]

Serving never does per-pair Python work: every batch is one gather of its ``3 x B`` rows
from the zoo's row source (:meth:`~weightlake.lake.Lake.row_source`).  The loader's dataset
is map-style over whole batches (``__getitem__`` takes the batch's pair positions), driven
by a sampler whose order depends only on ``(seed, epoch)`` and, for distributed training,
``(rank, world_size)``.  Workers fork with nothing but numpy arrays and the row source
(shared copy-on-write), so they inherit no open file or thread.  ``loader(prefetch=k)``
gathers the next ``k`` batches in background threads of the iterating process instead
(:class:`PairLoader`); a memory-mapped zoo splits each large gather over two threads
(:mod:`weightlake.storage.mapped`).

Memory: a zoo that fits the handle's budget is decoded once and gathered from memory, as
fast as ever.  A larger one is memory-mapped (:class:`~weightlake.storage.mapped.MappedRows`):
the process holds the batches it gathers, not the zoo; the zoo's pages live in the kernel's
page cache, each chunk is checked once on first use (an epoch of random pairs reads the
whole zoo once), and a gather runs at about the speed of an in-memory one when the pages
are cached (figures in BENCHMARKS.md, "Bounded memory").
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
from torch.utils.data import DataLoader, Dataset, Sampler

from weightlake.errors import NoSuchTableError, QueryError
from weightlake.scenarios import SPLITS, scenario_row

if TYPE_CHECKING:
    import torch

    from weightlake.arch import Architecture
    from weightlake.lake import Lake
    from weightlake.serve.augment import Augment

VIEWS: tuple[str, ...] = ("flat", "tokens", "layers")
PREFETCH = 0
"""Batches the loader gathers ahead in background threads by default (``loader(prefetch=)``)."""
PAIR_COLUMNS: tuple[str, ...] = ("pair_id", "a_id", "b_id", "target_id", "split", "a_mask", "b_mask", "target_mask",
                                 "overlap", "activation", "init", "epoch", "target_epoch", "fallback")


def epoch_order(n: int, *, seed: int = 0, epoch: int = 0, shuffle: bool = True) -> np.ndarray:
    """Pair positions in the order epoch ``epoch`` visits them: a permutation drawn from a
    numpy Generator seeded with ``(seed, epoch)``, or ``0..n-1`` without shuffling."""
    if not shuffle:
        return np.arange(n, dtype=np.int64)
    return np.random.default_rng([int(seed), int(epoch)]).permutation(n).astype(np.int64)


def rank_share(order: np.ndarray, rank: int = 0, world_size: int = 1) -> np.ndarray:
    """Rank ``rank``'s share of an epoch's ``order``: every ``world_size``-th position from ``rank``.

    The shares of ranks ``0 .. world_size - 1`` are disjoint and together hold every position;
    their sizes differ by at most one (``len(order) % world_size`` ranks hold one more).
    """
    check_rank(rank, world_size)
    return order[rank::world_size]


def check_rank(rank: Any, world_size: Any) -> None:
    """Refuse a rank or world size that cannot name one share of an epoch (a one-line :class:`QueryError`)."""
    for name, value in (("rank", rank), ("world_size", world_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise QueryError(f"{name} must be a whole number, got {value!r}")
    if world_size < 1:
        raise QueryError(f"world_size must be >= 1, got {world_size}")
    if not 0 <= rank < world_size:
        raise QueryError(f"rank must be in 0..{world_size - 1} for world_size={world_size}, got {rank}")


def check_drop_last(n: int, batch_size: int, drop_last: bool, where: str) -> None:
    """Refuse ``drop_last`` when ``n`` pairs (more than none) are fewer than one batch: it would drop them all."""
    if drop_last and 0 < n < batch_size:
        raise QueryError(f"{where} has {n} pairs, fewer than one batch of {batch_size}: drop_last would leave out "
                         "every one of them; lower the batch size or keep the short batch (no drop_last)")


def cut_batches(order: np.ndarray, batch_size: int, drop_last: bool = False) -> list[np.ndarray]:
    """``order`` cut into consecutive batches; the last one is short unless dropped."""
    if batch_size < 1:
        raise QueryError(f"batch_size must be >= 1, got {batch_size!r}")
    stop = len(order) - len(order) % batch_size if drop_last else len(order)
    return [order[i:i + batch_size] for i in range(0, stop, batch_size)]


class PairSet:
    """The pairs of one scenario split (or all splits), with their models' ids and accuracies.

    Build it with :meth:`open` (or ``lake.pairs(scenario, split)``).
    """

    def __init__(self, lake: Lake, scenario: str, split: str | None, zoo: str, frame: pl.DataFrame) -> None:
        self.lake, self.scenario, self.split, self.zoo = lake, scenario, split, zoo
        self._frame = frame
        self.ids = np.stack([frame[c].to_numpy() for c in ("a_id", "b_id", "target_id")], axis=1).astype(np.int64)
        """``int64 [N, 3]``: model ids of input a, input b and the target."""
        self.accuracy = _accuracies(lake, zoo, self.ids)
        """``float64 [N, 3]``: the three models' accuracies."""
        self.pair_id = frame["pair_id"].to_numpy().astype(np.int64)
        self._rows: np.ndarray | None = None
        self._tensors: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    @classmethod
    def open(cls, lake: Lake, scenario: str, split: str | None = None) -> PairSet:
        """The pairs of ``scenario`` (one ``split`` of ``train``/``val``/``test``, or all), by ``pair_id``.

        Raises
        ------
        NoSuchTableError
            The scenario is not declared at the lake's snapshot.
        QueryError
            ``split`` is not one of train, val, test.
        """
        if split is not None and split not in SPLITS:
            raise QueryError(f"split must be one of {SPLITS} (or None for all), got {split!r}")
        zoo = scenario_row(lake, scenario)["zoo"]
        lf = lake.table("pairs").filter(pl.col("scenario") == scenario)
        if split is not None:
            lf = lf.filter(pl.col("split") == split)
        frame = lf.select(*PAIR_COLUMNS).collect().sort("pair_id")
        return cls(lake, scenario, split, zoo, frame)

    def __len__(self) -> int:
        return self._frame.height

    def __repr__(self) -> str:
        return f"<PairSet {self.scenario!r} split {self.split or 'all'}: {len(self)} pairs of zoo {self.zoo!r}>"

    def filter(self, *predicates: pl.Expr | str) -> PairSet:
        """The pairs where every predicate holds: polars expressions or SQL conditions over the
        pair columns, e.g. ``pairs.filter("NOT fallback")`` (targets trained to the pair's epoch)
        or ``pairs.filter(pl.col("overlap") == 0)``, and over the models' accuracies
        ``acc_a``, ``acc_b``, ``acc_y`` (``pairs.filter("acc_y > 80")``).

        Raises
        ------
        QueryError
            A condition that does not parse or names no pair column.
        """
        try:
            exprs = [pl.sql_expr(p) if isinstance(p, str) else p for p in predicates]
            named = {n for e in exprs for n in e.meta.root_names()}
            if named & {"acc_a", "acc_b", "acc_y"}:  # the accuracies live beside the frame: filter with them
                frame = self.to_polars().filter(*exprs).select(self._frame.columns)
            else:
                frame = self._frame.filter(*exprs) if exprs else self._frame
        except (pl.exceptions.PolarsError, ValueError) as exc:
            raise QueryError(f"cannot filter the pairs of {self.scenario!r} by {list(map(str, predicates))}: "
                             f"{str(exc).splitlines()[0]} (pair columns: {', '.join(self._frame.columns)})") from None
        return PairSet(self.lake, self.scenario, self.split, self.zoo, frame)

    def to_polars(self) -> pl.DataFrame:
        """The pair rows with ``acc_a``, ``acc_b``, ``acc_y`` (the models' accuracies; null where
        the lake holds none, so ``acc_y > 80`` leaves them out: polars orders NaN above every number)."""
        acc = {name: self.accuracy[:, i] for i, name in enumerate(("acc_a", "acc_b", "acc_y"))}
        return self._frame.with_columns(**{k: pl.Series(v, dtype=pl.Float64, nan_to_null=True) for k, v in acc.items()})

    def zoo_rows(self) -> np.ndarray:
        """``int64 [N, 3]``: positions of the three models in ``lake.zoo_weights(zoo)``."""
        if self._rows is None:
            self._rows = _positions(self.lake.zoo_ids(self.zoo), self.ids, self.zoo)
        return self._rows

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(x1, x2, y)``, each ``torch.float32 [N, P]``: inputs a, b and the target.

        Gathered once from the zoo's row source (one gather each: from memory when the zoo
        fits the budget, from the mapped chunk files otherwise) and kept; the tensors share
        memory with those gathers (no further copies).  They are ``3 x N x P x 4`` bytes
        whatever the zoo's size: over the budget that warns
        (:class:`~weightlake.storage.budget.BudgetWarning`); :meth:`loader` holds one batch.
        """
        import torch

        if self._tensors is None:
            need = 3 * len(self) * 4 * (self.lake.arch(self.zoo).n_params if len(self) else 0)
            if need > self.lake.memory:
                from weightlake.storage.budget import BudgetWarning, format_memory

                warnings.warn(f"tensors() of {len(self)} pairs holds {format_memory(need)}, more than the memory "
                              f"budget ({format_memory(self.lake.memory)}); loader() holds one batch at a time",
                              BudgetWarning, stacklevel=2)
            source = self.lake.row_source(self.zoo)
            rows = self.zoo_rows()
            x1, x2, y = (torch.from_numpy(source.take(rows[:, i])) for i in range(3))
            self._tensors = (x1, x2, y)
        return self._tensors

    def dataset(self, view: str = "flat", *, augment: Augment | None = None, seed: int = 0,
                epoch: int = 0) -> PairBatches:
        """The batch-level map-style dataset behind :meth:`loader`."""
        weights = self.lake.row_source(self.zoo)
        arch = self.lake.arch(self.zoo) if view == "layers" or augment is not None else None
        return PairBatches(weights, self.zoo_rows(), self.ids, self.accuracy, self.pair_id, view=view, arch=arch,
                           augment=augment, seed=seed, epoch=epoch)

    def pair_dataset(self, view: str = "flat") -> PairItems:
        """A map-style torch ``Dataset`` of single pairs: ``ds[i]`` is pair ``i`` (in ``pair_id`` order)
        as a dict ``{x1, x2, y [P], a_id, ..., pair_id}``; ``len(ds)`` is the number of pairs.

        For a ``DataLoader(ds, batch_size=B, shuffle=True)`` of the usual kind. :meth:`loader`
        gathers whole batches at once and is several times faster.
        """
        return PairItems(self.dataset(view))

    def to_hf(self) -> Any:
        """The pair set as a Hugging Face ``datasets.Dataset`` in torch format (columns ``x1``,
        ``x2``, ``y`` as float32 sequences of P values, ids, accuracies, ``pair_id``).

        Built from Arrow buffers over the gathered weights; needs the ``hf`` extra
        (``pip install 'weightlake[hf]'``).
        """
        try:
            import datasets
        except ModuleNotFoundError:
            raise QueryError("to_hf() needs the datasets package: pip install 'weightlake[hf]'") from None
        import pyarrow as pa

        x1, x2, y = (t.numpy() for t in self.tensors())
        p = x1.shape[1]
        table = pa.table({
            **{name: pa.FixedSizeListArray.from_arrays(pa.array(rows.reshape(-1)), p)
               for name, rows in (("x1", x1), ("x2", x2), ("y", y))},
            "a_id": self.ids[:, 0], "b_id": self.ids[:, 1], "target_id": self.ids[:, 2],
            "acc_a": self.accuracy[:, 0], "acc_b": self.accuracy[:, 1], "acc_y": self.accuracy[:, 2],
            "pair_id": self.pair_id,
        })
        return datasets.Dataset(table).with_format("torch")

    def loader(self, batch_size: int = 512, shuffle: bool = True, seed: int = 0, epoch: int = 0,
               num_workers: int = 0, drop_last: bool = False, view: str = "flat",
               augment: Augment | None = None, rank: int = 0, world_size: int = 1,
               prefetch: int = PREFETCH) -> DataLoader:
        """An iterable of dict batches ``{x1, x2, y, a_id, b_id, target_id, acc_a, acc_b, acc_y, pair_id}``.

        Parameters
        ----------
        batch_size, drop_last
            Pairs per batch; the last batch is short unless ``drop_last``.
        shuffle, seed, epoch
            The order is a permutation drawn from ``(seed, epoch)``: the same pair of
            values gives the same batches, a new ``epoch`` a new order.  Call
            ``loader(epoch=e)`` once per epoch.
        num_workers
            DataLoader worker processes.  A batch is one in-memory gather (about 2 ms
            for 512 pairs), while a worker must ship every batch back through shared
            memory, which costs more (measured 24k against 320k triples/s in
            ``benchmarks/bench_serving.py``): keep 0 unless a view or transform is heavy.
        view
            ``"flat"``: ``x1, x2, y`` are ``float32 [B, P]``.  ``"tokens"``: each is the
            merger's 50-token split ``(tok80 [B, 26, 80], tok16 [B, 24, 16])``.
            ``"layers"``: each is a dict ``{layer: weight, layer.bias: bias}``.
        augment
            Weight-space augmentations (:class:`~weightlake.serve.augment.Augment`:
            function-preserving neuron permutation, Gaussian noise, erasing), drawn per batch
            from ``(seed, epoch, batch)``: the same for every run and any ``num_workers``.
        rank, world_size
            Distributed training: this process is rank ``rank`` of ``world_size``.  Each epoch's
            order (from ``(seed, epoch)``, the same on every rank) is dealt out so rank ``r``
            takes positions ``r, r + world_size, ...`` (:func:`rank_share`): the ranks' pairs are
            disjoint and together every pair of the epoch, reshuffled each epoch, and a rank
            gathers only its own pairs' rows.  Shares differ by at most one pair, so batch counts
            may differ by one between ranks (``drop_last=True`` and ``len(self) // world_size``
            a multiple of ``batch_size`` make them equal).
        prefetch
            With ``num_workers=0``: how many batches ahead are gathered in background threads
            (one thread each) while the loop works on the current batch.  The epoch's order is
            known in advance and numpy's gathers release the GIL, so a training step that waits
            (on a GPU) hides the gathers: with a 3 ms step, 6.1 -> 3.8 ms per batch of 512 from a
            decoded zoo, 7.1 -> 4.4 ms from a memory-mapped million-model zoo
            (``benchmarks/bench_prefetch.py``).  A loop that does no work of its own gains nothing
            and pays the hand-over between threads (slower on a busy machine), hence the default
            ``0``: each batch gathered in the loop.  Capped so the batches ahead hold at most a
            quarter of the memory budget.  The batches are the same, in the same order, with any
            value.
        """
        for arg, value in (("seed", seed), ("epoch", epoch)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise QueryError(f"{arg} must be a non-negative integer, got {value!r}")
        if num_workers > 0 and (augment is None or not augment.active) and view == "flat":
            warnings.warn(f"num_workers={num_workers}: each batch is one in-memory gather, cheaper than shipping it "
                          "back from a worker process; num_workers=0 is faster here (benchmarks/bench_serving.py)",
                          stacklevel=2)
        sampler = EpochBatches(len(self), batch_size, shuffle=shuffle, seed=seed, epoch=epoch, drop_last=drop_last,
                               rank=rank, world_size=world_size)
        dataset = self.dataset(view, augment=augment, seed=seed, epoch=epoch)
        batch_bytes = 3 * batch_size * 4 * max(1, dataset.weights.cols)
        ahead = max(0, min(int(prefetch), self.lake.memory // 4 // batch_bytes))
        if ahead < int(prefetch):
            warnings.warn(f"prefetch={prefetch}: {prefetch} batches of {batch_bytes / 2**20:.1f} MiB ahead would hold "
                          f"more than a quarter of the memory budget ({self.lake.memory / 2**20:.0f} MiB); "
                          f"gathering {ahead} ahead (a larger memory= or a smaller batch_size lets more)",
                          stacklevel=2)
        return PairLoader(dataset, batch_size=None, sampler=sampler, num_workers=num_workers, collate_fn=as_is,
                          prefetch=ahead)


class PairLoader(DataLoader):
    """The DataLoader of :meth:`PairSet.loader`: with ``num_workers=0`` and ``prefetch > 0``, the
    gathers of the next ``prefetch`` batches run in background threads while the current one is
    used; otherwise exactly a ``DataLoader``.

    The threads exist only while an iteration runs, in the process that iterates (the dataset
    and sampler pickle and fork as before); gathered batches are consumed in the sampler's
    order, so the batches and their order do not depend on ``prefetch``.  An error of a gather
    (an :class:`~weightlake.errors.IntegrityError` of a chunk) is raised at its own batch.
    """

    def __init__(self, dataset: PairBatches, *, prefetch: int = 0, **kw: Any) -> None:
        super().__init__(dataset, **kw)
        self.prefetch = int(prefetch)
        self._passed: set[int] = set()

    def set_epoch(self, epoch: int) -> None:
        """Order and augmentation of epoch ``epoch`` from the next pass on (as ``loader(epoch=epoch)``)."""
        self.sampler.set_epoch(epoch)  # type: ignore[union-attr]

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        sampler: EpochBatches = self.sampler  # type: ignore[assignment]  # set by PairSet.loader
        dataset: PairBatches = self.dataset  # type: ignore[assignment]
        dataset.epoch = sampler.epoch  # sampler.set_epoch(e) moves the augmentation's epoch too
        if sampler.epoch in self._passed and (sampler.shuffle or (dataset.augment is not None
                                                                  and dataset.augment.active)):
            warnings.warn(f"another pass over this loader at epoch {sampler.epoch}: the same order and augmentation "
                          "as before; call loader.set_epoch(e) (or PairSet.loader(epoch=e)) for a new epoch",
                          stacklevel=2)
        self._passed.add(sampler.epoch)
        if self.num_workers > 0 or self.prefetch < 1:
            return super().__iter__()
        return _prefetched(dataset, iter(sampler), self.prefetch)


def _prefetched(dataset: PairBatches, indices: Iterator[np.ndarray], depth: int) -> Iterator[dict[str, Any]]:
    """``dataset[index]`` for each of ``indices`` in order, the next ``depth`` gathers running in threads."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(depth, thread_name_prefix="weightlake-prefetch")
    ahead: deque[tuple[np.ndarray, Any]] = deque()
    try:
        for index in indices:
            index = np.asarray(index, dtype=np.int64)
            ahead.append((index, pool.submit(dataset.gather, index)))
            if len(ahead) > depth:
                index, done = ahead.popleft()
                yield dataset.assemble(index, done.result())
        while ahead:
            index, done = ahead.popleft()
            yield dataset.assemble(index, done.result())
    finally:  # a loop left early: drop the gathers not started, wait for the running ones
        for _, pending in ahead:
            pending.cancel()
        pool.shutdown(wait=True)


def as_is(batch: Any) -> Any:
    """The DataLoader's collate function: batches arrive ready (module level, so it pickles)."""
    return batch


def _accuracies(lake: Lake, zoo: str, ids: np.ndarray) -> np.ndarray:
    meta = lake.models(zoo).select("model_id", "accuracy").collect().sort("model_id")
    known = meta["model_id"].to_numpy()
    pos = _positions(known, ids, zoo)
    return meta["accuracy"].to_numpy().astype(np.float64)[pos]


def _positions(sorted_ids: np.ndarray, ids: np.ndarray, zoo: str) -> np.ndarray:
    """Positions of ``ids`` in the sorted array ``sorted_ids``; every id must be present."""
    if ids.size == 0:
        return np.zeros(ids.shape, dtype=np.int64)
    pos = np.searchsorted(sorted_ids, ids).clip(0, max(len(sorted_ids) - 1, 0))
    bad = sorted_ids[pos] != ids if len(sorted_ids) else np.ones(ids.shape, dtype=bool)
    if bad.any():
        raise NoSuchTableError(f"pair set refers to model id {int(ids[bad][0])}, which zoo {zoo!r} does not hold at "
                               "this snapshot; re-declare the scenario over the current zoo")
    return pos.astype(np.int64)


class EpochBatches(Sampler[np.ndarray]):
    """A batch sampler: yields arrays of pair positions, one per batch, in the order of
    :func:`epoch_order` ``(seed, epoch)`` (rank ``rank``'s share of it: :func:`rank_share`).
    Deterministic, and cheap to pickle."""

    def __init__(self, n: int, batch_size: int, *, shuffle: bool = True, seed: int = 0, epoch: int = 0,
                 drop_last: bool = False, rank: int = 0, world_size: int = 1) -> None:
        if batch_size < 1:
            raise QueryError(f"batch_size must be >= 1, got {batch_size!r}")
        check_rank(rank, world_size)
        share = len(range(rank, n, world_size))
        check_drop_last(share, batch_size, drop_last, f"rank {rank} of {world_size}" if world_size > 1 else "the pair set")
        self.n, self.batch_size, self.shuffle = n, batch_size, shuffle
        self.seed, self.epoch, self.drop_last = seed, epoch, drop_last
        self.rank, self.world_size = int(rank), int(world_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[np.ndarray]:
        order = epoch_order(self.n, seed=self.seed, epoch=self.epoch, shuffle=self.shuffle)
        return iter(cut_batches(rank_share(order, self.rank, self.world_size), self.batch_size, self.drop_last))

    def __len__(self) -> int:
        share = len(range(self.rank, self.n, self.world_size))
        return share // self.batch_size if self.drop_last else -(-share // self.batch_size)


class PairBatches(Dataset[dict[str, Any]]):
    """A map-style dataset over whole batches: ``ds[positions]`` -> one dict batch.

    Holds only numpy arrays and the zoo's row source (a decoded weight matrix or mapped chunk
    files, shared copy-on-write after a fork; ``weights`` may also be a plain ``[n, P]``
    array) and plain values, so it pickles and forks cleanly; each item is one gather of
    ``3 x B`` rows.
    """

    def __init__(self, weights: Any, rows: np.ndarray, ids: np.ndarray, accuracy: np.ndarray,
                 pair_id: np.ndarray, *, view: str = "flat", arch: Architecture | None = None,
                 augment: Augment | None = None, seed: int = 0, epoch: int = 0) -> None:
        if view not in VIEWS:
            raise QueryError(f"view must be one of {VIEWS}, got {view!r}")
        if (view == "layers" or augment is not None) and arch is None:
            raise QueryError("view='layers' and augmentations need the zoo's architecture")
        if augment is not None and augment.permute and arch is not None:
            from weightlake.serve.augment import permutation_links

            permutation_links(arch)  # refused here, not at the first batch
        if isinstance(weights, np.ndarray):
            from weightlake.storage.mapped import ResidentRows

            weights = ResidentRows(np.arange(len(weights), dtype=np.int64), weights)
        self.weights = weights
        self.rows_t = np.ascontiguousarray(rows.T)  # [3, N]: a batch's rows come out in (a, b, y) blocks
        self.ids, self.accuracy, self.pair_id = ids, accuracy, pair_id
        self.view, self.arch = view, arch
        self.augment = augment if augment is not None and augment.active else None
        self.seed, self.epoch = seed, epoch

    def __len__(self) -> int:
        return len(self.pair_id)

    def __getitem__(self, index: np.ndarray) -> dict[str, Any]:
        index = np.asarray(index, dtype=np.int64)
        return self.assemble(index, self.gather(index))

    def gather(self, index: np.ndarray) -> np.ndarray:
        """``float32 [3, B, P]``: the rows of the batch of pair positions ``index`` (a, b, target),
        augmented.  Numpy only, and a function of ``index`` alone (the augmentation's generator
        is drawn from ``(seed, epoch, index[0])``), so it may run in any thread, in any order."""
        n, p = len(index), self.weights.cols
        gathered = self.weights.take(self.rows_t[:, index].reshape(-1)).reshape(3, n, p)
        if self.augment is not None:
            assert self.arch is not None
            rng = np.random.default_rng([int(self.seed), int(self.epoch), int(index[0]) if n else 0])
            gathered = np.stack(self.augment.apply(gathered[0], gathered[1], gathered[2], self.arch, rng))
        return gathered

    def assemble(self, index: np.ndarray, gathered: np.ndarray) -> dict[str, Any]:
        """The dict batch of pair positions ``index`` around its :meth:`gather` (tensors share its memory)."""
        import torch

        block = torch.from_numpy(gathered)
        ids = torch.from_numpy(self.ids[index])
        acc = torch.from_numpy(self.accuracy[index])
        batch: dict[str, Any] = {"x1": block[0], "x2": block[1], "y": block[2],
                                 "a_id": ids[:, 0], "b_id": ids[:, 1], "target_id": ids[:, 2],
                                 "acc_a": acc[:, 0], "acc_b": acc[:, 1], "acc_y": acc[:, 2],
                                 "pair_id": torch.from_numpy(self.pair_id[index])}
        return _apply_view(batch, self.view, self.arch)


class PairItems(Dataset[dict[str, Any]]):
    """Single pairs of a :class:`PairBatches`: ``ds[i]`` -> the dict of pair ``i`` (one row each)."""

    def __init__(self, batches: PairBatches) -> None:
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not -len(self) <= int(i) < len(self):
            raise IndexError(f"pair {i} out of range for {len(self)} pairs")
        batch = self.batches[np.array([int(i) % len(self)])]
        return {k: _first(v) for k, v in batch.items()}


def _first(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _first(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_first(v) for v in value)
    return value[0]


def _apply_view(batch: dict[str, Any], view: str, arch: Architecture | None) -> dict[str, Any]:
    if view == "flat":
        return batch
    if view == "tokens":
        from weightlake.serve.tokens import to_tokens

        return {**batch, **{k: to_tokens(batch[k]) for k in ("x1", "x2", "y")}}
    assert arch is not None
    return {**batch, **{k: arch.flat_to_layers(batch[k]) for k in ("x1", "x2", "y")}}
