"""Small helpers every layer may use (no imports from the rest of the package)."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary name, fsync, rename over ``path``, fsync the directory.

    A reader sees the old file or the new one, never a partial one, whatever happens.
    """
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def make_parent(path: Path, made: list[Path] | None = None) -> None:
    """Create ``path``'s parent folders; append those that did not exist to ``made``, outermost first
    (so a writer that fails can remove what it created and nothing else)."""
    missing, folder = [], path.parent
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    path.parent.mkdir(parents=True, exist_ok=True)
    if made is not None:
        made += reversed(missing)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def torch_threads(n: int = 1) -> Iterator[None]:
    """Run torch with ``n`` intra-op threads inside the block (process-wide), restoring the setting after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def parse_int_ranges(text: str, error: type[Exception] = ValueError) -> list[int]:
    """``"0-5"``, ``"1,3,5"`` or a mix (``"0-2,7"``) -> sorted distinct ints; ranges are inclusive.

    Raises ``error`` (naming ``text``) on anything else: ``"5-2"``, ``"a"``, ``""``, ``"1,,2"``.
    """
    out: set[int] = set()
    for part in (p.strip() for p in str(text).split(",")):
        lo, sep, hi = part.partition("-")
        try:
            first, last = int(lo), int(hi if sep else lo)
        except ValueError:
            raise error(f"expected integers or ranges like '0-5' or '1,3,5', got {part!r} in {text!r}") from None
        if last < first:
            raise error(f"range {part!r} in {text!r} runs backwards; write it as '{last}-{first}'")
        out.update(range(first, last + 1))
    return sorted(out)



def non_finite_rows(rows: Any) -> Any:
    """Indices of the rows of a 2-D numpy array that hold a NaN or an infinity.

    One sum per row (a row holding either has a non-finite sum); only rows whose sum is not
    finite get the exact check, since a sum of finite values can overflow.
    """
    import numpy as np

    suspect = np.flatnonzero(~np.isfinite(np.add.reduce(rows, axis=1)))
    return suspect[[not np.isfinite(rows[i]).all() for i in suspect]] if len(suspect) else suspect
