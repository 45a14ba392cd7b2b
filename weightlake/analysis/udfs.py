"""DuckDB UDFs (``wl_*``); filled in by the analysis work."""

from __future__ import annotations

from typing import Any


def register_udfs(con: Any, lake: Any) -> None:
    return None
