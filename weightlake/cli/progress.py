"""Progress for long runs: a bar on a terminal, periodic one-line reports otherwise (CI, logs)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click

from weightlake.cli import progress_bar


@contextmanager
def reporting_progress(total: int, label: str, every_seconds: float = 10.0) -> Iterator[Callable[[int, int], None]]:
    """Yield ``progress(done, total)``: drives a bar on a terminal, else prints
    ``label: done/total`` to stderr at most every ``every_seconds`` (and at the end)."""
    if sys.stderr.isatty():
        with progress_bar(total, label) as bar:
            seen = [0]

            def update(done: int, _total: int) -> None:
                bar.update(done - seen[0])
                seen[0] = done

            yield update
        return
    last = [time.monotonic()]

    def report(done: int, total_: int) -> None:
        now = time.monotonic()
        if done == total_ or now - last[0] >= every_seconds:
            click.echo(f"{label}: {done}/{total_}", err=True)
            last[0] = now

    yield report
