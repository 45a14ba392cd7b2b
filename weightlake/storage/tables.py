"""Parquet tables: model metadata (Hive-partitioned) and derived tables.

Every write produces new files under fresh names (``<token>-<n>.parquet``); nothing is
ever rewritten, so a snapshot that lists a file can always read it.  Partition columns are
encoded in the directory names (``activation=gelu/``) and left out of the files, as Hive
readers (DuckDB, polars, pyarrow) expect.

Round-trip law: ``read_files(write_partitioned(df)) == df`` up to row and column order.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from weightlake._util import make_parent
from weightlake.errors import IntegrityError
from weightlake.storage.checksums import check_file

if TYPE_CHECKING:
    from weightlake.storage.snapshot import Manifest

_SAFE = re.compile(r"^[A-Za-z0-9_.+\-]+$")


def partition_value(value: Any) -> str:
    """A partition directory value; refuses values that could escape the directory."""
    text = str(value)
    if not text or not _SAFE.match(text) or text in (".", ".."):
        raise IntegrityError(f"partition value {text!r} must be letters, digits, '_', '-', '+', '.'")
    return text


def write_partitioned(df: pl.DataFrame, root: Path, base: str, partition_by: Sequence[str], token: str,
                      made: list[Path] | None = None) -> list[str]:
    """Write ``df`` under ``root/base/<col>=<value>/.../<token>.parquet``; returns relative paths.

    Folders it creates are appended to ``made``; a file it fails to finish is removed.
    """
    paths: list[str] = []
    groups = df.partition_by(list(partition_by), as_dict=True, maintain_order=True) if partition_by else {(): df}
    for key, part in groups.items():
        parts = [f"{col}={partition_value(val)}" for col, val in zip(partition_by, key, strict=True)]
        rel = os.path.join(base, *parts, f"{token}.parquet")
        target = root / rel
        make_parent(target, made)
        if target.exists():
            raise IntegrityError(f"refusing to overwrite {str(target)!r}")
        try:
            part.drop(list(partition_by)).write_parquet(target, compression="zstd", statistics=True)
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        paths.append(rel)
    return paths


def checked_paths(root: Path, files: Sequence[str], manifest: Manifest,
                  verified: set[str] | None = None) -> list[str]:
    """Absolute paths of listed files, each checked against the checksum ``manifest`` records.

    ``verified`` remembers the files already checked (a reader handle keeps one set, so each
    file is hashed once per handle).
    """
    out = []
    for f in files:
        path = str(root / f)
        if verified is None or f not in verified:
            check_file(path, manifest.checksum(f))
            if verified is not None:
                verified.add(f)
        out.append(path)
    return out


def scan_parquet(paths: Sequence[str], *, hive_schema: dict[str, Any] | None = None,
                 storage_options: dict[str, str] | None = None) -> pl.LazyFrame:
    """A polars scan over exactly these files (paths are never read as glob patterns; URLs read
    with ``storage_options``)."""
    return pl.scan_parquet(list(paths), hive_partitioning=hive_schema is not None, hive_schema=hive_schema,
                           glob=False, storage_options=storage_options)


def arrow_dataset(base: Path, paths: Sequence[str], partition_by: Sequence[str],
                  types: dict[str, Any] | None = None, filesystem: Any = None) -> Any:
    """A pyarrow dataset over listed files below ``base``, for DuckDB to scan without touching the
    file system itself.

    Schemas of the files are unified by name (a column added in a later commit reads as
    null in earlier files). Partition columns are strings unless every value is an integer,
    as DuckDB's Hive reader would type them; ``types`` overrides.
    """
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    fields = []
    for col in partition_by:
        values = {_partition_of(p, col) for p in paths}
        given = (types or {}).get(col)
        typ = given if given is not None else pa.int64() if all(_is_int(v) for v in values) else pa.string()
        fields.append(pa.field(col, typ))
    part_schema = pa.schema(fields)
    schema = pa.unify_schemas([pq.read_schema(p, filesystem=filesystem) for p in paths] + [part_schema])
    partitioning = ds.partitioning(part_schema, flavor="hive") if fields else None
    return ds.dataset(list(paths), schema=schema, format="parquet", partitioning=partitioning,
                      partition_base_dir=str(base) if fields else None, filesystem=filesystem)


def _partition_of(path: str, col: str) -> str:
    for part in Path(path).parent.parts:
        if part.startswith(col + "="):
            return part[len(col) + 1:]
    raise IntegrityError(f"{path!r} lies in no {col}=... partition directory")


def _is_int(text: str) -> bool:
    return text.lstrip("-").isdigit()
