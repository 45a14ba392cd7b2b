"""Random access to a zoo's rows on an object store under the memory budget.

The object-store counterpart of :class:`weightlake.storage.mapped.MappedRows`: pair serving
(``loader``, ``tensors``), ``wl_*_by_id`` and materialised batches gather rows in random
order, and a zoo over the budget cannot be decoded whole.  :class:`RemoteRows` holds no
rows between gathers.  The first time a gather needs a row of a chunk, the whole chunk
object is fetched and checked against the digest the snapshot recorded (once per chunk per
source, as the mapped reader checks a chunk on first use); every later gather of that
chunk requests only the byte ranges of the rows it takes (one ranged request per chunk
object; the store client merges ranges closer than about 1 MB into one GET).  A rank of a
distributed loader thus reads only the chunks that hold its pairs' rows, each once in
full, and afterwards only its rows.

Only raw segments (uncompressed whole-row chunks, the default layout) are addressed by
byte range; :func:`can_address` says whether a zoo's segments all are, and
:meth:`weightlake.lake.Lake.row_source` decodes other zoos whole, as before (with a
:class:`~weightlake.storage.budget.BudgetWarning` over the budget).

Round-trip law: ``RemoteRows(...).take(pos) == read_all(...)[pos]`` bitwise, for any
positions (any order, repeats allowed).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from weightlake.errors import IntegrityError
from weightlake.storage.mapped import zoo_rows
from weightlake.storage.snapshot import Segment
from weightlake.storage.store import Store


@dataclass
class ReadLog:
    """What a source fetched: chunk objects in full (key -> times) and rows by range (count, bytes)."""

    chunks: dict[str, int] = field(default_factory=dict)
    ranged_rows: int = 0
    ranged_bytes: int = 0


def can_address(location: Store, segments: Sequence[Segment]) -> bool:
    """True when every segment on the object store is raw (rows at fixed byte offsets in their chunk)."""
    from weightlake.storage.remote import open_segment
    from weightlake.storage.tensors import _raw_layout

    try:
        return all(not s.parts and _raw_layout(open_segment(location, s)) for s in segments)
    except IntegrityError:
        return False


class _Chunks:
    """One segment: its chunk keys and step, and which chunks this source has checked."""

    def __init__(self, location: Store, seg: Segment) -> None:
        from weightlake.storage.remote import open_segment

        array = open_segment(location, seg)
        self.seg, self.step = seg, int(array.chunks[0])
        self.n_chunks = -(-seg.rows // self.step)
        digests = seg.chunk_digests
        if digests is not None and len(digests) != self.n_chunks:
            raise IntegrityError(f"weight segment {location.uri(seg.path)!r} has {self.n_chunks} chunks but the "
                                 f"snapshot records {len(digests)} checksums; run `weightlake verify`")
        self.keys = [f"{seg.path}/{array.metadata.encode_chunk_key((i, 0))}" for i in range(self.n_chunks)]
        self.checked = np.zeros(self.n_chunks, dtype=bool)


class RemoteRows:
    """A zoo's raw segments on an object store, gathered by row (see the module docstring).

    Parameters
    ----------
    location
        The lake's store (an :class:`~weightlake.storage.store.S3Store`; a local store works too).
    segments
        The zoo's segments in row order (``ids`` follows them).
    """

    resident = False

    def __init__(self, location: Store, segments: Sequence[Segment]) -> None:
        self.location, self.segments = location, tuple(segments)
        self.ids, self.cols, self.starts = zoo_rows(self.segments)
        self.log = ReadLog()
        self._chunks: list[_Chunks] | None = None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.ids)

    def __getstate__(self) -> dict[str, Any]:  # a worker process opens (and checks) afresh
        return {"location": self.location, "segments": self.segments}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["location"], state["segments"])  # type: ignore[misc]

    def _segment_chunks(self) -> list[_Chunks]:
        with self._lock:
            if self._chunks is None:
                self._chunks = [_Chunks(self.location, s) for s in self.segments]
            return self._chunks

    def take(self, pos: np.ndarray) -> np.ndarray:
        """Rows at zoo positions ``pos`` (int64, any order, repeats allowed) as ``float32 [len(pos), P]``."""
        pos = np.asarray(pos, dtype=np.int64).reshape(-1)
        out = np.empty((pos.size, self.cols), dtype=np.float32)
        if pos.size == 0:
            return out
        if pos.min() < 0 or pos.max() >= len(self.ids):
            raise IntegrityError(f"row position out of range for a zoo of {len(self.ids)} rows")
        chunks = self._segment_chunks()
        seg = np.searchsorted(self.starts, pos, side="right") - 1
        for s in np.unique(seg):
            where = np.flatnonzero(seg == s)
            rows = pos[where] - self.starts[s]
            part = chunks[int(s)]
            chunk_of = rows // part.step
            for c in np.unique(chunk_of):
                mine = chunk_of == c
                out[where[mine]] = self._chunk_rows(part, int(c), rows[mine] - c * part.step)
        return out

    def _chunk_rows(self, part: _Chunks, c: int, local: np.ndarray) -> np.ndarray:
        """Rows ``local`` (within chunk ``c``) of one segment: the whole chunk, checked, on first use; else by range."""
        from weightlake.storage.checksums import check_bytes

        key, width = part.keys[c], 4 * part.seg.cols
        if not part.checked[c]:
            try:
                data = self.location.read(key)
            except FileNotFoundError:
                raise IntegrityError(f"chunk {self.location.uri(key)!r} is missing; the snapshot lists it "
                                     "(run `weightlake verify`)") from None
            digests = part.seg.chunk_digests
            check_bytes(data, digests[c] if digests is not None else None, self.location.uri(key))
            if len(data) != part.step * width:
                raise IntegrityError(f"chunk {self.location.uri(key)!r} has {len(data)} bytes, expected "
                                     f"{part.step * width}; run `weightlake verify`")
            with self._lock:
                part.checked[c] = True
                self.log.chunks[key] = self.log.chunks.get(key, 0) + 1
            return np.frombuffer(data, dtype="<f4").reshape(part.step, part.seg.cols)[local]
        wanted, inverse = np.unique(local, return_inverse=True)
        runs = np.split(wanted, np.flatnonzero(np.diff(wanted) != 1) + 1)  # consecutive rows: one range
        pieces = self.location.read_ranges(key, [int(r[0]) * width for r in runs], [len(r) * width for r in runs])
        with self._lock:
            self.log.ranged_rows += int(wanted.size)
            self.log.ranged_bytes += int(wanted.size) * width
        block = np.frombuffer(b"".join(pieces), dtype="<f4").reshape(wanted.size, part.seg.cols)
        return block[inverse]
