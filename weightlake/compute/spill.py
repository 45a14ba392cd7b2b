"""Result tables built in parts that wait on disk, not in memory, until the last part is computed.

A lake-level run over a zoo bigger than its memory budget streams the weights in blocks, but its
result table still grows with the zoo (``analyze spectra``: five rows per CNN-s model, about
1 GB at a million models).  Held as polars frames while the blocks are computed, those parts add
to the peak the computation itself needs (block buffers, decompositions, the allocator's
fragments).  :class:`SpilledParts` writes each part to a Parquet file in a private temporary
directory as it arrives and reads them back as one frame at the end, when nothing else is held.

Round-trip law: ``SpilledParts`` fed ``p1, p2, ...`` collects ``pl.concat([p1, p2, ...])``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from types import TracebackType

import polars as pl


class SpilledParts:
    """Collect frames of one schema through disk: ``with SpilledParts() as s: s.add(df); table = s.collect()``.

    The temporary directory (``dir``: default the system's) and its files are removed on exit.
    """

    def __init__(self, dir: str | Path | None = None) -> None:  # noqa: A002 (tempfile's name)
        self._tmp = tempfile.TemporaryDirectory(prefix="weightlake-parts-", dir=dir)
        self._files: list[str] = []
        self._empty: pl.DataFrame | None = None

    def __enter__(self) -> SpilledParts:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._tmp.cleanup()

    def __len__(self) -> int:
        return len(self._files)

    def add(self, part: pl.DataFrame) -> None:
        """Write ``part`` to disk (an empty part only records the schema)."""
        if not part.height:
            self._empty = part.clear() if self._empty is None else self._empty
            return
        path = str(Path(self._tmp.name) / f"{len(self._files):06d}.parquet")
        part.write_parquet(path, compression="lz4", statistics=False)
        self._files.append(path)

    def collect(self) -> pl.DataFrame:
        """Every part in the order added, as one frame (the schema of an empty part when none had rows)."""
        if not self._files:
            if self._empty is None:
                raise ValueError("no parts were added")
            return self._empty
        return pl.read_parquet(self._files, glob=False)  # a spill folder under "zoo [0, 1]" is no pattern
