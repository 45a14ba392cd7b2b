"""The memory budget: how many bytes of weights a reader may hold at once.

Resolution: explicit argument (``open_lake(path, memory="1GB")``) > ``$WEIGHTLAKE_MEMORY`` >
a default of a quarter of the machine's memory (the smaller of physical RAM and a cgroup
limit).  Streaming readers cut a zoo into blocks of :func:`block_rows` rows, each at most
``budget / BLOCK_SHARE`` bytes: a consumer that holds one block, converts it once and
overlaps the next read stays within the budget.

Round-trip law: ``parse_memory(format_memory(n)) == n`` for whole numbers of bytes.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from weightlake.errors import ConfigError

ENV_MEMORY = "WEIGHTLAKE_MEMORY"
DEFAULT_SHARE_OF_MACHINE = 4
"""The default budget is the machine's memory divided by this."""
BLOCK_SHARE = 4
"""A streamed block is at most the budget divided by this."""
MIN_BUDGET = 10**6
MAX_BLOCK_BYTES = 2**26
"""Blocks stop growing here (64 MiB, about 6,800 CNN-s rows): larger ones read no faster and only raise the peak."""



class BudgetWarning(UserWarning):
    """A reader is about to hold more weights than the memory budget allows (random access needs the whole zoo)."""


_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_memory(text: str | int | float) -> int:
    """Bytes from ``"1GB"``, ``"512MB"``, ``"1.5GiB"``, ``"2G"`` or a plain number of bytes.

    Raises
    ------
    ConfigError
        For text that is not a size, or a budget below 1 MB (:data:`MIN_BUDGET`).
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = int(text)
    else:
        m = _SIZE.match(str(text))
        unit = m.group(2).lower() if m else ""
        if not m or unit not in _UNITS:
            raise ConfigError(f"memory budget {text!r} is not a size; write e.g. '1GB', '512MB', '2GiB' "
                              f"(${ENV_MEMORY} or memory=...)")
        value = int(float(m.group(1)) * _UNITS[unit])
    if value < MIN_BUDGET:
        raise ConfigError(f"memory budget {text!r} is below the minimum of {format_memory(MIN_BUDGET)}")
    return value


def format_memory(n: int) -> str:
    """``1500000000 -> '1.5GB'`` (decimal units, as ``parse_memory`` reads them)."""
    for unit, size in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if n >= size:
            return f"{n / size:.4g}{unit}"
    return f"{n}B"


def machine_memory() -> int:
    """Bytes this process can use: physical RAM, or a smaller cgroup (v2 or v1) limit."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def default_memory() -> int:
    return max(MIN_BUDGET, machine_memory() // DEFAULT_SHARE_OF_MACHINE)


def resolve_memory(explicit: str | int | None = None) -> int:
    """The budget in bytes: explicit > ``$WEIGHTLAKE_MEMORY`` > a quarter of the machine."""
    if explicit is not None and str(explicit) != "":
        return parse_memory(explicit)
    env = os.environ.get(ENV_MEMORY)
    if env:
        return parse_memory(env)
    return default_memory()


def block_rows(cols: int, budget: int, chunk_rows: int = 1, share: int = BLOCK_SHARE) -> int:
    """Rows of ``cols`` float32 values per streamed block: at most ``budget / share`` bytes
    (and :data:`MAX_BLOCK_BYTES`), a whole number of ``chunk_rows`` chunks where that fits,
    and at least one row."""
    rows = max(1, min(budget // share, MAX_BLOCK_BYTES) // max(1, 4 * cols))
    if rows >= chunk_rows > 1:
        rows -= rows % chunk_rows
    return rows
