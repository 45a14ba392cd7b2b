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
from typing import Any

import polars as pl

from weightlake._util import glob_escape
from weightlake.errors import IntegrityError

_SAFE = re.compile(r"^[A-Za-z0-9_.+\-]+$")


def partition_value(value: Any) -> str:
    """A partition directory value; refuses values that could escape the directory."""
    text = str(value)
    if not text or not _SAFE.match(text) or text in (".", ".."):
        raise IntegrityError(f"partition value {text!r} must be letters, digits, '_', '-', '+', '.'")
    return text


def write_partitioned(df: pl.DataFrame, root: Path, base: str, partition_by: Sequence[str], token: str) -> list[str]:
    """Write ``df`` under ``root/base/<col>=<value>/.../<token>.parquet``; returns relative paths."""
    paths: list[str] = []
    groups = df.partition_by(list(partition_by), as_dict=True, maintain_order=True) if partition_by else {(): df}
    for key, part in groups.items():
        parts = [f"{col}={partition_value(val)}" for col, val in zip(partition_by, key, strict=True)]
        rel = os.path.join(base, *parts, f"{token}.parquet")
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            raise IntegrityError(f"refusing to overwrite {str(target)!r}")
        part.drop(list(partition_by)).write_parquet(target, compression="zstd", statistics=True)
        paths.append(rel)
    return paths


def scan_files(root: Path, files: Sequence[str], *, hive: bool) -> pl.LazyFrame:
    """A lazy scan over listed files (never a directory glob: only what the snapshot lists)."""
    if not files:
        raise IntegrityError("no files to scan")
    return pl.scan_parquet([str(root / f) for f in files], hive_partitioning=hive, glob=False)


def duckdb_source(root: Path, files: Sequence[str], *, hive: bool) -> str:
    """A DuckDB ``read_parquet([...])`` expression over listed files."""
    # DuckDB globs every path it is given: escape *, ? and [ so a lake under "run [1]?" reads its own files only
    quoted = ", ".join("'" + glob_escape(str(root / f)).replace("'", "''") + "'" for f in files)
    return f"read_parquet([{quoted}], hive_partitioning = {'true' if hive else 'false'}, union_by_name = true)"
