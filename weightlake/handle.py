"""The handle users hold: the core snapshot handle plus SQL, pairs, batches and analyses.

>>> import weightlake as wl
>>> lake = wl.open_lake("lake")                          # doctest: +SKIP
>>> lake.sql("SELECT count(*) AS n FROM models")         # doctest: +SKIP
>>> lake.pairs("overlapping-0-0to9-e11-gelu", "train")   # doctest: +SKIP

:class:`~weightlake.lake.Lake` (``weightlake/lake.py``) reads a snapshot and knows nothing
of the layers that read it.  :class:`LakeHandle` adds the user-facing shortcuts on top; each
is one call into a layer below (:mod:`weightlake.query`, :mod:`weightlake.serve.pairset`,
:mod:`weightlake.serve.batches`, :mod:`weightlake.compute.analyses`), so this module sits at
the top of the house beside the CLI, and no module below it imports it.  Code inside the
package takes a plain :class:`~weightlake.lake.Lake` and calls those functions directly;
every :class:`LakeHandle` is one, so either can be handed in.

The layers are imported inside the methods, so opening a lake stays as cheap as
``import weightlake``: no torch, DuckDB or POT until a method needs them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

from weightlake.lake import Lake

if TYPE_CHECKING:
    import duckdb
    import polars as pl

    from weightlake.compute.analyses import LakeAnalysis
    from weightlake.serve.batches import BatchStream
    from weightlake.serve.pairset import PairSet


class LakeHandle(Lake):
    """A read handle on one snapshot, with SQL, pair serving, batches and analyses.

    Everything of :class:`~weightlake.lake.Lake` (models, tables, weights, layers,
    state_dicts, streaming), plus the methods below; :meth:`refresh` and :meth:`at` return
    a :class:`LakeHandle` too.
    """

    def connect(self, *, weights: bool = True, udfs: bool | Collection[str] = True,
                zoo: str | None = None) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection with views over this snapshot (close it, or use ``with``).

        ``zoo``: the weight views hold only that zoo. See :func:`weightlake.query.connect`.
        """
        from weightlake.query import connect

        return connect(self, weights=weights, udfs=udfs, zoo=zoo)

    def heap_kept(self) -> contextlib.AbstractContextManager[bool]:
        """For a connection of your own (:meth:`connect`): within the block, the Python ``wl_*``
        functions over ``FLOAT[P]`` values run as in :meth:`sql`, with glibc keeping DuckDB's
        argument buffers in its heap (``wl_mse_layer(w, w, ...)`` 1.6-2.4x faster, about 0.3 GB
        more peak memory; :mod:`weightlake._heap`). Zoos that fit the budget are decoded first;
        the heap is handed back when the block ends. Yields whether it is in force (False on
        another C library or with ``WEIGHTLAKE_MALLOC=default``).

        >>> with lake.heap_kept(), lake.connect() as con:          # doctest: +SKIP
        ...     con.sql("SELECT avg(wl_w1(w, w)) FROM weights").fetchall()
        """
        from weightlake.query import python_functions_scope

        return python_functions_scope(self, True)

    def sql(self, query: str, params: dict[str, Any] | Sequence[Any] | None = None, *,
            zoo: str | None = None) -> pl.DataFrame:
        """Run SQL over this snapshot's views; parameters are bound (``$name`` or ``?``), never pasted.

        ``zoo``: the ``weights`` and ``weights_<layer>`` views hold only that zoo (how to ask one
        zoo's weights in a lake of several architectures). See :func:`weightlake.query.run_sql`.
        """
        from weightlake.query import run_sql

        return run_sql(self, query, params, zoo=zoo)

    @property
    def analysis(self) -> LakeAnalysis:
        """Analysis results and helpers bound to this snapshot (spectra, correlations, metrics)."""
        from weightlake.compute.analyses import LakeAnalysis

        return LakeAnalysis(self)

    def pairs(self, scenario: str, split: str | None = None) -> PairSet:
        """A scenario's pair set (see :mod:`weightlake.serve.pairset`)."""
        from weightlake.serve.pairset import PairSet

        return PairSet.open(self, scenario, split)

    def batches(self, scenario: str, split: str = "train", **kw: Any) -> BatchStream:
        """Stream materialised batches of a scenario split (see :mod:`weightlake.serve.batches`)."""
        from weightlake.serve.batches import BatchStream

        return BatchStream.open(self, scenario, split, **kw)


def open_lake(path: Any = None, *, create: bool = False, memory: str | int | None = None) -> LakeHandle:
    """Open a lake pinned to its current snapshot: :func:`weightlake.open_lake`."""
    return LakeHandle.open(path, create=create, memory=memory)
