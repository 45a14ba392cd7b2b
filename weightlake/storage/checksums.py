"""Checksums of what the lake stores, recorded at commit and checked on every read.

Every file a snapshot lists carries a digest in its manifest: each weight chunk (one per
chunk of a segment, in chunk order), each segment's ``zarr.json``, each Parquet file, each
file of a table-owned Zarr array; and the manifest carries a digest of its own body. A
reader that finds a file whose bytes do not match raises :class:`IntegrityError` naming it,
so a flipped byte is an error rather than a wrong number, and a missing chunk is an error
rather than a row of fill values.

The digest is XXH3-64 (``xxh3:<16 hex>``): it detects any change of a few bytes with
certainty short of 2**-64 and runs at tens of GB/s, so checking every chunk costs little
next to reading it (figures in BENCHMARKS.md). It guards against corruption (disk, copy,
a stray write), not against an adversary who can also rewrite the manifest.

Round-trip law: ``check_bytes(b, digest_bytes(b), ...)`` passes for every ``b``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from weightlake.errors import IntegrityError

PREFIX = "xxh3:"
_BLOCK = 8 << 20


def digest_bytes(data: Any) -> str:
    """Digest of a bytes-like object (bytes, memoryview, or a contiguous numpy array)."""
    import xxhash

    return PREFIX + xxhash.xxh3_64_hexdigest(data)


def digest_file(path: str | os.PathLike[str]) -> str:
    """Digest of a file's bytes, read in 8 MB blocks."""
    import xxhash

    h = xxhash.xxh3_64()
    with open(path, "rb") as fh:
        while block := fh.read(_BLOCK):
            h.update(block)
    return PREFIX + h.hexdigest()


def check_bytes(data: Any, expected: str | None, where: str | os.PathLike[str]) -> None:
    """Raise :class:`IntegrityError` unless ``data`` has digest ``expected`` (None: not recorded)."""
    if expected is not None and digest_bytes(data) != expected:
        raise corrupt(where)


def check_file(path: str | os.PathLike[str], expected: str | None) -> None:
    """Raise :class:`IntegrityError` if ``path`` is missing or its bytes do not match ``expected``."""
    try:
        got = digest_file(path)
    except FileNotFoundError:
        raise IntegrityError(f"{str(path)!r} is missing; the snapshot lists it (run `weightlake verify`)") from None
    except OSError as exc:
        raise IntegrityError(f"{str(path)!r} cannot be read: {exc.strerror or exc}") from exc
    if expected is not None and got != expected:
        raise corrupt(path)


def corrupt(where: str | os.PathLike[str]) -> IntegrityError:
    return IntegrityError(f"{str(where)!r} is corrupt: its bytes do not match the checksum the snapshot "
                          "recorded (run `weightlake verify`; restore the file or go back with `weightlake history`)")


def digest_tree(root: Path, directory: Path) -> dict[str, str]:
    """Digests of every file below ``directory``, keyed by path relative to ``root``."""
    return {os.path.relpath(p, root): digest_file(p) for p in _files(directory)}


def _files(directory: Path) -> Iterable[Path]:
    for dirpath, _, names in os.walk(directory):
        for name in sorted(names):
            yield Path(dirpath) / name
