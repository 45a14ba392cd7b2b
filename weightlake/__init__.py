"""weightlake: a data lake and query engine over weight zoos.

>>> import weightlake as wl
>>> lake = wl.open_lake("lake")          # doctest: +SKIP
>>> lake.models().collect()              # doctest: +SKIP

Importing the package is cheap: torch, duckdb and POT are imported by the functions
that need them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from weightlake import _cpu

_cpu.apply()  # before anything imports numpy: its sort on Zen 4 (see weightlake/_cpu.py)

if TYPE_CHECKING:
    from weightlake.handle import LakeHandle


def open_lake(path: Any = None, *, create: bool = False, memory: str | int | None = None) -> LakeHandle:
    """Open a lake at ``path`` (default: ``$WEIGHTLAKE_LAKE``, else ``./lake``), pinned to its current snapshot.

    ``memory``: the handle's budget for weights held at once (``"1GB"``; default ``$WEIGHTLAKE_MEMORY``,
    else a quarter of the machine's memory).

    Returns a :class:`~weightlake.handle.LakeHandle`: models, tables and weights, plus
    ``lake.sql``, ``lake.connect``, ``lake.pairs``, ``lake.batches`` and ``lake.analysis``.
    """
    from weightlake.handle import open_lake as _open

    return _open(path, create=create, memory=memory)


__all__ = ["open_lake", "__version__"]
